//! `causeway convert` and `causeway test` as a user runs them: the real binary, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../v2fhir/tests/fixtures")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run causeway")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_fixtures_pass_and_a_changed_expectation_fails_with_its_path() {
    let out = run(&["test", fixtures().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(
        stdout.contains("ok   allergy-na-means-not-applicable"),
        "{stdout}"
    );

    // A copy of one fixture whose expectation says "never smoker" where the profile says otherwise.
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("smoking");
    std::fs::create_dir(&case).unwrap();
    let source = fixtures().join("smoking-3-means-current-smoker");
    for f in ["input.hl7", "profile.toml", "expected.json"] {
        std::fs::copy(source.join(f), case.join(f)).unwrap();
    }
    let expected = std::fs::read_to_string(case.join("expected.json")).unwrap();
    assert!(expected.contains("449868002"));
    std::fs::write(
        case.join("expected.json"),
        expected.replace("449868002", "266919005"),
    )
    .unwrap();
    let out = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL smoking: 1 difference(s)"), "{stdout}");
    assert!(
        stdout.contains(
            "/valueCodeableConcept/coding/0/code: expected \"266919005\", got \"449868002\""
        ),
        "{stdout}"
    );

    // A broken case is one failure, named with its file; the other cases still run.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(source.join("input.hl7"), broken.join("input.hl7")).unwrap();
    std::fs::write(broken.join("expected.json"), "{not json").unwrap();
    let out = run(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL broken: ") && stdout.contains("broken/expected.json: not JSON"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL smoking: 1 difference(s)"), "{stdout}");
    assert!(stdout.contains("0 passed, 2 failed"), "{stdout}");
    std::fs::remove_dir_all(&broken).unwrap();

    // --bless rewrites the expectation, after which the case passes.
    assert!(
        run(&["test", dir.path().to_str().unwrap(), "--bless"])
            .status
            .success()
    );
    assert!(
        run(&["test", dir.path().to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn convert_prints_one_bundle_per_message_and_names_refusals() {
    let case = fixtures().join("identity-a01-a03-a08-a40");
    let out = run(&[
        "convert",
        case.join("input.hl7").to_str().unwrap(),
        "--profile",
        case.join("profile.toml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundles: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON bundle per line"))
        .collect();
    assert_eq!(bundles.len(), 4);
    assert!(bundles.iter().all(|b| b["type"] == "transaction"));

    let reject = fixtures().join("unmapped-code-reject");
    let out = run(&[
        "convert",
        reject.join("input.hl7").to_str().unwrap(),
        "--profile",
        reject.join("profile.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "message 1: OBX-5: code `9` (system `L`) is not in code map `smoking-status`"
        ),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[code_map]]\nname = \"m\"\nfields = [\"AL1-3\"]\nunmapped = \"ignore\"\n",
    )
    .unwrap();
    let out = run(&[
        "convert",
        reject.join("input.hl7").to_str().unwrap(),
        "--profile",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains("bad.toml:5: code_map[0].unmapped: `ignore`: expected pass, reject or hold"),
        "{stderr}"
    );
}

#[test]
fn profiles_are_checked_and_their_maps_exported_as_concept_maps() {
    let dir = fixtures();
    let a = dir.join("allergy-na-means-no-known-allergy/profile.toml");
    let out = run(&["profile", a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hospital-a-adt: MSH-3 ADT / MSH-4 HOSP_A; 0 relocation(s), 0 Z-segment mapping(s), 1 code map(s) with 1 entries"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["profile", a.to_str().unwrap(), "--concept-maps"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle: fhir::Bundle = fhir::from_slice(&out.stdout).expect("a strict FHIR Bundle");
    let maps: Vec<&fhir::ConceptMap> = bundle.resources_of::<fhir::ConceptMap>().collect();
    assert_eq!(maps.len(), 1);
    let element = &maps[0].group[0].element[0];
    assert_eq!(element.code.as_deref(), Some("NA"));
    assert_eq!(element.target[0].code.as_deref(), Some("716186003"));
}

#[test]
fn a_bundle_converts_back_to_v2_for_write_back() {
    let case = fixtures().join("smoking-3-means-current-smoker");
    let out = run(&["convert", case.join("input.hl7").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, &out.stdout).unwrap();
    let out = run(&[
        "convert",
        "--to",
        "v2",
        bundle.to_str().unwrap(),
        "--control-id",
        "WB-1",
        "--receiving-application",
        "EHR",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let message = text(&out.stdout);
    let segments: Vec<&str> = message.trim_end().split('\r').collect();
    assert!(
        segments[0].starts_with("MSH|^~\\&|CAUSEWAY|CAUSEWAY|EHR|"),
        "{message:?}"
    );
    assert!(
        segments[0].contains("|ORU^R01^ORU_R01|WB-1|P|2.5.1"),
        "{message:?}"
    );
    assert!(
        segments.iter().any(|s| s.starts_with("PID|1||55501^")),
        "{message:?}"
    );
    assert!(
        segments
            .iter()
            .any(|s| s.starts_with("OBX|1|CWE|72166-2^Tobacco smoking status^LN||3^^L")),
        "{message:?}"
    );

    std::fs::write(&bundle, br#"{"resourceType":"Patient","birthdate":"1970"}"#).unwrap();
    let out = run(&["convert", "--to", "v2", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `birthDate`?"),
        "{}",
        text(&out.stderr)
    );

    // HL7 v2 given to --to v2: said plainly, not as a JSON syntax error.
    std::fs::write(
        &bundle,
        b"\r\nMSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r",
    )
    .unwrap();
    let out = run(&["convert", "--to", "v2", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("this is HL7 v2, and --to v2 reads a FHIR resource"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_file_without_messages_is_an_error_not_silence() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.hl7");
    std::fs::write(&empty, "\r\n\n  \n").unwrap();
    let path = empty.to_str().unwrap();
    for args in [
        vec!["parse", path],
        vec!["get", path, "PID-3"],
        vec!["validate", path],
        vec!["ack", path],
        vec!["convert", path],
        vec!["send", "--to", "127.0.0.1:9", path],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("{path}: no HL7 v2 message in it")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_bad_path_is_named_with_where_it_goes_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.hl7");
    std::fs::write(
        &file,
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||123^^^H^MR\r",
    )
    .unwrap();
    let out = run(&["get", file.to_str().unwrap(), "PID-3.x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("invalid path \"PID-3.x\": expected a component number at byte 6"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["get", file.to_str().unwrap(), "PID-3.1"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "123\n");
}
