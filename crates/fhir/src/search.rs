//! Search parameters: which values of a resource a FHIR search can match, and how to read them
//! from the resource's JSON.
//!
//! The table [`params`] names, per resource type, the parameters Causeway indexes (the common
//! ones of the R4 specification's search parameter registry for each type) with their kind and
//! the JSON paths they read. [`extract`] walks those paths over `serde_json::Value`, so it works
//! for every type alike; choice elements list each variant's JSON name (`effectiveDateTime`,
//! `effectivePeriod`).
//!
//! Text is normalised by [`normalize_text`] on both sides (lowercase, common Latin accents
//! removed), as FHIR's string search is case- and accent-insensitive. Dates become inclusive
//! millisecond periods from their precision: `2024-03` is all of March 2024 (UTC when no zone).
//! Quantities are their number (as sent) with the unit's system and code; a unit written only as
//! text (`unit`) is kept as the code, so `5.4||mg` finds it, as FHIR's quantity search allows.

use serde_json::Value;

/// How a parameter's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
    /// A composite of a code and a quantity of the same element (the Observation itself, or
    /// one component): `code-value-quantity=8480-6$gt140`.
    CodeQuantity,
}

/// One search parameter of one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Dotted JSON paths; arrays are walked through.
    pub paths: &'static [&'static str],
    /// For references: only targets of this type (`patient` reads `subject` but keeps only
    /// `Patient/...`).
    pub target: Option<&'static str>,
    /// A parameter with no values of its own that searches these parameters of the same type
    /// instead (R4's `combo-*`): a match of any of them is a match. Indexing it would store
    /// every value a second time.
    pub union_of: &'static [&'static str],
}

const fn p(name: &'static str, kind: ParamKind, paths: &'static [&'static str]) -> SearchParam {
    SearchParam {
        name,
        kind,
        paths,
        target: None,
        union_of: &[],
    }
}

const fn union(name: &'static str, kind: ParamKind, of: &'static [&'static str]) -> SearchParam {
    SearchParam {
        name,
        kind,
        paths: &[],
        target: None,
        union_of: of,
    }
}

const fn patient_ref(paths: &'static [&'static str]) -> SearchParam {
    SearchParam {
        name: "patient",
        kind: ParamKind::Reference,
        paths,
        target: Some("Patient"),
        union_of: &[],
    }
}

use ParamKind::{CodeQuantity, Date, Quantity, Reference, String as Str, Token};

const PATIENT: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("name", Str, &["name"]),
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p("birthdate", Date, &["birthDate"]),
    p("gender", Token, &["gender"]),
    p("address", Str, &["address"]),
    p("address-postalcode", Str, &["address.postalCode"]),
    p("telecom", Token, &["telecom"]),
    p("active", Token, &["active"]),
    p("link", Reference, &["link.other"]),
];

const ENCOUNTER: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("date", Date, &["period"]),
    p("status", Token, &["status"]),
    p("class", Token, &["class"]),
    p("type", Token, &["type"]),
    p("location", Reference, &["location.location"]),
    p("participant", Reference, &["participant.individual"]),
];

const OBSERVATION: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["code"]),
    p(
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
    p("status", Token, &["status"]),
    p("category", Token, &["category"]),
    p("encounter", Reference, &["encounter"]),
    p("based-on", Reference, &["basedOn"]),
    p("value-concept", Token, &["valueCodeableConcept"]),
    p("value-string", Str, &["valueString"]),
    p("value-quantity", Quantity, &["valueQuantity"]),
    p("value-date", Date, &["valueDateTime", "valuePeriod"]),
    p("component-code", Token, &["component.code"]),
    p(
        "component-value-quantity",
        Quantity,
        &["component.valueQuantity"],
    ),
    // An empty path is the resource itself.
    p("code-value-quantity", CodeQuantity, &[""]),
    p(
        "component-code-value-quantity",
        CodeQuantity,
        &["component"],
    ),
    union("combo-code", Token, &["code", "component-code"]),
    union(
        "combo-value-quantity",
        Quantity,
        &["value-quantity", "component-value-quantity"],
    ),
    union(
        "combo-code-value-quantity",
        CodeQuantity,
        &["code-value-quantity", "component-code-value-quantity"],
    ),
];

