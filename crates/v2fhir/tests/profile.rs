//! Vendor profiles: reading (every error at once, with line and field), choosing the profile of a
//! message, relocations, Z-segment extensions, code maps with each unmapped policy, and the export of
//! maps as ConceptMaps valid against the R4 schema.

mod support;

use fhir::{AllergyIntolerance, Observation, ObservationValue, Patient};
use v2fhir::profile::{Meaning, UNMAPPED_EXTENSION, UnmappedPolicy, select};
use v2fhir::{ErrorKind, IssueKind, Profile};

fn profile(text: &str) -> Profile {
    Profile::from_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e:?}"))
}

fn hl7(text: &str) -> Vec<u8> {
    text.trim().replace('\n', "\r").into_bytes()
}

fn convert(message: &[u8], profile: &Profile) -> Result<v2fhir::Conversion, v2fhir::Error> {
    let parsed = hl7v2::parse(message).expect("parses");
    v2fhir::convert(&parsed, profile)
}

const ADT: &str = "
MSH|^~\\&|ADT|HOSP_A|CW|CW|20261102083000-0500||ADT^A01^ADT_A01|A-1|P|2.5.1
PID|1|100234^^^HOSP_A&2.16.840.1.113883.19.4.1&ISO^MR||| Testperson^Alex||19800214|F
ZPI|1|VIP3|Stays on ward 4
AL1|1|DA|NA^No allergies^L
";

/// `shown` holds exactly one error per `(prefix, needle)` of `expect`: starting with the prefix
/// (file, line and field) and mentioning the needle.
fn assert_reported(shown: &[String], expect: &[(&str, &str)]) {
    for (prefix, needle) in expect {
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with(prefix) && s.contains(needle)),
            "no `{prefix}` error mentioning `{needle}` in:\n{}",
            shown.join("\n")
        );
    }
    assert_eq!(shown.len(), expect.len(), "{}", shown.join("\n"));
}

#[test]
fn every_problem_in_a_profile_is_reported_with_its_line_and_field() {
    let text = r#"name = "broken"
[defaults]
time_zone = "EST"
[[relocate]]
from = "PID-"
to = "PID-3"
[[code_map]]
name = "allergen"
fields = ["AL1-3", "nonsense"]
unmapped = "maybe"
[[code_map.entry]]
code = "NA"
target = { system = "http://snomed.info/sct", code = "716186003" }
[[code_map.entry]]
code = "NA"
meaning = "nothing"
added_by = "x"
added_at = "2026-01-01"
"#;
    let errors = Profile::from_toml(text, "broken.toml").expect_err("invalid");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = [
        ("broken.toml:3: defaults.time_zone", "EST"),
        ("broken.toml:5: relocate[0].from", ""),
        ("broken.toml:9: code_map[0].fields", "nonsense"),
        ("broken.toml:10: code_map[0].unmapped", "maybe"),
        (
            "broken.toml:12: code_map[0].entry[0].added_by",
            "who added it",
        ),
        ("broken.toml:15: code_map[0].entry[1].code", "mapped twice"),
        (
            "broken.toml:15: code_map[0].entry[1].display",
            "needs a display",
        ),
    ];
    assert_reported(&shown, &expect);
    let syntax = Profile::from_toml("name = \"x\"\n[sender]\napplicaton = \"A\"\n", "typo.toml")
        .expect_err("unknown key");
    assert_eq!(syntax[0].line, 3, "{}", syntax[0]);
    assert!(syntax[0].message.contains("applicaton"), "{}", syntax[0]);
}

