//! FHIR search through references: answers that hold more than their matches (`_include` and
//! `_revinclude`, and their `:iterate` forms, which follow references from what they add,
//! round after round), chained parameters and `_has`, which search another type first; and
//! the search-like operations `Observation/$lastn` and `Patient/$match`.
//! End to end: the real router on a real socket over a real SQLite store (see `support`).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support;

use support::*;

/// `(search mode, Type/id)` of every entry, in answer order.
fn entries(bundle: &Value) -> Vec<(String, String)> {
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    // An empty answer has no `entry` at all.
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let r = &e["resource"];
            (
                e["search"]["mode"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

fn included(bundle: &Value) -> Vec<String> {
    let mut out: Vec<String> = entries(bundle)
        .into_iter()
        .filter(|(mode, _)| mode == "include")
        .map(|(_, key)| key)
        .collect();
    out.sort();
    out
}

/// Patient p1 seen at Encounter e1 (by Practitioner dr1, at Location loc1), its Observation
/// o1 of that encounter, and two Provenances: prov1 of o1 (by Practitioner dr2) and prov2 of
/// e1 and o1 (by Device dev1).
async fn seed(s: &Server) {
    s.put(patient("p1", "Walker")).await;
    s.put(json!({
        "resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Welby"}]
    }))
    .await;
    s.put(json!({
        "resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Quinn"}]
    }))
    .await;
    s.put(json!({"resourceType": "Location", "id": "loc1", "name": "Ward 12"}))
        .await;
    s.put(json!({
        "resourceType": "Device", "id": "dev1",
        "deviceName": [{"name": "analyser", "type": "model-name"}]
    }))
    .await;
    s.put(json!({
        "resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
        "location": [{"location": {"reference": "Location/loc1"}}]
    }))
    .await;
    let mut o1 = observation("o1", "p1", "5.4");
    o1["encounter"] = json!({"reference": "Encounter/e1"});
    s.put(o1).await;
    s.put(json!({
        "resourceType": "Provenance", "id": "prov1",
        "target": [{"reference": "Observation/o1"}],
        "recorded": "2024-03-02T07:31:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr2"}}]
    }))
    .await;
    s.put(json!({
        "resourceType": "Provenance", "id": "prov2",
        "target": [{"reference": "Encounter/e1"}, {"reference": "Observation/o1"}],
        "recorded": "2024-03-02T07:32:00Z",
        "agent": [{"who": {"reference": "Device/dev1"}}]
    }))
    .await;
}

async fn search(s: &Server, query: &str) -> (StatusCode, Value) {
    let a = s
        .call(Method::GET, &format!("/fhir/{query}"), &s.admin, &[], None)
        .await;
    (a.status, a.body)
}