const DIAGNOSTIC_REPORT: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["code"]),
    p("date", Date, &["effectiveDateTime", "effectivePeriod"]),
    p("issued", Date, &["issued"]),
    p("status", Token, &["status"]),
    p("category", Token, &["category"]),
    p("encounter", Reference, &["encounter"]),
    p("based-on", Reference, &["basedOn"]),
    p("result", Reference, &["result"]),
];

const SERVICE_REQUEST: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["code"]),
    p("authored", Date, &["authoredOn"]),
    p(
        "occurrence",
        Date,
        &["occurrenceDateTime", "occurrencePeriod"],
    ),
    p("status", Token, &["status"]),
    p("intent", Token, &["intent"]),
    p("category", Token, &["category"]),
    p("encounter", Reference, &["encounter"]),
    p("requester", Reference, &["requester"]),
];

const ALLERGY_INTOLERANCE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    patient_ref(&["patient"]),
    p("code", Token, &["code"]),
    p("date", Date, &["recordedDate"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("verification-status", Token, &["verificationStatus"]),
    p("category", Token, &["category"]),
    p("criticality", Token, &["criticality"]),
    p("type", Token, &["type"]),
];

const CONDITION: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["code"]),
    p("onset-date", Date, &["onsetDateTime", "onsetPeriod"]),
    p("recorded-date", Date, &["recordedDate"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("category", Token, &["category"]),
    p("encounter", Reference, &["encounter"]),
];

const IMMUNIZATION: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    patient_ref(&["patient"]),
    p("vaccine-code", Token, &["vaccineCode"]),
    p("date", Date, &["occurrenceDateTime"]),
    p("status", Token, &["status"]),
    p("lot-number", Str, &["lotNumber"]),
];

const MEDICATION_REQUEST: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["medicationCodeableConcept"]),
    p("medication", Reference, &["medicationReference"]),
    p("authoredon", Date, &["authoredOn"]),
    p("status", Token, &["status"]),
    p("intent", Token, &["intent"]),
    p("category", Token, &["category"]),
    p("encounter", Reference, &["encounter"]),
];

const APPOINTMENT: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("actor", Reference, &["participant.actor"]),
    patient_ref(&["participant.actor"]),
    p("date", Date, &["start"]),
    p("status", Token, &["status"]),
    p("service-type", Token, &["serviceType"]),
    p("appointment-type", Token, &["appointmentType"]),
];

const DOCUMENT_REFERENCE: &[SearchParam] = &[
    p("identifier", Token, &["identifier", "masterIdentifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("type", Token, &["type"]),
    p("category", Token, &["category"]),
    p("date", Date, &["date"]),
    p("period", Date, &["context.period"]),
    p("status", Token, &["status"]),
    p("encounter", Reference, &["context.encounter"]),
];

const PROCEDURE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["code"]),
    p("date", Date, &["performedDateTime", "performedPeriod"]),
    p("status", Token, &["status"]),
    p("encounter", Reference, &["encounter"]),
];

const MEDICATION_ADMINISTRATION: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["medicationCodeableConcept"]),
    p(
        "effective-time",
        Date,
        &["effectiveDateTime", "effectivePeriod"],
    ),
    p("status", Token, &["status"]),
    p("request", Reference, &["request"]),
];

const MEDICATION_DISPENSE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("code", Token, &["medicationCodeableConcept"]),
    p("whenhandedover", Date, &["whenHandedOver"]),
    p("status", Token, &["status"]),
    p("prescription", Reference, &["authorizingPrescription"]),
];

