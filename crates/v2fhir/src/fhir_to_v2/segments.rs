//! The segments write-back shares between messages: MSH, EVN, PID, PV1, NTE, OBX, and the order
//! identifiers ORC and OBR carry. Each begins its segment and fills it from one resource.

use fhir::{
    Annotation, CodeableConcept, Coding, Encounter, Identifier, Location, Observation,
    ObservationComponentValue, ObservationValue, Patient, PatientDeceased, PatientMultipleBirth,
    Period, Practitioner, PractitionerRole, Quantity, Range, Ratio, Reference,
};

use super::resolve::Lookup;
use super::types::{self, cwe, put_dtm, xad, xcn, xpn, xtn};
use super::writer::Writer;
use super::{Result, WriteOptions, vocab};
use crate::error::{Error, ErrorKind};
use crate::profile::Profile;

/// What every segment writer reads: the lookup for references, the caller's options, the receiver's
/// profile.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) lookup: Lookup<'a>,
    pub(crate) options: &'a WriteOptions,
    pub(crate) profile: &'a Profile,
}

pub(crate) fn missing(element: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::MissingElement,
        0,
        format!("{element} is missing: {why}"),
    )
}

pub(crate) fn unresolved(element: &str) -> Error {
    Error::new(
        ErrorKind::UnresolvedReference,
        0,
        format!("{element} does not resolve to a resource in the bundle or resolver"),
    )
}

/// MSH: MSH-3..6 from the options, MSH-7 the caller's timestamp, MSH-9 `code^event^structure`, MSH-10
/// control id, MSH-11 processing id, MSH-12 version.
pub(crate) fn msh(w: &mut Writer, o: &WriteOptions, message_type: [&str; 3]) -> Result<()> {
    w.put_hd("3", &o.sending_application)?;
    w.put_hd("4", &o.sending_facility)?;
    w.put_hd("5", &o.receiving_application)?;
    w.put_hd("6", &o.receiving_facility)?;
    if o.timestamp.is_empty() {
        return Err(missing(
            "WriteOptions.timestamp",
            "MSH-7 needs the time of the message",
        ));
    }
    w.put("7", &types::dtm(&o.timestamp, "WriteOptions.timestamp")?)?;
    w.put("9.1", message_type[0])?;
    w.put("9.2", message_type[1])?;
    w.put("9.3", message_type[2])?;
    if o.control_id.is_empty() {
        return Err(missing(
            "WriteOptions.control_id",
            "MSH-10 needs a message control id",
        ));
    }
    w.put("10", &o.control_id)?;
    w.put("11", &o.processing_id)?;
    w.put("12", &o.version)
}

/// EVN: EVN-1 the event (kept for receivers before 2.5 that read it), EVN-2 the message time.
pub(crate) fn evn(w: &mut Writer, o: &WriteOptions, event: &str) -> Result<()> {
    w.segment("EVN")?;
    w.put("1", event)?;
    w.put("2", &types::dtm(&o.timestamp, "WriteOptions.timestamp")?)
}

/// The receiver's default assigning authority: identifiers in that system are written without CX.4,
/// as the receiver sends them (its profile's `default_authority` read backwards).
fn default_authority<'a>(cx: &Cx<'a>) -> Option<&'a str> {
    cx.profile.default_authority.as_deref()
}

/// The patient a message is about: a resolved Patient, or only the logical identifier of an unresolved
/// reference.
pub(crate) enum Subject<'a> {
    Patient(&'a Patient),
    Identifier(&'a Identifier),
}

/// The Patient `reference` at `element` (`Observation.subject`) names: resolved, or its logical
/// identifier; an error when it has neither.
pub(crate) fn subject<'a>(
    cx: &Cx<'a>,
    reference: Option<&'a Reference>,
    element: &str,
) -> Result<Subject<'a>> {
    let r = reference.ok_or_else(|| missing(element, "the message needs its patient (PID)"))?;
    if let Some(p) = cx.lookup.get::<Patient>(r) {
        return Ok(Subject::Patient(p));
    }
    match r.identifier.as_deref() {
        Some(id) if id.value.is_some() => Ok(Subject::Identifier(id)),
        _ => Err(unresolved(element)),
    }
}

