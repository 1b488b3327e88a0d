//! FHIR Bulk Data export, end to end: the real router on a real socket (port 0) over a real
//! SQLite store in a tempdir, asked by a real HTTP client with session cookies and SMART
//! backend-services tokens, as a Bulk Data client would.
//!
//! Map:
//! - the kick-off / poll / download loop, every NDJSON line checked against the official R4
//!   JSON schema (`../shared/fhir-r4/fhir.schema.json`), and its audit records
//! - `_type`, `_since`, `_until`, `_typeFilter`, `_elements` and `patient`; the Patient and
//!   Group compartments
//! - refusals: 400s with an OperationOutcome, 401 without a token, 403 by scope, 404, 429
//! - cancel (DELETE), the cap on running jobs, expiry, and a restart forgetting jobs
//!
//! Jobs are held running with [`ExportConfig::hold`], never by timing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use causeway_server::fhir::export::{ExportConfig, Exports};
use causeway_store::UnixMillis;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

mod support;

use support::*;

fn job_of(status_url: &str) -> &str {
    status_url.rsplit('/').next().expect("job id")
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_export_is_kicked_off_polled_and_downloaded_as_valid_r4_ndjson() {
    let s = Server::start(|_| {}).await;
    s.seed().await;
    let client = s.client("system/*.read").await;
    let before = UnixMillis::now();
    let status = s.started("/fhir/$export", &client).await;
    assert!(
        status.starts_with(&format!("{}/fhir/_export/", s.base)),
        "{status}"
    );
    let m = s.manifest(&status, &client).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(m["request"], format!("{}/fhir/$export", s.base));
    assert_eq!(m["error"], json!([]));
    let tt: jiff::Timestamp = m["transactionTime"].as_str().unwrap().parse().unwrap();
    assert!(tt.as_millisecond() >= before.0);

    let files = s.files(&m, &client).await;
    // Every live resource of every type, once; the deleted o3 and the Group are not exported.
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2", "p3"]),
            ("Practitioner", &["dr1"]),
        ])
    );
    // Each line is what GET /fhir/{type}/{id} serves.
    let read = s
        .call(Method::GET, "/fhir/Patient/p3", &client, &[], None)
        .await;
    let p3 = files["Patient"].iter().find(|r| r["id"] == "p3").unwrap();
    assert_eq!(&read.body, p3);
    assert_eq!(p3["name"][0]["family"], "Müller");

    // Downloads need a token, and only files of the manifest exist.
    let url = m["output"][0]["url"].as_str().unwrap();
    let a = s.call(Method::GET, url, &Cred::None, &[], None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers[WWW_AUTHENTICATE], "Bearer");
    let job = job_of(&status);
    for bad in ["Nope.ndjson", "..%2F..%2Fstore.db", "Patient.2.ndjson"] {
        let a = s
            .call(
                Method::GET,
                &format!("/fhir/_export/{job}/{bad}"),
                &client,
                &[],
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{bad}: {}", a.text);
        a.issue();
    }

    // Audited: the kick-off, the completion (types and counts only), each download.
    let kick = s.audit("$export").await;
    assert_eq!(kick.len(), 1, "{kick:?}");
    assert_eq!(
        (
            kick[0].agent.as_str(),
            kick[0].action.as_str(),
            kick[0].outcome
        ),
        (CLIENT, "operation", 202)
    );
    let done = s.audit(&format!("_export/{job}")).await;
    let completion = done
        .iter()
        .find(|e| {
            e.query
                .as_deref()
                .is_some_and(|q| q.starts_with("complete"))
        })
        .expect("a completion record");
    assert_eq!(completion.agent, CLIENT);
    assert_eq!(completion.outcome, 200);
    assert_eq!(
        completion.query.as_deref(),
        Some(
            "complete Encounter.ndjson=1,Observation.ndjson=2,Patient.ndjson=3,Practitioner.ndjson=1"
        )
    );
    for file in ["Patient.ndjson", "Observation.ndjson", "Encounter.ndjson"] {
        let downloads = s.audit(&format!("_export/{job}/{file}")).await;
        assert!(
            downloads
                .iter()
                .any(|e| e.outcome == 200 && e.agent == CLIENT),
            "{file}: {downloads:?}"
        );
    }

    // The CapabilityStatement advertises the operations.
    let cs = s
        .call(Method::GET, "/fhir/metadata", &client, &[], None)
        .await;
    let system_ops: Vec<&str> = cs.body["rest"][0]["operation"]
        .as_array()
        .expect("system operations")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(system_ops.contains(&"export"), "{system_ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_and_since_choose_what_is_exported() {
    let s = Server::start(|_| {}).await;
    s.seed().await;
    let admin = s.admin.clone();

    let status = s
        .started("/fhir/$export?_type=Patient,Observation", &admin)
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2", "p3"])
        ])
    );

    // Later writes: p1 updated, o4 new. `_since` the moment before them sees only those.
    let seeded = UnixMillis::now();
    eventually("the clock to move past the seed", || async {
        (UnixMillis::now().0 > seeded.0).then_some(())
    })
    .await;
    let since = UnixMillis::now();
    let mut p1 = patient("p1", "Walker-Jones");
    p1["gender"] = json!("female");
    s.put(p1).await;
    s.put(observation("o4", "p2", "6.1")).await;
    let since_text = jiff::Timestamp::from_millisecond(since.0)
        .unwrap()
        .to_string();
    let status = s
        .started(
            &format!("/fhir/$export?_since={}", since_text.replace('+', "%2B")),
            &admin,
        )
        .await;
    let m = s.manifest(&status, &admin).await;
    let files = s.files(&m, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[("Observation", &["o4"]), ("Patient", &["p1"])])
    );
    assert_eq!(files["Patient"][0]["name"][0]["family"], "Walker-Jones");
    assert_eq!(files["Patient"][0]["meta"]["versionId"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_group_exports_hold_their_compartments() {
    let s = Server::start(|_| {}).await;
    s.seed().await;
    let admin = s.admin.clone();

    // Every patient and whatever refers to one; the Practitioner is no patient's.
    let status = s.started("/fhir/Patient/$export", &admin).await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2", "p3"]),
        ])
    );

    // The group's active members (p1, p3; p2 is inactive) and their compartments (o3 is
    // deleted).
    let status = s.started("/fhir/Group/g1/$export", &admin).await;
    let m = s.manifest(&status, &admin).await;
    assert_eq!(m["request"], format!("{}/fhir/Group/g1/$export", s.base));
    let files = s.files(&m, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o1"]),
            ("Patient", &["p1", "p3"]),
        ])
    );
    let status = s
        .started("/fhir/Group/g1/$export?_type=Observation", &admin)
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(ids(&files), expect(&[("Observation", &["o1"])]));

    // A Group made through the API is exported the same way; a malformed one is refused.
    let made = s
        .call(
            Method::POST,
            "/fhir/Group",
            &admin,
            &[],
            Some(json!({
                "resourceType": "Group", "type": "person", "actual": true, "name": "ward 12",
                "member": [{"entity": {"reference": "Patient/p2"}}]
            })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let gid = made.body["id"].as_str().expect("id").to_owned();
    let read = s
        .call(
            Method::GET,
            &format!("/fhir/Group/{gid}"),
            &admin,
            &[],
            None,
        )
        .await;
    assert_eq!(read.body["name"], "ward 12");
    let status = s
        .started(&format!("/fhir/Group/{gid}/$export"), &admin)
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[("Observation", &["o2"]), ("Patient", &["p2"])])
    );
    for (body, why) in [
        (
            json!({"resourceType": "Group", "actual": true}),
            "Group.type is required: one of person, animal, practitioner, device, medication, substance",
        ),
        (
            json!({"resourceType": "Group", "type": "person", "actual": true, "members": []}),
            "Group.members is not an element of Group",
        ),
        (
            json!({"resourceType": "Group", "type": "person", "actual": true, "member": [{"inactive": true}]}),
            "Group.member[0].entity.reference is required",
        ),
    ] {
        let a = s
            .call(Method::POST, "/fhir/Group", &admin, &[], Some(body))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
        assert_eq!(a.issue().1, why);
    }

    // An unknown group; a type outside the compartment.
    let a = s.kick_off("/fhir/Group/nope/$export", &admin).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(
        a.issue(),
        ("not-found".into(), "Group/nope is not known".into())
    );
    let a = s
        .kick_off("/fhir/Patient/$export?_type=Practitioner", &admin)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(
        a.issue().1,
        "_type: Practitioner is not in the Patient compartment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kick_offs_are_400_with_an_operation_outcome_naming_the_problem() {
    // Room for the accepted kick-offs below, which do not wait for one another.
    let s = Server::start(|c| c.max_jobs = 100).await;
    let admin = s.admin.clone();
    let a = s
        .call(Method::GET, "/fhir/$export", &admin, &[], None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.issue(),
        (
            "invalid".into(),
            "$export needs the header Prefer: respond-async".into()
        )
    );
    for (query, why) in [
        (
            "_outputFormat=text/csv",
            "_outputFormat \"text/csv\" is not supported (application/fhir+ndjson)",
        ),
        (
            "_type=Patient,Starship",
            "_type: Starship is not a resource type this server exports",
        ),
        (
            "_since=2024-03-01",
            "_since \"2024-03-01\" is not a FHIR instant (e.g. 2024-03-01T00:00:00Z)",
        ),
        (
            "_since=yesterday",
            "_since \"yesterday\" is not a FHIR instant (e.g. 2024-03-01T00:00:00Z)",
        ),
        (
            "includeAssociatedData=LatestProvenanceResources",
            "$export parameter includeAssociatedData is not supported (Prefer: handling=lenient ignores it)",
        ),
        ("_cont=1", "$export parameter _cont is not supported"),
        (
            "_typeFilter=Observation%3F_sort%3Ddate",
            "_typeFilter: _sort shapes search results; here the query only selects resources",
        ),
        (
            "_typeFilter=Observation%3Fbogus%3D1",
            "_typeFilter: search parameter bogus: unknown search parameter for Observation",
        ),
        (
            "_typeFilter=Starship%3Fname%3Dx",
            "_typeFilter: \"Starship\" is not a supported resource type",
        ),
        (
            "_type=Patient&_typeFilter=Observation%3Fcode%3D1",
            "_typeFilter: Observation is not among the types of _type",
        ),
        (
            "_elements=Observation.value.unit",
            "_elements: \"Observation.value.unit\" is not an element name (top-level elements, e.g. code or Observation.value)",
        ),
        (
            "_elements=Starship.name",
            "_elements: Starship is not a resource type this server exports",
        ),
        (
            "_until=2024-03-01",
            "_until \"2024-03-01\" is not a FHIR instant (e.g. 2024-03-01T00:00:00Z)",
        ),
        (
            "_since=2024-03-02T00:00:00Z&_until=2024-03-01T00:00:00Z",
            "_until is before _since",
        ),
        (
            "patient=Patient/p1",
            "patient applies to Patient and Group exports, not to a system export",
        ),
    ] {
        let a = s.kick_off(&format!("/fhir/$export?{query}"), &admin).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.text);
        assert_eq!(a.issue(), ("invalid".into(), why.into()), "{query}");
    }
    // The accepted spellings of NDJSON, and leniency for what is not implemented.
    for format in ["application/fhir%2Bndjson", "application/ndjson", "ndjson"] {
        s.started(&format!("/fhir/$export?_outputFormat={format}"), &admin)
            .await;
    }
    let a = s
        .call(
            Method::GET,
            "/fhir/$export?includeAssociatedData=LatestProvenanceResources&_type=Patient",
            &admin,
            &[("prefer", "respond-async, handling=lenient")],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);

    // POST with a Parameters body: the same parameters, the same checks.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"},
        {"name": "_since", "valueInstant": "2020-01-01T00:00:00Z"}
    ]});
    let a = s
        .call(
            Method::POST,
            "/fhir/$export",
            &admin,
            &[("prefer", "respond-async")],
            Some(params),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let a = s
        .call(
            Method::POST,
            "/fhir/Patient/$export",
            &admin,
            &[("prefer", "respond-async")],
            Some(json!({"resourceType": "Patient"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(
        a.issue().1,
        "the body of a POST $export must be a Parameters resource"
    );
    // An unknown job.
    let a = s
        .call(Method::GET, "/fhir/_export/nope", &admin, &[], None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.issue().1, "export nope is not known");
}

/// An Observation of `patient` with a hemoglobin code (the seed's are glucose).
fn hemoglobin(id: &str, patient: &str) -> Value {
    let mut o = observation(id, patient, "13.2");
    o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]});
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_filters_narrow_each_type_and_a_resource_matching_several_is_written_once() {
    let s = Server::start(|_| {}).await;
    s.seed().await;
    s.put(hemoglobin("o5", "p1")).await;
    s.put(hemoglobin("o6", "p2")).await;
    let admin = s.admin.clone();
    let export = |query: &'static str| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let status = s.started(&format!("/fhir/$export?{query}"), &admin).await;
            let m = s.manifest(&status, &admin).await;
            (m.clone(), s.files(&m, &admin).await)
        }
    };

    // One filter.
    let (_, files) = export("_type=Observation&_typeFilter=Observation%3Fcode%3D718-7").await;
    assert_eq!(ids(&files), expect(&[("Observation", &["o5", "o6"])]));

    // Two filters of one type: either may match; o5 matches both and is written once.
    let (m, files) = export(
        "_type=Observation&_typeFilter=Observation%3Fcode%3D718-7\
         &_typeFilter=Observation%3Fsubject%3DPatient%2Fp1",
    )
    .await;
    assert_eq!(ids(&files), expect(&[("Observation", &["o1", "o5", "o6"])]));
    assert_eq!(m["output"][0]["count"], 3, "{m}");

    // Bulk Data v1's comma-joined form; the comma of an OR inside a query stays in it. Types
    // without a filter (Encounter) are exported whole.
    let (_, files) = export(
        "_type=Patient,Observation,Encounter\
         &_typeFilter=Observation%3Fcode%3D718-7%2C9999-9,Patient%3Ffamily%3DWalker",
    )
    .await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o5", "o6"]),
            ("Patient", &["p1"]),
        ])
    );

    // A chained filter is answered at the kick-off: p1's observations by its name; one that
    // finds no patient exports none of its type.
    let (_, files) =
        export("_type=Observation,Encounter&_typeFilter=Observation%3Fpatient.family%3DWalker")
            .await;
    assert_eq!(
        ids(&files),
        expect(&[("Encounter", &["e1"]), ("Observation", &["o1", "o5"])])
    );
    let (m, _) =
        export("_type=Observation&_typeFilter=Observation%3Fpatient.family%3DNobody").await;
    assert_eq!(m["output"], json!([]), "{m}");

    // A filter and a Group: both hold (o6 is p2's, who is not an active member).
    let status = s
        .started(
            "/fhir/Group/g1/$export?_typeFilter=Observation%3Fcode%3D718-7",
            &admin,
        )
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o5"]),
            ("Patient", &["p1", "p3"]),
        ])
    );

    // A filter's `_id` and the patients' ids meet: nothing of p2 in a group without p2.
    let status = s
        .started(
            "/fhir/Group/g1/$export?_type=Patient&_typeFilter=Patient%3F_id%3Dp2",
            &admin,
        )
        .await;
    let m = s.manifest(&status, &admin).await;
    assert_eq!(m["output"], json!([]), "{m}");

    // Filters at the Patient level must name a type of the compartment.
    let a = s
        .kick_off(
            "/fhir/Patient/$export?_typeFilter=Practitioner%3Fname%3DWelby",
            &admin,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(
        a.issue().1,
        "_typeFilter: Practitioner is not in the Patient compartment"
    );

    // The audit record of a kick-off keeps the filters (its query is encrypted at rest).
    let records = s.audit("$export").await;
    assert!(
        records.iter().any(|r| r
            .query
            .as_deref()
            .is_some_and(|q| q.contains("_typeFilter=Observation%3Fcode%3D718-7"))),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_until_and_patient_shape_an_export() {
    let s = Server::start(|_| {}).await;
    s.seed().await;
    let admin = s.admin.clone();

    // `_elements`: bare names for every type, `Type.name` for one; what is left is tagged
    // SUBSETTED and keeps its id and meta.
    let status = s
        .started(
            "/fhir/$export?_type=Patient,Observation&_elements=Patient.gender,code",
            &admin,
        )
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    for p in &files["Patient"] {
        let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["resourceType", "id", "meta", "gender"]),
            "{p}"
        );
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED", "{p}");
    }
    for o in &files["Observation"] {
        assert!(
            o["code"].is_object() && o.get("valueQuantity").is_none(),
            "{o}"
        );
        assert!(o.get("subject").is_none(), "{o}");
    }

    // `_until`: nothing updated after it.
    let before_p4 = UnixMillis::now();
    eventually("the clock to move on", || async {
        (UnixMillis::now().0 > before_p4.0).then_some(())
    })
    .await;
    s.put(patient("p4", "Late")).await;
    let until = jiff::Timestamp::from_millisecond(before_p4.0)
        .unwrap()
        .to_string();
    let status = s
        .started(
            &format!(
                "/fhir/$export?_type=Patient&_until={}",
                until.replace('+', "%2B")
            ),
            &admin,
        )
        .await;
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(ids(&files), expect(&[("Patient", &["p1", "p2", "p3"])]));

    // `patient` (a POST, as the spec has it): those patients and their compartments.
    let post = |path: &'static str, refs: &'static [&'static str]| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let parameter: Vec<Value> = refs
                .iter()
                .map(|r| json!({"name": "patient", "valueReference": {"reference": r}}))
                .collect();
            s.call(
                Method::POST,
                path,
                &admin,
                &[("prefer", "respond-async")],
                Some(json!({"resourceType": "Parameters", "parameter": parameter})),
            )
            .await
        }
    };
    let a = post("/fhir/Patient/$export", &["Patient/p1", "Patient/p2"]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let status = a.headers["content-location"].to_str().unwrap().to_owned();
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Encounter", &["e1"]),
            ("Observation", &["o1", "o2"]),
            ("Patient", &["p1", "p2"]),
        ])
    );
    // At the Group level, `patient` picks some of the group's members.
    let a = post("/fhir/Group/g1/$export", &["Patient/p3"]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let status = a.headers["content-location"].to_str().unwrap().to_owned();
    let files = s.files(&s.manifest(&status, &admin).await, &admin).await;
    assert_eq!(ids(&files), expect(&[("Patient", &["p3"])]));
    // Patients the export cannot hold are named.
    for (path, refs, why) in [
        (
            "/fhir/Patient/$export",
            &["Patient/p1", "Patient/zz"][..],
            "patient: Patient/zz is not known",
        ),
        (
            "/fhir/Group/g1/$export",
            &["Patient/p2"][..],
            "patient: Patient/p2 is not an active member of Group/g1",
        ),
        (
            "/fhir/Patient/$export",
            &["Practitioner/dr1"][..],
            "patient: \"Practitioner/dr1\" is not a Patient reference (Patient/[id])",
        ),
    ] {
        let a = post(path, refs).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
        assert_eq!(a.issue().1, why);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_decide_what_a_client_may_export_and_jobs_are_their_owners() {
    let s = Server::start(|_| {}).await;
    s.seed().await;

    let a = s.kick_off("/fhir/$export", &Cred::None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(a.issue().0, "login");

    let write_only = s.client("system/Observation.write").await;
    let obs_only = s.client("system/Observation.read").await;
    for (cred, path, why) in [
        (
            &write_only,
            "/fhir/$export",
            "the access token's scopes do not allow to read any exported type",
        ),
        (
            &obs_only,
            "/fhir/$export?_type=Observation,Patient",
            "the access token's scopes do not allow to read Patient",
        ),
        (
            &obs_only,
            "/fhir/Patient/$export?_type=Observation",
            "the access token's scopes do not allow to read Patient",
        ),
        (
            &s.client("system/Patient.read system/Observation.read")
                .await,
            "/fhir/Group/g1/$export",
            "the access token's scopes do not allow to read Group",
        ),
    ] {
        let a = s.kick_off(path, cred).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.text);
        assert_eq!(a.issue(), ("forbidden".into(), why.into()), "{path}");
    }

    // Without `_type`, the types the token may read.
    let status = s.started("/fhir/$export", &obs_only).await;
    let files = s
        .files(&s.manifest(&status, &obs_only).await, &obs_only)
        .await;
    assert_eq!(ids(&files), expect(&[("Observation", &["o1", "o2"])]));

    // SMART v2 scopes work as v1's.
    let v2 = s.client("system/*.rs").await;
    let status = s.started("/fhir/Patient/$export", &v2).await;
    let m = s.manifest(&status, &v2).await;

    // The client's job is the client's (any of its tokens) and an admin's, not a viewer's.
    let a = s.call(Method::GET, &status, &s.viewer, &[], None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let url = m["output"][0]["url"].as_str().unwrap();
    let a = s.call(Method::GET, url, &s.viewer, &[], None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let a = s.call(Method::DELETE, &status, &s.viewer, &[], None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(
        s.call(Method::GET, &status, &obs_only, &[], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::GET, &status, &s.admin, &[], None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::GET, url, &s.admin, &[], None).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_a_running_export_and_removes_its_files() {
    let hold = Arc::new(Semaphore::new(0));
    let h = hold.clone();
    let s = Server::start(move |c| c.hold = Some(h)).await;
    s.seed().await;
    let admin = s.admin.clone();
    let status = s.started("/fhir/$export", &admin).await;
    let job = job_of(&status).to_owned();
    assert!(s.exports_dir.join(&job).is_dir(), "the job's directory");

    let a = s.call(Method::GET, &status, &admin, &[], None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.headers["x-progress"], "0 resources written");
    assert_eq!(a.headers["retry-after"], "2");

    let a = s.call(Method::DELETE, &status, &admin, &[], None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert!(!s.exports_dir.join(&job).exists(), "files removed");
    let a = s.call(Method::GET, &status, &admin, &[], None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let a = s.call(Method::DELETE, &status, &admin, &[], None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let deletes = s.audit(&format!("_export/{job}")).await;
    assert!(
        deletes
            .iter()
            .any(|e| e.action == "delete" && e.outcome == 202),
        "{deletes:?}"
    );

    // A completed job is deleted the same way.
    hold.add_permits(1000);
    let status = s.started("/fhir/$export?_type=Patient", &admin).await;
    s.manifest(&status, &admin).await;
    let job = job_of(&status).to_owned();
    assert!(s.exports_dir.join(&job).join("Patient.ndjson").is_file());
    let a = s.call(Method::DELETE, &status, &admin, &[], None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(!s.exports_dir.join(&job).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_jobs_run_at_once_and_the_next_is_429() {
    let hold = Arc::new(Semaphore::new(0));
    let h = hold.clone();
    let s = Server::start(move |c| {
        c.max_jobs = 2;
        c.hold = Some(h);
    })
    .await;
    s.seed().await;
    let admin = s.admin.clone();
    let first = s.started("/fhir/$export", &admin).await;
    let second = s.started("/fhir/Patient/$export", &admin).await;
    let a = s.kick_off("/fhir/$export", &admin).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(
        a.issue(),
        (
            "throttled".into(),
            "2 exports are running, the most this server runs at once; retry later".into()
        )
    );
    // The refusal is audited with its outcome.
    assert!(s.audit("$export").await.iter().any(|e| e.outcome == 429));

    // One finishes: a slot is free again.
    hold.add_permits(1);
    let done = eventually("one job to finish", || async {
        for url in [&first, &second] {
            if s.call(Method::GET, url, &admin, &[], None).await.status == StatusCode::OK {
                return Some(url.clone());
            }
        }
        None
    })
    .await;
    let third = s.started("/fhir/$export?_type=Patient", &admin).await;
    hold.add_permits(1000);
    for url in [&first, &second, &third] {
        s.manifest(url, &admin).await;
    }
    assert!(done == first || done == second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_expire_and_a_restart_forgets_old_jobs() {
    let s = Server::start(|c| c.file_expiry = Duration::from_millis(200)).await;
    s.seed().await;
    let admin = s.admin.clone();
    let status = s.started("/fhir/$export?_type=Patient", &admin).await;
    s.manifest(&status, &admin).await;
    let job = job_of(&status).to_owned();
    eventually("the export to expire", || async {
        let a = s.call(Method::GET, &status, &admin, &[], None).await;
        // The job is forgotten first, then its files go.
        (a.status == StatusCode::NOT_FOUND && !s.exports_dir.join(&job).exists()).then_some(())
    })
    .await;

    // What a previous process left is removed at start: its jobs are gone.
    let left = s.exports_dir.join("0123abcd");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("Patient.ndjson"), "{}\n").unwrap();
    let config = ExportConfig::new(s.exports_dir.parent().unwrap());
    assert_eq!(config.dir, s.exports_dir);
    Exports::new(config).expect("restart");
    assert!(!left.exists());
    assert!(s.exports_dir.is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_types_are_split_into_several_files() {
    let s = Server::start(|c| c.max_file_bytes = 300).await;
    s.seed().await;
    let admin = s.admin.clone();
    let status = s.started("/fhir/$export?_type=Patient", &admin).await;
    let m = s.manifest(&status, &admin).await;
    let outputs = m["output"].as_array().unwrap();
    assert!(outputs.len() > 1, "{m}");
    assert!(outputs.iter().all(|o| o["type"] == "Patient"));
    let files = s.files(&m, &admin).await;
    assert_eq!(ids(&files), expect(&[("Patient", &["p1", "p2", "p3"])]));
}
