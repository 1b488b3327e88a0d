//! RXA, RXR -> Immunization; RXO, RXE, RXC -> MedicationRequest and Medication; RXD -> MedicationDispense.

use hl7v2::Segment;

use crate::context::Ctx;

/// RXA: not mapped yet.
pub fn rxa(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXR: not mapped yet.
pub fn rxr(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXO: not mapped yet.
pub fn rxo(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXE: not mapped yet.
pub fn rxe(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXC: not mapped yet.
pub fn rxc(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXD: not mapped yet.
pub fn rxd(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
