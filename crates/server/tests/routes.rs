//! Every HTTP route of the server, walked with every kind of caller: the real router served by
//! a real engine (`Engine::start_with_api`, as `causeway serve` builds it) over a real SQLite
//! store in a tempdir, a feed channel that fills the FHIR store from MLLP, and a write-back
//! channel whose EHR is an MLLP peer in this test that answers AA.
//!
//! Map:
//! - [`table`]: every route with a concrete path, a body, what it needs and its success status
//! - the table cannot rot: its `/api` entries are exactly the operations of the served
//!   `GET /api/openapi.json`, and the others exactly the `.route(...)` calls of the server's
//!   source, found by reading the source from `router` down ([`source_routes`])
//! - the walk: for each route, no credentials, an expired access token, an expired session,
//!   an unknown bearer token and a malformed `Authorization` header are 401 with
//!   `WWW-Authenticate: Bearer`; the wrong scope or role is 403; the right one gets the
//!   route's success status (201 for creates, AA from the EHR with `Prefer: respond-sync`)
//! - the sign-in endpoints, anonymous by nature: good and badly signed client assertions,
//!   right and wrong passwords, sign-out revoking the session

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use causeway_engine::config::Config;
use causeway_engine::net::client::MllpClient;
use causeway_engine::net::server::{self, Handler, Peer, Reply, ServerOptions};
use causeway_engine::runtime::Engine;
use causeway_server::audit::Audit;
use causeway_server::auth::{self, Auth, AuthConfig, ClientKeys, ClientRegistration, Role};
use causeway_server::{AppState, api, router};
use causeway_store::{
    NewToken, NewUser, SearchFilter, SqliteOptions, SqliteStore, Store, TokenHash, TokenKind,
    UnixMillis,
};
use hl7v2::{AckCode, AckHeader};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;

mod support;

use support::{JWT_BEARER, PASSWORD, TOKEN_URL, eventually, http_client};

/// The registered backend client: it may be granted anything; each token asks for less.
const CLIENT: &str = "routes-app";

const ADT: &str = "MSH|^~\\&|ADTAPP|NORTH|CAUSEWAY|HUB|20240301101500||ADT^A01^ADT_A01|ROUTES-ADT-1|P|2.5.1\r\
EVN|A01|20240301101500\r\
PID|1||MRN-ROUTES-1^^^NORTH^MR||WALKER^RUTH^Q||19800517|F|||12 HARBOUR RD^^PORTSMOUTH^^PO1 2AB^GBR\r\
PV1|1|I|WARD^12^3^NORTH||||1234^WELBY^MARCUS^^^DR|||MED||||ADM|||||V-ROUTES-1|||||||||||||||||||||||||20240301101000\r";

const ORU: &str = "MSH|^~\\&|LABAPP|NORTH|CAUSEWAY|HUB|20240302080000||ORU^R01^ORU_R01|ROUTES-ORU-1|P|2.5.1\r\
PID|1||MRN-ROUTES-1^^^NORTH^MR||WALKER^RUTH^Q||19800517|F\r\
OBR|1|PL-1|FL-1|2345-7^Glucose^LN|||20240302073000\r\
OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^mmol/L^UCUM|3.9-5.5|N|||F|||20240302073000\r";

// ---------------------------------------------------------------------------------------
// Client keys and assertions (as crates/server/tests/auth.rs makes them)
// ---------------------------------------------------------------------------------------

struct Keys {
    private_pem: String,
    jwks: String,
    /// An ES384 key nobody registered: its signatures are bad signatures.
    stranger_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use p384::pkcs8::{EncodePrivateKey, LineEnding};
        let mut rng = rsa::rand_core::OsRng;
        let key = p384::SecretKey::random(&mut rng);
        let mut jwk: Value = serde_json::from_str(&key.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!("routes-1");
        jwk["alg"] = json!("ES384");
        let stranger = p384::SecretKey::random(&mut rng);
        Keys {
            private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            jwks: json!({ "keys": [jwk] }).to_string(),
            stranger_pem: stranger.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        }
    })
}

fn now_secs() -> i64 {
    UnixMillis::now().0 / 1000
}

/// Good claims of [`CLIENT`], each with its own `jti`.
fn claims() -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": now_secs() + 240,
        "iat": now_secs(),
        "jti": format!("routes-{}-{n}", std::process::id()),
    })
}

