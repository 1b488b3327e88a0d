//! ORC, OBR, TQ1 -> ServiceRequest and DiagnosticReport; OBX -> Observation; NTE -> notes on the resource
//! before it; SPM -> Specimen; AL1, IAM -> AllergyIntolerance; DG1 -> Condition (and the visit's
//! diagnosis); PR1 -> Procedure; PRT -> PractitionerRole linked to the resource before it.
//!
//! After the IG segment maps `ORC[ServiceRequest]`, `OBR[ServiceRequest]`, `OBR[DiagnosticReport]`,
//! `TQ1[ServiceRequest]`, `OBX[Observation]`, `OBX[Observation-Component]`, `NTE[ServiceRequest]`,
//! `NTE[Observation]`, `SPM[Specimen]`, `AL1[AllergyIntolerance]`, `IAM[AllergyIntolerance]`,
//! `DG1[Condition]`, `PR1[Procedure]` and `PRT[PractitionerRole]`, and the message maps for how they
//! nest (ORU_R01, OML_O21, ORM_O01, ADT_A01).
//!
//! Order groups: an ORC and the OBR it belongs to are one order, one ServiceRequest. v2.5 puts ORC before
//! OBR (ORM, OML, ORU), OUL puts OBR before its ORC; [`order_group`] pairs them either way, so the order's
//! identity (placer number ORC-2 else OBR-2, filler number ORC-3 else OBR-3) is known at whichever comes
//! first.
//!
//! Ids are deterministic: a ServiceRequest by its placer order number (else filler), a DiagnosticReport by
//! its filler order number (else placer), an Observation by its report (or order) plus OBX-1 and the OBX-3
//! code, so a corrected result (OBX-11 `C`) rewrites the same Observation. Only what has no business
//! identity at all is scoped to the message.

use fhir::{
    AllergyIntolerance, AllergyIntoleranceOnset, AllergyIntoleranceReaction, Annotation,
    AnnotationAuthor, Attachment, ChargeItem, CodeableConcept, Coding, Condition, ConditionOnset,
    Device, DiagnosticReport, DiagnosticReportEffective, Encounter, EncounterDiagnosis,
    EncounterParticipant, EpisodeOfCare, EpisodeOfCareDiagnosis, Extension, ExtensionValue,
    Identifier, Immunization, Observation, ObservationComponent, ObservationComponentValue,
    ObservationEffective, ObservationReferenceRange, ObservationValue, Patient, Period,
    PractitionerRole, Procedure, ProcedurePerformed, ProcedurePerformer, Quantity, Range, Ratio,
    Reference, ServiceRequest, ServiceRequestOccurrence, ServiceRequestQuantity, Specimen,
    SpecimenCollection, SpecimenCollectionCollected, SpecimenContainer, SpecimenContainerAdditive,
    Timing, TimingRepeat, TimingRepeatBounds,
};
use hl7v2::{Level, Node, Segment};

use crate::context::{At, Coded, Ctx, IssueKind, Severity};
use crate::entities;
use crate::read::{field, field_comp, field_text, present, reps, text};

const V2_0203: &str = crate::V2_0203_SYSTEM;
const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";
const V3_INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const SNOMED: &str = "http://snomed.info/sct";

// ---------------------------------------------------------------------------------------------------
// Reading helpers
// ---------------------------------------------------------------------------------------------------

/// Part `n` of a composite whether it is a field or repetition (parts are components) or a component
/// inside another composite (parts are subcomponents), e.g. the EI inside an EIP.
fn part(node: Node<'_>, n: usize) -> Option<String> {
    if node.level() == Level::Component {
        text(node.subcomponent(n))
    } else {
        text(node.component(n).and_then(|c| c.subcomponent(1)))
    }
}

/// EI (entity id, namespace id, universal id, universal id type) -> Identifier: value EI.1, system the
/// universal id as a URI (`urn:oid:` for ISO or any universal id in OID form, `urn:uuid:` for UUID, as
/// given for URI), else the namespace id as given; what a `uri` cannot carry (a space) is percent-encoded
/// ([`crate::vocab::local_system`]). `type` is a v2 table 0203 code (`PLAC`, `FILL`) when given.
fn ei(node: Node<'_>, kind: Option<&str>) -> Option<Identifier> {
    if !present(node) {
        return None;
    }
    let value = part(node, 1)?;
    let universal = part(node, 3);
    let system = match (universal, part(node, 4).as_deref()) {
        (Some(u), Some("ISO")) => Some(["urn:oid:", &u].concat()),
        (Some(u), Some("UUID" | "GUID")) => Some(["urn:uuid:", &u].concat()),
        (Some(u), Some("URI")) => Some(u),
        // An OID whatever EI.4 claims (a CLIA number, DNS name or local id is never dotted digits).
        (Some(u), _) if is_oid(&u) => Some(["urn:oid:", &u].concat()),
        (u, _) => part(node, 2).or(u),
    }
    .map(|s| crate::vocab::local_system(&s).into_owned());
    Some(Identifier {
        value: Some(value),
        system,
        r#type: kind.map(|k| CodeableConcept::coding(V2_0203, k, None)),
        ..Default::default()
    })
}

/// Dotted decimal arcs (at least two): the form of an ISO OID.
fn is_oid(u: &str) -> bool {
    u.contains('.')
        && u.split('.')
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
}

/// The identity parts of an identifier for [`Ctx::id`].
fn key(i: &Identifier) -> [&str; 2] {
    [
        i.system.as_deref().unwrap_or(""),
        i.value.as_deref().unwrap_or(""),
    ]
}

/// The identifier as a conditional-update identity when it has a system.
fn conditional(i: Option<&Identifier>) -> Option<&Identifier> {
    i.filter(|i| i.system.is_some())
}

/// An id for something with no business identity, unique to this message and `discriminator` (stable
/// across the segments of one group, unlike [`Ctx::message_scoped_id`], which includes the segment).
fn scoped_id(ctx: &Ctx<'_>, resource_type: &str, discriminator: &str) -> String {
    let m = ctx.message;
    let app = m.sending_application().unwrap_or_default();
    let facility = m.sending_facility().unwrap_or_default();
    let control = m.control_id().unwrap_or_default();
    ctx.id(resource_type, &[&app, &facility, &control, discriminator])
}

/// The id of the resource at `index` (every added resource has one).
fn id_of<'c>(ctx: &'c Ctx<'_>, index: usize) -> &'c str {
    ctx.resource(index).and_then(|r| r.id()).unwrap_or_default()
}

fn type_of(ctx: &Ctx<'_>, index: usize) -> &'static str {
    ctx.resource(index).map(|r| r.resource_type()).unwrap_or("")
}

/// FT/TX text of all repetitions of field `n`, joined by line breaks.
fn long_text(seg: &Segment<'_>, n: usize) -> Option<String> {
    let parts: Vec<String> = reps(seg, n).filter_map(|r| text(Some(r))).collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// A v2 table code (an ID field, or CWE.1) -> `CodeableConcept` in the table's system
/// (`http://terminology.hl7.org/CodeSystem/v2-<table>`).
fn table_concept(code: String, table: &str, display: Option<String>) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding {
            system: Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}")),
            code: Some(code),
            display,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Codings of `c` that were sent without a coding system are codes of the field's v2 table (the field's
/// vocabulary in the IG): they get `http://terminology.hl7.org/CodeSystem/v2-<table>`.
fn in_table(mut c: CodeableConcept, table: &str) -> CodeableConcept {
    for coding in &mut c.coding {
        if coding.system.is_none() && coding.code.is_some() {
            coding.system = Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
        }
    }
    c
}

/// True for the result structures, where OBR also reports (DiagnosticReport).
fn is_result_message(ctx: &Ctx<'_>) -> bool {
    ctx.code == "ORU" || ctx.code == "OUL"
}

/// XCN -> PractitionerRole for `practitioner` (via [`entities::practitioner`]) with a role `code` and an
/// `organization`; the id comes from its three parts, so one person in one role is one resource.
fn role(
    ctx: &mut Ctx<'_>,
    practitioner: Option<usize>,
    code: Option<CodeableConcept>,
    organization: Option<usize>,
) -> Option<usize> {
    if practitioner.is_none() && organization.is_none() {
        return None;
    }
    let p = practitioner.map(|i| id_of(ctx, i)).unwrap_or_default();
    let o = organization.map(|i| id_of(ctx, i)).unwrap_or_default();
    let c = code
        .as_ref()
        .and_then(|c| c.coding.first())
        .and_then(|c| c.code.clone())
        .unwrap_or_default();
    let resource = PractitionerRole {
        id: Some(ctx.id("PractitionerRole", &[p, &c, o])),
        practitioner: practitioner.map(|i| ctx.reference(i)),
        organization: organization.map(|i| ctx.reference(i)),
        code: code.into_iter().collect(),
        ..Default::default()
    };
    Some(ctx.add(resource, None))
}

/// CNN (an NDL's person, as subcomponents of component 1) -> Practitioner: id CNN.1, family CNN.2,
/// given CNN.3-4, suffix CNN.5, prefix CNN.6, degree CNN.7, system from CNN.9-11.
fn cnn_practitioner(ctx: &mut Ctx<'_>, ndl: Node<'_>) -> Option<usize> {
    let cnn = ndl.component(1)?;
    let s = |n| text(cnn.subcomponent(n));
    let value = s(1);
    let family = s(2);
    let given: Vec<String> = [3, 4].into_iter().filter_map(s).collect();
    if value.is_none() && family.is_none() && given.is_empty() {
        return None;
    }
    let system = match (s(10), s(11).as_deref()) {
        (Some(u), Some("ISO")) => Some(["urn:oid:", &u].concat()),
        (u, _) => s(9).or(u),
    }
    .map(|s| crate::vocab::local_system(&s).into_owned());
    let identifier = value.map(|v| Identifier {
        value: Some(v),
        system,
        ..Default::default()
    });
    let name = (family.is_some() || !given.is_empty()).then(|| fhir::HumanName {
        family,
        given,
        prefix: s(6).into_iter().collect(),
        suffix: [5, 7].into_iter().filter_map(s).collect(),
        ..Default::default()
    });
    let id = match &identifier {
        Some(i) => ctx.id("Practitioner", &key(i)),
        None => ctx.id("Practitioner", &["name", &cnn.decoded()]),
    };
    let resource = fhir::Practitioner {
        id: Some(id),
        identifier: identifier.clone().into_iter().collect(),
        name: name.into_iter().collect(),
        ..Default::default()
    };
    Some(ctx.add(resource, conditional(identifier.as_ref())))
}

/// NDL (OBR-32..35) -> a PractitionerRole: practitioner the CNN (component 1), period NDL.2-3, location
/// NDL.4-11 (point of care, room, bed, facility, status, type, building, floor: a PL's components).
fn ndl_role(ctx: &mut Ctx<'_>, ndl: Node<'_>, code: Option<CodeableConcept>) -> Option<usize> {
    let p = cnn_practitioner(ctx, ndl)?;
    let i = role(ctx, Some(p), code, None)?;
    let start = ctx.dtm(ndl.component(2), ctx.at_segment.clone());
    let end = ctx.dtm(ndl.component(3), ctx.at_segment.clone());
    let location = ndl_location(ctx, ndl).map(|l| ctx.reference(l));
    if let Some(r) = ctx.get_mut::<PractitionerRole>(i) {
        if r.period.is_none() && (start.is_some() || end.is_some()) {
            r.period = Some(Period {
                start,
                end,
                ..Default::default()
            });
        }
        if r.location.is_empty() {
            r.location.extend(location);
        }
    }
    Some(i)
}

/// The place of an NDL (components 4-11, laid out as a PL's 1-8) -> Locations via
/// [`entities::location`], so a room named here and in a PL is one Location. The components are read
/// as a PL field of a one-segment message with the message's own delimiters.
fn ndl_location(ctx: &mut Ctx<'_>, ndl: Node<'_>) -> Option<usize> {
    let msh = ctx.message.segment(1)?.raw();
    let fs = *msh.get(3)?;
    let enc_end = 4 + msh.get(4..)?.iter().position(|&b| b == fs)?;
    let cs = *msh.get(4)?;
    let raw = ndl.raw();
    let mut parts = raw.split(|&b| b == cs).skip(3).peekable();
    parts.peek()?;
    let pl: Vec<u8> = parts.collect::<Vec<_>>().join(&cs);
    if pl.iter().all(|&b| b == cs) {
        return None;
    }
    let mut bytes = msh[..=enc_end].to_vec();
    bytes.extend_from_slice(b"\rPV1");
    bytes.extend_from_slice(&[fs, fs, fs]);
    bytes.extend_from_slice(&pl);
    let parsed = hl7v2::parse(&bytes).ok()?;
    let pv1 = parsed.segment(2)?;
    let node = pv1.field(3)?;
    entities::location(ctx, node)
}

// ---------------------------------------------------------------------------------------------------
// Order groups and identities
// ---------------------------------------------------------------------------------------------------

/// One order: its ORC and OBR segment indexes (1-based, as [`Segment::index`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Group {
    orc: Option<usize>,
    obr: Option<usize>,
}

/// The order group segment `index` (an ORC or OBR) belongs to. An ORC pairs with the next OBR unless
/// another ORC comes first (ORC first: ORM, OML, ORU); an OBR without an ORC pairs with an ORC right
/// after it, with only PRT, NTE, TQ1, TQ2 or CTD between (OBR first: OUL).
fn order_group(ctx: &Ctx<'_>, index: usize) -> Group {
    let mut groups: Vec<Group> = Vec::new();
    let mut open: Option<usize> = None;
    for seg in ctx.message.segments() {
        let i = seg.index();
        match seg.id() {
            "ORC" => match open.filter(|&g| groups[g].orc.is_none() && groups[g].obr.is_some()) {
                Some(g) => {
                    groups[g].orc = Some(i);
                    open = None;
                }
                None => {
                    groups.push(Group {
                        orc: Some(i),
                        obr: None,
                    });
                    open = Some(groups.len() - 1);
                }
            },
            "OBR" => match open.filter(|&g| groups[g].obr.is_none() && groups[g].orc.is_some()) {
                Some(g) => {
                    groups[g].obr = Some(i);
                    open = None;
                }
                None => {
                    groups.push(Group {
                        orc: None,
                        obr: Some(i),
                    });
                    open = Some(groups.len() - 1);
                }
            },
            "PRT" | "NTE" | "TQ1" | "TQ2" | "CTD" => {}
            // An ORC waits for its OBR over anything but another order (some senders put the order's
            // observations or documents between them).
            _ if open.is_some_and(|g| groups[g].obr.is_none()) => {}
            _ => open = None,
        }
        if i > index
            && groups
                .iter()
                .any(|g| g.orc == Some(index) || g.obr == Some(index))
        {
            // The partner, if any, is at most a few segments on; keep scanning until the group closes.
            if open.is_none() {
                break;
            }
        }
    }
    groups
        .into_iter()
        .find(|g| g.orc == Some(index) || g.obr == Some(index))
        .unwrap_or_default()
}

/// The placer and filler order numbers of a group (ORC-2/3, else OBR-2/3), typed `PLAC` and `FILL`.
fn order_numbers(ctx: &Ctx<'_>, g: Group) -> (Option<Identifier>, Option<Identifier>) {
    let m = ctx.message;
    let orc = g.orc.and_then(|i| m.segment(i));
    let obr = g.obr.and_then(|i| m.segment(i));
    let number = |n: usize, kind: &str| {
        orc.as_ref()
            .and_then(|s| field(s, n))
            .or_else(|| obr.as_ref().and_then(|s| field(s, n)))
            .and_then(|f| ei(f, Some(kind)))
    };
    (number(2, "PLAC"), number(3, "FILL"))
}

/// True when the order is a pharmacy or immunization order (an RXO, RXE, RXD or RXG follows its ORC):
/// those map to MedicationRequest and friends, not ServiceRequest.
fn is_pharmacy_order(ctx: &Ctx<'_>, g: Group) -> bool {
    let Some(orc) = g.orc else { return false };
    if ctx.code == "VXU" {
        return false;
    }
    ctx.message
        .segments()
        .skip(orc)
        .take_while(|s| !matches!(s.id(), "ORC" | "OBR"))
        .any(|s| matches!(s.id(), "RXO" | "RXE" | "RXD" | "RXG"))
}

/// The ServiceRequest of order group `g`, added with its identity if this is the group's first segment.
fn service_request(ctx: &mut Ctx<'_>, g: Group) -> usize {
    let (placer, filler) = order_numbers(ctx, g);
    let id = match (&placer, &filler) {
        (Some(p), _) => ctx.id("ServiceRequest", &key(p)),
        (None, Some(f)) => ctx.id("ServiceRequest", &["filler", key(f)[0], key(f)[1]]),
        (None, None) => {
            let first = g.orc.or(g.obr).unwrap_or_default();
            scoped_id(ctx, "ServiceRequest", &format!("order@{first}"))
        }
    };
    let identity = conditional(placer.as_ref().or(filler.as_ref())).cloned();
    let intent = if ctx.structure == "ORU_R01" {
        "filler-order"
    } else {
        "order"
    };
    let resource = ServiceRequest {
        id: Some(id),
        identifier: placer.into_iter().chain(filler).collect(),
        status: Some("unknown".into()),
        intent: Some(intent.into()),
        subject: ctx.patient_ref().unwrap_or_default(),
        encounter: ctx.encounter_ref(),
        ..Default::default()
    };
    ctx.add(resource, identity.as_ref())
}

// ---------------------------------------------------------------------------------------------------
// ORC, OBR, TQ1
// ---------------------------------------------------------------------------------------------------

/// v2 table 0038 order status (ORC-5) -> `request-status` (IG OrderStatus).
fn order_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "CA" | "DC" | "RP" => "revoked",
        "CM" => "completed",
        "ER" => "entered-in-error",
        "HD" => "on-hold",
        "IP" | "SC" => "active",
        _ => return None,
    })
}