const SPECIMEN: &[SearchParam] = &[
    p("identifier", Token, &["identifier", "accessionIdentifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("type", Token, &["type"]),
    p(
        "collected",
        Date,
        &["collection.collectedDateTime", "collection.collectedPeriod"],
    ),
];

const COVERAGE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("beneficiary", Reference, &["beneficiary"]),
    patient_ref(&["beneficiary"]),
    p("payor", Reference, &["payor"]),
    p("status", Token, &["status"]),
];

const PEOPLE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("name", Str, &["name"]),
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p("active", Token, &["active"]),
];

const RELATED_PERSON: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("name", Str, &["name"]),
    patient_ref(&["patient"]),
    p("relationship", Token, &["relationship"]),
];

const NAMED: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("name", Str, &["name"]),
    p("type", Token, &["type"]),
];

const PRACTITIONER_ROLE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("practitioner", Reference, &["practitioner"]),
    p("organization", Reference, &["organization"]),
    p("role", Token, &["code"]),
];

const EPISODE_OF_CARE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    patient_ref(&["patient"]),
    p("date", Date, &["period"]),
    p("status", Token, &["status"]),
];

const ACCOUNT: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("subject", Reference, &["subject"]),
    patient_ref(&["subject"]),
    p("status", Token, &["status"]),
];

const PROVENANCE: &[SearchParam] = &[
    p("target", Reference, &["target"]),
    p("recorded", Date, &["recorded"]),
    p("agent", Reference, &["agent.who"]),
];

const DEVICE: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    patient_ref(&["patient"]),
    p("device-name", Str, &["deviceName.name"]),
];

const MEDICATION: &[SearchParam] = &[
    p("identifier", Token, &["identifier"]),
    p("code", Token, &["code"]),
];

/// The indexed search parameters of `resource_type` (empty for a type without any).
pub fn params(resource_type: &str) -> &'static [SearchParam] {
    match resource_type {
        "Patient" => PATIENT,
        "Encounter" => ENCOUNTER,
        "Observation" => OBSERVATION,
        "DiagnosticReport" => DIAGNOSTIC_REPORT,
        "ServiceRequest" => SERVICE_REQUEST,
        "AllergyIntolerance" => ALLERGY_INTOLERANCE,
        "Condition" => CONDITION,
        "Immunization" => IMMUNIZATION,
        "MedicationRequest" => MEDICATION_REQUEST,
        "Appointment" => APPOINTMENT,
        "DocumentReference" => DOCUMENT_REFERENCE,
        "Procedure" => PROCEDURE,
        "MedicationAdministration" => MEDICATION_ADMINISTRATION,
        "MedicationDispense" => MEDICATION_DISPENSE,
        "Specimen" => SPECIMEN,
        "Coverage" => COVERAGE,
        "Practitioner" => PEOPLE,
        "RelatedPerson" => RELATED_PERSON,
        "Organization" | "Location" => NAMED,
        "PractitionerRole" => PRACTITIONER_ROLE,
        "EpisodeOfCare" => EPISODE_OF_CARE,
        "Account" => ACCOUNT,
        "Provenance" => PROVENANCE,
        "Device" => DEVICE,
        "Medication" => MEDICATION,
        _ => &[],
    }
}

/// The parameter `name` of `resource_type`.
pub fn param(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    params(resource_type).iter().find(|p| p.name == name)
}

/// Types whose `patient` parameter puts them in a patient's compartment (`$everything`).
pub fn patient_compartment() -> impl Iterator<Item = &'static str> {
    crate::RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| param(t, "patient").is_some())
}

/// One extracted search value.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    Token {
        system: String,
        code: String,
    },
    Text(String),
    /// Inclusive unix milliseconds.
    Date {
        lo: i64,
        hi: i64,
    },
    /// `Type/id`.
    Reference(String),
    /// A Quantity's number with its unit: `system` empty when the quantity names none, `code`
    /// the unit's code (or its text when it has no code).
    Quantity {
        value: f64,
        system: String,
        code: String,
    },
    /// A code (`system` empty when the coding names none) with a quantity of the same element;
    /// the unit by its code or text only.
    CodeQuantity {
        system: String,
        code: String,
        value: f64,
        unit: String,
    },
}

