//! Segment mappings, one file per area. [`convert`] hands each segment (after MSH) to its mapping;
//! a segment with none is recorded as an issue, never silently dropped.

pub mod document;
pub mod financial;
pub mod msh;
pub mod order;
pub mod patient;
pub mod pharmacy;
pub mod schedule;

use hl7v2::Segment;

use crate::context::{Ctx, IssueKind, Severity};
use crate::error::Error;

/// Converts one segment into the bundle being built in `ctx`.
///
/// # Errors
/// None yet at segment level: problems with values become issues in `ctx`.
pub fn convert(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Result<(), Error> {
    match seg.id() {
        "SFT" => msh::sft(ctx, seg),
        "EVN" => msh::evn(ctx, seg),
        "PID" => patient::pid(ctx, seg),
        "PD1" => patient::pd1(ctx, seg),
        "NK1" => patient::nk1(ctx, seg),
        "MRG" => patient::mrg(ctx, seg),
        "PV1" => patient::pv1(ctx, seg),
        "PV2" => patient::pv2(ctx, seg),
        "DB1" => patient::db1(ctx, seg),
        "PDA" => patient::pda(ctx, seg),
        "ACC" => patient::acc(ctx, seg),
        "ARV" => patient::arv(ctx, seg),
        "ROL" => patient::rol(ctx, seg),
        "PRD" => patient::prd(ctx, seg),
        "GT1" => patient::gt1(ctx, seg),
        "IN1" => patient::in1(ctx, seg),
        "IN2" => patient::in2(ctx, seg),
        "IN3" => patient::in3(ctx, seg),
        "ORC" => order::orc(ctx, seg),
        "OBR" => order::obr(ctx, seg),
        "TQ1" => order::tq1(ctx, seg),
        "OBX" => order::obx(ctx, seg),
        "NTE" => order::nte(ctx, seg),
        "SPM" => order::spm(ctx, seg),
        "SAC" => order::sac(ctx, seg),
        "AL1" => order::al1(ctx, seg),
        "IAM" => order::iam(ctx, seg),
        "DG1" => order::dg1(ctx, seg),
        "PR1" => order::pr1(ctx, seg),
        "PRT" => order::prt(ctx, seg),
        "RXA" => pharmacy::rxa(ctx, seg),
        "RXR" => pharmacy::rxr(ctx, seg),
        "RXO" => pharmacy::rxo(ctx, seg),
        "RXE" => pharmacy::rxe(ctx, seg),
        "RXC" => pharmacy::rxc(ctx, seg),
        "RXD" => pharmacy::rxd(ctx, seg),
        "SCH" => schedule::sch(ctx, seg),
        "RGS" => schedule::rgs(ctx, seg),
        "AIS" => schedule::ais(ctx, seg),
        "AIG" => schedule::aig(ctx, seg),
        "AIL" => schedule::ail(ctx, seg),
        "AIP" => schedule::aip(ctx, seg),
        "TXA" => document::txa(ctx, seg),
        "FT1" => financial::ft1(ctx, seg),
        "RF1" => financial::rf1(ctx, seg),
        "BLG" => financial::blg(ctx, seg),
        _ => {
            let at = ctx.at_segment.clone();
            ctx.issue(
                Severity::Warning,
                at,
                IssueKind::UnmappedSegment,
                format!("no FHIR mapping for segment {}", seg.id()),
            );
        }
    }
    Ok(())
}