/// v2 table 0119 order control (ORC-1) -> `request-status` (IG OrderControlCode[ServiceRequest.status]).
fn order_control_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "AF" | "CA" | "HD" | "NW" | "OK" | "PR" | "PY" | "RL" | "RO" | "RQ" => "active",
        "CR" | "DC" | "DF" | "DR" | "OC" | "OD" => "revoked",
        "FU" => "completed",
        "HR" | "OH" => "on-hold",
        _ => return None,
    })
}

/// v2 table 0027 priority -> `request-priority` (IG ExtendedPriorityCodes).
fn priority(code: &str) -> Option<&'static str> {
    Some(match code {
        "S" => "stat",
        "A" => "asap",
        "R" => "routine",
        _ => return None,
    })
}

/// ORC-29 order type (v2 table 0482) -> v3 RoleCode (IG OrderType): `I` -> `HOSP`, `O` -> `OF`, for a
/// code sent without a system or in table 0482; other codes are kept.
fn order_type(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        let v2 = coding
            .system
            .as_deref()
            .is_none_or(|s| s.ends_with("v2-0482"));
        let mapped = match coding.code.as_deref() {
            Some("I") => Some(("HOSP", "Hospital")),
            Some("O") => Some(("OF", "Outpatient facility")),
            _ => None,
        };
        if let (true, Some((code, display))) = (v2, mapped) {
            *coding = Coding::new(
                "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                code,
                Some(display),
            );
        }
    }
    c
}

/// ORC -> ServiceRequest (IG `ORC[ServiceRequest]`): identifiers ORC-2 (`PLAC`), ORC-3 (`FILL`), ORC-4
/// requisition (`PGN`); status ORC-5 via table 0038, else ORC-1 via table 0119; authoredOn ORC-9 for a
/// new order (ORC-1 `NW`); requester ORC-12 (a PractitionerRole `OP`, table 0443, for the Practitioner,
/// with the ordering facility ORC-21 as its organization); locationCode ORC-29. Sets `ctx.order`.
pub fn orc(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let g = order_group(ctx, seg.index());
    if is_pharmacy_order(ctx, g) {
        return;
    }
    let sr = service_request(ctx, g);
    ctx.order = Some(sr);
    ctx.last = Some(sr);
    if g.obr.is_none_or(|obr| obr > seg.index()) {
        // The ORC opens a new order: the previous report is closed.
        ctx.report = None;
    }
    let control = field_text(seg, 1);
    let status = field_text(seg, 5)
        .and_then(|s| order_status(&s))
        .or_else(|| control.as_deref().and_then(order_control_status));
    let requisition = field(seg, 4).and_then(|f| ei(f, Some("PGN")));
    let authored = if control.as_deref() == Some("NW") {
        ctx.dtm(field(seg, 9), ctx.at(9))
    } else {
        None
    };
    let organization = ordering_facility(ctx, seg);
    // ORC-12, else the order's OBR-16 (IG `OBR[ServiceRequest]`: requester when ORC-12 is empty).
    let ordering_provider = field(seg, 12).or_else(|| {
        g.obr
            .and_then(|i| ctx.message.segment(i))
            .and_then(|obr| field(&obr, 16))
    });
    let practitioner = ordering_provider
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x));
    let op = CodeableConcept::coding(V2_0443, "OP", Some("Ordering Provider"));
    let requester = role(ctx, practitioner, Some(op), organization).map(|i| ctx.reference(i));
    let location_code: Vec<CodeableConcept> = reps(seg, 29)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(29)))
        .map(order_type)
        .collect();
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr) {
        if let Some(s) = status {
            r.status = Some(s.into());
        }
        if r.requisition.is_none() {
            r.requisition = requisition;
        }
        if authored.is_some() {
            r.authored_on = authored;
        }
        if requester.is_some() {
            r.requester = requester;
        }
        r.location_code.extend(location_code);
    }
    parent_order(ctx, seg, sr);
}

/// The ordering facility of an ORC (IG `ORC[ServiceRequest]`: the requester PractitionerRole's
/// organization): ORC-21 (XON) -> Organization, with address ORC-22 and telecom ORC-23.
pub(crate) fn ordering_facility(ctx: &mut Ctx<'_>, orc: &Segment<'_>) -> Option<usize> {
    let o = field(orc, 21).and_then(|x| entities::organization(ctx, x))?;
    let address: Vec<fhir::Address> = reps(orc, 22).filter_map(crate::xad).collect();
    let telecom: Vec<fhir::ContactPoint> = reps(orc, 23).filter_map(crate::xtn).collect();
    if let Some(org) = ctx.get_mut::<fhir::Organization>(o) {
        if org.address.is_empty() {
            org.address = address;
        }
        if org.telecom.is_empty() {
            org.telecom = telecom;
        }
    }
    Some(o)
}

/// The ordering provider (`OP`, table 0443) acting for the ordering `facility`: a PractitionerRole.
pub(crate) fn ordering_role(
    ctx: &mut Ctx<'_>,
    practitioner: Option<usize>,
    facility: usize,
) -> Option<usize> {
    let op = CodeableConcept::coding(V2_0443, "OP", Some("Ordering Provider"));
    role(ctx, practitioner, Some(op), Some(facility))
}

/// ORC-8 (parent order, EIP) -> the parent ServiceRequest this order is `basedOn`: identifiers EIP.1
/// (`PLAC`) and EIP.2 (`FILL`), code ORC-31 (parent universal service identifier), subject the patient.
/// Its status and intent are not in the message: `unknown` and `order`. (The IG leaves ORC-8 to a
/// future edition; FHIR-Converter makes the same parent ServiceRequest.)
fn parent_order(ctx: &mut Ctx<'_>, orc: &Segment<'_>, sr: usize) {
    let Some(eip) = field(orc, 8).and_then(|f| f.repetition(1)) else {
        return;
    };
    let identifier: Vec<Identifier> = [(1, "PLAC"), (2, "FILL")]
        .into_iter()
        .filter_map(|(c, k)| eip.component(c).and_then(|n| ei(n, Some(k))))
        .collect();
    let Some(first) = identifier.first() else {
        return;
    };
    let Some(subject) = ctx.patient_ref() else {
        return;
    };
    let id = ctx.id("ServiceRequest", &key(first));
    let identity = conditional(Some(first)).cloned();
    let code = ctx.code(field(orc, 31), &ctx.at(31));
    let parent = ServiceRequest {
        id: Some(id),
        identifier,
        status: Some("unknown".into()),
        intent: Some("order".into()),
        code,
        subject,
        ..Default::default()
    };
    let p = ctx.add(parent, identity.as_ref());
    if p == sr {
        return;
    }
    let reference = ctx.reference(p);
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr)
        && !r.based_on.contains(&reference)
    {
        r.based_on.push(reference);
    }
}

/// OBR -> ServiceRequest (IG `OBR[ServiceRequest]`): code OBR-4, priority OBR-5, occurrence OBR-6,
/// intent `reflex-order` when OBR-11 is `G`, requester OBR-16 when ORC-12 is empty, note OBR-18..21
/// (placer and filler fields), basedOn OBR-29 (the parent order by identifier), reasonCode OBR-31,
/// orderDetail OBR-46/47, identifier OBR-53 (`PLAC`).
///
/// In result messages (ORU, OUL) also -> DiagnosticReport (IG `OBR[DiagnosticReport]`), see [`report`].
/// Sets `ctx.order` (and `ctx.report`).
pub fn obr(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let g = order_group(ctx, seg.index());
    let sr = service_request(ctx, g);
    ctx.order = Some(sr);
    ctx.last = Some(sr);
    ctx.report = None;
    let code = ctx.code(field(seg, 4), &ctx.at(4));
    let orc = g.orc.and_then(|i| ctx.message.segment(i));
    let requester = if orc.as_ref().and_then(|orc| field(orc, 12)).is_none() {
        let p = field(seg, 16)
            .and_then(|f| f.repetition(1))
            .and_then(|x| entities::practitioner(ctx, x));
        // The ordering facility ORC-21 stays the role's organization (as in [`orc`]).
        let facility = orc.as_ref().and_then(|o| ordering_facility(ctx, o));
        let op = CodeableConcept::coding(V2_0443, "OP", Some("Ordering Provider"));
        role(ctx, p, Some(op), facility).map(|i| ctx.reference(i))
    } else {
        None
    };
    let occurrence = ctx.dtm(field(seg, 6), ctx.at(6));
    let reason: Vec<CodeableConcept> = reps(seg, 31)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(31)))
        .collect();
    let detail: Vec<CodeableConcept> = [46, 47]
        .into_iter()
        .flat_map(|n| reps(seg, n).map(move |r| (n, r)))
        .filter_map(|(n, r)| ctx.code(Some(r), &ctx.at(n)))
        .collect();
    let alternate: Vec<Identifier> = reps(seg, 53)
        .filter_map(|r| {
            ctx.identifier(r).map(|mut i| {
                i.r#type = Some(CodeableConcept::coding(V2_0203, "PLAC", None));
                i
            })
        })
        .collect();
    let prio = field_comp(seg, 5, 1).and_then(|p| priority(&p));
    // OBR-18..21 (placer and filler fields): text the placer or filler asks to have returned; the IG
    // leaves them to the implementation and names ServiceRequest.note as the place for text.
    let placer_filler: Vec<String> = (18..=21).filter_map(|n| field_text(seg, n)).collect();
    let reflex = field_text(seg, 11).as_deref() == Some("G");
    // OBR-29 (parent, EIP) -> basedOn the parent order by its placer number, else its filler number
    // (IG: a logical reference, type ServiceRequest), when OBR-50 does not name the parent instead.
    let parent_result = field(seg, 29)
        .filter(|_| field(seg, 50).is_none())
        .and_then(|eip| {
            [(1, "PLAC"), (2, "FILL")]
                .into_iter()
                .find_map(|(c, k)| eip.component(c).and_then(|n| ei(n, Some(k))))
        })
        .map(|i| Reference {
            r#type: Some("ServiceRequest".into()),
            identifier: Some(Box::new(i)),
            ..Default::default()
        });
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr) {
        if code.is_some() {
            r.code = code.clone();
        }
        if let Some(p) = prio {
            r.priority = Some(p.into());
        }
        // TQ1 (before the OBR in OML and ORM) gives a fuller occurrence than OBR-6: keep it.
        if let Some(o) = occurrence.filter(|_| r.occurrence.is_none()) {
            r.occurrence = Some(ServiceRequestOccurrence::DateTime(o));
        }
        if reflex {
            r.intent = Some("reflex-order".into());
        }
        if requester.is_some() && r.requester.is_none() {
            r.requester = requester;
        }
        r.reason_code.extend(reason);
        r.order_detail.extend(detail);
        r.identifier.extend(alternate);
        for t in placer_filler {
            if !r.note.iter().any(|n| n.text.as_deref() == Some(t.as_str())) {
                r.note.push(Annotation {
                    text: Some(t),
                    ..Default::default()
                });
            }
        }
        if let Some(b) = parent_result.filter(|b| !r.based_on.contains(b)) {
            r.based_on.push(b);
        }
    }
    order_tq(ctx, seg, g, sr);
    if is_result_message(ctx) {
        report(ctx, seg, g, sr, code);
    }
    obr_specimen(ctx, seg, g, sr);
    if specimen_first(ctx) {
        link_group_specimen(ctx, seg, sr);
    }
}

