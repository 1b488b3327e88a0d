//! One resource -> one message: which message a resource becomes, and the segments in their order.

use fhir::{
    Appointment, CodeableConcept, DiagnosticReport, DiagnosticReportEffective, Identifier,
    Immunization, ImmunizationOccurrence, Location, Observation, ObservationEffective,
    Organization, Patient, Practitioner, PractitionerRole, Reference, Resource, ServiceRequest,
    ServiceRequestOccurrence, TimingRepeatBounds,
};
use hl7v2::OwnedMessage;

use super::resolve::{Lookup, Resolve};
use super::segments::{
    self, Cx, OrderIds, missing, notes, obx, pid_for, practitioner, pv1, subject, unresolved,
};
use super::types::{self, cwe, put_dtm};
use super::writer::Writer;
use super::{OrderStructure, Result, WRITTEN_TYPES, WriteOptions, vocab};
use crate::error::{Error, ErrorKind};
use crate::profile::Profile;

/// Writes one resource (not a Bundle) as its message.
pub(crate) fn write(
    resource: &Resource,
    resolver: &dyn Resolve,
    options: &WriteOptions,
    profile: &Profile,
) -> Result<OwnedMessage> {
    let cx = |contained| context(resolver, contained, options, profile);
    match resource {
        Resource::ServiceRequest(r) => order(&cx(&r.contained), r),
        Resource::DiagnosticReport(r) => report(&cx(&r.contained), r),
        Resource::Observation(r) => observation(&cx(&r.contained), r),
        Resource::Patient(r) => adt(&cx(&r.contained), r),
        Resource::Appointment(r) => siu(&cx(&r.contained), r),
        Resource::Immunization(r) => vxu(&cx(&r.contained), r),
        other => Err(Error::new(
            ErrorKind::Unsupported,
            0,
            format!(
                "{} is not written back to v2 (written: {})",
                other.resource_type(),
                WRITTEN_TYPES.join(", ")
            ),
        )),
    }
}

fn context<'a>(
    resolver: &'a dyn Resolve,
    contained: &'a [Resource],
    options: &'a WriteOptions,
    profile: &'a Profile,
) -> Cx<'a> {
    Cx {
        lookup: Lookup {
            resolver,
            contained,
        },
        options,
        profile,
    }
}

/// The trigger event: the caller's when given (it must be one of `allowed`), else `default`.
fn event<'a>(
    o: &'a WriteOptions,
    default: &'a str,
    allowed: &[&str],
    resource_type: &str,
) -> Result<&'a str> {
    match o.event.as_deref() {
        None => Ok(default),
        Some(e) if allowed.contains(&e) => Ok(e),
        Some(_) => Err(Error::new(
            ErrorKind::Unsupported,
            0,
            format!(
                "WriteOptions.event: a {resource_type} is written with event {}",
                allowed.join(", ")
            ),
        )),
    }
}

/// A new message with its MSH.
fn start(o: &WriteOptions, message_type: [&str; 3]) -> Result<Writer> {
    let mut w = Writer::new(&o.version)?;
    segments::msh(&mut w, o, message_type)?;
    Ok(w)
}

/// True when a concept has something CWE can carry (a code or text).
fn has_concept(c: &CodeableConcept) -> bool {
    c.coding
        .iter()
        .any(|c| c.code.as_deref().is_some_and(|x| !x.is_empty()))
        || c.text.as_deref().is_some_and(|t| !t.is_empty())
}

/// Start and end of a ServiceRequest's occurrence (dateTime, period, or a timing's bounds period).
fn occurrence(r: &ServiceRequest) -> (Option<&str>, Option<&str>) {
    match &r.occurrence {
        Some(ServiceRequestOccurrence::DateTime(t)) => (Some(t), None),
        Some(ServiceRequestOccurrence::Period(p)) => (p.start.as_deref(), p.end.as_deref()),
        Some(ServiceRequestOccurrence::Timing(t)) => {
            match t.repeat.as_ref().and_then(|r| r.bounds.as_ref()) {
                Some(TimingRepeatBounds::Period(p)) => (p.start.as_deref(), p.end.as_deref()),
                _ => (t.event.first().map(String::as_str), None),
            }
        }
        None => (None, None),
    }
}

