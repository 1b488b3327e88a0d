//! FHIR-Converter's expected HL7 v2 -> FHIR bundles (`../shared/corpus/fhir-converter/Expected/Hl7v2`):
//! every resource of a supported type reads into our types and writes back to the same JSON (key order
//! aside; numbers compared by their text, so `1.50` must stay `1.50`), the round-tripped bundles validate
//! against the official R4 JSON schema, and resources of other types are refused by name.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fhir::{Bundle, RESOURCE_TYPES, Resource};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

fn expected_bundles() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let root = support::shared_dir().join("corpus/fhir-converter/Expected/Hl7v2");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.sort();
    assert!(
        !out.is_empty(),
        "no expected bundles under {}",
        root.display()
    );
    out
}

/// JSON compared by content: objects as sorted maps, numbers as their exact text.
#[derive(Debug, PartialEq)]
enum Canon {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Canon>),
    Object(BTreeMap<String, Canon>),
}

fn canon(raw: &str) -> Canon {
    let raw = raw.trim();
    match raw.as_bytes().first() {
        Some(b'{') => {
            let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(raw).expect("object");
            Canon::Object(map.into_iter().map(|(k, v)| (k, canon(v.get()))).collect())
        }
        Some(b'[') => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(raw).expect("array");
            Canon::Array(items.iter().map(|v| canon(v.get())).collect())
        }
        Some(b'"') => Canon::String(serde_json::from_str(raw).expect("string")),
        Some(b't' | b'f') => Canon::Bool(serde_json::from_str(raw).expect("bool")),
        Some(b'n') => Canon::Null,
        _ => Canon::Number(raw.to_owned()),
    }
}

/// The JSON path of the first difference between two trees.
fn first_difference(a: &Canon, b: &Canon, path: &str) -> Option<String> {
    match (a, b) {
        (Canon::Object(x), Canon::Object(y)) => {
            for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, &format!("{path}.{key}")) {
                            return Some(d);
                        }
                    }
                    (u, _) => {
                        let side = if u.is_some() { "dropped" } else { "added" };
                        return Some(format!("{path}.{key} {side}"));
                    }
                }
            }
            None
        }
        (Canon::Array(x), Canon::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a:?} became {b:?}")),
    }
}

#[derive(Deserialize)]
struct RawBundle {
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    resource: Box<RawValue>,
}

