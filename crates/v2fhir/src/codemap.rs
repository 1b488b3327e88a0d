//! Applying a sender's code maps ([`crate::profile::CodeMap`]) to coded values, both ways, and exporting
//! a map as a FHIR ConceptMap.
//!
//! Forward (v2 -> FHIR): a map applies to a value when it names the value's field (`AL1-3`, `OBX-5`),
//! its `observation` filter (if any) equals the segment's OBX-3.1, and its `source_system` (if any) is the
//! value's coding system. The first coding's code is looked up:
//! - a concept entry gives a CodeableConcept whose first coding is the target and whose second is the code
//!   as sent (the original is kept, so what the sender said stays visible);
//! - a "nothing" entry gives [`Coded::Nothing`]: the value records nothing;
//! - a code not in the map follows the map's policy: `pass` keeps it flagged with
//!   [`UNMAPPED_EXTENSION`](crate::profile::UNMAPPED_EXTENSION), `reject` fails the conversion, `hold` marks
//!   the message held. Every unmapped value is an [`IssueKind::Unmapped`] issue naming the map, field and
//!   code, for counting per sender, field and code.

use fhir::{
    CodeableConcept, Coding, ConceptMap, ConceptMapElement, ConceptMapGroup, ConceptMapTarget,
    ConceptMapUnmapped, Extension, ExtensionValue,
};

use crate::context::{Coded, Ctx, IssueKind, Severity};
use crate::error::{Error, ErrorKind};
use crate::profile::{CodeMap, Meaning, Profile, UNMAPPED_EXTENSION, UnmappedPolicy};
use crate::vocab::coding_system_uri;

/// `AL1-3` from a location such as `AL1[2]-3` or `OBX[4]-5.1`.
fn field_key(at: &str) -> String {
    let (seg, rest) = at.split_once('-').unwrap_or((at, ""));
    let seg = seg.split('[').next().unwrap_or(seg);
    let field = rest.split(['.', '(']).next().unwrap_or(rest);
    format!("{seg}-{field}")
}

/// The OBX-3.1 of the segment at `at` (`OBX[3]-5` -> the third OBX).
fn observation_code(ctx: &Ctx<'_>, at: &str) -> Option<String> {
    let seg = at.split('-').next()?;
    let (id, n) = match seg.split_once('[') {
        Some((id, n)) => (id, n.trim_end_matches(']').parse().ok()?),
        None => (seg, 1),
    };
    if id != "OBX" {
        return None;
    }
    let obx = ctx.message.find_segment("OBX", n)?;
    crate::read::field_comp(&obx, 3, 1)
}

fn system_matches(wanted: &str, coding: &Coding) -> bool {
    let uri = coding_system_uri(wanted);
    coding.system.as_deref() == Some(wanted) || coding.system.as_deref() == Some(uri.as_ref())
}

fn applies(map: &CodeMap, key: &str, obs: Option<&str>, coding: Option<&Coding>) -> bool {
    map.fields.iter().any(|f| f == key)
        && map.observation.as_deref().is_none_or(|o| Some(o) == obs)
        && map
            .source_system
            .as_deref()
            .is_none_or(|s| coding.is_some_and(|c| system_matches(s, c)))
}

/// Runs `concept`, read at `at` (`AL1-3`), through the profile's maps for that field.
pub(crate) fn apply(ctx: &mut Ctx<'_>, concept: CodeableConcept, at: &str) -> Coded {
    if ctx.profile.code_maps.is_empty() {
        return Coded::Concept(concept);
    }
    let key = field_key(at);
    let obs = if key.starts_with("OBX-") {
        observation_code(ctx, at)
    } else {
        None
    };
    let original = concept.coding.first();
    let Some(map) = ctx
        .profile
        .code_maps
        .iter()
        .find(|m| applies(m, &key, obs.as_deref(), original))
    else {
        return Coded::Concept(concept);
    };
    // A value sent as text only (CWE.2, no code) is looked up by its text.
    let code = original
        .and_then(|c| c.code.clone())
        .or_else(|| concept.text.clone())
        .unwrap_or_default();
    match map.entries.iter().find(|e| e.code == code) {
        Some(entry) => match &entry.meaning {
            Meaning::Concept {
                system,
                code,
                display,
            } => {
                let mut mapped = concept.clone();
                mapped.coding.insert(
                    0,
                    Coding::new(system.clone(), code.clone(), display.as_deref()),
                );
                Coded::Concept(mapped)
            }
            Meaning::Nothing { .. } => Coded::Nothing,
        },
        None => {
            let name = map.name.clone();
            let policy = map.unmapped;
            let system = original.and_then(|c| c.system.clone());
            let message = format!("code not in map `{name}`");
            let severity = match policy {
                UnmappedPolicy::Pass | UnmappedPolicy::Hold => Severity::Warning,
                UnmappedPolicy::Reject => Severity::Error,
            };
            ctx.issue(
                severity,
                at.to_owned(),
                IssueKind::Unmapped {
                    map: name.clone(),
                    system: system.clone(),
                    code: code.clone(),
                },
                message,
            );
            match policy {
                UnmappedPolicy::Reject => {
                    if ctx.rejected.is_none() {
                        let system = system
                            .map(|s| format!(" (system `{s}`)"))
                            .unwrap_or_default();
                        ctx.rejected = Some(Error::new(
                            ErrorKind::Rejected,
                            0,
                            format!("{at}: code `{code}`{system} is not in code map `{name}`"),
                        ));
                    }
                }
                UnmappedPolicy::Hold => ctx.held = true,
                UnmappedPolicy::Pass => {}
            }
            let mut flagged = concept;
            flagged.extension.push(Extension::new(
                UNMAPPED_EXTENSION,
                ExtensionValue::String(name),
            ));
            Coded::Concept(flagged)
        }
    }
}