/// ServiceRequest -> ORM^O01 (MSH, PID, [PV1], ORC, OBR, NTE...) or OML^O21 (MSH, PID, [PV1], ORC,
/// TQ1, OBR, NTE...).
///
/// - ORC-1 the caller's order control, else from the status ([`vocab::order_control`]); ORC-5 the
///   order status; ORC-2/OBR-2 the placer number (identifier typed `PLAC`, else the first untyped one),
///   ORC-3/OBR-3 the filler number (typed `FILL`), ORC-4 the requisition (placer group number);
/// - timing: ORM ORC-7.4/7.5 start/end and ORC-7.6 priority; OML TQ1-7/8 and TQ1-9 (table 0485);
/// - ORC-9 authoredOn; ORC-12 and OBR-16 the requester (XCN); OBR-4 the code (receiver's maps at
///   `OBR-4`); OBR-31 the reason codes; notes as NTE after OBR.
///
/// # Errors
/// `ServiceRequest.subject` unresolved (and without a logical identifier); `ServiceRequest.code`
/// missing (OBR-4 is required).
fn order(cx: &Cx<'_>, r: &ServiceRequest) -> Result<OwnedMessage> {
    let o = cx.options;
    let patient = subject(cx, Some(&r.subject), "ServiceRequest.subject")?;
    let code = r
        .code
        .as_ref()
        .filter(|c| has_concept(c))
        .ok_or_else(|| missing("ServiceRequest.code", "OBR-4 needs the ordered service"))?;
    let message_type = match o.order_structure {
        OrderStructure::Orm => [
            "ORM",
            event(o, "O01", &["O01"], "ServiceRequest")?,
            "ORM_O01",
        ],
        OrderStructure::Oml => [
            "OML",
            event(o, "O21", &["O21"], "ServiceRequest")?,
            "OML_O21",
        ],
    };
    let mut w = start(o, message_type)?;
    pid_for(&mut w, cx, &patient)?;
    if let Some(e) = segments::encounter(cx, r.encounter.as_ref()) {
        pv1(&mut w, cx, Some(e))?;
    }
    let ids = OrderIds::of(&r.identifier, r.requisition.as_ref());
    let (control, status) = vocab::order_control(r.status.as_deref());
    let (start_at, end_at) = occurrence(r);
    let priority = r.priority.as_deref().and_then(vocab::priority);

    w.segment("ORC")?;
    w.put("1", o.order_control.as_deref().unwrap_or(control))?;
    ids.write(&mut w, "2", "3")?;
    if let Some(g) = ids.group {
        types::ei(&mut w, "4", g)?;
    }
    w.put_opt("5", status)?;
    if o.order_structure == OrderStructure::Orm {
        put_dtm(&mut w, "7.4", start_at, "ServiceRequest.occurrence")?;
        put_dtm(&mut w, "7.5", end_at, "ServiceRequest.occurrence")?;
        w.put_opt("7.6", priority)?;
    }
    put_dtm(
        &mut w,
        "9",
        r.authored_on.as_deref(),
        "ServiceRequest.authoredOn",
    )?;
    if let Some(req) = &r.requester {
        practitioner(&mut w, cx, "12(1)", req)?;
    }

    if o.order_structure == OrderStructure::Oml
        && (start_at.is_some() || end_at.is_some() || priority.is_some())
    {
        w.segment("TQ1")?;
        w.put("1", "1")?;
        put_dtm(&mut w, "7", start_at, "ServiceRequest.occurrence")?;
        put_dtm(&mut w, "8", end_at, "ServiceRequest.occurrence")?;
        if let Some(p) = priority {
            w.put("9.1", p)?;
            w.put("9.3", "HL70485")?;
        }
    }

    w.segment("OBR")?;
    w.put("1", "1")?;
    ids.write(&mut w, "2", "3")?;
    cwe(&mut w, "4", code, "OBR-4", cx.profile)?;
    if let Some(req) = &r.requester {
        practitioner(&mut w, cx, "16(1)", req)?;
    }
    segments::repeat(&mut w, "31", &r.reason_code, |w, at, c| {
        cwe(w, at, c, "OBR-31", cx.profile)
    })?;
    notes(&mut w, &r.note)?;
    w.finish()
}

/// The first `basedOn` ServiceRequest that resolves.
fn based_on<'a>(cx: &Cx<'a>, refs: &[Reference]) -> Option<&'a ServiceRequest> {
    refs.iter().find_map(|r| cx.lookup.get::<ServiceRequest>(r))
}

