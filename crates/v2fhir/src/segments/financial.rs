//! FT1 -> ChargeItem (with a MedicationDispense for a drug charge); RF1 -> a referral ServiceRequest.

use fhir::{
    Account, Annotation, ChargeItem, ChargeItemOccurrence, ChargeItemPerformer, ChargeItemProduct,
    CodeableConcept, Device, Identifier, Money, Organization, Period, Procedure, Quantity,
    Reference, ServiceRequest, ServiceRequestOccurrence,
};
use hl7v2::{Node, Segment};

use crate::context::{Ctx, IssueKind, Severity};
use crate::entities;
use crate::read::{comp, field, field_comp, field_text, reps, sub};
use crate::segments::pharmacy::{ei, key};

/// SNOMED CT 3457005 "Patient referral", the ServiceRequest category FHIR's example value set gives for
/// a referral.
pub const REFERRAL_CATEGORY: (&str, &str, &str) =
    ("http://snomed.info/sct", "3457005", "Patient referral");

/// v2 table 0443 (provider role), for the ordering provider among a charge's performers.
const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";

/// FT1 -> ChargeItem (the IG has no FT1 map; after FHIR-Converter's DFT output):
///
/// - identifier FT1-2 (transaction id, CX); the id from it (with the sending facility when it names no
///   assigning authority), else from the message and FT1-1; status `unknown` (FT1 does not say whether the
///   charge was billed);
/// - code FT1-7 (transaction code; the FT1-8 description as text when FT1-7 is empty); quantity
///   FT1-10; priceOverride FT1-11 (extended amount, CP.1 MO); occurrence FT1-4 (DR: a dateTime, a period
///   when it has an end), enteredDate FT1-5 (posting date);
/// - costCenter FT1-13 (department) as an Organization; reason FT1-19 (diagnoses);
/// - performer FT1-20 (performed by), FT1-21 (ordered by, function v2-0443 `OP`) as Practitioners;
///   enterer FT1-24; performingOrganization FT1-32, requestingOrganization FT1-33 (XON);
/// - service: a Procedure for FT1-25 (procedure code) and the MedicationDispense for FT1-29 (NDC code,
///   [`crate::segments::pharmacy::ft1_dispense`]); the PR1 after the FT1 add theirs (`order::pr1`);
/// - product: a Device for FT1-34 (item number) / FT1-35 (model number), else FT1-29 as a code;
/// - subject the patient, context the encounter, account the visit's Account (and the BLG-3 Account of
///   the order group, [`blg`]), supportingInformation the
///   current order.
pub fn ft1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let before = ctx.resources().count();
    crate::segments::pharmacy::ft1_dispense(ctx, seg);
    let dispense = ctx
        .resources()
        .enumerate()
        .skip(before)
        .find(|(_, r)| r.resource_type() == "MedicationDispense")
        .map(|(i, _)| i);
    let Some(subject) = ctx.patient_ref() else {
        let at = ctx.at_segment.clone();
        ctx.issue(
            Severity::Error,
            at,
            IssueKind::Invalid,
            "no patient (PID) in the message: the charge needs a subject, left out".into(),
        );
        return;
    };
    let code = match (ctx.code(field(seg, 7), &ctx.at(7)), field_text(seg, 8)) {
        (Some(mut c), d) => {
            if c.text.is_none() && c.coding.is_empty() {
                c.text = d;
            }
            c
        }
        (None, Some(d)) => CodeableConcept::text(d),
        (None, None) => {
            ctx.issue(
                Severity::Error,
                ctx.at(7),
                IssueKind::Invalid,
                "no transaction code: the charge needs a code, left out".into(),
            );
            return;
        }
    };
    let identifier: Vec<Identifier> = field(seg, 2)
        .and_then(|f| f.repetition(1))
        .and_then(|cx| ctx.identifier(cx))
        .into_iter()
        .collect();
    let identity = identifier.first().cloned();
    let id = match &identity {
        Some(i) => {
            let facility = match i.system {
                Some(_) => String::new(),
                None => ctx
                    .message
                    .sending_facility()
                    .map(|s| s.into_owned())
                    .unwrap_or_default(),
            };
            let [system, value] = key(i);
            ctx.id("ChargeItem", &[system, value, &facility])
        }
        None => ctx.message_scoped_id("ChargeItem", &field_text(seg, 1).unwrap_or_default()),
    };

    let start = ctx.dtm(field(seg, 4), ctx.at(4));
    let end = ctx.dtm(field(seg, 4).and_then(|f| f.component(2)), ctx.at(4));
    let occurrence = match (start, end) {
        (Some(s), None) => Some(ChargeItemOccurrence::DateTime(s)),
        (Some(s), Some(e)) if s == e => Some(ChargeItemOccurrence::DateTime(s)),
        (None, None) => None,
        (start, end) => Some(ChargeItemOccurrence::Period(Box::new(Period {
            start,
            end,
            ..Default::default()
        }))),
    };
    let entered_date = ctx.dtm(field(seg, 5), ctx.at(5));
    let quantity = number(ctx, field_text(seg, 10), 10).map(|value| Quantity {
        value: Some(value),
        ..Default::default()
    });
    let price_override = money(ctx, seg, 11);
    let cost_center = field(seg, 13).and_then(|c| department(ctx, c));
    let reason: Vec<CodeableConcept> = reps(seg, 19)
        .filter_map(|r| ctx.code(Some(r), &ctx.at(19)))
        .collect();

    let mut performer = Vec::new();
    for (n, function) in [(20, None), (21, Some(("OP", "Ordering Provider")))] {
        for xcn in reps(seg, n) {
            if let Some(p) = entities::practitioner(ctx, xcn) {
                performer.push(ChargeItemPerformer {
                    function: function.map(|(c, d)| CodeableConcept::coding(V2_0443, c, Some(d))),
                    actor: ctx.reference(p),
                    ..Default::default()
                });
            }
        }
    }
    let enterer = field(seg, 24)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x))
        .map(|i| ctx.reference(i));
    let performing_organization = field(seg, 32)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::organization(ctx, x))
        .map(|i| ctx.reference(i));
    let requesting_organization = field(seg, 33)
        .and_then(|f| f.repetition(1))
        .and_then(|x| entities::organization(ctx, x))
        .map(|i| ctx.reference(i));

    let mut service = Vec::new();
    if let Some(code) = ctx.code(field(seg, 25), &ctx.at(25)) {
        let procedure = Procedure {
            id: Some(ctx.id("Procedure", &[&id, "FT1-25"])),
            status: Some("unknown".into()),
            code: Some(code),
            subject: subject.clone(),
            encounter: ctx.encounter_ref(),
            ..Default::default()
        };
        let p = ctx.add(procedure, None);
        service.push(typed_ref(ctx, p, "Procedure"));
    }
    if let Some(d) = dispense {
        service.push(typed_ref(ctx, d, "MedicationDispense"));
    }
    let product = match item_device(ctx, seg) {
        Some(d) => Some(ChargeItemProduct::Reference(Box::new(ctx.reference(d)))),
        None => ctx
            .code(field(seg, 29), &ctx.at(29))
            .map(|c| ChargeItemProduct::CodeableConcept(Box::new(c))),
    };
    let mut account: Vec<Reference> = ctx
        .resources()
        .enumerate()
        .filter(|(_, r)| r.resource_type() == "Account")
        .last()
        .map(|(i, _)| ctx.reference(i))
        .into_iter()
        .collect();
    // The order's billing account: a BLG after the FT1 in its order group (ORM, RDE, OML).
    let blg = crate::segments::pharmacy::following(ctx, seg, &["FT1", "CTI", "BLG", "NTE"])
        .into_iter()
        .find(|s| s.id() == "BLG");
    if let Some(b) = blg
        && let Some(a) = blg_account(ctx, &b)
    {
        let r = ctx.reference(a);
        if !account.contains(&r) {
            account.push(r);
        }
    }

    let charge = ChargeItem {
        id: Some(id),
        identifier,
        status: Some("unknown".into()),
        code,
        subject,
        context: ctx.encounter_ref(),
        occurrence,
        performer,
        performing_organization,
        requesting_organization,
        cost_center,
        quantity,
        price_override,
        enterer,
        entered_date,
        reason,
        service,
        product,
        account,
        supporting_information: ctx.order.map(|o| ctx.reference(o)).into_iter().collect(),
        ..Default::default()
    };
    let conditional = identity.filter(|i| i.system.is_some());
    let i = ctx.add(charge, conditional.as_ref());
    ctx.last = Some(i);
}

