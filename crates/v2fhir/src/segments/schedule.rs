//! SCH, RGS, AIS, AIG, AIL, AIP -> Appointment and its participants (IG `SCH[Appointment]`,
//! `AIS[Appointment]`, `AIS[ServiceRequest]`, `AIG[Appointment]`, `AIL[Appointment]`, `AIP[Appointment]`).
//!
//! One Appointment per SCH, identified by its placer and filler appointment ids (SCH-1/2), so every SIU
//! event about one appointment (S12 booked, S13 rescheduled, S15 cancelled, S26 no-show...) updates the
//! same resource. The resource segments after it (AIS services, AIG equipment, AIL locations, AIP
//! people) add participants to it; the patient (PID, which comes after SCH) joins at the first RGS.

use fhir::{
    Annotation, AnnotationAuthor, Appointment, AppointmentParticipant, CodeableConcept, Device,
    DeviceDeviceName, Identifier, Location, Period, Practitioner, PractitionerRole, Reference,
    ServiceRequest, ServiceRequestOccurrence,
};
use hl7v2::Segment;

use crate::context::{Ctx, IssueKind, Severity};
use crate::datatypes::{xad, xtn};
use crate::read::{comp, field, field_comp, field_text, reps, text};
use crate::segments::pharmacy::{V2_0443, ei, following, key, preceding, typed};
use crate::vocab::coding_system_uri;

/// `http://terminology.hl7.org/CodeSystem/v2-0276`, appointment reason codes; FHIR binds
/// `Appointment.appointmentType` to this table.
pub const V2_0276: &str = "http://terminology.hl7.org/CodeSystem/v2-0276";

/// The Appointment's id: from the filler appointment id (SCH-2), else the placer's (SCH-1), else the
/// message and the SCH's position in it. (Not [`Ctx::message_scoped_id`], which also names the segment
/// being converted: the RGS/AIx segments that look the Appointment up must find the SCH's id.)
fn appointment_id(ctx: &Ctx<'_>, sch: &Segment<'_>) -> (String, Option<Identifier>) {
    let filler = field(sch, 2).and_then(ei);
    let placer = field(sch, 1).and_then(ei);
    match filler.or(placer) {
        Some(i) => (ctx.id("Appointment", &key(&i)), Some(i)),
        None => {
            let m = ctx.message;
            let part = |v: Option<std::borrow::Cow<'_, str>>| {
                v.map(|c| c.into_owned()).unwrap_or_default()
            };
            let (app, facility, control) = (
                part(m.sending_application()),
                part(m.sending_facility()),
                part(m.control_id()),
            );
            let position = sch.index().to_string();
            (
                ctx.id(
                    "Appointment",
                    &["SCH", &app, &facility, &control, &position],
                ),
                None,
            )
        }
    }
}

/// True when the Appointment of `sch` will get a participant, which FHIR requires (1..*): a resource
/// segment (AIG, AIL, AIP) before the next SCH, or the patient (known already, or a PID after the SCH)
/// with an RGS or AIS to join at.
fn will_have_participant(ctx: &Ctx<'_>, sch: &Segment<'_>) -> bool {
    let mut patient = ctx.patient.is_some();
    let mut joins = false;
    let mut i = sch.index() + 1;
    while let Some(s) = ctx.message.segment(i) {
        match s.id() {
            "SCH" => break,
            "AIG" | "AIL" | "AIP" => return true,
            "RGS" | "AIS" => joins = true,
            "PID" => patient = true,
            _ => {}
        }
        i += 1;
    }
    patient && joins
}

/// Filler status (table 0278) -> `appointmentstatus` (IG `FillerStatusCodes[Appointment]`; `Dc`
/// discontinued is `cancelled`, `Blocked` and `Overbook` are still booked slots).
fn filler_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "Pending" => "pending",
        "Waitlist" => "waitlist",
        "Booked" | "Blocked" | "Overbook" => "booked",
        "Started" => "checked-in",
        "Complete" => "fulfilled",
        "Cancelled" | "Dc" => "cancelled",
        "Deleted" => "entered-in-error",
        "Noshow" => "noshow",
        _ => return None,
    })
}