/// The order's quantity/timing before v2.5 (IG `ORC-7` / `OBR-27` -> `TQ[ServiceRequest]`): ORC-7, else
/// OBR-27 when ORC-6 and ORC-7 are empty; its first repetition gives quantityQuantity TQ.1 and
/// occurrenceTiming (repeat pattern TQ.2, duration TQ.3, bounds TQ.4-5, total occurrences TQ.12), priority
/// TQ.6. A TQ1 segment, when sent, has the last word (its values are kept); a timing replaces OBR-6's
/// occurrenceDateTime (the timing carries the requested start as its bounds).
fn order_tq(ctx: &mut Ctx<'_>, obr: &Segment<'_>, g: Group, sr: usize) {
    let orc = g.orc.and_then(|i| ctx.message.segment(i));
    let from_orc = orc
        .as_ref()
        .and_then(|o| field(o, 7))
        .and_then(|f| f.repetition(1));
    let orc6 = orc.as_ref().and_then(|o| field(o, 6)).is_some();
    let (tq, at) = match from_orc {
        Some(t) => (t, "ORC-7".to_owned()),
        None if !orc6 => match field(obr, 27).and_then(|f| f.repetition(1)) {
            Some(t) => (t, String::from(ctx.at(27))),
            None => return,
        },
        None => return,
    };
    if !present(tq) {
        return;
    }
    // TQ.1 is a CQ inside a component: quantity and units are its subcomponents.
    let quantity = tq.component(1).and_then(|c| {
        let value = text(c.subcomponent(1))?;
        match crate::quantity(&value, None) {
            Ok(Some(mut q)) => {
                q.unit = text(c.subcomponent(2));
                Some(q)
            }
            Ok(None) => None,
            Err(e) => {
                ctx.issue(
                    Severity::Warning,
                    at.clone(),
                    IssueKind::Invalid,
                    e.to_string(),
                );
                None
            }
        }
    });
    let (timing, _, prio) = crate::segments::pharmacy::tq_timing(ctx, tq, &at);
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr) {
        if let Some(q) = quantity.filter(|_| r.quantity.is_none()) {
            r.quantity = Some(ServiceRequestQuantity::Quantity(Box::new(q)));
        }
        if let Some(t) = timing
            && !matches!(r.occurrence, Some(ServiceRequestOccurrence::Timing(_)))
        {
            r.occurrence = Some(ServiceRequestOccurrence::Timing(Box::new(t)));
        }
        if let Some(p) = prio.filter(|_| r.priority.is_none()) {
            r.priority = Some(p.into());
        }
    }
}

/// True for the structures whose SPECIMEN group comes before its orders (OUL_R22, OUL_R23): there an SPM
/// opens a group and the OBR after it are orders on that specimen.
fn specimen_first(ctx: &Ctx<'_>) -> bool {
    matches!(ctx.structure.as_str(), "OUL_R22" | "OUL_R23")
}

/// In a specimen-first message, links the SPM the OBR's group belongs to (the last SPM before it in the
/// patient's part of the message) with the order and its report.
fn link_group_specimen(ctx: &mut Ctx<'_>, seg: &Segment<'_>, sr: usize) {
    let m = ctx.message;
    let spm = (1..seg.index())
        .rev()
        .filter_map(|i| m.segment(i))
        .take_while(|s| !matches!(s.id(), "PID" | "PV1" | "MSH"))
        .find(|s| s.id() == "SPM");
    let Some(spm) = spm else { return };
    let Some(reference) = specimen_ref(ctx, spm.index()) else {
        return;
    };
    let order = ctx.reference(sr);
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference.clone());
    }
    if let Some(report) = ctx.report
        && let Some(r) = ctx.get_mut::<DiagnosticReport>(report)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference.clone());
    }
    let target = ctx.resources().position(|r| {
        r.resource_type() == "Specimen"
            && reference
                .reference
                .as_deref()
                .is_some_and(|u| u.ends_with(r.id().unwrap_or("-")))
    });
    if let Some(t) = target
        && let Some(s) = ctx.get_mut::<Specimen>(t)
        && !s.request.contains(&order)
    {
        s.request.push(order);
    }
}

/// OBR -> Specimen (IG `OBR[Specimen]`), when OBR carries specimen data: collected OBR-7 (a period to
/// OBR-8), quantity OBR-9, collector OBR-10, receivedTime OBR-14, note OBR-39 (collector's comment);
/// identified by the order numbers. Linked from the order and its report.
fn obr_specimen(ctx: &mut Ctx<'_>, seg: &Segment<'_>, g: Group, sr: usize) {
    if ![7, 8, 9, 10, 14, 39]
        .iter()
        .any(|&n| field(seg, n).is_some())
    {
        return;
    }
    let (placer, filler) = order_numbers(ctx, g);
    let sr_id = id_of(ctx, sr).to_owned();
    let start = ctx.dtm(field(seg, 7), ctx.at(7));
    let end = ctx.dtm(field(seg, 8), ctx.at(8));
    let collected = match (start, end) {
        (s, Some(e)) => Some(SpecimenCollectionCollected::Period(Box::new(Period {
            start: s,
            end: Some(e),
            ..Default::default()
        }))),
        (Some(s), None) => Some(SpecimenCollectionCollected::DateTime(s)),
        (None, None) => None,
    };
    let quantity = cq(ctx, field(seg, 9), ctx.at(9));
    let collector = field(seg, 10)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x))
        .and_then(|p| role(ctx, Some(p), None, None))
        .map(|i| ctx.reference(i));
    let received = ctx.dtm(field(seg, 14), ctx.at(14));
    let note: Vec<Annotation> = long_text(seg, 39)
        .map(|t| Annotation {
            text: Some(t),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let collection =
        (collected.is_some() || quantity.is_some() || collector.is_some()).then(|| {
            SpecimenCollection {
                collected,
                quantity,
                collector,
                ..Default::default()
            }
        });
    let specimen = Specimen {
        id: Some(ctx.id("Specimen", &["order", &sr_id])),
        identifier: placer.into_iter().chain(filler).collect(),
        subject: ctx.patient_ref(),
        received_time: received,
        request: vec![ctx.reference(sr)],
        collection,
        note,
        ..Default::default()
    };
    let i = ctx.add(specimen, None);
    let reference = ctx.reference(i);
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference.clone());
    }
    if let Some(report) = ctx.report
        && let Some(r) = ctx.get_mut::<DiagnosticReport>(report)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference);
    }
}

/// v2 table 0123 result status (OBR-25) -> `diagnostic-report-status` (IG ResultStatus[Non-Queries]).
fn report_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "O" | "I" | "S" => "registered",
        "P" => "preliminary",
        "C" => "corrected",
        "R" => "partial",
        "F" => "final",
        "X" => "cancelled",
        _ => return None,
    })
}

/// OBR -> DiagnosticReport (IG `OBR[DiagnosticReport]`): identifiers as the order, code OBR-4, effective
/// OBR-7 (a period to OBR-8), issued OBR-22, category OBR-24 (table 0074), status OBR-25 (`unknown` when
/// not sent or not mapped: the element is required), resultsInterpreter OBR-32, performer OBR-34
/// (technician) and OBR-35 (transcriptionist), basedOn the ServiceRequest. The id comes from the filler
/// order number (the report is the filler's), else the placer's.
fn report(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    g: Group,
    sr: usize,
    code: Option<CodeableConcept>,
) {
    let Some(code) = code else {
        ctx.issue(
            Severity::Warning,
            ctx.at(4),
            IssueKind::Invalid,
            "no service identifier: no DiagnosticReport".into(),
        );
        return;
    };
    let (placer, filler) = order_numbers(ctx, g);
    let id = match (&filler, &placer) {
        (Some(f), _) => ctx.id("DiagnosticReport", &key(f)),
        (None, Some(p)) => ctx.id("DiagnosticReport", &["placer", key(p)[0], key(p)[1]]),
        (None, None) => scoped_id(ctx, "DiagnosticReport", &format!("report@{}", seg.index())),
    };
    let identity = conditional(filler.as_ref()).cloned();
    let start = ctx.dtm(field(seg, 7), ctx.at(7));
    let end = ctx.dtm(field(seg, 8), ctx.at(8));
    let effective = match (start, end) {
        (s, Some(e)) => Some(DiagnosticReportEffective::Period(Box::new(Period {
            start: s,
            end: Some(e),
            ..Default::default()
        }))),
        (Some(s), None) => Some(DiagnosticReportEffective::DateTime(s)),
        (None, None) => None,
    };
    let issued = ctx.instant(field(seg, 22), ctx.at(22));
    let category = field_comp(seg, 24, 1).map(|c| table_concept(c, "0074", None));
    let status = field_text(seg, 25)
        .and_then(|s| report_status(&s))
        .unwrap_or("unknown");
    let interpreter: Vec<Reference> = field(seg, 32)
        .and_then(|f| ndl_role(ctx, f, None))
        .map(|i| ctx.reference(i))
        .into_iter()
        .collect();
    let mut performer = Vec::new();
    for (n, code, display) in [(34, "TN", "Technician"), (35, "TR", "Transcriptionist")] {
        for r in reps(seg, n) {
            let c = CodeableConcept::coding(V2_0443, code, Some(display));
            if let Some(i) = ndl_role(ctx, r, Some(c)) {
                performer.push(ctx.reference(i));
            }
        }
    }
    let resource = DiagnosticReport {
        id: Some(id),
        identifier: placer.into_iter().chain(filler).collect(),
        based_on: vec![ctx.reference(sr)],
        status: Some(status.into()),
        category: category.into_iter().collect(),
        code,
        subject: ctx.patient_ref(),
        encounter: ctx.encounter_ref(),
        effective,
        issued,
        performer,
        results_interpreter: interpreter,
        ..Default::default()
    };
    let i = ctx.add(resource, identity.as_ref());
    ctx.report = Some(i);
    ctx.last = Some(i);
}

/// CQ (quantity ^ units) -> Quantity; a bad number becomes an issue.
fn cq(ctx: &mut Ctx<'_>, node: Option<Node<'_>>, at: impl Into<String>) -> Option<Quantity> {
    let node = node?;
    let value = part(node, 1)?;
    let units = node.component(2);
    // CQ.2 is a CWE whose parts are subcomponents: read code and text from them.
    let unit_code = units.and_then(|u| text(u.subcomponent(1)));
    let unit_text = units.and_then(|u| text(u.subcomponent(2)));
    match crate::quantity(&value, None) {
        Ok(Some(mut q)) => {
            q.unit = unit_text.or(unit_code.clone());
            q.code = unit_code.filter(|_| {
                units
                    .and_then(|u| text(u.subcomponent(3)))
                    .is_some_and(|s| s == "UCUM")
            });
            if q.code.is_some() {
                q.system = Some("http://unitsofmeasure.org".into());
            }
            Some(q)
        }
        Ok(None) => None,
        Err(e) => {
            ctx.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
            None
        }
    }
}

/// A v2 time unit (ISO+ / ANSI+ / UCUM code, or its name) -> a FHIR `units-of-time` code.
fn time_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => "s",
        "min" | "minute" | "minutes" => "min",
        "h" | "hr" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        "wk" | "week" | "weeks" => "wk",
        "mo" | "month" | "months" => "mo",
        "a" | "yr" | "year" | "years" => "a",
        _ => return None,
    })
}

/// Minutes in one `units-of-time` unit (for `Timing.repeat.offset`, which is in minutes).
fn unit_minutes(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" => 1.0 / 60.0,
        "min" => 1.0,
        "h" => 60.0,
        "d" => 1440.0,
        "wk" => 10080.0,
        _ => return None,
    })
}