/// A reference to the resource at `index` with its type, as ChargeItem.service carries them.
fn typed_ref(ctx: &Ctx<'_>, index: usize, resource_type: &str) -> Reference {
    Reference {
        r#type: Some(resource_type.into()),
        ..ctx.reference(index)
    }
}

/// NM `value` of field `n` as a FHIR decimal; a value that is not a number becomes an issue.
fn number(ctx: &mut Ctx<'_>, value: Option<String>, n: usize) -> Option<fhir::Decimal> {
    match crate::quantity(&value?, None) {
        Ok(q) => q?.value,
        Err(e) => {
            ctx.issue(
                Severity::Error,
                ctx.at(n),
                IssueKind::Invalid,
                e.to_string(),
            );
            None
        }
    }
}

/// CP field `n` -> Money: value CP.1.1 (MO quantity), currency CP.1.2 (MO denomination, ISO 4217: kept
/// only when it is three letters).
fn money(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Option<Money> {
    let node = field(seg, n).and_then(|f| f.repetition(1))?;
    let value = number(ctx, sub(node, 1, 1), n)?;
    let currency =
        sub(node, 1, 2).filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
    Some(Money {
        value: Some(value),
        currency,
        ..Default::default()
    })
}

/// A CWE naming a local entity (FT1-13 department, FT1-34 item): identifier value CWE.1, system CWE.3
/// (as [`crate::coding_system_uri`] names it); `None` without a code.
fn cwe_identifier(node: Node<'_>) -> Option<Identifier> {
    Some(Identifier {
        value: Some(comp(node, 1)?),
        system: comp(node, 3)
            .map(|s| crate::vocab::local_system(&crate::coding_system_uri(&s)).into_owned()),
        ..Default::default()
    })
}

/// FT1-13 (department code, CWE) -> Organization: identifier CWE.1 in CWE.3, name CWE.2.
fn department(ctx: &mut Ctx<'_>, node: Node<'_>) -> Option<Reference> {
    let identifier = cwe_identifier(node);
    let name = comp(node, 2);
    let id = match (&identifier, &name) {
        (Some(i), _) => ctx.id("Organization", &["department", key(i)[0], key(i)[1]]),
        (None, Some(n)) => ctx.id("Organization", &["department", n]),
        (None, None) => return None,
    };
    let organization = Organization {
        id: Some(id),
        identifier: identifier.into_iter().collect(),
        name,
        ..Default::default()
    };
    let i = ctx.add(organization, None);
    Some(ctx.reference(i))
}

/// FT1-34 (item number, CWE) and FT1-35 (model number) -> the Device charged for: identifier FT1-34,
/// modelNumber FT1-35, patient the current patient.
fn item_device(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let identifier = field(seg, 34).and_then(cwe_identifier);
    let model = field_text(seg, 35);
    let id = match (&identifier, &model) {
        (Some(i), _) => ctx.id("Device", &["item", key(i)[0], key(i)[1]]),
        (None, Some(m)) => ctx.id("Device", &["model", m]),
        (None, None) => return None,
    };
    let device = Device {
        id: Some(id),
        identifier: identifier.into_iter().collect(),
        model_number: model,
        patient: ctx.patient_ref(),
        ..Default::default()
    };
    Some(ctx.add(device, None))
}

/// The patient of a PID that comes after the segment (REF_I12 sends RF1 before PID), as a logical
/// reference by its first PID-3 identifier: the Patient resource does not exist yet when RF1 is mapped.
fn later_patient(ctx: &Ctx<'_>) -> Option<Reference> {
    let pid = ctx.message.find_segment("PID", 1)?;
    let identifier = reps(&pid, 3).find_map(|cx| ctx.identifier(cx))?;
    Some(Reference {
        r#type: Some("Patient".into()),
        identifier: Some(Box::new(identifier)),
        ..Default::default()
    })
}

/// After the whole message: a referral mapped before its PID (REF_I12 sends RF1 first) names the
/// patient by identifier only; once the message has a Patient (and a visit), the referral points at
/// them. In REF messages the visit comes last and is also the orders' encounter. Run by
/// [`crate::message`] after the last segment.
pub fn resolve_referrals(ctx: &mut Ctx<'_>) {
    let Some(patient) = ctx.patient_ref() else {
        return;
    };
    let encounter = ctx.encounter_ref();
    let pending: Vec<usize> = ctx
        .resources()
        .enumerate()
        .filter(|(_, r)| r.resource_type() == "ServiceRequest")
        .map(|(i, _)| i)
        .collect();
    // REF_I12..I15 send the visit (PV1) after the referral and its orders: it is theirs too.
    let visit_last = ctx.code == "REF";
    for i in pending {
        if visit_last
            && let Some(r) = ctx.get_mut::<ServiceRequest>(i)
            && r.encounter.is_none()
        {
            r.encounter = encounter.clone();
        }
        if let Some(r) = ctx.get_mut::<ServiceRequest>(i)
            && r.subject.reference.is_none()
            && r.subject.r#type.as_deref() == Some("Patient")
            && r.category.iter().any(|c| {
                c.coding
                    .iter()
                    .any(|k| k.code.as_deref() == Some(REFERRAL_CATEGORY.1))
            })
        {
            r.subject = patient.clone();
            if r.encounter.is_none() {
                r.encounter = encounter.clone();
            }
        }
    }
}

/// RF1 -> ServiceRequest (a referral), after FHIR-Converter's REF and ADT output (the IG has no RF1 map).
///
/// - identifier RF1-6 (originating referral id) and RF1-11 (external referral id); the id from the first
///   of them, else the message;
/// - status: `revoked` for REF^I14 (cancel referral); else RF1-1 (table 0283): A `active`, P `on-hold`,
///   R and E `revoked`; `unknown` when empty; intent `order`; priority RF1-2 (table 0280: S stat, A asap,
///   R routine);
/// - category: SNOMED CT 3457005 (patient referral) and RF1-3 (referral type); locationCode RF1-5
///   (referral category: inpatient, outpatient...);
/// - occurrencePeriod RF1-7 to RF1-8 (effective to expiration), authoredOn RF1-9 (process date);
/// - reasonCode RF1-10, with RF1-14 (reason text) as its text; note RF1-24 (comment);
/// - performer: RF1-19 (authorized provider) as an Organization, RF1-20 (authorized professional) as a
///   Practitioner; subject and encounter from the message (RF1 before PID: the patient by identifier,
///   replaced by the Patient and visit once they are mapped, see [`resolve_referrals`]).
pub fn rf1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let identifier: Vec<Identifier> = [6, 11]
        .into_iter()
        .filter_map(|n| field(seg, n).and_then(ei))
        .collect();
    let identity = identifier.first().cloned();
    let id = match &identity {
        Some(i) => ctx.id("ServiceRequest", &["referral", key(i)[0], key(i)[1]]),
        None => ctx.message_scoped_id("ServiceRequest", "referral"),
    };
    let Some(subject) = ctx.patient_ref().or_else(|| later_patient(ctx)) else {
        let at = ctx.at_segment.clone();
        ctx.issue(
            Severity::Error,
            at,
            IssueKind::Invalid,
            "no patient (PID) in the message: the referral needs a subject, left out".into(),
        );
        return;
    };
    let status = if ctx.code == "REF" && ctx.event == "I14" {
        "revoked"
    } else {
        match field_comp(seg, 1, 1).as_deref() {
            Some("A") => "active",
            Some("P") => "on-hold",
            Some("R" | "E") => "revoked",
            _ => "unknown",
        }
    };
    let priority = field_comp(seg, 2, 1).and_then(|p| match p.as_str() {
        "S" => Some("stat"),
        "A" => Some("asap"),
        "R" => Some("routine"),
        _ => None,
    });
    let (system, code, display) = REFERRAL_CATEGORY;
    let mut category = vec![CodeableConcept::coding(system, code, Some(display))];
    category.extend(ctx.code(field(seg, 3), &ctx.at(3)));
    let location_code: Vec<CodeableConcept> =
        ctx.code(field(seg, 5), &ctx.at(5)).into_iter().collect();
    let start = ctx.dtm(field(seg, 7), ctx.at(7));
    let end = ctx.dtm(field(seg, 8), ctx.at(8));
    let occurrence = (start.is_some() || end.is_some()).then(|| {
        ServiceRequestOccurrence::Period(Box::new(Period {
            start,
            end,
            ..Default::default()
        }))
    });
    let authored_on = ctx.dtm(field(seg, 9), ctx.at(9));
    let reason_text = field_text(seg, 14);
    let mut reason_code: Vec<CodeableConcept> = reps(seg, 10)
        .filter_map(|n| ctx.code(Some(n), &ctx.at(10)))
        .collect();
    match (reason_code.first_mut(), reason_text) {
        (Some(c), Some(t)) if c.text.is_none() => c.text = Some(t),
        (None, Some(t)) => reason_code.push(CodeableConcept::text(t)),
        _ => {}
    }
    let mut performer = Vec::new();
    for xon in reps(seg, 19) {
        if let Some(o) = entities::organization(ctx, xon) {
            performer.push(ctx.reference(o));
        }
    }
    for xcn in reps(seg, 20) {
        if let Some(p) = entities::practitioner(ctx, xcn) {
            performer.push(ctx.reference(p));
        }
    }
    let request = ServiceRequest {
        id: Some(id),
        identifier,
        status: Some(status.into()),
        intent: Some("order".into()),
        priority: priority.map(str::to_owned),
        category,
        location_code,
        occurrence,
        authored_on,
        reason_code,
        performer,
        note: field_text(seg, 24)
            .map(|t| Annotation {
                text: Some(t),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        subject,
        encounter: ctx.encounter_ref(),
        ..Default::default()
    };
    let conditional = identity.filter(|i| i.system.is_some());
    let i = ctx.add(request, conditional.as_ref());
    ctx.last = Some(i);
}

/// BLG (billing, in an order group) -> the Account the order is billed to: identifier BLG-3 (CX), status
/// `active`, subject the patient. The IG has no BLG map (the order messages list it unmapped); an
/// account number is an Account, as for PID-18 (`PID[Account]`). The order's ChargeItems (the FT1 just
/// before the BLG) are charged to it as well ([`ft1`]). BLG-1 (when to charge) and BLG-2 (charge type,
/// table 0122) have no element on Account or ChargeItem.
pub fn blg(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    blg_account(ctx, seg);
}

/// The Account of BLG segment `seg` (made once; an FT1 before it makes it first).
fn blg_account(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let node = field(seg, 3)?;
    let at = format!("BLG-3 (segment {})", seg.index() + 1);
    let identifier = entities::identifier(ctx, node, &at)?;
    let id = ctx.id("Account", &key(&identifier));
    let account = Account {
        id: Some(id),
        identifier: vec![identifier.clone()],
        status: Some("active".into()),
        subject: ctx.patient_ref().into_iter().collect(),
        ..Default::default()
    };
    let conditional = identifier.system.is_some().then_some(&identifier);
    Some(ctx.add(account, conditional))
}
