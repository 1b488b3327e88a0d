//! Validation against the standard definitions and user profiles, as a user calls it:
//! parse, validate, read the findings. Findings are compared as their exact `Display` text
//! (severity, ERR-3 code, text and position).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hl7v2::validate::{Err3, Profile, Severity, validate, validate_with};

/// A valid ADT^A01 in v2.5: every required field and segment, values in their tables.
const ADT_A01: &str = "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20240102030405||ADT^A01^ADT_A01|MSG00001|P|2.5\r\
EVN|A01|20240102030405\r\
PID|1||123456^^^HOSP^MR||DOE^JOHN^Q||19800101|M|||1 MAIN ST^^TOWN^ST^12345^USA\r\
PV1|1|I|WARD^101^1\r";

/// `ADT_A01` with segment `id`'s line replaced by `line` (or removed when `line` is empty).
fn adt_with(id: &str, line: &str) -> String {
    ADT_A01
        .split('\r')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            if s.starts_with(id) {
                (!line.is_empty()).then(|| line.to_owned())
            } else {
                Some(s.to_owned())
            }
        })
        .map(|s| s + "\r")
        .collect()
}

fn findings(text: &str) -> Vec<String> {
    let msg = hl7v2::parse(text.as_bytes()).unwrap();
    validate(&msg).iter().map(ToString::to_string).collect()
}

fn findings_with(text: &str, profile: &Profile) -> Vec<String> {
    let msg = hl7v2::parse(text.as_bytes()).unwrap();
    validate_with(&msg, profile)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_valid_adt_a01_has_no_findings() {
    assert_eq!(findings(ADT_A01), Vec::<String>::new());
    // A04 uses the A01 structure.
    assert_eq!(
        findings(&ADT_A01.replace("ADT^A01^ADT_A01", "ADT^A04")),
        Vec::<String>::new()
    );
}

/// Byte offset just past the first `needle` in `text`: where the value after it starts.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the test message"))
        + needle.len()
}

