//! FHIR Bulk Data export, end to end: the real router on a real socket (port 0) over a real
//! SQLite store in a tempdir, asked by a real HTTP client with session cookies and SMART
//! backend-services tokens, as a Bulk Data client would.
//!
//! Map:
//! - the kick-off / poll / download loop, every NDJSON line checked against the official R4
//!   JSON schema (`../shared/fhir-r4/fhir.schema.json`), and its audit records
//! - `_type` and `_since`; the Patient and Group compartments
//! - refusals: 400s with an OperationOutcome, 401 without a token, 403 by scope, 404, 429
//! - cancel (DELETE), the cap on running jobs, expiry, and a restart forgetting jobs
//!
//! Jobs are held running with [`ExportConfig::hold`], never by timing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use causeway_engine::destinations::fhir_store::resource_put;
use causeway_server::audit::Audit;
use causeway_server::auth::{self, Auth, AuthConfig, ClientKeys, ClientRegistration, Role};
use causeway_server::fhir::export::{ExportConfig, Exports};
use causeway_server::{AppState, router};
use causeway_store::{AuditQuery, NewUser, SqliteOptions, SqliteStore, Store, UnixMillis};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::Semaphore;

/// Longest wait for a job; a passing test never waits this long.
const DEADLINE: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery staple";
const TOKEN_URL: &str = "https://causeway.test/auth/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CLIENT: &str = "bulk-client";

/// Polls `check` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The R4 schema (as crates/fhir/tests/support does it)
// ---------------------------------------------------------------------------------------

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fhir-r4/fhir.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).expect("the R4 schema is JSON");
        jsonschema::draft6::new(&schema).expect("the R4 schema compiles as draft-06")
    })
}