/// For write-back (FHIR -> v2): the sender-local coding the profile's maps give for `concept` at `at`
/// (e.g. `OBR-4`), when a map has an entry whose target matches one of the concept's codings.
/// `None` when no map applies: the caller writes the concept's own first coding.
pub fn reverse(profile: &Profile, concept: &CodeableConcept, at: &str) -> Option<Coding> {
    let key = field_key(at);
    for map in profile.code_maps.iter().filter(|m| m.fields.contains(&key)) {
        for entry in &map.entries {
            let Meaning::Concept { system, code, .. } = &entry.meaning else {
                continue;
            };
            if concept.has_coding(system, code) {
                return Some(Coding {
                    system: map.source_system.clone(),
                    code: Some(entry.code.clone()),
                    display: None,
                    ..Default::default()
                });
            }
        }
    }
    None
}

/// A code map as a FHIR ConceptMap: one group per target system; a "nothing" entry is a target with
/// equivalence `unmatched` and a comment saying what the code means; the unmapped policy is stated in the
/// description (`pass` is also `group.unmapped.mode = provided`). Each target's comment records who added
/// the entry and when.
pub fn to_concept_map(profile: &Profile, map: &CodeMap) -> ConceptMap {
    let source = map
        .source_system
        .as_deref()
        .map(|s| coding_system_uri(s).into_owned());
    let mut groups: Vec<ConceptMapGroup> = Vec::new();
    for entry in &map.entries {
        let (target_system, target) = match &entry.meaning {
            Meaning::Concept {
                system,
                code,
                display,
            } => (
                Some(system.clone()),
                ConceptMapTarget {
                    code: Some(code.clone()),
                    display: display.clone(),
                    equivalence: Some("equivalent".into()),
                    comment: Some(provenance_comment(entry)),
                    ..Default::default()
                },
            ),
            Meaning::Nothing { display } => (
                None,
                ConceptMapTarget {
                    equivalence: Some("unmatched".into()),
                    comment: Some(format!(
                        "records nothing: {display}; {}",
                        provenance_comment(entry)
                    )),
                    ..Default::default()
                },
            ),
        };
        let group = match groups.iter_mut().position(|g| g.target == target_system) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(ConceptMapGroup {
                    source: source.clone(),
                    target: target_system,
                    unmapped: (map.unmapped == UnmappedPolicy::Pass).then(|| ConceptMapUnmapped {
                        mode: Some("provided".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.element.push(ConceptMapElement {
            code: Some(entry.code.clone()),
            target: vec![target],
            ..Default::default()
        });
    }
    let policy = match map.unmapped {
        UnmappedPolicy::Pass => "passed through, flagged",
        UnmappedPolicy::Reject => "rejected (AE)",
        UnmappedPolicy::Hold => "held for review",
    };
    let description = format!(
        "{}Applies to {}{}. Codes not in this map are {policy}.",
        map.description
            .as_deref()
            .map(|d| format!("{d} "))
            .unwrap_or_default(),
        map.fields.join(", "),
        map.observation
            .as_deref()
            .map(|o| format!(" where OBX-3 is {o}"))
            .unwrap_or_default(),
    );
    let id = crate::ids::id("ConceptMap", &[&profile.name, &map.name]);
    ConceptMap {
        id: Some(id),
        name: Some(concept_map_name(&profile.name, &map.name)),
        title: Some(format!("{}: {}", profile.name, map.name)),
        status: Some("active".into()),
        description: Some(description),
        group: groups,
        ..Default::default()
    }
}

fn provenance_comment(entry: &crate::profile::CodeMapEntry) -> String {
    let mut c = format!("added by {} on {}", entry.added_by, entry.added_at);
    if let Some(note) = &entry.comment {
        c.push_str(": ");
        c.push_str(note);
    }
    c
}

/// A computer-friendly ConceptMap name (`[A-Z]([A-Za-z0-9_]){0,254}` by the FHIR invariant).
fn concept_map_name(profile: &str, map: &str) -> String {
    let mut name = String::new();
    for word in format!("{profile} {map}").split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        name.insert(0, 'M');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_keys() {
        assert_eq!(field_key("AL1[2]-3"), "AL1-3");
        assert_eq!(field_key("OBX-5.1"), "OBX-5");
        assert_eq!(field_key("PID-3(2)"), "PID-3");
        assert_eq!(
            concept_map_name("st-elsewhere", "allergy na"),
            "StElsewhereAllergyNa"
        );
        assert_eq!(concept_map_name("9lab", "x"), "M9labX");
    }
}