#[test]
fn table_of_findings() {
    let mut cases: Vec<(&str, String, Vec<String>)> = Vec::new();
    let mut case = |name, text: String, want: &dyn Fn(&str) -> Vec<String>| {
        let want = want(&text);
        cases.push((name, text, want));
    };
    case(
        "required field missing (101)",
        adt_with("PID", "PID|1||||DOE^JOHN"),
        &|t| {
            vec![format!(
                "error 101: required field PID-3 (Patient Identifier List) is missing at segment 3 (PID), field 3, byte {}",
                at(t, "PID|1||")
            )]
        },
    );
    case(
        "required field missing past the end of the segment (101)",
        adt_with("PV1", "PV1|1"),
        &|t| {
            vec![format!(
                "error 101: required field PV1-2 (Patient Class) is missing at segment 4 (PV1), field 2, byte {}",
                at(t, "PV1|1")
            )]
        },
    );
    case(
        "bad DT inside a component (102)",
        adt_with("PID", "PID|1||123456^^^HOSP^MR^^20241301||DOE^JOHN"),
        &|t| {
            vec![format!(
                "error 102: PID-3.7 (Effective Date) is not a valid DT: month out of range, expected YYYY[MM[DD]] at segment 3 (PID), field 3, component 7, byte {}",
                at(t, "HOSP^MR^^")
            )]
        },
    );
    case(
        "bad timestamp (102)",
        adt_with("EVN", "EVN|A01|2024-01-02"),
        &|t| {
            vec![format!(
                "error 102: EVN-2.1 (Time) is not a valid DTM: date part is not YYYY[MM[DD]], expected YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] at segment 2 (EVN), field 2, component 1, byte {}",
                at(t, "EVN|A01|")
            )]
        },
    );
    case(
        "value not in an HL7 table (103) and in no suggested value (103 warning)",
        adt_with(
            "PID",
            "PID|1||123456^^^HOSP^MR||DOE^JOHN||19800101|Q||||||||||||||||X",
        ),
        &|t| {
            vec![
                format!(
                    "warning 103: PID-8 (Administrative Sex) is not a value of the suggested values of user-defined table 0001 at segment 3 (PID), field 8, byte {}",
                    at(t, "19800101|")
                ),
                format!(
                    "error 103: PID-24 (Multiple Birth Indicator) is not a value of HL7 table 0136 at segment 3 (PID), field 24, byte {}",
                    at(t, "|Q||||||||||||||||")
                ),
            ]
        },
    );
    case(
        "coded value naming its HL7 table (103)",
        adt_with(
            "PID",
            "PID|1||123456^^^HOSP^MR||DOE^JOHN|||||||||||ZZ^Unknown^HL70002",
        ),
        &|t| {
            vec![format!(
                "error 103: PID-16.1 (Marital Status) is not a value of HL7 table 0002 at segment 3 (PID), field 16, component 1, byte {}",
                at(t, "JOHN|||||||||||")
            )]
        },
    );
    case(
        "too many repetitions (102)",
        adt_with("PID", "PID|1||123456^^^HOSP^MR||DOE^JOHN||19800101|M~F"),
        &|t| {
            vec![format!(
                "error 102: PID-8 (Administrative Sex) has 2 repetitions, at most 1 allowed at segment 3 (PID), field 8, repetition 2, byte {}",
                at(t, "|M~")
            )]
        },
    );
    case(
        "value too long (104 warning)",
        ADT_A01.replace("MSG00001", "MSG0000100000000000001"),
        &|t| {
            vec![format!(
                "warning 104: MSH-10 (Message Control ID) is 22 characters long, at most 20 allowed at segment 1 (MSH), field 10, byte {}",
                at(t, "ADT_A01|")
            )]
        },
    );
    case(
        "segment out of order (100)",
        "MSH|^~\\&|A|B|C|D|20240102||ADT^A01|1|P|2.5\rEVN|A01|20240102\rPV1|1|I\rPID|1||1^^^H^MR||DOE\r".to_owned(),
        &|t| vec![format!("error 100: segment PID is out of order in ADT_A01 at segment 4 (PID), byte {}", at(t, "PV1|1|I\r"))],
    );
    case(
        "required segment missing (100)",
        adt_with("PV1", ""),
        &|t| {
            vec![format!(
                "error 100: required segment PV1 is missing from ADT_A01 (expected at the end) at byte {}",
                t.len()
            )]
        },
    );
    case(
        "segment that is not part of the structure (100)",
        format!("{ADT_A01}NTE|1\r"),
        &|_| {
            vec![format!(
                "error 100: segment NTE is not part of ADT_A01 at segment 5 (NTE), byte {}",
                ADT_A01.len()
            )]
        },
    );
    case(
        "segment the version does not define (100)",
        format!("{ADT_A01}XYZ|1\r"),
        &|_| {
            vec![format!(
                "error 100: segment XYZ is not defined in version 2.5 at segment 5 (XYZ), byte {}",
                ADT_A01.len()
            )]
        },
    );
    case(
        "a second PID (100)",
        format!("{ADT_A01}PID|2||9^^^HOSP^MR||ROE^JANE\r"),
        &|_| {
            vec![format!(
                "error 100: segment PID is not allowed here in ADT_A01 at segment 5 (PID), byte {}",
                ADT_A01.len()
            )]
        },
    );
    case(
        "Z segments are allowed anywhere by default",
        adt_with("PID", "ZPD|1|x\rPID|1||123456^^^HOSP^MR||DOE^JOHN"),
        &|_| vec![],
    );
    case(
        "unsupported message type (200)",
        ADT_A01.replace("ADT^A01^ADT_A01", "XYZ^A01"),
        &|t| {
            vec![format!(
                "error 200: unsupported message type \"XYZ\" in version 2.5 at segment 1 (MSH), field 9, component 1, byte {}",
                at(t, "20240102030405||")
            )]
        },
    );
    case(
        "unsupported trigger event (201)",
        ADT_A01.replace("ADT^A01^ADT_A01", "ADT^A99"),
        &|t| {
            vec![format!(
                "error 201: unsupported trigger event \"A99\" for message type ADT in version 2.5 at segment 1 (MSH), field 9, component 2, byte {}",
                at(t, "||ADT^")
            )]
        },
    );
    case(
        "undefined structure with a known event (200 warning)",
        ADT_A01.replace("ADT^A01^ADT_A01", "ADT^A04^ADT_A04"),
        &|t| {
            vec![format!(
                "warning 200: message structure \"ADT_A04\" is not defined in version 2.5; checked as ADT_A01 at segment 1 (MSH), field 9, component 3, byte {}",
                at(t, "ADT^A04^")
            )]
        },
    );
    case(
        "unsupported version (203), then checked as 2.5.1",
        ADT_A01.replace("|P|2.5\r", "|P|9.9\r"),
        &|t| {
            vec![format!(
                "error 203: unsupported version id \"9.9\"; checked against 2.5.1 at segment 1 (MSH), field 12, component 1, byte {}",
                at(t, "|P|")
            )]
        },
    );
    case(
        "OBX-5 is checked as the type OBX-2 names",
        format!("{ADT_A01}OBX|1|NM|8867-4^Heart rate^LN||fast||||||F\r"),
        &|t| {
            vec![format!(
                "error 102: OBX-5 (Observation Value) is not a valid NM: not a decimal number, expected an optionally signed decimal number at segment 5 (OBX), field 5, byte {}",
                at(t, "^LN||")
            )]
        },
    );

    let mut failures = Vec::new();
    for (name, text, want) in &cases {
        let got = findings(text);
        if got != *want {
            failures.push(format!("{name}:\n  got  {got:#?}\n  want {want:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Regression: with three encoding characters there is no subcomponent separator, and the
/// parser hands a component back as its own only child; the leaf search must stop there.
#[test]
fn three_encoding_characters_validate() {
    let text = ADT_A01.replace("MSH|^~\\&|", "MSH|^~\\|");
    assert!(text.starts_with("MSH|^~\\|SENDAPP"));
    assert_eq!(findings(&text), Vec::<String>::new());
    let bad = text.replace("|19800101|", "|1980-01-01|");
    assert_eq!(
        findings(&bad),
        [format!(
            "error 102: PID-7.1 (Time) is not a valid DTM: date part is not YYYY[MM[DD]], expected YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] at segment 3 (PID), field 7, component 1, byte {}",
            at(&bad, "DOE^JOHN^Q||")
        )]
    );
}

#[test]
fn finding_fields_carry_code_severity_and_position() {
    let text = adt_with("PID", "PID|1||||DOE^JOHN");
    let msg = hl7v2::parse(text.as_bytes()).unwrap();
    let found = validate(&msg);
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(f.code, Err3::RequiredFieldMissing);
    assert_eq!(f.code.code(), 101);
    assert_eq!(f.code.description(), "Required field missing");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.is_error());
    assert_eq!(f.position.segment_index, 3);
    assert_eq!(f.position.segment_id_str(), "PID");
    assert_eq!(f.position.field, 3);
    assert_eq!(f.position.path(), "PID-3");
    // The byte offset points at the empty field in the input.
    assert_eq!(
        &text.as_bytes()[f.position.byte - 1..f.position.byte + 1],
        b"||"
    );
}

#[test]
fn wrong_version_fixture_from_the_corpus_is_203() {
    let data = std::fs::read(
        corpus_root().join("rethinkhealth-hl7v2/qa/fixtures/invalid-wrong-version.hl7"),
    )
    .unwrap();
    let msg = hl7v2::parse(&data).unwrap();
    let found: Vec<String> = validate(&msg).iter().map(ToString::to_string).collect();
    let text = String::from_utf8(data.clone()).unwrap();
    assert_eq!(
        found,
        [
            format!(
                "error 203: unsupported version id \"1.0\"; checked against 2.5.1 at segment 1 (MSH), field 12, component 1, byte {}",
                at(&text, "|P|")
            ),
            format!(
                "error 100: required segment EVN is missing from ADT_A01 (expected before segment 2 (PID)) at byte {}",
                at(&text, "|1.0\n")
            ),
            format!(
                "error 100: required segment PV1 is missing from ADT_A01 (expected at the end) at byte {}",
                data.len()
            ),
        ]
    );
}

const ZPD_MESSAGE: &str = "MSH|^~\\&|A|B|C|D|20240102||ADT^A01|1|P|2.5\rEVN|A01|20240102\rPID|1||1^^^H^MR||DOE\rZPD|Y\rPV1|1|I\r";

#[test]
fn a_profile_that_declares_a_z_segment_makes_it_valid() {
    let strict_without =
        Profile::from_json_str(r#"{"base_version": "2.5", "z_segments": "declared"}"#).unwrap();
    let zpd = at(ZPD_MESSAGE, "DOE\r");
    assert_eq!(
        findings_with(ZPD_MESSAGE, &strict_without),
        [format!(
            "error 100: segment ZPD is not part of ADT_A01 at segment 4 (ZPD), byte {zpd}"
        )]
    );
    let declaring = Profile::from_json_str(
        r#"{
            "name": "main-hospital",
            "base_version": "2.5",
            "z_segments": "declared",
            "events": {"ADT^A01": "ADT_A01_MH"},
            "structures": {"ADT_A01_MH": ["MSH", "EVN", "PID", ["ZPD", 0, 1], "PV1"]},
            "segments": {"ZPD": {"fields": [{"name": "VIP Flag", "type": "ID", "usage": "R", "table": 136}]}}
        }"#,
    )
    .unwrap();
    assert_eq!(findings_with(ZPD_MESSAGE, &declaring), Vec::<String>::new());
    // The declared definition is checked: the flag is required and comes from table 0136.
    assert_eq!(
        findings_with(&ZPD_MESSAGE.replace("ZPD|Y", "ZPD|Q"), &declaring),
        [format!(
            "error 103: ZPD-1 (VIP Flag) is not a value of HL7 table 0136 at segment 4 (ZPD), field 1, byte {}",
            zpd + 4
        )]
    );
    assert_eq!(
        findings_with(&ZPD_MESSAGE.replace("ZPD|Y", "ZPD|"), &declaring),
        [format!(
            "error 101: required field ZPD-1 (VIP Flag) is missing at segment 4 (ZPD), field 1, byte {}",
            zpd + 4
        )]
    );
    // Placed where the structure does not allow it.
    let moved = "MSH|^~\\&|A|B|C|D|20240102||ADT^A01|1|P|2.5\rZPD|Y\rEVN|A01|20240102\rPID|1||1^^^H^MR||DOE\rPV1|1|I\r";
    assert_eq!(
        findings_with(moved, &declaring),
        [format!(
            "error 100: segment ZPD is not allowed here in ADT_A01_MH at segment 2 (ZPD), byte {}",
            at(moved, "|2.5\r")
        )]
    );
}

#[test]
fn a_profile_moves_requirements() {
    let profile = Profile::from_json_str(
        r#"{"segments": {"PID": {"overrides": {"2": {"usage": "R"}, "3": {"usage": "O"}}}},
            "tables": {"136": {"values": ["U"], "extend": true}}}"#,
    )
    .unwrap();
    // Without base_version the message's MSH-12 decides (2.5 here).
    let text = adt_with("PID", "PID|1||||DOE^JOHN|||||||||||||||||||U");
    assert_eq!(
        findings_with(&text, &profile),
        [format!(
            "error 101: required field PID-2 (Patient ID) is missing at segment 3 (PID), field 2, byte {}",
            at(&text, "PID|1|")
        )]
    );
    // The same message against the standard: PID-3 is required and U is not in table 0136.
    assert_eq!(
        findings(&text),
        [
            format!(
                "error 101: required field PID-3 (Patient Identifier List) is missing at segment 3 (PID), field 3, byte {}",
                at(&text, "PID|1||")
            ),
            format!(
                "error 103: PID-24 (Multiple Birth Indicator) is not a value of HL7 table 0136 at segment 3 (PID), field 24, byte {}",
                at(&text, "JOHN|||||||||||||||||||")
            ),
        ]
    );
}

#[test]
fn a_bad_profile_is_a_positioned_error() {
    let text = "{\n  \"segments\": {\"ZPD\": {\"fields\": [[\"Flag\", \"ID\", \"R\"]]}}\n}";
    let e = Profile::from_json_str(text).unwrap_err();
    // serde_json reports the end of the short array: line 2, just past `"R"]`.
    let column = text.lines().nth(1).unwrap().find("\"R\"]").unwrap() + 4;
    assert_eq!(
        e.to_string(),
        format!(
            "invalid profile at line 2, column {column}: invalid length 3, expected 6 elements: name, type, usage, reps, len, table"
        )
    );
    assert_eq!((e.line, e.column), (2, column));
}

fn corpus_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        root.is_dir(),
        "the shared corpus is missing at {}",
        root.display()
    );
    root
}

/// Every corpus message: validation returns (no panic, no hang), every finding points into
/// the message, and the counts per code are printed for the record.
#[test]
fn every_corpus_message_validates() {
    let root = corpus_root();
    let index = std::fs::read_to_string(root.join("INDEX.tsv")).unwrap();
    let mut per_code: BTreeMap<(u16, &'static str), usize> = BTreeMap::new();
    let (mut messages, mut segments) = (0usize, 0usize);
    let started = std::time::Instant::now();
    for line in index.lines().skip(1) {
        let rel = line.split('\t').next().unwrap();
        let data = std::fs::read(root.join(rel)).unwrap();
        for raw in hl7v2::split_file(&data).flatten() {
            let Ok(msg) = hl7v2::parse(raw.bytes) else {
                continue;
            };
            messages += 1;
            segments += msg.segment_count();
            for f in validate(&msg) {
                assert!(
                    f.position.byte <= raw.bytes.len(),
                    "{rel}: {f} points past the message"
                );
                assert!(
                    f.position.segment_index as usize <= msg.segment_count(),
                    "{rel}: {f}"
                );
                assert!(!f.text.is_empty() && !f.text.ends_with('.'), "{rel}: {f}");
                let sev = if f.is_error() { "error" } else { "warning" };
                *per_code.entry((f.code.code(), sev)).or_default() += 1;
            }
        }
    }
    println!(
        "validated {messages} corpus messages ({segments} segments) in {:?}",
        started.elapsed()
    );
    for ((code, sev), n) in &per_code {
        println!("  {code} {sev}: {n}");
    }
    assert!(
        messages > 400,
        "expected the whole corpus, validated {messages} messages"
    );
    assert!(
        per_code.contains_key(&(203, "error")),
        "the corpus has a message with version 1.0"
    );
}
