//! TXA -> DocumentReference (the OBX that follow carry its content).

use hl7v2::Segment;

use crate::context::Ctx;

/// TXA: not mapped yet.
pub fn txa(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
