//! Every bundle we produce from the whole shared corpus is valid FHIR R4, judged by an independent
//! validator: HL7's official R4 JSON schema (`shared/fhir-r4/fhir.schema.json`) through the `jsonschema`
//! crate. Messages of types we do not convert must be refused with `Unsupported`, never half-converted.

mod support;

use std::path::{Path, PathBuf};

fn message_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus folder")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            message_files(&path, out);
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.starts_with("LICENSE") || matches!(ext.as_str(), "md" | "tsv" | "json" | "xml") {
            continue;
        }
        out.push(path);
    }
}

#[test]
fn every_corpus_bundle_is_valid_r4() {
    let root = support::corpus_dir();
    let mut files = Vec::new();
    message_files(&root, &mut files);
    let (mut bundles, mut resources, mut unsupported, mut unparsed) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read");
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for raw in hl7v2::split_file(&data) {
            let Ok(raw) = raw else {
                unparsed += 1;
                continue;
            };
            let Ok(message) = hl7v2::parse(raw.bytes) else {
                unparsed += 1;
                continue;
            };
            match v2fhir::convert(&message, &v2fhir::Profile::default()) {
                Ok(c) => {
                    bundles += 1;
                    resources += c.bundle.entry.len();
                    // What a destination or an import writes: the crate's own JSON writer, which
                    // must give serde_json's text exactly.
                    let written = fhir::to_vec(&c.bundle);
                    if written != serde_json::to_vec(&c.bundle).expect("bundle serialises") {
                        failures.push(format!(
                            "{name} message {}: the writer and serde_json differ",
                            raw.number
                        ));
                        continue;
                    }
                    let value = serde_json::from_slice(&written).expect("written JSON reads");
                    let errors = support::schema_errors(&value);
                    if !errors.is_empty() {
                        failures.push(format!("{name} message {}: {errors:?}", raw.number));
                    }
                }
                Err(e) if e.kind == v2fhir::ErrorKind::Unsupported => unsupported += 1,
                Err(e) => failures.push(format!("{name} message {}: {e}", raw.number)),
            }
        }
    }
    println!(
        "{bundles} bundles ({resources} resources) schema-valid: {}; {unsupported} messages of types not \
         converted; {unparsed} unparseable (the corpus's deliberately broken files)",
        bundles - failures.len().min(bundles)
    );
    assert!(
        bundles > 400,
        "expected the whole corpus, converted {bundles} messages"
    );
    assert!(
        failures.is_empty(),
        "{} invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
