//! PID, PD1, NK1, MRG -> Patient, RelatedPerson, links; PV1, PV2 -> Encounter; DB1, PDA, ACC, ARV, ROL -> the patient and visit; GT1, IN1, IN2, IN3 -> Coverage, Account and the payer Organization.

use hl7v2::Segment;

use crate::context::Ctx;

/// PID: not mapped yet.
pub fn pid(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PD1: not mapped yet.
pub fn pd1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// NK1: not mapped yet.
pub fn nk1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// MRG: not mapped yet.
pub fn mrg(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PV1: not mapped yet.
pub fn pv1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PV2: not mapped yet.
pub fn pv2(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// DB1: not mapped yet.
pub fn db1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PDA: not mapped yet.
pub fn pda(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// ACC: not mapped yet.
pub fn acc(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// ARV: not mapped yet.
pub fn arv(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// ROL: not mapped yet.
pub fn rol(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// GT1: not mapped yet.
pub fn gt1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// IN1: not mapped yet.
pub fn in1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// IN2: not mapped yet.
pub fn in2(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// IN3: not mapped yet.
pub fn in3(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
