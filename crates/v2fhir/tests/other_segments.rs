//! Pharmacy, immunization, scheduling, document and referral mappings on FHIR-Converter's sample
//! messages (`shared/corpus/fhir-converter/SampleData/Hl7v2`): specific messages -> specific FHIR values.

mod support;

use std::path::PathBuf;

use serde_json::Value;

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/fhir-converter/SampleData/Hl7v2")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The samples are saved with a UTF-8 byte order mark.
    match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    }
}

fn convert_bytes(bytes: &[u8]) -> (Value, v2fhir::Conversion) {
    let message = hl7v2::parse(bytes).expect("parse");
    let conversion = v2fhir::convert(&message, &v2fhir::Profile::default()).expect("convert");
    (
        fhir::to_value(&conversion.bundle).expect("bundle"),
        conversion,
    )
}

fn convert(name: &str) -> Value {
    convert_bytes(&sample(name)).0
}

/// The resources of one type in a bundle.
fn of_type<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

fn one<'a>(bundle: &'a Value, resource_type: &str) -> &'a Value {
    let all = of_type(bundle, resource_type);
    assert_eq!(all.len(), 1, "one {resource_type} expected");
    all[0]
}

/// The resource a `urn:uuid:` reference points to.
fn resolve<'a>(bundle: &'a Value, reference: &Value) -> &'a Value {
    let r = reference["reference"].as_str().expect("reference");
    let id = r.strip_prefix("urn:uuid:").expect("urn:uuid reference");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|res| res["id"] == id)
        .unwrap_or_else(|| panic!("{r} is not in the bundle"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text at {pointer} in {v}"))
}

/// The resource whose `field` array has an entry with `key` == `value`.
fn with<'a>(all: &[&'a Value], pointer: &str, value: &str) -> &'a Value {
    all.iter()
        .copied()
        .find(|r| r.pointer(pointer).and_then(Value::as_str) == Some(value))
        .unwrap_or_else(|| panic!("no resource with {pointer} = {value}"))
}

fn decode_base64(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .take_while(|&&c| c != b'=')
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (value(c) << (18 - 6 * i)));
        let len = chunk.iter().filter(|&&c| c != b'=').count();
        for i in 0..len.saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn vxu_immunization_vaccine_dose_lot_manufacturer_and_route() {
    let b = convert("VXU-V04-01.hl7");
    let imm = one(&b, "Immunization");
    assert_eq!(text(imm, "/status"), "completed");
    assert_eq!(text(imm, "/vaccineCode/coding/0/code"), "49281021588");
    assert_eq!(
        text(imm, "/vaccineCode/coding/0/system"),
        "http://hl7.org/fhir/sid/ndc"
    );
    assert_eq!(text(imm, "/occurrenceDateTime"), "2021-08-18");
    assert_eq!(imm["doseQuantity"]["value"], serde_json::json!(0.5));
    assert_eq!(
        text(imm, "/doseQuantity/system"),
        "http://unitsofmeasure.org"
    );
    assert_eq!(text(imm, "/lotNumber"), "315841");
    assert_eq!(text(imm, "/expirationDate"), "2021-12-16");
    assert_eq!(imm["primarySource"], Value::Bool(true));
    assert!(imm.get("reportOrigin").is_none(), "00 is a new record");
    // ORC-2/3 with the ISO assigning authority.
    assert_eq!(text(imm, "/identifier/0/value"), "4422");
    assert_eq!(text(imm, "/identifier/0/type/coding/0/code"), "PLAC");
    assert_eq!(text(imm, "/identifier/1/value"), "13696");
    assert_eq!(
        text(imm, "/identifier/1/system"),
        "urn:oid:2.16.840.1.114222.4.3.3.5.1.2"
    );
    let manufacturer = resolve(&b, &imm["manufacturer"]);
    assert_eq!(text(manufacturer, "/name"), "Sanofi Pasteur");
    assert_eq!(text(manufacturer, "/identifier/0/value"), "PMC");
    assert_eq!(
        text(manufacturer, "/identifier/0/system"),
        "http://hl7.org/fhir/sid/mvx"
    );
    // RXR and the vaccine OBX after the RXA.
    assert_eq!(text(imm, "/route/coding/0/code"), "C28161");
    assert_eq!(text(imm, "/site/coding/0/code"), "RD");
    assert_eq!(text(imm, "/fundingSource/coding/0/code"), "PHC70");
    assert_eq!(text(imm, "/programEligibility/0/coding/0/code"), "V01");
    // RXA-10 administering, ORC-12 ordering.
    let functions: Vec<&str> = imm["performer"]
        .as_array()
        .expect("performers")
        .iter()
        .map(|p| text(p, "/function/coding/0/code"))
        .collect();
    assert_eq!(functions, ["OP", "AP"]);
    let administering = resolve(&b, &imm["performer"][1]["actor"]);
    assert_eq!(text(administering, "/name/0/family"), "Jackson");
    assert_eq!(resolve(&b, &imm["patient"])["resourceType"], "Patient");
}