/// A CQ's units (CQ.2, a CWE as subcomponents) as a `units-of-time` code.
fn cq_time_unit(node: Node<'_>) -> Option<&'static str> {
    let units = node.component(2)?;
    [1, 2]
        .into_iter()
        .filter_map(|s| text(units.subcomponent(s)))
        .find_map(|u| time_unit(&u))
}

/// RPT (TQ1-3) -> Timing code and repeat (IG `RPT[Timing]`): code RPT.1, period RPT.5 with unit RPT.6,
/// when RPT.8, offset RPT.9 in minutes (converted from RPT.10).
fn rpt(ctx: &mut Ctx<'_>, node: Node<'_>, timing: &mut Timing, repeat: &mut TimingRepeat) {
    if let Some(code) = node.component(1).filter(|c| present(*c)) {
        let s = |n| text(code.subcomponent(n));
        if let Some(c) = s(1) {
            let system = s(3)
                .map(|sys| crate::coding_system_uri(&sys).into_owned())
                .unwrap_or_else(|| "http://terminology.hl7.org/CodeSystem/v2-0335".into());
            timing.code = Some(CodeableConcept {
                coding: vec![Coding {
                    system: Some(system),
                    code: Some(c),
                    display: s(2),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    if let Some(period) = part(node, 5) {
        match fhir::Decimal::new(&period) {
            Ok(d) => repeat.period = Some(d),
            Err(_) => ctx.issue(
                Severity::Warning,
                ctx.at(3),
                IssueKind::Invalid,
                "repeat period is not a number".into(),
            ),
        }
        repeat.period_unit = part(node, 6).and_then(|u| time_unit(&u)).map(str::to_owned);
    }
    if let Some(when) = part(node, 8) {
        repeat.when.push(when);
    }
    let offset_unit = part(node, 10)
        .and_then(|u| time_unit(&u))
        .and_then(unit_minutes);
    if let (Some(q), Some(per)) = (
        part(node, 9).and_then(|q| q.parse::<f64>().ok()),
        offset_unit,
    ) {
        let minutes = (q * per).round();
        if (0.0..=f64::from(u32::MAX)).contains(&minutes) {
            repeat.offset = Some(minutes as u32);
        }
    }
}

/// TQ1 -> the current ServiceRequest (IG `TQ1[ServiceRequest]`): quantity TQ1-2; occurrenceTiming with
/// the repeat pattern TQ1-3 ([`rpt`]), time of day TQ1-4, bounds TQ1-7..8 (else the service duration
/// TQ1-6), duration TQ1-13 and count TQ1-14 (the total number of occurrences: `count`, where the IG
/// says `countMax`); priority TQ1-9; asNeeded TQ1-10 (condition text); note TQ1-11.
pub fn tq1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(sr) = ctx.order else { return };
    let quantity = cq(ctx, field(seg, 2), ctx.at(2));
    let mut timing = Timing::default();
    let mut repeat = TimingRepeat::default();
    if let Some(pattern) = field(seg, 3).and_then(|f| f.repetition(1)) {
        rpt(ctx, pattern, &mut timing, &mut repeat);
    }
    repeat.time_of_day = reps(seg, 4)
        .filter_map(|r| part(r, 1))
        .filter(|t| t.len() == 8 && t.as_bytes()[2] == b':' && t.as_bytes()[5] == b':')
        .collect();
    let start = ctx.dtm(field(seg, 7), ctx.at(7));
    let end = ctx.dtm(field(seg, 8), ctx.at(8));
    repeat.bounds = if start.is_some() || end.is_some() {
        Some(TimingRepeatBounds::Period(Box::new(Period {
            start,
            end,
            ..Default::default()
        })))
    } else {
        cq(ctx, field(seg, 6), ctx.at(6)).map(|q| {
            let unit = field(seg, 6).and_then(cq_time_unit);
            TimingRepeatBounds::Duration(Box::new(fhir::Duration {
                value: q.value,
                unit: q.unit,
                system: unit.map(|_| "http://unitsofmeasure.org".to_owned()),
                code: unit.map(str::to_owned),
                ..Default::default()
            }))
        })
    };
    if let Some(d) = field(seg, 13) {
        repeat.duration = part(d, 1).and_then(|v| fhir::Decimal::new(&v).ok());
        repeat.duration_unit = cq_time_unit(d).map(str::to_owned);
    }
    repeat.count = field_text(seg, 14).and_then(|c| c.parse::<u32>().ok());
    let prio = field_comp(seg, 9, 1).and_then(|p| priority(&p));
    let as_needed = field_text(seg, 10);
    let instruction = field_text(seg, 11);
    let has_repeat = repeat != TimingRepeat::default();
    if has_repeat {
        timing.repeat = Some(repeat);
    }
    if let Some(r) = ctx.get_mut::<ServiceRequest>(sr) {
        if let Some(q) = quantity {
            r.quantity = Some(ServiceRequestQuantity::Quantity(Box::new(q)));
        }
        if timing != Timing::default() {
            r.occurrence = Some(ServiceRequestOccurrence::Timing(Box::new(timing)));
        }
        if let Some(p) = prio {
            r.priority = Some(p.into());
        }
        if let Some(t) = as_needed {
            r.as_needed = Some(fhir::ServiceRequestAsNeeded::CodeableConcept(Box::new(
                CodeableConcept::text(t),
            )));
        }
        if let Some(t) = instruction {
            r.note.push(Annotation {
                text: Some(t),
                ..Default::default()
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// OBX
// ---------------------------------------------------------------------------------------------------

/// v2 table 0085 observation result status (OBX-11) -> `observation-status` (IG
/// ObservationResultStatusCodesInterpretation).
fn observation_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "A" => "amended",
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "F" => "final",
        "P" => "preliminary",
        "X" => "cancelled",
        _ => return None,
    })
}

/// v2 table 0078 codes that are also v3 ObservationInterpretation codes (IG InterpretationCodes maps
/// them one to one), with the v3 display.
const INTERPRETATION_CODES: [(&str, &str); 30] = [
    ("<", "Off scale low"),
    (">", "Off scale high"),
    ("A", "Abnormal"),
    ("AA", "Critical abnormal"),
    ("B", "Better"),
    ("D", "Significant change down"),
    ("DET", "Detected"),
    ("H", "High"),
    ("HH", "Critical high"),
    ("HM", "Hold for Medical Review"),
    ("HU", "Significantly high"),
    ("I", "Intermediate"),
    ("IND", "Indeterminate"),
    ("L", "Low"),
    ("LL", "Critical low"),
    ("LU", "Significantly low"),
    ("MS", "moderately susceptible"),
    ("N", "Normal"),
    ("NEG", "Negative"),
    ("ND", "Not detected"),
    ("NR", "Non-reactive"),
    ("NS", "Non-susceptible"),
    ("POS", "Positive"),
    ("QCF", "Quality control failure"),
    ("R", "Resistant"),
    ("RR", "Reactive"),
    ("S", "Susceptible"),
    ("SDD", "Susceptible-dose dependent"),
    ("SYN-R", "Synergy - resistant"),
    ("U", "Significant change up"),
];

/// OBX-8 -> interpretation: a code of table 0078 sent with that table's system, with no system or with
/// a local system name (not a URI) is given the v3 ObservationInterpretation system and display the IG
/// maps it to.
fn interpretation(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        let v2 = match coding.system.as_deref() {
            None => true,
            Some(s) => s == "http://terminology.hl7.org/CodeSystem/v2-0078" || !s.contains(':'),
        };
        let known = coding
            .code
            .as_deref()
            .and_then(|k| INTERPRETATION_CODES.iter().find(|(c, _)| *c == k));
        if let (true, Some((_, display))) = (v2, known) {
            coding.system = Some(V3_INTERPRETATION.into());
            coding.display = Some((*display).into());
        }
    }
    c
}

/// One OBX-5 repetition as an Observation value, by the value type OBX-2 (IG `OBX[Observation]`):
/// NM -> Quantity with units OBX-6; ST, TX, FT -> string; CE, CWE, CNE, CF, IS, ID -> CodeableConcept;
/// SN -> Quantity, Range, Ratio or string; DT, DTM, TS -> dateTime; TM -> time; NR -> Range; DR ->
/// Period; ED, RP -> an attachment (returned separately).
enum Value {
    Observation(ObservationValue),
    Attachment(Box<Attachment>),
}

fn value(ctx: &mut Ctx<'_>, seg: &Segment<'_>, kind: &str, v: Node<'_>) -> Option<Value> {
    let at = ctx.at(5);
    let units = field(seg, 6);
    let obs = |o| Some(Value::Observation(o));
    match kind {
        "NM" => {
            let raw = text(Some(v))?;
            match crate::quantity(raw.trim(), units) {
                Ok(q) => obs(ObservationValue::Quantity(Box::new(q?))),
                Err(e) => {
                    ctx.issue(Severity::Error, at, IssueKind::Invalid, e.to_string());
                    None
                }
            }
        }
        "ST" | "TX" | "FT" | "TN" | "VR" => obs(ObservationValue::String(text(Some(v))?)),
        "CE" | "CWE" | "CNE" | "CF" => {
            let c = ctx.code(Some(v), &at)?;
            obs(ObservationValue::CodeableConcept(Box::new(c)))
        }
        "IS" | "ID" => obs(ObservationValue::CodeableConcept(Box::new(
            CodeableConcept::coding_code(text(Some(v))?),
        ))),
        "DT" | "DTM" | "TS" => {
            let d = ctx.dtm(Some(v), at)?;
            obs(ObservationValue::DateTime(d))
        }
        "TM" => {
            let t = part(v, 1)?;
            let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
            let time = match digits.len() {
                2 => format!("{digits}:00:00"),
                4 => format!("{}:{}:00", &digits[..2], &digits[2..]),
                6 => format!("{}:{}:{}", &digits[..2], &digits[2..4], &digits[4..]),
                _ => return obs(ObservationValue::String(t)),
            };
            obs(ObservationValue::Time(time))
        }
        "SN" => sn(ctx, v, units, at).map(Value::Observation),
        "NR" => {
            let low = part(v, 1).and_then(|n| crate::quantity(&n, units).ok().flatten());
            let high = part(v, 2).and_then(|n| crate::quantity(&n, units).ok().flatten());
            (low.is_some() || high.is_some()).then(|| {
                Value::Observation(ObservationValue::Range(Box::new(Range {
                    low,
                    high,
                    ..Default::default()
                })))
            })
        }
        "DR" => {
            let start = ctx.dtm(v.component(1), at.clone());
            let end = ctx.dtm(v.component(2), at);
            (start.is_some() || end.is_some()).then(|| {
                Value::Observation(ObservationValue::Period(Box::new(Period {
                    start,
                    end,
                    ..Default::default()
                })))
            })
        }
        "ED" => {
            // ED: source application ^ type of data ^ data subtype ^ encoding ^ data.
            let data = part(v, 5);
            let content_type = media_type(part(v, 2), part(v, 3));
            if data.is_none() && content_type.is_none() {
                return None;
            }
            let base64 = part(v, 4).is_some_and(|e| e.eq_ignore_ascii_case("Base64"));
            Some(Value::Attachment(Box::new(Attachment {
                content_type,
                data: data.clone().filter(|_| base64),
                title: data.filter(|_| !base64),
                ..Default::default()
            })))
        }
        "RP" => {
            // RP: pointer ^ application id ^ type of data ^ subtype.
            let url = part(v, 1)?;
            Some(Value::Attachment(Box::new(Attachment {
                content_type: media_type(part(v, 3), part(v, 4)),
                url: Some(url),
                ..Default::default()
            })))
        }
        _ => obs(ObservationValue::String(text(Some(v))?)),
    }
}

/// ED/RP type of data (v2 table 0191) and subtype -> a MIME type: `IM`, `SD`, `SI`, `NS` (images and
/// scanned documents) -> `image`, `AP` -> `application`, `AU` -> `audio`, `TEXT`, `TX`, `FT` -> `text`,
/// a MIME top-level type as given; the subtype lowercased (MIME types are case-insensitive, lower case
/// is their canonical form).
fn media_type(kind: Option<String>, subtype: Option<String>) -> Option<String> {
    let kind = match kind?.as_str() {
        "IM" | "SD" | "SI" | "NS" => "image".to_owned(),
        "AP" => "application".to_owned(),
        "AU" => "audio".to_owned(),
        "TEXT" | "TX" | "FT" => "text".to_owned(),
        other => other.to_lowercase(),
    };
    Some(format!("{kind}/{}", subtype?.to_lowercase()))
}

/// SN (comparator ^ num1 ^ separator/suffix ^ num2) -> Quantity (with the comparator), Range (`-`),
/// Ratio (`:` or `/`), or the IG's string composition when none fits.
fn sn(ctx: &mut Ctx<'_>, v: Node<'_>, units: Option<Node<'_>>, at: At) -> Option<ObservationValue> {
    let comparator = part(v, 1);
    let n1 = part(v, 2);
    let sep = part(v, 3);
    let n2 = part(v, 4);
    let q = |n: &Option<String>| {
        n.as_deref()
            .and_then(|n| crate::quantity(n, units).ok().flatten())
    };
    let as_string = || {
        let s = [&comparator, &n1, &sep, &n2]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("");
        (!s.is_empty()).then_some(ObservationValue::String(s))
    };
    match (sep.as_deref(), &n2) {
        (None | Some("+"), None) => {
            let Some(mut quantity) = q(&n1) else {
                if n1.is_some() {
                    ctx.issue(
                        Severity::Warning,
                        at,
                        IssueKind::Invalid,
                        "structured numeric value is not a number: kept as text".into(),
                    );
                }
                return as_string();
            };
            match comparator.as_deref() {
                None | Some("=") => {}
                Some(c @ ("<" | "<=" | ">=" | ">")) => quantity.comparator = Some(c.into()),
                Some(_) => return as_string(),
            }
            Some(ObservationValue::Quantity(Box::new(quantity)))
        }
        (Some("-"), Some(_)) if comparator.is_none() => {
            let (low, high) = (q(&n1), q(&n2));
            if low.is_none() || high.is_none() {
                return as_string();
            }
            Some(ObservationValue::Range(Box::new(Range {
                low,
                high,
                ..Default::default()
            })))
        }
        (Some(":" | "/"), Some(_)) if comparator.is_none() => {
            let (num, den) = (q(&n1), q(&n2));
            if num.is_none() || den.is_none() {
                return as_string();
            }
            Some(ObservationValue::Ratio(Box::new(Ratio {
                numerator: num,
                denominator: den,
                ..Default::default()
            })))
        }
        _ => as_string(),
    }
}

trait CodeOnly {
    fn coding_code(code: String) -> CodeableConcept;
}

impl CodeOnly for CodeableConcept {
    /// A concept with one coding that has only a code (IS/ID values carry no system).
    fn coding_code(code: String) -> CodeableConcept {
        CodeableConcept {
            coding: vec![Coding {
                code: Some(code),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

fn component_value(v: ObservationValue) -> ObservationComponentValue {
    match v {
        ObservationValue::Quantity(q) => ObservationComponentValue::Quantity(q),
        ObservationValue::CodeableConcept(c) => ObservationComponentValue::CodeableConcept(c),
        ObservationValue::String(s) => ObservationComponentValue::String(s),
        ObservationValue::Boolean(b) => ObservationComponentValue::Boolean(b),
        ObservationValue::Integer(i) => ObservationComponentValue::Integer(i),
        ObservationValue::Range(r) => ObservationComponentValue::Range(r),
        ObservationValue::Ratio(r) => ObservationComponentValue::Ratio(r),
        ObservationValue::SampledData(s) => ObservationComponentValue::SampledData(s),
        ObservationValue::Time(t) => ObservationComponentValue::Time(t),
        ObservationValue::DateTime(d) => ObservationComponentValue::DateTime(d),
        ObservationValue::Period(p) => ObservationComponentValue::Period(p),
    }
}

/// The Specimen an OBX is about: in ORU's SPECIMEN group and OUL, the OBX follows its SPM (with only
/// OBX, NTE, PRT and the container segments SAC and INV between).
fn specimen_before(ctx: &Ctx<'_>, index: usize) -> Option<usize> {
    let m = ctx.message;
    for i in (1..index).rev() {
        let s = m.segment(i)?;
        match s.id() {
            "OBX" | "NTE" | "PRT" | "SAC" | "INV" => continue,
            "SPM" => return Some(i),
            _ => return None,
        }
    }
    None
}

/// `PUT` identity of the Specimen from an SPM segment at `index`, see [`spm_id`].
fn specimen_ref(ctx: &Ctx<'_>, index: usize) -> Option<Reference> {
    let seg = ctx.message.segment(index)?;
    let (id, _) = spm_id(ctx, &seg);
    ctx.existing("Specimen", &id).map(|i| ctx.reference(i))
}

/// The Specimen the current order's OBR describes ([`obr_specimen`]), if it made one.
fn order_specimen(ctx: &Ctx<'_>) -> Option<Reference> {
    let id = ctx.id("Specimen", &["order", id_of(ctx, ctx.order?)]);
    ctx.existing("Specimen", &id).map(|i| ctx.reference(i))
}

/// The Immunization of the RXA this OBX belongs to (the OBX follows the RXA through its RXR, OBX, NTE
/// and PRT segments, VXU `ORDER` group): the last Immunization in the bundle, which that RXA added.
fn immunization_before(ctx: &Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let mut i = seg.index();
    loop {
        i = i.checked_sub(1)?;
        match ctx.message.segment(i)?.id() {
            "RXA" => break,
            "RXR" | "OBX" | "NTE" | "PRT" => {}
            _ => return None,
        }
    }
    ctx.resources()
        .enumerate()
        .filter(|(_, r)| r.resource_type() == "Immunization")
        .last()
        .map(|(i, _)| i)
}

/// The LOINC code of an immunization OBX the RXA mapping reads into the Immunization, 30963-3 (funding
/// source) or 64994-7 (funding program eligibility), in OBX-3.1 or, with `alternate`, OBX-3.4.
fn immunization_loinc(seg: &Segment<'_>, alternate: bool) -> Option<String> {
    let c = field(seg, 3)?;
    let parts: &[usize] = if alternate { &[1, 4] } else { &[1] };
    parts
        .iter()
        .find_map(|&k| crate::read::comp(c, k).filter(|v| v == "30963-3" || v == "64994-7"))
}

/// True when the RXA mapping ([`crate::segments::pharmacy::rxa`]) already carried this OBX into the
/// Immunization at `imm`: every 64994-7 with a value becomes a programEligibility, the first 30963-3
/// with a value the fundingSource (either code in OBX-3.1 or .4). Such an OBX is not repeated as an
/// Observation when the LOINC code is its primary identifier (OBX-3.1); with another code there, the
/// Observation is kept so that code is not lost.
fn absorbed_by_immunization(ctx: &Ctx<'_>, seg: &Segment<'_>, imm: usize) -> bool {
    let Some(loinc) = immunization_loinc(seg, false) else {
        return false;
    };
    let Some(immunization) = ctx.get::<Immunization>(imm) else {
        return false;
    };
    if field(seg, 5).is_none() {
        return false;
    }
    match loinc.as_str() {
        "64994-7" => !immunization.program_eligibility.is_empty(),
        _ => {
            // Only the first 30963-3 after the RXA is read; a later one stays an Observation.
            let earlier = (0..seg.index())
                .rev()
                .map_while(|i| ctx.message.segment(i))
                .take_while(|s| s.id() != "RXA")
                .any(|s| {
                    s.id() == "OBX"
                        && field(&s, 5).is_some()
                        && immunization_loinc(&s, true).as_deref() == Some("30963-3")
                });
            immunization.funding_source.is_some() && !earlier
        }
    }
}

/// OBX -> Observation (IG `OBX[Observation]`, and `OBX[Observation-Component]` when OBX-5 repeats: one
/// component per value with the same code): code OBX-3, value OBX-5 by OBX-2 ([`value`]), reference
/// range OBX-7, interpretation OBX-8, status OBX-11 (`unknown` when not mapped: the element is required),
/// effective OBX-14, performer OBX-16 (PractitionerRole `RO`, table 0443), OBX-25 (PractitionerRole
/// `MDIR` of the performing organization) and OBX-23 (the Organization itself, address OBX-24), method
/// OBX-17, device
/// OBX-18, bodySite OBX-20, identifier OBX-21, category OBX-29; subject the patient, encounter the
/// visit, basedOn the order, specimen the SPM it follows, else the specimen its OBR describes. An ED or
/// RP value (a document) makes a DiagnosticReport with it as `presentedForm` instead.
///
/// Under a report, the Observation is appended to its `result`; under an order without a report (OML,
/// ORM), to the ServiceRequest's `supportingInfo`; outside orders (ADT) it stands on the patient. After an
/// RXA (VXU) it is `partOf` that Immunization, unless the RXA already read it into the Immunization
/// ([`absorbed_by_immunization`]).
pub fn obx(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let immunization = immunization_before(ctx, seg);
    if let Some(imm) = immunization
        && absorbed_by_immunization(ctx, seg, imm)
    {
        return;
    }
    let Some(code) = ctx.code(field(seg, 3), &ctx.at(3)) else {
        ctx.issue(
            Severity::Warning,
            ctx.at(3),
            IssueKind::Invalid,
            "no observation identifier: no Observation".into(),
        );
        return;
    };
    let kind = field_comp(seg, 2, 1).unwrap_or_else(|| "ST".into());
    let set_id = field_text(seg, 1).unwrap_or_default();
    let sub_id = field_text(seg, 4).unwrap_or_default();
    let code_key = code
        .coding
        .first()
        .map(|c| {
            format!(
                "{}|{}",
                c.system.as_deref().unwrap_or(""),
                c.code.as_deref().unwrap_or("")
            )
        })
        .or_else(|| code.text.clone())
        .unwrap_or_default();
    let parent = ctx.report.or(ctx.order);
    let id = match parent {
        Some(p) => {
            let pid = id_of(ctx, p);
            ctx.id("Observation", &[pid, &set_id, &sub_id, &code_key])
        }
        None => ctx.message_scoped_id("Observation", &code_key),
    };
    let mut values = Vec::new();
    let mut attachments = Vec::new();
    for r in reps(seg, 5) {
        match value(ctx, seg, &kind, r) {
            Some(Value::Observation(v)) => values.push(v),
            Some(Value::Attachment(a)) => attachments.push(*a),
            None => {}
        }
    }
    let range: Vec<ObservationReferenceRange> = field_text(seg, 7)
        .map(|t| ObservationReferenceRange {
            text: Some(t),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let interpretation: Vec<CodeableConcept> = reps(seg, 8)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(8)))
        .map(interpretation)
        .collect();
    let status = field_text(seg, 11)
        .and_then(|s| observation_status(&s))
        .unwrap_or("unknown");
    let effective = ctx
        .dtm(field(seg, 14), ctx.at(14))
        .map(ObservationEffective::DateTime);
    let mut performer = Vec::new();
    for r in reps(seg, 16) {
        let p = entities::practitioner(ctx, r);
        // The IG writes `responsibleObserver` in the practitioner-role system, which has no such code;
        // v2 table 0443 has it (`RO`).
        let c = CodeableConcept::coding(V2_0443, "RO", Some("Responsible Observer"));
        if let Some(i) = role(ctx, p, Some(c), None) {
            performer.push(ctx.reference(i));
        }
    }
    let organization = field(seg, 23).and_then(|x| entities::organization(ctx, x));
    if let Some(o) = organization {
        // OBX-24: the performing organization's address (IG `OBX[Observation]`).
        let address: Vec<fhir::Address> = reps(seg, 24).filter_map(crate::xad).collect();
        if let Some(org) = ctx.get_mut::<fhir::Organization>(o)
            && org.address.is_empty()
        {
            org.address = address;
        }
    }
    if let Some(director) = field(seg, 25).and_then(|x| entities::practitioner(ctx, x)) {
        let c = CodeableConcept::coding(V2_0443, "MDIR", Some("Medical Director"));
        if let Some(i) = role(ctx, Some(director), Some(c), organization) {
            performer.push(ctx.reference(i));
        }
    }
    if let Some(o) = organization {
        performer.push(ctx.reference(o));
    }
    let method = ctx.code(field(seg, 17), &ctx.at(17));
    let device = field(seg, 18)
        .and_then(|f| f.repetition(1))
        .and_then(|r| ei(r, None))
        .map(|i| {
            let resource = Device {
                id: Some(ctx.id("Device", &key(&i))),
                identifier: vec![i.clone()],
                ..Default::default()
            };
            let d = ctx.add(resource, conditional(Some(&i)));
            ctx.reference(d)
        });
    let body_site = ctx.code(field(seg, 20), &ctx.at(20));
    let identifier: Vec<Identifier> = field(seg, 21)
        .and_then(|f| ei(f, Some("FILL")))
        .into_iter()
        .collect();
    let category: Vec<CodeableConcept> = field_comp(seg, 29, 1)
        .map(|c| table_concept(c, "0936", None))
        .into_iter()
        .collect();
    let specimen = specimen_before(ctx, seg.index())
        .and_then(|i| specimen_ref(ctx, i))
        .or_else(|| order_specimen(ctx));
    let (value, component) = if values.len() > 1 {
        let components = values
            .into_iter()
            .map(|v| ObservationComponent {
                code: code.clone(),
                value: Some(component_value(v)),
                reference_range: range.clone(),
                ..Default::default()
            })
            .collect();
        (None, components)
    } else {
        (values.pop(), Vec::new())
    };
    if !attachments.is_empty() {
        // An embedded or referenced document (ED, RP): R4 Observation has no attachment value, a
        // DiagnosticReport's presentedForm is the place for a rendered result.
        let status = field_text(seg, 11)
            .and_then(|s| observation_status(&s))
            .unwrap_or("unknown");
        let report = DiagnosticReport {
            id: Some(ctx.id("DiagnosticReport", &["obx", &id])),
            identifier,
            based_on: ctx.order.map(|o| ctx.reference(o)).into_iter().collect(),
            status: Some(status.into()),
            code,
            subject: ctx.patient_ref(),
            encounter: ctx.encounter_ref(),
            effective: match effective {
                Some(ObservationEffective::DateTime(d)) => {
                    Some(DiagnosticReportEffective::DateTime(d))
                }
                _ => None,
            },
            performer,
            specimen: specimen.into_iter().collect(),
            presented_form: attachments,
            ..Default::default()
        };
        let i = ctx.add(report, None);
        ctx.last = Some(i);
        return;
    }
    let observation = Observation {
        id: Some(id),
        identifier,
        based_on: ctx.order.map(|o| ctx.reference(o)).into_iter().collect(),
        part_of: immunization.map(|i| ctx.reference(i)).into_iter().collect(),
        status: Some(status.into()),
        category,
        code,
        subject: ctx.patient_ref(),
        encounter: ctx.encounter_ref(),
        effective,
        performer,
        value,
        interpretation,
        body_site,
        method,
        specimen,
        device,
        reference_range: if component.is_empty() {
            range
        } else {
            Vec::new()
        },
        component,
        ..Default::default()
    };
    let i = ctx.add(observation, None);
    let reference = ctx.reference(i);
    if let Some(report) = ctx.report {
        if let Some(r) = ctx.get_mut::<DiagnosticReport>(report)
            && !r.result.contains(&reference)
        {
            r.result.push(reference);
        }
    } else if let Some(order) = ctx.order
        && let Some(r) = ctx.get_mut::<ServiceRequest>(order)
        && !r.supporting_info.contains(&reference)
    {
        r.supporting_info.push(reference);
    }
    ctx.last = Some(i);
}

// ---------------------------------------------------------------------------------------------------
// NTE
// ---------------------------------------------------------------------------------------------------

/// NTE -> a note on the resource before it (IG `NTE[ServiceRequest]`, `NTE[Observation]`): text NTE-3
/// (repetitions joined by line breaks), author NTE-5 (Practitioner), time NTE-6. Notes after an OBR in a
/// result message go to the order (a DiagnosticReport has no notes); resources without notes get none.
pub fn nte(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(target) = ctx.last else { return };
    let Some(note_text) = long_text(seg, 3) else {
        return;
    };
    let author = field(seg, 5)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x))
        .map(|i| AnnotationAuthor::Reference(Box::new(ctx.reference(i))));
    let time = ctx.dtm(field(seg, 6), ctx.at(6));
    let note = Annotation {
        author,
        time,
        text: Some(note_text),
        ..Default::default()
    };
    let target = match type_of(ctx, target) {
        "DiagnosticReport" => match ctx.order {
            Some(o) => o,
            None => return,
        },
        _ => target,
    };
    macro_rules! push {
        ($($t:ty),*) => {
            match type_of(ctx, target) {
                $(t if t == stringify!($t) => {
                    if let Some(r) = ctx.get_mut::<$t>(target) {
                        r.note.push(note);
                    }
                })*
                _ => {}
            }
        };
    }
    push!(
        ServiceRequest,
        Observation,
        Specimen,
        AllergyIntolerance,
        Condition,
        Procedure,
        ChargeItem
    );
}

// ---------------------------------------------------------------------------------------------------
// SPM
// ---------------------------------------------------------------------------------------------------

/// The id of the Specimen of an SPM and its identity: SPM-2 filler id, else placer id, else scoped.
fn spm_id(ctx: &Ctx<'_>, seg: &Segment<'_>) -> (String, Option<Identifier>) {
    let eip = field(seg, 2);
    let placer = eip
        .and_then(|f| f.component(1))
        .and_then(|c| ei(c, Some("PGN")));
    let filler = eip
        .and_then(|f| f.component(2))
        .and_then(|c| ei(c, Some("FGN")));
    match (filler, placer) {
        (Some(f), _) => (ctx.id("Specimen", &key(&f)), Some(f)),
        (None, Some(p)) => (
            ctx.id("Specimen", &["placer", key(&p)[0], key(&p)[1]]),
            Some(p),
        ),
        (None, None) => (
            scoped_id(ctx, "Specimen", &format!("spm@{}", seg.index())),
            None,
        ),
    }
}

/// The table 0203 display of an identifier's type code, when the sender gave none.
fn with_type_display(i: &mut Identifier) {
    for c in i.r#type.iter_mut().flat_map(|t| t.coding.iter_mut()) {
        if c.display.is_none() && c.system.as_deref() == Some(V2_0203) {
            c.display = c
                .code
                .as_deref()
                .and_then(entities::v2_0203_display)
                .map(str::to_owned);
        }
    }
}

/// v2 table 0136 (SPM-20 availability) -> `specimen-status`.
fn availability(code: &str) -> Option<&'static str> {
    Some(match code {
        "Y" => "available",
        "N" => "unavailable",
        _ => return None,
    })
}

/// SPM -> Specimen (IG `SPM[Specimen]`): identifiers SPM-2 (placer, filler), type SPM-4, additive SPM-6,
/// collection method SPM-7, body site SPM-8, quantity SPM-12, note SPM-14, handling SPM-15 (the
/// `specimen-specialHandling` extension on collection; the IG leaves SPM-15 unmapped), collected SPM-17 (a period
/// when both ends are sent), receivedTime SPM-18, status SPM-20, condition SPM-24, container type SPM-27,
/// accession SPM-30, other identifiers SPM-31, shipment id SPM-32 (`SHIP`), parent SPM-3. Linked from the current report and order
/// (in OUL_R22/R23, where the specimen comes first, from the orders that follow it).
pub fn spm(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    if specimen_first(ctx) {
        // The SPM opens a new specimen group: the orders before it are not its orders.
        ctx.order = None;
        ctx.report = None;
    }
    let (id, identity) = spm_id(ctx, seg);
    let eip = field(seg, 2);
    let mut identifier: Vec<Identifier> = [(1, "PGN"), (2, "FGN")]
        .into_iter()
        .filter_map(|(c, k)| {
            eip.and_then(|f| f.component(c))
                .and_then(|n| ei(n, Some(k)))
        })
        .collect();
    identifier.extend(reps(seg, 31).filter_map(|r| ctx.identifier(r)));
    // SPM-32 shipment id: an identifier typed `SHIP` (IG `SPM[Specimen]`).
    identifier.extend(
        field(seg, 32)
            .and_then(|f| ei(f, Some("SHIP")))
            .map(|mut i| {
                i.r#type = Some(CodeableConcept::coding(
                    V2_0203,
                    "SHIP",
                    Some("Shipment Identifier"),
                ));
                i
            }),
    );
    for i in &mut identifier {
        with_type_display(i);
    }
    let r#type = ctx
        .code(field(seg, 4), &ctx.at(4))
        .map(|c| in_table(c, "0487"));
    let additive = ctx
        .code(field(seg, 6), &ctx.at(6))
        .map(|c| in_table(c, "0371"));
    let method = ctx
        .code(field(seg, 7), &ctx.at(7))
        .map(|c| in_table(c, "0488"));
    let handling: Vec<Extension> = reps(seg, 15)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(15)))
        .map(|c| {
            Extension::new(
                "http://hl7.org/fhir/StructureDefinition/specimen-specialHandling",
                ExtensionValue::CodeableConcept(Box::new(in_table(c, "0376"))),
            )
        })
        .collect();
    let body_site = ctx.code(field(seg, 8), &ctx.at(8));
    let quantity = cq(ctx, field(seg, 12), ctx.at(12));
    let note: Vec<Annotation> = field_text(seg, 14)
        .map(|t| Annotation {
            text: Some(t),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let collected = {
        let f = field(seg, 17);
        let start = ctx.dtm(f.and_then(|f| f.component(1)), ctx.at(17));
        let end = ctx.dtm(f.and_then(|f| f.component(2)), ctx.at(17));
        match (start, end) {
            (s, Some(e)) => Some(SpecimenCollectionCollected::Period(Box::new(Period {
                start: s,
                end: Some(e),
                ..Default::default()
            }))),
            (Some(s), None) => Some(SpecimenCollectionCollected::DateTime(s)),
            (None, None) => None,
        }
    };
    let received = ctx.dtm(field(seg, 18), ctx.at(18));
    let status = field_text(seg, 20).and_then(|s| availability(&s));
    let condition: Vec<CodeableConcept> = reps(seg, 24)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(24)))
        .map(|c| in_table(c, "0493"))
        .collect();
    let container_type = ctx.code(field(seg, 27), &ctx.at(27));
    // SPM-3: each parent specimen, by its placer and filler ids.
    let mut parent = Vec::new();
    for r in reps(seg, 3) {
        let ids: Vec<Identifier> = [(1, "PGN"), (2, "FGN")]
            .into_iter()
            .filter_map(|(c, k)| r.component(c).and_then(|n| ei(n, Some(k))))
            .collect();
        let Some(first) = ids.last() else { continue };
        let resource = Specimen {
            id: Some(ctx.id("Specimen", &key(first))),
            subject: ctx.patient_ref(),
            identifier: ids.clone(),
            ..Default::default()
        };
        let identity = conditional(ids.last()).cloned();
        let p = ctx.add(resource, identity.as_ref());
        parent.push(ctx.reference(p));
    }
    let accession = field(seg, 30).and_then(|f| ctx.identifier(f)).map(|mut i| {
        with_type_display(&mut i);
        i
    });
    let collection = (collected.is_some()
        || quantity.is_some()
        || method.is_some()
        || body_site.is_some()
        || !handling.is_empty())
    .then(|| SpecimenCollection {
        extension: handling,
        collected,
        quantity,
        method,
        body_site,
        ..Default::default()
    });
    let container: Vec<SpecimenContainer> = (additive.is_some() || container_type.is_some())
        .then(|| SpecimenContainer {
            r#type: container_type,
            additive: additive.map(|a| SpecimenContainerAdditive::CodeableConcept(Box::new(a))),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let specimen = Specimen {
        id: Some(id),
        identifier,
        accession_identifier: accession,
        status: status.map(str::to_owned),
        r#type,
        subject: ctx.patient_ref(),
        received_time: received,
        request: ctx.order.map(|o| ctx.reference(o)).into_iter().collect(),
        parent,
        collection,
        container,
        condition,
        note,
        ..Default::default()
    };
    let i = ctx.add(specimen, conditional(identity.as_ref()));
    let reference = ctx.reference(i);
    if let Some(report) = ctx.report
        && let Some(r) = ctx.get_mut::<DiagnosticReport>(report)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference.clone());
    }
    if let Some(order) = ctx.order
        && let Some(r) = ctx.get_mut::<ServiceRequest>(order)
        && !r.specimen.contains(&reference)
    {
        r.specimen.push(reference);
    }
    ctx.last = Some(i);
}

// ---------------------------------------------------------------------------------------------------
// AL1, IAM
// ---------------------------------------------------------------------------------------------------

/// v2 table 0127 allergen type -> (`allergy-intolerance-category`, `allergy-intolerance-type`) (IG
/// AllergenType[AllergyIntoleranceCategory], AllergyType).
fn allergen_type(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "DA" => (Some("medication"), Some("allergy")),
        "FA" => (Some("food"), Some("allergy")),
        "EA" | "PA" | "LA" => (Some("environment"), Some("allergy")),
        "AA" => (Some("biologic"), Some("allergy")),
        "MA" => (None, Some("allergy")),
        _ => (None, None),
    }
}

/// v2 table 0128 allergy severity -> `allergy-intolerance-criticality` (IG
/// AllergySeverity[AllergyIntolerance.criticality]).
fn criticality(code: &str) -> Option<&'static str> {
    Some(match code {
        "SV" => "high",
        "MI" => "low",
        _ => return None,
    })
}

/// The common part of AL1 and IAM: category and type field 2, code field 3, criticality field 4,
/// reaction field 5. `None` when there is no allergen to record (absent, or the code map says the value
/// records nothing, e.g. a sender's "NKA").
fn allergy(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<AllergyIntolerance> {
    let code = match ctx.coded(field(seg, 3), &ctx.at(3)) {
        Coded::Concept(c) => c,
        Coded::Nothing => return None,
        Coded::Absent => {
            ctx.issue(
                Severity::Warning,
                ctx.at(3),
                IssueKind::Invalid,
                "no allergen: no AllergyIntolerance".into(),
            );
            return None;
        }
    };
    let (category, kind) = field_comp(seg, 2, 1)
        .map(|c| allergen_type(&c))
        .unwrap_or_default();
    let crit = field_comp(seg, 4, 1).and_then(|c| criticality(&c));
    let manifestation: Vec<CodeableConcept> = reps(seg, 5)
        .filter_map(|r| {
            let c = crate::cwe(r)?;
            // AL1-5 is ST in most versions: a bare text is kept as text, not as a code.
            Some(if c.coding.len() == 1 && r.components().count() == 1 {
                CodeableConcept::text(c.coding[0].code.clone().unwrap_or_default())
            } else {
                c
            })
        })
        .collect();
    let patient = ctx.patient.map(|p| id_of(ctx, p)).unwrap_or_default();
    let code_key = code
        .coding
        .first()
        .and_then(|c| c.code.clone())
        .or_else(|| code.text.clone())
        .unwrap_or_default();
    Some(AllergyIntolerance {
        id: Some(ctx.id("AllergyIntolerance", &[patient, &code_key])),
        clinical_status: Some(CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "active",
            Some("Active"),
        )),
        r#type: kind.map(str::to_owned),
        category: category.map(str::to_owned).into_iter().collect(),
        criticality: crit.map(str::to_owned),
        code: Some(code),
        patient: ctx.patient_ref().unwrap_or_default(),
        encounter: ctx.encounter_ref(),
        reaction: (!manifestation.is_empty())
            .then(|| AllergyIntoleranceReaction {
                manifestation,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    })
}

/// AL1 -> AllergyIntolerance (IG `AL1[AllergyIntolerance]`): clinicalStatus `active`, category and type
/// AL1-2 (table 0127), code AL1-3 (through the sender's code map: a value the map says records nothing
/// gives no AllergyIntolerance), criticality AL1-4 (table 0128), reaction manifestation AL1-5, onset
/// AL1-6. The id comes from the patient and the allergen, so a repeated ADT updates one resource.
pub fn al1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(mut a) = allergy(ctx, seg) else {
        return;
    };
    a.onset = ctx
        .date(field(seg, 6), ctx.at(6))
        .map(AllergyIntoleranceOnset::DateTime);
    let i = ctx.add(a, None);
    ctx.last = Some(i);
}

/// IAM-17 (table 0438, which despite its name holds the verification state) -> verificationStatus and
/// clinicalStatus, whose R4 bindings are required: `C` confirmed, `I` confirmed and inactive, `D`/`P`/`S`/`U`
/// unconfirmed (clinical status stays `active`), `E` entered-in-error (then no clinical status, R4 ait-2).
/// A code the sender's map already put into `allergyintolerance-clinical` is the clinical status; any
/// other code has no FHIR counterpart and is left out.
fn allergy_status(a: &mut AllergyIntolerance, status: CodeableConcept) {
    const V2_0438: &str = "http://terminology.hl7.org/CodeSystem/v2-0438";
    const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
    const VERIFICATION: &str =
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
    let Some(coding) = status.coding.first() else {
        return;
    };
    if coding.system.as_deref() == Some(CLINICAL) {
        a.clinical_status = Some(status);
        return;
    }
    if coding.system.as_deref().is_some_and(|s| s != V2_0438) {
        return;
    }
    let verification = match coding.code.as_deref() {
        Some("C" | "I") => ("confirmed", "Confirmed"),
        Some("D" | "P" | "S" | "U") => ("unconfirmed", "Unconfirmed"),
        Some("E") => ("entered-in-error", "Entered in Error"),
        _ => return,
    };
    a.verification_status = Some(CodeableConcept::coding(
        VERIFICATION,
        verification.0,
        Some(verification.1),
    ));
    match coding.code.as_deref() {
        Some("I") => {
            a.clinical_status = Some(CodeableConcept::coding(
                CLINICAL,
                "inactive",
                Some("Inactive"),
            ));
        }
        Some("E") => a.clinical_status = None,
        _ => {}
    }
}

/// IAM -> AllergyIntolerance (IG `IAM[AllergyIntolerance]`): as AL1 for fields 2-5, identifier IAM-7,
/// onset IAM-11 (else the text IAM-12), recordedDate IAM-13, verification and clinical status IAM-17
/// ([`allergy_status`]).
pub fn iam(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(mut a) = allergy(ctx, seg) else {
        return;
    };
    let identifier = field(seg, 7).and_then(|f| ei(f, None));
    if let Some(i) = &identifier {
        a.id = Some(ctx.id("AllergyIntolerance", &key(i)));
    }
    a.identifier = identifier.clone().into_iter().collect();
    a.onset = ctx
        .date(field(seg, 11), ctx.at(11))
        .map(AllergyIntoleranceOnset::DateTime)
        .or_else(|| field_text(seg, 12).map(AllergyIntoleranceOnset::String));
    a.recorded_date = ctx.dtm(field(seg, 13), ctx.at(13));
    if let Some(status) = ctx.code(field(seg, 17), &ctx.at(17)) {
        allergy_status(&mut a, status);
    }
    let i = ctx.add(a, conditional(identifier.as_ref()));
    ctx.last = Some(i);
}

// ---------------------------------------------------------------------------------------------------
// DG1, PR1
// ---------------------------------------------------------------------------------------------------

/// A code with the description field as its text when the code carries none (DG1-4, PR1-4).
fn with_text(
    code: Option<CodeableConcept>,
    description: Option<String>,
) -> Option<CodeableConcept> {
    match (code, description) {
        (Some(mut c), Some(d)) => {
            if c.text.is_none() {
                c.text = Some(d);
            }
            Some(c)
        }
        (Some(c), None) => Some(c),
        (None, Some(d)) => Some(CodeableConcept::text(d)),
        (None, None) => None,
    }
}

/// The identity of a coded clinical statement on the patient: its identifier when sent, else the
/// patient, the visit, the code and the date.
fn clinical_id(
    ctx: &Ctx<'_>,
    resource_type: &str,
    identifier: Option<&Identifier>,
    code: Option<&CodeableConcept>,
    date: Option<&str>,
) -> String {
    if let Some(i) = identifier {
        return ctx.id(resource_type, &key(i));
    }
    let patient = ctx.patient.map(|p| id_of(ctx, p)).unwrap_or_default();
    let visit = ctx.encounter.map(|e| id_of(ctx, e)).unwrap_or_default();
    let code = code
        .and_then(|c| {
            c.coding
                .first()
                .and_then(|c| c.code.clone())
                .or_else(|| c.text.clone())
        })
        .unwrap_or_default();
    ctx.id(resource_type, &[patient, visit, &code, date.unwrap_or("")])
}

/// DG1 -> Condition (IG `DG1[Condition]`): code DG1-3 (text DG1-4), onset DG1-5, category
/// `encounter-diagnosis` (a DG1 is a diagnosis of the visit), asserter DG1-16, recordedDate and the
/// asserted-date extension DG1-19, identifier DG1-20, verificationStatus `entered-in-error` for DG1-21
/// `D`, dueTo DG1-22 (the parent diagnosis, by its identifier). In an order it is also the
/// ServiceRequest's reasonReference; in a visit, the Encounter's (and its EpisodeOfCare's) diagnosis
/// ([`encounter_diagnosis`]).
pub fn dg1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let code = with_text(ctx.code(field(seg, 3), &ctx.at(3)), field_text(seg, 4));
    let identifier = field(seg, 20).and_then(|f| ei(f, None));
    if code.is_none() && identifier.is_none() {
        return;
    }
    let onset = ctx.dtm(field(seg, 5), ctx.at(5));
    let id = clinical_id(
        ctx,
        "Condition",
        identifier.as_ref(),
        code.as_ref(),
        onset.as_deref(),
    );
    let asserter = field(seg, 16)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x))
        .map(|i| ctx.reference(i));
    let attested = ctx.dtm(field(seg, 19), ctx.at(19));
    let mut extension: Vec<Extension> = attested
        .iter()
        .map(|d| {
            Extension::new(
                "http://hl7.org/fhir/StructureDefinition/condition-assertedDate",
                ExtensionValue::DateTime(d.clone()),
            )
        })
        .collect();
    if let Some(parent) = field(seg, 22).and_then(|f| ei(f, None)) {
        let resource = Condition {
            id: Some(ctx.id("Condition", &key(&parent))),
            identifier: vec![parent.clone()],
            subject: ctx.patient_ref().unwrap_or_default(),
            ..Default::default()
        };
        let p = ctx.add(resource, conditional(Some(&parent)));
        extension.push(Extension::new(
            "http://hl7.org/fhir/StructureDefinition/condition-dueTo",
            ExtensionValue::Reference(Box::new(ctx.reference(p))),
        ));
    }
    let verification = (field_text(seg, 21).as_deref() == Some("D")).then(|| {
        CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "entered-in-error",
            Some("Entered in Error"),
        )
    });
    let condition = Condition {
        id: Some(id),
        extension,
        identifier: identifier.clone().into_iter().collect(),
        verification_status: verification,
        category: vec![CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            Some("Encounter Diagnosis"),
        )],
        code,
        subject: ctx.patient_ref().unwrap_or_default(),
        encounter: ctx.encounter_ref(),
        onset: onset.map(ConditionOnset::DateTime),
        recorded_date: attested,
        asserter,
        ..Default::default()
    };
    let i = ctx.add(condition, conditional(identifier.as_ref()));
    let reference = ctx.reference(i);
    if let Some(order) = ctx.order
        && let Some(r) = ctx.get_mut::<ServiceRequest>(order)
        && !r.reason_reference.contains(&reference)
    {
        r.reason_reference.push(reference.clone());
    }
    encounter_diagnosis(ctx, seg, reference);
    ctx.last = Some(i);
}

