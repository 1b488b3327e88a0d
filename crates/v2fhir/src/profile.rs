//! Vendor profiles: what one sender means, declared in a TOML file kept next to the channel config and
//! versioned in git. A profile holds:
//! - which messages it is for (`[sender]`: MSH-3 application, MSH-4 facility);
//! - `[defaults]`: the assigning authority for identifiers sent without one, the zone of times sent
//!   without one;
//! - `[[relocate]]`: fields the sender puts in the wrong place (MRN in PID-2 instead of PID-3), or Z-segment
//!   fields that carry a standard element (`ZPI-2` -> `PID-10`), moved before conversion;
//! - `[[zsegment]]`: Z-segment fields carried as extensions on the Patient or Encounter;
//! - `[[code_map]]`: code maps with explicit meaning, each with its unmapped policy (see [`CodeMap`]).
//!
//! Reading is [`Profile::from_toml`]: every problem in the file is reported at once, each with its line and
//! the field at fault. The crate does no I/O: callers read the file.
//!
//! ```toml
//! name = "st-elsewhere-lab"
//! [sender]
//! application = "LAB"
//! facility = "STE"
//! [defaults]
//! assigning_authority = "urn:oid:2.16.840.1.113883.19.5"
//! time_zone = "-0500"
//! [[relocate]]
//! from = "PID-2"
//! to = "PID-3"
//! [[code_map]]
//! name = "allergen-none"
//! fields = ["AL1-3"]
//! unmapped = "pass"
//! [[code_map.entry]]
//! code = "NA"
//! target = { system = "http://snomed.info/sct", code = "716186003", display = "No known allergy" }
//! added_by = "j.analyst"
//! added_at = "2026-11-02"
//! ```

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// A sender's profile. `Profile::default()` is the plain HL7 reading with no site knowledge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    /// MSH-3.1 this profile is for (`None`: any).
    pub sender_application: Option<String>,
    /// MSH-4.1 this profile is for (`None`: any).
    pub sender_facility: Option<String>,
    /// Assigning authority (identifier system) for identifiers that carry none.
    pub default_authority: Option<String>,
    /// Zone for times sent without one (`+HHMM`, `-HHMM`, `Z`).
    pub time_zone: Option<String>,
    pub relocations: Vec<Relocation>,
    pub z_segments: Vec<ZMapping>,
    pub code_maps: Vec<CodeMap>,
}

/// Move a value before conversion: `from` is copied to `to` (when `to` is empty, or always with
/// `overwrite`), and `from` is cleared unless `keep_source`.
#[derive(Debug, Clone, PartialEq)]
pub struct Relocation {
    pub from: String,
    pub to: String,
    pub overwrite: bool,
    pub keep_source: bool,
}

/// Which resource a Z-segment value is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZTarget {
    Patient,
    Encounter,
}

/// How a Z-segment value is written in its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZValue {
    /// `valueString`: the field's text.
    String,
    /// `valueCode`: the field's first component.
    Code,
    /// `valueCodeableConcept`: the field read as CWE.
    CodeableConcept,
}

/// A Z-segment field carried as an extension: `ZPI-3` -> `Patient.extension` with `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZMapping {
    /// The field, e.g. `ZPI-3` (a component with `ZPI-3.2`).
    pub field: String,
    pub resource: ZTarget,
    pub url: String,
    pub value: ZValue,
}

/// What to do with a code a map does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmappedPolicy {
    /// Keep the code as sent, flagged with the [`UNMAPPED_EXTENSION`] extension and counted.
    Pass,
    /// Refuse the message: the sender gets AE naming the field and the code.
    Reject,
    /// Accept the message but hold it for review before it goes on.
    Hold,
}

/// The extension that flags a coded value no map of the sender knew (`valueString`: the map's name).
pub const UNMAPPED_EXTENSION: &str = "urn:causeway:extension:unmapped-code";

