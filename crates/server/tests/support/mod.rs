//! The FHIR API under test, shared by the test files of this crate: the real router on a real
//! socket (port 0) over a real SQLite store in a tempdir, a real HTTP client with session
//! cookies and SMART backend-services tokens, and the official R4 JSON schema
//! (`../shared/fhir-r4/fhir.schema.json`) to check what it serves.
#![allow(dead_code)] // each test file uses its own part

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
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Longest wait for a job; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const PASSWORD: &str = "correct horse battery staple";
pub const TOKEN_URL: &str = "https://causeway.test/auth/token";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const CLIENT: &str = "bulk-client";

/// Polls `check` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
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

pub fn validator() -> &'static jsonschema::Validator {
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

pub fn assert_valid_r4(resource: &Value) {
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

pub struct Keys {
    pub private_pem: String,
    pub jwks: String,
}

pub fn keys() -> &'static Keys {
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

pub fn assertion() -> String {
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
pub enum Cred {
    None,
    Cookie(String),
    Bearer(String),
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The OperationOutcome's issue code and diagnostics.
    pub fn issue(&self) -> (String, String) {
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

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub exports_dir: std::path::PathBuf,
    pub admin: Cred,
    pub viewer: Cred,
    pub _dir: TempDir,
}

pub fn http_client() -> reqwest::Client {
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
    pub async fn start(tune: impl FnOnce(&mut ExportConfig)) -> Server {
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
    pub async fn client(&self, scope: &str) -> Cred {
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

    pub async fn call(
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
    pub async fn kick_off(&self, path: &str, cred: &Cred) -> Answer {
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
    pub async fn started(&self, path: &str, cred: &Cred) -> String {
        let a = self.kick_off(path, cred).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{path}: {}", a.text);
        a.headers["content-location"]
            .to_str()
            .expect("Content-Location")
            .to_owned()
    }

    /// Polls the status URL until the manifest.
    pub async fn manifest(&self, status_url: &str, cred: &Cred) -> Value {
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
    pub async fn files(&self, manifest: &Value, cred: &Cred) -> BTreeMap<String, Vec<Value>> {
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
    pub async fn put(&self, resource: Value) -> UnixMillis {
        let t = resource["resourceType"].as_str().unwrap().to_owned();
        let id = resource["id"].as_str().unwrap().to_owned();
        let put = resource_put(&t, &id, resource, None).expect("put");
        self.store.put_resources(vec![put]).await.expect("store")[0].last_updated
    }

    pub async fn delete(&self, t: &str, id: &str) {
        let mut put = resource_put(t, id, json!({"resourceType": t, "id": id}), None).unwrap();
        put.delete = true;
        self.store.put_resources(vec![put]).await.expect("delete");
    }

    /// Patients p1, p2, p3; an Observation each (o1..o3); an Encounter of p1; a
    /// Practitioner (outside the compartment); Group g1 of p1 and p3; Observation o3 deleted.
    pub async fn seed(&self) {
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

    pub async fn audit(&self, entity: &str) -> Vec<causeway_store::AuditEntry> {
        self.store
            .audit_records(AuditQuery {
                entity: Some(entity.into()),
                ..AuditQuery::default()
            })
            .await
            .expect("audit")
    }
}

pub fn patient(id: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "identifier": [{"system": "urn:example:mrn", "value": format!("MRN-{id}")}],
        "name": [{"family": family, "given": ["Ruth"]}],
        "gender": "female", "birthDate": "1980-05-17"
    })
}

pub fn observation(id: &str, patient: &str, value: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-03-02T07:30:00Z",
        "valueQuantity": {"value": value.parse::<f64>().unwrap(), "unit": "mmol/L"}
    })
}

/// The ids of each type.
pub fn ids(files: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeSet<String>> {
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

pub fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(t, ids)| (t.to_string(), ids.iter().map(|i| i.to_string()).collect()))
        .collect()
}