/// DG1-6 (diagnosis type, table 0052) -> a diagnosis role (IG concept map `DiagnosisType`): `A`
/// (admitting) is `AD` in `diagnosis-role`; the codes the map leaves unmapped (`W` working, `F` final)
/// stay table 0052 codes; a sender's own code map has already been applied.
fn diagnosis_role(mut c: CodeableConcept) -> CodeableConcept {
    const V2_0052: &str = "http://terminology.hl7.org/CodeSystem/v2-0052";
    for coding in &mut c.coding {
        let table = coding.system.is_none() || coding.system.as_deref() == Some(V2_0052);
        match coding.code.as_deref() {
            Some("A") if table => {
                *coding = Coding {
                    system: Some("http://terminology.hl7.org/CodeSystem/diagnosis-role".into()),
                    code: Some("AD".into()),
                    display: Some("Admission Diagnosis".into()),
                    ..Default::default()
                };
            }
            Some("W" | "F") if coding.system.is_none() => coding.system = Some(V2_0052.into()),
            _ => {}
        }
    }
    c
}

/// DG1 -> the current Encounter's diagnosis (IG `DG1[Encounter]`) and, when the encounter belongs to an
/// EpisodeOfCare, the episode's diagnosis (IG `DG1[EpisodeOfCare]`): condition the Condition, use/role
/// DG1-6 ([`diagnosis_role`]), rank DG1-15 (a positive integer; anything else is a Warning).
fn encounter_diagnosis(ctx: &mut Ctx<'_>, seg: &Segment<'_>, condition: Reference) {
    let Some(e) = ctx.encounter else { return };
    let role = ctx.code(field(seg, 6), &ctx.at(6)).map(diagnosis_role);
    let rank = field_text(seg, 15).and_then(|r| match r.trim().parse::<u32>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            ctx.issue(
                Severity::Warning,
                ctx.at(15),
                IssueKind::Invalid,
                "diagnosis priority is not a positive integer: no rank".into(),
            );
            None
        }
    });
    let Some(encounter) = ctx.get_mut::<Encounter>(e) else {
        return;
    };
    if encounter.diagnosis.iter().any(|d| d.condition == condition) {
        return;
    }
    encounter.diagnosis.push(EncounterDiagnosis {
        condition: condition.clone(),
        r#use: role.clone(),
        rank,
        ..Default::default()
    });
    let episodes: Vec<String> = encounter
        .episode_of_care
        .iter()
        .filter_map(|r| {
            r.reference
                .as_deref()?
                .strip_prefix("urn:uuid:")
                .map(str::to_owned)
        })
        .collect();
    for id in episodes {
        let Some(i) = ctx.existing("EpisodeOfCare", &id) else {
            continue;
        };
        if let Some(episode) = ctx.get_mut::<EpisodeOfCare>(i)
            && !episode.diagnosis.iter().any(|d| d.condition == condition)
        {
            episode.diagnosis.push(EpisodeOfCareDiagnosis {
                condition: condition.clone(),
                role: role.clone(),
                rank,
                ..Default::default()
            });
        }
    }
}

