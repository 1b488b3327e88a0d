//! ORC, OBR, TQ1 -> ServiceRequest and DiagnosticReport; OBX -> Observation; NTE -> notes on the resource before it; SPM -> Specimen; AL1, IAM -> AllergyIntolerance; DG1 -> Condition; PR1 -> Procedure; PRT -> participants.

use hl7v2::Segment;

use crate::context::Ctx;

/// ORC: not mapped yet.
pub fn orc(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// OBR: not mapped yet.
pub fn obr(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// TQ1: not mapped yet.
pub fn tq1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// OBX: not mapped yet.
pub fn obx(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// NTE: not mapped yet.
pub fn nte(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// SPM: not mapped yet.
pub fn spm(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// AL1: not mapped yet.
pub fn al1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// IAM: not mapped yet.
pub fn iam(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// DG1: not mapped yet.
pub fn dg1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PR1: not mapped yet.
pub fn pr1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// PRT: not mapped yet.
pub fn prt(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
