//! User conformance profiles: a vendor's variant of the standard, in the data file's form.
//!
//! A profile overlays one base version (or, without `base_version`, whatever version the
//! message names in MSH-12):
//!
//! ```json
//! {
//!   "name": "main-hospital",
//!   "base_version": "2.5.1",
//!   "z_segments": "declared",
//!   "lengths": "error",
//!   "events": { "ADT^A01": "ADT_A01_MH" },
//!   "structures": { "ADT_A01_MH": ["MSH", "EVN", "PID", ["ZPD", 0, 1], "PV1"] },
//!   "segments": {
//!     "ZPD": { "fields": [ {"name": "Patient Flag", "type": "ID", "usage": "R", "table": 136} ] },
//!     "PID": { "overrides": { "3": {"usage": "O"}, "2": {"usage": "R"} } }
//!   },
//!   "tables": { "4": { "values": ["H"], "extend": true } }
//! }
//! ```
//!
//! - `events` and `structures` add or replace trigger-event mappings and whole structures
//!   (elements as in the data: `"PID"` = exactly one, `["PID", min, max]`, groups as
//!   `["NAME", min, max, [elements]]`, max 0 = unbounded).
//! - `segments.X.fields` defines or replaces segment X (fields as `[name, type, usage, reps,
//!   len, table]` arrays like the data, or objects with those keys; `type` is required);
//!   `segments.X.overrides` patches single fields by number, and may add fields past the end.
//! - `datatypes` defines or replaces composite types (components in the field form).
//! - `tables.N` replaces table N's values, or adds to them with `"extend": true`.
//! - `z_segments`: `"anywhere"` (default) skips Z segments in the structure check;
//!   `"declared"` treats them like any segment, so they must be placed by a structure.
//! - `lengths`: severity of 104 findings, `"warning"` (default), `"error"` or `"off"`.
//!
//! Invariants: a loaded profile has been checked against the embedded definitions (its base
//! version exists, every event maps to a structure the profile or the base defines), so
//! validation never meets a dangling name from it. Errors carry the 1-based line and column.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::definitions::{self, ElementDef, FieldDef, FieldPatch};

/// Field numbers above this in `overrides` are refused: no standard segment comes near it,
/// and it bounds the field list a typo like `"3000"` would allocate.
pub const MAX_PROFILE_FIELD: u32 = 999;

/// Where Z segments may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZSegments {
    /// Anywhere: the structure check skips them (fields are still checked if defined).
    #[default]
    Anywhere,
    /// Only where a structure places them; elsewhere they are sequence errors (100).
    Declared,
}

/// How length findings (104) are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthCheck {
    #[default]
    Warning,
    Error,
    Off,
}

/// A segment's definition or patches in a profile.
#[derive(Debug, Clone, Default)]
pub struct SegmentProfile {
    /// The whole field list (a new segment, or a replacement).
    pub(crate) fields: Option<Vec<FieldDef>>,
    /// Single fields patched by 1-based number.
    pub(crate) overrides: BTreeMap<u32, FieldPatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegmentProfile {
    #[serde(default)]
    fields: Option<Vec<FieldDef>>,
    #[serde(default)]
    overrides: BTreeMap<String, FieldPatch>,
}

/// A table's values in a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableProfile {
    pub(crate) values: Vec<String>,
    /// Add to the standard's values instead of replacing them.
    #[serde(default)]
    pub(crate) extend: bool,
}

/// A user conformance profile; see the module documentation for the format.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub(crate) name: Option<String>,
    pub(crate) base_version: Option<String>,
    pub(crate) z_segments: ZSegments,
    pub(crate) lengths: LengthCheck,
    pub(crate) events: BTreeMap<String, String>,
    pub(crate) structures: BTreeMap<String, Vec<ElementDef>>,
    pub(crate) segments: BTreeMap<String, SegmentProfile>,
    pub(crate) datatypes: BTreeMap<String, Vec<FieldDef>>,
    pub(crate) tables: BTreeMap<u32, TableProfile>,
}