/// PR1 -> Procedure (IG `PR1[Procedure]`): status `unknown` (the IG leaves it to the message; an ADT does
/// not say whether the procedure is done), code PR1-3 (text PR1-4), performed PR1-5, category PR1-6,
/// performers PR1-8 (anesthesiologist), PR1-11 (surgeon), PR1-12 (procedure practitioner), reasonCode
/// PR1-15, identifier PR1-19, location PR1-23, partOf PR1-25 (by its identifier). A PR1 in an FT1's
/// group (DFT) is also a `service` of that ChargeItem.
pub fn pr1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let code = with_text(ctx.code(field(seg, 3), &ctx.at(3)), field_text(seg, 4));
    let identifier = field(seg, 19).and_then(|f| ei(f, None));
    if code.is_none() && identifier.is_none() {
        return;
    }
    let performed = ctx.dtm(field(seg, 5), ctx.at(5));
    let id = clinical_id(
        ctx,
        "Procedure",
        identifier.as_ref(),
        code.as_ref(),
        performed.as_deref(),
    );
    let category = ctx.code(field(seg, 6), &ctx.at(6));
    let mut performer = Vec::new();
    for (n, function) in [
        (8, Some(("88189002", "Anesthesiologist"))),
        (11, Some(("304292004", "Surgeon"))),
        (12, None),
    ] {
        for r in reps(seg, n) {
            if let Some(p) = entities::practitioner(ctx, r) {
                performer.push(ProcedurePerformer {
                    function: function.map(|(c, d)| CodeableConcept::coding(SNOMED, c, Some(d))),
                    actor: ctx.reference(p),
                    ..Default::default()
                });
            }
        }
    }
    let reason: Vec<CodeableConcept> = reps(seg, 15)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(15)))
        .collect();
    let location = field(seg, 23)
        .and_then(|pl| entities::location(ctx, pl))
        .map(|i| ctx.reference(i));
    let part_of: Vec<Reference> = field(seg, 25)
        .and_then(|f| ei(f, None))
        .map(|parent| {
            let resource = Procedure {
                id: Some(ctx.id("Procedure", &key(&parent))),
                identifier: vec![parent.clone()],
                status: Some("unknown".into()),
                subject: ctx.patient_ref().unwrap_or_default(),
                ..Default::default()
            };
            let p = ctx.add(resource, conditional(Some(&parent)));
            ctx.reference(p)
        })
        .into_iter()
        .collect();
    let procedure = Procedure {
        id: Some(id),
        identifier: identifier.clone().into_iter().collect(),
        part_of,
        status: Some("unknown".into()),
        category,
        code,
        subject: ctx.patient_ref().unwrap_or_default(),
        encounter: ctx.encounter_ref(),
        performed: performed.map(ProcedurePerformed::DateTime),
        performer,
        location,
        reason_code: reason,
        ..Default::default()
    };
    let i = ctx.add(procedure, conditional(identifier.as_ref()));
    if let Some(charge) = charge_before(ctx, seg) {
        let reference = Reference {
            r#type: Some("Procedure".into()),
            ..ctx.reference(i)
        };
        if let Some(c) = ctx.get_mut::<ChargeItem>(charge)
            && !c.service.contains(&reference)
        {
            c.service.push(reference);
        }
    }
    ctx.last = Some(i);
}

