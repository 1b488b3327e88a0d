//! RXA, RXR -> Immunization; RXO, RXE, RXC -> MedicationRequest and Medication; RXD -> MedicationDispense.
//!
//! The segments that qualify an administration or an order (RXR route, RXC components, the vaccine OBX
//! with funding source and eligibility) are read by the RXA/RXO/RXE/RXD they follow, straight from the
//! message, so a PRT or NTE between them cannot detach them; [`rxr`] and [`rxc`] themselves add nothing.
//!
//! Also here, for the other segment maps of this area (schedule, document, financial): [`ei`] (EI ->
//! Identifier), [`following`] and [`preceding`] (the segments of a group), [`find`] (a resource already in
//! the bundle by its id) and [`order_identifiers`] (ORC-2/3 as PLAC/FILL identifiers).

use fhir::{
    CodeableConcept, Coding, Dosage, DosageAsNeeded, DosageDoseAndRate, DosageDoseAndRateDose,
    DosageDoseAndRateRate, Identifier, Immunization, ImmunizationOccurrence, ImmunizationPerformer,
    Location, Medication, MedicationDispense, MedicationDispenseMedication,
    MedicationDispensePerformer, MedicationIngredient, MedicationIngredientItem, MedicationRequest,
    MedicationRequestDispenseRequest, MedicationRequestInitialFill, MedicationRequestMedication,
    MedicationRequestSubstitution, MedicationRequestSubstitutionAllowed, Organization, Quantity,
    Ratio, Reference, Timing,
};
use hl7v2::{Node, Segment};

use crate::context::{Ctx, IssueKind, Severity};
use crate::entities;
use crate::read::{comp, field, field_comp, field_text, reps, text};
use crate::vocab::{V2_0203_SYSTEM, coding_system_uri};

/// `http://terminology.hl7.org/CodeSystem/v2-0443`, provider roles (AP administering, OP ordering).
pub const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";
/// `http://hl7.org/fhir/sid/mvx`, CDC vaccine manufacturer codes (RXA-17 with system `MVX`).
pub const MVX_SYSTEM: &str = "http://hl7.org/fhir/sid/mvx";

// ---------------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------------

/// EI (or EIP's first part) -> Identifier: value EI.1, system from EI.2-4 read as an HD by
/// [`crate::entities::authority_system`] (EI.3 as `urn:oid:` when EI.4 is `ISO` and EI.3 an OID,
/// `urn:uuid:` for `UUID`, as given for `URI`; else the namespace EI.2, else EI.3, as local names).
pub fn ei(node: Node<'_>) -> Option<Identifier> {
    let value = comp(node, 1)?;
    let namespace = comp(node, 2);
    let universal = comp(node, 3);
    let system = crate::entities::authority_system(namespace, universal, comp(node, 4).as_deref());
    Some(Identifier {
        value: Some(value),
        system,
        ..Default::default()
    })
}

/// `identifier` typed with a v2 table 0203 code (`PLAC`, `FILL`).
pub fn typed(mut identifier: Identifier, code: &str, display: &str) -> Identifier {
    identifier.r#type = Some(CodeableConcept::coding(V2_0203_SYSTEM, code, Some(display)));
    identifier
}

/// The (system, value) of an identifier, for deterministic ids.
pub fn key(identifier: &Identifier) -> [&str; 2] {
    [
        identifier.system.as_deref().unwrap_or(""),
        identifier.value.as_deref().unwrap_or(""),
    ]
}

/// The segments right after `seg` whose ids are in `within` (its group), stopping at the first other one.
pub fn following<'a>(ctx: &Ctx<'a>, seg: &Segment<'_>, within: &[&str]) -> Vec<Segment<'a>> {
    let message = ctx.message;
    let mut out = Vec::new();
    let mut i = seg.index() + 1;
    while let Some(s) = message.segment(i) {
        if !within.contains(&s.id()) {
            break;
        }
        out.push(s);
        i += 1;
    }
    out
}

/// The nearest segment `id` before `seg`, not looking past any segment in `stop`.
pub fn preceding<'a>(
    ctx: &Ctx<'a>,
    seg: &Segment<'_>,
    id: &str,
    stop: &[&str],
) -> Option<Segment<'a>> {
    let message = ctx.message;
    let mut i = seg.index();
    while i > 0 {
        i -= 1;
        let s = message.segment(i)?;
        if s.id() == id {
            return Some(s);
        }
        if stop.contains(&s.id()) {
            return None;
        }
    }
    None
}

/// ORC-2 placer (`PLAC`) and ORC-3 filler (`FILL`) order numbers as identifiers (IG `ORC[Immunization]`,
/// `ORC[MedicationRequest]`).
pub fn order_identifiers(orc: Option<&Segment<'_>>) -> (Option<Identifier>, Option<Identifier>) {
    let Some(orc) = orc else {
        return (None, None);
    };
    let placer = field(orc, 2)
        .and_then(ei)
        .map(|i| typed(i, "PLAC", "Placer Identifier"));
    let filler = field(orc, 3)
        .and_then(ei)
        .map(|i| typed(i, "FILL", "Filler Identifier"));
    (placer, filler)
}

/// A reference to the resource at `index`, if any.
fn reference(ctx: &Ctx<'_>, index: Option<usize>) -> Option<Reference> {
    index.map(|i| ctx.reference(i))
}

/// NM `value` with CWE `units` (both fields of `seg`) as a Quantity; bad numbers become issues.
fn nm_quantity(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    value: usize,
    units: Option<usize>,
) -> Option<Quantity> {
    let number = field_comp(seg, value, 1)?;
    let units = units.and_then(|u| field(seg, u));
    match crate::quantity(&number, units) {
        Ok(q) => q,
        Err(e) => {
            let at = ctx.at(value);
            ctx.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
            None
        }
    }
}