/// A resource's filler status (table 0278) -> the participant's `participationstatus` (required in
/// FHIR): a booked or started resource has `accepted`, a cancelled, deleted or no-show one `declined`;
/// without a
/// status the resource's participation is `tentative`.
fn participant_status(code: Option<&str>) -> &'static str {
    match code {
        Some("Booked" | "Blocked" | "Overbook" | "Started" | "Complete") => "accepted",
        Some("Cancelled" | "Dc" | "Deleted" | "Noshow") => "declined",
        _ => "tentative",
    }
}

/// TQ1-9 priority (table 0485) -> Appointment.priority, on the iCal scale FHIR uses (1 highest, 5
/// normal, 9 lowest): S stat 1, A asap 2, R routine 5.
fn priority(code: &str) -> Option<u32> {
    Some(match code {
        "S" => 1,
        "A" => 2,
        "R" => 5,
        _ => return None,
    })
}

/// v2 table 0276 displays, for SCH-7 codes sent without one.
fn reason_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "ROUTINE" => "Routine appointment - default if not valued",
        "WALKIN" => "A previously unscheduled walk-in visit",
        "CHECKUP" => "A routine check-up, such as an annual physical",
        "FOLLOWUP" => "A follow up visit from a previous appointment",
        "EMERGENCY" => "Emergency appointment",
        _ => return None,
    })
}

/// SCH -> Appointment.
///
/// - identifier SCH-1 (`PLAC`) and SCH-2 (`FILL`); the id from SCH-2, else SCH-1;
/// - status: the event says what happened for S15/S16 (`cancelled`), S17 (`entered-in-error`) and S26
///   (`noshow`); otherwise SCH-25 (table 0278), else `booked`; cancelationReason SCH-6 on S15/S16;
/// - appointmentType SCH-7 (table 0276, the code system FHIR binds appointmentType to) when it is sent
///   without a system or as `HL70276`; with another system SCH-7 is a reasonCode;
/// - minutesDuration SCH-9 in SCH-10 units (seconds, minutes, hours; minutes when empty) when whole;
/// - start and end: the TQ1 after it (TQ1-7/8), else SCH-11.4/11.5; priority TQ1-9 (S 1, A 2, R 5);
/// - comment: the NTE after it.
///
/// An SCH whose Appointment would name no participant (FHIR requires one) is left out with an issue.
///
/// The contact persons SCH-12 (placer contact) and SCH-16 (filler contact) and the enterer SCH-20 are
/// information-only participants (IG `SCH[Appointment]`), see [`contacts`].
///
/// Not mapped: SCH-8 (table 0277 has no FHIR counterpart), SCH-26/27 (the orders are not in the
/// message).
pub fn sch(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    if !will_have_participant(ctx, seg) {
        // FHIR requires a participant (the patient, a person, location or device); an Appointment
        // naming no one would be invalid, and inventing one would misstate the message.
        ctx.issue(
            Severity::Error,
            ctx.at_segment.clone(),
            IssueKind::Invalid,
            "appointment left out: no patient or resource segment names a participant".into(),
        );
        return;
    }
    let (id, identity) = appointment_id(ctx, seg);
    let identifier: Vec<Identifier> = [
        field(seg, 1)
            .and_then(ei)
            .map(|i| typed(i, "PLAC", "Placer Identifier")),
        field(seg, 2)
            .and_then(ei)
            .map(|i| typed(i, "FILL", "Filler Identifier")),
    ]
    .into_iter()
    .flatten()
    .collect();

    let event_status = match ctx.event.as_str() {
        "S15" | "S16" => Some("cancelled"),
        "S17" => Some("entered-in-error"),
        "S26" => Some("noshow"),
        _ => None,
    };
    let status = event_status
        .or_else(|| field_comp(seg, 25, 1).as_deref().and_then(filler_status))
        .unwrap_or("booked");
    let cancelation_reason = matches!(ctx.event.as_str(), "S15" | "S16")
        .then(|| ctx.code(field(seg, 6), &ctx.at(6)))
        .flatten();

    let mut appointment_type = None;
    let mut reason_code = Vec::new();
    if let Some(mut c) = ctx.code(field(seg, 7), &ctx.at(7)) {
        let table_0276 = c
            .coding
            .first()
            .is_some_and(|k| k.system.is_none() || k.system.as_deref() == Some(V2_0276));
        if table_0276 {
            for k in &mut c.coding {
                if k.system.is_none() {
                    k.system = Some(V2_0276.into());
                    if k.display.is_none() {
                        k.display = k.code.as_deref().and_then(reason_display).map(Into::into);
                    }
                }
            }
            appointment_type = Some(c);
        } else {
            reason_code.push(c);
        }
    }

    let minutes_duration = field_comp(seg, 9, 1).and_then(|n| {
        let n: f64 = n.parse().ok()?;
        let factor = match field_comp(seg, 10, 1).as_deref() {
            None => 1.0,
            Some(u) => match u.to_ascii_lowercase().as_str() {
                "s" | "sec" => 1.0 / 60.0,
                "min" | "m" => 1.0,
                "h" | "hr" => 60.0,
                _ => return None,
            },
        };
        let m = n * factor;
        (m >= 0.0 && m.fract() == 0.0 && m < 1e9).then_some(m as u32)
    });

    let group = following(ctx, seg, &["TQ1", "TQ2", "NTE"]);
    let (mut start, mut end, mut priority_value) = (None, None, None);
    if let Some(tq1) = group.iter().find(|s| s.id() == "TQ1") {
        start = ctx.instant(field(tq1, 7), "TQ1-7");
        end = ctx.instant(field(tq1, 8), "TQ1-8");
        priority_value = field_comp(tq1, 9, 1).as_deref().and_then(priority);
    }
    if start.is_none() && end.is_none() {
        let tq = field(seg, 11).and_then(|f| f.repetition(1));
        start = ctx.instant(tq.and_then(|t| t.component(4)), ctx.at(11));
        end = ctx.instant(tq.and_then(|t| t.component(5)), ctx.at(11));
    }
    let comments: Vec<String> = group
        .iter()
        .filter(|s| s.id() == "NTE")
        .filter_map(|s| field_text(s, 3))
        .collect();

    let appointment = Appointment {
        id: Some(id),
        identifier,
        status: Some(status.into()),
        cancelation_reason,
        appointment_type,
        reason_code,
        minutes_duration,
        priority: priority_value,
        start,
        end,
        comment: (!comments.is_empty()).then(|| comments.join("\n")),
        ..Default::default()
    };
    let conditional = identity.filter(|i| i.system.is_some());
    let i = ctx.add(appointment, conditional.as_ref());
    contacts(ctx, seg, i);
    ctx.last = Some(i);
}