/// For every entry of every expected bundle:
/// - a resource of a supported type that the R4 schema accepts reads into our types, writes back to the same
///   JSON, and what we write validates against the schema;
/// - a resource of a supported type that we refuse is one the R4 schema rejects too (FHIR-Converter's expected
///   output is not always valid R4): reading is exactly as strict as the schema on this corpus, no stricter;
/// - a resource of another type is refused as unsupported.
///
/// Bundles whose entries all read also round-trip as a whole `Bundle`, and the written bundle validates.
#[test]
fn every_resource_round_trips_or_is_refused_with_the_schema() {
    let mut failures = Vec::new();
    let mut round_tripped = 0usize;
    let mut invalid: Vec<String> = Vec::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut whole_bundles = 0usize;
    let files = expected_bundles();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).expect("read bundle");
        let raw: RawBundle = serde_json::from_str(&text).expect("bundle JSON");
        let mut all_read = true;
        for (i, entry) in raw.entry.iter().enumerate() {
            let original = entry.resource.get();
            let resource_type = match canon(original) {
                Canon::Object(map) => match map.get("resourceType") {
                    Some(Canon::String(t)) => t.clone(),
                    _ => panic!("{name} entry {i}: no resourceType"),
                },
                _ => panic!("{name} entry {i}: not an object"),
            };
            if !RESOURCE_TYPES.contains(&resource_type.as_str()) {
                all_read = false;
                let err =
                    fhir::from_str::<Resource>(original).expect_err("unsupported type is refused");
                assert_eq!(
                    err.message(),
                    format!("unsupported resource type `{resource_type}`")
                );
                *unsupported.entry(resource_type).or_default() += 1;
                continue;
            }
            let resource: Resource = match fhir::from_str(original) {
                Ok(r) => r,
                Err(e) => {
                    all_read = false;
                    let value: Value = serde_json::from_str(original).expect("resource JSON");
                    let schema = support::schema_errors(&value);
                    if schema.is_empty() {
                        failures.push(format!(
                            "{name} entry {i} ({resource_type}): refused but schema-valid: {e}"
                        ));
                    } else {
                        invalid.push(format!(
                            "{name} entry {i} ({resource_type}): {e} | schema: {}",
                            schema[0]
                        ));
                    }
                    continue;
                }
            };
            assert_eq!(resource.resource_type(), resource_type);
            let written = fhir::to_string(&resource);
            if written != serde_json::to_string(&resource).expect("serde writes it") {
                failures.push(format!(
                    "{name} entry {i}: the writer and serde_json write different text"
                ));
                continue;
            }
            if let Some(d) = first_difference(&canon(original), &canon(&written), &resource_type) {
                failures.push(format!("{name} entry {i}: round trip differs at {d}"));
                continue;
            }
            let schema =
                support::schema_errors(&serde_json::from_str(&written).expect("written JSON"));
            if !schema.is_empty() {
                failures.push(format!(
                    "{name} entry {i} ({resource_type}): accepted but schema-invalid: {schema:?}"
                ));
                continue;
            }
            round_tripped += 1;
        }
        if all_read {
            match fhir::from_str::<Bundle>(&text) {
                Ok(bundle) => {
                    let written = fhir::to_string(&bundle);
                    if written != serde_json::to_string(&bundle).expect("serde writes it") {
                        failures.push(format!(
                            "{name}: the writer and serde_json write the bundle differently"
                        ));
                        continue;
                    }
                    if let Some(d) = first_difference(&canon(&text), &canon(&written), "Bundle") {
                        failures.push(format!("{name}: bundle round trip differs at {d}"));
                        continue;
                    }
                    let schema = support::schema_errors(
                        &serde_json::from_str(&written).expect("written JSON"),
                    );
                    if schema.is_empty() {
                        whole_bundles += 1;
                    } else {
                        failures.push(format!("{name}: written bundle schema-invalid: {schema:?}"));
                    }
                }
                Err(e) => failures.push(format!("{name}: read as Bundle: {e}")),
            }
        } else {
            let err = fhir::from_str::<Bundle>(&text)
                .expect_err("a bundle with a refused entry is refused");
            assert!(
                err.path().is_some_and(|p| p.starts_with("entry[")),
                "{name}: {err}"
            );
        }
    }
    eprintln!(
        "{} bundles: {round_tripped} resources round-tripped and schema-valid; {whole_bundles} whole bundles \
         round-tripped and schema-valid; {} resources refused as invalid R4 (the schema agrees):\n  {}\n\
         unsupported resource types refused: {unsupported:?}",
        files.len(),
        invalid.len(),
        invalid.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(round_tripped > 0 && whole_bundles > 0);
}

#[test]
fn the_schema_validator_rejects_what_r4_forbids() {
    let valid = serde_json::json!({"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"});
    assert_eq!(support::schema_errors(&valid), Vec::<String>::new());
    for invalid in [
        serde_json::json!({"resourceType": "Patient", "birthdate": "1970-01-01"}),
        serde_json::json!({"resourceType": "Patient", "gender": "femme"}),
        serde_json::json!({"resourceType": "Patient", "birthDate": "01/01/1970"}),
        serde_json::json!({"resourceType": "Observation", "status": "final"}),
        serde_json::json!({"resourceType": "NotAType"}),
    ] {
        assert!(
            !support::schema_errors(&invalid).is_empty(),
            "accepted {invalid}"
        );
    }
}
