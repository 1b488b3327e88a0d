//! Every file of the shared corpus: each message parses, every value is reachable and
//! decodes, and each re-encodes byte for byte. Files that are deliberately broken (or are not
//! HL7 v2 at all) are listed below with the exact error each must give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// (file relative to the corpus root, message number, exact error). Message number 0 is an
/// error item from the file splitter (lines outside any message).
const EXPECTED_FAILURES: &[(&str, usize, &str)] = &[
    // A CDC negative test: MSH-2 is `&&&&`.
    (
        "cdc-data-exchange-hl7/fns-hl7-pipeline/fn-structure-validator/src/test/resources/Lyme_WithBadDelimiters.txt",
        1,
        "invalid encoding characters \"&&&&\" in MSH-2: encoding characters must be distinct at segment 1 (MSH), field 2, byte 4",
    ),
    // HAPI's segment-path "guide", not a message: its lines start `ORU^R01` and `MSH: ...`.
    (
        "hapi-hl7v2/hapi-test/parser/guide.txt",
        0,
        "message does not start with MSH (found \"ORU\") at byte 0",
    ),
    (
        "hapi-hl7v2/hapi-test/parser/guide.txt",
        1,
        "invalid field separator \" \" in MSH-1 at segment 1 (MSH), field 1, byte 3",
    ),
    (
        "hapi-hl7v2/hapi-test/parser/guide.txt",
        2,
        "invalid field separator \" \" in MSH-1 at segment 1 (MSH), field 1, byte 3",
    ),
    // A uuencoded binary and its HL7-escaped twin: payloads, not messages (see the escape test).
    (
        "hapi-hl7v2/hapi-test/parser/uuencoded.txt",
        0,
        "message does not start with MSH (found \"beg\") at byte 0",
    ),
    (
        "hapi-hl7v2/hapi-test/parser/uuencoded_escaped.txt",
        0,
        "message does not start with MSH (found \"beg\") at byte 0",
    ),
    // rethinkhealth's invalid fixtures.
    (
        "rethinkhealth-hl7v2/qa/fixtures/invalid-missing-msh.hl7",
        0,
        "message does not start with MSH (found \"PID\") at byte 0",
    ),
    (
        "rethinkhealth-hl7v2/qa/fixtures/invalid-segment-header-length.hl7",
        1,
        "invalid segment id \"PIDX\": expected 3 upper-case letters or digits at segment 2, byte 66",
    ),
];

fn corpus_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        root.is_dir(),
        "the shared corpus is missing at {} (CI must lay shared/ beside the clone)",
        root.display()
    );
    root
}

fn message_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            message_files(&path, out);
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
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

/// Walks every value to the bottom and decodes it; returns the number of leaves.
fn walk(msg: &hl7v2::Message<'_>) -> usize {
    let mut leaves = 0;
    for seg in msg.segments() {
        for field in seg.fields() {
            for rep in field.repetitions() {
                for comp in rep.components() {
                    for sub in comp.subcomponents() {
                        let _ = sub.decoded();
                        leaves += 1;
                    }
                }
            }
        }
    }
    leaves
}

#[test]
fn every_corpus_message_parses_and_round_trips() {
    let root = corpus_root();
    let mut files = Vec::new();
    message_files(&root, &mut files);
    assert!(
        files.len() > 400,
        "expected the whole corpus, found {} files",
        files.len()
    );

    let index = index_counts(&root);
    let mut failures: BTreeMap<(String, usize), String> = BTreeMap::new();
    let (mut parsed, mut round_tripped, mut leaves) = (0usize, 0usize, 0usize);
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let data = std::fs::read(path).unwrap();
        let found = hl7v2::split_file(&data).filter(Result::is_ok).count();
        assert_eq!(
            Some(&found),
            index.get(&rel),
            "{rel}: messages found vs INDEX.tsv"
        );
        for item in hl7v2::split_file(&data) {
            let raw = match item {
                Ok(raw) => raw,
                Err(e) => {
                    failures.insert((rel.clone(), 0), e.to_string());
                    continue;
                }
            };
            match hl7v2::parse(raw.bytes) {
                Ok(msg) => {
                    parsed += 1;
                    leaves += walk(&msg);
                    if msg.to_owned_message().encode() == raw.bytes {
                        round_tripped += 1;
                    } else {
                        failures.insert((rel.clone(), raw.number), "re-encoding differs".into());
                    }
                }
                Err(e) => {
                    failures.insert((rel.clone(), raw.number), e.to_string());
                }
            }
        }
    }
    let expected: BTreeMap<(String, usize), String> = EXPECTED_FAILURES
        .iter()
        .map(|(f, n, e)| ((f.to_string(), *n), e.to_string()))
        .collect();
    println!(
        "corpus: {} files, {parsed} messages parsed, {round_tripped} round-tripped byte-exactly, {} rejected as expected, {leaves} leaves walked",
        files.len(),
        failures.len()
    );
    for ((file, n), err) in &failures {
        if expected.get(&(file.clone(), *n)) != Some(err) {
            println!("UNEXPECTED {file:?} #{n}: {err:?}");
        }
    }
    for (key, err) in &expected {
        if failures.get(key) != Some(err) {
            println!("MISSING expected failure {key:?}: {err:?}");
        }
    }
    assert_eq!(failures, expected);
    assert_eq!(parsed, round_tripped);
}

/// Messages per file as listed in the corpus's INDEX.tsv (an independent count).
fn index_counts(root: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(root.join("INDEX.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols[0].to_string(), cols[2].parse().unwrap())
        })
        .collect()
}

/// HAPI's 85 kB escape stress test decodes to its plain twin. The twin has LF where the
/// escaped text has `\X0D\\X0A\` (CR LF), as the corpus notes.
#[test]
fn hapi_escape_file_decodes_to_its_plain_twin() {
    let dir = corpus_root().join("hapi-hl7v2/hapi-test/parser");
    let escaped = std::fs::read(dir.join("uuencoded_escaped.txt")).unwrap();
    let plain = std::fs::read_to_string(dir.join("uuencoded.txt")).unwrap();
    let decoded = hl7v2::escape::decode(
        &escaped,
        &hl7v2::Separators::default(),
        hl7v2::Charset::Utf8,
        hl7v2::Leniency::Strict,
        hl7v2::Position::default(),
    )
    .unwrap();
    assert_eq!(decoded.len(), plain.len() + plain.matches('\n').count());
    assert_eq!(decoded.replace("\r\n", "\n"), plain);
    // And back: encoding the decoded text and decoding again is the identity.
    let seps = hl7v2::Separators::default();
    let again = hl7v2::escape::encode(&decoded, &seps, hl7v2::Charset::Utf8);
    let back = hl7v2::escape::decode(
        &again,
        &seps,
        hl7v2::Charset::Utf8,
        hl7v2::Leniency::Strict,
        hl7v2::Position::default(),
    )
    .unwrap();
    assert_eq!(back, decoded);
}