/// A report's or observation's own identifier as the filler number: typed `FILL`, else the first
/// untyped one (a result is the filler's record).
fn filler_of(ids: &[Identifier]) -> Option<&Identifier> {
    ids.iter()
        .find(|i| types::identifier_type(i) == Some("FILL"))
        .or_else(|| ids.iter().find(|i| types::identifier_type(i).is_none()))
}

/// ORC for a result whose order is known: ORC-1 `RE`, ORC-2/3 the order numbers, ORC-12 the requester.
fn result_orc(w: &mut Writer, cx: &Cx<'_>, ids: &OrderIds<'_>, sr: &ServiceRequest) -> Result<()> {
    w.segment("ORC")?;
    w.put("1", "RE")?;
    ids.write(w, "2", "3")?;
    if let Some(req) = &sr.requester {
        practitioner(w, cx, "12(1)", req)?;
    }
    Ok(())
}

/// DiagnosticReport -> ORU^R01: MSH, PID, [PV1], [ORC when `basedOn` resolves], OBR, [NTE with the
/// conclusion], then per result Observation its OBX rows (members of a panel included) and NTE.
///
/// OBR-2 the order's placer number, OBR-3 the report's filler identifier (else the order's), OBR-4
/// the code (maps at `OBR-4`), OBR-7/8 the effective time or period, OBR-16 the order's requester,
/// OBR-22 issued, OBR-24 the category's v2-0074 code, OBR-25 the status (table 0123).
///
/// # Errors
/// `DiagnosticReport.subject` missing or unresolved; `DiagnosticReport.code` without a code or text;
/// a `DiagnosticReport.result[i]` that does not resolve to an Observation; those of [`obx`].
fn report(cx: &Cx<'_>, r: &DiagnosticReport) -> Result<OwnedMessage> {
    let o = cx.options;
    let patient = subject(cx, r.subject.as_ref(), "DiagnosticReport.subject")?;
    if !has_concept(&r.code) {
        return Err(missing(
            "DiagnosticReport.code",
            "OBR-4 needs the service reported",
        ));
    }
    let results = r
        .result
        .iter()
        .enumerate()
        .map(|(i, res)| {
            cx.lookup
                .get::<Observation>(res)
                .ok_or_else(|| unresolved(&format!("DiagnosticReport.result[{i}]")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut w = start(
        o,
        [
            "ORU",
            event(o, "R01", &["R01"], "DiagnosticReport")?,
            "ORU_R01",
        ],
    )?;
    pid_for(&mut w, cx, &patient)?;
    if let Some(e) = segments::encounter(cx, r.encounter.as_ref()) {
        pv1(&mut w, cx, Some(e))?;
    }
    let sr = based_on(cx, &r.based_on);
    let mut ids = sr
        .map(|s| OrderIds::of(&s.identifier, s.requisition.as_ref()))
        .unwrap_or_default();
    if let Some(f) = filler_of(&r.identifier) {
        ids.filler = Some(f);
    }
    if let Some(sr) = sr {
        result_orc(&mut w, cx, &ids, sr)?;
    }
    w.segment("OBR")?;
    w.put("1", "1")?;
    ids.write(&mut w, "2", "3")?;
    cwe(&mut w, "4", &r.code, "OBR-4", cx.profile)?;
    let (start_at, end_at) = match &r.effective {
        Some(DiagnosticReportEffective::DateTime(t)) => (Some(t.as_str()), None),
        Some(DiagnosticReportEffective::Period(p)) => (p.start.as_deref(), p.end.as_deref()),
        None => (None, None),
    };
    put_dtm(&mut w, "7", start_at, "DiagnosticReport.effective")?;
    put_dtm(&mut w, "8", end_at, "DiagnosticReport.effective")?;
    if let Some(req) = sr.and_then(|s| s.requester.as_ref()) {
        practitioner(&mut w, cx, "16(1)", req)?;
    }
    put_dtm(&mut w, "22", r.issued.as_deref(), "DiagnosticReport.issued")?;
    let section = r.category.iter().find_map(|c| {
        c.coding
            .iter()
            .find(|c| c.system.as_deref() == Some("http://terminology.hl7.org/CodeSystem/v2-0074"))
            .and_then(|c| c.code.as_deref())
    });
    w.put_opt("24", section)?;
    w.put_opt("25", r.status.as_deref().and_then(vocab::report_status))?;
    if let Some(c) = r.conclusion.as_deref().filter(|c| !c.is_empty()) {
        w.segment("NTE")?;
        w.put("1", "1")?;
        w.put("3", c)?;
    }
    for obs in results {
        observation_rows(&mut w, cx, obs)?;
    }
    w.finish()
}

/// An Observation's OBX rows: its own (unless it is a panel with members and no value of its own: the
/// OBR stands for the panel), then one per `hasMember` Observation.
///
/// # Errors
/// A member that does not resolve (`Observation.hasMember[i]`); those of [`obx`].
fn observation_rows(w: &mut Writer, cx: &Cx<'_>, obs: &Observation) -> Result<()> {
    let members = obs
        .has_member
        .iter()
        .enumerate()
        .map(|(i, m)| {
            cx.lookup
                .get::<Observation>(m)
                .ok_or_else(|| unresolved(&format!("Observation.hasMember[{i}]")))
        })
        .collect::<Result<Vec<_>>>()?;
    if obs.value.is_some() || members.is_empty() {
        obx(w, cx, obs, None)?;
    }
    for m in members {
        obx(w, cx, m, None)?;
    }
    Ok(())
}

/// Observation (alone) -> ORU^R01: MSH, PID, [PV1], [ORC], OBR, OBX (and its components and NTE).
///
/// The OBR stands for the order: the `basedOn` ServiceRequest's numbers and code when it resolves;
/// otherwise OBR-3 is the Observation's identifier and OBR-4 its code (OBR-4 is required, and a single
/// observation is its own universal service). OBR-7 the effective time, OBR-25 the status (table 0123).
///
/// # Errors
/// `Observation.subject` missing or unresolved; `Observation.code` empty; those of [`obx`].
fn observation(cx: &Cx<'_>, obs: &Observation) -> Result<OwnedMessage> {
    let o = cx.options;
    let patient = subject(cx, obs.subject.as_ref(), "Observation.subject")?;
    if !has_concept(&obs.code) {
        return Err(missing(
            "Observation.code",
            "OBX-3 needs the observation identifier",
        ));
    }
    let mut w = start(
        o,
        ["ORU", event(o, "R01", &["R01"], "Observation")?, "ORU_R01"],
    )?;
    pid_for(&mut w, cx, &patient)?;
    if let Some(e) = segments::encounter(cx, obs.encounter.as_ref()) {
        pv1(&mut w, cx, Some(e))?;
    }
    let sr = based_on(cx, &obs.based_on);
    let mut ids = sr
        .map(|s| OrderIds::of(&s.identifier, s.requisition.as_ref()))
        .unwrap_or_default();
    if ids.filler.is_none() {
        ids.filler = filler_of(&obs.identifier);
    }
    if let Some(sr) = sr {
        result_orc(&mut w, cx, &ids, sr)?;
    }
    w.segment("OBR")?;
    w.put("1", "1")?;
    ids.write(&mut w, "2", "3")?;
    let code = sr
        .and_then(|s| s.code.as_ref())
        .filter(|c| has_concept(c))
        .unwrap_or(&obs.code);
    cwe(&mut w, "4", code, "OBR-4", cx.profile)?;
    let effective = match &obs.effective {
        Some(ObservationEffective::DateTime(t) | ObservationEffective::Instant(t)) => {
            Some(t.as_str())
        }
        Some(ObservationEffective::Period(p)) => p.start.as_deref(),
        _ => None,
    };
    put_dtm(&mut w, "7", effective, "Observation.effective")?;
    if let Some(req) = sr.and_then(|s| s.requester.as_ref()) {
        practitioner(&mut w, cx, "16(1)", req)?;
    }
    w.put_opt("25", obs.status.as_deref().and_then(vocab::report_status))?;
    observation_rows(&mut w, cx, obs)?;
    w.finish()
}

/// Patient -> ADT^A08 (default), A04, A28 or A31: MSH, EVN, PID, NK1 per contact, PV1 (`N`, no
/// visit: a Patient carries none). A04/A08 use the ADT_A01 structure, A28/A31 ADT_A05.
///
/// # Errors
/// Those of [`segments::pid`] (no identifier with a value).
fn adt(cx: &Cx<'_>, p: &Patient) -> Result<OwnedMessage> {
    let o = cx.options;
    let ev = event(o, "A08", &["A04", "A08", "A28", "A31"], "Patient")?;
    let structure = if matches!(ev, "A28" | "A31") {
        "ADT_A05"
    } else {
        "ADT_A01"
    };
    let mut w = start(o, ["ADT", ev, structure])?;
    segments::evn(&mut w, o, ev)?;
    segments::pid(&mut w, cx, p)?;
    segments::nk1(&mut w, cx, p)?;
    pv1(&mut w, cx, None)?;
    w.finish()
}

/// What an Appointment participant's actor is, by the resolved resource, else by the reference's
/// `type` or `Type/` prefix.
fn actor_type(cx: &Cx<'_>, r: &Reference) -> Option<String> {
    if let Some(res) = cx.lookup.resource(r) {
        return Some(res.resource_type().to_owned());
    }
    r.r#type.clone().or_else(|| {
        r.reference
            .as_deref()
            .and_then(|t| t.split_once('/'))
            .map(|(t, _)| t.to_owned())
    })
}

/// Appointment -> SIU^S12 (new; S14 modified, S15 cancelled, S17 deleted, S26 no-show): MSH, SCH,
/// [NTE comment], PID, RGS, AIS per service type, AIL per Location participant, AIP per practitioner.
///
/// - SCH-1 placer appointment id (identifier typed `PLAC`, else the first untyped), SCH-2 filler id
///   (`FILL`), SCH-6 the cancellation reason, SCH-7 the first reason code, SCH-8 the appointment type,
///   SCH-9/10 the duration in minutes, SCH-11.4/11.5 start and end, SCH-12/16/20 the information-only
///   participants typed placer contact, filler contact, enterer, SCH-25 the status (table 0278);
/// - AIS-3 service type, AIS-4 start, AIS-7/8 duration; AIL-3 the Location (PL), AIL-6 start; AIP-3
///   the practitioner (XCN), AIP-4 the participant type, AIP-6 start.
///
/// # Errors
/// No participant is a Patient (`Appointment.participant.actor`), or it does not resolve and has no
/// logical identifier.
fn siu(cx: &Cx<'_>, a: &Appointment) -> Result<OwnedMessage> {
    let o = cx.options;
    let default = match a.status.as_deref() {
        Some("cancelled") => "S15",
        Some("noshow") => "S26",
        Some("entered-in-error") => "S17",
        _ => "S12",
    };
    let ev = event(
        o,
        default,
        &["S12", "S13", "S14", "S15", "S16", "S17", "S26"],
        "Appointment",
    )?;
    let patient_ref = a
        .participant
        .iter()
        .filter_map(|p| p.actor.as_ref())
        .find(|r| actor_type(cx, r).as_deref() == Some("Patient"));
    let patient = subject(cx, patient_ref, "Appointment.participant.actor")?;
    let mut w = start(o, ["SIU", ev, "SIU_S12"])?;

    w.segment("SCH")?;
    let ids = OrderIds::of(&a.identifier, None);
    ids.write(&mut w, "1", "2")?;
    if let Some(reason) = &a.cancelation_reason {
        cwe(&mut w, "6", reason, "SCH-6", cx.profile)?;
    }
    if let Some(reason) = a.reason_code.first() {
        cwe(&mut w, "7", reason, "SCH-7", cx.profile)?;
    }
    if let Some(t) = &a.appointment_type {
        cwe(&mut w, "8", t, "SCH-8", cx.profile)?;
    }
    let minutes = a.minutes_duration.map(|m| m.to_string());
    if let Some(m) = &minutes {
        w.put("9", m)?;
        w.put("10.1", "min")?;
        w.put("10.3", "UCUM")?;
    }
    put_dtm(&mut w, "11.4", a.start.as_deref(), "Appointment.start")?;
    put_dtm(&mut w, "11.5", a.end.as_deref(), "Appointment.end")?;
    // SCH-12 placer contact, SCH-16 filler contact, SCH-20 entered by: the information-only
    // participants, by their type (the forward map writes these types).
    for p in &a.participant {
        let Some(actor) = p
            .actor
            .as_ref()
            .filter(|_| p.required.as_deref() == Some("information-only"))
        else {
            continue;
        };
        for t in &p.r#type {
            let enterer = t
                .coding
                .iter()
                .any(|c| c.code.as_deref() == Some("enterer"));
            let text = t.text.as_deref().map(str::to_ascii_lowercase);
            let at = match text.as_deref() {
                _ if enterer => "20(1)",
                Some("placer contact") => "12(1)",
                Some("filler contact") => "16(1)",
                _ => continue,
            };
            practitioner(&mut w, cx, at, actor)?;
        }
    }
    if let Some(s) = a.status.as_deref().and_then(vocab::appointment_status) {
        w.put("25.1", s)?;
        w.put("25.3", "HL70278")?;
    }
    let mut n = 0;
    for text in [a.comment.as_deref(), a.description.as_deref()]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_empty())
    {
        n += 1;
        w.segment("NTE")?;
        w.put("1", &n.to_string())?;
        w.put("3", text)?;
    }
    pid_for(&mut w, cx, &patient)?;

    w.segment("RGS")?;
    w.put("1", "1")?;
    for (i, service) in a.service_type.iter().filter(|c| has_concept(c)).enumerate() {
        w.segment("AIS")?;
        w.put("1", &(i + 1).to_string())?;
        cwe(&mut w, "3", service, "AIS-3", cx.profile)?;
        put_dtm(&mut w, "4", a.start.as_deref(), "Appointment.start")?;
        if let Some(m) = &minutes {
            w.put("7", m)?;
            w.put("8.1", "min")?;
            w.put("8.3", "UCUM")?;
        }
    }
    // SIU_S12 orders the resource groups AIS, AIG, AIL, AIP.
    let mut locations = 0;
    for p in &a.participant {
        let Some(actor) = &p.actor else { continue };
        if actor_type(cx, actor).as_deref() != Some("Location") {
            continue;
        }
        let Some(loc) = cx.lookup.get::<Location>(actor) else {
            continue;
        };
        locations += 1;
        w.segment("AIL")?;
        w.put("1", &locations.to_string())?;
        types::pl(&mut w, "3", loc, &cx.lookup)?;
        put_dtm(&mut w, "6", a.start.as_deref(), "Appointment.start")?;
    }
    let mut people = 0;
    for p in &a.participant {
        let Some(actor) = &p.actor else { continue };
        // Information-only participants (the SCH-12/16/20 contacts and enterer) are not booked
        // resources.
        if p.required.as_deref() == Some("information-only")
            || !matches!(
                actor_type(cx, actor).as_deref(),
                Some("Practitioner" | "PractitionerRole")
            )
        {
            continue;
        }
        let known = cx.lookup.get::<Practitioner>(actor).is_some()
            || cx.lookup.get::<PractitionerRole>(actor).is_some()
            || actor.identifier.is_some();
        if !known {
            continue;
        }
        people += 1;
        w.segment("AIP")?;
        w.put("1", &people.to_string())?;
        practitioner(&mut w, cx, "3(1)", actor)?;
        if let Some(t) = p.r#type.first() {
            cwe(&mut w, "4", t, "AIP-4", cx.profile)?;
        }
        put_dtm(&mut w, "6", a.start.as_deref(), "Appointment.start")?;
    }
    w.finish()
}