/// The profile as written; [`Profile::from_json_str`] checks it into a [`Profile`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    base_version: Option<String>,
    #[serde(default)]
    z_segments: ZSegments,
    #[serde(default)]
    lengths: LengthCheck,
    #[serde(default)]
    events: BTreeMap<String, String>,
    #[serde(default)]
    structures: BTreeMap<String, Vec<ElementDef>>,
    #[serde(default)]
    segments: BTreeMap<String, RawSegmentProfile>,
    #[serde(default)]
    datatypes: BTreeMap<String, Vec<FieldDef>>,
    #[serde(default)]
    tables: BTreeMap<String, TableProfile>,
}

/// A profile that could not be read, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid profile at line {line}, column {column}: {message}")]
pub struct ProfileError {
    /// 1-based line of the offending text (0 when unknown).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub message: String,
}

impl Profile {
    /// Reads a profile from JSON and checks its names against the embedded definitions.
    ///
    /// Syntax and type errors carry serde_json's position; errors in names (a version, a
    /// segment id, a field number, an event) point at the first place that name appears.
    pub fn from_json_str(text: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            ProfileError {
                line: e.line(),
                column: e.column(),
                message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
            }
        })?;
        Profile::check(raw, text)
    }

    /// The profile's name, if it gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The version whose definitions the profile overlays (`None`: the message's MSH-12).
    pub fn base_version(&self) -> Option<&str> {
        self.base_version.as_deref()
    }

    pub fn z_segments(&self) -> ZSegments {
        self.z_segments
    }

    pub fn lengths(&self) -> LengthCheck {
        self.lengths
    }

    /// Checks what serde cannot: names and numbers, and names that point into the
    /// definitions.
    fn check(raw: RawProfile, text: &str) -> Result<Profile, ProfileError> {
        let data = definitions::data().map_err(|e| ProfileError {
            line: 0,
            column: 0,
            message: e.to_owned(),
        })?;
        if let Some(v) = &raw.base_version
            && !data.versions.contains_key(v)
        {
            let known: Vec<&str> = data.version_ids().collect();
            return Err(error_at(
                text,
                v,
                format!("unknown base_version {v:?} (known: {})", known.join(", ")),
            ));
        }
        let mut segments = BTreeMap::new();
        for (id, seg) in raw.segments {
            if !is_segment_id(&id) {
                return Err(error_at(
                    text,
                    &id,
                    format!("segment id {id:?} is not 3 upper-case letters or digits"),
                ));
            }
            if seg.fields.is_some() && !seg.overrides.is_empty() {
                return Err(error_at(
                    text,
                    &id,
                    format!("segment {id} has both fields and overrides; use one"),
                ));
            }
            let mut overrides = BTreeMap::new();
            for (k, patch) in seg.overrides {
                match k.parse::<u32>() {
                    Ok(n) if (1..=MAX_PROFILE_FIELD).contains(&n) => {
                        overrides.insert(n, patch);
                    }
                    _ => {
                        return Err(error_at(
                            text,
                            &k,
                            format!(
                                "override key {k:?} of segment {id} is not a field number from 1 to {MAX_PROFILE_FIELD}"
                            ),
                        ));
                    }
                }
            }
            segments.insert(
                id,
                SegmentProfile {
                    fields: seg.fields,
                    overrides,
                },
            );
        }
        let mut tables = BTreeMap::new();
        for (k, table) in raw.tables {
            match k.parse::<u32>() {
                Ok(n) if n > 0 => {
                    tables.insert(n, table);
                }
                _ => {
                    return Err(error_at(
                        text,
                        &k,
                        format!("table key {k:?} is not a table number"),
                    ));
                }
            }
        }
        for (event, structure) in &raw.events {
            let valid_key = event.len() == 7
                && event.as_bytes()[3] == b'^'
                && event
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| i == 3 || b.is_ascii_uppercase() || b.is_ascii_digit());
            if !valid_key {
                return Err(error_at(
                    text,
                    event,
                    format!("event {event:?} is not of the form TYPE^EVT, e.g. ADT^A01"),
                ));
            }
            let in_profile = raw.structures.contains_key(structure);
            let in_base = match &raw.base_version {
                Some(v) => data
                    .versions
                    .get(v)
                    .is_some_and(|d| d.structures.contains_key(structure.as_str())),
                None => data
                    .versions
                    .values()
                    .any(|d| d.structures.contains_key(structure.as_str())),
            };
            if !in_profile && !in_base {
                return Err(error_at(
                    text,
                    event,
                    format!(
                        "event {event} maps to structure {structure:?}, which neither the profile nor the base version defines"
                    ),
                ));
            }
        }
        Ok(Profile {
            name: raw.name,
            base_version: raw.base_version,
            z_segments: raw.z_segments,
            lengths: raw.lengths,
            events: raw.events,
            structures: raw.structures,
            segments,
            datatypes: raw.datatypes,
            tables,
        })
    }
}