/// Every search value of a resource, as `(parameter name, value)`, duplicates removed. A
/// parameter searched as a union of others (`union_of`) has none of its own.
pub fn extract(resource_type: &str, resource: &Value) -> Vec<(&'static str, SearchValue)> {
    let mut out: Vec<(&'static str, SearchValue)> = Vec::new();
    for param in params(resource_type) {
        for path in param.paths {
            let mut nodes = Vec::new();
            if path.is_empty() {
                nodes.push(resource);
            } else {
                walk(resource, path, &mut nodes);
            }
            for node in nodes {
                values_of(param, node, &mut |v| {
                    if !out.iter().any(|(n, x)| *n == param.name && *x == v) {
                        out.push((param.name, v));
                    }
                });
            }
        }
    }
    out
}

/// The nodes at a dotted path, arrays flattened.
fn walk<'v>(value: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let Some(next) = value.get(head) else {
        return;
    };
    let items: Vec<&Value> = match next {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for item in items {
        match rest {
            Some(r) => walk(item, r, out),
            None => out.push(item),
        }
    }
}

fn values_of(param: &SearchParam, node: &Value, emit: &mut dyn FnMut(SearchValue)) {
    match param.kind {
        ParamKind::Token => tokens(node, emit),
        ParamKind::String => strings(node, emit),
        ParamKind::Date => {
            if let Some((lo, hi)) = date_value(node) {
                emit(SearchValue::Date { lo, hi });
            }
        }
        ParamKind::Reference => {
            if let Some(r) = node.get("reference").and_then(Value::as_str) {
                let keep = match param.target {
                    Some(t) => r.strip_prefix(t).is_some_and(|x| x.starts_with('/')),
                    None => true,
                };
                if keep && is_relative_reference(r) {
                    emit(SearchValue::Reference(r.to_owned()));
                }
            }
        }
        ParamKind::Quantity => quantities(node, emit),
        ParamKind::CodeQuantity => code_quantities(node, emit),
    }
}

/// Each coding of the element's `code` paired with each unit form of its `valueQuantity`.
fn code_quantities(node: &Value, emit: &mut dyn FnMut(SearchValue)) {
    let Some(quantity) = node.get("valueQuantity") else {
        return;
    };
    let mut measured = Vec::new();
    quantities(quantity, &mut |v| {
        if let SearchValue::Quantity { value, code, .. } = v {
            measured.push((value, code));
        }
    });
    let codings = node
        .get("code")
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for coding in codings {
        let Some(code) = coding.get("code").and_then(Value::as_str) else {
            continue;
        };
        let system = coding.get("system").and_then(Value::as_str).unwrap_or("");
        for (value, unit) in &measured {
            emit(SearchValue::CodeQuantity {
                system: system.to_owned(),
                code: code.to_owned(),
                value: *value,
                unit: unit.clone(),
            });
        }
    }
}

/// A Quantity's value under its unit code and, when the text differs from the code, under its
/// text too (no system): a search may name the unit either way.
fn quantities(node: &Value, emit: &mut dyn FnMut(SearchValue)) {
    let Some(value) = node.get("value").and_then(Value::as_f64) else {
        return;
    };
    let text = |key: &str| {
        node.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let system = text("system").unwrap_or("");
    let code = text("code");
    let unit = text("unit");
    match (code, unit) {
        (Some(code), unit) => {
            emit(SearchValue::Quantity {
                value,
                system: system.to_owned(),
                code: code.to_owned(),
            });
            if let Some(unit) = unit.filter(|u| *u != code) {
                emit(SearchValue::Quantity {
                    value,
                    system: String::new(),
                    code: unit.to_owned(),
                });
            }
        }
        (None, unit) => emit(SearchValue::Quantity {
            value,
            system: String::new(),
            code: unit.unwrap_or("").to_owned(),
        }),
    }
}

/// `Type/id` (the only form the store resolves).
pub fn is_relative_reference(r: &str) -> bool {
    match r.split_once('/') {
        Some((t, id)) => {
            !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_alphanumeric())
                && !id.is_empty()
                && !id.contains('/')
        }
        None => false,
    }
}