#[test]
fn vxu_historical_cvx_immunizations() {
    let b = convert("VXU.hl7");
    let all = of_type(&b, "Immunization");
    assert_eq!(all.len(), 3);
    let historical = with(&all, "/identifier/0/value", "38760");
    assert_eq!(text(historical, "/vaccineCode/coding/0/code"), "88");
    assert_eq!(
        text(historical, "/vaccineCode/coding/0/system"),
        "http://hl7.org/fhir/sid/cvx"
    );
    assert_eq!(historical["primarySource"], Value::Bool(false));
    assert_eq!(text(historical, "/reportOrigin/coding/0/code"), "01");
    assert_eq!(text(historical, "/occurrenceDateTime"), "2014-10-12");
    // Only ORC-3 is sent: the filler number alone identifies it.
    assert_eq!(text(historical, "/identifier/0/type/coding/0/code"), "FILL");
}

#[test]
fn immunization_id_comes_from_the_filler_order_number() {
    let a = convert("VXU-V04-01.hl7");
    let b = convert("VXU-V04-02.hl7");
    let first = one(&a, "Immunization");
    let same = with(&of_type(&b, "Immunization"), "/identifier/1/value", "13696");
    assert_eq!(first["id"], same["id"]);
    assert_eq!(
        text(first, "/id"),
        v2fhir::ids::id(
            "Immunization",
            &["urn:oid:2.16.840.1.114222.4.3.3.5.1.2", "13696"]
        )
    );
}

#[test]
fn rxa_refusal_and_deletion() {
    let msg = "MSH|^~\\&|APP|FAC|||20210101120000+0000||VXU^V04^VXU_V04|C1|P|2.5.1\r\
PID|1||P1^^^FAC^MR||DOE^JANE\r\
ORC|RE||F1^IIS\r\
RXA|0|1|20210101||03^MMR^CVX|999||||||||||||00^Parental decision^NIP002||RE\r\
ORC|RE||F2^IIS\r\
RXA|0|1|20210102||08^HepB^CVX|0.5|mL^mL^UCUM|||||||||||||CP|D\r";
    let (b, _) = convert_bytes(msg.as_bytes());
    let all = of_type(&b, "Immunization");
    let refused = with(&all, "/identifier/0/value", "F1");
    assert_eq!(text(refused, "/status"), "not-done");
    assert_eq!(text(refused, "/statusReason/coding/0/code"), "00");
    let deleted = with(&all, "/identifier/0/value", "F2");
    assert_eq!(text(deleted, "/status"), "entered-in-error");
}

#[test]
fn bad_pharmacy_values_become_issues_not_panics() {
    let msg = "MSH|^~\\&|APP|FAC|||20210101120000+0000||VXU^V04^VXU_V04|C2|P|2.5.1\r\
PID|1||P1^^^FAC^MR||DOE^JANE\r\
ORC|RE||F9^IIS\r\
RXA|0|1|2021130199||03^MMR^CVX|1,5|mL^mL^UCUM||||||||x|20211301\r\
RXR\r\
OBX|1|CE\r";
    let (b, c) = convert_bytes(msg.as_bytes());
    let imm = one(&b, "Immunization");
    assert!(imm.get("doseQuantity").is_none());
    assert!(imm.get("occurrenceDateTime").is_none());
    let at: Vec<&str> = c.issues.iter().map(|i| i.at.as_str()).collect();
    for field in ["RXA-3", "RXA-6", "RXA-16"] {
        assert!(at.contains(&field), "{field} in {at:?}");
    }
    // Without a PID there is no subject: the Immunization is left out, with an issue.
    let msg = "MSH|^~\\&|APP|FAC|||20210101120000+0000||VXU^V04^VXU_V04|C3|P|2.5.1\r\
RXA|0|1|20210101||03^MMR^CVX\r";
    let (b, c) = convert_bytes(msg.as_bytes());
    assert!(of_type(&b, "Immunization").is_empty());
    assert!(c.issues.iter().any(|i| i.at == "RXA"));
}

