//! FT1 -> charge details on the Encounter/Account; RF1 -> a referral ServiceRequest.

use hl7v2::Segment;

use crate::context::Ctx;

/// FT1: not mapped yet.
pub fn ft1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RF1: not mapped yet.
pub fn rf1(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