fn tokens(node: &Value, emit: &mut dyn FnMut(SearchValue)) {
    let token = |system: Option<&Value>, code: Option<&Value>| {
        let code = code.and_then(Value::as_str)?;
        Some(SearchValue::Token {
            system: system.and_then(Value::as_str).unwrap_or("").to_owned(),
            code: code.to_owned(),
        })
    };
    match node {
        Value::String(s) => emit(SearchValue::Token {
            system: String::new(),
            code: s.clone(),
        }),
        Value::Bool(b) => emit(SearchValue::Token {
            system: String::new(),
            code: b.to_string(),
        }),
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get("coding") {
                // CodeableConcept
                for c in codings {
                    if let Some(t) = token(c.get("system"), c.get("code")) {
                        emit(t);
                    }
                }
            } else if o.contains_key("code") {
                // Coding
                if let Some(t) = token(o.get("system"), o.get("code")) {
                    emit(t);
                }
            } else if let Some(t) = token(o.get("system"), o.get("value")) {
                // Identifier, ContactPoint
                emit(t);
            }
        }
        _ => {}
    }
}

fn strings(node: &Value, emit: &mut dyn FnMut(SearchValue)) {
    match node {
        Value::String(s) => emit(SearchValue::Text(normalize_text(s))),
        Value::Array(items) => items.iter().for_each(|i| strings(i, emit)),
        Value::Object(o) => {
            // HumanName and Address: every textual part.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                if let Some(v) = o.get(key) {
                    strings(v, emit);
                }
            }
        }
        _ => {}
    }
}

fn date_value(node: &Value) -> Option<(i64, i64)> {
    match node {
        Value::String(s) => parse_date(s),
        Value::Object(o) => {
            // Period: an open end is open-ended.
            let start = o.get("start").and_then(Value::as_str).and_then(parse_date);
            let end = o.get("end").and_then(Value::as_str).and_then(parse_date);
            match (start, end) {
                (None, None) => None,
                (s, e) => Some((s.map_or(i64::MIN, |s| s.0), e.map_or(i64::MAX, |e| e.1))),
            }
        }
        _ => None,
    }
}

/// Lowercase, with the accents of Latin letters removed: FHIR string search ignores both.
pub fn normalize_text(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'ī' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
            'ý' | 'ÿ' => 'y',
            'ś' | 'š' => 's',
            'ź' | 'ż' | 'ž' => 'z',
            'ł' => 'l',
            'ř' => 'r',
            'ť' => 't',
            'ď' => 'd',
            other => other,
        })
        .collect()
}