#[test]
fn a_code_map_target_must_be_a_valid_coding() {
    let entry = |code: &str, target: &str| {
        format!(
            "[[code_map.entry]]\ncode = \"{code}\"\ntarget = {target}\nadded_by = \"a\"\nadded_at = \"2026-01-01\"\n"
        )
    };
    let text = [
        "name = \"targets\"\n[[code_map]]\nname = \"m\"\nfields = [\"AL1-3\"]\nunmapped = \"pass\"\n".to_string(),
        entry("A", r#"{ system = "http://snomed.info/sct", code = "716186003" }"#),
        entry("B", r#"{ system = "urn:oid:2.16.840.1.113883.6.1", code = "718-7", display = "Hb" }"#),
        entry("C", r#"{ system = "snomed", code = "1" }"#),
        entry("D", r#"{ system = "http://loinc.org", code = "" }"#),
        entry("E", r#"{ system = "http://loinc.org", code = " 718-7" }"#),
        entry("F", r#"{ system = "http://loinc.org", code = "718-7", display = " " }"#),
        entry("G", r#"{ system = "http://x.org/a b", code = "1" }"#),
    ]
    .concat();
    let errors = Profile::from_toml(&text, "t.toml").expect_err("invalid targets");
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = [
        (
            "t.toml:17: code_map[0].entry[2].target",
            "not an absolute URI",
        ),
        ("t.toml:22: code_map[0].entry[3].target", "not a FHIR code"),
        ("t.toml:27: code_map[0].entry[4].target", "not a FHIR code"),
        ("t.toml:32: code_map[0].entry[5].target", "display is empty"),
        (
            "t.toml:37: code_map[0].entry[6].target",
            "not an absolute URI",
        ),
    ];
    assert_reported(&shown, &expect);
}

#[test]
fn the_most_specific_matching_profile_is_chosen() {
    let any = profile("name = \"any\"");
    let app = profile("name = \"app\"\n[sender]\napplication = \"ADT\"");
    let both = profile("name = \"both\"\n[sender]\napplication = \"ADT\"\nfacility = \"HOSP_A\"");
    let other = profile("name = \"other\"\n[sender]\nfacility = \"HOSP_B\"");
    let profiles = [any, both, other, app];
    let bytes = hl7(ADT);
    let message = hl7v2::parse(&bytes).unwrap();
    assert_eq!(select(&profiles, &message).unwrap().name, "both");
    assert_eq!(select(&profiles[2..], &message).unwrap().name, "app");
    assert!(select(&profiles[2..3], &message).is_none());
}

#[test]
fn relocations_move_values_before_conversion() {
    let p = profile("name = \"a\"\n[[relocate]]\nfrom = \"PID-2\"\nto = \"PID-3\"\n");
    let bundle = convert(&hl7(ADT), &p).unwrap().bundle;
    let patient = bundle.resources_of::<Patient>().next().expect("a Patient");
    assert!(
        patient
            .identifier
            .iter()
            .any(|i| i.value.as_deref() == Some("100234")
                && i.system.as_deref() == Some("urn:oid:2.16.840.1.113883.19.4.1")),
        "the MRN sent in PID-2 is read as PID-3: {:?}",
        patient.identifier
    );
}

#[test]
fn z_segment_fields_become_extensions_and_unmapped_z_segments_are_reported() {
    let p = profile(
        "name = \"a\"\n[[zsegment]]\nfield = \"ZPI-2\"\nresource = \"Patient\"\nurl = \"http://hosp-a.example.org/vip\"\nvalue = \"code\"\n",
    );
    let c = convert(&hl7(ADT), &p).unwrap();
    let patient = c
        .bundle
        .resources_of::<Patient>()
        .next()
        .expect("a Patient");
    let ext = patient
        .extension
        .iter()
        .find(|e| e.url.as_deref() == Some("http://hosp-a.example.org/vip"))
        .expect("the ZPI-2 extension");
    assert_eq!(ext.value, Some(fhir::ExtensionValue::Code("VIP3".into())));
    let plain = convert(&hl7(ADT), &Profile::default()).unwrap();
    assert!(
        plain
            .issues
            .iter()
            .any(|i| i.at == "ZPI" && i.kind == IssueKind::UnmappedSegment),
        "{:?}",
        plain.issues
    );
}

fn allergy_profile(meaning: &str, policy: &str) -> Profile {
    profile(&format!(
        "name = \"a\"\n[[code_map]]\nname = \"allergen\"\nfields = [\"AL1-3\"]\nunmapped = \"{policy}\"\n\
         [[code_map.entry]]\ncode = \"NA\"\n{meaning}\nadded_by = \"t\"\nadded_at = \"2026-11-02\"\n"
    ))
}

#[test]
fn na_means_no_known_allergy_for_one_sender_and_nothing_for_another() {
    let a = allergy_profile(
        "target = { system = \"http://snomed.info/sct\", code = \"716186003\", display = \"No known allergy\" }",
        "pass",
    );
    let bundle = convert(&hl7(ADT), &a).unwrap().bundle;
    let allergy = bundle
        .resources_of::<AllergyIntolerance>()
        .next()
        .expect("sender A: an AllergyIntolerance");
    let code = allergy.code.as_ref().expect("a code");
    assert!(code.has_coding("http://snomed.info/sct", "716186003"));
    assert_eq!(
        code.coding[1].code.as_deref(),
        Some("NA"),
        "the code as sent is kept"
    );

    let b = allergy_profile(
        "meaning = \"nothing\"\ndisplay = \"Not applicable\"",
        "pass",
    );
    let c = convert(&hl7(ADT), &b).unwrap();
    assert_eq!(
        c.bundle.resources_of::<AllergyIntolerance>().count(),
        0,
        "sender B: NA records nothing"
    );
    assert!(
        c.issues
            .iter()
            .all(|i| !matches!(i.kind, IssueKind::Unmapped { .. }))
    );
}

#[test]
fn unmapped_codes_follow_the_policy_of_their_map() {
    let unknown = ADT.replace("NA^No allergies^L", "PCN^Penicillin^L");
    let target = "target = { system = \"http://snomed.info/sct\", code = \"716186003\" }";

    let pass = convert(&hl7(&unknown), &allergy_profile(target, "pass")).unwrap();
    assert!(!pass.held);
    let allergy = pass
        .bundle
        .resources_of::<AllergyIntolerance>()
        .next()
        .expect("kept");
    let code = allergy.code.as_ref().unwrap();
    assert_eq!(code.coding[0].code.as_deref(), Some("PCN"));
    assert_eq!(code.extension[0].url.as_deref(), Some(UNMAPPED_EXTENSION));
    let unmapped: Vec<_> = pass
        .issues
        .iter()
        .filter_map(|i| match &i.kind {
            IssueKind::Unmapped { map, code, .. } => {
                Some((i.at.as_str(), map.as_str(), code.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(unmapped, [("AL1-3", "allergen", "PCN")]);

    let hold = convert(&hl7(&unknown), &allergy_profile(target, "hold")).unwrap();
    assert!(hold.held, "held for review");

    let reject = convert(&hl7(&unknown), &allergy_profile(target, "reject")).expect_err("refused");
    assert_eq!(reject.kind, ErrorKind::Rejected);
    assert_eq!(
        reject.to_string(),
        "AL1-3: code `PCN` (system `L`) is not in code map `allergen`"
    );
}

#[test]
fn smoking_status_maps_apply_only_to_their_observation() {
    let p = profile(
        "name = \"clinic\"\n[[code_map]]\nname = \"smoking\"\nfields = [\"OBX-5\"]\nobservation = \"72166-2\"\nunmapped = \"reject\"\n\
         [[code_map.entry]]\ncode = \"3\"\ntarget = { system = \"http://snomed.info/sct\", code = \"266919005\", display = \"Never smoked tobacco\" }\n\
         added_by = \"t\"\nadded_at = \"2026-11-03\"\n",
    );
    let oru = hl7("
MSH|^~\\&|LAB|CLINIC|CW|CW|20261103101500-0500||ORU^R01^ORU_R01|L-1|P|2.5.1
PID|1||555^^^CLINIC^MR||Sample^Robin
OBR|1|O-1|F-1|72166-2^Tobacco smoking status^LN
OBX|1|CWE|72166-2^Tobacco smoking status^LN||3^^L||||||F
OBX|2|CWE|11111-1^Other question^LN||9^^L||||||F
");
    let c = convert(&oru, &p).expect("the second OBX is outside the map's observation");
    let values: Vec<_> = c
        .bundle
        .resources_of::<Observation>()
        .filter_map(|o| match &o.value {
            Some(ObservationValue::CodeableConcept(cc)) => cc.coding.first()?.code.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["266919005", "9"]);
}

#[test]
fn code_maps_export_as_schema_valid_concept_maps() {
    let p = profile(
        "name = \"hospital-b\"\n[[code_map]]\nname = \"allergen\"\nfields = [\"AL1-3\"]\nsource_system = \"L\"\nunmapped = \"hold\"\n\
         [[code_map.entry]]\ncode = \"NA\"\nmeaning = \"nothing\"\ndisplay = \"Not applicable\"\nadded_by = \"j.analyst\"\nadded_at = \"2026-11-02\"\n\
         [[code_map.entry]]\ncode = \"PCN\"\ntarget = { system = \"http://snomed.info/sct\", code = \"91936005\", display = \"Allergy to penicillin\" }\n\
         added_by = \"j.analyst\"\nadded_at = \"2026-11-02\"\ncomment = \"from the pharmacy formulary\"\n",
    );
    let map = &p.code_maps[0];
    assert_eq!(map.unmapped, UnmappedPolicy::Hold);
    assert!(matches!(map.entries[0].meaning, Meaning::Nothing { .. }));
    let cm = v2fhir::codemap::to_concept_map(&p, map);
    let value = fhir::to_value(&cm).unwrap();
    let errors = support::schema_errors(&value);
    assert!(errors.is_empty(), "{errors:?}\n{value:#}");
    assert_eq!(cm.group.len(), 2, "one group per target system");
    let json = value.to_string();
    for needle in [
        "\"equivalence\":\"unmatched\"",
        "records nothing: Not applicable",
        "added by j.analyst on 2026-11-02: from the pharmacy formulary",
        "held for review",
    ] {
        assert!(json.contains(needle), "{needle} missing from {json}");
    }
    // Written back and read again, it is the same resource.
    let back: fhir::ConceptMap = fhir::from_str(&fhir::to_string(&cm)).unwrap();
    assert_eq!(back, cm);
}
