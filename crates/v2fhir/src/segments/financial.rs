//! FT1 -> not converted (a charge is a FHIR ChargeItem, which the FHIR model does not carry); RF1 -> a
//! referral ServiceRequest.

use fhir::{
    Annotation, CodeableConcept, Identifier, Period, Reference, ServiceRequest,
    ServiceRequestOccurrence,
};
use hl7v2::Segment;

use crate::context::{Ctx, IssueKind, Severity};
use crate::entities;
use crate::read::{field, field_comp, field_text, reps};
use crate::segments::pharmacy::{ei, key};

/// SNOMED CT 3457005 "Patient referral", the ServiceRequest category FHIR's example value set gives for
/// a referral.
pub const REFERRAL_CATEGORY: (&str, &str, &str) =
    ("http://snomed.info/sct", "3457005", "Patient referral");

/// FT1: the charge is a ChargeItem, which `fhir` does not carry: recorded as an issue, never silently
/// dropped. A charge for a drug (FT1-29 NDC code) also says the drug was dispensed: that part becomes a
/// MedicationDispense ([`crate::segments::pharmacy::ft1_dispense`]).
pub fn ft1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    crate::segments::pharmacy::ft1_dispense(ctx, seg);
    let at = ctx.at_segment.clone();
    ctx.issue(
        Severity::Warning,
        at,
        IssueKind::UnmappedSegment,
        "FT1 charge not converted: a charge is a ChargeItem, which the FHIR model does not support"
            .into(),
    );
}

/// The patient of a PID that comes after the segment (REF_I12 sends RF1 before PID), as a logical
/// reference by its first PID-3 identifier: the Patient resource does not exist yet when RF1 is mapped.
fn later_patient(ctx: &Ctx<'_>) -> Option<Reference> {
    let pid = ctx.message.find_segment("PID", 1)?;
    let identifier = reps(&pid, 3)
        .into_iter()
        .find_map(|cx| ctx.identifier(cx))?;
    Some(Reference {
        r#type: Some("Patient".into()),
        identifier: Some(Box::new(identifier)),
        ..Default::default()
    })
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
///   Practitioner; subject and encounter from the message (RF1 before PID: the patient by identifier).
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
        .into_iter()
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