fn is_segment_id(id: &str) -> bool {
    id.len() == 3
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A position for a semantic error: the first place the key appears as a JSON string.
fn error_at(text: &str, key: &str, message: String) -> ProfileError {
    let needle = format!("\"{key}\"");
    let (line, column) = match text.find(&needle) {
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    ProfileError {
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Profile::from_json_str(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_profiles_have_positions() {
        let cases: &[(&str, &str)] = &[
            (
                "{\n  \"base_version\": \"1.0\"\n}",
                "invalid profile at line 2, column 19: unknown base_version \"1.0\" (known: 2.1, 2.2, 2.3, 2.3.1, 2.4, 2.5, 2.5.1, 2.6, 2.7, 2.7.1, 2.8, 2.8.1, 2.8.2)",
            ),
            (
                "{\"colour\": 1}",
                "invalid profile at line 1, column 9: unknown field `colour`, expected one of `name`, `base_version`, `z_segments`, `lengths`, `events`, `structures`, `segments`, `datatypes`, `tables`",
            ),
            (
                "{\"segments\": {\"PID\": {\"overrides\": {\"x\": {}}}}}",
                "invalid profile at line 1, column 37: override key \"x\" of segment PID is not a field number from 1 to 999",
            ),
            (
                "{\"segments\": {\"ZPD\": {\"fields\": [[\"a\", \"ST\", \"Y\", 1, 0, 0]]}}}",
                "invalid profile at line 1, column 50: invalid value: string \"Y\", expected one of R, RE, O, C, CE, B, W",
            ),
            (
                "{\"z_segments\": \"nowhere\"}",
                "invalid profile at line 1, column 24: unknown variant `nowhere`, expected `anywhere` or `declared`",
            ),
            (
                "{\n\"events\": {\"ADT^A01\": \"NOPE_X\"}}",
                "invalid profile at line 2, column 12: event ADT^A01 maps to structure \"NOPE_X\", which neither the profile nor the base version defines",
            ),
            (
                "{\"events\": {\"ADT-A01\": \"ADT_A01\"}}",
                "invalid profile at line 1, column 13: event \"ADT-A01\" is not of the form TYPE^EVT, e.g. ADT^A01",
            ),
            (
                "{",
                "invalid profile at line 1, column 1: EOF while parsing an object",
            ),
        ];
        let mut bad = Vec::new();
        for (text, want) in cases {
            let got = err(text);
            if &got != want {
                bad.push(format!("{text}\n  got  {got}\n  want {want}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn good_profile_reads() {
        let p = Profile::from_json_str(
            r#"{"name": "x", "base_version": "2.5.1", "z_segments": "declared", "lengths": "off",
                "events": {"ADT^Z01": "ADT_Z01"}, "structures": {"ADT_Z01": ["MSH", ["ZPD", 0, 0]]},
                "segments": {"ZPD": {"fields": [["Flag", "ID", "R", 1, 1, 136]]}},
                "tables": {"136": {"values": ["U"], "extend": true}}}"#,
        )
        .unwrap();
        assert_eq!(p.name(), Some("x"));
        assert_eq!(p.base_version(), Some("2.5.1"));
        assert_eq!(p.z_segments(), ZSegments::Declared);
        assert_eq!(p.lengths(), LengthCheck::Off);
        assert!(p.tables[&136].extend);
    }
}
