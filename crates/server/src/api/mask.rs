//! PHI masking of a message's detail: what `GET /api/messages/{id}` answers unless the caller
//! asks for `?reveal=true` (operator or admin, audited).
//!
//! Masked means every non-empty value of a field that identifies or describes a person is
//! replaced by [`MASK`], in the raw text (and the outbound text and ACKs), in the parsed view
//! (positions and field names stay, so the structure is still readable) and in the FHIR bundle.
//!
//! # What is masked ([`masks`])
//!
//! - PID, PD1, NK1, GT1, IN1, IN2, IN3, MRG, ACC: every field but a leading Set ID (the
//!   patient, next of kin, guarantor, insurance, merged identifiers, accident).
//! - PV1: the people (attending, referring, consulting, admitting and other providers: 7, 8, 9,
//!   17, 52) and the visit numbers (19, 50).
//! - OBX-5 when OBX-2 says free text or a document (`TX`, `FT`, `ST`, `ED`, `RP`): notes may
//!   name people. Numbers and codes stay, which is what an interface analyst debugs.
//! - NTE-3 (comments).
//!
//! In the FHIR bundle: the identifying elements of Patient, RelatedPerson, Person,
//! Practitioner (name, identifier, gender, telecom, address, birthDate, contact, photo, ...), the
//! identifiers of Encounter and Coverage, the query of a conditional reference or request to
//! those types (`Patient?identifier=***`), and anywhere else any string holding a value taken
//! from a masked field (free-text results, notes), found by value ([`Secrets`]).
//!
//! # Invariants
//!
//! - Masking only removes; positions, field names and the message's structure stay.
//! - The masked FHIR bundle holds no value of three characters or more that appears only in
//!   masked fields (shorter values such as `F` are masked where they stand, not searched for;
//!   a value also shown in an unmasked field, such as a facility in MSH-4 and PID-3.4, is not
//!   a secret and stays). Codes and URIs that say what a value is (`system`, `use`, coding
//!   `code`) stay.

use std::collections::BTreeSet;

use serde_json::Value;

use super::view::ParsedMessage;

/// What replaces a masked value.
pub const MASK: &str = "***";

/// Values shorter than this are not searched for in the FHIR bundle: `F`, `M`, `MR` would
/// mask half the document.
const MIN_SECRET_LEN: usize = 3;

/// Segments describing a person, masked from this field on (their field 1 is a Set ID, or,
/// for PD1, IN2, MRG and ACC, already personal).
const PERSON_SEGMENTS: [(&str, usize); 9] = [
    ("PID", 2),
    ("PD1", 1),
    ("NK1", 2),
    ("GT1", 2),
    ("IN1", 2),
    ("IN2", 1),
    ("IN3", 2),
    ("MRG", 1),
    ("ACC", 1),
];

/// PV1 fields naming people or numbering the visit.
const PV1_FIELDS: [usize; 7] = [7, 8, 9, 17, 19, 50, 52];

/// OBX-2 value types whose OBX-5 is free text or a document.
const FREE_TEXT_TYPES: [&str; 5] = ["TX", "FT", "ST", "ED", "RP"];

/// Whether field `n` of a segment `id` is masked; `value_type` is OBX-2 (for OBX).
pub fn masks(id: &str, n: usize, value_type: &str) -> bool {
    if let Some((_, from)) = PERSON_SEGMENTS.iter().find(|(s, _)| *s == id) {
        return n >= *from;
    }
    match id {
        "PV1" => PV1_FIELDS.contains(&n),
        "OBX" => n == 5 && FREE_TEXT_TYPES.contains(&value_type.trim()),
        "NTE" => n == 3,
        _ => false,
    }
}

/// FHIR resource types describing a person, and their identifying elements.
const PERSON_RESOURCES: [&str; 4] = ["Patient", "RelatedPerson", "Person", "Practitioner"];
const PERSON_ELEMENTS: [&str; 14] = [
    "name",
    "gender",
    "identifier",
    "telecom",
    "address",
    "birthDate",
    "contact",
    "photo",
    "deceasedDateTime",
    "deceasedBoolean",
    "multipleBirthInteger",
    "multipleBirthBoolean",
    "text",
    "link",
];
/// Other resources whose identifiers number a person's visit or policy.
const NUMBERED_RESOURCES: [(&str, &[&str]); 2] = [
    ("Encounter", &["identifier"]),
    ("Coverage", &["identifier", "subscriberId", "dependent"]),
];
/// Keys whose strings say what a value is, not who: kept inside masked elements.
const KEPT_KEYS: [&str; 3] = ["system", "use", "code"];
/// Keys never searched for secrets: identities and links inside the bundle.
const LINK_KEYS: [&str; 4] = ["id", "fullUrl", "resourceType", "system"];

/// The values taken out of the masked fields, searched for in the FHIR bundle.
#[derive(Debug, Default)]
pub struct Secrets(BTreeSet<String>);