/// A CQ (quantity^units) field as a Quantity.
fn cq(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Option<Quantity> {
    let node = field(seg, n)?;
    let number = comp(node, 1)?;
    let units = node.component(2).filter(|u| crate::read::present(*u));
    // CQ.2 is a CWE in a component: its parts are subcomponents.
    let mut q = match crate::quantity(&number, None) {
        Ok(q) => q?,
        Err(e) => {
            let at = ctx.at(n);
            ctx.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
            return None;
        }
    };
    if let Some(u) = units {
        let part = |s| text(u.subcomponent(s));
        q.code = part(1);
        q.unit = part(2).or_else(|| q.code.clone());
        q.system = part(3).map(|s| coding_system_uri(&s).into_owned());
    }
    Some(q)
}

/// The current patient, or an issue naming the field that needed one.
fn require_patient(ctx: &mut Ctx<'_>, what: &str) -> Option<Reference> {
    let patient = ctx.patient_ref();
    if patient.is_none() {
        let at = ctx.at_segment.clone();
        ctx.issue(
            Severity::Error,
            at,
            IssueKind::Invalid,
            format!("no patient (PID) before this segment: {what} needs a subject, left out"),
        );
    }
    patient
}

// ---------------------------------------------------------------------------------------------------
// RXA, RXR -> Immunization
// ---------------------------------------------------------------------------------------------------

/// RXA -> Immunization (IG `RXA[Immunization]`, `ORC[Immunization]`, `RXR[Immunization]`).
///
/// - identifier ORC-2 (`PLAC`) and ORC-3 (`FILL`) of the order it belongs to; the id comes from the
///   filler number, else the placer number, else the message and segment;
/// - status: `entered-in-error` when RXA-21 is `D`; else RXA-20 via table 0322 (CP and PA `completed`,
///   PA also `isSubpotent`; RE and NA `not-done`), `completed` when empty; statusReason RXA-18;
/// - vaccineCode RXA-5 (`CVX` -> `http://hl7.org/fhir/sid/cvx`), occurrence RXA-3, recorded ORC-9
///   (else RXA-22), doseQuantity RXA-6/7, lotNumber RXA-15, expirationDate RXA-16, manufacturer RXA-17 as
///   an Organization, reasonCode RXA-19, location RXA-27 (else RXA-11);
/// - performer: RXA-10 (`AP`) and ORC-12 (`OP`), table 0443;
/// - RXA-9 (NIP001 information source): `00` is a new record, so primarySource true; any other code is
///   a historical record: primarySource false with the code as reportOrigin;
/// - the RXR after it: route RXR-1, site RXR-2; the OBX after it: LOINC 30963-3 -> fundingSource,
///   64994-7 -> programEligibility (CDC IIS IG); the other OBX stay Observations.
pub fn rxa(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let orc = preceding(ctx, seg, "ORC", &["RXA", "PID", "MSH"]);
    let (placer, filler) = order_identifiers(orc.as_ref());
    let identity = filler.clone().or_else(|| placer.clone());
    let id = match &identity {
        Some(i) => ctx.id("Immunization", &key(i)),
        None => ctx.message_scoped_id("Immunization", ""),
    };
    let Some(patient) = require_patient(ctx, "Immunization") else {
        return;
    };

    let action = field_comp(seg, 21, 1);
    let completion = field_comp(seg, 20, 1);
    let status = if action.as_deref() == Some("D") {
        "entered-in-error"
    } else {
        match completion.as_deref() {
            None | Some("CP" | "PA") => "completed",
            Some("RE" | "NA") => "not-done",
            Some(_) => {
                let at = ctx.at(20);
                ctx.issue(
                    Severity::Warning,
                    at,
                    IssueKind::Invalid,
                    "completion status not in table 0322: recorded as completed".into(),
                );
                "completed"
            }
        }
    };

    let vaccine_code = match ctx.code(field(seg, 5), &ctx.at(5)) {
        Some(c) => c,
        None => {
            // vaccineCode is required: a missing RXA-5 is said, not guessed.
            let at = ctx.at(5);
            ctx.issue(
                Severity::Warning,
                at,
                IssueKind::Invalid,
                "no administered code: vaccineCode written as text `unknown`".into(),
            );
            CodeableConcept::text("unknown")
        }
    };
    let occurrence = ctx
        .dtm(field(seg, 3), ctx.at(3))
        .map(ImmunizationOccurrence::DateTime);
    let recorded = match orc.as_ref().and_then(|o| field(o, 9)) {
        Some(n) => ctx.dtm(Some(n), "ORC-9"),
        None => ctx.dtm(field(seg, 22), ctx.at(22)),
    };

    let mut performer = Vec::new();
    if let Some(orc) = &orc {
        for xcn in reps(orc, 12) {
            if let Some(p) = entities::practitioner(ctx, xcn) {
                performer.push(ImmunizationPerformer {
                    function: Some(CodeableConcept::coding(
                        V2_0443,
                        "OP",
                        Some("Ordering Provider"),
                    )),
                    actor: ctx.reference(p),
                    ..Default::default()
                });
            }
        }
    }
    for xcn in reps(seg, 10) {
        if let Some(p) = entities::practitioner(ctx, xcn) {
            performer.push(ImmunizationPerformer {
                function: Some(CodeableConcept::coding(
                    V2_0443,
                    "AP",
                    Some("Administering Provider"),
                )),
                actor: ctx.reference(p),
                ..Default::default()
            });
        }
    }

    let source = field_comp(seg, 9, 1);
    let (primary_source, report_origin) = match source.as_deref() {
        None => (None, None),
        Some("00") => (Some(true), None),
        Some(_) => (Some(false), ctx.code(field(seg, 9), &ctx.at(9))),
    };

    let manufacturer = field(seg, 17).and_then(|cwe| manufacturer(ctx, cwe));
    let location = field(seg, 27)
        .or_else(|| field(seg, 11))
        .and_then(|pl| entities::location(ctx, pl));
    if let Some(l) = location {
        administered_at_address(ctx, seg, l);
    }

    let mut imm = Immunization {
        id: Some(id),
        identifier: placer.into_iter().chain(filler).collect(),
        status: Some(status.into()),
        status_reason: ctx.code(field(seg, 18), &ctx.at(18)),
        vaccine_code,
        patient,
        encounter: ctx.encounter_ref(),
        occurrence,
        recorded,
        primary_source,
        report_origin,
        location: reference(ctx, location),
        manufacturer: reference(ctx, manufacturer),
        lot_number: field_comp(seg, 15, 1),
        expiration_date: ctx.date(field(seg, 16), ctx.at(16)),
        dose_quantity: nm_quantity(ctx, seg, 6, Some(7)),
        performer,
        reason_code: reps(seg, 19)
            .filter_map(|n| ctx.code(Some(n), &ctx.at(19)))
            .collect(),
        is_subpotent: (completion.as_deref() == Some("PA")).then_some(true),
        ..Default::default()
    };

    let group = following(ctx, seg, &["RXR", "OBX", "NTE", "PRT"]);
    for s in &group {
        let saved = std::mem::replace(&mut ctx.at_segment, s.id().to_owned());
        match s.id() {
            "RXR" if imm.route.is_none() => {
                imm.route = ctx.code(field(s, 1), "RXR-1");
                imm.site = ctx.code(field(s, 2), "RXR-2");
            }
            "OBX" => {
                let loinc = field(s, 3).and_then(|c| {
                    [1, 4]
                        .into_iter()
                        .find_map(|k| comp(c, k).filter(|v| v == "30963-3" || v == "64994-7"))
                });
                match loinc.as_deref() {
                    Some("30963-3") if imm.funding_source.is_none() => {
                        imm.funding_source = ctx.code(field(s, 5), "OBX-5");
                    }
                    Some("64994-7") => {
                        if let Some(c) = ctx.code(field(s, 5), "OBX-5") {
                            imm.program_eligibility.push(c);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        ctx.at_segment = saved;
    }

    let conditional = identity.filter(|i| i.system.is_some());
    let i = ctx.add(imm, conditional.as_ref());
    ctx.last = Some(i);
}

/// RXA-28 (administered-at address, XAD) -> the address of the RXA-27 Location (IG `RXA[Immunization]`:
/// `location(Location.address)`), with its period (XAD.13-14, else the range XAD.12). The levels of one
/// PL (bed, room, point of care, floor, building, facility) are all at that one address, so each level
/// of the chain that has no address yet gets it.
fn administered_at_address(ctx: &mut Ctx<'_>, seg: &Segment<'_>, location: usize) {
    let Some(node) = field(seg, 28) else { return };
    let Some(mut address) = crate::xad(node) else {
        return;
    };
    let at = ctx.at(28);
    let start = ctx.dtm(node.component(13), at.as_str());
    let end = ctx.dtm(node.component(14), at.as_str());
    address.period = entities::period(start, end).or_else(|| {
        let range = node.component(12)?;
        let start = ctx.dtm(range.subcomponent(1), at.as_str());
        let end = ctx.dtm(range.subcomponent(2), at.as_str());
        entities::period(start, end)
    });
    let mut next = Some(location);
    // A PL has at most six levels; the bound also guards against a cycle.
    for _ in 0..8 {
        let Some(i) = next else { break };
        let Some(level) = ctx.get_mut::<Location>(i) else {
            break;
        };
        if level.address.is_none() {
            level.address = Some(address.clone());
        }
        let parent = level
            .part_of
            .as_ref()
            .and_then(|r| r.reference.as_deref())
            .and_then(|r| r.strip_prefix("urn:uuid:"))
            .map(str::to_owned);
        next = parent.and_then(|id| ctx.existing("Location", &id));
    }
}

/// RXA-17 (CWE) -> the manufacturer Organization: identifier CWE.1 in the CWE.3 system (`MVX` ->
/// `http://hl7.org/fhir/sid/mvx`), name CWE.2.
fn manufacturer(ctx: &mut Ctx<'_>, cwe: Node<'_>) -> Option<usize> {
    let code = comp(cwe, 1);
    let name = comp(cwe, 2);
    let system = comp(cwe, 3).map(|s| match s.as_str() {
        "MVX" => MVX_SYSTEM.to_owned(),
        _ => coding_system_uri(&s).into_owned(),
    });
    let identifier = code.map(|c| Identifier {
        value: Some(c),
        system: system.clone(),
        ..Default::default()
    });
    let id = match &identifier {
        Some(i) => ctx.id("Organization", &key(i)),
        None => ctx.id("Organization", &["name", name.as_deref()?]),
    };
    let org = Organization {
        id: Some(id),
        identifier: identifier.clone().into_iter().collect(),
        name,
        ..Default::default()
    };
    let conditional = identifier.filter(|i| i.system.is_some());
    Some(ctx.add(org, conditional.as_ref()))
}

/// RXR: read by the RXA, RXO, RXE or RXD it follows (route, site, method, routing instruction).
pub fn rxr(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

/// RXC: read by the RXO or RXE it follows (the Medication's ingredients).
pub fn rxc(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}

// ---------------------------------------------------------------------------------------------------
// RXO, RXE, RXC, RXR, TQ1 -> MedicationRequest and Medication; RXD -> MedicationDispense
// ---------------------------------------------------------------------------------------------------

/// The segments that stop a look-back for the ORC of a pharmacy order.
const ORDER_STOP: [&str; 4] = ["ORC", "PID", "MSH", "RXD"];

/// What a pharmacy order segment is: the placer's order (RXO, `original-order`) or the pharmacy's
/// encoded order (RXE, `filler-order`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum OrderKind {
    Original,
    Filler,
}

impl OrderKind {
    fn intent(self) -> &'static str {
        match self {
            OrderKind::Original => "original-order",
            OrderKind::Filler => "filler-order",
        }
    }
}

/// The id of the MedicationRequest of `kind` made from `order_seg` (an RXO or RXE) in the order `orc`:
/// from the order's placer number (else its filler number) and the drug (RXO-1 / RXE-2), so the
/// same order number with another drug is another request. `None` when the ORC carries neither number.
fn request_id(
    ctx: &Ctx<'_>,
    orc: Option<&Segment<'_>>,
    kind: OrderKind,
    order_seg: Option<&Segment<'_>>,
) -> Option<String> {
    let (placer, filler) = order_identifiers(orc);
    let i = placer.or(filler)?;
    let [system, value] = key(&i);
    let give = match kind {
        OrderKind::Original => 1,
        OrderKind::Filler => 2,
    };
    let drug = order_seg
        .and_then(|s| field_comp(s, give, 1))
        .unwrap_or_default();
    Some(ctx.id("MedicationRequest", &[kind.intent(), system, value, &drug]))
}

/// The RXO (or RXE) of the order group `seg` belongs to.
fn group_segment<'a>(ctx: &Ctx<'a>, seg: &Segment<'_>, id: &str) -> Option<Segment<'a>> {
    preceding(ctx, seg, id, &["ORC", "PID", "MSH"])
}

/// ORC-5 (order status, table 0038), else ORC-1 (order control, table 0119) -> MedicationRequest.status.
fn request_status(orc: Option<&Segment<'_>>) -> &'static str {
    let Some(orc) = orc else {
        return "unknown";
    };
    match field_comp(orc, 5, 1).as_deref() {
        Some("A" | "IP" | "SC") => return "active",
        Some("CM") => return "completed",
        Some("CA") => return "cancelled",
        Some("DC") => return "stopped",
        Some("HD") => return "on-hold",
        _ => {}
    }
    match field_comp(orc, 1, 1).as_deref() {
        Some("NW" | "OK" | "SC" | "XO" | "XX" | "RE" | "RL" | "OR" | "PA" | "RP" | "RO") => {
            "active"
        }
        Some("CA" | "CR" | "OC") => "cancelled",
        Some("DC" | "DR" | "OD") => "stopped",
        Some("HD" | "HR" | "OH") => "on-hold",
        _ => "unknown",
    }
}

/// TQ1-9 priority (table 0485) -> request priority.
fn priority(code: &str) -> Option<&'static str> {
    Some(match code {
        "S" => "stat",
        "A" => "asap",
        "R" => "routine",
        _ => return None,
    })
}

/// A v2 time unit (`s`, `min`, `h`/`hr`, `d`/`D`, `wk`, `mo`, `a`/`ann`...) as a UCUM code.
fn time_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => "s",
        "min" | "minute" | "minutes" => "min",
        "h" | "hr" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        "wk" | "w" | "week" | "weeks" => "wk",
        "mo" | "month" | "months" => "mo",
        "a" | "ann" | "y" | "yr" | "year" | "years" => "a",
        _ => return None,
    })
}

/// A number and a v2 time unit as a UCUM Duration.
fn duration(value: &str, unit: &str) -> Option<Quantity> {
    let code = time_unit(unit)?;
    let mut q = crate::quantity(value, None).ok()??;
    q.unit = Some(code.into());
    q.code = Some(code.into());
    q.system = Some("http://unitsofmeasure.org".into());
    Some(q)
}

/// A CQ field whose units are a time unit as a UCUM Duration (TQ1-6, TQ1-13); the unit's text
/// (CQ.2.2) is kept as the human-readable unit.
fn cq_duration(seg: &Segment<'_>, n: usize) -> Option<Quantity> {
    let node = field(seg, n)?;
    let value = comp(node, 1)?;
    let unit = crate::read::sub(node, 2, 1)?;
    let mut d = duration(&value, &unit)?;
    if let Some(text) = crate::read::sub(node, 2, 2) {
        d.unit = Some(text);
    }
    Some(d)
}

/// Displays of the v2 table 0335 (repeat pattern) codes with a fixed meaning.
fn repeat_pattern_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "BID" => "twice a day at institution-specified times",
        "TID" => "three times a day at institution-specified times",
        "QID" => "four times a day at institution-specified times",
        "QAM" => "in the morning at institution-specified time",
        "QPM" => "in the evening at institution-specified time",
        "QHS" => "every day before the hour of sleep",
        "QOD" => "every other day",
        "PRN" => "given as needed",
        "Once" => "one time only",
        _ => return None,
    })
}