/// The manufacturer Organization -> CWE (RXA-17): its MVX identifier as code with its name as display,
/// else its name (or the reference's display) as text.
fn manufacturer(w: &mut Writer, cx: &Cx<'_>, r: &Reference) -> Result<()> {
    let org = cx.lookup.get::<Organization>(r);
    let name = org.and_then(|o| o.name.as_deref()).or(r.display.as_deref());
    let mvx = org
        .map(|o| o.identifier.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(r.identifier.as_deref())
        .find(|i| i.system.as_deref() == Some("http://hl7.org/fhir/sid/mvx"))
        .and_then(|i| i.value.as_deref());
    match mvx {
        Some(code) => {
            w.put("17.1", code)?;
            w.put_opt("17.2", name)?;
            w.put("17.3", "MVX")
        }
        None => w.put_opt("17.2", name),
    }
}

/// Immunization -> VXU^V04: MSH, PID, [PV1], ORC, RXA, [RXR].
///
/// - ORC-1 `RE`, ORC-2/3 the identifiers (`PLAC` / `FILL`, else the first untyped as filler), ORC-12
///   the ordering performer (function `OP`);
/// - RXA-1 `0`, RXA-2 `1`, RXA-3/4 the occurrence, RXA-5 the vaccine (maps at `RXA-5`), RXA-6/7 the
///   dose (`999`, unknown amount, when absent: RXA-6 is required), RXA-9 `00` new record / `01`
///   historical from primarySource (NIP001), RXA-10 the administering performer (function `AP`, else
///   the first without a function), RXA-15 lot, RXA-16 expiration, RXA-17 manufacturer (MVX), RXA-18
///   the status reason, RXA-19 reasons, RXA-20/21 completion status and action code (tables 0322,
///   0206), RXA-22 recorded;
/// - RXR-1 route, RXR-2 site.
///
/// # Errors
/// `Immunization.patient` unresolved (without identifier); `Immunization.occurrenceDateTime` missing
/// (RXA-3 is required; an `occurrenceString` cannot be a DTM); `Immunization.vaccineCode` empty.
fn vxu(cx: &Cx<'_>, imm: &Immunization) -> Result<OwnedMessage> {
    let o = cx.options;
    let patient = subject(cx, Some(&imm.patient), "Immunization.patient")?;
    let Some(ImmunizationOccurrence::DateTime(when)) = &imm.occurrence else {
        return Err(missing(
            "Immunization.occurrenceDateTime",
            "RXA-3 needs the administration date",
        ));
    };
    if !has_concept(&imm.vaccine_code) {
        return Err(missing(
            "Immunization.vaccineCode",
            "RXA-5 needs the administered code",
        ));
    }
    let mut w = start(
        o,
        ["VXU", event(o, "V04", &["V04"], "Immunization")?, "VXU_V04"],
    )?;
    pid_for(&mut w, cx, &patient)?;
    if let Some(e) = segments::encounter(cx, imm.encounter.as_ref()) {
        pv1(&mut w, cx, Some(e))?;
    }
    let performer = |function: Option<&str>| {
        imm.performer.iter().find(|p| {
            let f = p
                .function
                .as_ref()
                .and_then(|f| f.coding.iter().find_map(|c| c.code.as_deref()));
            f == function
        })
    };
    w.segment("ORC")?;
    w.put("1", "RE")?;
    let mut ids = OrderIds::of(&imm.identifier, None);
    if ids.filler.is_none() {
        ids.filler = ids.placer.take();
    }
    ids.write(&mut w, "2", "3")?;
    if let Some(p) = performer(Some("OP")) {
        practitioner(&mut w, cx, "12(1)", &p.actor)?;
    }

    w.segment("RXA")?;
    w.put("1", "0")?;
    w.put("2", "1")?;
    let when = types::dtm(when, "Immunization.occurrenceDateTime")?;
    w.put("3", &when)?;
    w.put("4", &when)?;
    cwe(&mut w, "5", &imm.vaccine_code, "RXA-5", cx.profile)?;
    match imm.dose_quantity.as_ref().and_then(|q| q.value.as_ref()) {
        Some(v) => w.put("6", &types::decimal(v))?,
        None => w.put("6", "999")?,
    }
    if let Some(q) = &imm.dose_quantity {
        types::units(&mut w, "7", q)?;
    }
    if let Some(primary) = imm.primary_source {
        let (code, text) = if primary {
            ("00", "New immunization record")
        } else {
            ("01", "Historical information - source unspecified")
        };
        w.put("9(1).1", code)?;
        w.put("9(1).2", text)?;
        w.put("9(1).3", "NIP001")?;
    }
    if let Some(p) = performer(Some("AP")).or_else(|| performer(None)) {
        practitioner(&mut w, cx, "10(1)", &p.actor)?;
    }
    w.put_opt("15", imm.lot_number.as_deref())?;
    put_dtm(
        &mut w,
        "16",
        imm.expiration_date.as_deref(),
        "Immunization.expirationDate",
    )?;
    if let Some(m) = &imm.manufacturer {
        manufacturer(&mut w, cx, m)?;
    }
    if let Some(reason) = &imm.status_reason {
        cwe(&mut w, "18", reason, "RXA-18", cx.profile)?;
    }
    segments::repeat(&mut w, "19", &imm.reason_code, |w, at, c| {
        cwe(w, at, c, "RXA-19", cx.profile)
    })?;
    let (completion, action) =
        vocab::completion_status(imm.status.as_deref(), imm.status_reason.is_some());
    w.put_opt("20", completion)?;
    w.put("21", action)?;
    put_dtm(
        &mut w,
        "22",
        imm.recorded.as_deref(),
        "Immunization.recorded",
    )?;

    if imm.route.is_some() || imm.site.is_some() {
        w.segment("RXR")?;
        if let Some(route) = &imm.route {
            cwe(&mut w, "1", route, "RXR-1", cx.profile)?;
        }
        if let Some(site) = &imm.site {
            cwe(&mut w, "2", site, "RXR-2", cx.profile)?;
        }
    }
    w.finish()
}