impl Secrets {
    fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.chars().count() >= MIN_SECRET_LEN && value != MASK {
            self.0.insert(value.to_owned());
        }
    }

    /// `text` with every secret in it replaced (longest first, so a name inside a longer
    /// note does not leave the rest of the note behind).
    fn scrub(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        let mut by_length: Vec<&String> = self.0.iter().collect();
        by_length.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in by_length {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

/// Masks the parsed view in place: masked fields keep their position and name; their value
/// and every decoded leaf become [`MASK`]. Returns the decoded values taken out.
pub fn parsed(view: &mut ParsedMessage) -> Secrets {
    let mut secrets = Secrets::default();
    // Values the view shows anyway (a facility, a ward): not secrets, even where they also
    // stand in a masked field.
    let mut shown = Secrets::default();
    for seg in &mut view.segments {
        let value_type = seg
            .fields
            .iter()
            .find(|f| f.position == format!("{}-2", seg.id))
            .map(|f| f.value.clone())
            .unwrap_or_default();
        for field in &mut seg.fields {
            let n = field
                .position
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if !masks(&seg.id, n, &value_type) {
                shown.add(&field.value);
                for leaf in field.repetitions.iter().flatten().flatten() {
                    shown.add(leaf);
                }
                continue;
            }
            secrets.add(&field.value);
            for leaf in field.repetitions.iter().flatten().flatten() {
                secrets.add(leaf);
            }
            field.value = MASK.to_owned();
            field.repetitions = vec![vec![vec![MASK.to_owned()]]];
        }
    }
    secrets.0.retain(|s| !shown.0.contains(s));
    secrets
}

/// Masks a v2 text (the message as received, as sent on, or an ACK): segment by segment, each
/// masked non-empty field replaced by [`MASK`] whole (repetitions included). Segment
/// terminators (CR, LF or both) and everything else stay as they were.
pub fn raw(text: &str) -> String {
    let sep = text
        .strip_prefix("MSH")
        .or_else(|| text.strip_prefix("FHS"))
        .or_else(|| text.strip_prefix("BHS"))
        .and_then(|rest| rest.chars().next())
        .unwrap_or('|');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let (segment, tail) = rest.split_at(end);
        let term_len = tail
            .char_indices()
            .take_while(|(_, c)| matches!(c, '\r' | '\n'))
            .count();
        let (terminator, after) = tail.split_at(term_len);
        out.push_str(&segment_masked(segment, sep));
        out.push_str(terminator);
        rest = after;
    }
    out
}

fn segment_masked(segment: &str, sep: char) -> String {
    let fields: Vec<&str> = segment.split(sep).collect();
    let id = fields.first().copied().unwrap_or("");
    let value_type = fields.get(2).copied().unwrap_or("");
    if !(1..fields.len()).any(|n| masks(id, n, value_type)) {
        return segment.to_owned();
    }
    fields
        .iter()
        .enumerate()
        .map(|(n, f)| {
            if n > 0 && !f.is_empty() && masks(id, n, value_type) {
                MASK
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

/// Masks a FHIR bundle (or a single resource) in place.
pub fn fhir(value: &mut Value, secrets: &Secrets) {
    match value {
        Value::Object(map) => {
            let kind = map
                .get("resourceType")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let elements: &[&str] = match kind.as_deref() {
                Some(t) if PERSON_RESOURCES.contains(&t) => &PERSON_ELEMENTS,
                Some(t) => NUMBERED_RESOURCES
                    .iter()
                    .find(|(n, _)| *n == t)
                    .map_or(&[], |(_, e)| e),
                None => &[],
            };
            for (key, child) in map.iter_mut() {
                if elements.contains(&key.as_str()) {
                    blank(child);
                } else if let Value::String(s) = child {
                    if let Some(masked) = conditional(s) {
                        *s = masked;
                    } else if !LINK_KEYS.contains(&key.as_str())
                        && let Some(scrubbed) = secrets.scrub(s)
                    {
                        *s = scrubbed;
                    }
                } else {
                    fhir(child, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fhir(v, secrets)),
        _ => {}
    }
}

/// Every string under `value` replaced by [`MASK`], but for [`KEPT_KEYS`].
fn blank(value: &mut Value) {
    match value {
        Value::String(s) => MASK.clone_into(s),
        Value::Number(_) | Value::Bool(_) => *value = Value::String(MASK.to_owned()),
        Value::Array(items) => items.iter_mut().for_each(blank),
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !KEPT_KEYS.contains(&key.as_str()) {
                    blank(child);
                }
            }
        }
        Value::Null => {}
    }
}

/// `Patient?identifier=X|123` -> `Patient?***`: a conditional reference or request to a
/// person names them in its query.
fn conditional(s: &str) -> Option<String> {
    let (kind, query) = s.split_once('?')?;
    let kind = kind.rsplit('/').next().unwrap_or(kind);
    let numbered = NUMBERED_RESOURCES.iter().any(|(n, _)| *n == kind);
    ((PERSON_RESOURCES.contains(&kind) || numbered) && !query.is_empty())
        .then(|| format!("{}?{MASK}", &s[..s.len() - query.len() - 1]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ADT: &str = "MSH|^~\\&|EHR|CLINIC|||20240101||ADT^A01|C1|P|2.5.1\r\
        PID|1||12345^^^HOSP^MR||DOE^JANE||19800517|F|||1 MAIN ST^^LEEDS|CLINIC\r\
        NK1|1|DOE^JOHN|SPO\r\
        PV1|1|I|WARD^1|||||1234^WELBY^MARCUS|||||||||||V-778|||||\r\
        OBX|1|TX|NOTE^Note||Jane was seen by her sister||||||F\r\
        OBX|2|NM|2345-7^Glucose^LN||5.4|mmol/L\r";

    #[test]
    fn raw_text_keeps_structure_and_loses_the_person() {
        let masked = raw(ADT);
        let lines: Vec<&str> = masked.split('\r').collect();
        assert_eq!(
            lines[0],
            "MSH|^~\\&|EHR|CLINIC|||20240101||ADT^A01|C1|P|2.5.1"
        );
        assert_eq!(lines[1], "PID|1||***||***||***|***|||***|***");
        assert_eq!(lines[2], "NK1|1|***|***");
        assert_eq!(lines[3], "PV1|1|I|WARD^1|||||***|||||||||||***|||||");
        assert_eq!(lines[4], "OBX|1|TX|NOTE^Note||***||||||F");
        assert_eq!(lines[5], "OBX|2|NM|2345-7^Glucose^LN||5.4|mmol/L");
        assert!(masked.ends_with('\r'));
        for phi in [
            "12345", "DOE", "JANE", "19800517", "WELBY", "V-778", "sister",
        ] {
            assert!(!masked.contains(phi), "{phi} in {masked}");
        }
        let lf = raw("MSH#^~\\&#A\nPID#1##X\n");
        assert_eq!(lf, "MSH#^~\\&#A\nPID#1##***\n", "another separator, LF");
        assert_eq!(raw("not hl7 at all"), "not hl7 at all");
    }

    #[test]
    fn parsed_view_keeps_names_and_the_bundle_loses_the_person() {
        let msg = hl7v2::parse(ADT.as_bytes()).expect("parses");
        let mut view = super::super::view::parsed(&msg);
        let secrets = parsed(&mut view);
        let pid = &view.segments[1];
        let name = pid.fields.iter().find(|f| f.position == "PID-5").unwrap();
        assert_eq!(name.name.as_deref(), Some("Patient Name"));
        assert_eq!(name.value, MASK);
        assert_eq!(name.repetitions, vec![vec![vec![MASK.to_string()]]]);
        assert_eq!(pid.fields[0].value, "1", "Set ID stays");
        let glucose = &view.segments[5].fields[3];
        assert_eq!(glucose.value, "5.4", "numeric results stay");
        assert!(secrets.0.contains("12345") && secrets.0.contains("HOSP"));
        assert!(
            !secrets.0.contains("CLINIC"),
            "a value shown in MSH-4 is no secret"
        );

        let mut bundle = json!({"resourceType": "Bundle", "entry": [
            {"fullUrl": "urn:uuid:1", "request": {"method": "PUT", "url": "Patient?identifier=HOSP|12345"},
             "resource": {"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": "urn:hosp", "value": "12345", "type": {"coding": [{"code": "MR"}]}}],
                "name": [{"use": "official", "family": "DOE", "given": ["JANE"]}],
                "gender": "female", "birthDate": "1980-05-17"}},
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient?identifier=HOSP|12345"},
                "valueString": "Jane was seen by her sister", "status": "final"}},
            {"resource": {"resourceType": "Encounter", "identifier": [{"value": "V-778"}]}}
        ]});
        fhir(&mut bundle, &secrets);
        let patient = &bundle["entry"][0]["resource"];
        assert_eq!(patient["identifier"][0]["value"], MASK);
        assert_eq!(patient["identifier"][0]["system"], "urn:hosp");
        assert_eq!(patient["identifier"][0]["type"]["coding"][0]["code"], "MR");
        assert_eq!(patient["name"][0]["family"], MASK);
        assert_eq!(patient["name"][0]["given"][0], MASK);
        assert_eq!(patient["name"][0]["use"], "official");
        assert_eq!(patient["birthDate"], MASK);
        assert_eq!(patient["gender"], MASK);
        assert_eq!(patient["id"], "p1");
        assert_eq!(bundle["entry"][0]["request"]["url"], "Patient?***");
        let obs = &bundle["entry"][1]["resource"];
        assert_eq!(obs["subject"]["reference"], "Patient?***");
        assert_eq!(obs["valueString"], MASK);
        assert_eq!(obs["status"], "final");
        assert_eq!(
            bundle["entry"][2]["resource"]["identifier"][0]["value"],
            MASK
        );
    }
}