/// A code map with explicit meaning, applied to the coded fields it names.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeMap {
    pub name: String,
    pub description: Option<String>,
    /// Field locations the map applies to, e.g. `AL1-3`, `OBX-5`.
    pub fields: Vec<String>,
    /// Only in OBX whose OBX-3.1 is this code (e.g. LOINC `72166-2`, tobacco smoking status).
    pub observation: Option<String>,
    /// The code system the sender's codes are in (CWE.3 name or URI); `None` matches any.
    pub source_system: Option<String>,
    pub unmapped: UnmappedPolicy,
    pub entries: Vec<CodeMapEntry>,
}

/// One sender code and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeMapEntry {
    pub code: String,
    pub meaning: Meaning,
    /// Who added the entry and when: a code map is clinical knowledge and needs an author.
    pub added_by: String,
    pub added_at: String,
    pub comment: Option<String>,
}

/// What a sender's code means.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    /// A concept in a standard system.
    Concept {
        system: String,
        code: String,
        display: Option<String>,
    },
    /// Nothing to record (e.g. allergy "NA" meaning "not applicable": no AllergyIntolerance).
    Nothing { display: String },
}

/// A problem in a profile file: where (line, field) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub origin: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.origin, self.line, self.field, self.message
        )
    }
}

impl std::error::Error for ProfileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    description: Option<String>,
    sender: Option<RawSender>,
    defaults: Option<RawDefaults>,
    #[serde(default)]
    relocate: Vec<RawRelocate>,
    #[serde(default)]
    zsegment: Vec<RawZ>,
    #[serde(default)]
    code_map: Vec<RawCodeMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    application: Option<String>,
    facility: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    assigning_authority: Option<String>,
    time_zone: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelocate {
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    keep_source: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZ {
    field: Spanned<String>,
    resource: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    value: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodeMap {
    name: Spanned<String>,
    description: Option<String>,
    fields: Spanned<Vec<String>>,
    observation: Option<String>,
    source_system: Option<String>,
    unmapped: Spanned<String>,
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    code: Spanned<String>,
    target: Option<RawTarget>,
    /// `meaning = "nothing"` with `display`: the code records nothing.
    meaning: Option<Spanned<String>>,
    display: Option<String>,
    added_by: Option<String>,
    added_at: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    system: String,
    code: String,
    display: Option<String>,
}

/// Why a code map's target is not a valid FHIR Coding: `system` an absolute URI (a scheme, then no
/// whitespace), `code` a FHIR code (not empty, no leading, trailing or doubled whitespace), a
/// `display` not empty.
fn target_problem(t: &RawTarget) -> Option<String> {
    let scheme_end = t.system.find(':').unwrap_or(0);
    let scheme = &t.system[..scheme_end];
    let absolute = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && t.system.len() > scheme_end + 1
        && !t.system.contains(char::is_whitespace);
    if !absolute {
        return Some(format!(
            "target system `{}` is not an absolute URI such as http://snomed.info/sct",
            t.system
        ));
    }
    if crate::read::code_text(t.code.clone()).as_deref() != Some(t.code.as_str()) {
        return Some(format!(
            "target code `{}` is not a FHIR code (empty, or with leading, trailing or doubled spaces)",
            t.code
        ));
    }
    if t.display.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return Some("target display is empty: leave it out instead".into());
    }
    None
}

impl Profile {
    /// Reads a profile from TOML `text`; `origin` (the file name) is used in errors.
    ///
    /// # Errors
    /// Every problem found, each with its line and field: TOML syntax and unknown keys (the first only,
    /// as TOML parsing stops there), then every invalid value.
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, Vec<ProfileError>> {
        let line_of =
            |span: Range<usize>| text[..span.start.min(text.len())].matches('\n').count() + 1;
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            vec![ProfileError {
                origin: origin.to_owned(),
                line: e.span().map_or(1, line_of),
                field: "toml".into(),
                message: e.message().to_owned(),
            }]
        })?;
        let mut errors = Vec::new();
        let mut err = |span: Range<usize>, field: String, message: String| {
            errors.push(ProfileError {
                origin: origin.to_owned(),
                line: line_of(span),
                field,
                message,
            });
        };
        if raw.name.get_ref().trim().is_empty() {
            err(raw.name.span(), "name".into(), "must not be empty".into());
        }
        let (default_authority, time_zone) = match raw.defaults {
            Some(d) => {
                if let Some(z) = &d.time_zone
                    && crate::dtm("20000101", Some(z.get_ref())).is_err()
                {
                    err(
                        z.span(),
                        "defaults.time_zone".into(),
                        format!("`{}` is not a zone: write +HHMM, -HHMM or Z", z.get_ref()),
                    );
                }
                (d.assigning_authority, d.time_zone.map(Spanned::into_inner))
            }
            None => (None, None),
        };
        let mut relocations = Vec::new();
        for (i, r) in raw.relocate.into_iter().enumerate() {
            for (name, p) in [("from", &r.from), ("to", &r.to)] {
                if let Err(e) = hl7v2::Path::parse(p.get_ref()) {
                    err(p.span(), format!("relocate[{i}].{name}"), e.to_string());
                }
            }
            relocations.push(Relocation {
                from: r.from.into_inner(),
                to: r.to.into_inner(),
                overwrite: r.overwrite,
                keep_source: r.keep_source,
            });
        }
        let mut z_segments = Vec::new();
        for (i, z) in raw.zsegment.into_iter().enumerate() {
            if !z.field.get_ref().starts_with('Z') || hl7v2::Path::parse(z.field.get_ref()).is_err()
            {
                err(
                    z.field.span(),
                    format!("zsegment[{i}].field"),
                    format!(
                        "`{}` is not a Z-segment field such as ZPI-3",
                        z.field.get_ref()
                    ),
                );
            }
            let resource = match z.resource.get_ref().as_str() {
                "Patient" => ZTarget::Patient,
                "Encounter" => ZTarget::Encounter,
                other => {
                    err(
                        z.resource.span(),
                        format!("zsegment[{i}].resource"),
                        format!("`{other}`: expected Patient or Encounter"),
                    );
                    ZTarget::Patient
                }
            };
            if !z.url.get_ref().contains(':') {
                err(
                    z.url.span(),
                    format!("zsegment[{i}].url"),
                    "an extension url must be an absolute URI".into(),
                );
            }
            let value = match z.value.as_ref().map(|v| v.get_ref().as_str()) {
                None | Some("string") => ZValue::String,
                Some("code") => ZValue::Code,
                Some("CodeableConcept") => ZValue::CodeableConcept,
                Some(other) => {
                    let span = z.value.as_ref().map_or(0..0, Spanned::span);
                    err(
                        span,
                        format!("zsegment[{i}].value"),
                        format!("`{other}`: expected string, code or CodeableConcept"),
                    );
                    ZValue::String
                }
            };
            z_segments.push(ZMapping {
                field: z.field.into_inner(),
                resource,
                url: z.url.into_inner(),
                value,
            });
        }
        let mut code_maps = Vec::new();
        for (i, m) in raw.code_map.into_iter().enumerate() {
            let at = format!("code_map[{i}]");
            let unmapped = match m.unmapped.get_ref().as_str() {
                "pass" => UnmappedPolicy::Pass,
                "reject" => UnmappedPolicy::Reject,
                "hold" => UnmappedPolicy::Hold,
                other => {
                    err(
                        m.unmapped.span(),
                        format!("{at}.unmapped"),
                        format!("`{other}`: expected pass, reject or hold"),
                    );
                    UnmappedPolicy::Pass
                }
            };
            if m.fields.get_ref().is_empty() {
                err(
                    m.fields.span(),
                    format!("{at}.fields"),
                    "names no field".into(),
                );
            }
            for f in m.fields.get_ref() {
                let ok = hl7v2::Path::parse(f).is_ok_and(|p| {
                    p.component.is_none() && p.field > 0 && !f.contains('(') && !f.contains('[')
                });
                if !ok {
                    err(
                        m.fields.span(),
                        format!("{at}.fields"),
                        format!("`{f}` is not a field such as AL1-3"),
                    );
                }
            }
            let mut entries = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (j, e) in m.entry.into_iter().enumerate() {
                let eat = format!("{at}.entry[{j}]");
                if !seen.insert(e.code.get_ref().clone()) {
                    err(
                        e.code.span(),
                        format!("{eat}.code"),
                        format!("`{}` is mapped twice in this map", e.code.get_ref()),
                    );
                }
                let meaning = match (e.target, e.meaning.as_ref().map(|m| m.get_ref().as_str())) {
                    (Some(t), None) => {
                        // What the map writes must be a valid FHIR Coding, or every message
                        // carrying the code would be converted into invalid FHIR.
                        if let Some(why) = target_problem(&t) {
                            err(e.code.span(), format!("{eat}.target"), why);
                        }
                        Meaning::Concept {
                            system: t.system,
                            code: t.code,
                            display: t.display,
                        }
                    }
                    (None, Some("nothing")) => match e.display.clone() {
                        Some(display) => Meaning::Nothing { display },
                        None => {
                            err(
                                e.code.span(),
                                format!("{eat}.display"),
                                "`meaning = \"nothing\"` needs a display saying what the code means"
                                    .into(),
                            );
                            Meaning::Nothing {
                                display: String::new(),
                            }
                        }
                    },
                    (None, Some(other)) => {
                        let span = e.meaning.as_ref().map_or(0..0, Spanned::span);
                        err(
                            span,
                            format!("{eat}.meaning"),
                            format!("`{other}`: the only meaning besides a target is \"nothing\""),
                        );
                        continue;
                    }
                    (Some(_), Some(_)) | (None, None) => {
                        err(
                            e.code.span(),
                            eat.clone(),
                            "give either `target = {{ system, code, display }}` or `meaning = \"nothing\"`"
                                .into(),
                        );
                        continue;
                    }
                };
                let (Some(added_by), Some(added_at)) = (e.added_by, e.added_at) else {
                    err(
                        e.code.span(),
                        format!("{eat}.added_by"),
                        "every entry records who added it and when (`added_by`, `added_at`)".into(),
                    );
                    continue;
                };
                entries.push(CodeMapEntry {
                    code: e.code.into_inner(),
                    meaning,
                    added_by,
                    added_at,
                    comment: e.comment,
                });
            }
            code_maps.push(CodeMap {
                name: m.name.into_inner(),
                description: m.description,
                fields: m.fields.into_inner(),
                observation: m.observation,
                source_system: m.source_system,
                unmapped,
                entries,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let sender = raw.sender.unwrap_or(RawSender {
            application: None,
            facility: None,
        });
        Ok(Profile {
            name: raw.name.into_inner(),
            description: raw.description,
            sender_application: sender.application,
            sender_facility: sender.facility,
            default_authority,
            time_zone,
            relocations,
            z_segments,
            code_maps,
        })
    }

    /// How specifically this profile matches a message from `application`/`facility`: `None` when it does
    /// not, else the number of sender fields it names (the most specific profile wins).
    pub fn matches(&self, application: Option<&str>, facility: Option<&str>) -> Option<u8> {
        let mut score = 0;
        for (want, got) in [
            (&self.sender_application, application),
            (&self.sender_facility, facility),
        ] {
            if let Some(want) = want {
                if Some(want.as_str()) != got {
                    return None;
                }
                score += 1;
            }
        }
        Some(score)
    }
}

/// The profile for a message: the most specific of `profiles` matching its MSH-3/MSH-4, else `None`.
pub fn select<'p>(profiles: &'p [Profile], message: &hl7v2::Message<'_>) -> Option<&'p Profile> {
    let app = message.text("MSH-3.1");
    let facility = message.text("MSH-4.1");
    profiles
        .iter()
        .filter_map(|p| Some((p.matches(app.as_deref(), facility.as_deref())?, p)))
        .max_by_key(|(score, _)| *score)
        .map(|(_, p)| p)
}