/// The ChargeItem of the FT1 this PR1 belongs to (DFT `FINANCIAL_PROCEDURE`: PR1 and its ROL after the
/// FT1 and its NTE): the last ChargeItem in the bundle, which that FT1 added.
fn charge_before(ctx: &Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let mut i = seg.index();
    loop {
        i = i.checked_sub(1)?;
        match ctx.message.segment(i)?.id() {
            "FT1" => break,
            "PR1" | "ROL" | "NTE" | "PRT" => {}
            _ => return None,
        }
    }
    ctx.resources()
        .enumerate()
        .filter(|(_, r)| r.resource_type() == "ChargeItem")
        .last()
        .map(|(i, _)| i)
}

// ---------------------------------------------------------------------------------------------------
// PRT
// ---------------------------------------------------------------------------------------------------

/// PRT -> PractitionerRole (IG `PRT[PractitionerRole]`): code PRT-4 (table 0443), practitioner PRT-5,
/// specialty PRT-6, organization PRT-8, location PRT-9, period PRT-11..12, telecom PRT-15; then linked
/// to the resource before it as the message maps say: an Observation's performer; a DiagnosticReport's
/// resultsInterpreter (`PRI`) or performer; a ServiceRequest's requester (`OP`) or performer; a
/// Procedure's performer; a Patient's generalPractitioner; an Encounter's participant.
pub fn prt(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let code = ctx.code(field(seg, 4), &ctx.at(4));
    let role_code = code
        .as_ref()
        .and_then(|c| c.coding.first())
        .and_then(|c| c.code.clone())
        .unwrap_or_default();
    let code = code.map(|mut c| {
        for coding in &mut c.coding {
            if coding.system.is_none() {
                coding.system = Some(V2_0443.into());
            }
            if coding.system.as_deref() == Some(V2_0443) && coding.display.is_none() {
                coding.display = coding
                    .code
                    .as_deref()
                    .and_then(provider_role_display)
                    .map(str::to_owned);
            }
        }
        c
    });
    let device = prt_device(ctx, seg);
    let person = field(seg, 5)
        .and_then(|f| f.repetition(1))
        .filter(|p| present(*p));
    // The device is the Observation's device (message maps: `Observation.device`), or one of the
    // Procedure's performers.
    if let Some(d) = device
        && let Some(target) = ctx.last
    {
        let reference = ctx.reference(d);
        match type_of(ctx, target) {
            "Observation" => {
                if let Some(o) = ctx.get_mut::<Observation>(target)
                    && o.device.is_none()
                {
                    o.device = Some(reference);
                }
            }
            "Procedure" => {
                if let Some(p) = ctx.get_mut::<Procedure>(target)
                    && !p.performer.iter().any(|x| x.actor == reference)
                {
                    p.performer.push(ProcedurePerformer {
                        actor: reference,
                        ..Default::default()
                    });
                }
            }
            _ => {}
        }
    }
    let has_organization = field(seg, 8).is_some_and(present);
    // The message maps make a PractitionerRole of an observation's PRT only when PRT-5 is valued; a
    // PRT naming a device (IG `PRT[Device]`) or only a place (`PRT[Observation-Location]`) and no
    // person is the participation of that device or place.
    if person.is_none() && (device.is_some() || !has_organization) {
        let location = prt_location(ctx, seg);
        // The device's organization and place: its owner (PRT-8) and location (PRT-9).
        if let Some(d) = device {
            let owner = field(seg, 8)
                .and_then(|f| f.repetition(1))
                .and_then(|x| entities::organization(ctx, x))
                .map(|o| ctx.reference(o));
            let location = location.map(|l| ctx.reference(l));
            if let Some(r) = ctx.get_mut::<Device>(d) {
                if r.owner.is_none() {
                    r.owner = owner;
                }
                if r.location.is_none() {
                    r.location = location;
                }
            }
        }
        return;
    }
    let practitioner = person.and_then(|x| entities::practitioner(ctx, x));
    let organization = field(seg, 8).and_then(|x| entities::organization(ctx, x));
    if practitioner.is_none() && organization.is_none() {
        return;
    }
    let specialty = ctx.code(field(seg, 6), &ctx.at(6));
    let location = field(seg, 9)
        .and_then(|f| f.repetition(1))
        .and_then(|pl| entities::location(ctx, pl));
    let start = ctx.dtm(field(seg, 11), ctx.at(11));
    let end = ctx.dtm(field(seg, 12), ctx.at(12));
    let telecom: Vec<fhir::ContactPoint> = reps(seg, 15).filter_map(crate::xtn).collect();
    let Some(i) = role(ctx, practitioner, code, organization) else {
        return;
    };
    let location = location.map(|l| ctx.reference(l));
    if let Some(r) = ctx.get_mut::<PractitionerRole>(i) {
        if r.specialty.is_empty() {
            r.specialty.extend(specialty);
        }
        if r.location.is_empty() {
            r.location.extend(location);
        }
        if r.period.is_none() && (start.is_some() || end.is_some()) {
            r.period = Some(Period {
                start,
                end,
                ..Default::default()
            });
        }
        if r.telecom.is_empty() {
            r.telecom = telecom;
        }
    }
    let reference = ctx.reference(i);
    let Some(target) = ctx.last.or(ctx.encounter).or(ctx.patient) else {
        return;
    };
    match type_of(ctx, target) {
        "Observation" => {
            if let Some(o) = ctx.get_mut::<Observation>(target) {
                o.performer.push(reference);
            }
        }
        "DiagnosticReport" => {
            if let Some(d) = ctx.get_mut::<DiagnosticReport>(target) {
                if role_code == "PRI" {
                    d.results_interpreter.push(reference);
                } else {
                    d.performer.push(reference);
                }
            }
        }
        "ServiceRequest" => {
            if let Some(s) = ctx.get_mut::<ServiceRequest>(target) {
                if role_code == "OP" {
                    s.requester = Some(reference);
                } else {
                    s.performer.push(reference);
                }
            }
        }
        "Procedure" => {
            if let Some(p) = ctx.get_mut::<Procedure>(target) {
                p.performer.push(ProcedurePerformer {
                    actor: reference,
                    ..Default::default()
                });
            }
        }
        "Patient" => {
            if let Some(p) = ctx.get_mut::<Patient>(target) {
                p.general_practitioner.push(reference);
            }
        }
        "Encounter" => {
            if let Some(e) = ctx.get_mut::<Encounter>(target) {
                e.participant.push(EncounterParticipant {
                    individual: Some(reference),
                    ..Default::default()
                });
            }
        }
        _ => {}
    }
}

/// PRT-9 (the place of a participation with no person) -> Location; on an Observation it is the
/// `event-location` extension (IG `PRT[Observation-Location]`). Returns the Location.
fn prt_location(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let l = field(seg, 9)
        .and_then(|f| f.repetition(1))
        .and_then(|pl| entities::location(ctx, pl))?;
    let reference = ctx.reference(l);
    if let Some(target) = ctx.last
        && let Some(o) = ctx.get_mut::<Observation>(target)
    {
        o.extension.push(Extension::new(
            "http://hl7.org/fhir/StructureDefinition/event-location",
            ExtensionValue::Reference(Box::new(reference)),
        ));
    }
    Some(l)
}