fn assert_valid_r4(resource: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(resource)
        .take(5)
        .map(|e| format!("{} at {}", e.masked(), e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not valid R4: {errors:?}\n{resource}");
}

// ---------------------------------------------------------------------------------------
// Client keys and assertions (as routes.rs makes them)
// ---------------------------------------------------------------------------------------

struct Keys {
    private_pem: String,
    jwks: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use p384::pkcs8::{EncodePrivateKey, LineEnding};
        let key = p384::SecretKey::random(&mut rsa::rand_core::OsRng);
        let mut jwk: Value = serde_json::from_str(&key.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!("bulk-1");
        jwk["alg"] = json!("ES384");
        Keys {
            private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            jwks: json!({ "keys": [jwk] }).to_string(),
        }
    })
}

fn assertion() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = UnixMillis::now().0 / 1000;
    let claims = json!({
        "iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL,
        "exp": now + 240, "iat": now,
        "jti": format!("bulk-{}-{n}", std::process::id()),
    });
    let mut h = Header::new(Algorithm::ES384);
    h.kid = Some("bulk-1".into());
    let key = EncodingKey::from_ec_pem(keys().private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Cred {
    None,
    Cookie(String),
    Bearer(String),
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    /// The OperationOutcome's issue code and diagnostics.
    fn issue(&self) -> (String, String) {
        assert_eq!(
            self.body["resourceType"], "OperationOutcome",
            "an OperationOutcome: {}",
            self.text
        );
        let issue = &self.body["issue"][0];
        (
            issue["code"].as_str().unwrap_or_default().to_owned(),
            issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    exports_dir: std::path::PathBuf,
    admin: Cred,
    viewer: Cred,
    _dir: TempDir,
}

fn http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Server {
    /// A server whose export settings `tune` adjusts, with users `admin` and `viewer` signed
    /// in and client [`CLIENT`] registered for anything.
    async fn start(tune: impl FnOnce(&mut ExportConfig)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&data, SqliteOptions::default())
                .await
                .expect("store"),
        );
        let auth = Arc::new(
            Auth::new(
                store.clone(),
                AuthConfig {
                    token_url: Some(TOKEN_URL.into()),
                    clients: vec![ClientRegistration {
                        id: CLIENT.into(),
                        keys: ClientKeys::Jwks(keys().jwks.clone()),
                        scopes: vec!["system/*.cruds".into()],
                    }],
                    attempts_per_minute: 10_000,
                    ..AuthConfig::default()
                },
            )
            .expect("auth"),
        );
        let mut config = ExportConfig::new(&data);
        tune(&mut config);
        let exports_dir = config.dir.clone();
        let exports = Arc::new(Exports::new(config).expect("exports"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = AppState {
            auth,
            audit: Arc::new(Audit::new(store.clone())),
            fhir_base: format!("http://{addr}/fhir").into(),
            store: store.clone(),
            channels: Arc::new(BTreeMap::new()),
            reload: None,
            monitor: None,
            metrics_token: None,
            alerts: None,
            exports: Some(exports),
        };
        let app = router(state);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        let mut s = Server {
            base: format!("http://{addr}"),
            http: http_client(),
            store,
            exports_dir,
            admin: Cred::None,
            viewer: Cred::None,
            _dir: dir,
        };
        for role in [Role::Admin, Role::Viewer] {
            s.store
                .create_user(NewUser {
                    username: role.as_str().into(),
                    password_hash: auth::hash_password(PASSWORD).expect("hash"),
                    role,
                })
                .await
                .expect("user");
            let r = s
                .http
                .post(format!("{}/auth/login", s.base))
                .json(&json!({"username": role.as_str(), "password": PASSWORD}))
                .send()
                .await
                .expect("login");
            assert_eq!(r.status(), StatusCode::OK);
            let cookie = r.headers()["set-cookie"].to_str().unwrap();
            let cookie = Cred::Cookie(cookie.split(';').next().unwrap().to_owned());
            match role {
                Role::Admin => s.admin = cookie,
                _ => s.viewer = cookie,
            }
        }
        s
    }

    /// A token of [`CLIENT`] for exactly `scope`.
    async fn client(&self, scope: &str) -> Cred {
        let enc = |v: &str| {
            v.replace('%', "%25")
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace(' ', "+")
                .replace('*', "%2A")
        };
        let body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={}&scope={}",
            enc(JWT_BEARER),
            assertion(),
            enc(scope)
        );
        let r = self
            .http
            .post(format!("{}/auth/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["scope"], scope, "granted as asked");
        Cred::Bearer(v["access_token"].as_str().expect("token").to_owned())
    }

    async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut r = self.http.request(method, url);
        r = match cred {
            Cred::None => r,
            Cred::Cookie(c) => r.header("cookie", c),
            Cred::Bearer(t) => r.bearer_auth(t),
        };
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// A kick-off with `Prefer: respond-async`.
    async fn kick_off(&self, path: &str, cred: &Cred) -> Answer {
        self.call(
            Method::GET,
            path,
            cred,
            &[
                ("prefer", "respond-async"),
                ("accept", "application/fhir+json"),
            ],
            None,
        )
        .await
    }

    /// A kick-off that must be accepted: the status URL.
    async fn started(&self, path: &str, cred: &Cred) -> String {
        let a = self.kick_off(path, cred).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{path}: {}", a.text);
        a.headers["content-location"]
            .to_str()
            .expect("Content-Location")
            .to_owned()
    }

    /// Polls the status URL until the manifest.
    async fn manifest(&self, status_url: &str, cred: &Cred) -> Value {
        eventually("the export to complete", || async {
            let a = self.call(Method::GET, status_url, cred, &[], None).await;
            match a.status {
                StatusCode::ACCEPTED => None,
                StatusCode::OK => Some(a.body),
                other => panic!("status {other}: {}", a.text),
            }
        })
        .await
    }

    /// Every file of a manifest, parsed: resource type -> its lines, each checked against
    /// the R4 schema and the manifest's count.
    async fn files(&self, manifest: &Value, cred: &Cred) -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for o in manifest["output"].as_array().expect("output") {
            let url = o["url"].as_str().expect("url");
            let a = self.call(Method::GET, url, cred, &[], None).await;
            assert_eq!(a.status, StatusCode::OK, "{url}: {}", a.text);
            assert_eq!(a.headers["content-type"], "application/fhir+ndjson");
            let t = o["type"].as_str().expect("type");
            let lines: Vec<Value> = a
                .text
                .lines()
                .map(|l| serde_json::from_str(l).expect("each line is JSON"))
                .collect();
            assert_eq!(o["count"], lines.len(), "{url}: count");
            for r in &lines {
                assert_eq!(r["resourceType"], t, "{url}");
                assert!(
                    r["id"].is_string() && r["meta"]["versionId"].is_string(),
                    "{r}"
                );
                assert_valid_r4(r);
            }
            out.entry(t.to_owned()).or_default().extend(lines);
        }
        out
    }

    /// Stores `resource` as `type/id` (as the feeds do: through the unified-model writer).
    async fn put(&self, resource: Value) -> UnixMillis {
        let t = resource["resourceType"].as_str().unwrap().to_owned();
        let id = resource["id"].as_str().unwrap().to_owned();
        let put = resource_put(&t, &id, resource, None).expect("put");
        self.store.put_resources(vec![put]).await.expect("store")[0].last_updated
    }

    async fn delete(&self, t: &str, id: &str) {
        let mut put = resource_put(t, id, json!({"resourceType": t, "id": id}), None).unwrap();
        put.delete = true;
        self.store.put_resources(vec![put]).await.expect("delete");
    }

    /// Patients p1, p2, p3; an Observation each (o1..o3); an Encounter of p1; a
    /// Practitioner (outside the compartment); Group g1 of p1 and p3; Observation o3 deleted.
    async fn seed(&self) {
        for (id, family) in [("p1", "Walker"), ("p2", "Okafor"), ("p3", "Müller")] {
            self.put(patient(id, family)).await;
            let o = id.replace('p', "o");
            self.put(observation(&o, id, "5.4")).await;
        }
        self.put(json!({
            "resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p1"}
        }))
        .await;
        self.put(json!({
            "resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Welby"}]
        }))
        .await;
        self.put(json!({
            "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
            "member": [
                {"entity": {"reference": "Patient/p1"}},
                {"entity": {"reference": "Patient/p3"}},
                {"entity": {"reference": "Patient/p2"}, "inactive": true}
            ]
        }))
        .await;
        self.delete("Observation", "o3").await;
    }

    async fn audit(&self, entity: &str) -> Vec<causeway_store::AuditEntry> {
        self.store
            .audit_records(AuditQuery {
                entity: Some(entity.into()),
                ..AuditQuery::default()
            })
            .await
            .expect("audit")
    }
}

fn patient(id: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "identifier": [{"system": "urn:example:mrn", "value": format!("MRN-{id}")}],
        "name": [{"family": family, "given": ["Ruth"]}],
        "gender": "female", "birthDate": "1980-05-17"
    })
}

fn observation(id: &str, patient: &str, value: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-03-02T07:30:00Z",
        "valueQuantity": {"value": value.parse::<f64>().unwrap(), "unit": "mmol/L"}
    })
}

/// The ids of each type.
fn ids(files: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeSet<String>> {
    files
        .iter()
        .map(|(t, lines)| {
            (
                t.clone(),
                lines
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(t, ids)| (t.to_string(), ids.iter().map(|i| i.to_string()).collect()))
        .collect()
}

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