/// `http://terminology.hl7.org/CodeSystem/provenance-participant-type`, the IG's type for the enterer
/// (SCH-20).
const PROVENANCE_PARTICIPANT_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

/// SCH-12/16/20 -> the appointment's contact persons and its enterer (IG `SCH[Appointment]`
/// participant[1..3], `XCN[Practitioner]`): each person is a Practitioner (the first XCN that names
/// one), with the contact's phone (SCH-13/17/21) and address (SCH-14/18); a PractitionerRole holds the
/// person's function for this booking and the contact's location (SCH-15/19/22, PL); the Appointment
/// lists the role as a participant that is `information-only` (the contacts do not attend).
///
/// The role: placer and filler contact have no code in any published system (the IG's participant
/// types `#placer contact#` / `#filler contact#` exist in none), so they are `code.text`; the enterer
/// is `EP` (Entering Provider, table 0443) on the role and `enterer` (provenance-participant-type, as
/// the IG gives it) on the participant. One person who is placer and filler contact at one location
/// is one role with both functions.
fn contacts(ctx: &mut Ctx<'_>, seg: &Segment<'_>, appointment: usize) {
    const FIELDS: [(usize, usize, Option<usize>, usize, &str); 3] = [
        (12, 13, Some(14), 15, "Placer Contact"),
        (16, 17, Some(18), 19, "Filler Contact"),
        (20, 21, None, 22, "Enterer"),
    ];
    for (person, phone, address, location, function) in FIELDS {
        let Some(p) = reps(seg, person).find_map(|x| crate::entities::practitioner(ctx, x)) else {
            continue;
        };
        let telecom: Vec<_> = reps(seg, phone).filter_map(xtn).collect();
        let addresses: Vec<_> = address
            .map(|a| reps(seg, a).filter_map(xad).collect())
            .unwrap_or_default();
        if let Some(r) = ctx.get_mut::<Practitioner>(p) {
            for t in telecom {
                if !r.telecom.contains(&t) {
                    r.telecom.push(t);
                }
            }
            for a in addresses {
                if !r.address.contains(&a) {
                    r.address.push(a);
                }
            }
        }
        let place = field(seg, location).and_then(|pl| crate::entities::location(ctx, pl));
        let (code, participant_type) = if function == "Enterer" {
            (
                CodeableConcept::coding(V2_0443, "EP", Some("Entering Provider")),
                CodeableConcept::coding(PROVENANCE_PARTICIPANT_TYPE, "enterer", Some("Enterer")),
            )
        } else {
            let text = CodeableConcept {
                text: Some(function.into()),
                ..Default::default()
            };
            (text.clone(), text)
        };
        let id_of = |ctx: &Ctx<'_>, i: usize| {
            ctx.resources()
                .nth(i)
                .and_then(|r| r.id().map(str::to_owned))
                .unwrap_or_default()
        };
        let (p_id, l_id) = (
            id_of(ctx, p),
            place.map(|l| id_of(ctx, l)).unwrap_or_default(),
        );
        let role = PractitionerRole {
            id: Some(ctx.id("PractitionerRole", &["SCH contact", &p_id, &l_id])),
            practitioner: Some(ctx.reference(p)),
            location: place.map(|l| ctx.reference(l)).into_iter().collect(),
            ..Default::default()
        };
        let role = ctx.add(role, None);
        if let Some(r) = ctx.get_mut::<PractitionerRole>(role)
            && !r.code.contains(&code)
        {
            r.code.push(code);
        }
        let actor = ctx.reference(role);
        if let Some(a) = ctx.get_mut::<Appointment>(appointment) {
            match a
                .participant
                .iter_mut()
                .find(|x| x.actor.as_ref() == Some(&actor))
            {
                Some(x) => {
                    if !x.r#type.contains(&participant_type) {
                        x.r#type.push(participant_type);
                    }
                }
                None => a.participant.push(AppointmentParticipant {
                    actor: Some(actor),
                    r#type: vec![participant_type],
                    required: Some("information-only".into()),
                    status: Some("accepted".into()),
                    ..Default::default()
                }),
            }
        }
    }
}

