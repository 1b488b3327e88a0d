//! The management API (`/api`) as a black box: a real engine on a real SQLite store in a
//! tempdir, messages sent over real MLLP sockets, a real MLLP peer standing in for the
//! destination (answering as scripted), the whole router served on `127.0.0.1:0`, and users
//! signed in through `POST /auth/login` with the session cookie.
//!
//! Map: the route table and the OpenAPI document; who may do what (401, 403); message search
//! and detail (audited); stop and start over MLLP; reprocess, error queues and resend;
//! unmapped codes and the FHIR view of a `[channel.fhir]` channel; events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use causeway_engine::config::Config;
use causeway_engine::net::client::{MllpClient, read_ack};
use causeway_engine::net::server::{self, Handler, Peer, Reply, ServerOptions};
use causeway_engine::runtime::Engine;
use causeway_server::audit::Audit;
use causeway_server::auth::{self, Auth, AuthConfig, Role};
use causeway_server::{AppState, api};
use causeway_store::{AuditQuery, NewUser, SqliteOptions, SqliteStore, Store};
use hl7v2::{AckCode, AckError, AckHeader};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

mod support;

use support::{PASSWORD, eventually, http_client};

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// An ADT^A01 for patient `mrn` (assigning authority HOSP).
fn adt(control_id: &str, mrn: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800101|F\r\
         PV1|1|I|WARD^101^1^HOSP_A\r"
    )
    .into_bytes()
}

/// Clinic CLINIC_P's ORU with a tobacco smoking status of local code `code`.
fn smoking_oru(control_id: &str, code: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LAB|CLINIC_P|CAUSEWAY|CAUSEWAY|20261103101500-0500||ORU^R01^ORU_R01|{control_id}|P|2.5.1\r\
         PID|1||55501^^^CLINIC_P&2.16.840.1.113883.19.4.9&ISO^MR||Sample^Robin||19700101|M\r\
         OBR|1|ORD-{control_id}|FIL-{control_id}|72166-2^Tobacco smoking status^LN|||20261103100000-0500||||||||||||||||||F\r\
         OBX|1|CWE|72166-2^Tobacco smoking status^LN||{code}^^L||||||F|||20261103100000-0500\r"
    )
    .into_bytes()
}

/// A sender profile whose smoking-status map knows code 3 and passes the others on, flagged.
const PROFILE: &str = "# Clinic P's lab, reviewed with its interface team.\nname = \"CLINIC_P\"\n[sender]\napplication = \"LAB\"\nfacility = \"CLINIC_P\"\n\
    [defaults]\ntime_zone = \"-0500\"\n\
    [[code_map]]\nname = \"smoking-status\"\nfields = [\"OBX-5\"]\nobservation = \"72166-2\"\nunmapped = \"pass\"\n\
    [[code_map.entry]]\ncode = \"3\"\n\
    target = { system = \"http://snomed.info/sct\", code = \"449868002\", display = \"Smokes tobacco daily\" }\n\
    added_by = \"test\"\nadded_at = \"2026-11-03\"\n";

/// MSA-1, MSA-2 and the error text of an acknowledgement.
fn ack_of(payload: &[u8]) -> (String, String, Option<String>) {
    let a = read_ack(payload).expect("an acknowledgement");
    (a.code, a.control_id, a.text)
}

