//! SCH, RGS, AIS, AIG, AIL, AIP -> Appointment and its participants.

use hl7v2::Segment;

use crate::context::Ctx;

/// SCH: not mapped yet.
pub fn sch(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RGS: not mapped yet.
pub fn rgs(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// AIS: not mapped yet.
pub fn ais(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// AIG: not mapped yet.
pub fn aig(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// AIL: not mapped yet.
pub fn ail(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// AIP: not mapped yet.
pub fn aip(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