/// The display of a v2 table 0443 (provider role) code.
fn provider_role_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "AD" => "Admitting Provider",
        "AI" => "Assistant/Alternate Interpreter",
        "AP" => "Administering Provider",
        "ARI" => "Assistant Result Interpreter",
        "AT" => "Attending Provider",
        "AUT" => "Author/Event Initiator",
        "CP" => "Consulting Provider",
        "DP" => "Dispensing Provider",
        "EP" => "Entering Provider",
        "EQUIP" => "Equipment",
        "FHCP" => "Family Health Care Professional",
        "IP" => "Initiating Provider",
        "MDIR" => "Medical Director",
        "OP" => "Ordering Provider",
        "PH" => "Pharmacist",
        "PI" => "Primary Interpreter",
        "PP" => "Primary Care Provider",
        "PRI" => "Principal Result Interpreter",
        "RCT" => "Results Copies To",
        "RO" => "Responsible Observer",
        "RP" => "Referring Provider",
        "RT" => "Referred To Provider",
        "SB" => "Send by",
        "SC" => "Specimen Collector",
        "TN" => "Technician",
        "TR" => "Transcriptionist",
        "VP" => "Verifying Provider",
        "VPS" => "Verifying Pharmacist",
        "VTS" => "Verifying Treatment Supplier",
        _ => return None,
    })
}

/// PRT with a device (IG `PRT[Device]`) -> Device: identifier PRT-10 (each repetition, EI), udiCarrier
/// PRT-16 (device identifier EI.1, issuer the universal id EI.3 as a URI), manufactureDate PRT-17,
/// expirationDate PRT-18, lotNumber PRT-19, serialNumber PRT-20, distinctIdentifier PRT-21 (EI.1), type
/// PRT-22. The id comes from the first identifier, else the UDI, else the serial number.
fn prt_device(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let identifier: Vec<Identifier> = reps(seg, 10).filter_map(|r| ei(r, None)).collect();
    let udi = field(seg, 16).filter(|n| present(*n)).and_then(|n| {
        let device_identifier = part(n, 1)?;
        let issuer = part(n, 3).map(|u| match part(n, 4).as_deref() {
            Some("ISO") => ["urn:oid:", &u].concat(),
            _ if is_oid(&u) => ["urn:oid:", &u].concat(),
            Some("UUID" | "GUID") => ["urn:uuid:", &u].concat(),
            _ => crate::vocab::local_system(&u).into_owned(),
        });
        Some(fhir::DeviceUdiCarrier {
            device_identifier: Some(device_identifier),
            issuer,
            ..Default::default()
        })
    });
    let serial = field_text(seg, 20);
    let id = match (identifier.first(), &udi, &serial) {
        (Some(i), _, _) => ctx.id("Device", &key(i)),
        (None, Some(u), _) => ctx.id(
            "Device",
            &[
                "udi",
                u.issuer.as_deref().unwrap_or(""),
                u.device_identifier.as_deref().unwrap_or(""),
            ],
        ),
        (None, None, Some(s)) => ctx.id("Device", &["serial", s]),
        (None, None, None) => return None,
    };
    let manufacture_date = ctx.dtm(field(seg, 17), ctx.at(17));
    let expiration_date = ctx.dtm(field(seg, 18), ctx.at(18));
    let r#type = ctx.code(field(seg, 22), &ctx.at(22));
    let identity = conditional(identifier.first()).cloned();
    let resource = Device {
        id: Some(id),
        identifier,
        udi_carrier: udi.into_iter().collect(),
        manufacture_date,
        expiration_date,
        lot_number: field_text(seg, 19),
        serial_number: serial,
        distinct_identifier: field(seg, 21)
            .and_then(|n| part(n, 1))
            .map(|s| s.trim().to_owned()),
        r#type,
        ..Default::default()
    };
    Some(ctx.add(resource, identity.as_ref()))
}

// ---------------------------------------------------------------------------------------------------
// ACC
// ---------------------------------------------------------------------------------------------------

/// The extension pointing an injury Observation at the place of the injury (VRDR).
const INJURY_LOCATION: &str =
    "http://hl7.org/fhir/us/vrdr/StructureDefinition/Observation-Location";

/// v2 table 0136 (yes/no) as a coded value; other codes are not a yes/no answer.
fn yes_no_concept(code: &str) -> Option<CodeableConcept> {
    let display = match code {
        "Y" => "Yes",
        "N" => "No",
        _ => return None,
    };
    Some(CodeableConcept::coding(
        "http://terminology.hl7.org/CodeSystem/v2-0136",
        code,
        Some(display),
    ))
}

/// ACC (accident) -> an injury incident Observation about the patient. The IG has no ACC map; the shape
/// is FHIR-Converter's and VRDR's Injury Incident: code LOINC 11374-6 "Injury incident description
/// Narrative", value ACC-8 (description), effective ACC-1 (accident time), identifier ACC-13, performer
/// ACC-7 (entered by, the person who recorded the accident), the place of the accident (ACC-3 name,
/// ACC-11 address) as a Location in VRDR's Observation-Location extension, and the yes/no indicators
/// ACC-5 (job related), ACC-6 (death) and ACC-10 (police notified) as components in table 0136. No
/// code system names those indicators, so each component's code is the v2 field's name as text.
pub fn acc(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let effective = ctx
        .dtm(field(seg, 1), ctx.at(1))
        .map(ObservationEffective::DateTime);
    let description = field_text(seg, 8);
    let mut component = Vec::new();
    for (n, name) in [
        (5, "Accident Job Related Indicator"),
        (6, "Accident Death Indicator"),
        (10, "Police Notified Indicator"),
    ] {
        if let Some(v) = field_comp(seg, n, 1).and_then(|c| yes_no_concept(&c)) {
            component.push(ObservationComponent {
                code: CodeableConcept::text(name),
                value: Some(ObservationComponentValue::CodeableConcept(Box::new(v))),
                ..Default::default()
            });
        }
    }
    let place = field_text(seg, 3);
    let address = field(seg, 11).and_then(crate::xad);
    if effective.is_none() && description.is_none() && component.is_empty() && place.is_none() {
        return;
    }
    let mut extension = Vec::new();
    if place.is_some() || address.is_some() {
        let location = fhir::Location {
            id: Some(ctx.message_scoped_id("Location", "accident")),
            name: place,
            address,
            ..Default::default()
        };
        let l = ctx.add(location, None);
        extension.push(Extension::new(
            INJURY_LOCATION,
            ExtensionValue::Reference(Box::new(ctx.reference(l))),
        ));
    }
    let identifier: Vec<Identifier> = field(seg, 13)
        .and_then(|f| ei(f, None))
        .into_iter()
        .collect();
    let performer: Vec<Reference> = field(seg, 7)
        .and_then(|x| entities::practitioner(ctx, x))
        .map(|p| ctx.reference(p))
        .into_iter()
        .collect();
    let observation = Observation {
        id: Some(ctx.message_scoped_id("Observation", "accident")),
        extension,
        identifier,
        status: Some("final".into()),
        code: CodeableConcept::coding(
            "http://loinc.org",
            "11374-6",
            Some("Injury incident description Narrative"),
        ),
        subject: ctx.patient_ref(),
        encounter: ctx.encounter_ref(),
        effective,
        performer,
        value: description.map(ObservationValue::String),
        component,
        ..Default::default()
    };
    ctx.add(observation, None);
}

// ---------------------------------------------------------------------------------------------------
// PDA
// ---------------------------------------------------------------------------------------------------

/// PDA (patient death and autopsy) -> the death's clinical record (the IG has no PDA map; the shape is
/// FHIR-Converter's): each death cause PDA-1 a Condition (code, subject); the yes/no indicators PDA-3
/// (death certified), PDA-6 (autopsy) and PDA-9 (coroner) each an Observation valued in table 0136;
/// the death certification (signed PDA-4, by PDA-5) and the autopsy (period PDA-7, by PDA-8) each a
/// completed Procedure with its performer. Where a published code names the act or question it is
/// coded (VRDR's: LOINC 85699-7 autopsy performed, 74497-9 medical examiner or coroner contacted; SNOMED
/// CT 308646001 death certification, 29240004 autopsy examination), with the v2 field name as text;
/// "death certified" has no such code and is text only. PDA-2 (death location) is a `completed` location of the current Encounter (where the
/// patient was at the end of the stay).
pub fn pda(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(subject) = ctx.patient_ref() else {
        return;
    };
    if let Some(e) = ctx.encounter
        && let Some(l) = field(seg, 2).and_then(|pl| entities::location(ctx, pl))
    {
        let location = ctx.reference(l);
        if let Some(enc) = ctx.get_mut::<Encounter>(e)
            && !enc.location.iter().any(|x| x.location == location)
        {
            enc.location.push(fhir::EncounterLocation {
                location,
                status: Some("completed".into()),
                ..Default::default()
            });
        }
    }
    for r in reps(seg, 1) {
        let Some(code) = ctx.code(Some(r), &ctx.at(1)) else {
            continue;
        };
        let key = code
            .coding
            .first()
            .and_then(|c| c.code.clone())
            .or_else(|| code.text.clone())
            .unwrap_or_default();
        let condition = Condition {
            id: Some(ctx.message_scoped_id("Condition", &format!("death-cause|{key}"))),
            code: Some(code),
            subject: subject.clone(),
            ..Default::default()
        };
        ctx.add(condition, None);
    }
    for (n, name, loinc) in [
        (3, "Death Certified Indicator", None),
        (
            6,
            "Autopsy Indicator",
            Some(("85699-7", "Autopsy was performed")),
        ),
        (
            9,
            "Coroner Indicator",
            Some((
                "74497-9",
                "Medical examiner or coroner was contacted [US Standard Certificate of Death]",
            )),
        ),
    ] {
        let Some(value) = field_comp(seg, n, 1).and_then(|c| yes_no_concept(&c)) else {
            continue;
        };
        let observation = Observation {
            id: Some(ctx.message_scoped_id("Observation", &format!("PDA-{n}"))),
            status: Some("final".into()),
            code: coded_text(loinc.map(|(c, d)| ("http://loinc.org", c, d)), name),
            subject: Some(subject.clone()),
            encounter: ctx.encounter_ref(),
            value: Some(ObservationValue::CodeableConcept(Box::new(value))),
            ..Default::default()
        };
        ctx.add(observation, None);
    }
    let certified = ctx
        .dtm(field(seg, 4), ctx.at(4))
        .map(ProcedurePerformed::DateTime);
    let autopsy = {
        let f = field(seg, 7);
        let start = ctx.dtm(f.and_then(|f| f.component(1)), ctx.at(7));
        let end = ctx.dtm(f.and_then(|f| f.component(2)), ctx.at(7));
        entities::period(start, end).map(|p| ProcedurePerformed::Period(Box::new(p)))
    };
    for (what, snomed, performed, by, function) in [
        (
            "Death certification",
            ("308646001", "Death certification"),
            certified,
            5,
            "Death Certified By",
        ),
        (
            "Autopsy",
            ("29240004", "Autopsy examination"),
            autopsy,
            8,
            "Autopsy Performed By",
        ),
    ] {
        let performer: Vec<ProcedurePerformer> = field(seg, by)
            .and_then(|x| entities::practitioner(ctx, x))
            .map(|p| ProcedurePerformer {
                function: Some(CodeableConcept::text(function)),
                actor: ctx.reference(p),
                ..Default::default()
            })
            .into_iter()
            .collect();
        if performed.is_none() && performer.is_empty() {
            continue;
        }
        let procedure = Procedure {
            id: Some(ctx.message_scoped_id("Procedure", what)),
            status: Some("completed".into()),
            code: Some(coded_text(
                Some(("http://snomed.info/sct", snomed.0, snomed.1)),
                what,
            )),
            subject: subject.clone(),
            encounter: ctx.encounter_ref(),
            performed,
            performer,
            ..Default::default()
        };
        ctx.add(procedure, None);
    }
}

/// A concept with a published code when there is one, and always the v2 name as its text.
fn coded_text(code: Option<(&str, &str, &str)>, text: &str) -> CodeableConcept {
    let mut concept = match code {
        Some((system, code, display)) => CodeableConcept::coding(system, code, Some(display)),
        None => CodeableConcept::default(),
    };
    concept.text = Some(text.into());
    concept
}

// ---------------------------------------------------------------------------------------------------
// SAC
// ---------------------------------------------------------------------------------------------------

/// SAC (specimen container) -> the container of the Specimen of the SPM before it (the IG has no SAC map;
/// the specimen group of OML/OUL holds SPM then its SAC): container identifier SAC-3, capacity SAC-21 and
/// available specimen volume SAC-22 in the units SAC-24; the accession identifier SAC-2 when SPM-30 gave
/// none. Primary (parent) container SAC-4 and the equipment fields are not mapped.
pub fn sac(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(spm) = crate::segments::pharmacy::preceding(ctx, seg, "SPM", &["ORC", "PID", "MSH"])
    else {
        return;
    };
    let (id, _) = spm_id(ctx, &spm);
    let Some(i) = ctx.existing("Specimen", &id) else {
        return;
    };
    let container_id: Vec<Identifier> = field(seg, 3)
        .and_then(|f| ei(f, None))
        .into_iter()
        .collect();
    let accession = field(seg, 2).and_then(|f| ei(f, None));
    let unit = field_comp(seg, 24, 1);
    let volume = |n: usize| -> Option<Quantity> {
        let v = field_comp(seg, n, 1)?;
        let mut q = crate::quantity(&v, None).ok().flatten()?;
        q.unit = unit.clone();
        Some(q)
    };
    let (capacity, available) = (volume(21), volume(22));
    let Some(s) = ctx.get_mut::<Specimen>(i) else {
        return;
    };
    if s.accession_identifier.is_none() {
        s.accession_identifier = accession;
    }
    if container_id.is_empty() && capacity.is_none() && available.is_none() {
        return;
    }
    if s.container.is_empty() {
        s.container.push(SpecimenContainer::default());
    }
    let c = &mut s.container[0];
    for identifier in container_id {
        if !c.identifier.contains(&identifier) {
            c.identifier.push(identifier);
        }
    }
    if capacity.is_some() {
        c.capacity = capacity;
    }
    if available.is_some() {
        c.specimen_quantity = available;
    }
}