/// PID for a subject (see [`pid`]).
pub(crate) fn pid_for(w: &mut Writer, cx: &Cx<'_>, subject: &Subject<'_>) -> Result<()> {
    match subject {
        Subject::Patient(p) => pid(w, cx, p),
        Subject::Identifier(id) => {
            w.segment("PID")?;
            w.put("1", "1")?;
            types::cx(w, "3(1)", id, default_authority(cx)).map(|_| ())
        }
    }
}

/// Patient -> PID: PID-1 `1`; PID-3 every identifier with a value (CX), the SSN also in PID-19 before
/// v2.7; PID-5 every name with parts
/// (XPN); PID-7 birth date; PID-8 gender (table 0001); PID-11 addresses (XAD); PID-13 contact points
/// except work ones, PID-14 the work ones (XTN); PID-15 the preferred (else first) communication
/// language; PID-16 marital status (table 0002); PID-24/25 multiple birth; PID-29/30 death.
///
/// # Errors
/// [`ErrorKind::MissingElement`] naming `Patient.identifier` when no identifier has a value: the
/// receiver could not match the patient.
pub(crate) fn pid(w: &mut Writer, cx: &Cx<'_>, p: &Patient) -> Result<()> {
    w.segment("PID")?;
    w.put("1", "1")?;
    let mut n = 0;
    for id in &p.identifier {
        if types::cx(w, &format!("3({})", n + 1), id, default_authority(cx))? {
            n += 1;
        }
    }
    if n == 0 {
        return Err(missing(
            "Patient.identifier",
            "PID-3 needs an identifier with a value",
        ));
    }
    if !w.v27 {
        // PID-19 (withdrawn in 2.7) still carries the SSN for older receivers.
        let ssn = p
            .identifier
            .iter()
            .find(|i| i.system.as_deref() == Some(types::US_SSN));
        w.put_opt("19", ssn.and_then(|i| i.value.as_deref()))?;
    }
    names(w, "5", &p.name)?;
    put_dtm(w, "7", p.birth_date.as_deref(), "Patient.birthDate")?;
    w.put_opt("8", p.gender.as_deref().and_then(vocab::sex))?;
    repeat(w, "11", &p.address, xad)?;
    let (work, other): (Vec<_>, Vec<_>) = p
        .telecom
        .iter()
        .partition(|t| t.r#use.as_deref() == Some("work"));
    repeat(w, "13", &other, |w, at, t| xtn(w, at, t))?;
    repeat(w, "14", &work, |w, at, t| xtn(w, at, t))?;
    if let Some(c) = p
        .communication
        .iter()
        .find(|c| c.preferred == Some(true))
        .or_else(|| p.communication.first())
    {
        cwe(w, "15", &c.language, "PID-15", cx.profile)?;
    }
    if let Some(m) = &p.marital_status {
        marital_status(w, cx, m)?;
    }
    match &p.multiple_birth {
        Some(PatientMultipleBirth::Boolean(b)) => w.put("24", yes_no(*b))?,
        Some(PatientMultipleBirth::Integer(i)) => {
            w.put("24", "Y")?;
            w.put("25", &i.to_string())?;
        }
        None => {}
    }
    match &p.deceased {
        Some(PatientDeceased::Boolean(b)) => w.put("30", yes_no(*b))?,
        Some(PatientDeceased::DateTime(t)) => {
            put_dtm(w, "29", Some(t), "Patient.deceasedDateTime")?;
            w.put("30", "Y")?;
        }
        None => {}
    }
    Ok(())
}

const V2_0063: &str = "http://terminology.hl7.org/CodeSystem/v2-0063";

/// The codings of `concept` from a system ending in `suffix` (`v2-0131`), and the others.
fn split_codings(concept: &CodeableConcept, suffix: &str) -> (CodeableConcept, CodeableConcept) {
    let (mine, rest): (Vec<Coding>, Vec<Coding>) = concept
        .coding
        .iter()
        .cloned()
        .partition(|c| c.system.as_deref().is_some_and(|s| s.ends_with(suffix)));
    let with = |coding: Vec<Coding>| CodeableConcept {
        coding,
        ..Default::default()
    };
    let mut rest = with(rest);
    rest.text = concept.text.clone();
    (with(mine), rest)
}

/// Patient.contact -> NK1, one each: NK1-1 set id, NK1-2 name, NK1-3 relationship (codings in
/// the order sent, a v3 RoleCode one as its table 0063 code), NK1-4 address, NK1-5 phones except work ones, NK1-6 work phones, NK1-7 contact role (the
/// table 0131 codings), NK1-8/9 period, NK1-13 the organization's name, NK1-15 gender (table 0001).
/// The reverse of the forward NK1[Patient] map.
pub(crate) fn nk1(w: &mut Writer, cx: &Cx<'_>, p: &Patient) -> Result<()> {
    for (i, c) in p.contact.iter().enumerate() {
        w.segment("NK1")?;
        w.put("1", &(i + 1).to_string())?;
        if let Some(name) = &c.name {
            xpn(w, "2(1)", name)?;
        }
        let mut role = None;
        for r in &c.relationship {
            let (contact_role, relationship) = split_codings(r, "v2-0131");
            if !contact_role.coding.is_empty() && role.is_none() {
                role = Some(contact_role);
            }
            if !relationship.coding.is_empty() || relationship.text.is_some() {
                // In the order sent (the sender's identifier stays NK1-3.1-3), each v3 RoleCode
                // coding (the forward map's) preceded by its table 0063 code.
                let coding = relationship
                    .coding
                    .iter()
                    .flat_map(|c| {
                        let role = c
                            .system
                            .as_deref()
                            .is_some_and(|s| s.ends_with("v3-RoleCode"));
                        let table = c
                            .code
                            .as_deref()
                            .filter(|_| role)
                            .and_then(vocab::relationship)
                            .map(|code| Coding {
                                display: c.display.clone(),
                                ..Coding::new(V2_0063, code, None)
                            });
                        table.into_iter().chain([c.clone()])
                    })
                    .collect();
                let ordered = CodeableConcept {
                    coding,
                    text: relationship.text.clone(),
                    ..Default::default()
                };
                if !w.has_value("3") {
                    cwe(w, "3", &ordered, "NK1-3", cx.profile)?;
                }
            }
        }
        if let Some(a) = &c.address {
            xad(w, "4(1)", a)?;
        }
        let (work, other): (Vec<_>, Vec<_>) = c
            .telecom
            .iter()
            .partition(|t| t.r#use.as_deref() == Some("work"));
        repeat(w, "5", &other, |w, at, t| xtn(w, at, t))?;
        repeat(w, "6", &work, |w, at, t| xtn(w, at, t))?;
        if let Some(role) = role {
            cwe(w, "7", &role, "NK1-7", cx.profile)?;
        }
        if let Some(period) = &c.period {
            put_dtm(
                w,
                "8",
                period.start.as_deref(),
                "Patient.contact.period.start",
            )?;
            put_dtm(w, "9", period.end.as_deref(), "Patient.contact.period.end")?;
        }
        let org = c.organization.as_ref().and_then(|r| {
            cx.lookup
                .get::<fhir::Organization>(r)
                .and_then(|o| o.name.as_deref())
                .or(r.display.as_deref())
        });
        w.put_opt("13.1", org)?;
        w.put_opt("15", c.gender.as_deref().and_then(vocab::sex))?;
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "Y" } else { "N" }
}

/// Writes each item with `f` into repetitions of `field`, numbering only the items written.
/// HumanNames -> XPN repetitions of `field`; from v2.7 on, a `nickname` name of one given name (what
/// v2 -> FHIR makes of XPN.15) goes back into XPN.15 (called by) of the name before it.
fn names(w: &mut Writer, field: &str, names: &[fhir::HumanName]) -> Result<usize> {
    let mut n = 0;
    for name in names {
        let called_by = name.r#use.as_deref() == Some("nickname")
            && name.family.is_none()
            && name.prefix.is_empty()
            && name.suffix.is_empty()
            && name.given.len() == 1;
        if called_by && w.v27 && n > 0 {
            w.put(&format!("{field}({n}).15"), &name.given[0])?;
            continue;
        }
        if xpn(w, &format!("{field}({})", n + 1), name)? {
            n += 1;
        }
    }
    Ok(n)
}

pub(crate) fn repeat<T>(
    w: &mut Writer,
    field: &str,
    items: &[T],
    mut f: impl FnMut(&mut Writer, &str, &T) -> Result<bool>,
) -> Result<usize> {
    let mut n = 0;
    for item in items {
        if f(w, &format!("{field}({})", n + 1), item)? {
            n += 1;
        }
    }
    Ok(n)
}

/// PID-16: the receiver's own code when its maps have one, else the v3 MaritalStatus (or v2-0002)
/// code as table 0002.
fn marital_status(w: &mut Writer, cx: &Cx<'_>, m: &CodeableConcept) -> Result<()> {
    if crate::codemap::reverse(cx.profile, m, "PID-16").is_some() {
        return cwe(w, "16", m, "PID-16", cx.profile).map(|_| ());
    }
    let v2 = m.coding.iter().find_map(|c| {
        let code = c.code.as_deref()?;
        match c.system.as_deref() {
            Some("http://terminology.hl7.org/CodeSystem/v2-0002") => Some(code.to_owned()),
            Some("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus") => {
                vocab::marital_status(code).map(str::to_owned)
            }
            _ => None,
        }
    });
    let concept = match v2 {
        Some(code) => CodeableConcept {
            coding: vec![Coding::new(
                "http://terminology.hl7.org/CodeSystem/v2-0002",
                code,
                None,
            )],
            text: m.text.clone(),
            ..Default::default()
        },
        None => m.clone(),
    };
    cwe(w, "16", &concept, "PID-16", cx.profile).map(|_| ())
}

/// PV1. Without an encounter: PV1-1 `1`, PV1-2 `N` (not applicable), as ADT^A31 and orders outside a
/// visit send it. With one: PV1-2 patient class from `Encounter.class` (table 0004, `U` when unknown),
/// PV1-3 the first location (PL), PV1-7 the attending (`ATND`) participant, PV1-19 the first
/// identifier (CX), PV1-44/45 the period.
pub(crate) fn pv1(w: &mut Writer, cx: &Cx<'_>, encounter: Option<&Encounter>) -> Result<()> {
    w.segment("PV1")?;
    w.put("1", "1")?;
    let Some(e) = encounter else {
        return w.put("2", "N");
    };
    let class = e.class.code.as_deref().and_then(vocab::patient_class);
    w.put("2", class.unwrap_or("U"))?;
    if let Some(loc) = e
        .location
        .first()
        .and_then(|l| cx.lookup.get::<Location>(&l.location))
    {
        types::pl(w, "3", loc, &cx.lookup)?;
    }
    let attending = e.participant.iter().find(|p| {
        p.r#type
            .iter()
            .any(|t| t.coding.iter().any(|c| c.code.as_deref() == Some("ATND")))
    });
    if let Some(r) = attending.and_then(|p| p.individual.as_ref()) {
        practitioner(w, cx, "7(1)", r)?;
    }
    if let Some(id) = e.identifier.first() {
        types::cx(w, "19", id, default_authority(cx))?;
    }
    if let Some(p) = &e.period {
        put_dtm(w, "44", p.start.as_deref(), "Encounter.period.start")?;
        put_dtm(w, "45", p.end.as_deref(), "Encounter.period.end")?;
    }
    Ok(())
}

/// The Encounter a reference names, when it resolves.
pub(crate) fn encounter<'a>(cx: &Cx<'a>, r: Option<&Reference>) -> Option<&'a Encounter> {
    r.and_then(|r| cx.lookup.get::<Encounter>(r))
}

