//! The closed loop end to end, with the real binaries over real sockets: ADT and ORU arrive
//! over MLLP at `causeway serve`, the FHIR API finds the patient and the results, and writes
//! through the API go back to EHR stand-ins (`causeway listen`) as HL7 v2, their ACKs settling
//! the API calls: AA -> 201, AR -> 422 with the EHR's error text, no `respond-sync` -> 202 and
//! a status URL that ends in 201.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Listener, Mllp, Server, toml_path, write_config};

/// Longest the test waits for an asynchronous step (a delivery into the resource store, the
/// EHR's answer): a hang guard, not a speed check.
const LIMIT: Duration = Duration::from_secs(30);

const ADT: &str = "MSH|^~\\&|ADTAPP|NORTH|CAUSEWAY|HUB|20240301101500||ADT^A01^ADT_A01|LOOP-ADT-1|P|2.5.1\r\
EVN|A01|20240301101500\r\
PID|1||MRN-LOOP-77^^^NORTH^MR||LOOPER^LUCY^Q||19800517|F|||12 HARBOUR RD^^PORTSMOUTH^^PO1 2AB^GBR\r\
PV1|1|I|WARD^12^3^NORTH||||1234^WELBY^MARCUS^^^DR|||MED||||ADM|||||V-LOOP-1|||||||||||||||||||||||||20240301101000\r";

const ORU: &str = "MSH|^~\\&|LABAPP|NORTH|CAUSEWAY|HUB|20240302080000||ORU^R01^ORU_R01|LOOP-ORU-1|P|2.5.1\r\
PID|1||MRN-LOOP-77^^^NORTH^MR||LOOPER^LUCY^Q||19800517|F\r\
OBR|1|PL-1|FL-1|2345-7^Glucose^LN|||20240302073000\r\
OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^mmol/L^UCUM|3.9-5.5|N|||F|||20240302073000\r";