/// The Appointment of the SCH before `seg`, with the current patient as a participant.
fn appointment(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let sch = preceding(ctx, seg, "SCH", &["MSH"])?;
    let (id, _) = appointment_id(ctx, &sch);
    let i = ctx.existing("Appointment", &id)?;
    if let Some(patient) = ctx.patient_ref()
        && let Some(a) = ctx.get_mut::<Appointment>(i)
    {
        let present = a
            .participant
            .iter()
            .any(|p| p.actor.as_ref() == Some(&patient));
        if !present {
            a.participant.insert(
                0,
                AppointmentParticipant {
                    actor: Some(patient),
                    status: Some("accepted".into()),
                    ..Default::default()
                },
            );
        }
    }
    Some(i)
}

/// A resource's period: start `start_field` (AIS-4, AIG-8, AIL-6, AIP-6) and end = start + the duration
/// three fields on (AIS-7, AIG-11, AIL-9, AIP-9) in the units after it (seconds, minutes, hours, days;
/// minutes when empty), as the IG computes it. The start offsets (AIx-5/9/7/7) are relative to an
/// appointment start the message may not give: not mapped.
fn period(ctx: &mut Ctx<'_>, seg: &Segment<'_>, start_field: usize) -> Option<Period> {
    let start = ctx.dtm(field(seg, start_field), ctx.at(start_field))?;
    let seconds = field_comp(seg, start_field + 3, 1).and_then(|n| {
        let unit = field_comp(seg, start_field + 4, 1);
        duration_seconds(&n, unit.as_deref())
    });
    let end = seconds.and_then(|d| plus_seconds(&start, d));
    Some(Period {
        start: Some(start),
        end,
        ..Default::default()
    })
}