/// A practitioner reference -> XCN at `at`: a Practitioner, or a PractitionerRole's practitioner; when
/// unresolved, its logical identifier (XCN.1) if it has one, else nothing.
pub(crate) fn practitioner(w: &mut Writer, cx: &Cx<'_>, at: &str, r: &Reference) -> Result<bool> {
    let p = cx.lookup.get::<Practitioner>(r).or_else(|| {
        cx.lookup
            .get::<PractitionerRole>(r)
            .and_then(|role| role.practitioner.as_ref())
            .and_then(|pr| cx.lookup.get::<Practitioner>(pr))
    });
    match (p, r.identifier.as_deref()) {
        (Some(p), _) => xcn(w, at, p),
        (None, Some(id)) => types::xcn_identifier(w, at, id),
        (None, None) => Ok(false),
    }
}

/// Annotations -> one NTE each: NTE-1 set id, NTE-3 the text.
pub(crate) fn notes(w: &mut Writer, notes: &[Annotation]) -> Result<()> {
    let mut n = 0;
    for note in notes {
        let Some(text) = note.text.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        n += 1;
        w.segment("NTE")?;
        w.put("1", &n.to_string())?;
        w.put("3", text)?;
    }
    Ok(())
}

/// The placer, filler and group identifiers of an order (ORC-2/3/4, OBR-2/3).
#[derive(Default, Clone, Copy)]
pub(crate) struct OrderIds<'a> {
    pub(crate) placer: Option<&'a Identifier>,
    pub(crate) filler: Option<&'a Identifier>,
    pub(crate) group: Option<&'a Identifier>,
}

