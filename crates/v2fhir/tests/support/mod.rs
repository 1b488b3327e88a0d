//! Test support: the official FHIR R4 JSON schema (`../shared/fhir-r4/fhir.schema.json`, draft-06) as an
//! independent validator, compiled once per test process (the schema is 3.4 MB and takes a while to compile).
//! Other crates' tests may copy this helper.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// The `shared/` folder beside the repository (as laid out for developers and CI).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = shared_dir().join("fhir-r4/fhir.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).expect("the R4 schema is JSON");
        jsonschema::draft6::new(&schema).expect("the R4 schema compiles as draft-06")
    })
}

/// The R4 schema's complaints about `instance` (a resource or a bundle), at most `MAX_REPORTED` of them,
/// each as `message at /instance/path` (without the instance itself); empty when it is valid.
///
/// The schema picks a resource's definition with a `oneOf` over every resource type, whose own error only says
/// "not valid under any of the schemas": the causes reported are those of the branch whose `resourceType`
/// matched.
pub fn schema_errors(instance: &Value) -> Vec<String> {
    /// Enough to see what is wrong without flooding the test output.
    const MAX_REPORTED: usize = 5;
    let mut out = Vec::new();
    for error in validator().iter_errors(instance) {
        causes(&error, &mut out);
    }
    out.truncate(MAX_REPORTED);
    out
}

fn causes(error: &jsonschema::ValidationError<'_>, out: &mut Vec<String>) {
    use jsonschema::error::ValidationErrorKind;
    if let ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } =
        error.kind()
    {
        let wrong_type = |e: &jsonschema::ValidationError<'_>| {
            matches!(e.kind(), ValidationErrorKind::Constant { .. })
                && e.instance_path().to_string().ends_with("/resourceType")
        };
        let matching: Vec<_> = context
            .iter()
            .filter(|branch| !branch.iter().any(wrong_type))
            .collect();
        if !matching.is_empty() {
            for branch in matching {
                for e in branch {
                    causes(e, out);
                }
            }
            return;
        }
    }
    out.push(format!("{} at {}", error.masked(), error.instance_path()));
}

/// The shared corpus folder, failing loudly when it is missing (CI lays `shared/` beside the clone).
pub fn corpus_dir() -> PathBuf {
    let root = shared_dir().join("corpus");
    assert!(
        root.is_dir(),
        "the shared corpus is missing at {} (CI must lay shared/ beside the clone)",
        root.display()
    );
    root
}

/// Converts the first message of `bytes` with the default profile.
pub fn convert(bytes: &[u8]) -> Result<v2fhir::Conversion, String> {
    let message = hl7v2::parse(bytes).map_err(|e| format!("parse: {e}"))?;
    v2fhir::convert(&message, &v2fhir::Profile::default()).map_err(|e| format!("convert: {e}"))
}