/// FHIR `event-timing` codes a RPT.8 event may carry as sent.
const EVENT_TIMING: [&str; 22] = [
    "MORN",
    "MORN.early",
    "MORN.late",
    "NOON",
    "AFT",
    "AFT.early",
    "AFT.late",
    "EVE",
    "EVE.early",
    "EVE.late",
    "NIGHT",
    "PHS",
    "HS",
    "WAKE",
    "C",
    "CM",
    "CD",
    "CV",
    "AC",
    "ACM",
    "PC",
    "PCM",
];

/// TQ1 -> (Dosage.sequence, Dosage.timing, asNeeded text, text instruction, priority).
///
/// TQ1-1 sequence; TQ1-3 repeat pattern: code RPT.1 (table 0335), period RPT.5 in RPT.6 units, `when`
/// RPT.8 when it is an event-timing code, offset RPT.9 (RPT.10 units) in minutes; TQ1-4 explicit times
/// -> timeOfDay; TQ1-7/8 -> boundsPeriod, else TQ1-6 service duration -> boundsDuration; TQ1-13
/// occurrence duration -> duration; TQ1-14 total occurrences -> count; TQ1-10 condition text -> asNeeded;
/// TQ1-11 text instruction -> the Dosage text; TQ1-9 -> priority.
struct Tq1 {
    sequence: Option<i32>,
    timing: Option<Timing>,
    as_needed: Option<String>,
    text: Option<String>,
    priority: Option<&'static str>,
}