/// A v2 duration (NM) in `unit` (CNE.1: s, min, h, d in UCUM/ISO+ spelling; minutes when empty) as
/// whole seconds; `None` for a negative, fractional-second or unknown-unit duration.
fn duration_seconds(n: &str, unit: Option<&str>) -> Option<i64> {
    let n: f64 = n.trim().parse().ok()?;
    let factor = match unit.map(str::to_ascii_lowercase).as_deref() {
        None | Some("min" | "m") => 60.0,
        Some("s" | "sec") => 1.0,
        Some("h" | "hr") => 3600.0,
        Some("d") => 86400.0,
        _ => return None,
    };
    let s = n * factor;
    (s >= 0.0 && s.fract() == 0.0 && s < 1e10).then_some(s as i64)
}

/// A FHIR dateTime with a time of day (`YYYY-MM-DDThh:mm:ss[.fff]zone`) plus `seconds`, in the same
/// zone; `None` for a date without a time.
fn plus_seconds(start: &str, seconds: i64) -> Option<String> {
    let (date, time) = start.split_once('T')?;
    let num = |s: Option<&str>| s?.parse::<i64>().ok();
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let (clock, rest) = time.split_at_checked(8)?;
    let mut c = clock.splitn(3, ':');
    let (h, mi, sec) = (num(c.next())?, num(c.next())?, num(c.next())?);
    let total = days_from_civil(y, m, day) * 86400 + h * 3600 + mi * 60 + sec + seconds;
    let (days, t) = (total.div_euclid(86400), total.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}{rest}",
        t / 3600,
        t % 3600 / 60,
        t % 60
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The NTE segments right after `seg` as annotations: text NTE-3 (repetitions joined by line
/// breaks), author NTE-5 (a Practitioner), time NTE-6.
fn notes(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Vec<Annotation> {
    let mut out = Vec::new();
    for nte in following(ctx, seg, &["NTE"]) {
        let parts: Vec<String> = reps(&nte, 3).filter_map(|r| text(Some(r))).collect();
        if parts.is_empty() {
            continue;
        }
        let author = field(&nte, 5)
            .and_then(|f| f.repetition(1))
            .and_then(|x| crate::entities::practitioner(ctx, x))
            .map(|i| AnnotationAuthor::Reference(Box::new(ctx.reference(i))));
        let time = ctx.dtm(field(&nte, 6), "NTE-6");
        out.push(Annotation {
            author,
            time,
            text: Some(parts.join("\n")),
            ..Default::default()
        });
    }
    out
}

/// Adds `participant` to the Appointment at `appointment`.
fn add_participant(ctx: &mut Ctx<'_>, appointment: usize, participant: AppointmentParticipant) {
    if let Some(a) = ctx.get_mut::<Appointment>(appointment) {
        a.participant.push(participant);
    }
}

/// The ServiceRequests made from the AIS segments of `seg`'s resource group (from the RGS before it up to
/// `seg`): the services the group's equipment, locations and people are booked for.
fn group_requests(ctx: &Ctx<'_>, seg: &Segment<'_>, appointment: usize) -> Vec<usize> {
    let appointment_id = ctx
        .resources()
        .nth(appointment)
        .and_then(|r| r.id().map(str::to_owned))
        .unwrap_or_default();
    let message = ctx.message;
    let mut out = Vec::new();
    let mut i = seg.index();
    while i > 0 {
        i -= 1;
        let Some(s) = message.segment(i) else { break };
        match s.id() {
            "AIS" => {
                let k = (0..=i)
                    .filter(|&j| message.segment(j).is_some_and(|x| x.id() == "AIS"))
                    .count();
                let at = if k == 1 {
                    "AIS".to_owned()
                } else {
                    format!("AIS[{k}]")
                };
                let n = field_comp(&s, 1, 1).unwrap_or_default();
                let id = ctx.id("ServiceRequest", &["AIS", &appointment_id, &at, &n]);
                if let Some(r) = ctx.existing("ServiceRequest", &id) {
                    out.push(r);
                }
            }
            "RGS" | "SCH" | "MSH" => break,
            _ => {}
        }
    }
    out
}

/// Adds `reference` to the group's ServiceRequests as a performer (`location` false) or a location.
fn add_to_requests(ctx: &mut Ctx<'_>, requests: &[usize], reference: &Reference, location: bool) {
    for &r in requests {
        if let Some(sr) = ctx.get_mut::<ServiceRequest>(r) {
            let list = if location {
                &mut sr.location_reference
            } else {
                &mut sr.performer
            };
            if !list.contains(reference) {
                list.push(reference.clone());
            }
        }
    }
}

/// RGS: a resource group; the patient joins the appointment here (PID comes after SCH).
pub fn rgs(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    // A new group: the NTE after the previous group's segments do not reach into it.
    ctx.last = None;
    appointment(ctx, seg);
}

/// AIS -> the service: Appointment.serviceType AIS-3, and a ServiceRequest the appointment is basedOn
/// (IG `AIS[ServiceRequest]`): code AIS-3, occurrencePeriod AIS-4 (end: start + AIS-7), orderDetail AIS-11/12 (the
/// supplemental services), subject the patient; the NTE after it are its notes.
pub fn ais(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(appt) = appointment(ctx, seg) else {
        return;
    };
    let code = ctx.code(field(seg, 3), &ctx.at(3));
    let Some(code) = code else {
        return;
    };
    if let Some(a) = ctx.get_mut::<Appointment>(appt) {
        a.service_type.push(code.clone());
    }
    let Some(subject) = ctx.patient_ref() else {
        return;
    };
    let appointment_id = ctx
        .resources()
        .nth(appt)
        .and_then(|r| r.id().map(str::to_owned))
        .unwrap_or_default();
    let n = field_comp(seg, 1, 1).unwrap_or_default();
    let id = ctx.id(
        "ServiceRequest",
        &["AIS", &appointment_id, &ctx.at_segment, &n],
    );
    let mut order_detail = Vec::new();
    for f in [11, 12] {
        for node in reps(seg, f) {
            if let Some(c) = ctx.code(Some(node), &ctx.at(f)) {
                order_detail.push(c);
            }
        }
    }
    let occurrence = period(ctx, seg, 4).map(|p| ServiceRequestOccurrence::Period(Box::new(p)));
    let request = ServiceRequest {
        id: Some(id),
        status: Some("active".into()),
        intent: Some("order".into()),
        code: Some(code),
        order_detail,
        subject,
        encounter: ctx.encounter_ref(),
        occurrence,
        ..Default::default()
    };
    let i = ctx.add(request, None);
    let reference = ctx.reference(i);
    if let Some(a) = ctx.get_mut::<Appointment>(appt)
        && !a.based_on.contains(&reference)
    {
        a.based_on.push(reference);
    }
    ctx.last = Some(i);
}

/// AIG -> a participant (and a performer of the group's AIS ServiceRequests): the resource AIG-3 as a
/// Device (identifiers AIG-3.1 and 3.4, name AIG-3.2),
/// type AIG-4, period AIG-8 (end: start + AIG-11), status from AIG-14; the NTE after it are the Device's notes (the IG
/// maps none; Device.note is where FHIR keeps free-text remarks on a device).
pub fn aig(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    // Its NTE are read here (Device notes); none reaches the resource before it.
    ctx.last = None;
    let Some(appt) = appointment(ctx, seg) else {
        return;
    };
    let device = field(seg, 3).and_then(|cwe| {
        let identifier: Vec<Identifier> = [(1, 3), (4, 6)]
            .iter()
            .filter_map(|&(c, s)| {
                Some(Identifier {
                    value: Some(comp(cwe, c)?),
                    system: comp(cwe, s).map(|s| coding_system_uri(&s).into_owned()),
                    ..Default::default()
                })
            })
            .collect();
        let name = comp(cwe, 2);
        let first = identifier.first().cloned();
        let id = match &first {
            Some(i) => ctx.id("Device", &["AIG", key(i)[0], key(i)[1]]),
            None => ctx.id("Device", &["AIG", "name", name.as_deref()?]),
        };
        let device = Device {
            id: Some(id),
            identifier,
            device_name: name
                .map(|n| DeviceDeviceName {
                    name: Some(n),
                    r#type: Some("model-name".into()),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let conditional = first.filter(|i| i.system.is_some());
        Some(ctx.add(device, conditional.as_ref()))
    });
    let participant = AppointmentParticipant {
        actor: device.map(|d| ctx.reference(d)),
        r#type: reps(seg, 4)
            .filter_map(|n| ctx.code(Some(n), &ctx.at(4)))
            .collect(),
        period: period(ctx, seg, 8),
        status: Some(participant_status(field_comp(seg, 14, 1).as_deref()).into()),
        ..Default::default()
    };
    add_participant(ctx, appt, participant);
    if let Some(d) = device {
        let notes = notes(ctx, seg);
        if let Some(r) = ctx.get_mut::<Device>(d) {
            for n in notes {
                if !r.note.contains(&n) {
                    r.note.push(n);
                }
            }
        }
        let requests = group_requests(ctx, seg, appt);
        add_to_requests(ctx, &requests, &ctx.reference(d), false);
    }
}

/// AIL -> a participant (and the locationReference of the group's AIS ServiceRequests): the Location
/// AIL-3 (its type AIL-4), period AIL-6 (end: start + AIL-9), status from AIL-12.
///
/// The NTE after an AIL is not mapped (the IG maps none): R4 Location has no note, and a comment on
/// the booking is neither an alternate name (`alias`) nor a description of the place.
pub fn ail(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    // Its NTE are not mapped (no note element); they must not reach the resource before it.
    ctx.last = None;
    let Some(appt) = appointment(ctx, seg) else {
        return;
    };
    let location = field(seg, 3).and_then(|pl| crate::entities::location(ctx, pl));
    // AIL-4 (table 0305, the kind of location booked: clinic, department, office...) is what the
    // booked place is for: its Location.type.
    let kind = ctx.code(field(seg, 4), &ctx.at(4));
    if let (Some(l), Some(kind)) = (location, kind)
        && let Some(r) = ctx.get_mut::<Location>(l)
        && !r.r#type.contains(&kind)
    {
        r.r#type.push(kind);
    }
    let participant = AppointmentParticipant {
        actor: location.map(|l| ctx.reference(l)),
        period: period(ctx, seg, 6),
        status: Some(participant_status(field_comp(seg, 12, 1).as_deref()).into()),
        ..Default::default()
    };
    add_participant(ctx, appt, participant);
    if let Some(l) = location {
        let requests = group_requests(ctx, seg, appt);
        add_to_requests(ctx, &requests, &ctx.reference(l), true);
    }
}

/// AIP -> a participant (and a performer of the group's AIS ServiceRequests): the Practitioner AIP-3,
/// type AIP-4 (the role), period AIP-6 (end: start + AIP-9), status from
/// AIP-12.
pub fn aip(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    // Its NTE are not mapped (no note element); they must not reach the resource before it.
    ctx.last = None;
    let Some(appt) = appointment(ctx, seg) else {
        return;
    };
    let practitioner = reps(seg, 3).find_map(|x| crate::entities::practitioner(ctx, x));
    let participant = AppointmentParticipant {
        actor: practitioner.map(|p| ctx.reference(p)),
        r#type: reps(seg, 4)
            .filter_map(|n| ctx.code(Some(n), &ctx.at(4)))
            .collect(),
        period: period(ctx, seg, 6),
        status: Some(participant_status(field_comp(seg, 12, 1).as_deref()).into()),
        ..Default::default()
    };
    add_participant(ctx, appt, participant);
    if let Some(p) = practitioner {
        let requests = group_requests(ctx, seg, appt);
        add_to_requests(ctx, &requests, &ctx.reference(p), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_end_in_the_start_zone() {
        assert_eq!(
            plus_seconds("2021-09-24T09:30:00+02:15", 50 * 60).as_deref(),
            Some("2021-09-24T10:20:00+02:15")
        );
        assert_eq!(
            plus_seconds("2024-02-28T23:30:00.5Z", 3600).as_deref(),
            Some("2024-02-29T00:30:00.5Z"),
            "leap day, fraction and zone kept"
        );
        assert_eq!(
            plus_seconds("2023-12-31T23:00:00-05:00", 2 * 3600).as_deref(),
            Some("2024-01-01T01:00:00-05:00")
        );
        assert_eq!(plus_seconds("2024-01-01", 60), None, "no time of day");
        assert_eq!(duration_seconds("50", Some("min")), Some(3000));
        assert_eq!(duration_seconds("2", Some("h")), Some(7200));
        assert_eq!(duration_seconds("1.5", None), Some(90));
        assert_eq!(duration_seconds("3", Some("wk")), None);
    }
}