/// `GET /fhir/{query}` is a 400 whose OperationOutcome says `why`.
async fn refused(s: &Server, query: &str, why: &str) {
    let (status, b) = search(s, query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {b}");
    assert_eq!(b["resourceType"], "OperationOutcome", "{query}");
    assert_eq!(b["issue"][0]["diagnostics"], why, "{query}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterate_follows_what_the_first_level_added_round_after_round() {
    let s = Server::start(|_| {}).await;
    seed(&s).await;

    // First level only: the encounter of the match, not who took part in it.
    let (status, b) = search(&s, "Observation?_id=o1&_include=Observation:encounter").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        entries(&b),
        [
            ("match".to_owned(), "Observation/o1".to_owned()),
            ("include".to_owned(), "Encounter/e1".to_owned())
        ]
    );

    // Round 1 follows the encounter to its practitioner and location, and finds the
    // Provenances of the observation and of the encounter; round 2 follows a Provenance's
    // agent (prov1's dr2, prov2's Device dev1). Each resource once, matches first.
    let (status, b) = search(
        &s,
        "Observation?_id=o1&_include=Observation:encounter\
         &_include:iterate=Encounter:participant&_include:iterate=Encounter:location\
         &_revinclude:iterate=Provenance:target&_include:iterate=Provenance:agent",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        entries(&b)[0],
        ("match".to_owned(), "Observation/o1".to_owned())
    );
    assert_eq!(
        included(&b),
        [
            "Device/dev1",
            "Encounter/e1",
            "Location/loc1",
            "Practitioner/dr1",
            "Practitioner/dr2",
            "Provenance/prov1",
            "Provenance/prov2",
        ],
        "{b}"
    );
    assert_eq!(b["total"], 1, "included resources are not counted");
    for e in b["entry"].as_array().unwrap() {
        assert_valid_r4(&e["resource"]);
    }

    // A target type narrows what an iterated link reaches: the Provenances' agents that are
    // Practitioners, not the Device.
    let (status, b) = search(
        &s,
        "Observation?_id=o1&_revinclude:iterate=Provenance:target\
         &_include:iterate=Provenance:agent:Practitioner",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        included(&b),
        ["Practitioner/dr2", "Provenance/prov1", "Provenance/prov2"],
        "{b}"
    );

    // References back into the answer end the rounds: a Provenance's targets are already in.
    let (status, b) = search(
        &s,
        "Encounter?_id=e1&_revinclude:iterate=Provenance:target&_include:iterate=Provenance:target",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        included(&b),
        ["Observation/o1", "Provenance/prov1", "Provenance/prov2"],
        "prov2 leads to o1, whose Provenance prov1 joins in the next round: {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_parameters_are_checked_and_refusals_name_them() {
    let s = Server::start(|_| {}).await;
    seed(&s).await;
    for (query, why) in [
        (
            "Observation?_include=Encounter:participant",
            "search parameter _include: Encounter:participant is not a reference parameter of Observation",
        ),
        (
            "Observation?_include:recurse=Encounter:participant",
            "search parameter _include:recurse: unknown modifier :recurse (only :iterate is supported)",
        ),
        (
            "Observation?_include:iterate=Encounter:status",
            "search parameter _include:iterate: Encounter:status is not Type:parameter naming a reference parameter of Type",
        ),
        (
            "Observation?_include:iterate=Observation:patient:Practitioner",
            "search parameter _include:iterate: Observation:patient:Practitioner: wrong target type",
        ),
        (
            "Observation?_include:iterate=Provenance:agent:Starship",
            "search parameter _include:iterate: Provenance:agent:Starship: wrong target type",
        ),
        (
            "Observation?_revinclude=Provenance:agent:Practitioner",
            "search parameter _revinclude: Provenance:agent:Practitioner does not refer to Observation",
        ),
        (
            "Observation?_revinclude:iterate=Starship:target",
            "search parameter _revinclude:iterate: \"Starship:target\" is not Type:parameter naming a reference parameter of Type",
        ),
    ] {
        refused(&s, query, why).await;
    }

    // A client that may not read Provenance may not ask for them.
    let token = s
        .client("system/Observation.read system/Encounter.read")
        .await;
    let a = s
        .call(
            Method::GET,
            "/fhir/Observation?_id=o1&_revinclude:iterate=Provenance:target",
            &token,
            &[],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revinclude_or_a_chain_past_its_limit_says_so() {
    let s = Server::start(|_| {}).await;
    s.put(patient("p1", "Walker")).await;
    let many: Vec<_> = (0..1001)
        .map(|i| {
            let o = observation(&format!("o{i}"), "p1", "5.4");
            causeway_engine::destinations::fhir_store::resource_put(
                "Observation",
                &format!("o{i}"),
                o,
                None,
            )
            .expect("put")
        })
        .collect();
    s.store.put_resources(many).await.expect("stored");
    // A chain may not match more than 1,000 resources: its matches become one clause.
    let (status, b) = search(&s, "Patient?_has:Observation:patient:code=2345-7").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["issue"][0]["diagnostics"],
        "search parameter _has:Observation:patient:code: matches 1001 Observation resources, \
         more than the 1000 a chain may; narrow it"
    );
    let (status, b) = search(&s, "Patient?_id=p1&_revinclude=Observation:patient").await;
    assert_eq!(status, StatusCode::OK);
    let all = entries(&b);
    assert_eq!(all.iter().filter(|(m, _)| m == "include").count(), 1000);
    let last = &b["entry"][all.len() - 1];
    assert_eq!(last["search"]["mode"], "outcome", "{last}");
    assert_eq!(
        last["resource"]["issue"][0]["diagnostics"],
        "only part of the included resources are in this answer: \
         Observation:patient (1000 of 1001, the most recently updated)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_stops_after_four_rounds_and_says_so() {
    let s = Server::start(|_| {}).await;
    s.put(patient("p1", "Walker")).await;
    s.put(observation("o1", "p1", "5.4")).await;
    // A chain of Provenances, each of the one before: pv0 of o1, pv1 of pv0, ... pv5 of pv4.
    for i in 0..6 {
        let target = if i == 0 {
            "Observation/o1".to_owned()
        } else {
            format!("Provenance/pv{}", i - 1)
        };
        s.put(json!({
            "resourceType": "Provenance", "id": format!("pv{i}"),
            "target": [{"reference": target}],
            "recorded": "2024-03-02T07:31:00Z",
            "agent": [{"who": {"reference": "Patient/p1"}}]
        }))
        .await;
    }
    let (status, b) = search(
        &s,
        "Observation?_id=o1&_revinclude:iterate=Provenance:target",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        included(&b),
        [
            "Provenance/pv0",
            "Provenance/pv1",
            "Provenance/pv2",
            "Provenance/pv3"
        ],
        "{b}"
    );
    let last = b["entry"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["search"]["mode"], "outcome", "{last}");
    assert_eq!(
        last["resource"]["issue"][0]["diagnostics"],
        "only part of the included resources are in this answer: \
         _include:iterate and _revinclude:iterate stopped after 4 rounds"
    );
}

/// The ids of the matches, sorted.
fn matches(bundle: &Value) -> Vec<String> {
    let mut out: Vec<String> = entries(bundle)
        .into_iter()
        .filter(|(mode, _)| mode == "match")
        .map(|(_, key)| key)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_parameters_and_has_search_through_references() {
    let s = Server::start(|_| {}).await;
    seed(&s).await;
    s.put(patient("p2", "Okafor")).await;
    s.put(observation("o2", "p2", "6.1")).await;
    let mut o5 = observation("o5", "p2", "13.2");
    o5["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "718-7"}]});
    s.put(o5).await;

    for (query, want) in [
        // Forward: the observations of the patient with this MRN, or this name.
        (
            "Observation?patient.identifier=urn:example:mrn%7CMRN-p1",
            &["Observation/o1"][..],
        ),
        (
            "Observation?subject:Patient.name=okafor",
            &["Observation/o2", "Observation/o5"][..],
        ),
        (
            "Observation?patient.name=okafor&code=718-7",
            &["Observation/o5"][..],
        ),
        (
            "Observation?patient.identifier=MRN-p1,MRN-p2&code=2345-7",
            &["Observation/o1", "Observation/o2"][..],
        ),
        (
            "Encounter?participant:Practitioner.name=welby",
            &["Encounter/e1"][..],
        ),
        // Reverse: the patients with a hemoglobin result; with _id, only those it names.
        (
            "Patient?_has:Observation:patient:code=718-7",
            &["Patient/p2"][..],
        ),
        (
            "Patient?_has:Observation:patient:code=2345-7",
            &["Patient/p1", "Patient/p2"][..],
        ),
        (
            "Patient?_has:Observation:patient:code=2345-7&_id=p1",
            &["Patient/p1"][..],
        ),
        (
            "Patient?_has:Observation:patient:code=718-7&_has:Observation:patient:code=2345-7",
            &["Patient/p2"][..],
        ),
        // A chain that finds nothing: an empty answer, not an error.
        ("Observation?patient.identifier=MRN-nobody", &[][..]),
        ("Patient?_has:Observation:patient:code=0000-0", &[][..]),
    ] {
        let (status, b) = search(&s, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {b}");
        assert_eq!(matches(&b), want, "{query}: {b}");
        assert_eq!(b["total"], want.len(), "{query}");
    }

    for (query, why) in [
        (
            "Observation?subject.name=walker",
            "search parameter subject.name: subject may refer to several types: name one, as in subject:Patient.name",
        ),
        (
            "Observation?patient.identifier.system=x",
            "search parameter patient.identifier.system: a chain of more than one link is not supported",
        ),
        (
            "Observation?code.name=x",
            "search parameter code.name: code is not a reference parameter of Observation, which a chain needs",
        ),
        (
            "Observation?patient:Practitioner.name=x",
            "search parameter patient:Practitioner.name: patient cannot refer to Practitioner",
        ),
        (
            "Observation?patient.bogus=1",
            "search parameter patient.bogus: unknown search parameter for Patient",
        ),
        (
            "Patient?_has:Observation:code:code=1",
            "search parameter _has:Observation:code:code: expected _has:Type:parameter:search, the parameter a reference parameter of Type",
        ),
        (
            "Encounter?_has:Observation:patient:code=718-7",
            "search parameter _has:Observation:patient:code: Observation.patient does not refer to Encounter",
        ),
    ] {
        refused(&s, query, why).await;
    }

    // A chain searches its type: the caller must be allowed to read it.
    let token = s.client("system/Observation.read").await;
    let a = s
        .call(
            Method::GET,
            "/fhir/Observation?patient.identifier=MRN-p1",
            &token,
            &[],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
}

/// An Observation of `patient` with one coding, a time and an optional category.
fn measured(id: &str, patient: &str, coding: Value, at: &str, category: Option<&str>) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at,
        "valueQuantity": {"value": 1.0}
    });
    if let Some(c) = category {
        o["category"] = json!([{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c
        }]}]);
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lastn_gives_the_most_recent_observations_of_each_code() {
    let s = Server::start(|_| {}).await;
    s.put(patient("p1", "Walker")).await;
    s.put(patient("p2", "Okafor")).await;
    let hr = json!({"system": "http://loinc.org", "code": "8867-4"});
    let glucose = json!({"system": "http://loinc.org", "code": "2345-7"});
    let pain = json!({"system": "urn:example:local", "code": "PAIN"});
    for (id, patient, coding, at, category) in [
        (
            "hr1",
            "p1",
            &hr,
            "2024-03-02T07:00:00Z",
            Some("vital-signs"),
        ),
        (
            "hr3",
            "p1",
            &hr,
            "2024-03-02T09:00:00Z",
            Some("vital-signs"),
        ),
        (
            "hr2",
            "p1",
            &hr,
            "2024-03-02T08:00:00Z",
            Some("vital-signs"),
        ),
        (
            "g1",
            "p1",
            &glucose,
            "2024-03-01T07:30:00Z",
            Some("laboratory"),
        ),
        (
            "g2",
            "p1",
            &glucose,
            "2024-03-02T07:30:00Z",
            Some("laboratory"),
        ),
        ("pain1", "p1", &pain, "2024-02-20T10:00:00Z", None),
        (
            "hr-p2",
            "p2",
            &hr,
            "2024-03-03T09:00:00Z",
            Some("vital-signs"),
        ),
    ] {
        s.put(measured(id, patient, coding.clone(), at, category))
            .await;
    }
    let ids = |b: &Value| -> Vec<String> {
        entries(b)
            .into_iter()
            .filter(|(mode, _)| mode == "match")
            .map(|(_, key)| key.trim_start_matches("Observation/").to_owned())
            .collect()
    };
    for (query, want) in [
        // The latest of each code, the most recent code first.
        ("patient=p1", &["hr3", "g2", "pain1"][..]),
        ("patient=p1&max=2", &["hr3", "hr2", "g2", "g1", "pain1"][..]),
        (
            "subject=Patient/p1&category=vital-signs&max=5",
            &["hr3", "hr2", "hr1"][..],
        ),
        ("patient=p1&code=2345-7", &["g2"][..]),
        (
            "patient.identifier=urn:example:mrn%7CMRN-p1&code=8867-4",
            &["hr3"][..],
        ),
        ("patient=p2", &["hr-p2"][..]),
        ("patient=nobody", &[][..]),
    ] {
        let (status, b) = search(&s, &format!("Observation/$lastn?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {b}");
        assert_eq!(ids(&b), want, "{query}: {b}");
        assert_eq!(b["total"], want.len(), "{query}");
    }
    let (_, b) = search(&s, "Observation/$lastn?patient=p1&_elements=code").await;
    assert!(
        b["entry"][0]["resource"].get("valueQuantity").is_none(),
        "_elements applies: {b}"
    );

    for (query, why) in [
        (
            "category=vital-signs",
            "$lastn needs the patient: patient=[id] or subject=Patient/[id]",
        ),
        (
            "patient=p1&max=0",
            "$lastn parameter max: expected a whole number from 1 to 1000",
        ),
        (
            "patient=p1&_sort=date",
            "$lastn parameter _sort is not supported: the operation orders and groups its answer itself",
        ),
        (
            "patient=p1&bogus=1",
            "search parameter bogus: unknown search parameter for Observation",
        ),
    ] {
        refused(&s, &format!("Observation/$lastn?{query}"), why).await;
    }
    let token = s.client("system/Patient.read").await;
    let a = s
        .call(
            Method::GET,
            "/fhir/Observation/$lastn?patient=p1",
            &token,
            &[],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    // It is announced.
    let (_, capability) = search(&s, "metadata").await;
    let observation = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()
        .clone();
    assert_eq!(
        observation["operation"][0]["name"], "lastn",
        "{observation}"
    );
}

/// A Patient with an optional MRN, a name, a birth date and an optional gender.
fn person(
    id: &str,
    mrn: Option<&str>,
    family: &str,
    given: &str,
    birth: &str,
    gender: Option<&str>,
) -> Value {
    let mut p = json!({
        "resourceType": "Patient", "id": id,
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth
    });
    if let Some(m) = mrn {
        p["identifier"] = json!([{"system": "urn:example:mrn", "value": m}]);
    }
    if let Some(g) = gender {
        p["gender"] = json!(g);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_match_grades_candidates_by_identifier_and_demographics() {
    let s = Server::start(|_| {}).await;
    for p in [
        person(
            "a1",
            Some("A1"),
            "Müller",
            "Anna",
            "1980-05-17",
            Some("female"),
        ),
        person("a2", None, "Muller", "Anna", "1980-05-17", None),
        person("a3", None, "Schmidt", "Anna", "1980-05-17", Some("female")),
        person("a4", None, "Müller", "Lena", "1980-05-17", Some("female")),
        person("a5", None, "Müller", "Anna", "1981-01-01", Some("female")),
        person(
            "b1",
            Some("B1"),
            "Okafor",
            "Ruth",
            "1975-02-02",
            Some("female"),
        ),
    ] {
        s.put(p).await;
    }
    let matching = |record: Value, extra: Vec<Value>| {
        let s = &s;
        async move {
            let mut parameter = vec![json!({"name": "resource", "resource": record})];
            parameter.extend(extra);
            let a = s
                .call(
                    Method::POST,
                    "/fhir/Patient/$match",
                    &s.admin,
                    &[],
                    Some(json!({"resourceType": "Parameters", "parameter": parameter})),
                )
                .await;
            (a.status, a.body)
        }
    };
    let graded = |b: &Value| -> Vec<(String, String, f64)> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["resource"]["id"].as_str().unwrap().to_owned(),
                    e["search"]["extension"][0]["valueCode"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    e["search"]["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let g = |id: &str, grade: &str, score: f64| (id.to_owned(), grade.to_owned(), score);
    let record = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:example:mrn", "value": "A1"}],
        "name": [{"family": "Müller", "given": ["Anna"]}],
        "birthDate": "1980-05-17", "gender": "female"
    });

    // The MRN is certain; then the demographics, best first; a5 (another birth date) is out.
    let (status, b) = matching(record.clone(), vec![]).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        graded(&b),
        [
            g("a1", "certain", 1.0),
            g("a2", "probable", 0.9),
            g("a4", "possible", 0.6),
            g("a3", "possible", 0.5),
        ],
        "{b}"
    );
    assert_eq!(b["total"], 4);
    for e in b["entry"].as_array().unwrap() {
        assert_valid_r4(&e["resource"]);
        assert_eq!(e["search"]["mode"], "match");
    }
    let mut bundle = b.clone();
    bundle["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .for_each(|e| e["resource"] = json!({"resourceType": "Patient", "id": "x"}));
    assert_valid_r4(&bundle);

    // Without the MRN: demographics only.
    let mut no_mrn = record.clone();
    no_mrn.as_object_mut().unwrap().remove("identifier");
    let (_, b) = matching(no_mrn, vec![]).await;
    assert_eq!(
        graded(&b),
        [
            g("a1", "probable", 0.95),
            g("a2", "probable", 0.9),
            g("a4", "possible", 0.6),
            g("a3", "possible", 0.5),
        ]
    );
    // count; onlyCertainMatches.
    let (_, b) = matching(
        record.clone(),
        vec![json!({"name": "count", "valueInteger": 2})],
    )
    .await;
    assert_eq!(
        graded(&b),
        [g("a1", "certain", 1.0), g("a2", "probable", 0.9)]
    );
    let only = json!({"name": "onlyCertainMatches", "valueBoolean": true});
    let (_, b) = matching(record.clone(), vec![only.clone()]).await;
    assert_eq!(graded(&b), [g("a1", "certain", 1.0)]);
    // A second record with the same MRN: two certain matches are a duplicate for a person to
    // resolve, so onlyCertainMatches finds none.
    s.put(person(
        "a6",
        Some("A1"),
        "Müller",
        "Anna",
        "1980-05-17",
        Some("female"),
    ))
    .await;
    let (_, b) = matching(record.clone(), vec![only]).await;
    assert_eq!(graded(&b), [], "{b}");

    for (body, why) in [
        (
            json!({"resourceType": "Parameters", "parameter": []}),
            "Patient/$match needs the parameter resource (a Patient)",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Observation"}}]}),
            "the resource parameter of Patient/$match must be a Patient",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "gender": "female"}}]}),
            "Patient/$match needs an identifier, or a birth date with a family or given name",
        ),
        (
            json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": record}, {"name": "count", "valueInteger": 0}]}),
            "count needs a valueInteger from 1 to 100",
        ),
        (
            json!({"resourceType": "Patient"}),
            "the body of Patient/$match must be a Parameters resource",
        ),
    ] {
        let a = s
            .call(
                Method::POST,
                "/fhir/Patient/$match",
                &s.admin,
                &[],
                Some(body),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
        assert_eq!(a.body["issue"][0]["diagnostics"], why);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_takes_type_since_and_count() {
    let s = Server::start(|_| {}).await;
    seed(&s).await;
    s.put(observation("o2", "p1", "6.0")).await;
    let keys = |b: &Value| -> Vec<String> {
        let mut out: Vec<String> = entries(b).into_iter().map(|(_, k)| k).collect();
        out.sort();
        out
    };
    let (status, b) = search(&s, "Patient/p1/$everything").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        keys(&b),
        [
            "Encounter/e1",
            "Observation/o1",
            "Observation/o2",
            "Patient/p1"
        ],
        "{b}"
    );
    let (_, b) = search(&s, "Patient/p1/$everything?_type=Observation").await;
    assert_eq!(keys(&b), ["Observation/o1", "Observation/o2"]);
    let (_, b) = search(&s, "Patient/p1/$everything?_type=Patient,Encounter").await;
    assert_eq!(keys(&b), ["Encounter/e1", "Patient/p1"]);

    // `_since`: what changed after the last sync, the patient only if it did. The clock
    // moves past the seed's writes before the sync time is taken.
    let seeded = causeway_store::UnixMillis::now();
    eventually("the clock to move past the seed", || async {
        (causeway_store::UnixMillis::now().0 > seeded.0).then_some(())
    })
    .await;
    let since = jiff::Timestamp::from_millisecond(causeway_store::UnixMillis::now().0)
        .unwrap()
        .to_string();
    s.put(observation("o3", "p1", "7.0")).await;
    let (status, b) = search(&s, &format!("Patient/p1/$everything?_since={since}")).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(keys(&b), ["Observation/o3"], "{b}");

    // `_count`: each type capped, with the warning entry.
    let (_, b) = search(&s, "Patient/p1/$everything?_type=Observation&_count=2").await;
    let matched: Vec<_> = entries(&b)
        .into_iter()
        .filter(|(m, _)| m == "match")
        .collect();
    assert_eq!(matched.len(), 2, "{b}");
    assert_eq!(
        b["entry"][2]["resource"]["issue"][0]["diagnostics"],
        "only the most recent resources of these types are included: Observation (2 of 3)"
    );

    for (query, why) in [
        (
            "_type=Practitioner",
            "$everything parameter _type: Practitioner is not in the Patient compartment",
        ),
        (
            "_since=2024-03-01",
            "$everything parameter _since: \"2024-03-01\" is not a FHIR instant (e.g. 2024-03-01T00:00:00Z)",
        ),
        (
            "_count=0",
            "$everything parameter _count: expected a whole number above 0",
        ),
        (
            "start=2024-01-01",
            "$everything parameter start is not supported (_type, _since, _count)",
        ),
    ] {
        refused(&s, &format!("Patient/p1/$everything?{query}"), why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ucum_quantity_is_found_in_any_unit_of_its_kind() {
    let s = Server::start(|_| {}).await;
    s.put(patient("p1", "Walker")).await;
    let ucum = "http://unitsofmeasure.org";
    for (id, quantity) in [
        (
            "mgdl",
            json!({"value": 90, "system": ucum, "code": "mg/dL", "unit": "mg/dL"}),
        ),
        (
            "gl",
            json!({"value": 0.9, "system": ucum, "code": "g/L", "unit": "g/L"}),
        ),
        (
            "mmol",
            json!({"value": 5.0, "system": ucum, "code": "mmol/L", "unit": "mmol/L"}),
        ),
        ("plain", json!({"value": 90, "unit": "mg/dL"})),
    ] {
        let mut o = observation(id, "p1", "1");
        o["valueQuantity"] = quantity;
        // The store takes the resource through the same indexing as the feeds.
        s.put(o).await;
    }
    for (query, want) in [
        // The same amount in other units: each UCUM value, whatever unit it was written in.
        ("0.9|http://unitsofmeasure.org|g/L", &["gl", "mgdl"][..]),
        ("90|http://unitsofmeasure.org|mg/dL", &["gl", "mgdl"][..]),
        ("ge850|http://unitsofmeasure.org|mg/L", &["gl", "mgdl"][..]),
        ("5000|http://unitsofmeasure.org|umol/L", &["mmol"][..]),
        // Another kind (a substance amount is not a mass): nothing.
        ("gt0|http://unitsofmeasure.org|mol/L", &["mmol"][..]),
        // Without a system the unit is compared as written, UCUM or not.
        ("90||mg/dL", &["mgdl", "plain"][..]),
        // Without a unit the numbers as written: the canonical values are not among them.
        ("900", &[][..]),
        ("90", &["mgdl", "plain"][..]),
        // A UCUM code this server cannot convert is compared as written.
        ("90|http://unitsofmeasure.org|[degF]", &[][..]),
    ] {
        let (status, b) = search(
            &s,
            &format!(
                "Observation?value-quantity={}",
                query
                    .replace('|', "%7C")
                    .replace('[', "%5B")
                    .replace(']', "%5D")
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}: {b}");
        let got: Vec<String> = matches(&b)
            .into_iter()
            .map(|k| k.trim_start_matches("Observation/").to_owned())
            .collect();
        assert_eq!(got, want, "{query}: {b}");
    }
}