/// `claims` signed ES384 with `pem`, naming the registered key.
fn sign(claims: &Value, pem: &str) -> String {
    let mut h = Header::new(Algorithm::ES384);
    h.kid = Some("routes-1".into());
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

// ---------------------------------------------------------------------------------------
// The EHR: an MLLP peer that accepts everything
// ---------------------------------------------------------------------------------------

struct Ehr;

impl Handler for Ehr {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        let msg = hl7v2::parse(&payload).expect("written-back messages parse");
        Reply::Ack(hl7v2::build_ack(
            &msg,
            AckCode::AA,
            &[],
            AckHeader {
                control_id: "EHR1",
                timestamp: "20240101120001",
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------

/// How a request proves who it is.
#[derive(Clone, Debug)]
enum Cred {
    None,
    Cookie(String),
    Bearer(String),
    /// An `Authorization` header as given.
    Authorization(String),
}

/// What the setup made, for the table's concrete paths.
struct Ids {
    patient: String,
    order: String,
    /// The message of an asynchronous write, settled (`/fhir/_write/{message}`).
    write: i64,
    subscription: String,
    /// A subscription the walk deletes.
    doomed_subscription: String,
    /// The stored ADT (management API message routes).
    message: i64,
    /// A Group whose member is the patient.
    group: String,
    /// A completed export of the admin's, and the path of one of its files.
    export: String,
    export_file: String,
    /// An export the walk deletes.
    doomed_export: String,
}

struct Server {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    engine: Option<Engine>,
    cookies: HashMap<Role, String>,
    /// Access tokens by the scope asked for.
    tokens: Mutex<HashMap<String, String>>,
    // Last: the files outlive the engine and the store.
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The engine's tasks end with the runtime; nothing to flush in a test.
        drop(self.engine.take());
    }
}

/// Status, headers and body (JSON, or the text as a JSON string) of an answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Server {
    /// Channel `feed` (MLLP in, FHIR store out) and channel `orders` (FHIR API writes of
    /// every write-back type to the in-test EHR); users of each role; client [`CLIENT`].
    async fn start() -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let ehr = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ehr_addr = ehr.local_addr().expect("addr");
        tokio::spawn(server::run(
            ehr,
            ServerOptions::default(),
            Arc::new(Ehr),
            std::future::pending::<()>(),
        ));
        let text = format!(
            "[server]\ndata_dir = \"data\"\nhttp = \"127.0.0.1:0\"\n\
             [server.export]\nmax_jobs = 64\n\
             [[channel]]\nname = \"feed\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
               [[channel.destination]]\n  name = \"unified\"\n  type = \"fhir-store\"\n\
             [[channel]]\nname = \"orders\"\nsource = {{ type = \"fhir-api\" }}\n\
               [channel.write_back]\n  receiving_application = \"EHR\"\n  sync_timeout = \"15s\"\n\
               [[channel.destination]]\n  name = \"ehr\"\n  type = \"mllp\"\n  connect = \"{ehr_addr}\"\n\
               connect_timeout = \"2s\"\n  ack_timeout = \"5s\"\n  retry = {{ initial = \"20ms\", max = \"100ms\" }}\n\
             [[channel]]\nname = \"lab\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
             fhir = {{ profiles = \"lab.toml\" }}\n"
        );
        // The lab's sender profile, for `POST /api/profiles/mappings` to add to.
        std::fs::write(
            dir.path().join("lab.toml"),
            "name = \"lab\"\n[sender]\napplication = \"LABAPP\"\n\
             [[code_map]]\nname = \"result-flags\"\nfields = [\"OBX-8\"]\nunmapped = \"pass\"\n",
        )
        .expect("write the lab profile");
        // On disk too, for `POST /api/config/reload` to read back.
        let config_file = dir.path().join("causeway.toml");
        std::fs::write(&config_file, &text).expect("write the configuration");
        let config = Config::from_str(&text, dir.path()).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("test configuration invalid:\n{}", lines.join("\n"))
        });
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&config.server.data_dir, SqliteOptions::default())
                .await
                .expect("open the store"),
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
        // A reload handle whose requests are taken and dropped: the walk checks who may ask.
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move { while reload_rx.recv().await.is_some() {} });
        let reload = Arc::new(causeway_server::Reload {
            path: Some(config_file),
            data_dir: config.server.data_dir.clone(),
            tx: reload_tx,
        });
        // Room for every kick-off of the walk, which does not wait for each job to end
        // (`[server.export] max_jobs` above).
        assert_eq!(config.server.export.max_jobs, 64);
        let exports = Arc::new(
            causeway_server::fhir::export::Exports::new(
                causeway_server::fhir::export::ExportConfig::from_settings(
                    &config.server.data_dir,
                    &config.server.export,
                ),
            )
            .expect("export directory"),
        );
        // As `causeway serve` builds it: the router gets the engine's channels and address.
        let api_store = store.clone();
        let engine = Engine::start_with_api(&config, store.clone(), move |ctx| {
            Some(router(AppState {
                audit: Arc::new(Audit::new(api_store.clone())),
                store: api_store,
                auth,
                fhir_base: format!("http://{}/fhir", ctx.addr).into(),
                channels: Arc::new(ctx.channels.clone()),
                reload: Some(reload),
                monitor: Some(ctx.monitor.clone()),
                metrics_token: None,
                alerts: Some(ctx.alerts.clone()),
                exports: Some(exports),
            }))
        })
        .await
        .expect("engine starts");
        let addr = engine.http_addr().expect("the HTTP server is bound");

        let mut server = Server {
            base: format!("http://{addr}"),
            http: http_client(),
            store: store.clone(),
            engine: Some(engine),
            cookies: HashMap::new(),
            tokens: Mutex::new(HashMap::new()),
            _dir: dir,
        };
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let name = role.as_str();
            store
                .create_user(NewUser {
                    username: name.into(),
                    password_hash: auth::hash_password(PASSWORD).expect("hash"),
                    role,
                })
                .await
                .expect("create user");
            let cookie = server.login(name).await;
            server.cookies.insert(role, cookie);
        }
        server
    }

    fn cookie(&self, role: Role) -> Cred {
        Cred::Cookie(self.cookies[&role].clone())
    }

    /// `POST /auth/login`; returns the `Cookie` header value.
    async fn login(&self, user: &str) -> String {
        let r = self
            .http
            .post(format!("{}/auth/login", self.base))
            .json(&json!({ "username": user, "password": PASSWORD }))
            .send()
            .await
            .expect("login request");
        assert_eq!(r.status(), StatusCode::OK, "{user} signs in");
        let set = r.headers()[SET_COOKIE].to_str().expect("cookie").to_owned();
        set.split(';').next().expect("name=value").to_owned()
    }

    /// `POST /auth/token` with this assertion and scope.
    async fn token_request(&self, assertion: &str, scope: &str) -> Answer {
        let form: Vec<String> = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
            ("scope", scope),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
        let r = self
            .http
            .post(format!("{}/auth/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.join("&"))
            .send()
            .await
            .expect("token request");
        answer(r).await
    }

    /// An access token of [`CLIENT`] for exactly `scope` (asked once, then reused).
    async fn client(&self, scope: &str) -> Cred {
        if let Some(t) = self.tokens.lock().unwrap().get(scope) {
            return Cred::Bearer(t.clone());
        }
        let a = self
            .token_request(&sign(&claims(), &keys().private_pem), scope)
            .await;
        assert_eq!(a.status, StatusCode::OK, "token for {scope}: {}", a.body);
        assert_eq!(a.body["scope"], scope, "granted as asked");
        let token = a.body["access_token"].as_str().expect("token").to_owned();
        self.tokens
            .lock()
            .unwrap()
            .insert(scope.to_owned(), token.clone());
        Cred::Bearer(token)
    }

    /// A token that the store knows and that expires at `at`.
    async fn expiring(
        &self,
        kind: TokenKind,
        subject: &str,
        scope: &str,
        at: UnixMillis,
    ) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("randomness");
        let token = hex::encode(bytes);
        self.store
            .insert_token(NewToken {
                hash: TokenHash::of(&token),
                kind,
                subject: subject.into(),
                scope: scope.into(),
                expires_at: at,
            })
            .await
            .expect("insert token");
        token
    }

    async fn call(&self, method: Method, path: &str, cred: &Cred, body: Option<&Body>) -> Answer {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        r = match cred {
            Cred::None => r,
            Cred::Cookie(c) => r.header(reqwest::header::COOKIE, c),
            Cred::Bearer(t) => r.bearer_auth(t),
            Cred::Authorization(v) => r.header(reqwest::header::AUTHORIZATION, v),
        };
        r = match body {
            None => r,
            Some(Body::Json(v)) => r.json(v),
            // Writes back wait for the EHR's ACK: 201 rather than 202.
            Some(Body::Fhir(v)) => r
                .header("content-type", "application/fhir+json")
                .header("prefer", "respond-sync")
                .body(v.to_string()),
            Some(Body::Export(v)) => {
                let r = r.header("prefer", "respond-async");
                match v {
                    Some(v) => r
                        .header("content-type", "application/fhir+json")
                        .body(v.to_string()),
                    None => r,
                }
            }
        };
        answer(r.send().await.expect("request")).await
    }

    async fn get(&self, path: &str, cred: &Cred) -> Value {
        let a = self.call(Method::GET, path, cred, None).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {}", a.body);
        a.body
    }

    /// Fills the stores through the real paths: an ADT and an ORU over MLLP into the FHIR
    /// store, an order written back synchronously and one asynchronously, two subscriptions.
    async fn seed(&self) -> Ids {
        let engine = self.engine.as_ref().expect("engine");
        let feed = engine.mllp_addr("feed").expect("feed listens");
        let mut mllp = MllpClient::connect(feed.to_string(), None, None, Duration::from_secs(5))
            .await
            .expect("connect");
        for m in [ADT, ORU] {
            let ack = mllp
                .send(m.as_bytes(), Duration::from_secs(10))
                .await
                .expect("ACK");
            assert!(
                String::from_utf8_lossy(&ack).contains("MSA|AA|"),
                "accepted"
            );
        }
        let admin = self.cookie(Role::Admin);
        let patient = eventually("the patient in the FHIR store", || async {
            let b = self
                .get("/fhir/Patient?identifier=MRN-ROUTES-1", &admin)
                .await;
            b["entry"][0]["resource"]["id"].as_str().map(str::to_owned)
        })
        .await;
        eventually("the result in the FHIR store", || async {
            let b = self.get("/fhir/Observation", &admin).await;
            (b["total"] == 1).then_some(())
        })
        .await;
        let message = self
            .store
            .search(SearchFilter {
                control_id: Some("ROUTES-ADT-1".into()),
                limit: 1,
                ..SearchFilter::default()
            })
            .await
            .expect("search")[0]
            .id
            .0;

        let created = self
            .call(
                Method::POST,
                "/fhir/ServiceRequest",
                &admin,
                Some(&Body::Fhir(order(&patient, "ORD-SEED-1", None))),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let order_id = created.body["id"].as_str().expect("id").to_owned();

        let queued = self
            .http
            .post(format!("{}/fhir/ServiceRequest", self.base))
            .header(reqwest::header::COOKIE, &self.cookies[&Role::Admin])
            .header("content-type", "application/fhir+json")
            .body(order(&patient, "ORD-SEED-2", None).to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(queued.status(), StatusCode::ACCEPTED);
        let location = queued.headers()["content-location"]
            .to_str()
            .expect("Content-Location")
            .to_owned();
        let write: i64 = location
            .rsplit('/')
            .next()
            .and_then(|m| m.parse().ok())
            .expect("a message id");
        eventually("the asynchronous write to settle", || async {
            let a = self
                .call(Method::GET, &format!("/fhir/_write/{write}"), &admin, None)
                .await;
            (a.status == StatusCode::CREATED).then_some(())
        })
        .await;

        let mut subscriptions = Vec::new();
        for _ in 0..2 {
            let a = self
                .call(
                    Method::POST,
                    "/fhir/Subscription",
                    &admin,
                    Some(&Body::Fhir(subscription(None))),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
            subscriptions.push(a.body["id"].as_str().expect("id").to_owned());
        }
        // A Group (stored directly: it is not a type the API writes back to the EHR).
        let group = "routes-group".to_owned();
        self.store
            .put_resources(vec![causeway_store::ResourcePut {
                resource_type: "Group".into(),
                id: group.clone(),
                json: json!({
                    "resourceType": "Group", "type": "person", "actual": true,
                    "member": [{"entity": {"reference": format!("Patient/{patient}")}}]
                })
                .to_string()
                .into_bytes(),
                index: Vec::new(),
                if_match: None,
                source: None,
                delete: false,
            }])
            .await
            .expect("put the group");
        // Two exports of the admin's: one to read and download, one to delete.
        let mut exports = Vec::new();
        for _ in 0..2 {
            let a = self
                .call(
                    Method::GET,
                    "/fhir/$export?_type=Patient",
                    &admin,
                    Some(&Body::Export(None)),
                )
                .await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
            let location = a.headers["content-location"].to_str().expect("location");
            let path = location
                .strip_prefix(&self.base)
                .expect("under the server")
                .to_owned();
            exports.push(path.rsplit('/').next().expect("a job id").to_owned());
        }
        let export = exports[0].clone();
        let export_file = eventually("the export to complete", || async {
            let a = self
                .call(
                    Method::GET,
                    &format!("/fhir/_export/{export}"),
                    &admin,
                    None,
                )
                .await;
            (a.status == StatusCode::OK).then(|| {
                let url = a.body["output"][0]["url"].as_str().expect("a file url");
                url.strip_prefix(&self.base)
                    .expect("under the server")
                    .to_owned()
            })
        })
        .await;
        Ids {
            patient,
            order: order_id,
            write,
            doomed_subscription: subscriptions.pop().expect("two"),
            subscription: subscriptions.pop().expect("two"),
            message,
            group,
            export,
            export_file,
            doomed_export: exports[1].clone(),
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding (reqwest is built without `form`).
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn answer(mut r: reqwest::Response) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    // An event stream does not end: its first event is the answer.
    let streaming = headers
        .get(reqwest::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = if streaming {
        let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("the stream's first event within 10 s")
            .expect("stream");
        String::from_utf8_lossy(&first.unwrap_or_default()).into_owned()
    } else {
        r.text().await.expect("body")
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// A ServiceRequest for `patient` (with its `id` for an update).
fn order(patient: &str, placer: &str, id: Option<&str>) -> Value {
    let mut v = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "urn:example:placer", "value": placer}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24331-1", "display": "Lipid panel"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": "2024-03-02T09:00:00Z"
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

/// A rest-hook subscription no resource here matches (its endpoint is never called).
fn subscription(id: Option<&str>) -> Value {
    let mut v = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "route walk",
        "criteria": "Observation?code=http://loinc.org|0000-0",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/never",
                    "payload": "application/fhir+json"}
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    /// `application/json`.
    Json(Value),
    /// `application/fhir+json`, with `Prefer: respond-sync`.
    Fhir(Value),
    /// A Bulk Data kick-off: `Prefer: respond-async`, and a Parameters body for a POST.
    Export(Option<Value>),
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Nothing: credentials, good or bad, change nothing.
    Anonymous,
    /// The sign-in endpoints: anonymous by nature, with their own refusals ([`sign_in`]).
    SignIn,
    /// Any principal, user or client.
    Anyone,
    /// This FHIR access to this type (`*`: every type): scope `system/<type>.<read|write>`,
    /// or a user with the viewer (read) or operator (write) role.
    Fhir(&'static str, Access),
    /// A write of this type that becomes an HL7 v2 message to the EHR: scope
    /// `system/<type>.write` and `system/Patient.read` (the server reads the subject for the
    /// message's PID only for a caller that may read it), or the operator role.
    WriteBack(&'static str),
    /// A user with at least this role.
    Role(Role),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Access {
    fn scope(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

#[derive(Debug)]
struct Route {
    method: Method,
    /// As the router (and the OpenAPI document) spell it.
    template: &'static str,
    path: String,
    body: Option<Body>,
    need: Need,
    /// The answer to a caller that may.
    ok: StatusCode,
}

/// Every route, walked in this order (a stop before its start, sign-out last). Columns:
/// method; path as the router spells it; what it needs (`anonymous`, `sign-in`, `anyone`, a
/// role, `<Type>.read|write`, `<Type>.write-back`); the answer to a caller that may; the body
/// (`-`: none); the path requested (`-`: the same), with the seeded `{patient}`, `{order}`,
/// `{write}`, `{sub}`, `{doomed}`, `{message}`, `{group}`, `{export}`, `{export_file}` and
/// `{doomed_export}`.
const TABLE: &str = "
GET    /health                              anonymous                 200 -         -
GET    /ready                               anonymous                 200 -         -
GET    /metrics                             anonymous                 200 -         -
GET    /ui                                  anonymous                 200 -         -
GET    /ui/                                 anonymous                 200 -         -
GET    /ui/{file}                           anonymous                 200 -         /ui/app.js
POST   /auth/token                          sign-in                   200 -         -
POST   /auth/login                          sign-in                   200 -         -
GET    /auth/me                             anyone                    200 -         -
GET    /fhir/metadata                       anyone                    200 -         -
POST   /fhir/                               anyone                    200 batch     /fhir
GET    /fhir/_history                       *.read                    200 -         -
GET    /fhir/_write/{message}               ServiceRequest.read       201 -         /fhir/_write/{write}
GET    /fhir/Subscription                   Subscription.read         200 -         -
POST   /fhir/Subscription                   Subscription.write        201 sub       -
GET    /fhir/Subscription/{id}              Subscription.read         200 -         /fhir/Subscription/{sub}
PUT    /fhir/Subscription/{id}              Subscription.write        200 sub-put   /fhir/Subscription/{sub}
DELETE /fhir/Subscription/{id}              Subscription.write        200 -         /fhir/Subscription/{doomed}
GET    /fhir/$export                        Observation.read          202 async     /fhir/$export?_type=Observation
POST   /fhir/$export                        Observation.read          202 params    -
GET    /fhir/Patient/$export                Patient.read              202 async     -
POST   /fhir/Patient/$export                Patient.read              202 no-params -
GET    /fhir/Group/{id}/$export             *.read                    202 async     /fhir/Group/{group}/$export
POST   /fhir/Group/{id}/$export             *.read                    202 no-params /fhir/Group/{group}/$export
POST   /fhir/Group                          Group.write               201 group     -
GET    /fhir/Group/{id}                     Group.read                200 -         /fhir/Group/{group}
PUT    /fhir/Group/{id}                     Group.write               200 group     /fhir/Group/{group}
GET    /fhir/_export/{job}                  admin                     200 -         /fhir/_export/{export}
GET    /fhir/_export/{job}/{file}           admin                     200 -         {export_file}
DELETE /fhir/_export/{job}                  admin                     202 -         /fhir/_export/{doomed_export}
GET    /fhir/{type}                         Observation.read          200 -         /fhir/Observation?code=2345-7
GET    /fhir/Observation/$lastn             Observation.read          200 -         /fhir/Observation/$lastn?patient={patient}
POST   /fhir/Patient/$match                 Patient.read              200 match     -
POST   /fhir/{type}                         ServiceRequest.write-back 201 order     /fhir/ServiceRequest
GET    /fhir/{type}/_history                Observation.read          200 -         /fhir/Observation/_history
GET    /fhir/{type}/{id}                    Patient.read              200 -         /fhir/Patient/{patient}
PUT    /fhir/{type}/{id}                    ServiceRequest.write-back 200 order-put /fhir/ServiceRequest/{order}
GET    /fhir/{type}/{id}/{operation}        Patient.read              200 -         /fhir/Patient/{patient}/_history
GET    /fhir/{type}/{id}/{operation}        Patient.read              200 -         /fhir/Patient/{patient}/$everything
GET    /fhir/{type}/{id}/_history/{version} Patient.read              200 -         /fhir/Patient/{patient}/_history/1
GET    /fhir/AuditEvent                     admin                     200 -         /fhir/AuditEvent?_count=5
GET    /api/openapi.json                    viewer                    200 -         -
GET    /api/channels                        viewer                    200 -         -
GET    /api/channels/{name}                 viewer                    200 -         /api/channels/feed
POST   /api/channels/{name}/stop            operator                  200 -         /api/channels/feed/stop
POST   /api/channels/{name}/start           operator                  200 -         /api/channels/feed/start
POST   /api/config/reload                   admin                     202 -         -
GET    /api/messages                        viewer                    200 -         /api/messages?channel=feed
GET    /api/messages/{id}                   viewer                    200 -         /api/messages/{message}
POST   /api/messages/{id}/resend            operator                  200 resend    /api/messages/{message}/resend
POST   /api/messages/{id}/reprocess         operator                  200 -         /api/messages/{message}/reprocess
POST   /api/messages/{id}/resubmit          operator                  200 resubmit  /api/messages/{message}/resubmit
GET    /api/errors                          viewer                    200 -         -
POST   /api/errors/retry                    operator                  200 retry     -
GET    /api/unmapped                        viewer                    200 -         -
GET    /api/events                          viewer                    200 -         -
GET    /api/drift                           viewer                    200 -         -
GET    /api/channels/{name}/drift/profile   viewer                    200 -         /api/channels/feed/drift/profile
POST   /api/channels/{name}/drift/reset     operator                  200 -         /api/channels/feed/drift/reset
GET    /api/profiles                        viewer                    200 -         -
POST   /api/profiles/mappings               operator                  200 mapping   -
GET    /api/monitor                         viewer                    200 -         /api/monitor?seconds=60
GET    /api/stream                          viewer                    200 -         -
GET    /api/alerts                          viewer                    200 -         -
POST   /auth/logout                         anonymous                 204 -         -
";

/// [`TABLE`] with the seeded ids and the bodies filled in.
fn table(ids: &Ids) -> Vec<Route> {
    let mut rescheduled = order(&ids.patient, "ORD-SEED-1", Some(&ids.order));
    rescheduled["authoredOn"] = json!("2024-03-03T09:00:00Z");
    TABLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let columns: Vec<&'static str> = line.split_whitespace().collect();
            let [method, template, need, ok, body, path] = columns[..] else {
                panic!("a table line has six columns: {line}");
            };
            let path = if path == "-" { template } else { path };
            let path = path
                .replace("{patient}", &ids.patient)
                .replace("{order}", &ids.order)
                .replace("{write}", &ids.write.to_string())
                .replace("{sub}", &ids.subscription)
                .replace("{doomed}", &ids.doomed_subscription)
                .replace("{message}", &ids.message.to_string())
                .replace("{group}", &ids.group)
                .replace("{export_file}", &ids.export_file)
                .replace("{doomed_export}", &ids.doomed_export)
                .replace("{export}", &ids.export);
            let body = match body {
                "-" => None,
                "async" => Some(Body::Export(None)),
                "params" => Some(Body::Export(Some(json!({
                    "resourceType": "Parameters",
                    "parameter": [{"name": "_type", "valueString": "Observation"}]
                })))),
                "group" => Some(Body::Fhir(json!({
                    "resourceType": "Group", "id": ids.group, "type": "person", "actual": true,
                    "member": [{"entity": {"reference": format!("Patient/{}", ids.patient)}}]
                }))),
                "no-params" => Some(Body::Export(Some(json!({"resourceType": "Parameters"})))),
                "batch" => Some(Body::Fhir(json!({
                    "resourceType": "Bundle", "type": "batch",
                    "entry": [{"request": {"method": "GET", "url": format!("Patient/{}", ids.patient)}}]
                }))),
                "sub" => Some(Body::Fhir(subscription(None))),
                "sub-put" => Some(Body::Fhir(subscription(Some(&ids.subscription)))),
                "order" => Some(Body::Fhir(order(&ids.patient, "ORD-WALK-1", None))),
                "order-put" => Some(Body::Fhir(rescheduled.clone())),
                "resend" => Some(Body::Json(json!({ "destination": "unified" }))),
                "match" => Some(Body::Fhir(json!({
                    "resourceType": "Parameters",
                    "parameter": [{"name": "resource", "resource": {
                        "resourceType": "Patient",
                        "name": [{"family": "Walker"}], "birthDate": "1980-05-17"
                    }}]
                }))),
                "resubmit" => Some(Body::Json(json!({
                    "message": "MSH|^~\\&|WALK|HOSP|CW|CW|20240101120000||ADT^A08^ADT_A01|WALK-EDIT|P|2.5.1\n\
                                EVN|A08|20240101120000\nPID|1||WALK-1^^^HOSP^MR||EDITED^NAME\n"
                }))),
                "retry" => Some(Body::Json(json!({ "queue": "feed/unified" }))),
                "mapping" => Some(Body::Json(json!({
                    "channel": "lab",
                    "map": "result-flags",
                    "code": "HH",
                    "target": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "HH"}
                }))),
                other => panic!("no body {other:?}: {line}"),
            };
            let need = match need {
                "anonymous" => Need::Anonymous,
                "sign-in" => Need::SignIn,
                "anyone" => Need::Anyone,
                other => match (Role::parse(other), other.split_once('.')) {
                    (Some(role), _) => Need::Role(role),
                    (None, Some((t, "read"))) => Need::Fhir(t, Access::Read),
                    (None, Some((t, "write"))) => Need::Fhir(t, Access::Write),
                    (None, Some((t, "write-back"))) => Need::WriteBack(t),
                    _ => panic!("unknown need {other:?}: {line}"),
                },
            };
            Route {
                method: method.parse().expect("a method"),
                template,
                path,
                body,
                need,
                ok: ok.parse().expect("a status"),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The routes the source declares
// ---------------------------------------------------------------------------------------

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A source file without comment lines and `#[cfg(test)]` items.
fn source(path: &Path) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut code = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    while let Some(at) = code.find("#[cfg(test)]") {
        let open = at + code[at..].find('{').expect("a test item with a body");
        let end = open + inside(&code, open).len() + 2;
        code.replace_range(at..end, "");
    }
    code
}

/// The text between the bracket at `open` and its match.
fn inside(text: &str, open: usize) -> &str {
    let bytes = text.as_bytes();
    let (o, c) = match bytes[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("no bracket at {open}: {:?}", other as char),
    };
    let mut depth = 0;
    let mut in_str = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'"' if bytes[i - 1] != b'\\' => in_str = !in_str,
            _ if in_str => {}
            _ if b == o => depth += 1,
            _ if b == c => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced bracket at {open}")
}

/// The arguments of every call of `.name(` in `text`.
fn calls<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(".{name}(");
    text.match_indices(&needle)
        .map(|(at, _)| inside(text, at + needle.len() - 1))
        .collect()
}

/// The first string literal of `args`, if it starts with one.
fn literal(args: &str) -> Option<&str> {
    let rest = args.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// The HTTP methods a method router expression serves: `get(a).post(b).layer(..)`.
fn methods(expr: &str) -> Vec<String> {
    const NAMES: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    for name in NAMES {
        for (at, _) in expr.match_indices(&format!("{name}(")) {
            // `get(`, `.get(` and `routing::get(`, not `x_get(` nor `sub::get(` (a handler).
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let starts_token = before
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
                || expr[..at].ends_with("routing::");
            if starts_token {
                out.push(name.to_uppercase());
            }
        }
    }
    out
}

/// The body of `fn name(` in `text`.
fn function<'a>(text: &'a str, name: &str, file: &Path) -> &'a str {
    let at = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no fn {name} in {}", file.display()));
    let open = at + text[at..].find('{').expect("a body");
    inside(text, open)
}

/// The file of module `m` of the server crate.
fn module_file(m: &str) -> PathBuf {
    let flat = src_dir().join(format!("{m}.rs"));
    if flat.exists() {
        flat
    } else {
        src_dir().join(m).join("mod.rs")
    }
}

/// `(method, path)` of the `.route("...", ...)` calls in `body`, under `prefix`.
fn literal_routes(body: &str, prefix: &str, out: &mut BTreeSet<(String, String)>) -> usize {
    let mut n = 0;
    for args in calls(body, "route") {
        let Some(path) = literal(args) else { continue };
        n += 1;
        let found = methods(args);
        assert!(!found.is_empty(), "no method for route {path:?}: {args}");
        for m in found {
            out.insert((m, format!("{prefix}{path}")));
        }
    }
    n
}

/// Every `(method, path)` the server's source routes outside the management API (whose
/// routes come from a table, checked against its OpenAPI document): the `.route` calls of
/// `router` in lib.rs, and those of each function nested under a prefix there.
///
/// To stay honest, every `.route("...")` with a literal path anywhere in the crate's
/// source must have been reached this way: a route added elsewhere fails here.
fn source_routes() -> BTreeSet<(String, String)> {
    let lib_path = src_dir().join("lib.rs");
    let lib = source(&lib_path);
    let body = function(&lib, "router", &lib_path);
    let mut out = BTreeSet::new();
    let mut reached = literal_routes(body, "", &mut out);
    for args in calls(body, "nest") {
        let (prefix_expr, inner) = args.split_once(',').expect("nest(prefix, router)");
        let prefix = match literal(prefix_expr) {
            Some(p) => p.to_owned(),
            None if prefix_expr.trim() == "api::PREFIX" => api::PREFIX.to_owned(),
            None => panic!("unknown nest prefix {prefix_expr:?}: teach this test to read it"),
        };
        // `fhir::routes().merge(audit::fhir_routes())`: each `module::function()` call.
        for (at, _) in inner.match_indices("()") {
            let head = &inner[..at];
            let start = head
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |i| i + 1);
            let Some((module, func)) = head[start..].split_once("::") else {
                continue;
            };
            let file = module_file(module);
            let text = source(&file);
            reached += literal_routes(function(&text, func, &file), &prefix, &mut out);
        }
    }
    let mut declared = 0;
    let mut files = vec![src_dir()];
    while let Some(dir) = files.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = source(&path);
                declared += calls(&text, "route")
                    .into_iter()
                    .filter(|a| literal(a).is_some())
                    .count();
            }
        }
    }
    assert_eq!(
        reached, declared,
        "the source has .route(\"...\") calls this test does not reach from `router`: \
         teach source_routes() where they are nested, and add them to the table"
    );
    out
}

/// `(method, path)` of every operation of an OpenAPI document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// Fails naming the routes `served` has and the table not, and the reverse.
fn same_routes(
    in_table: &BTreeSet<(String, String)>,
    served: &BTreeSet<(String, String)>,
    by: &str,
) {
    let missing: Vec<_> = served.difference(in_table).collect();
    let stale: Vec<_> = in_table.difference(served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the route table is out of date with {by}: add {missing:?} to table(), remove {stale:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------

/// A type other than `t`, for a scope that is not `t`'s.
fn other_type(t: &str) -> &'static str {
    if t == "Patient" {
        "Observation"
    } else {
        "Patient"
    }
}

/// Callers that may use `route`, each named for the failure message.
async fn allowed(s: &Server, need: Need) -> Vec<(String, Cred)> {
    match need {
        Need::Anonymous | Need::SignIn => vec![("nobody".into(), Cred::None)],
        Need::Anyone => vec![
            ("viewer".into(), s.cookie(Role::Viewer)),
            (
                "client system/Patient.read".into(),
                s.client("system/Patient.read").await,
            ),
        ],
        Need::Fhir(t, access) => {
            let scope = format!("system/{t}.{}", access.scope());
            let role = match access {
                Access::Read => Role::Viewer,
                Access::Write => Role::Operator,
            };
            vec![
                (format!("client {scope}"), s.client(&scope).await),
                (role.as_str().into(), s.cookie(role)),
            ]
        }
        Need::WriteBack(t) => {
            let scope = format!("system/{t}.write system/Patient.read");
            vec![
                (format!("client {scope}"), s.client(&scope).await),
                ("operator".into(), s.cookie(Role::Operator)),
            ]
        }
        Need::Role(role) => vec![(role.as_str().into(), s.cookie(role))],
    }
}

/// Callers that are known but not allowed: 403.
async fn refused(s: &Server, need: Need) -> Vec<(String, Cred)> {
    let mut out = Vec::new();
    match need {
        Need::Anonymous | Need::SignIn | Need::Anyone => {}
        Need::Fhir(t, Access::Read) => {
            let scope = format!("system/{}.read", other_type(t));
            out.push((format!("client {scope}"), s.client(&scope).await));
            if t != "*" {
                let scope = format!("system/{t}.write");
                out.push((format!("client {scope} (no read)"), s.client(&scope).await));
            }
        }
        Need::Fhir(t, Access::Write) => {
            for scope in [
                format!("system/{t}.read"),
                format!("system/{}.write", other_type(t)),
            ] {
                out.push((format!("client {scope}"), s.client(&scope).await));
            }
            out.push(("viewer".into(), s.cookie(Role::Viewer)));
        }
        Need::WriteBack(t) => {
            for scope in [
                format!("system/{t}.read system/Patient.read"),
                "system/Observation.write system/Patient.read".to_owned(),
            ] {
                out.push((format!("client {scope}"), s.client(&scope).await));
            }
            out.push(("viewer".into(), s.cookie(Role::Viewer)));
        }
        Need::Role(role) => {
            out.push((
                "client system/*.read".into(),
                s.client("system/*.read").await,
            ));
            for lower in [Role::Viewer, Role::Operator] {
                if lower < role {
                    out.push((lower.as_str().into(), s.cookie(lower)));
                }
            }
        }
    }
    out
}

/// An error answer's code and reason: an OperationOutcome's issue under /fhir, else the
/// JSON `{"error", "code"}` of /api and /auth.
fn error_of<'a>(path: &str, body: &'a Value) -> (&'a str, &'a str) {
    let (code, text) = if path.starts_with("/fhir") {
        assert_eq!(
            body["resourceType"], "OperationOutcome",
            "{path}: FHIR errors are OperationOutcomes: {body}"
        );
        let issue = &body["issue"][0];
        (&issue["code"], &issue["diagnostics"])
    } else {
        (&body["code"], &body["error"])
    };
    match (code.as_str(), text.as_str()) {
        (Some(c), Some(t)) => (c, t),
        _ => panic!("{path}: not an error body: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_strangers_and_admits_the_right_caller() {
    let s = Server::start().await;
    let ids = s.seed().await;
    let routes = table(&ids);

    // The table is complete: /api entries are the served document's operations, the others
    // the routes the source declares. A route added without a table entry fails here.
    let doc = s.get("/api/openapi.json", &s.cookie(Role::Viewer)).await;
    let mut in_table: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_owned()))
        .collect();
    let api_routes: BTreeSet<(String, String)> = in_table
        .iter()
        .filter(|(_, p)| p.starts_with(api::PREFIX))
        .cloned()
        .collect();
    same_routes(&api_routes, &operations(&doc), "GET /api/openapi.json");
    in_table.retain(|r| !api_routes.contains(r));
    same_routes(&in_table, &source_routes(), "the server's source");

    // Expired tokens still in the store, so that the server's own expiry check answers.
    // The store drops expired tokens whenever it inserts one: every token the walk uses is
    // issued first, then these two, valid a moment longer, and the walk issues none.
    for route in &routes {
        allowed(&s, route.need).await;
        refused(&s, route.need).await;
    }
    let issued = s.tokens.lock().unwrap().len();
    let at = UnixMillis::now().plus(Duration::from_millis(300));
    let expired_access = Cred::Bearer(
        s.expiring(TokenKind::Access, CLIENT, "system/*.cruds", at)
            .await,
    );
    let expired_session = Cred::Cookie(format!(
        "{}={}",
        auth::SESSION_COOKIE,
        s.expiring(TokenKind::Session, "admin", "", at).await
    ));
    while UnixMillis::now().0 <= at.0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each with the reason its 401 gives.
    let strangers = [
        (
            "no credentials",
            Cred::None,
            "authentication required: a bearer token or a session",
        ),
        (
            "an expired access token",
            expired_access,
            "the access token has expired",
        ),
        (
            "an expired session",
            expired_session,
            "the session has expired",
        ),
        (
            "an unknown access token",
            Cred::Bearer("ab".repeat(32)),
            "unknown or revoked access token",
        ),
        (
            "a malformed access token",
            Cred::Bearer("not-a-token".into()),
            "unknown access token",
        ),
        (
            "an unknown session",
            Cred::Cookie(format!("{}={}", auth::SESSION_COOKIE, "cd".repeat(32))),
            "unknown or revoked session",
        ),
        (
            "another scheme",
            Cred::Authorization("Basic YWRtaW46YWRtaW4=".into()),
            "the Authorization header must be `Bearer <access token>`",
        ),
    ];

    let mut checked = 0;
    for route in &routes {
        let what = format!("{} {}", route.method, route.path);
        if route.need == Need::SignIn {
            continue; // sign_in() below
        }
        for (who, cred, reason) in &strangers {
            let a = s
                .call(route.method.clone(), &route.path, cred, route.body.as_ref())
                .await;
            if route.need == Need::Anonymous {
                assert_eq!(a.status, route.ok, "{what} with {who}: {}", a.body);
                continue;
            }
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{what} with {who}: {}",
                a.body
            );
            let challenge = a.headers.get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap());
            assert_eq!(challenge, Some("Bearer"), "{what} with {who}");
            assert_eq!(
                error_of(&route.path, &a.body),
                ("login", *reason),
                "{what} with {who}"
            );
            checked += 1;
        }
        for (who, cred) in refused(&s, route.need).await {
            let a = s
                .call(
                    route.method.clone(),
                    &route.path,
                    &cred,
                    route.body.as_ref(),
                )
                .await;
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{what} as {who}: {}",
                a.body
            );
            assert!(a.headers.get(WWW_AUTHENTICATE).is_none(), "{what} as {who}");
            assert_eq!(
                error_of(&route.path, &a.body).0,
                "forbidden",
                "{what} as {who}: {}",
                a.body
            );
            checked += 1;
        }
        for (who, cred) in allowed(&s, route.need).await {
            let a = s
                .call(
                    route.method.clone(),
                    &route.path,
                    &cred,
                    route.body.as_ref(),
                )
                .await;
            assert_eq!(a.status, route.ok, "{what} as {who}: {}", a.body);
            checked += 1;
        }
    }
    eprintln!("{} routes walked, {checked} answers checked", routes.len());
    assert_eq!(
        s.tokens.lock().unwrap().len(),
        issued,
        "no token issued during the walk"
    );
    assert!(checked > 200, "{checked} answers checked");

    // A write-back by a client that may write orders but not read the patient they name:
    // the subject is not read for it, so the order cannot become a v2 message, and says why.
    let write_only = s.client("system/ServiceRequest.write").await;
    let a = s
        .call(
            Method::POST,
            "/fhir/ServiceRequest",
            &write_only,
            Some(&Body::Fhir(order(&ids.patient, "ORD-WALK-2", None))),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let why = a.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.ends_with(
            "(the access token's scopes do not allow to read Patient, which it references)"
        ),
        "{why}"
    );

    // The walk's writes happened: the deleted subscription is gone, the order updated.
    let admin = s.cookie(Role::Admin);
    let gone = s
        .call(
            Method::GET,
            &format!("/fhir/Subscription/{}", ids.doomed_subscription),
            &admin,
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // What is not offered says what it is: a transaction at the base, an unknown path.
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction"});
    for (method, path, body, status, why) in [
        (
            Method::POST,
            "/fhir",
            Some(Body::Fhir(bundle)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "transaction Bundles are not offered: writes go back to the EHR as separate HL7 v2 messages, which cannot succeed or fail together; send a batch (each entry answered on its own)",
        ),
        (
            Method::GET,
            "/fhir/Patient/p/_history/1/extra",
            None,
            StatusCode::NOT_FOUND,
            "GET /fhir/Patient/p/_history/1/extra is not a FHIR interaction this server offers",
        ),
    ] {
        let a = s.call(method, path, &admin, body.as_ref()).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert_eq!(error_of(path, &a.body), ("not-supported", why), "{path}");
    }
    let updated = s
        .get(&format!("/fhir/ServiceRequest/{}", ids.order), &admin)
        .await;
    // The first update made version 2; the second, the same again, made none (and was 200).
    assert_eq!(updated["meta"]["versionId"], "2", "{updated}");
    assert_eq!(updated["authoredOn"], "2024-03-03T09:00:00Z");
}

/// `/auth/token` and `/auth/login`: anonymous by nature, they refuse bad proofs themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in() {
    let s = Server::start().await;

    // Client assertions: a good one gets a token, which then opens a route.
    let good = s
        .token_request(&sign(&claims(), &keys().private_pem), "system/Patient.read")
        .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    assert_eq!(good.headers["cache-control"], "no-store");
    let token = Cred::Bearer(good.body["access_token"].as_str().unwrap().to_owned());
    let me = s.get("/auth/me", &token).await;
    assert_eq!(me["subject"], CLIENT);

    // Badly signed: by a key nobody registered, or with the signature altered; expired.
    let tampered = {
        let jwt = sign(&claims(), &keys().private_pem);
        let (head, sig) = jwt.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}.{flipped}{}", &sig[1..])
    };
    let mut stale = claims();
    stale["iat"] = json!(now_secs() - 900);
    stale["exp"] = json!(now_secs() - 600);
    for (what, assertion) in [
        (
            "signed by an unknown key",
            sign(&claims(), &keys().stranger_pem),
        ),
        ("with an altered signature", tampered),
        ("expired", sign(&stale, &keys().private_pem)),
        ("not a JWT", "not.a.jwt".to_owned()),
    ] {
        let a = s.token_request(&assertion, "system/Patient.read").await;
        assert_eq!(
            (a.status, a.body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "an assertion {what}: {}",
            a.body
        );
        assert!(a.body.get("access_token").is_none());
    }
    // The same good assertion twice: its jti was used.
    let once = sign(&claims(), &keys().private_pem);
    assert_eq!(
        s.token_request(&once, "system/Patient.read").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.token_request(&once, "system/Patient.read").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Passwords: the wrong one and an unknown user are 401 with the challenge.
    for (user, password) in [("admin", "wrong"), ("nobody", PASSWORD)] {
        let a = s
            .call(
                Method::POST,
                "/auth/login",
                &Cred::None,
                Some(&Body::Json(
                    json!({ "username": user, "password": password }),
                )),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{user}: {}", a.body);
        assert_eq!(a.headers[WWW_AUTHENTICATE], "Bearer");
        assert!(a.headers.get(SET_COOKIE).is_none());
    }
    let bad_body = s
        .call(
            Method::POST,
            "/auth/login",
            &Cred::None,
            Some(&Body::Json(json!({ "user": "admin" }))),
        )
        .await;
    assert_eq!(bad_body.status, StatusCode::BAD_REQUEST);

    // Signing out ends the session: the same cookie is refused afterwards.
    let cookie = Cred::Cookie(s.login("operator").await);
    assert_eq!(s.get("/auth/me", &cookie).await["role"], "operator");
    let out = s.call(Method::POST, "/auth/logout", &cookie, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = s.call(Method::GET, "/api/channels", &cookie, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
}

/// The source reader finds every method of every `.route` call, and only those.
#[test]
fn the_source_reader_reads_route_calls() {
    let src = r#"Router::new()
        .route("/a", get(x::get_a).post(post).patch(axum::routing::patch(p)))
        .route(
            "/b/{id}",
            get(read).put(write::update).delete(sub::delete).layer(Limit::max(get_max())),
        )
        .nest("/c", other())"#;
    let mut out = BTreeSet::new();
    assert_eq!(literal_routes(src, "/p", &mut out), 2);
    let want: BTreeSet<(String, String)> = [
        ("GET", "/p/a"),
        ("POST", "/p/a"),
        ("PATCH", "/p/a"),
        ("GET", "/p/b/{id}"),
        ("PUT", "/p/b/{id}"),
        ("DELETE", "/p/b/{id}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(out, want);
}