fn control_id_of(payload: &[u8]) -> String {
    hl7v2::parse(payload)
        .ok()
        .and_then(|m| m.control_id().map(|c| c.into_owned()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The destination: an MLLP peer that answers AA unless scripted otherwise
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<String, VecDeque<AckCode>>>,
    received: Mutex<Vec<String>>,
}

struct Scripted(Arc<Script>);

impl Handler for Scripted {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        let id = control_id_of(&payload);
        self.0.received.lock().unwrap().push(id.clone());
        let code = self
            .0
            .answers
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(VecDeque::pop_front)
            .unwrap_or(AckCode::AA);
        let msg = hl7v2::parse(&payload).expect("delivered messages parse");
        let errors = if code.is_accept() {
            Vec::new()
        } else {
            vec![AckError::new(207, "scripted refusal")]
        };
        Reply::Ack(hl7v2::build_ack(
            &msg,
            code,
            &errors,
            AckHeader {
                control_id: "RCV1",
                timestamp: "20240101120001",
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------

struct Harness {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    engine: Option<Engine>,
    receiver: Arc<Script>,
    // Last: the files outlive the engine and the store.
    _dir: TempDir,
}

impl Harness {
    /// Channel `adt` (MLLP in, MLLP out to the scripted peer) and channel `results` (MLLP in,
    /// converted to FHIR at ingest, no destination); users `viewer` and `operator`.
    async fn start() -> Harness {
        Harness::start_with("").await
    }

    /// [`Harness::start`] with `extra` appended to the configuration (alert rules).
    async fn start_with(extra: &str) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("profiles")).expect("profiles dir");
        std::fs::write(dir.path().join("profiles/CLINIC_P.toml"), PROFILE).expect("profile");

        let script = Arc::new(Script::default());
        let peer = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let peer_addr = peer.local_addr().expect("addr");
        let handler = Arc::new(Scripted(script.clone()));
        tokio::spawn(server::run(
            peer,
            ServerOptions::default(),
            handler,
            std::future::pending::<()>(),
        ));

        let text = format!(
            "[server]\ndata_dir = \"data\"\n\
             [[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
               [[channel.destination]]\n  name = \"lab\"\n  type = \"mllp\"\n  connect = \"{peer_addr}\"\n\
               connect_timeout = \"2s\"\n  ack_timeout = \"5s\"\n  retry = {{ initial = \"20ms\", max = \"100ms\" }}\n\
             [[channel]]\nname = \"results\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
             fhir = {{ profiles = \"profiles\" }}\n{extra}"
        );
        let config = Config::from_str(&text, dir.path()).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("test configuration invalid:\n{}", lines.join("\n"))
        });
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&config.server.data_dir, SqliteOptions::default())
                .await
                .expect("open the store"),
        );
        let engine = Engine::start(&config, store.clone())
            .await
            .expect("engine starts");
        let channels: BTreeMap<_, _> = engine
            .channels()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();

        for (name, role) in [("viewer", Role::Viewer), ("operator", Role::Operator)] {
            store
                .create_user(NewUser {
                    username: name.into(),
                    password_hash: auth::hash_password(PASSWORD).expect("hash"),
                    role,
                })
                .await
                .expect("create user");
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState {
            auth: Arc::new(
                Auth::new(
                    store.clone(),
                    AuthConfig {
                        attempts_per_minute: 1000,
                        ..AuthConfig::default()
                    },
                )
                .expect("auth"),
            ),
            audit: Arc::new(Audit::new(store.clone())),
            fhir_base: format!("http://{addr}/fhir").into(),
            store: store.clone(),
            channels: Arc::new(channels),
            reload: None,
            monitor: Some(engine.monitor().clone()),
            metrics_token: None,
            alerts: Some(engine.alerts().clone()),
            exports: None,
        };
        let app = causeway_server::router(state);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        Harness {
            base: format!("http://{addr}"),
            http: http_client(),
            store,
            engine: Some(engine),
            receiver: script,
            _dir: dir,
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    /// Signs `user` in through `POST /auth/login`; returns the `Cookie` header value.
    async fn login(&self, user: &str) -> String {
        let r = self
            .http
            .post(format!("{}/auth/login", self.base))
            .json(&json!({ "username": user, "password": PASSWORD }))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), StatusCode::OK, "{user} signs in");
        let set = r
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_owned();
        set.split(';').next().expect("name=value").to_owned()
    }

    /// A request as `cookie` (or anonymous); returns the status and the JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = cookie {
            r = r.header(reqwest::header::COOKIE, c);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, cookie: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, Some(cookie), None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, cookie: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(Method::POST, path, Some(cookie), body).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {body}");
        body
    }

    /// Sends one message to `channel` over MLLP and returns the ACK.
    async fn send(&self, channel: &str, payload: &[u8]) -> (String, String, Option<String>) {
        let addr = self.engine().mllp_addr(channel).expect("an MLLP channel");
        let mut client = MllpClient::connect(addr.to_string(), None, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let ack = client
            .send(payload, Duration::from_secs(10))
            .await
            .expect("an ACK");
        ack_of(&ack)
    }

    /// The id of the one stored message with this control id, through the API.
    async fn id_of(&self, control_id: &str, cookie: &str) -> i64 {
        let found = self
            .get(&format!("/api/messages?control_id={control_id}"), cookie)
            .await;
        let messages = found["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 1, "one message {control_id}: {found}");
        messages[0]["id"].as_i64().expect("id")
    }

    /// Waits until every delivery of message `id` is settled; returns the message detail.
    async fn settled(&self, id: i64, cookie: &str) -> Value {
        eventually(
            &format!("the deliveries of message {id} to settle"),
            || async {
                let d = self.get(&format!("/api/messages/{id}"), cookie).await;
                let deliveries = d["deliveries"].as_array()?;
                let done = !deliveries.is_empty()
                    && deliveries
                        .iter()
                        .all(|x| matches!(x["state"].as_str(), Some("delivered" | "failed")));
                done.then_some(d)
            },
        )
        .await
    }

    async fn audit_entries(&self, entity: &str) -> Vec<causeway_store::AuditEntry> {
        self.store
            .audit_records(AuditQuery {
                entity: Some(entity.into()),
                ..AuditQuery::default()
            })
            .await
            .expect("audit records")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The engine's tasks are aborted with the runtime; nothing to flush in a test.
        drop(self.engine.take());
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `{name}` and `{id}` in a route's path replaced by values that exist.
fn concrete(path: &str) -> String {
    path.replace("{name}", "adt").replace("{id}", "1")
}

// ---------------------------------------------------------------------------------------
// The route table and the document
// ---------------------------------------------------------------------------------------

/// `(method, path)` of every operation of an OpenAPI document (as JSON).
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served_and_every_route_needs_a_user() {
    let h = Harness::start().await;
    let table: BTreeSet<(String, String)> = api::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    assert!(table.len() >= 12, "{table:?}");

    // The document generated from the code, and the one served, name the routes the router
    // is built from, no more and no fewer.
    let generated = serde_json::to_value(api::openapi()).expect("document as JSON");
    assert_eq!(operations(&generated), table);
    let viewer = h.login("viewer").await;
    let served = h.get("/api/openapi.json", &viewer).await;
    assert_eq!(served, generated);
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        served["openapi"]
    );
    assert_eq!(
        served["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );

    // Every operation documents its success body and its refusals, with schemas.
    let schemas = served["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for name in [
        "ChannelList",
        "ChannelDetail",
        "RunChange",
        "MessageList",
        "MessageDetail",
        "ParsedMessage",
        "DeliveryView",
        "ReprocessOutcome",
        "ResendRequest",
        "ResendOutcome",
        "ErrorQueues",
        "UnmappedCodes",
        "EventList",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} in the document");
    }
    for (method, path) in &table {
        let op = &served["paths"][path][method.to_lowercase()];
        // A reload answers 202: it is accepted now and happens after the answer.
        let ok = if path == "/api/config/reload" {
            "202"
        } else {
            "200"
        };
        for status in [ok, "401", "403"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
        assert!(op["summary"].is_string(), "{method} {path} has a summary");
    }
    let search = &served["paths"]["/api/messages"]["get"]["parameters"];
    let names: BTreeSet<&str> = search
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        "channel",
        "type",
        "state",
        "control_id",
        "sending_application",
        "sending_facility",
        "patient",
        "from",
        "to",
        "limit",
        "offset",
    ]
    .into();
    assert_eq!(names, expected);

    // Served: without a session every route answers 401 (JSON, with a challenge), not 404.
    for (method, path) in &table {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let r = h
            .http
            .request(method.clone(), format!("{}{}", h.base, concrete(path)))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            r.headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body: Value = r.json().await.expect("a JSON error");
        assert_eq!(body["code"], "login", "{method} {path}: {body}");
    }
    // A path outside the table is not served.
    let (status, _) = h
        .call(Method::GET, "/api/nothing-here", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_act() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    assert_eq!(h.send("adt", &adt("V1", "111")).await.0, "AA");
    let id = h.id_of("V1", &viewer).await;

    for (path, body) in [
        ("/api/channels/adt/stop".to_string(), None),
        ("/api/channels/adt/start".to_string(), None),
        (format!("/api/messages/{id}/reprocess"), None),
        (
            format!("/api/messages/{id}/resend"),
            Some(json!({ "destination": "lab" })),
        ),
    ] {
        let (status, answer) = h.call(Method::POST, &path, Some(&viewer), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "POST {path}");
        assert_eq!(answer["code"], "forbidden");
        assert_eq!(
            answer["error"], "this needs the operator role; viewer has viewer",
            "POST {path}"
        );
    }
    assert!(h.engine().channel("adt").unwrap().is_running());
    // Reads are allowed.
    let channels = h.get("/api/channels", &viewer).await;
    assert_eq!(channels["channels"].as_array().map(Vec::len), Some(2));
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn messages_are_found_by_control_id_and_patient_and_shown_in_full_with_an_audit_record() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    let before = jiff::Timestamp::now();
    assert_eq!(h.send("adt", &adt("M1", "12345")).await.0, "AA");
    assert_eq!(h.send("adt", &adt("M2", "67890")).await.0, "AA");
    assert_eq!(h.send("adt", &adt("M3", "12345")).await.0, "AA");

    // By control id: the summary, no payload.
    let found = h.get("/api/messages?control_id=M2", &viewer).await;
    let list = found["messages"].as_array().expect("messages");
    assert_eq!(list.len(), 1);
    let m2 = &list[0];
    assert_eq!(m2["control_id"], "M2");
    assert_eq!(m2["channel"], "adt");
    assert_eq!(m2["message_type"], "ADT^A01");
    assert_eq!(m2["sending_application"], "EHR");
    assert_eq!(m2["state"], "accepted");
    assert!(m2.get("raw").is_none(), "summaries carry no payload");

    // By patient identifier (id^authority): newest first, and the search is audited with its
    // query, since it ties a patient to messages.
    let by_patient = h
        .get(
            &format!("/api/messages?patient={}", enc("12345^HOSP")),
            &viewer,
        )
        .await;
    let ids: Vec<&str> = by_patient["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["control_id"].as_str())
        .collect();
    assert_eq!(ids, ["M3", "M1"]);
    let searches = h.audit_entries("Message").await;
    let search = searches
        .iter()
        .find(|e| e.action == "search")
        .expect("the patient search is audited");
    assert_eq!(search.agent, "viewer");
    assert_eq!(search.outcome, 200);
    assert_eq!(search.query.as_deref(), Some("patient=12345%5EHOSP"));
    assert!(
        searches.iter().all(|e| e.action != "read"),
        "searching reads no message"
    );

    // Criteria combine; paging says where the next page starts.
    let from = enc(&before.to_string());
    let to = enc(&jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(5))
        .unwrap()
        .to_string());
    let page = h
        .get(
            &format!(
                "/api/messages?channel=adt&type={}&state=accepted&from={from}&to={to}&limit=2",
                enc("ADT^A01")
            ),
            &viewer,
        )
        .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_offset"], 2);
    // A message code alone finds every event of it.
    for code in ["ADT", "ADT^*", "ADT^A01"] {
        let all = h
            .get(&format!("/api/messages?type={}", enc(code)), &viewer)
            .await;
        assert_eq!(all["messages"].as_array().map(Vec::len), Some(3), "{code}");
    }
    let none = h.get("/api/messages?type=ADT%5EA08", &viewer).await;
    assert_eq!(none["messages"].as_array().map(Vec::len), Some(0));
    // By sender, as the summaries show it.
    let from_ehr = h
        .get(
            "/api/messages?sending_application=EHR&sending_facility=CLINIC",
            &viewer,
        )
        .await;
    assert_eq!(from_ehr["messages"].as_array().map(Vec::len), Some(3));
    let from_other = h
        .get("/api/messages?sending_application=LAB", &viewer)
        .await;
    assert_eq!(from_other["messages"].as_array().map(Vec::len), Some(0));
    let rest = h
        .get("/api/messages?channel=adt&limit=2&offset=2", &viewer)
        .await;
    assert_eq!(rest["messages"][0]["control_id"], "M1");
    assert_eq!(rest["next_offset"], Value::Null);
    for (query, error) in [
        (
            "state=sent",
            "state: expected one of received, accepted, rejected, duplicate, filtered, error, held",
        ),
        (
            "from=yesterday",
            "from: expected an RFC 3339 time such as 2024-05-06T10:00:00Z",
        ),
        (
            // A misspelt criterion is refused, not ignored (which would widen the search).
            "since=2024-05-06T10:00:00Z",
            "since: unknown field `since`, expected one of `channel`, `type`, `state`, `control_id`, `sending_application`, `sending_facility`, `patient`, `from`, `to`, `limit`, `offset`",
        ),
        ("limit=-5", "limit: expected a whole number, 0 or more"),
        ("offset=", "offset: expected a whole number, 0 or more"),
        (
            // Without its authority an identifier would match nothing, which would read as
            // "no messages for this patient".
            "patient=12345",
            "patient: expected `id^authority` as PID-3 holds it (PID-3.1 and PID-3.4.1, e.g. `12345^HOSP`), or `12345^` for an identifier sent without an authority",
        ),
    ] {
        let (status, body) = h
            .call(
                Method::GET,
                &format!("/api/messages?{query}"),
                Some(&viewer),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"], error);
    }

    // The detail: raw text, parsed view with names, the ACK sent, deliveries; the patient's
    // fields masked by default, for every role.
    let id = m2["id"].as_i64().unwrap();
    let detail = h.settled(id, &viewer).await;
    assert_eq!(detail["masked"], true);
    assert_eq!(
        detail["raw"],
        "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|M2|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||***||***||***|***\r\
         PV1|1|I|WARD^101^1^HOSP_A\r"
    );
    assert!(detail["ack"].as_str().unwrap().contains("MSA|AA|M2"));
    let field = |detail: &Value, position: &str| {
        detail["parsed"]["segments"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["fields"].as_array().unwrap().iter())
            .find(|f| f["position"] == position)
            .unwrap_or_else(|| panic!("{position} in {detail}"))
            .clone()
    };
    let name = field(&detail, "PID-5");
    assert_eq!(name["name"], "Patient Name");
    assert_eq!(name["value"], "***");
    assert_eq!(name["repetitions"], json!([[["***"]]]));
    assert_eq!(
        field(&detail, "MSH-10")["value"],
        "M2",
        "the header is not PHI"
    );
    assert_eq!(detail["message"]["control_id"], "M2");
    assert_eq!(detail["fhir"], Value::Null, "channel adt does not convert");
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["destination"], "adt/lab");
    assert_eq!(deliveries[0]["state"], "delivered");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert!(
        deliveries[0]["last_ack"]
            .as_str()
            .unwrap()
            .contains("MSA|AA|M2")
    );

    // Revealing needs the operator role; the revealed read is the PHI read of the audit log.
    let revealed_path = format!("/api/messages/{id}?reveal=true");
    let (status, body) = h
        .call(Method::GET, &revealed_path, Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"],
        "reveal=true shows PHI and needs the operator or admin role; without it the \
         patient's fields are masked"
    );
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/api/messages/{id}?reveal=maybe"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let operator = h.login("operator").await;
    let revealed = h.get(&revealed_path, &operator).await;
    assert_eq!(revealed["masked"], false);
    assert_eq!(
        revealed["raw"].as_str().map(str::as_bytes),
        Some(&adt("M2", "67890")[..])
    );
    assert_eq!(
        field(&revealed, "PID-5")["repetitions"],
        json!([[["DOE"], ["JANE"]]])
    );

    // Each read is audited as a read of that message; the revealed one says so.
    let reads = h.audit_entries(&format!("Message/{id}")).await;
    assert!(reads.iter().all(|e| e.action == "read" && e.outcome == 200));
    let (by_operator, by_viewer): (Vec<_>, Vec<_>) =
        reads.iter().partition(|e| e.agent == "operator");
    assert!(!by_viewer.is_empty());
    assert!(by_viewer.iter().all(|e| e.query.is_none()));
    assert_eq!(by_operator.len(), 1);
    assert_eq!(by_operator[0].query.as_deref(), Some("reveal=true"));

    let (status, body) = h
        .call(Method::GET, "/api/messages/424242", Some(&viewer), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("message 424242 is not stored"))
    );
    assert_eq!(h.audit_entries("Message/424242").await[0].outcome, 404);
    let (status, _) = h
        .call(Method::GET, "/api/messages/abc", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------
// Channels: stop and start
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stopped_channel_answers_ae_and_a_started_one_aa() {
    let h = Harness::start().await;
    let operator = h.login("operator").await;

    let list = h.get("/api/channels", &operator).await;
    let adt_channel = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "adt")
        .expect("adt")
        .clone();
    assert_eq!(adt_channel["source"], "mllp");
    assert_eq!(adt_channel["running"], true);
    assert_eq!(adt_channel["fhir"], false);
    assert_eq!(adt_channel["destinations"][0]["name"], "lab");
    assert_eq!(adt_channel["destinations"][0]["queue"], "adt/lab");
    assert_eq!(adt_channel["destinations"][0]["queue_depth"], 0);
    assert_eq!(
        adt_channel["destinations"][0]["oldest_queued_age_ms"],
        Value::Null
    );

    let stopped = h.post("/api/channels/adt/stop", &operator, None).await;
    assert_eq!(stopped["changed"], true);
    assert_eq!(stopped["channel"]["running"], false);
    let again = h.post("/api/channels/adt/stop", &operator, None).await;
    assert_eq!(again["changed"], false);

    let (code, control_id, text) = h.send("adt", &adt("S1", "111")).await;
    assert_eq!(
        (code.as_str(), control_id.as_str(), text.as_deref()),
        ("AE", "S1", Some("channel stopped"))
    );
    let found = h.get("/api/messages?control_id=S1", &operator).await;
    assert_eq!(found["messages"], json!([]), "nothing stored");
    let detail = h.get("/api/channels/adt", &operator).await;
    assert_eq!(detail["running"], false);
    assert_eq!(detail["stats"]["refused_stopped"], 1);
    assert_eq!(detail["stats"]["received"], 0);
    let lifecycle = h
        .get("/api/events?channel=adt&kind=lifecycle", &operator)
        .await;
    assert_eq!(
        lifecycle["events"][0]["detail"],
        "stopped by operator through the management API"
    );

    let started = h.post("/api/channels/adt/start", &operator, None).await;
    assert_eq!(started["changed"], true);
    assert_eq!(started["channel"]["running"], true);
    assert_eq!(h.send("adt", &adt("S1", "111")).await.0, "AA");
    let id = h.id_of("S1", &operator).await;
    assert_eq!(
        h.settled(id, &operator).await["deliveries"][0]["state"],
        "delivered"
    );

    let detail = h.get("/api/channels/adt", &operator).await;
    assert_eq!(detail["stats"]["accepted"], 1);
    assert_eq!(detail["filters"], 0);
    assert!(detail["last_received_at"].is_string());
    let kinds: Vec<&str> = detail["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"delivered"), "newest first: {kinds:?}");
    assert!(kinds.contains(&"lifecycle"));
    // Who stopped and started it is in the audit log.
    let stops = h.audit_entries("Channel/adt/$stop").await;
    assert_eq!(stops.len(), 2);
    assert!(
        stops
            .iter()
            .all(|e| e.agent == "operator" && e.action == "operation")
    );
    assert_eq!(h.audit_entries("Channel/adt/$start").await.len(), 1);

    let (status, body) = h
        .call(
            Method::POST,
            "/api/channels/nope/stop",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "channel \"nope\" is not running here");
}

// ---------------------------------------------------------------------------------------
// Error queues, resend and reprocess
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_refused_delivery_waits_in_the_error_queue_until_resent_and_reprocess_queues_again() {
    let h = Harness::start().await;
    let operator = h.login("operator").await;
    h.receiver
        .answers
        .lock()
        .unwrap()
        .insert("E1".into(), VecDeque::from([AckCode::AR]));
    assert_eq!(h.send("adt", &adt("E1", "111")).await.0, "AA");
    let id = h.id_of("E1", &operator).await;
    let detail = h.settled(id, &operator).await;
    assert_eq!(detail["deliveries"][0]["state"], "failed");
    assert!(
        detail["deliveries"][0]["last_ack"]
            .as_str()
            .unwrap()
            .contains("MSA|AR|E1")
    );

    let errors = h.get("/api/errors", &operator).await;
    let queue = errors["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "adt/lab")
        .expect("the adt/lab error queue")
        .clone();
    assert_eq!(queue["channel"], "adt");
    assert_eq!(queue["total"], 1);
    let entry = &queue["entries"][0];
    assert_eq!(entry["message_id"], id);
    assert_eq!(entry["control_id"], "E1");
    assert_eq!(entry["message_type"], "ADT^A01");
    assert_eq!(entry["attempts"], 1);
    assert!(
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("AR")),
        "{entry}"
    );
    assert!(
        entry.get("last_ack").is_none(),
        "no receiver text (it may quote PHI)"
    );
    let channels = h.get("/api/channels", &operator).await;
    assert_eq!(channels["channels"][0]["destinations"][0]["failed"], 1);
    let only = h.get("/api/errors?queue=adt/lab", &operator).await;
    assert_eq!(only["queues"].as_array().map(Vec::len), Some(1));

    // Resend to a destination the channel does not have: 404; to lab: queued and delivered.
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/api/messages/{id}/resend"),
            Some(&operator),
            Some(json!({ "destination": "billing" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"],
        "channel \"adt\" has no destination \"billing\""
    );
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/api/messages/{id}/resend"),
            Some(&operator),
            Some(json!({ "to": "lab" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resent = h
        .post(
            &format!("/api/messages/{id}/resend"),
            &operator,
            Some(json!({ "destination": "lab" })),
        )
        .await;
    assert_eq!(resent["destination"], "adt/lab");
    assert_eq!(resent["message_id"], id);
    let detail = h.settled(id, &operator).await;
    let states: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["state"].as_str())
        .collect();
    assert_eq!(states, ["failed", "delivered"]);
    let errors = h.get("/api/errors?channel=adt", &operator).await;
    assert_eq!(errors["queues"][0]["total"], 0, "out of the error queue");

    // Reprocess runs it through the channel again and queues it once more.
    let done = h
        .post(&format!("/api/messages/{id}/reprocess"), &operator, None)
        .await;
    assert_eq!(
        done,
        json!({ "message_id": id, "state": "accepted", "queues": ["adt/lab"] })
    );
    eventually("the reprocessed message to reach the peer", || async {
        let got = h.receiver.received.lock().unwrap().clone();
        (got == ["E1", "E1", "E1"]).then_some(())
    })
    .await;
    let (status, _) = h
        .call(
            Method::POST,
            "/api/messages/999999/reprocess",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Operator actions on a message are audited.
    let resends = h.audit_entries(&format!("Message/{id}/$resend")).await;
    let outcomes: Vec<u16> = resends.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [200, 404],
        "newest first; a malformed body is refused before"
    );
    let reprocessed = h.audit_entries(&format!("Message/{id}/$reprocess")).await;
    assert_eq!((reprocessed.len(), reprocessed[0].outcome), (1, 200));
}

#[tokio::test]
async fn an_edited_copy_is_resubmitted_as_a_new_message_and_the_original_is_kept() {
    let h = Harness::start().await;
    let operator = h.login("operator").await;
    let viewer = h.login("viewer").await;
    // The receiver refuses the original (a wrong MRN, say): it waits in the error queue.
    h.receiver
        .answers
        .lock()
        .unwrap()
        .insert("F1".into(), VecDeque::from([AckCode::AR]));
    assert_eq!(h.send("adt", &adt("F1", "111")).await.0, "AA");
    let id = h.id_of("F1", &operator).await;
    assert_eq!(
        h.settled(id, &operator).await["deliveries"][0]["state"],
        "failed"
    );

    // The analyst fixes it in an editor (LF line ends) and resubmits it.
    let fixed = String::from_utf8(adt("F1-FIX", "999"))
        .unwrap()
        .replace('\r', "\n");
    let done = h
        .post(
            &format!("/api/messages/{id}/resubmit"),
            &operator,
            Some(json!({ "message": fixed })),
        )
        .await;
    let copy = done["message_id"].as_i64().expect("the copy's id");
    assert_ne!(copy, id);
    assert_eq!(
        done,
        json!({ "message_id": copy, "edited_from": id, "ack_code": "AA", "state": "accepted" })
    );
    let detail = h.settled(copy, &operator).await;
    assert_eq!(detail["deliveries"][0]["state"], "delivered");
    assert_eq!(
        detail["message"]["peer"],
        format!("api:operator (edit of message {id})"),
        "{detail}"
    );
    let revealed = h
        .get(&format!("/api/messages/{copy}?reveal=true"), &operator)
        .await;
    assert_eq!(
        revealed["raw"],
        String::from_utf8(adt("F1-FIX", "999")).unwrap(),
        "stored with CR segment ends"
    );
    assert!(
        h.receiver
            .received
            .lock()
            .unwrap()
            .contains(&"F1-FIX".to_owned())
    );
    // The original is unchanged, still in the error queue, and names its edited copy.
    let original = h
        .get(&format!("/api/messages/{id}?reveal=true"), &operator)
        .await;
    assert_eq!(
        original["raw"],
        String::from_utf8(adt("F1", "111")).unwrap()
    );
    assert_eq!(original["deliveries"][0]["state"], "failed");
    let events = h
        .get(&format!("/api/events?message={id}&kind=note"), &operator)
        .await;
    assert_eq!(
        events["events"][0]["detail"],
        format!("resubmitted after an edit as message {copy} by operator"),
        "{events}"
    );
    let events = h
        .get(&format!("/api/events?message={copy}&kind=note"), &operator)
        .await;
    assert_eq!(
        events["events"][0]["detail"],
        format!("edited copy of message {id}, resubmitted by operator"),
        "{events}"
    );

    // Refusals: unchanged, not HL7 v2, no such message, a viewer.
    for (path, who, body, status, why) in [
        (
            format!("/api/messages/{id}/resubmit"),
            &operator,
            json!({ "message": String::from_utf8(adt("F1", "111")).unwrap() }),
            StatusCode::CONFLICT,
            format!("the edited message is message {id} unchanged: reprocess it instead"),
        ),
        (
            format!("/api/messages/{id}/resubmit"),
            &operator,
            json!({ "message": "PID|1||999" }),
            StatusCode::BAD_REQUEST,
            String::new(),
        ),
        (
            "/api/messages/999999/resubmit".to_owned(),
            &operator,
            json!({ "message": fixed }),
            StatusCode::NOT_FOUND,
            "message 999999 is not stored".to_owned(),
        ),
        (
            format!("/api/messages/{id}/resubmit"),
            &viewer,
            json!({ "message": fixed }),
            StatusCode::FORBIDDEN,
            String::new(),
        ),
    ] {
        let (got, body) = h.call(Method::POST, &path, Some(who), Some(body)).await;
        assert_eq!(got, status, "{path}: {body}");
        if !why.is_empty() {
            assert_eq!(body["error"], why, "{path}");
        }
    }
    let (_, body) = h
        .call(
            Method::POST,
            &format!("/api/messages/{id}/resubmit"),
            Some(&operator),
            Some(json!({ "message": "PID|1||999" })),
        )
        .await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("the edited message does not parse: ")),
        "{body}"
    );
    let audited = h.audit_entries(&format!("Message/{id}/$resubmit")).await;
    let outcomes: Vec<u16> = audited.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [409, 200],
        "newest first; refused bodies before the audit"
    );
}

#[tokio::test]
async fn an_error_queue_is_sent_again_in_its_first_order_all_of_it_or_the_entries_named() {
    let h = Harness::start().await;
    let operator = h.login("operator").await;
    let viewer = h.login("viewer").await;
    for cid in ["Q1", "Q2", "Q3"] {
        h.receiver
            .answers
            .lock()
            .unwrap()
            .insert(cid.into(), VecDeque::from([AckCode::AR]));
        assert_eq!(h.send("adt", &adt(cid, "111")).await.0, "AA");
        let id = h.id_of(cid, &operator).await;
        assert_eq!(
            h.settled(id, &operator).await["deliveries"][0]["state"],
            "failed"
        );
    }
    let errors = h.get("/api/errors?queue=adt/lab", &operator).await;
    let entries = errors["queues"][0]["entries"].as_array().unwrap().clone();
    let ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["control_id"].as_str())
        .collect();
    assert_eq!(ids, ["Q3", "Q2", "Q1"], "the list is newest first");

    // Refused: a viewer, a malformed body, an unknown queue, a seq not in the queue.
    let retry = |who: &str, body: Value| {
        let who = who.to_owned();
        let h = &h;
        async move {
            h.call(Method::POST, "/api/errors/retry", Some(&who), Some(body))
                .await
        }
    };
    let (status, _) = retry(&viewer, json!({ "queue": "adt/lab" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = retry(&operator, json!({ "destination": "lab" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = retry(&operator, json!({ "queue": "adt/nowhere" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = retry(&operator, json!({ "queue": "adt/lab", "seqs": [999999] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"],
        "delivery 999999 is not in the error queue of \"adt/lab\""
    );
    assert_eq!(h.receiver.received.lock().unwrap().len(), 3, "nothing sent");

    // One named entry, then the rest: each goes out oldest first.
    let q2 = entries.iter().find(|e| e["control_id"] == "Q2").unwrap();
    let (status, one) = retry(
        &operator,
        json!({ "queue": "adt/lab", "seqs": [q2["seq"]] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["requeued"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["requeued"][0]["message_id"], q2["message_id"]);
    assert_eq!(one["requeued"][0]["failed_seq"], q2["seq"]);
    let (status, rest) = retry(&operator, json!({ "queue": "adt/lab" })).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    let again: Vec<i64> = rest["requeued"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["message_id"].as_i64())
        .collect();
    let q1 = h.id_of("Q1", &operator).await;
    let q3 = h.id_of("Q3", &operator).await;
    assert_eq!(again, [q1, q3], "oldest first");
    assert_eq!(
        (rest["skipped"].as_array().map(Vec::len), &rest["remaining"]),
        (Some(0), &json!(0))
    );
    eventually("the three to be delivered again", || async {
        let got = h.receiver.received.lock().unwrap().clone();
        (got == ["Q1", "Q2", "Q3", "Q2", "Q1", "Q3"]).then_some(())
    })
    .await;
    for cid in ["Q1", "Q2", "Q3"] {
        let id = h.id_of(cid, &operator).await;
        let detail = h.settled(id, &operator).await;
        let states: Vec<&str> = detail["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["state"].as_str())
            .collect();
        assert_eq!(states, ["failed", "delivered"], "{cid}");
    }
    let errors = h.get("/api/errors?queue=adt/lab", &operator).await;
    assert_eq!(errors["queues"][0]["total"], 0, "the error queue is empty");
    let (status, empty) = retry(&operator, json!({ "queue": "adt/lab" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty["requeued"], json!([]));

    let audited: Vec<u16> = h
        .audit_entries("Queue/adt/lab/$retry")
        .await
        .iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(audited, [200, 200, 200, 404], "newest first");
}

// ---------------------------------------------------------------------------------------
// Unmapped codes, FHIR output, events
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unmapped_codes_are_counted_per_value_and_the_fhir_bundle_is_shown() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    for (cid, code) in [("U1", "9"), ("U2", "9"), ("U3", "7"), ("U4", "3")] {
        assert_eq!(
            h.send("results", &smoking_oru(cid, code)).await.0,
            "AA",
            "{cid}"
        );
    }

    let unmapped = h.get("/api/unmapped", &viewer).await;
    assert_eq!(unmapped["truncated"], false);
    assert_eq!(unmapped["events_scanned"], 3);
    let codes = unmapped["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 2, "{unmapped}");
    let u2 = h.id_of("U2", &viewer).await;
    let nine = &codes[0];
    assert_eq!(nine["channel"], "results");
    assert_eq!(nine["sender"], "LAB/CLINIC_P");
    assert_eq!(nine["map"], "smoking-status");
    assert_eq!(nine["field"], "OBX-5");
    assert_eq!(nine["system"], "L");
    assert_eq!(nine["code"], "9");
    assert_eq!(nine["policy"], Value::Null);
    assert_eq!(nine["count"], 2);
    assert_eq!(nine["last_message_id"], u2);
    assert!(nine["first_seen"].as_str() <= nine["last_seen"].as_str());
    assert_eq!(
        (codes[1]["code"].as_str(), codes[1]["count"].as_u64()),
        (Some("7"), Some(1))
    );
    let other = h.get("/api/unmapped?channel=adt", &viewer).await;
    assert_eq!(other["codes"], json!([]));
    let future = h
        .get(
            &format!("/api/unmapped?since={}", enc("2999-01-01T00:00:00Z")),
            &viewer,
        )
        .await;
    assert_eq!(future["events_scanned"], 0);

    // The events behind it.
    let events = h
        .get("/api/events?kind=unmapped_code&limit=2", &viewer)
        .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events[0]["id"].as_i64() > events[1]["id"].as_i64(),
        "newest first"
    );
    assert!(events[0]["detail"].as_str().unwrap().contains("code=7"));
    let first = events[1]["id"].as_i64().unwrap();
    let tail = h
        .get(
            &format!("/api/events?kind=unmapped_code&after={first}"),
            &viewer,
        )
        .await;
    assert_eq!(
        tail["events"].as_array().map(Vec::len),
        Some(1),
        "after: oldest first"
    );
    let (status, body) = h
        .call(Method::GET, "/api/events?kind=bogus", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("kind: expected one of duplicate,")
    );

    // A [channel.fhir] channel shows the message's bundle, the mapped meaning included.
    let u4 = h.id_of("U4", &viewer).await;
    let detail = h.get(&format!("/api/messages/{u4}"), &viewer).await;
    assert_eq!(detail["fhir_error"], Value::Null);
    assert_eq!(detail["fhir"]["resourceType"], "Bundle");
    let observation = detail["fhir"]["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Observation")
        .expect("an Observation");
    assert_eq!(
        observation["valueCodeableConcept"]["coding"][0]["code"],
        "449868002"
    );

    let results = h.get("/api/channels/results", &viewer).await;
    assert_eq!(results["fhir"], true);
    assert_eq!(results["fhir_profiles"], json!(["CLINIC_P"]));
    assert_eq!(results["stats"]["unmapped_codes"], 3);
    assert_eq!(results["destinations"], json!([]));
}

/// The "add a mapping" button: a code the sender's map does not know is seen, an operator maps
/// it, and the very next message converts with the new meaning, without a restart. The profile
/// file keeps its comments and records who added the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_added_through_the_api_converts_the_next_message() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    let operator = h.login("operator").await;
    let observation_code = |detail: &Value| -> Value {
        detail["fhir"]["entry"]
            .as_array()
            .expect("a bundle")
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Observation")
            .expect("an Observation")["valueCodeableConcept"]["coding"][0]
            .clone()
    };
    assert_eq!(h.send("results", &smoking_oru("M1", "8")).await.0, "AA");
    let m1 = h.id_of("M1", &viewer).await;
    let before = observation_code(&h.get(&format!("/api/messages/{m1}"), &viewer).await);
    assert_eq!(before["code"], "8", "unmapped: kept as sent");
    let unmapped = h.get("/api/unmapped?channel=results", &viewer).await;
    assert_eq!(unmapped["codes"][0]["code"], "8");

    let mapping = json!({
        "channel": "results",
        "map": "smoking-status",
        "code": "8",
        "target": {"system": "http://snomed.info/sct", "code": "8517006", "display": "Ex-smoker"}
    });
    let (status, _) = h
        .call(
            Method::POST,
            "/api/profiles/mappings",
            Some(&viewer),
            Some(mapping.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer cannot add mappings"
    );
    let added = h
        .post("/api/profiles/mappings", &operator, Some(mapping.clone()))
        .await;
    assert_eq!(added["profile"], "CLINIC_P");
    assert_eq!(added["added_by"], "operator");
    assert_eq!(added["channels"], json!(["results"]));

    // The same message again converts with the new target.
    assert_eq!(h.send("results", &smoking_oru("M2", "8")).await.0, "AA");
    let m2 = h.id_of("M2", &viewer).await;
    let after = observation_code(&h.get(&format!("/api/messages/{m2}"), &viewer).await);
    assert_eq!(after["system"], "http://snomed.info/sct");
    assert_eq!(after["code"], "8517006");

    // The file still reads as a profile, with its comment and the entry's author and date.
    let file = added["file"].as_str().expect("file");
    let text = std::fs::read_to_string(file).expect("profile file");
    assert!(
        text.starts_with("# Clinic P's lab, reviewed with its interface team.\n"),
        "{text}"
    );
    assert!(text.contains("added_by = \"operator\""), "{text}");
    let profile = v2fhir::Profile::from_toml(&text, file).expect("still a profile");
    assert_eq!(profile.code_maps[0].entries.len(), 2);
    let listed = h.get("/api/profiles", &viewer).await;
    let entries = &listed["channels"][0]["profiles"][0]["code_maps"][0]["entries"];
    assert_eq!(entries[1]["code"], "8");
    assert_eq!(entries[1]["target"]["code"], "8517006");

    // Refused, each with its reason.
    let with = |key: &str, value: Value| {
        let mut m = mapping.clone();
        m[key] = value;
        m
    };
    for (body, want, why) in [
        (mapping.clone(), StatusCode::CONFLICT, "already mapped"),
        (
            with("channel", json!("nowhere")),
            StatusCode::NOT_FOUND,
            "not running here",
        ),
        (
            with("map", json!("allergies")),
            StatusCode::NOT_FOUND,
            "no profile of channel",
        ),
        (
            with("channel", json!("adt")),
            StatusCode::CONFLICT,
            "has no sender profiles",
        ),
        (
            with("code", json!("")),
            StatusCode::BAD_REQUEST,
            "code: must not be empty",
        ),
        (
            json!({"channel": "results"}),
            StatusCode::BAD_REQUEST,
            "missing field",
        ),
    ] {
        let (status, answer) = h
            .call(
                Method::POST,
                "/api/profiles/mappings",
                Some(&operator),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or("").contains(why),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        text,
        std::fs::read_to_string(file).unwrap(),
        "refusals change nothing"
    );

    // Audited: who changed which map, with the outcome (the refusals too).
    let audit = h.audit_entries("Profile/*/code_map/smoking-status").await;
    let outcomes: Vec<(String, u16)> = audit.iter().map(|a| (a.agent.clone(), a.outcome)).collect();
    assert!(
        outcomes.contains(&("operator".to_string(), 200)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("operator".to_string(), 409)),
        "{outcomes:?}"
    );
}

/// `GET /api/drift` shows what each channel learned; the learned profile exports as a
/// conformance profile; an operator can make a channel learn again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_state_is_shown_exported_and_reset() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    let operator = h.login("operator").await;
    for i in 0..3 {
        assert_eq!(h.send("adt", &adt(&format!("D{i}"), "MRN-D")).await.0, "AA");
    }
    let drift = h.get("/api/drift", &viewer).await;
    let adt_drift = drift["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "adt")
        .expect("channel adt");
    assert_eq!(adt_drift["state"], "learning");
    assert_eq!(adt_drift["messages"], 3);
    assert_eq!(adt_drift["baseline_messages"], 500);
    let t = &adt_drift["message_types"][0];
    assert_eq!(t["message_type"], "ADT^A01");
    let sex = t["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "PID-8")
        .expect("PID-8");
    assert_eq!(sex["name"], "Administrative Sex");
    assert_eq!(sex["fill_rate"], 1.0);
    assert_eq!(sex["values"], json!([{"code": "F", "count": 3}]));
    // No identifier, name or date is ever a value.
    let text = drift.to_string();
    for phi in ["MRN-D", "DOE", "JANE", "19800101"] {
        assert!(!text.contains(phi), "{phi} in {text}");
    }

    let exported = h.get("/api/channels/adt/drift/profile", &viewer).await;
    assert_eq!(exported["name"], "adt-learned");
    hl7v2::validate::Profile::from_json_str(&exported.to_string()).expect("a conformance profile");

    let (status, _) = h
        .call(
            Method::POST,
            "/api/channels/adt/drift/reset",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call(
            Method::POST,
            "/api/channels/nope/drift/reset",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reset = h
        .post("/api/channels/adt/drift/reset", &operator, None)
        .await;
    assert_eq!(reset["state"], "learning");
    let drift = h.get("/api/drift", &viewer).await;
    let adt_drift = drift["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "adt")
        .unwrap();
    assert_eq!(adt_drift["messages"], 0);
    assert_eq!(adt_drift["message_types"], json!([]));
}

// ---------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_alert_appears_in_the_api_while_it_fires_and_then_among_the_recent_ones() {
    let h = Harness::start_with(
        "[alerts]\nevaluate_every = \"50ms\"\n\
         [[alert]]\nname = \"results-codes\"\ntype = \"unmapped_code\"\nchannel = \"results\"\n\
         window = \"1s\"\nseverity = \"info\"\n",
    )
    .await;
    let viewer = h.login("viewer").await;
    let none = h.get("/api/alerts", &viewer).await;
    assert_eq!(none, json!({"active": [], "recent": []}));

    assert_eq!(h.send("results", &smoking_oru("A1", "9")).await.0, "AA");
    let active = eventually("the alert to fire", || async {
        let list = h.get("/api/alerts", &viewer).await;
        let active = list["active"].as_array().cloned().unwrap_or_default();
        active
            .iter()
            .any(|a| a["state"] == "firing")
            .then_some(active)
    })
    .await;
    assert_eq!(active.len(), 1, "{active:?}");
    let a = &active[0];
    assert_eq!(a["rule"], "results-codes");
    assert_eq!(a["kind"], "unmapped_code");
    assert_eq!(a["severity"], "info");
    assert_eq!(a["channel"], "results");
    assert_eq!(a["destination"], Value::Null);
    assert_eq!(a["value"], 1.0);
    assert_eq!(a["unit"], "codes");
    assert_eq!(a["notified"], 1);
    assert!(a["since"].as_str().unwrap().ends_with('Z'), "{a}");

    // A second later the code is out of the window: resolved, listed among the recent ones.
    let recent = eventually("the alert to clear", || async {
        let list = h.get("/api/alerts", &viewer).await;
        (list["active"].as_array().is_some_and(|a| a.is_empty())
            && list["recent"].as_array().is_some_and(|r| r.len() == 2))
        .then(|| list["recent"].as_array().cloned().unwrap_or_default())
    })
    .await;
    assert_eq!(recent[0]["state"], "resolved");
    assert!(recent[0]["resolved_at"].is_string());
    assert_eq!(recent[1]["state"], "firing");
    assert_eq!(recent[0]["since"], recent[1]["since"]);
    // Without a session: 401, as every /api route.
    let (status, _) = h.call(Method::GET, "/api/alerts", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_fhir_base_takes_a_batch_with_or_without_a_trailing_slash() {
    let h = Harness::start().await;
    let viewer = h.login("viewer").await;
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "metadata"}}]
    });
    for base in ["/fhir", "/fhir/"] {
        let answer = h.post(base, &viewer, Some(batch.clone())).await;
        assert_eq!(answer["type"], "batch-response", "{base}: {answer}");
        assert_eq!(answer["entry"][0]["response"]["status"], "200 OK", "{base}");
    }
}
