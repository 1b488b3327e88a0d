//! A channel that carries the unified model (`[channel.fhir]`): real MLLP, a real SQLite store, profiles
//! read from files, and a file destination with `format = "fhir"`. Checks what each sender is answered
//! under each unmapped-code policy, what the store holds, and what the destination receives.

mod support;

use causeway_store::{DeliveryState, EventFilter, EventKind, MessageState};
use support::{Harness, ack_of, eventually};

/// Clinic `facility`'s ORU with a tobacco smoking status (LOINC 72166-2) of local code `code`.
fn smoking_oru(facility: &str, control_id: &str, code: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|{facility}|CAUSEWAY|CAUSEWAY|20261103101500-0500||ORU^R01^ORU_R01|{control_id}|P|2.5.1\r\
         PID|1||55501^^^{facility}&2.16.840.1.113883.19.4.9&ISO^MR||Sample^Robin||19700101|M\r\
         OBR|1|ORD-{control_id}|FIL-{control_id}|72166-2^Tobacco smoking status^LN|||20261103100000-0500||||||||||||||||||F\r\
         OBX|1|CWE|72166-2^Tobacco smoking status^LN||{code}^^L||||||F|||20261103100000-0500\r"
    )
    .into_bytes()
}

fn profile(facility: &str, policy: &str) -> String {
    format!(
        "name = \"{facility}\"\n[sender]\napplication = \"LAB\"\nfacility = \"{facility}\"\n\
         [defaults]\ntime_zone = \"-0500\"\n\
         [[code_map]]\nname = \"smoking-status\"\nfields = [\"OBX-5\"]\nobservation = \"72166-2\"\nunmapped = \"{policy}\"\n\
         [[code_map.entry]]\ncode = \"3\"\n\
         target = {{ system = \"http://snomed.info/sct\", code = \"449868002\", display = \"Smokes tobacco daily\" }}\n\
         added_by = \"test\"\nadded_at = \"2026-11-03\"\n"
    )
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    for (facility, policy) in [
        ("CLINIC_P", "pass"),
        ("CLINIC_R", "reject"),
        ("CLINIC_H", "hold"),
    ] {
        std::fs::write(
            profiles.join(format!("{facility}.toml")),
            profile(facility, policy),
        )
        .unwrap();
    }
    Harness::start_in(
        dir,
        "[[channel]]\nname = \"lab\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n\
         fhir = { profiles = \"profiles\" }\n\
           [[channel.destination]]\n  name = \"bundles\"\n  type = \"file\"\n  dir = \"out\"\n\
           filename = \"{control_id}-{id}.json\"\n  format = \"fhir\"\n",
    )
    .await
}

async fn unmapped_events(h: &Harness, id: causeway_store::MessageId) -> Vec<String> {
    h.store
        .events(EventFilter {
            message_id: Some(id),
            kind: Some(EventKind::UnmappedCode),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn a_mapped_code_is_delivered_as_a_fhir_bundle_with_its_meaning() {
    let h = harness().await;
    let ack = ack_of(&h.send("lab", &smoking_oru("CLINIC_P", "P-1", "3")).await);
    assert_eq!(ack.code, "AA");
    let id = h.only("P-1").await.summary.id;
    let path = h.path(&format!("out/P-1-{id}.json"));
    let written = eventually("the bundle file", || async { std::fs::read(&path).ok() }).await;
    let bundle: serde_json::Value = serde_json::from_slice(&written).expect("the file is JSON");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let observation = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Observation")
        .expect("an Observation");
    let coding = &observation["valueCodeableConcept"]["coding"];
    assert_eq!(coding[0]["system"], "http://snomed.info/sct");
    assert_eq!(coding[0]["code"], "449868002");
    assert_eq!(coding[1]["code"], "3", "the code as sent is kept");
    assert!(unmapped_events(&h, id).await.is_empty());
    assert_eq!(h.settled(id).await[0].state, DeliveryState::Delivered);
}

#[tokio::test]
async fn an_unmapped_code_under_pass_is_delivered_flagged_and_counted() {
    let h = harness().await;
    let ack = ack_of(&h.send("lab", &smoking_oru("CLINIC_P", "P-2", "9")).await);
    assert_eq!(ack.code, "AA");
    let id = h.only("P-2").await.summary.id;
    let path = h.path(&format!("out/P-2-{id}.json"));
    let written = eventually("the bundle file", || async { std::fs::read(&path).ok() }).await;
    let text = String::from_utf8(written).unwrap();
    assert!(
        text.contains("urn:causeway:extension:unmapped-code"),
        "flagged"
    );
    let events = unmapped_events(&h, id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("sender=LAB/CLINIC_P"), "{}", events[0]);
    assert!(
        events[0].contains("map=smoking-status field=OBX-5"),
        "{}",
        events[0]
    );
    assert!(events[0].contains("code=9"), "{}", events[0]);
}

#[tokio::test]
async fn an_unmapped_code_under_reject_is_answered_ae_naming_field_code_and_map() {
    let h = harness().await;
    let ack = ack_of(&h.send("lab", &smoking_oru("CLINIC_R", "R-1", "9")).await);
    assert_eq!(ack.code, "AE");
    assert_eq!(ack.err3, "103");
    let text = ack.text.unwrap_or_default();
    assert!(
        text.contains("OBX-5") && text.contains("`9`") && text.contains("smoking-status"),
        "{text}"
    );
    let stored = h.only("R-1").await;
    assert_eq!(
        stored.summary.state,
        MessageState::Rejected,
        "kept, not lost"
    );
    assert!(h.deliveries(stored.summary.id).await.is_empty());
    assert_eq!(unmapped_events(&h, stored.summary.id).await.len(), 1);
}

#[tokio::test]
async fn an_unmapped_code_under_hold_is_acked_and_held_unrouted() {
    let h = harness().await;
    let ack = ack_of(&h.send("lab", &smoking_oru("CLINIC_H", "H-1", "9")).await);
    assert_eq!(
        ack.code, "AA",
        "the message is safe with us: {:?}",
        ack.text
    );
    let stored = h.only("H-1").await;
    assert_eq!(stored.summary.state, MessageState::Held);
    assert!(h.deliveries(stored.summary.id).await.is_empty());
    assert_eq!(unmapped_events(&h, stored.summary.id).await.len(), 1);
    // A mapped code from the same sender goes through.
    assert_eq!(
        ack_of(&h.send("lab", &smoking_oru("CLINIC_H", "H-2", "3")).await).code,
        "AA"
    );
    assert_eq!(h.only("H-2").await.summary.state, MessageState::Accepted);
}

#[tokio::test]
async fn a_message_type_outside_the_conversion_is_refused_with_ar() {
    let h = harness().await;
    let mfn = b"MSH|^~\\&|LAB|CLINIC_P|CAUSEWAY|CAUSEWAY|20261103101500-0500||MFN^M02^MFN_M02|M-1|P|2.5.1\rMFI|PRA\r";
    let ack = ack_of(&h.send("lab", mfn).await);
    assert_eq!(ack.code, "AR");
    assert_eq!(ack.err3, "200");
    assert_eq!(h.only("M-1").await.summary.state, MessageState::Rejected);
}