impl<'a> OrderIds<'a> {
    /// From a request's identifiers: type `PLAC` is the placer number, `FILL` the filler number; an
    /// untyped first identifier is the placer number.
    pub(crate) fn of(identifiers: &'a [Identifier], requisition: Option<&'a Identifier>) -> Self {
        let typed = |code: &str| {
            identifiers
                .iter()
                .find(|i| types::identifier_type(i) == Some(code))
        };
        OrderIds {
            placer: typed("PLAC").or_else(|| {
                identifiers
                    .iter()
                    .find(|i| types::identifier_type(i).is_none())
            }),
            filler: typed("FILL"),
            group: requisition,
        }
    }

    pub(crate) fn write(&self, w: &mut Writer, placer: &str, filler: &str) -> Result<()> {
        if let Some(i) = self.placer {
            types::ei(w, placer, i)?;
        }
        if let Some(i) = self.filler {
            types::ei(w, filler, i)?;
        }
        Ok(())
    }
}

/// A `value[x]` of an Observation or of one of its components.
pub(crate) enum Value<'a> {
    Quantity(&'a Quantity),
    Concept(&'a CodeableConcept),
    String(&'a str),
    Boolean(bool),
    Integer(i32),
    Range(&'a Range),
    Ratio(&'a Ratio),
    SampledData,
    Time(&'a str),
    DateTime(&'a str),
    Period(&'a Period),
}

impl<'a> From<&'a ObservationValue> for Value<'a> {
    fn from(v: &'a ObservationValue) -> Self {
        match v {
            ObservationValue::Quantity(q) => Value::Quantity(q),
            ObservationValue::CodeableConcept(c) => Value::Concept(c),
            ObservationValue::String(s) => Value::String(s),
            ObservationValue::Boolean(b) => Value::Boolean(*b),
            ObservationValue::Integer(i) => Value::Integer(*i),
            ObservationValue::Range(r) => Value::Range(r),
            ObservationValue::Ratio(r) => Value::Ratio(r),
            ObservationValue::SampledData(_) => Value::SampledData,
            ObservationValue::Time(t) => Value::Time(t),
            ObservationValue::DateTime(t) => Value::DateTime(t),
            ObservationValue::Period(p) => Value::Period(p),
        }
    }
}

impl<'a> From<&'a ObservationComponentValue> for Value<'a> {
    fn from(v: &'a ObservationComponentValue) -> Self {
        match v {
            ObservationComponentValue::Quantity(q) => Value::Quantity(q),
            ObservationComponentValue::CodeableConcept(c) => Value::Concept(c),
            ObservationComponentValue::String(s) => Value::String(s),
            ObservationComponentValue::Boolean(b) => Value::Boolean(*b),
            ObservationComponentValue::Integer(i) => Value::Integer(*i),
            ObservationComponentValue::Range(r) => Value::Range(r),
            ObservationComponentValue::Ratio(r) => Value::Ratio(r),
            ObservationComponentValue::SampledData(_) => Value::SampledData,
            ObservationComponentValue::Time(t) => Value::Time(t),
            ObservationComponentValue::DateTime(t) => Value::DateTime(t),
            ObservationComponentValue::Period(p) => Value::Period(p),
        }
    }
}

/// The longest text written as ST; longer text is TX (ST is limited to 199 characters up to 2.6).
const ST_MAX: usize = 199;

/// `value[x]` -> OBX-2 (value type), OBX-5 and OBX-6:
/// - Quantity -> `NM` with OBX-6 the units (CWE, [`types::units`]); with a comparator, `SN`
///   (`<^5`);
/// - CodeableConcept -> `CWE` (receiver's maps at `OBX-5`); boolean -> `CWE` `Y`/`N` in table 0136;
/// - string -> `ST`, `TX` when longer than 199 characters, `FT` when it has line breaks (written as
///   `\.br\`);
/// - integer -> `NM`; Range -> `SN` `^low^-^high`; Ratio -> `SN` `^num^:^den`;
/// - time -> `TM`; dateTime -> `DTM`; Period -> `DR`.
///
/// # Errors
/// [`ErrorKind::Unsupported`] for SampledData (no v2 value type carries it), naming `element`.
pub(crate) fn obx_value(
    w: &mut Writer,
    cx: &Cx<'_>,
    value: &Value<'_>,
    element: &str,
) -> Result<()> {
    match value {
        Value::Quantity(q) => {
            let number = q.value.as_ref().map(types::decimal);
            match q.comparator.as_deref() {
                Some(c) => {
                    w.put("2", "SN")?;
                    w.put("5.1", c)?;
                    w.put_opt("5.2", number.as_deref())?;
                }
                None => {
                    w.put("2", "NM")?;
                    w.put_opt("5", number.as_deref())?;
                }
            }
            types::units(w, "6", q)?;
        }
        Value::Concept(c) => {
            w.put("2", "CWE")?;
            cwe(w, "5", c, "OBX-5", cx.profile)?;
        }
        Value::Boolean(b) => {
            w.put("2", "CWE")?;
            let (code, display) = if *b { ("Y", "Yes") } else { ("N", "No") };
            let concept = CodeableConcept::coding(
                "http://terminology.hl7.org/CodeSystem/v2-0136",
                code,
                Some(display),
            );
            cwe(w, "5", &concept, "OBX-5", cx.profile)?;
        }
        Value::String(s) => {
            let kind = if s.contains(['\n', '\r']) {
                "FT"
            } else if s.chars().count() > ST_MAX {
                "TX"
            } else {
                "ST"
            };
            w.put("2", kind)?;
            w.put("5", s)?;
        }
        Value::Integer(i) => {
            w.put("2", "NM")?;
            w.put("5", &i.to_string())?;
        }
        Value::Range(r) => {
            w.put("2", "SN")?;
            let low = r.low.as_ref().and_then(|q| q.value.as_ref());
            let high = r.high.as_ref().and_then(|q| q.value.as_ref());
            match (low, high) {
                (Some(l), Some(h)) => {
                    w.put("5.2", &types::decimal(l))?;
                    w.put("5.3", "-")?;
                    w.put("5.4", &types::decimal(h))?;
                }
                (Some(l), None) => {
                    w.put("5.1", ">=")?;
                    w.put("5.2", &types::decimal(l))?;
                }
                (None, Some(h)) => {
                    w.put("5.1", "<=")?;
                    w.put("5.2", &types::decimal(h))?;
                }
                (None, None) => {}
            }
            if let Some(q) = r.low.as_ref().or(r.high.as_ref()) {
                types::units(w, "6", q)?;
            }
        }
        Value::Ratio(r) => {
            w.put("2", "SN")?;
            let num = r.numerator.as_ref().and_then(|q| q.value.as_ref());
            let den = r.denominator.as_ref().and_then(|q| q.value.as_ref());
            w.put_opt("5.2", num.map(types::decimal).as_deref())?;
            w.put("5.3", ":")?;
            w.put_opt("5.4", den.map(types::decimal).as_deref())?;
        }
        Value::SampledData => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                0,
                format!("{element}SampledData has no v2 value type"),
            ));
        }
        Value::Time(t) => {
            w.put("2", "TM")?;
            w.put("5", &types::tm(t, &format!("{element}Time"))?)?;
        }
        Value::DateTime(t) => {
            w.put("2", "DTM")?;
            w.put("5", &types::dtm(t, &format!("{element}DateTime"))?)?;
        }
        Value::Period(p) => {
            w.put("2", "DR")?;
            put_dtm(
                w,
                "5.1",
                p.start.as_deref(),
                &format!("{element}Period.start"),
            )?;
            put_dtm(w, "5.2", p.end.as_deref(), &format!("{element}Period.end"))?;
        }
    }
    Ok(())
}

/// A reference range -> OBX-7: `low-high`, `>=low`, `<=high`, else its text.
fn reference_range(o: &Observation) -> Option<String> {
    let r = o.reference_range.first()?;
    let low = r
        .low
        .as_ref()
        .and_then(|q| q.value.as_ref())
        .map(types::decimal);
    let high = r
        .high
        .as_ref()
        .and_then(|q| q.value.as_ref())
        .map(types::decimal);
    match (low, high) {
        (Some(l), Some(h)) => Some(format!("{l}-{h}")),
        (Some(l), None) => Some(format!(">={l}")),
        (None, Some(h)) => Some(format!("<={h}")),
        (None, None) => r.text.clone(),
    }
}

/// Observation -> OBX (then its components, one OBX each, and its notes as NTE):
/// OBX-1 set id, OBX-2/5/6 the value ([`obx_value`]), OBX-3 the code (receiver's maps at `OBX-3`),
/// OBX-4 `sub_id` when given, OBX-7 the first reference range, OBX-8 interpretations (their codes,
/// table 0078), OBX-11 the status (table 0085), OBX-14 the effective time (dateTime, instant or
/// period start), OBX-16 the performing Practitioner, OBX-21 the first identifier (EI).
///
/// # Errors
/// [`ErrorKind::MissingElement`] for an Observation without a code (`Observation.code`); those of
/// [`obx_value`].
pub(crate) fn obx(
    w: &mut Writer,
    cx: &Cx<'_>,
    o: &Observation,
    sub_id: Option<&str>,
) -> Result<()> {
    let has_code = o.code.coding.iter().any(|c| c.code.is_some()) || o.code.text.is_some();
    if !has_code {
        return Err(missing(
            "Observation.code",
            "OBX-3 needs the observation identifier",
        ));
    }
    let n = w.count("OBX") + 1;
    w.segment("OBX")?;
    w.put("1", &n.to_string())?;
    cwe(w, "3", &o.code, "OBX-3", cx.profile)?;
    w.put_opt("4", sub_id)?;
    if let Some(v) = &o.value {
        obx_value(w, cx, &Value::from(v), "Observation.value")?;
    }
    w.put_opt("7", reference_range(o).as_deref())?;
    let mut rep = 0;
    for i in &o.interpretation {
        let code = crate::codemap::reverse(cx.profile, i, "OBX-8")
            .and_then(|c| c.code)
            .or_else(|| i.coding.iter().find_map(|c| c.code.clone()));
        if let Some(code) = code {
            rep += 1;
            w.put(&format!("8({rep})"), &code)?;
        }
    }
    w.put_opt(
        "11",
        o.status.as_deref().and_then(vocab::observation_status),
    )?;
    let effective = match &o.effective {
        Some(fhir::ObservationEffective::DateTime(t) | fhir::ObservationEffective::Instant(t)) => {
            Some(t.as_str())
        }
        Some(fhir::ObservationEffective::Period(p)) => p.start.as_deref(),
        _ => None,
    };
    put_dtm(w, "14", effective, "Observation.effective")?;
    let mut rep = 0;
    for r in &o.performer {
        if practitioner(w, cx, &format!("16({})", rep + 1), r)? {
            rep += 1;
        }
    }
    if let Some(id) = o.identifier.first() {
        types::ei(w, "21", id)?;
    }
    let parent = n.to_string();
    for c in &o.component {
        let n = w.count("OBX") + 1;
        w.segment("OBX")?;
        w.put("1", &n.to_string())?;
        cwe(w, "3", &c.code, "OBX-3", cx.profile)?;
        w.put("4", sub_id.unwrap_or(&parent))?;
        if let Some(v) = &c.value {
            obx_value(w, cx, &Value::from(v), "Observation.component.value")?;
        }
        w.put_opt(
            "11",
            o.status.as_deref().and_then(vocab::observation_status),
        )?;
        put_dtm(w, "14", effective, "Observation.effective")?;
    }
    notes(w, &o.note)
}