struct Api {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A GET with extra headers, the response as it came.
    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("GET")
    }

    async fn post(&self, path: &str, body: &Value, sync: bool) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        if sync {
            req = req.header("prefer", "respond-sync");
        }
        req.send().await.expect("POST")
    }

    /// Repeats a search until it finds `want` entries (deliveries into the store are
    /// asynchronous to the ACK).
    async fn search_until(&self, path: &str, want: u64) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let (status, bundle) = self.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {bundle}");
            if bundle["total"].as_u64() == Some(want) {
                return bundle;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never found {want}: {bundle}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A webhook receiver over plain std sockets: each POST's body is passed on; answers 200.
fn receiver() -> (SocketAddr, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut stream = reader.into_inner();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx.send((request_line, body)).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

fn send(addr: SocketAddr, message: &str) {
    let mut mllp = Mllp::connect(addr, LIMIT).expect("connect");
    let ack = mllp.send(message.as_bytes()).expect("ACK");
    let text = String::from_utf8_lossy(&ack);
    assert!(text.contains("MSA|AA|"), "not accepted: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_reach_the_api_and_api_writes_reach_the_ehr() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let accepting = Listener::start(0, &dir.path().join("ehr-accepts.hl7"));
    let refusing = Listener::start_with(0, &dir.path().join("ehr-refuses.hl7"), &["--ack", "AR"]);
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[server]
data_dir = {data}
http = "127.0.0.1:0"
log_format = "json"

[[channel]]
name = "feed"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}

  [[channel.destination]]
  name = "unified"
  type = "fhir-store"

[[channel]]
name = "orders"
source = {{ type = "fhir-api" }}

  [channel.write_back]
  resources = ["ServiceRequest"]
  receiving_application = "EHR"
  sync_timeout = "20s"

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "{accepting}"

[[channel]]
name = "results-back"
source = {{ type = "fhir-api" }}

  [channel.write_back]
  resources = ["Observation"]

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "{refusing}"
"#,
            data = toml_path(&dir.path().join("data")),
            accepting = accepting.addr,
            refusing = refusing.addr,
        ),
    );
    let server = Server::start(&config);
    let password = server
        .admin_password
        .clone()
        .expect("the first start prints the administrator's password");
    let http_addr = server.http.expect("HTTP address logged");
    let feed = server.addr("feed");
    send(feed, ADT);
    send(feed, ORU);

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("http://{http_addr}");
    // Without a session: 401 with an OperationOutcome.
    let anonymous = http
        .get(format!("{base}/fhir/Patient"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let api = Api {
        http,
        base: format!("{base}/fhir"),
        cookie,
    };

    // The feed, searchable.
    let patients = api
        .search_until("/Patient?identifier=MRN-LOOP-77&family=loo", 1)
        .await;
    let patient = &patients["entry"][0]["resource"];
    let patient_id = patient["id"].as_str().expect("id").to_string();
    assert_eq!(patient["birthDate"], "1980-05-17");
    assert_eq!(patient["meta"]["versionId"], "1");
    let results = api
        .search_until(
            &format!("/Observation?patient={patient_id}&code=http://loinc.org|2345-7&date=ge2024-03-02&_include=Observation:patient"),
            1,
        )
        .await;
    let entries = results["entry"].as_array().expect("entries");
    assert_eq!(entries[0]["resource"]["valueQuantity"]["value"], 5.4);
    assert!(
        entries
            .iter()
            .any(|e| e["search"]["mode"] == "include" && e["resource"]["id"] == patient_id.as_str()),
        "the subject is included: {results}"
    );
    let (status, everything) = api.get(&format!("/Patient/{patient_id}/$everything")).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = everything["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    for t in ["Patient", "Encounter", "Observation"] {
        assert!(types.contains(&t), "{t} in $everything: {types:?}");
    }
    // Without a patient id, the operation is named as unsupported, not read as an unknown id.
    let (status, outcome) = api.get("/Patient/$everything").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "not-supported", "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("Patient/{id}/$everything")),
        "{outcome}"
    );

    // A subscription: the next matching result is POSTed to a local receiver.
    let (hook, notifications) = receiver();
    let subscription = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "glucose results for the ward dashboard",
        "criteria": "Observation?code=http://loinc.org|2345-7",
        "channel": {"type": "rest-hook", "endpoint": format!("http://{hook}/notify"),
                    "payload": "application/fhir+json"}
    });
    let created = api.post("/Subscription", &subscription, false).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let sub: Value = created.json().await.expect("json");
    assert_eq!(sub["status"], "active");
    send(
        feed,
        &ORU.replace("LOOP-ORU-1", "LOOP-ORU-2")
            .replace("PL-1|FL-1", "PL-2|FL-2")
            .replace("|5.4|", "|6.1|")
            .replace("F|||20240302073000", "F|||20240303073000"),
    );
    let (request_line, body) = notifications
        .recv_timeout(LIMIT)
        .expect("a notification within the limit");
    assert!(request_line.starts_with("POST /notify "), "{request_line}");
    let notified: Value = serde_json::from_slice(&body).expect("the notification is JSON");
    assert_eq!(notified["resourceType"], "Observation");
    assert_eq!(notified["valueQuantity"]["value"], 6.1);
    // Sorted by the result's time, oldest first (the default is the latest update first).
    let values = |bundle: &Value| -> Vec<Value> {
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["resource"]["valueQuantity"]["value"].clone())
            .collect()
    };
    let by_date = api
        .search_until(&format!("/Observation?patient={patient_id}&_sort=date"), 2)
        .await;
    assert_eq!(values(&by_date), [json!(5.4), json!(6.1)], "{by_date}");
    let (status, newest) = api
        .get(&format!(
            "/Observation?patient={patient_id}&_sort=-date,_id"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(values(&newest), [json!(6.1), json!(5.4)], "{newest}");
    let (status, refused) = api.get("/Observation?_sort=colour").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    // Results by their number: a prefix, the precision of the value asked for, the unit by
    // code alone or with its system, and sorted by the number.
    let patient_results = format!("/Observation?patient={patient_id}");
    for (query, want) in [
        ("value-quantity=gt6", vec![json!(6.1)]),
        ("value-quantity=le5.4", vec![json!(5.4)]),
        ("value-quantity=5.4||mmol/L", vec![json!(5.4)]),
        (
            "value-quantity=6|http://unitsofmeasure.org|mmol/L",
            vec![json!(6.1)],
        ),
        ("value-quantity=5.4|http://unitsofmeasure.org|mg/dL", vec![]),
        ("value-quantity=6.10", vec![json!(6.1)]),
        ("value-quantity=6.12", vec![]),
        ("value-quantity=ap5.5", vec![json!(5.4)]),
        ("value-quantity=ne5.4&_sort=date", vec![json!(6.1)]),
        (
            "code-value-quantity=http://loinc.org|2345-7$gt6",
            vec![json!(6.1)],
        ),
        ("code-value-quantity=2345-7$lt6||mmol/L", vec![json!(5.4)]),
        ("code-value-quantity=718-7$gt6", vec![]),
        ("combo-value-quantity=gt6", vec![json!(6.1)]),
        ("combo-code-value-quantity=2345-7$le5.4", vec![json!(5.4)]),
        (
            "value-quantity=lt6,gt6&_sort=-value-quantity",
            vec![json!(6.1), json!(5.4)],
        ),
    ] {
        let (status, bundle) = api.get(&format!("{patient_results}&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
        let found = if bundle["total"] == 0 {
            Vec::new()
        } else {
            values(&bundle)
        };
        assert_eq!(found, want, "{query}: {bundle}");
    }
    let (status, outcome) = api.get("/Observation?value-quantity=gtseven").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("expected a number such as 5.4")),
        "{outcome}"
    );
    // The patient with the results that refer to it, and the results cut to their code.
    let (status, with_results) = api
        .get("/Patient?identifier=MRN-LOOP-77&_revinclude=Observation:patient")
        .await;
    assert_eq!(status, StatusCode::OK);
    let modes: Vec<(&str, &str)> = with_results["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| {
            Some((
                e["search"]["mode"].as_str()?,
                e["resource"]["resourceType"].as_str()?,
            ))
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("match", "Patient"),
            ("include", "Observation"),
            ("include", "Observation")
        ],
        "{with_results}"
    );
    assert_eq!(
        with_results["total"], 1,
        "included resources are not counted"
    );
    let (status, codes) = api
        .get(&format!(
            "/Observation?patient={patient_id}&_elements=code,effective"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let first = &codes["entry"][0]["resource"];
    assert_eq!(first["code"]["coding"][0]["code"], "2345-7", "{codes}");
    assert!(
        first["effectiveDateTime"].is_string(),
        "a choice element by its name: {codes}"
    );
    assert!(
        first.get("valueQuantity").is_none() && first.get("subject").is_none(),
        "{codes}"
    );
    assert_eq!(first["meta"]["tag"][0]["code"], "SUBSETTED", "{codes}");

    // Reads: a cached copy is confirmed with 304; elements and indentation on request.
    let read = api.get_with(&format!("/Patient/{patient_id}"), &[]).await;
    assert_eq!(read.status(), StatusCode::OK);
    let etag = read.headers()["etag"].to_str().expect("ETag").to_owned();
    let last_modified = read.headers()["last-modified"]
        .to_str()
        .expect("date")
        .to_owned();
    let cached = api
        .get_with(
            &format!("/Patient/{patient_id}"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()["etag"].to_str().ok(), Some(etag.as_str()));
    assert!(cached.bytes().await.expect("body").is_empty());
    let stale = api
        .get_with(
            &format!("/Patient/{patient_id}"),
            &[("if-none-match", "W/\"0\"")],
        )
        .await;
    assert_eq!(stale.status(), StatusCode::OK);
    let unchanged_since = api
        .get_with(
            &format!("/Patient/{patient_id}"),
            &[("if-modified-since", &last_modified)],
        )
        .await;
    assert_eq!(unchanged_since.status(), StatusCode::NOT_MODIFIED);
    let pretty = api
        .get_with(
            &format!("/Patient/{patient_id}?_elements=birthDate&_pretty=true"),
            &[],
        )
        .await;
    assert_eq!(pretty.status(), StatusCode::OK);
    let text = pretty.text().await.expect("body");
    assert!(text.contains("\n  \"birthDate\": \"1980-05-17\""), "{text}");
    let shown: Value = serde_json::from_str(&text).expect("JSON");
    assert!(shown.get("name").is_none(), "{shown}");
    let (status, refused) = api.get(&format!("/Patient/{patient_id}?name=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    // A client that reads only XML is told so, not sent JSON; one that takes JSON among
    // others is served.
    let xml_only = api
        .get_with(
            &format!("/Patient/{patient_id}"),
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(xml_only.status(), StatusCode::NOT_ACCEPTABLE);
    let outcome: Value = xml_only.json().await.expect("OperationOutcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    let either = api
        .get_with(
            &format!("/Patient/{patient_id}"),
            &[(
                "accept",
                "application/fhir+xml;q=1.0, application/fhir+json;q=0.9",
            )],
        )
        .await;
    assert_eq!(either.status(), StatusCode::OK);
    let mut bad_sub = subscription.clone();
    bad_sub["criteria"] = json!("Observation?colour=blue");
    assert_eq!(
        api.post("/Subscription", &bad_sub, false).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Write-back, synchronous, accepted: an ORM reaches the EHR, its AA becomes 201.
    let order = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:example:placer", "value": "ORD-LOOP-1"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24331-1", "display": "Lipid panel"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "authoredOn": "2024-03-02T09:00:00Z"
    });
    let created = api.post("/ServiceRequest", &order, true).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string();
    let body: Value = created.json().await.expect("json");
    let order_id = body["id"].as_str().expect("id").to_string();
    assert!(
        location.ends_with(&format!("/ServiceRequest/{order_id}/_history/1")),
        "{location}"
    );
    let sent = std::fs::read_to_string(&accepting.out).expect("EHR out file");
    assert!(sent.contains("ORM^O01"), "{sent}");
    assert!(
        sent.contains("MRN-LOOP-77"),
        "the order names the patient: {sent}"
    );
    assert!(sent.contains("ORD-LOOP-1"), "{sent}");
    let (status, stored) = api.get(&format!("/ServiceRequest/{order_id}")).await;
    assert_eq!(
        (status, stored["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );

    // Asynchronous: 202 and a status URL that ends in 201.
    let mut later = order.clone();
    later["identifier"][0]["value"] = json!("ORD-LOOP-2");
    let queued = api.post("/ServiceRequest", &later, false).await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let status_url = queued
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .expect("Content-Location")
        .to_string();
    let path = status_url
        .split("/fhir")
        .nth(1)
        .expect("under /fhir")
        .to_string();
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, body) = api.get(&path).await;
        if status == StatusCode::CREATED {
            assert_eq!(body["identifier"][0]["value"], "ORD-LOOP-2");
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(Instant::now() < deadline, "the write never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A batch: each entry answered on its own, in order, a write going to the EHR as ever.
    let mut batched_order = order.clone();
    batched_order["identifier"][0]["value"] = json!("ORD-LOOP-B");
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": format!("Patient/{patient_id}")}},
            {"request": {"method": "GET", "url": format!("Observation?patient={patient_id}&_sort=date")}},
            {"request": {"method": "GET", "url": "Patient/no-such-patient"}},
            {"request": {"method": "POST", "url": "ServiceRequest"}, "resource": batched_order},
            {"request": {"method": "GET", "url": format!("Patient/{patient_id}"), "ifNoneMatch": etag}},
            {"request": {"method": "GET", "url": "Patient", "ifNoneExist": "identifier=x"}}
        ]
    });
    let answered = api.post("", &batch, true).await;
    assert_eq!(answered.status(), StatusCode::OK);
    let answered: Value = answered.json().await.expect("json");
    assert_eq!(answered["type"], "batch-response", "{answered}");
    let entries = answered["entry"].as_array().expect("entries");
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "200 OK",
            "404 Not Found",
            "201 Created",
            "304 Not Modified",
            "422 Unprocessable Entity"
        ],
        "{answered}"
    );
    assert_eq!(entries[0]["resource"]["id"], patient_id.as_str());
    assert_eq!(entries[0]["response"]["etag"], etag.as_str());
    assert_eq!(values(&entries[1]["resource"]), [json!(5.4), json!(6.1)]);
    assert_eq!(
        entries[2]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert!(
        entries[3]["response"]["location"]
            .as_str()
            .is_some_and(|l| l.contains("/ServiceRequest/")),
        "{answered}"
    );
    let sent = std::fs::read_to_string(&accepting.out).expect("EHR out file");
    assert!(
        sent.contains("ORD-LOOP-B"),
        "the batched order reached the EHR: {sent}"
    );
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": []});
    assert_eq!(
        api.post("", &transaction, false).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A date that does not exist never reaches the EHR: 422 naming the element.
    let mut impossible = order.clone();
    impossible["identifier"][0]["value"] = json!("ORD-LOOP-NO-SUCH-DAY");
    impossible["authoredOn"] = json!("2024-02-30T09:00:00Z");
    let r = api.post("/ServiceRequest", &impossible, true).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome: Value = r.json().await.expect("json");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains(
                "ServiceRequest.authoredOn is not a FHIR dateTime: its day is out of range"
            )),
        "{outcome}"
    );
    let sent = std::fs::read_to_string(&accepting.out).expect("EHR out file");
    assert!(!sent.contains("ORD-LOOP-NO-SUCH-DAY"), "{sent}");

    // The same EHR now refuses orders (`causeway listen --ack AR` on its port): the next
    // order's AR becomes 422 carrying the EHR's ERR text, and the order is not stored.
    let port = accepting.addr.port();
    let _ = accepting.stop();
    let accepting = Listener::start_with(
        port,
        &dir.path().join("ehr-refuses-orders.hl7"),
        &["--ack", "AR"],
    );
    let mut refused_order = order.clone();
    refused_order["identifier"][0]["value"] = json!("ORD-LOOP-3");
    let r = api.post("/ServiceRequest", &refused_order, true).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome: Value = r.json().await.expect("json");
    let text = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("AR") && text.contains("rejected on request"),
        "{outcome}"
    );
    let sent = std::fs::read_to_string(&accepting.out).expect("EHR out file");
    assert!(
        sent.contains("ORD-LOOP-3"),
        "the refused order reached the EHR: {sent}"
    );
    let (_, orders) = api.get("/ServiceRequest?identifier=ORD-LOOP-3").await;
    assert_eq!(orders["total"], 0, "a refused order is not stored");

    // Refused by the EHR: AR becomes 422 with its error text, and nothing is stored.
    let result = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2024-03-02T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let refused = api.post("/Observation", &result, true).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome: Value = refused.json().await.expect("json");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let text = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("AR") && text.contains("rejected on request"),
        "{outcome}"
    );
    let (_, heart) = api.get("/Observation?code=8867-4").await;
    assert_eq!(heart["total"], 0, "a refused write is not stored");

    // Bad input: a strict read names the field; an unknown parameter is refused.
    let mut bad = order.clone();
    bad["colour"] = json!("blue");
    let r = api.post("/ServiceRequest", &bad, true).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let oo: Value = r.json().await.expect("json");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{oo}"
    );
    let (status, oo) = api.get("/Patient?nmae=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (status, _) = api.get("/Patient/does-not-exist").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The framework's own refusals come as OperationOutcomes too.
    let (status, oo) = api.get("/_write/not-a-number").await;
    assert_eq!(
        (status, oo["resourceType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("OperationOutcome"))
    );
    let (status, oo) = api.get("/Patient/1/_history/1/extra/segments").await;
    assert_eq!(
        (status, oo["resourceType"].as_str()),
        (StatusCode::NOT_FOUND, Some("OperationOutcome"))
    );

    // Every PHI read above is in the audit log, newest first, as AuditEvents (admins only).
    let (status, audit) = api.get("/AuditEvent?_count=200").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let events = audit["entry"].as_array().expect("audit entries");
    let named = |what: &str| {
        events.iter().any(|e| {
            e["resource"]["entity"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| {
                    x["what"]["reference"]
                        .as_str()
                        .is_some_and(|r| r.contains(what))
                        || x["name"].as_str().is_some_and(|n| n.contains(what))
                })
        })
    };
    assert!(
        named(&format!("Patient/{patient_id}")),
        "the $everything read is audited"
    );
    assert!(
        named(&format!("ServiceRequest/{order_id}")),
        "the order read is audited"
    );

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("LOOPER"), "no patient data in the logs");

    // `causeway audit verify` over the log these reads wrote: intact; then one record edited
    // behind the store's back (its no-update trigger dropped first) is named.
    let verify = || {
        std::process::Command::new(support::BIN)
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .output()
            .expect("run causeway audit verify")
    };
    let intact = verify();
    assert!(
        intact.status.success(),
        "{}{}",
        String::from_utf8_lossy(&intact.stdout),
        String::from_utf8_lossy(&intact.stderr)
    );
    let db = rusqlite::Connection::open(dir.path().join("data").join("causeway.db")).expect("db");
    db.execute_batch("DROP TRIGGER audit_log_no_update")
        .expect("drop trigger");
    let tampered: i64 = db
        .query_row(
            "SELECT id FROM audit_log ORDER BY id LIMIT 1 OFFSET 3",
            [],
            |r| r.get(0),
        )
        .expect("a fourth record");
    db.execute(
        "UPDATE audit_log SET outcome = 999 WHERE id = ?1",
        [tampered],
    )
    .expect("tamper");
    drop(db);
    let broken = verify();
    assert_eq!(broken.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&broken.stdout),
        String::from_utf8_lossy(&broken.stderr)
    );
    assert!(said.contains(&format!("record {tampered}")), "{said}");
    drop(accepting);
    drop(refusing);
}
