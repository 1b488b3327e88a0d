//! The rules that keep every bundle valid FHIR R4 (see `validity.rs` for the whole corpus): instants
//! only with a zone, local systems as valid URIs, strings and codes without forbidden whitespace, the
//! required Coverage.payor and Appointment.participant, and EVN's operator and facility on the
//! Provenance.

use serde_json::Value;

fn convert(text: &str) -> (Value, v2fhir::Conversion) {
    let bytes = text.replace('\n', "\r");
    let message = hl7v2::parse(bytes.as_bytes()).expect("parses");
    let c = v2fhir::convert(&message, &v2fhir::Profile::default()).expect("converts");
    (fhir::to_value(&c.bundle).expect("serialises"), c)
}

fn of_type<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

fn resolve<'a>(bundle: &'a Value, reference: &Value) -> &'a Value {
    let r = reference["reference"].as_str().expect("a reference");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["fullUrl"] == r)
        .map(|e| &e["resource"])
        .expect("reference resolves")
}

const ADT: &str = "MSH|^~\\&|APP|FAC|REC|RFAC|20240501101530+0200||ADT^A01^ADT_A01|C1|P|2.5
EVN|A01|20240501101530+0200||01|C08^Woolfson^Kathleen^^^^^^DRNBR&1.3.6.1.4.1.44750.1.2.2&ISO|20240501101000+0200|Cona_Health^1.3.6.1.4.1.44750.1.4^ISO
PID|1||77^^^St Mary Hospital^MR~88^^^X&Maven EDSS&ISO^MR||Doe\u{a0}Smith^Jane||19800101|F|||||||||||||||||||||||||||||||CA ^Canada^ISO3166_1
PV1|1|I
IN1|1|PAR^PARENT||||LUIGI
IN1|2|FRI^FRIEND
";

#[test]
fn instants_need_a_zone() {
    let (b, _) = convert(ADT);
    assert_eq!(b["timestamp"], "2024-05-01T10:15:30+02:00");
    let provenance = &of_type(&b, "Provenance")[0];
    assert_eq!(provenance["recorded"], "2024-05-01T10:15:30+02:00");

    let zoneless = ADT.replace("20240501101530+0200||ADT", "20240501101530||ADT");
    let (b, c) = convert(&zoneless);
    assert!(b.get("timestamp").is_none());
    assert!(of_type(&b, "Provenance")[0].get("recorded").is_none());
    assert!(c.issues.iter().any(|i| i.at == "MSH-7"
        && i.severity == v2fhir::Severity::Warning
        && i.message.contains("instant")));
}

#[test]
fn local_systems_are_uris() {
    assert_eq!(
        v2fhir::coding_system_uri("St Mary Hospital"),
        "St%20Mary%20Hospital"
    );
    let (b, _) = convert(ADT);
    let patient = &of_type(&b, "Patient")[0];
    let systems: Vec<&str> = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["system"].as_str())
        .collect();
    // CX.4.1 as given, encoded; `ISO` with a universal id that is not an OID: the namespace, not urn:oid.
    assert!(systems.contains(&"St%20Mary%20Hospital"), "{systems:?}");
    assert!(systems.contains(&"X"), "{systems:?}");
    assert!(!systems.iter().any(|s| s.starts_with("urn:oid:Maven")));
}

#[test]
fn strings_and_codes_carry_only_allowed_whitespace() {
    let (b, _) = convert(ADT);
    let patient = &of_type(&b, "Patient")[0];
    assert_eq!(patient["name"][0]["family"], "Doe Smith");
    assert_eq!(
        v2fhir::read::code_text(" CA  x ".into()).as_deref(),
        Some("CA x")
    );
    assert_eq!(v2fhir::read::code_text("  ".into()), None);
    assert_eq!(
        v2fhir::coding_system_uri("ISO3166_1"),
        "urn:iso:std:iso:3166"
    );
}

#[test]
fn coverage_payor_from_what_the_in1_names() {
    let (b, c) = convert(ADT);
    let coverages = of_type(&b, "Coverage");
    // IN1 1 names only a contact person (IN1-6): the insurer is an Organization with that contact.
    assert_eq!(coverages.len(), 1);
    let payor = resolve(&b, &coverages[0]["payor"][0]);
    assert_eq!(payor["resourceType"], "Organization");
    assert_eq!(payor["contact"][0]["name"]["family"], "LUIGI");
    // IN1 2 names no insurer at all: no Coverage, an issue.
    assert!(
        c.issues
            .iter()
            .any(|i| i.at == "IN1[2]-3" && i.severity == v2fhir::Severity::Error)
    );
}

#[test]
fn evn_operator_and_facility_on_the_provenance() {
    let (b, _) = convert(ADT);
    // The message's Provenance (MSH) comes first, the event's (EVN) second.
    let provenances = of_type(&b, "Provenance");
    assert_eq!(provenances.len(), 2);
    let provenance = &provenances[1];
    let enterer = provenance["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"]["coding"][0]["code"] == "enterer")
        .expect("an enterer agent");
    let who = resolve(&b, &enterer["who"]);
    assert_eq!(who["resourceType"], "Practitioner");
    assert_eq!(who["name"][0]["family"], "Woolfson");
    let location = resolve(&b, &provenance["location"]);
    assert_eq!(location["name"], "Cona_Health");
    assert_eq!(
        location["identifier"][0]["value"],
        "urn:oid:1.3.6.1.4.1.44750.1.4"
    );
    // EVN-4 01 through the IG's EventReason map; EVN-2 recorded, EVN-6 occurred.
    assert_eq!(provenance["reason"][0]["coding"][0]["code"], "PATRQT");
    assert_eq!(provenance["recorded"], "2024-05-01T10:15:30+02:00");
    assert_eq!(provenance["occurredDateTime"], "2024-05-01T10:10:00+02:00");
    // The message's Provenance names the sending application (MSH-3) as a source Device.
    let device = provenances[0]["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["what"].get("reference").map(|_| resolve(&b, &e["what"])))
        .expect("a Device entity");
    assert_eq!(device["resourceType"], "Device");
}

#[test]
fn appointment_needs_a_participant() {
    let siu = "MSH|^~\\&|APP|FAC|REC|RFAC|20240501101530+0200||SIU^S12^SIU_S12|C2|P|2.5
SCH|||||||||||^^^20240502090000+0200^20240502093000+0200
";
    let (b, c) = convert(siu);
    assert!(of_type(&b, "Appointment").is_empty());
    assert!(
        c.issues
            .iter()
            .any(|i| i.at == "SCH" && i.message.contains("participant"))
    );

    // Without SCH-1/2 the Appointment is still found by the segments after it.
    let with_patient = format!("{siu}PID|1||77^^^FAC^MR||Doe^Jane\nRGS|1\nAIL|1||ROOM1^^^CLINIC\n");
    let (b, _) = convert(&with_patient);
    let appointment = &of_type(&b, "Appointment")[0];
    assert_eq!(appointment["start"], "2024-05-02T09:00:00+02:00");
    let actors: Vec<&str> = appointment["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| resolve(&b, &p["actor"])["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["Patient", "Location"]);
}