#[test]
fn siu_appointment_status_follows_the_event_and_keeps_its_id() {
    let booked = convert("SIU-S12-01.hl7");
    let appointment = one(&booked, "Appointment");
    assert_eq!(text(appointment, "/status"), "booked");
    for (sample, status) in [
        ("SIU-S15-01.hl7", "cancelled"),
        ("SIU-S16-01.hl7", "cancelled"),
        ("SIU-S17-01.hl7", "entered-in-error"),
        ("SIU-S26-01.hl7", "noshow"),
        ("SIU-S14-01.hl7", "booked"),
    ] {
        let b = convert(sample);
        let other = one(&b, "Appointment");
        assert_eq!(text(other, "/status"), status, "{sample}");
        assert_eq!(
            other["id"], appointment["id"],
            "{sample}: same SCH-1/2, same id"
        );
    }
}

#[test]
fn siu_appointment_times_type_and_participants() {
    let b = convert("SIU-S12-01.hl7");
    let a = one(&b, "Appointment");
    assert_eq!(text(a, "/identifier/0/value"), "12345");
    assert_eq!(text(a, "/identifier/0/type/coding/0/code"), "PLAC");
    assert_eq!(text(a, "/identifier/1/value"), "36996");
    assert_eq!(text(a, "/start"), "2021-09-24T09:30:00+02:15");
    assert_eq!(text(a, "/end"), "2021-09-24T10:20:00+02:15");
    assert_eq!(a["minutesDuration"], serde_json::json!(1), "SCH-9 60 s");
    assert_eq!(a["priority"], serde_json::json!(2), "TQ1-9 A (ASAP)");
    assert_eq!(text(a, "/appointmentType/coding/0/code"), "EMERGENCY");
    assert_eq!(
        text(a, "/appointmentType/coding/0/system"),
        "http://terminology.hl7.org/CodeSystem/v2-0276"
    );
    assert_eq!(
        text(a, "/comment"),
        "Appointment booked for emergency procedure"
    );
    assert_eq!(text(a, "/serviceType/0/coding/0/code"), "76164006");
    let kinds: Vec<&str> = a["participant"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            resolve(&b, &p["actor"])["resourceType"]
                .as_str()
                .expect("type")
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Patient",
            "PractitionerRole",
            "PractitionerRole",
            "Device",
            "Location",
            "Practitioner"
        ]
    );
    // SCH-12 and SCH-16 name one person at one location: one role with both functions.
    let contact = &a["participant"][1];
    assert_eq!(text(contact, "/required"), "information-only");
    assert_eq!(text(contact, "/type/0/text"), "Placer Contact");
    assert_eq!(text(contact, "/type/1/text"), "Filler Contact");
    let role = resolve(&b, &contact["actor"]);
    assert_eq!(text(role, "/code/0/text"), "Placer Contact");
    assert_eq!(text(resolve(&b, &role["location"][0]), "/name"), "FLOOR2");
    let smith = resolve(&b, &role["practitioner"]);
    assert_eq!(text(smith, "/identifier/0/value"), "9941339109");
    assert_eq!(text(smith, "/telecom/0/value"), "(608)271-9000", "SCH-13");
    assert_eq!(text(smith, "/address/0/city"), "GOODTOWN", "SCH-14");
    let enterer = &a["participant"][2];
    assert_eq!(text(enterer, "/type/0/coding/0/code"), "enterer");
    let role = resolve(&b, &enterer["actor"]);
    assert_eq!(text(role, "/code/0/coding/0/code"), "EP");
    assert_eq!(text(resolve(&b, &role["location"][0]), "/name"), "FLOOR1");
    assert_eq!(
        text(resolve(&b, &role["practitioner"]), "/telecom/0/value"),
        "(610)271-9000",
        "SCH-21"
    );
    let person = &a["participant"][5];
    assert_eq!(text(person, "/type/0/coding/0/code"), "010");
    assert_eq!(text(person, "/status"), "accepted");
    assert_eq!(text(person, "/period/start"), "2021-09-24T09:30:00+02:15");
    let device = resolve(&b, &a["participant"][3]["actor"]);
    assert_eq!(
        text(device, "/deviceName/0/name"),
        "EVIS X12 Video Colonoscope"
    );
    assert_eq!(
        text(device, "/note/0/text"),
        "Check if this particular equipment is available"
    );
    let room = resolve(&b, &a["participant"][4]["actor"]);
    assert_eq!(text(room, "/name"), "Room01");
    assert_eq!(text(room, "/type/0/coding/0/code"), "C", "AIL-4");
    assert!(room.get("alias").is_none(), "the NTE is not an alias");
    let service = resolve(&b, &a["basedOn"][0]);
    assert_eq!(text(service, "/code/coding/0/code"), "76164006");
    assert_eq!(resolve(&b, &service["subject"])["resourceType"], "Patient");
    assert!(support::schema_errors(service).is_empty());
}