/// A FHIR date, dateTime or instant as the inclusive millisecond period its precision covers;
/// `None` when it is not one. Without a zone the time is read as UTC.
pub fn parse_date(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = num(0, 4)?;
    if b.len() == 4 {
        return Some((civil_ms(year, 1, 1)?, civil_ms(year + 1, 1, 1)? - 1));
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let month = num(5, 2)?;
    if b.len() == 7 {
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        return Some((civil_ms(year, month, 1)?, civil_ms(ny, nm, 1)? - 1));
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let day = num(8, 2)?;
    let start_of_day = civil_ms(year, month, day)?;
    if b.len() == 10 {
        return Some((start_of_day, start_of_day + 86_400_000 - 1));
    }
    if b.get(10) != Some(&b'T') {
        return None;
    }
    let hour = num(11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = num(14, 2)?;
    let mut at = 16;
    let mut second = 0;
    let mut millis = 0;
    let mut span = 60_000; // minute precision
    if b.get(at) == Some(&b':') {
        second = num(17, 2)?;
        at = 19;
        span = 1000;
        if b.get(at) == Some(&b'.') {
            let digits = b[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits == 0 {
                return None;
            }
            let frac = &s[at + 1..at + 1 + digits];
            let ms: String = frac.chars().chain("000".chars()).take(3).collect();
            millis = ms.parse().ok()?;
            span = if digits >= 3 {
                1
            } else {
                10_i64.pow(3 - digits as u32)
            };
            at += 1 + digits;
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_ms = match &s[at..] {
        "" | "Z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if zone.len() != 6 || zone.as_bytes()[3] != b':' {
                return None;
            }
            let zh: i64 = zone[1..3].parse().ok()?;
            let zm: i64 = zone[4..6].parse().ok()?;
            sign * (zh * 3_600_000 + zm * 60_000)
        }
    };
    let lo = start_of_day + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis - offset_ms;
    Some((lo, lo + span - 1))
}

/// Milliseconds at the start of a civil (proleptic Gregorian) date, UTC.
fn civil_ms(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400_000)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dates_cover_their_precision() {
        let day = 86_400_000;
        let cases: &[(&str, Option<(i64, i64)>)] = &[
            ("1970", Some((0, 365 * day - 1))),
            ("1970-02", Some((31 * day, 59 * day - 1))),
            ("1970-01-02", Some((day, 2 * day - 1))),
            ("1970-01-01T01:00:00Z", Some((3_600_000, 3_600_999))),
            ("1970-01-01T01:00:00+01:00", Some((0, 999))),
            ("1970-01-01T00:00:00.5Z", Some((500, 599))),
            ("1970-01-01T00:00:00.123-00:00", Some((123, 123))),
            ("2024-02-29", Some((19_782 * day, 19_783 * day - 1))),
            ("2024-13", None),
            ("20240101", None),
            ("2024-01-01T25:00:00Z", None),
            ("2024-01-01T10:00:00+0100", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_date(text), *want, "{text}");
        }
    }

    #[test]
    fn text_ignores_case_and_accents() {
        assert_eq!(
            normalize_text("Ærøskøbing MÜLLER Zoë"),
            "æroskobing muller zoe"
        );
    }

    #[test]
    fn an_observation_yields_its_values() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"},
                                {"system": "http://local", "code": "GLU"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-03-01",
            "identifier": [{"system": "urn:x", "value": "42"}],
            "encounter": {"reference": "urn:uuid:abc"}
        });
        let values = extract("Observation", &obs);
        let has = |name: &str, v: SearchValue| {
            values.contains(&(param("Observation", name).unwrap().name, v))
        };
        let token = |s: &str, c: &str| SearchValue::Token {
            system: s.into(),
            code: c.into(),
        };
        assert!(has("code", token("http://loinc.org", "2345-7")));
        assert!(has("code", token("http://local", "GLU")));
        assert!(has("status", token("", "final")));
        assert!(has("identifier", token("urn:x", "42")));
        assert!(has("subject", SearchValue::Reference("Patient/p1".into())));
        assert!(has("patient", SearchValue::Reference("Patient/p1".into())));
        assert!(
            values
                .iter()
                .any(|(n, v)| *n == "date" && matches!(v, SearchValue::Date { .. }))
        );
        // An unresolved bundle-local reference is not indexed.
        assert!(!values.iter().any(|(n, _)| *n == "encounter"));
    }

    #[test]
    fn a_quantity_is_indexed_under_its_code_and_its_text() {
        let obs = json!({
            "resourceType": "Observation",
            "valueQuantity": {"value": 5.40, "unit": "mg/dL",
                              "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            "component": [
                {"valueQuantity": {"value": 120, "unit": "mmHg"}},
                {"valueQuantity": {"value": 80, "unit": "mm Hg",
                                   "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"valueQuantity": {"unit": "mmHg"}}
            ]
        });
        let values = extract("Observation", &obs);
        let quantity = |v: f64, s: &str, c: &str| SearchValue::Quantity {
            value: v,
            system: s.into(),
            code: c.into(),
        };
        let ucum = "http://unitsofmeasure.org";
        let of = |name: &str| -> Vec<&SearchValue> {
            values
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .collect()
        };
        assert_eq!(of("value-quantity"), [&quantity(5.4, ucum, "mg/dL")]);
        assert_eq!(
            of("component-value-quantity"),
            [
                &quantity(120.0, "", "mmHg"),
                &quantity(80.0, ucum, "mm[Hg]"),
                &quantity(80.0, "", "mm Hg"),
            ]
        );
    }

    #[test]
    fn component_parameters_read_components_and_combos_unite_parameters() {
        let obs = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "valueDateTime": "2024-03-02",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 80, "code": "mm[Hg]"}}
            ]
        });
        let values = extract("Observation", &obs);
        let codes = |name: &str| -> Vec<String> {
            values
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, v)| match v {
                    SearchValue::Token { code, .. } => Some(code.clone()),
                    SearchValue::Quantity { value, .. } => Some(value.to_string()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(codes("component-code"), ["8480-6", "8462-4"]);
        assert_eq!(codes("component-value-quantity"), ["120", "80"]);
        assert!(codes("value-quantity").is_empty());
        // The combos search the parameters they unite, and store nothing of their own.
        for combo in [
            "combo-code",
            "combo-value-quantity",
            "combo-code-value-quantity",
        ] {
            assert!(codes(combo).is_empty(), "{combo}");
            for name in param("Observation", combo).expect("known").union_of {
                assert!(param("Observation", name).is_some(), "{combo}: {name}");
            }
        }
        let day = parse_date("2024-03-02").expect("date");
        assert!(values.contains(&(
            "value-date",
            SearchValue::Date {
                lo: day.0,
                hi: day.1
            }
        )));
    }

    #[test]
    fn composites_pair_each_code_with_the_quantity_of_its_own_element() {
        let obs = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"},
                                     {"code": "SYS"}]},
                 "valueQuantity": {"value": 150, "unit": "mmHg", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 80, "code": "mm[Hg]"}}
            ]
        });
        let values = extract("Observation", &obs);
        let of = |name: &str| -> Vec<(String, f64, String)> {
            values
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, v)| match v {
                    SearchValue::CodeQuantity {
                        code, value, unit, ..
                    } => Some((code.clone(), *value, unit.clone())),
                    _ => None,
                })
                .collect()
        };
        let row = |c: &str, v: f64, u: &str| (c.to_owned(), v, u.to_owned());
        // The panel has no value of its own; 8480-6 is never paired with 80.
        assert!(of("code-value-quantity").is_empty());
        assert_eq!(
            of("component-code-value-quantity"),
            [
                row("8480-6", 150.0, "mm[Hg]"),
                row("8480-6", 150.0, "mmHg"),
                row("SYS", 150.0, "mm[Hg]"),
                row("SYS", 150.0, "mmHg"),
                row("8462-4", 80.0, "mm[Hg]"),
            ]
        );
        let glucose = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "valueQuantity": {"value": 5.4, "unit": "mmol/L"}
        });
        assert!(extract("Observation", &glucose).contains(&(
            "code-value-quantity",
            SearchValue::CodeQuantity {
                system: "http://loinc.org".into(),
                code: "2345-7".into(),
                value: 5.4,
                unit: "mmol/L".into()
            }
        )));
    }

    #[test]
    fn a_patient_yields_names_in_search_form() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Müller", "given": ["Anna", "Zoë"]}],
            "gender": "female",
            "birthDate": "1980-05-17",
            "active": true
        });
        let values = extract("Patient", &patient);
        for (name, text) in [("family", "muller"), ("given", "zoe"), ("name", "anna")] {
            assert!(
                values.contains(&(name, SearchValue::Text(text.into()))),
                "{name} {text}: {values:?}"
            );
        }
        assert!(values.contains(&(
            "active",
            SearchValue::Token {
                system: String::new(),
                code: "true".into()
            }
        )));
    }

    #[test]
    fn every_parameter_of_a_compartment_type_reads_patient_references() {
        let types: Vec<&str> = patient_compartment().collect();
        for t in [
            "Observation",
            "Encounter",
            "Immunization",
            "AllergyIntolerance",
            "Appointment",
        ] {
            assert!(types.contains(&t), "{t}");
        }
        assert!(!types.contains(&"Patient"));
    }
}