fn tq1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Tq1 {
    let saved = std::mem::replace(&mut ctx.at_segment, "TQ1".into());
    let mut repeat = fhir::TimingRepeat::default();
    let mut code = None;
    if let Some(rpt) = field(seg, 3).and_then(|f| f.repetition(1)) {
        let part = |c: usize| crate::read::sub(rpt, c, 1);
        if let Some(c) = part(1) {
            let sub = |s| text(rpt.component(1).and_then(|n| n.subcomponent(s)));
            let system = sub(3)
                .map(|s| coding_system_uri(&s).into_owned())
                .or_else(|| Some("http://terminology.hl7.org/CodeSystem/v2-0335".into()));
            let display = sub(2).or_else(|| repeat_pattern_display(&c).map(Into::into));
            code = Some(CodeableConcept {
                coding: vec![Coding {
                    system,
                    code: Some(c),
                    display,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        if let (Some(n), Some(u)) = (part(5), part(6).as_deref().and_then(time_unit))
            && let Ok(Some(q)) = crate::quantity(&n, None)
        {
            repeat.period = q.value;
            repeat.period_unit = Some(u.into());
        }
        if let Some(event) = part(8).filter(|e| EVENT_TIMING.contains(&e.as_str())) {
            repeat.when.push(event);
        }
        if let (Some(n), Some(u)) = (part(9), part(10)) {
            let minutes = n.parse::<f64>().ok().and_then(|v| {
                let factor = match time_unit(&u)? {
                    "s" => 1.0 / 60.0,
                    "min" => 1.0,
                    "h" => 60.0,
                    "d" => 1440.0,
                    _ => return None,
                };
                Some(v * factor)
            });
            if let Some(m) = minutes.filter(|m| *m >= 0.0 && m.fract() == 0.0 && *m < 1e9) {
                repeat.offset = Some(m as u32);
            }
        }
    }
    let time_of_day: Vec<String> = reps(seg, 4)
        .filter_map(|t| {
            let t = text(Some(t))?.replace(':', "");
            let ok = (t.len() == 4 || t.len() == 6) && t.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| {
                let s = if t.len() == 6 { &t[4..6] } else { "00" };
                format!("{}:{}:{s}", &t[0..2], &t[2..4])
            })
        })
        .collect();
    let start = ctx.dtm(field(seg, 7), ctx.at(7));
    let end = ctx.dtm(field(seg, 8), ctx.at(8));
    if start.is_some() || end.is_some() {
        repeat.bounds = Some(fhir::TimingRepeatBounds::Period(Box::new(fhir::Period {
            start,
            end,
            ..Default::default()
        })));
    } else if let Some(d) = cq_duration(seg, 6) {
        repeat.bounds = Some(fhir::TimingRepeatBounds::Duration(Box::new(d)));
    }
    if let Some(d) = cq_duration(seg, 13) {
        repeat.duration = d.value;
        repeat.duration_unit = d.code;
    }
    repeat.count = field_comp(seg, 14, 1).and_then(|c| c.parse().ok());
    let has_repeat = repeat != fhir::TimingRepeat::default();
    let timing = (has_repeat || code.is_some() || !time_of_day.is_empty()).then(|| Timing {
        code,
        repeat: has_repeat.then_some(repeat),
        ..Default::default()
    });
    let timing = timing.map(|mut t| {
        if !time_of_day.is_empty() {
            t.repeat.get_or_insert_with(Default::default).time_of_day = time_of_day;
        }
        t
    });
    let out = Tq1 {
        sequence: field_comp(seg, 1, 1).and_then(|s| s.parse().ok()),
        timing,
        as_needed: field_text(seg, 10),
        text: field_text(seg, 11),
        priority: field_comp(seg, 9, 1).as_deref().and_then(priority),
    };
    ctx.at_segment = saved;
    out
}

/// The text of a CWE used for instructions: CWE.9, else CWE.2, else CWE.1.
fn cwe_text(node: Node<'_>) -> Option<String> {
    comp(node, 9)
        .or_else(|| comp(node, 2))
        .or_else(|| comp(node, 1))
}

/// RXR (in the group of an order or dispense) -> route RXR-1, site RXR-2, method RXR-4, additional
/// instructions RXR-5 on `dosage`.
fn rxr_into(ctx: &mut Ctx<'_>, seg: &Segment<'_>, dosage: &mut Dosage) {
    let saved = std::mem::replace(&mut ctx.at_segment, "RXR".into());
    if dosage.route.is_none() {
        dosage.route = ctx.code(field(seg, 1), "RXR-1");
        dosage.site = ctx.code(field(seg, 2), "RXR-2");
        dosage.method = ctx.code(field(seg, 4), "RXR-4");
        for n in reps(seg, 5) {
            if let Some(c) = ctx.code(Some(n), "RXR-5") {
                dosage.additional_instruction.push(c);
            }
        }
    }
    ctx.at_segment = saved;
}

/// RXC (a component of a compound or IV mix) -> a Medication for the component (code RXC-2, amount
/// RXC-3 with RXC-4 units per 1) and the ingredient that refers to it (strength RXC-5/6 per RXC-8/9).
fn rxc_ingredient(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    scope: &str,
    n: usize,
) -> Option<MedicationIngredient> {
    let saved = std::mem::replace(&mut ctx.at_segment, "RXC".into());
    let code = ctx.code(field(seg, 2), "RXC-2");
    let amount = nm_quantity(ctx, seg, 3, Some(4));
    let strength = nm_quantity(ctx, seg, 5, Some(6));
    let per = nm_quantity(ctx, seg, 8, Some(9));
    ctx.at_segment = saved;
    let code = code?;
    let one = || crate::quantity("1", None).ok().flatten();
    let medication = Medication {
        id: Some(ctx.id("Medication", &["RXC", scope, &n.to_string()])),
        code: Some(code),
        amount: amount.map(|a| Ratio {
            numerator: Some(a),
            denominator: one(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = ctx.add(medication, None);
    Some(MedicationIngredient {
        item: Some(MedicationIngredientItem::Reference(Box::new(
            ctx.reference(m),
        ))),
        strength: strength.map(|s| Ratio {
            numerator: Some(s),
            denominator: per.or_else(one),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Dose and rate: a range when a maximum is sent, else a quantity.
fn dose_and_rate(
    min: Option<Quantity>,
    max: Option<Quantity>,
    rate: Option<Quantity>,
) -> Option<DosageDoseAndRate> {
    let dose = match (min, max) {
        (Some(low), Some(high)) => Some(DosageDoseAndRateDose::Range(Box::new(fhir::Range {
            low: Some(low),
            high: Some(high),
            ..Default::default()
        }))),
        (Some(q), None) | (None, Some(q)) => Some(DosageDoseAndRateDose::Quantity(Box::new(q))),
        (None, None) => None,
    };
    (dose.is_some() || rate.is_some()).then(|| DosageDoseAndRate {
        dose,
        rate: rate.map(|r| DosageDoseAndRateRate::Quantity(Box::new(r))),
        ..Default::default()
    })
}

/// The field numbers of RXO and RXE that map to the same MedicationRequest elements.
struct OrderFields {
    give_code: usize,
    amount_min: usize,
    amount_max: usize,
    units: usize,
    form: usize,
    /// Provider's instructions: RXO-6 is text for the pharmacy, RXE-7 administration instructions.
    instructions: usize,
    substitution: usize,
    dispense_amount: usize,
    dispense_units: usize,
    refills: usize,
    requester: usize,
    rate: usize,
    rate_units: usize,
    daily_dose: usize,
    indication: usize,
    /// RXO-28 dispensing interval (days); RXE has none.
    interval: Option<usize>,
    /// RXO-32 / RXE-40 dispensing pharmacy (CWE), its address (RXO-33 / RXE-41) and phone (RXO-36 /
    /// RXE-45).
    pharmacy: usize,
    pharmacy_address: usize,
    pharmacy_phone: usize,
    /// RXE-39 initial dispense amount; RXO has none.
    initial: Option<usize>,
}

const RXO_FIELDS: OrderFields = OrderFields {
    give_code: 1,
    amount_min: 2,
    amount_max: 3,
    units: 4,
    form: 5,
    instructions: 6,
    substitution: 9,
    dispense_amount: 11,
    dispense_units: 12,
    refills: 13,
    requester: 14,
    rate: 21,
    rate_units: 22,
    daily_dose: 23,
    indication: 20,
    interval: Some(28),
    pharmacy: 32,
    pharmacy_address: 33,
    pharmacy_phone: 36,
    initial: None,
};

const RXE_FIELDS: OrderFields = OrderFields {
    give_code: 2,
    amount_min: 3,
    amount_max: 4,
    units: 5,
    form: 6,
    instructions: 7,
    substitution: 9,
    dispense_amount: 10,
    dispense_units: 11,
    refills: 12,
    requester: 13,
    rate: 23,
    rate_units: 24,
    daily_dose: 19,
    indication: 27,
    interval: None,
    pharmacy: 40,
    pharmacy_address: 41,
    pharmacy_phone: 45,
    initial: Some(39),
};

/// RXO or RXE -> MedicationRequest with its Medication.
fn medication_request(ctx: &mut Ctx<'_>, seg: &Segment<'_>, kind: OrderKind) {
    let f = match kind {
        OrderKind::Original => RXO_FIELDS,
        OrderKind::Filler => RXE_FIELDS,
    };
    let orc = preceding(ctx, seg, "ORC", &ORDER_STOP);
    let (placer, filler) = order_identifiers(orc.as_ref());
    let id = request_id(ctx, orc.as_ref(), kind, Some(seg))
        .unwrap_or_else(|| ctx.message_scoped_id("MedicationRequest", kind.intent()));
    let Some(subject) = require_patient(ctx, "MedicationRequest") else {
        return;
    };

    let mut identifier: Vec<Identifier> = placer.into_iter().chain(filler.clone()).collect();
    let prescription = (kind == OrderKind::Filler)
        .then(|| field_comp(seg, 15, 1))
        .flatten()
        .map(|value| Identifier {
            value: Some(value),
            r#type: Some(CodeableConcept::text("Prescription Number")),
            ..Default::default()
        });
    identifier.extend(prescription);

    // The Medication: what is to be given (RXO-1 / RXE-2), its form, the RXC components after it.
    let mut medication = Medication {
        id: Some(ctx.id("Medication", &[&id])),
        code: ctx.code(field(seg, f.give_code), &ctx.at(f.give_code)),
        form: ctx.code(field(seg, f.form), &ctx.at(f.form)),
        ..Default::default()
    };

    let mut dosage = Dosage::default();
    let units = field(seg, f.units);
    let amount = |ctx: &mut Ctx<'_>, n: usize| -> Option<Quantity> {
        let number = field_comp(seg, n, 1)?;
        crate::quantity(&number, units).unwrap_or_else(|e| {
            let at = ctx.at(n);
            ctx.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
            None
        })
    };
    let min = amount(ctx, f.amount_min);
    let max = amount(ctx, f.amount_max);
    let rate = nm_quantity(ctx, seg, f.rate, Some(f.rate_units));
    dosage.dose_and_rate.extend(dose_and_rate(min, max, rate));
    let instructions: Vec<Node<'_>> = reps(seg, f.instructions).collect();
    match kind {
        OrderKind::Original => {
            dosage.text = instructions.first().and_then(|n| cwe_text(*n));
            dosage.patient_instruction = field(seg, 7).and_then(cwe_text);
        }
        OrderKind::Filler => {
            for n in instructions {
                if let Some(c) = ctx.code(Some(n), &ctx.at(f.instructions)) {
                    dosage.additional_instruction.push(c);
                }
            }
        }
    }
    let daily = cq(ctx, seg, f.daily_dose);
    dosage.max_dose_per_period = daily.map(|numerator| Ratio {
        numerator: Some(numerator),
        denominator: duration("1", "d"),
        ..Default::default()
    });

    let mut priority_code = None;
    let mut n_rxc = 0;
    let group = following(
        ctx,
        seg,
        &["NTE", "PRT", "TQ1", "TQ2", "RXR", "RXC", "CDO", "RXV"],
    );
    let mut tq1_seen = false;
    let mut cumulative = Vec::new();
    for s in &group {
        match s.id() {
            "RXR" => rxr_into(ctx, s, &mut dosage),
            "RXC" => {
                n_rxc += 1;
                if let Some(i) = rxc_ingredient(ctx, s, &id, n_rxc) {
                    medication.ingredient.push(i);
                }
            }
            "TQ1" if !tq1_seen => {
                tq1_seen = true;
                apply_tq1(ctx, s, &mut dosage, &mut priority_code);
            }
            "CDO" => cumulative.extend(cdo(ctx, s)),
            _ => {}
        }
    }
    // RXO: its TQ1 comes before it, right after the ORC.
    let mut extra_timings = Vec::new();
    if !tq1_seen {
        if let Some(t) = preceding(ctx, seg, "TQ1", &["ORC", "RXO", "RXE", "RXD", "PID", "MSH"]) {
            apply_tq1(ctx, &t, &mut dosage, &mut priority_code);
        } else {
            // Before v2.5 the timing is a TQ in ORC-7 (or RXE-1), one repetition per schedule.
            let (tq, at) = match orc.as_ref().map(|o| reps(o, 7).collect::<Vec<_>>()) {
                Some(r) if !r.is_empty() => (r, "ORC-7".to_owned()),
                _ if kind == OrderKind::Filler => (reps(seg, 1).collect(), String::from(ctx.at(1))),
                _ => (Vec::new(), String::new()),
            };
            for (n, node) in tq.into_iter().enumerate() {
                let (timing, text, prio) = tq_timing(ctx, node, &at);
                if n == 0 {
                    dosage.timing = timing;
                    dosage.text = join_text(dosage.text.take(), text);
                    priority_code = priority_code.or(prio);
                } else {
                    extra_timings.push(Dosage {
                        sequence: i32::try_from(n + 1).ok(),
                        timing,
                        text,
                        ..Default::default()
                    });
                }
            }
            if !extra_timings.is_empty() {
                dosage.sequence = Some(1);
            }
        }
    }
    // The NTE right after the order segment are notes on the request (order::nte leaves this type).
    let notes: Vec<fhir::Annotation> = group
        .iter()
        .filter(|s| s.id() == "NTE")
        .filter_map(|s| field_text(s, 3))
        .map(|t| fhir::Annotation {
            text: Some(t),
            ..Default::default()
        })
        .collect();

    let requester = reps(seg, f.requester)
        .find_map(|x| entities::practitioner(ctx, x))
        .or_else(|| {
            orc.as_ref()
                .and_then(|o| field(o, 12))
                .and_then(|x| entities::practitioner(ctx, x))
        });
    // With an ordering facility (ORC-21) the requester is the ordering provider acting for it, a
    // PractitionerRole (as IG `ORC[ServiceRequest]` maps ORC-12 and ORC-21).
    let requester = match orc
        .as_ref()
        .and_then(|o| crate::segments::order::ordering_facility(ctx, o))
    {
        Some(facility) => crate::segments::order::ordering_role(ctx, requester, facility),
        None => requester,
    };
    let recorder = orc
        .as_ref()
        .and_then(|o| field(o, 10))
        .and_then(|x| entities::practitioner(ctx, x));
    let authored_on = match orc.as_ref().and_then(|o| field(o, 9)) {
        Some(n) => ctx.dtm(Some(n), "ORC-9"),
        None => None,
    };

    let substitution = field_comp(seg, f.substitution, 1).map(|c| MedicationRequestSubstitution {
        allowed: Some(MedicationRequestSubstitutionAllowed::CodeableConcept(
            Box::new(CodeableConcept::coding(
                "http://terminology.hl7.org/CodeSystem/v2-0161",
                c,
                None,
            )),
        )),
        ..Default::default()
    });
    let pharmacy = field(seg, f.pharmacy).and_then(|cwe| pharmacy(ctx, cwe));
    if let Some(o) = pharmacy {
        let address: Vec<fhir::Address> = reps(seg, f.pharmacy_address)
            .filter_map(crate::xad)
            .collect();
        let telecom: Vec<fhir::ContactPoint> =
            reps(seg, f.pharmacy_phone).filter_map(crate::xtn).collect();
        if let Some(org) = ctx.get_mut::<Organization>(o) {
            if org.address.is_empty() {
                org.address = address;
            }
            if org.telecom.is_empty() {
                org.telecom = telecom;
            }
        }
    }
    let dispense = MedicationRequestDispenseRequest {
        quantity: nm_quantity(ctx, seg, f.dispense_amount, Some(f.dispense_units)),
        number_of_repeats_allowed: field_comp(seg, f.refills, 1).and_then(|r| r.parse().ok()),
        initial_fill: f
            .initial
            .and_then(|n| nm_quantity(ctx, seg, n, Some(f.dispense_units)))
            .map(|q| MedicationRequestInitialFill {
                quantity: Some(q),
                ..Default::default()
            }),
        dispense_interval: f
            .interval
            .and_then(|n| field_comp(seg, n, 1))
            .and_then(|d| duration(&d, "d"))
            .map(|mut d| {
                d.unit = Some("days".into());
                d
            }),
        performer: reference(ctx, pharmacy),
        ..Default::default()
    };
    let has_dispense = dispense != MedicationRequestDispenseRequest::default();

    let based_on = match kind {
        OrderKind::Filler => request_id(
            ctx,
            orc.as_ref(),
            OrderKind::Original,
            group_segment(ctx, seg, "RXO").as_ref(),
        )
        .and_then(|rid| ctx.existing("MedicationRequest", &rid))
        .map(|i| ctx.reference(i))
        .into_iter()
        .collect(),
        OrderKind::Original => Vec::new(),
    };

    let has_medication = medication.code.is_some() || !medication.ingredient.is_empty();
    let medication = has_medication.then(|| {
        let m = ctx.add(medication, None);
        MedicationRequestMedication::Reference(Box::new(ctx.reference(m)))
    });
    let request = MedicationRequest {
        id: Some(id),
        identifier,
        status: Some(request_status(orc.as_ref()).into()),
        intent: Some(kind.intent().into()),
        priority: priority_code.map(str::to_owned),
        medication,
        subject,
        encounter: ctx.encounter_ref(),
        authored_on,
        requester: reference(ctx, requester),
        recorder: reference(ctx, recorder),
        reason_code: reps(seg, f.indication)
            .filter_map(|n| ctx.code(Some(n), &ctx.at(f.indication)))
            .collect(),
        based_on,
        dosage_instruction: (dosage != Dosage::default())
            .then_some(dosage)
            .into_iter()
            .chain(extra_timings)
            .chain(cumulative)
            .collect(),
        note: notes,
        dispense_request: has_dispense.then_some(dispense),
        substitution,
        ..Default::default()
    };
    let identity = match kind {
        OrderKind::Filler => filler.filter(|i| i.system.is_some()),
        OrderKind::Original => None,
    };
    let i = ctx.add(request, identity.as_ref());
    ctx.last = Some(i);
}

/// `before` and `after` joined with a space, either alone when the other is absent.
fn join_text(before: Option<String>, after: Option<String>) -> Option<String> {
    match (before, after) {
        (Some(b), Some(a)) => Some(format!("{b} {a}")),
        (b, a) => b.or(a),
    }
}

/// A TQ (ORC-7, RXE-1: timing before v2.5) -> (Timing, text, priority): repeat pattern TQ.2.1 (table 0335)
/// with explicit times TQ.2.2 as timeOfDay, duration TQ.3 (`S50` is 50 seconds: unit letter S, M, H, D, W,
/// L months, then the number), bounds TQ.4-5, priority TQ.6 (S stat, A asap, R routine), text TQ.8,
/// total occurrences TQ.12.
pub(crate) fn tq_timing(
    ctx: &mut Ctx<'_>,
    tq: Node<'_>,
    at: &str,
) -> (Option<Timing>, Option<String>, Option<&'static str>) {
    let mut repeat = fhir::TimingRepeat::default();
    let code = crate::read::sub(tq, 2, 1).map(|c| {
        let display = repeat_pattern_display(&c);
        CodeableConcept::coding("http://terminology.hl7.org/CodeSystem/v2-0335", c, display)
    });
    if let Some(t) = crate::read::sub(tq, 2, 2) {
        let digits = t.replace(':', "");
        if (digits.len() == 4 || digits.len() == 6) && digits.bytes().all(|b| b.is_ascii_digit()) {
            let secs = if digits.len() == 6 {
                &digits[4..6]
            } else {
                "00"
            };
            repeat
                .time_of_day
                .push(format!("{}:{}:{secs}", &digits[0..2], &digits[2..4]));
        }
    }
    if let Some(d) = comp(tq, 3) {
        let unit = d
            .get(..1)
            .and_then(|u| match u.to_ascii_uppercase().as_str() {
                "S" => Some("s"),
                "M" => Some("min"),
                "H" => Some("h"),
                "D" => Some("d"),
                "W" => Some("wk"),
                "L" => Some("mo"),
                _ => None,
            });
        if let (Some(u), Some(n)) = (unit, d.get(1..))
            && let Ok(Some(q)) = crate::quantity(n, None)
        {
            repeat.duration = q.value;
            repeat.duration_unit = Some(u.into());
        }
    }
    let start = ctx.dtm(tq.component(4), at);
    let end = ctx.dtm(tq.component(5), at);
    if start.is_some() || end.is_some() {
        repeat.bounds = Some(fhir::TimingRepeatBounds::Period(Box::new(fhir::Period {
            start,
            end,
            ..Default::default()
        })));
    }
    repeat.count = comp(tq, 12).and_then(|c| c.parse().ok());
    let has_repeat = repeat != fhir::TimingRepeat::default();
    let timing = (has_repeat || code.is_some()).then(|| Timing {
        code,
        repeat: has_repeat.then_some(repeat),
        ..Default::default()
    });
    let prio = comp(tq, 6).as_deref().and_then(priority);
    (timing, comp(tq, 8), prio)
}

/// CDO (cumulative dosage limit) -> a Dosage with the limit CDO-3: per the CDO-4 period when its unit is a
/// time unit (maxDosePerPeriod), over the patient's lifetime when CDO-4's unit is `PL`
/// (maxDosePerLifetime); another CDO-4 unit is an issue.
fn cdo(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<Dosage> {
    let saved = std::mem::replace(&mut ctx.at_segment, "CDO".into());
    let limit = cq(ctx, seg, 3);
    let period = field(seg, 4);
    ctx.at_segment = saved;
    let limit = limit?;
    let unit = period.and_then(|p| crate::read::sub(p, 2, 1));
    match unit.as_deref() {
        Some("PL") => Some(Dosage {
            max_dose_per_lifetime: Some(limit),
            ..Default::default()
        }),
        Some(u) if time_unit(u).is_some() => {
            let n = period
                .and_then(|p| comp(p, 1))
                .unwrap_or_else(|| "1".into());
            Some(Dosage {
                max_dose_per_period: Some(Ratio {
                    numerator: Some(limit),
                    denominator: duration(&n, u),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        _ => {
            ctx.issue(
                Severity::Warning,
                "CDO-4",
                IssueKind::Invalid,
                "cumulative dosage period without a known time unit: limit left out".into(),
            );
            None
        }
    }
}

/// Puts what a TQ1 says on `dosage` and the request's priority.
fn apply_tq1(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    dosage: &mut Dosage,
    priority: &mut Option<&'static str>,
) {
    let t = tq1(ctx, seg);
    dosage.sequence = t.sequence;
    dosage.timing = t.timing;
    if let Some(a) = t.as_needed {
        dosage.as_needed = Some(DosageAsNeeded::CodeableConcept(Box::new(
            CodeableConcept::text(a),
        )));
    }
    dosage.text = join_text(dosage.text.take(), t.text);
    *priority = t.priority;
}

/// A dispensing pharmacy (CWE: RXO-32, RXE-40) -> Organization: name CWE.2 (else CWE.1), identifier
/// CWE.1 in the CWE.3 system when a name is also sent.
fn pharmacy(ctx: &mut Ctx<'_>, cwe: Node<'_>) -> Option<usize> {
    let code = comp(cwe, 1);
    let name = comp(cwe, 2).or_else(|| code.clone())?;
    let identifier = comp(cwe, 2).and(code).map(|c| Identifier {
        value: Some(c),
        system: comp(cwe, 3).map(|s| coding_system_uri(&s).into_owned()),
        ..Default::default()
    });
    let id = match &identifier {
        Some(i) => ctx.id("Organization", &key(i)),
        None => ctx.id("Organization", &["name", &name]),
    };
    let org = Organization {
        id: Some(id),
        name: Some(name),
        identifier: identifier.clone().into_iter().collect(),
        ..Default::default()
    };
    let conditional = identifier.filter(|i| i.system.is_some());
    Some(ctx.add(org, conditional.as_ref()))
}

/// RXO -> MedicationRequest (`original-order`, IG `RXO[MedicationRequest]`) and a Medication.
///
/// - identifier ORC-2/3; id from the placer (else filler) order number and the intent;
/// - status from ORC-5 (table 0038), else ORC-1 (table 0119); authoredOn ORC-9; recorder ORC-10;
///   requester RXO-14, else ORC-12;
/// - medication: a Medication with code RXO-1, form RXO-5, and an ingredient per RXC of the order;
/// - dosageInstruction: dose RXO-2 (a range up to RXO-3) in RXO-4 units, rate RXO-21/22, text RXO-6,
///   patientInstruction RXO-7, maxDosePerPeriod RXO-23 per day, route/site/method from RXR, timing
///   from TQ1 (see [`Tq1`]); priority TQ1-9;
/// - dispenseRequest: quantity RXO-11/12, numberOfRepeatsAllowed RXO-13; substitution RXO-9
///   (table 0161); reasonCode RXO-20.
pub fn rxo(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    medication_request(ctx, seg, OrderKind::Original);
}

/// RXE -> MedicationRequest (`filler-order`) and a Medication, basedOn the RXO's MedicationRequest.
///
/// As [`rxo`] with the RXE fields: give code RXE-2, amount RXE-3/4/5, form RXE-6, administration
/// instructions RXE-7 -> additionalInstruction, substitution RXE-9, dispense RXE-10/11, refills RXE-12,
/// requester RXE-13, prescription number RXE-15 -> identifier, total daily dose RXE-19, patient
/// instructions RXE-21, rate RXE-23/24, indication RXE-27; its TQ1, RXR and RXC follow it.
pub fn rxe(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    medication_request(ctx, seg, OrderKind::Filler);
}

/// RXD -> MedicationDispense.
///
/// - medication: a Medication with code RXD-2 (and the supplementary codes RXD-25 as further codings),
///   form RXD-6, batch lot RXD-18 and expiration RXD-19; quantity RXD-4/5; whenHandedOver RXD-3;
/// - status `completed` (the message reports a dispense that took place) when RXD-3 is valued, else
///   `unknown`;
/// - authorizingPrescription: the RXE's MedicationRequest of the same order, with the prescription number
///   RXD-7 as its identifier (a logical reference when the order is not in the message); performer RXD-10;
///   note RXD-9; type RXD-33 (table 0484); location RXD-30/31 (the dispensing pharmacy); dosage: route
///   from the RXR after it, maxDosePerPeriod RXD-12 (total daily dose) per day;
/// - id from the prescription number, the dispense sub-id RXD-1 and the drug, else the message.
pub fn rxd(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let orc = preceding(ctx, seg, "ORC", &["ORC", "PID", "MSH"]);
    let prescription = field_comp(seg, 7, 1);
    let counter = field_comp(seg, 1, 1).unwrap_or_default();
    let drug = field_comp(seg, 2, 1).unwrap_or_default();
    let id = match &prescription {
        Some(p) => ctx.id("MedicationDispense", &[p, &counter, &drug]),
        None => ctx.message_scoped_id("MedicationDispense", ""),
    };
    let subject = ctx.patient_ref();
    let mut code = ctx.code(field(seg, 2), &ctx.at(2));
    for n in reps(seg, 25) {
        if let Some(extra) = ctx.code(Some(n), &ctx.at(25)) {
            match &mut code {
                Some(c) => c.coding.extend(extra.coding),
                None => code = Some(extra),
            }
        }
    }
    let lot = field_comp(seg, 18, 1);
    let expiration = ctx.dtm(field(seg, 19), ctx.at(19));
    let medication = Medication {
        id: Some(ctx.id("Medication", &[&id])),
        code,
        form: ctx.code(field(seg, 6), &ctx.at(6)),
        batch: (lot.is_some() || expiration.is_some()).then(|| fhir::MedicationBatch {
            lot_number: lot,
            expiration_date: expiration,
            ..Default::default()
        }),
        ..Default::default()
    };
    let medication = (medication.code.is_some()).then(|| {
        let m = ctx.add(medication, None);
        MedicationDispenseMedication::Reference(Box::new(ctx.reference(m)))
    });
    let handed_over = ctx.dtm(field(seg, 3), ctx.at(3));
    let mut dosage = Dosage::default();
    for s in following(ctx, seg, &["NTE", "PRT", "RXR", "RXC", "CDO"]) {
        if s.id() == "RXR" {
            rxr_into(ctx, &s, &mut dosage);
        }
    }
    dosage.max_dose_per_period = cq(ctx, seg, 12).map(|numerator| Ratio {
        numerator: Some(numerator),
        denominator: duration("1", "d"),
        ..Default::default()
    });
    let order = request_id(
        ctx,
        orc.as_ref(),
        OrderKind::Filler,
        group_segment(ctx, seg, "RXE").as_ref(),
    )
    .and_then(|rid| ctx.existing("MedicationRequest", &rid));
    let authorizing = prescription_reference(ctx, order, prescription);
    let mut performer = Vec::new();
    for x in reps(seg, 10) {
        if let Some(p) = entities::practitioner(ctx, x) {
            performer.push(MedicationDispensePerformer {
                actor: ctx.reference(p),
                ..Default::default()
            });
        }
    }
    let location = field(seg, 30).and_then(|cwe| {
        let name = comp(cwe, 2).or_else(|| comp(cwe, 1))?;
        let identifier = comp(cwe, 2).and(comp(cwe, 1)).map(|c| Identifier {
            value: Some(c),
            system: comp(cwe, 3).map(|s| coding_system_uri(&s).into_owned()),
            ..Default::default()
        });
        let location = fhir::Location {
            id: Some(ctx.id("Location", &["pharmacy", &cwe.decoded()])),
            name: Some(name),
            identifier: identifier.into_iter().collect(),
            address: field(seg, 31).and_then(crate::xad),
            ..Default::default()
        };
        Some(ctx.add(location, None))
    });
    let r#type = ctx.code(field(seg, 33), &ctx.at(33)).map(|mut c| {
        for coding in &mut c.coding {
            if coding.system.is_none() {
                coding.system = Some("http://terminology.hl7.org/CodeSystem/v2-0484".into());
            }
        }
        c
    });
    let dispense = MedicationDispense {
        id: Some(id),
        status: Some(
            if handed_over.is_some() {
                "completed"
            } else {
                "unknown"
            }
            .into(),
        ),
        medication,
        subject,
        context: ctx.encounter_ref(),
        performer,
        authorizing_prescription: authorizing.into_iter().collect(),
        r#type,
        quantity: nm_quantity(ctx, seg, 4, Some(5)),
        when_handed_over: handed_over,
        location: reference(ctx, location),
        note: reps(seg, 9)
            .filter_map(cwe_text)
            .map(|t| fhir::Annotation {
                text: Some(t),
                ..Default::default()
            })
            .collect(),
        dosage_instruction: (dosage != Dosage::default())
            .then_some(dosage)
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let i = ctx.add(dispense, None);
    ctx.last = Some(i);
}

/// The prescription a dispense is authorized by: the MedicationRequest at `order` when it is in the
/// bundle, with the prescription number as its identifier (a logical reference when it is not).
fn prescription_reference(
    ctx: &Ctx<'_>,
    order: Option<usize>,
    prescription: Option<String>,
) -> Option<Reference> {
    if order.is_none() && prescription.is_none() {
        return None;
    }
    let mut r = order.map(|i| ctx.reference(i)).unwrap_or_default();
    r.r#type = Some("MedicationRequest".into());
    r.identifier = prescription.map(|p| {
        Box::new(Identifier {
            value: Some(p),
            r#type: Some(CodeableConcept::text("Prescription Number")),
            ..Default::default()
        })
    });
    Some(r)
}

/// FT1 with an NDC code (FT1-29) -> MedicationDispense (status `unknown`): the drug charged for was
/// dispensed under prescription FT1-42, quantity FT1-43 (CQ). The charge itself is not converted (see
/// [`crate::segments::financial::ft1`]).
pub fn ft1_dispense(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(code) = ctx.code(field(seg, 29), &ctx.at(29)) else {
        return;
    };
    let prescription = field_comp(seg, 42, 1);
    let set_id = field_comp(seg, 1, 1).unwrap_or_default();
    let id = match &prescription {
        Some(p) => ctx.id("MedicationDispense", &["FT1", p, &set_id]),
        None => ctx.message_scoped_id("MedicationDispense", "FT1"),
    };
    let authorizing = prescription_reference(ctx, None, prescription);
    let dispense = MedicationDispense {
        id: Some(id),
        status: Some("unknown".into()),
        medication: Some(MedicationDispenseMedication::CodeableConcept(Box::new(
            code,
        ))),
        subject: ctx.patient_ref(),
        context: ctx.encounter_ref(),
        authorizing_prescription: authorizing.into_iter().collect(),
        quantity: cq(ctx, seg, 43),
        ..Default::default()
    };
    ctx.add(dispense, None);
}