#[test]
fn siu_resource_groups_all_join_one_appointment() {
    let b = convert("SIU-S12-02.hl7");
    let a = one(&b, "Appointment");
    // Patient, 2 SCH contact roles, 3 RGS groups: 2 AIG, 3 AIL, 3 AIP; no AIx status: tentative.
    let participants = a["participant"].as_array().expect("participants");
    assert_eq!(participants.len(), 1 + 2 + 2 + 3 + 3);
    assert_eq!(text(&participants[3], "/status"), "tentative");
    // Each NTE stays with its own segment: the AIL's and AIP's NTE reach neither the group's
    // ServiceRequest nor its Device.
    for r in b["entry"].as_array().expect("entries") {
        let r = &r["resource"];
        let notes: Vec<&str> = r["note"]
            .as_array()
            .map(|n| n.iter().filter_map(|x| x["text"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            notes
                .iter()
                .all(|n| !n.starts_with("Location") && !n.contains("available")),
            "{notes:?}"
        );
        if r["resourceType"] == "Device" && r["deviceName"][0]["name"] == "XYZ X-Ray Machine" {
            assert_eq!(notes, ["Equipment booked for imaging"]);
        }
    }
    assert_eq!(a["serviceType"].as_array().map(Vec::len), Some(2));
    assert_eq!(a["minutesDuration"], serde_json::json!(70));
}

#[test]
fn mdm_text_document_content_and_identity() {
    let b = convert("MDM-T02-02.hl7");
    let d = one(&b, "DocumentReference");
    assert_eq!(
        text(d, "/masterIdentifier/value"),
        "1.2.840.317.5947431.51.20080131160038"
    );
    assert_eq!(text(d, "/status"), "current");
    assert_eq!(text(d, "/docStatus"), "preliminary", "TXA-17 AU");
    assert_eq!(text(d, "/type/coding/0/code"), "DI");
    assert_eq!(
        text(d, "/type/coding/0/system"),
        "http://terminology.hl7.org/CodeSystem/v2-0270"
    );
    assert_eq!(
        text(d, "/context/period/start"),
        "2008-01-31T15:55:00+02:15"
    );
    assert_eq!(text(d, "/date"), "2008-01-31T16:00:00+02:15");
    assert_eq!(resolve(&b, &d["subject"])["resourceType"], "Patient");
    let attachment = &d["content"][0]["attachment"];
    assert_eq!(text(attachment, "/contentType"), "text/plain");
    assert_eq!(text(attachment, "/creation"), "2008-01-31T16:00:00+02:15");
    let body = String::from_utf8(decode_base64(text(attachment, "/data"))).expect("utf-8");
    assert_eq!(
        body,
        "Toilet cylinder crackers model step-mother visor opening communication\n\
         Columnist draft inn brown income ikebana circulation prince"
    );
    // The same document (TXA-12) in a replacement message is the same resource.
    let replaced = convert("MDM-T10-02.hl7");
    assert_eq!(one(&replaced, "DocumentReference")["id"], d["id"]);
}

#[test]
fn mdm_addendum_and_replacement_relate_to_the_parent() {
    for (sample, code) in [
        ("MDM-T05-01.hl7", "appends"),
        ("MDM-T09-01.hl7", "replaces"),
    ] {
        let b = convert(sample);
        let d = one(&b, "DocumentReference");
        assert_eq!(text(d, "/relatesTo/0/code"), code, "{sample}");
        assert_eq!(
            text(d, "/relatesTo/0/target/identifier/value"),
            "1.2.840.317.5947431.51.20080131155715"
        );
    }
    let original = convert("MDM-T02-01.hl7");
    assert!(
        one(&original, "DocumentReference")
            .get("relatesTo")
            .is_none()
    );
}

#[test]
fn mdm_encapsulated_data_keeps_its_type() {
    let b = convert("MDM-T02-01.hl7");
    let d = one(&b, "DocumentReference");
    let types: Vec<&str> = d["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|c| c["attachment"]["contentType"].as_str())
        .collect();
    assert_eq!(types, ["application/pdf"]);
    let msg = "MSH|^~\\&|APP|FAC|||20210101120000+0000||MDM^T02^MDM_T02|C4|P|2.5.1\r\
PID|1||P1^^^FAC^MR||DOE^JANE\r\
TXA|1|CN|TX|||||||||DOC1^FAC\r\
OBX|1|ED|X||^text^plain^Hex^48690A||||||F\r\
OBX|2|ED|X||^text^plain^Hex^4G||||||F\r";
    let (b, c) = convert_bytes(msg.as_bytes());
    let d = one(&b, "DocumentReference");
    assert_eq!(text(d, "/content/0/attachment/data"), "SGkK");
    assert_eq!(d["content"].as_array().map(Vec::len), Some(2));
    assert!(c.issues.iter().any(|i| i.at == "OBX[2]-5"));
}

#[test]
fn rde_order_and_pharmacy_order_with_their_medications() {
    let b = convert("RDE-O11-01.hl7");
    let requests = of_type(&b, "MedicationRequest");
    assert_eq!(requests.len(), 2);
    let original = with(&requests, "/intent", "original-order");
    let filler = with(&requests, "/intent", "filler-order");
    assert_eq!(text(original, "/status"), "active", "ORC-1 NW");
    assert_eq!(text(original, "/identifier/0/value"), "1163422591");
    assert_eq!(text(original, "/identifier/0/system"), "EPC");
    assert_eq!(text(original, "/priority"), "routine");
    assert_eq!(text(original, "/authoredOn"), "2019-11-04T06:27:26+02:15");
    let medication = resolve(&b, &original["medicationReference"]);
    assert_eq!(text(medication, "/code/coding/0/code"), "00047040230");
    assert_eq!(
        text(medication, "/code/coding/0/system"),
        "http://hl7.org/fhir/sid/ndc"
    );
    let dosage = &original["dosageInstruction"][0];
    assert_eq!(text(dosage, "/route/coding/0/code"), "IV");
    assert_eq!(text(dosage, "/timing/code/coding/0/code"), "TID");
    assert_eq!(
        text(dosage, "/timing/code/coding/0/display"),
        "three times a day at institution-specified times"
    );
    assert_eq!(
        text(dosage, "/patientInstruction"),
        "1 tablet by oral route 2 times daily."
    );
    assert_eq!(
        original["dispenseRequest"]["quantity"]["value"],
        serde_json::json!(10)
    );
    assert_eq!(
        original["dispenseRequest"]["numberOfRepeatsAllowed"],
        serde_json::json!(12)
    );
    assert_eq!(
        text(
            original,
            "/substitution/allowedCodeableConcept/coding/0/system"
        ),
        "http://terminology.hl7.org/CodeSystem/v2-0161"
    );
    // The pharmacy's RXE is based on the RXO; its Medication has the RXC after it as an ingredient.
    assert_eq!(resolve(&b, &filler["basedOn"][0])["id"], original["id"]);
    assert_eq!(text(filler, "/priority"), "stat");
    assert_eq!(text(filler, "/identifier/1/value"), "PN15");
    let given = resolve(&b, &filler["medicationReference"]);
    assert_eq!(text(given, "/code/coding/0/code"), "0143963401");
    let component = resolve(&b, &given["ingredient"][0]["itemReference"]);
    assert_eq!(
        component["amount"]["numerator"]["value"],
        serde_json::json!(4)
    );
    assert_eq!(text(component, "/amount/numerator/unit"), "Bag");
    let timing = &filler["dosageInstruction"][0]["timing"]["repeat"];
    assert_eq!(text(timing, "/periodUnit"), "min");
    assert_eq!(timing["offset"], serde_json::json!(6), "360 s");
    assert_eq!(
        text(timing, "/boundsPeriod/start"),
        "2019-11-04T10:30:00+02:15"
    );
    assert_eq!(
        filler["dosageInstruction"][1]["maxDosePerLifetime"]["value"],
        serde_json::json!(100),
        "CDO-4 PL is a lifetime limit"
    );
    // The RXO's TQ1 has a service duration only (3 days).
    let bounds = &original["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"];
    assert_eq!(text(bounds, "/code"), "d");
    assert_eq!(text(bounds, "/unit"), "day");
}

#[test]
fn orm_pharmacy_order_timing_from_orc_7() {
    let b = convert("ORM-O01-06.hl7");
    let request = one(&b, "MedicationRequest");
    let dosages = request["dosageInstruction"].as_array().expect("dosages");
    assert_eq!(dosages.len(), 2, "two ORC-7 repetitions");
    let first = &dosages[0]["timing"];
    assert_eq!(text(first, "/code/coding/0/code"), "BID");
    assert_eq!(text(first, "/repeat/timeOfDay/0"), "11:30:05");
    assert_eq!(first["repeat"]["duration"], serde_json::json!(50));
    assert_eq!(text(first, "/repeat/durationUnit"), "s");
    assert_eq!(first["repeat"]["count"], serde_json::json!(21));
    assert_eq!(
        text(&dosages[1], "/timing/repeat/boundsPeriod/start"),
        "2002-03-15"
    );
    assert_eq!(text(request, "/note/0/text"), "CT Scan to be done urgent");
}

#[test]
fn rds_dispense_is_authorized_by_the_pharmacy_order() {
    let b = convert("RDS-O13-01.hl7");
    let dispenses = of_type(&b, "MedicationDispense");
    let rxd = with(&dispenses, "/status", "completed");
    assert_eq!(text(rxd, "/whenHandedOver"), "2020-12-12");
    assert_eq!(rxd["quantity"]["value"], serde_json::json!(10));
    assert_eq!(text(rxd, "/type/coding/0/code"), "R");
    let prescription = &rxd["authorizingPrescription"][0];
    assert_eq!(text(prescription, "/identifier/value"), "PN12345");
    assert_eq!(text(resolve(&b, prescription), "/intent"), "filler-order");
    let medication = resolve(&b, &rxd["medicationReference"]);
    let codes: Vec<&str> = medication["code"]["coding"]
        .as_array()
        .expect("codings")
        .iter()
        .map(|c| text(c, "/code"))
        .collect();
    assert_eq!(codes, ["01151327", "418739006"], "RXD-2 and RXD-25");
    // The FT1 for a drug: a dispense of unknown status (the charge is a ChargeItem).
    let charged = with(&dispenses, "/status", "unknown");
    assert_eq!(
        text(charged, "/medicationCodeableConcept/coding/0/code"),
        "0182-1061-05"
    );
}

#[test]
fn rds_orders_with_one_order_number_and_two_drugs_stay_apart() {
    let b = convert("RDS-O13-02.hl7");
    assert_eq!(of_type(&b, "MedicationRequest").len(), 4);
    assert_eq!(of_type(&b, "MedicationDispense").len(), 2);
}

#[test]
fn dft_p03_charge_item() {
    let (b, c) = convert_bytes(&sample("DFT-P03-01.hl7"));
    assert!(
        !c.issues
            .iter()
            .any(|i| i.at.starts_with("FT1") && i.kind == v2fhir::IssueKind::UnmappedSegment),
        "FT1 is mapped"
    );
    let charges = of_type(&b, "ChargeItem");
    assert_eq!(charges.len(), 2, "one ChargeItem per FT1");
    let xray = with(&charges, "/identifier/0/value", "12345");
    assert_eq!(text(xray, "/status"), "unknown");
    assert_eq!(text(xray, "/code/coding/0/code"), "71045", "FT1-7");
    assert_eq!(text(xray, "/occurrenceDateTime"), "2019-11-22", "FT1-4");
    assert_eq!(text(xray, "/enteredDate"), "2019-11-22", "FT1-5");
    assert_eq!(xray["quantity"]["value"], serde_json::json!(2), "FT1-10");
    assert_eq!(
        xray["priceOverride"]["value"],
        serde_json::json!(100),
        "FT1-11"
    );
    assert_eq!(text(xray, "/priceOverride/currency"), "USD");
    let reasons: Vec<&str> = xray["reason"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| text(r, "/coding/0/code"))
        .collect();
    assert_eq!(reasons, ["29857009", "68235000"], "FT1-19");
    assert_eq!(
        text(resolve(&b, &xray["subject"]), "/resourceType"),
        "Patient"
    );
    assert_eq!(
        text(resolve(&b, &xray["context"]), "/resourceType"),
        "Encounter"
    );
    assert_eq!(
        text(resolve(&b, &xray["account"][0]), "/resourceType"),
        "Account"
    );
    let cost_center = resolve(&b, &xray["costCenter"]);
    assert_eq!(text(cost_center, "/name"), "Radiology Deptt", "FT1-13");
    let performer = resolve(&b, &xray["performer"][0]["actor"]);
    assert_eq!(text(performer, "/name/0/family"), "Smith", "FT1-20");
    assert_eq!(
        text(resolve(&b, &xray["enterer"]), "/name/0/family"),
        "Mellie",
        "FT1-24"
    );
    let performing = resolve(&b, &xray["performingOrganization"]);
    assert_eq!(text(performing, "/name"), "Good Health Hospital", "FT1-32");
    let requesting = resolve(&b, &xray["requestingOrganization"]);
    assert_eq!(text(requesting, "/name"), "GOOD HEALTH HOSPITAL", "FT1-33");
    let device = resolve(&b, &xray["productReference"]);
    assert_eq!(text(device, "/identifier/0/value"), "Item-12345", "FT1-34");
    assert_eq!(text(device, "/modelNumber"), "Model-12345", "FT1-35");
    // Services: the FT1-25 procedure, the FT1-29 drug dispensed, and the PR1 after the FT1.
    let services: Vec<(&str, &Value)> = xray["service"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| (text(s, "/type"), resolve(&b, s)))
        .collect();
    let kinds: Vec<&str> = services.iter().map(|(t, _)| *t).collect();
    assert_eq!(kinds, ["Procedure", "MedicationDispense", "Procedure"]);
    assert_eq!(text(services[0].1, "/code/coding/0/code"), "71045");
    assert_eq!(
        text(services[1].1, "/medicationCodeableConcept/coding/0/code"),
        "0182-1061-05"
    );
    assert_eq!(
        text(services[2].1, "/performedDateTime"),
        "2019-11-22",
        "PR1-5"
    );
    // The second FT1 has no transaction id: its id is scoped to the message; its code has no system.
    let other = charges
        .iter()
        .find(|c| c.get("identifier").is_none())
        .expect("FT1 without FT1-2");
    assert_eq!(text(other, "/code/coding/0/code"), "626.2");
    assert!(
        other.get("performer").is_none(),
        "FT1-20 `^^^` names no one"
    );
    for charge in charges {
        let errors = support::schema_errors(charge);
        assert!(errors.is_empty(), "{errors:?}");
    }
}

#[test]
fn charge_item_id_comes_from_the_transaction_id() {
    let a = convert("DFT-P11-01.hl7");
    let b = convert("DFT-P03-01.hl7");
    let id = |bundle: &Value| {
        text(
            with(
                &of_type(bundle, "ChargeItem"),
                "/identifier/0/value",
                "12345",
            ),
            "/id",
        )
        .to_owned()
    };
    assert_eq!(id(&a), id(&b), "same sender, same FT1-2: same ChargeItem");
}

#[test]
fn ft1_without_patient_or_code_is_an_issue() {
    let msg = b"MSH|^~\\&|A|B|C|D|20200101||DFT^P03^DFT_P03|1|P|2.5\rFT1|1|T1||20200101||CG|X1\r";
    let (b, c) = convert_bytes(msg);
    assert!(of_type(&b, "ChargeItem").is_empty());
    assert!(c.issues.iter().any(|i| i.at == "FT1"), "no patient");
    let msg = b"MSH|^~\\&|A|B|C|D|20200101||DFT^P03^DFT_P03|1|P|2.5\rPID|1||P1^^^H^MR||DOE^J\rFT1|1|T1||20200101||CG||||x&USD\r";
    let (b, c) = convert_bytes(msg);
    assert!(of_type(&b, "ChargeItem").is_empty());
    assert!(c.issues.iter().any(|i| i.at == "FT1-7"), "no code");
}

#[test]
fn bad_ft1_amounts_become_issues() {
    let msg = b"MSH|^~\\&|A|B|C|D|20200101||DFT^P03^DFT_P03|1|P|2.5\rPID|1||P1^^^H^MR||DOE^J\rFT1|1|T1||20200101||CG|X1^Thing^L|||two|x&USD\r";
    let (b, c) = convert_bytes(msg);
    let charge = one(&b, "ChargeItem");
    assert!(charge.get("quantity").is_none());
    assert!(charge.get("priceOverride").is_none());
    assert!(c.issues.iter().any(|i| i.at == "FT1-10"));
    assert!(c.issues.iter().any(|i| i.at == "FT1-11"));
}

#[test]
fn ref_referral_service_request() {
    let b = convert("REF-I12-01.hl7");
    let referral = of_type(&b, "ServiceRequest")
        .into_iter()
        .find(|r| r.pointer("/category/0/coding/0/code") == Some(&Value::from("3457005")))
        .expect("a referral");
    assert_eq!(text(referral, "/status"), "on-hold", "RF1-1 P");
    assert_eq!(text(referral, "/priority"), "routine");
    assert_eq!(text(referral, "/identifier/0/value"), "226839");
    assert_eq!(text(referral, "/identifier/0/system"), "EPIC");
    assert_eq!(text(referral, "/occurrencePeriod/start"), "2022-01-25");
    assert_eq!(text(referral, "/occurrencePeriod/end"), "2022-02-10");
    assert_eq!(text(referral, "/reasonCode/0/coding/0/code"), "O");
    // RF1 comes before PID and PV1 in REF_I12: the Patient and the visit found later.
    assert_eq!(resolve(&b, &referral["subject"])["resourceType"], "Patient");
    assert_eq!(
        resolve(&b, &referral["encounter"])["resourceType"],
        "Encounter"
    );
    assert!(support::schema_errors(referral).is_empty());
    let cancelled = convert("REF-I14-01.hl7");
    let same = of_type(&cancelled, "ServiceRequest")
        .into_iter()
        .find(|r| r["id"] == referral["id"])
        .expect("the same referral");
    assert_eq!(text(same, "/status"), "revoked");
}

#[test]
fn resources_of_these_mappings_are_valid_r4() {
    let types = [
        "Immunization",
        "MedicationRequest",
        "Medication",
        "MedicationDispense",
        "Appointment",
        "DocumentReference",
    ];
    for name in [
        "VXU-V04-01.hl7",
        "VXU.hl7",
        "IZ_1_1.1_Admin_Child_Max_Message.hl7",
        "RDE-O11-01.hl7",
        "RDE-O25-02.hl7",
        "RDS-O13-02.hl7",
        "SIU-S12-01.hl7",
        "SIU-S12-02.hl7",
        "MDM-T02-01.hl7",
        "MDM-T02-03.hl7",
        "MDM-T09-01.hl7",
        "REF-I12-01.hl7",
        "DFT-P03-01.hl7",
    ] {
        let b = convert(name);
        for t in types {
            for r in of_type(&b, t) {
                let errors = support::schema_errors(r);
                assert!(errors.is_empty(), "{name} {t}: {errors:?}");
            }
        }
    }
}
