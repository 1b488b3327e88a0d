//! Authentication, roles, scopes and the audit log over real sockets: each test starts the
//! routes on `127.0.0.1:0` over a real SQLite store in a tempdir and talks HTTP to them.
//!
//! Client keys (an ES384 key published as a JWKS, an RS384 key as PEM) are generated here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use base64::Engine;
use causeway_server::audit::{self, Audit};
use causeway_server::auth::{
    self, Access, Auth, AuthConfig, ClientKeys, ClientRegistration, Principal, Role,
};
use causeway_server::error::Surface;
use causeway_server::{ApiResult, AppState};
use causeway_store::{NewUser, SqliteOptions, SqliteStore, Store};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tempfile::TempDir;

mod support;

use support::{JWT_BEARER, TOKEN_URL, http_client};

const ES_CLIENT: &str = "lab-analytics";
const RS_CLIENT: &str = "billing";

/// Client keys, generated once per test run (RSA key generation takes a moment).
struct Keys {
    es_private_pem: String,
    es_jwks: String,
    /// An ES384 key nobody registered.
    stranger_pem: String,
    rs_private_pem: String,
    rs_public_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use p384::pkcs8::{EncodePrivateKey, LineEnding};
        use rsa::pkcs8::EncodePublicKey;
        let mut rng = rsa::rand_core::OsRng;
        let es = p384::SecretKey::random(&mut rng);
        let mut jwk: Value = serde_json::from_str(&es.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!("es-1");
        jwk["alg"] = json!("ES384");
        let stranger = p384::SecretKey::random(&mut rng);
        let rs = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa key");
        Keys {
            es_private_pem: es.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            es_jwks: json!({ "keys": [jwk] }).to_string(),
            stranger_pem: stranger.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            rs_private_pem: rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&rs, LineEnding::LF)
                .unwrap()
                .to_string(),
            rs_public_pem: rsa::RsaPublicKey::from(&rs)
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    })
}

fn now() -> i64 {
    causeway_store::UnixMillis::now().0 / 1000
}

fn unique() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "jti-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Good claims for `client`, to be spoiled by each case.
fn claims(client: &str) -> Value {
    json!({
        "iss": client,
        "sub": client,
        "aud": TOKEN_URL,
        "exp": now() + 240,
        "iat": now(),
        "jti": unique(),
    })
}

fn sign_es(claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES384);
    h.kid = Some("es-1".into());
    let key = EncodingKey::from_ec_pem(keys().es_private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn sign_rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(keys().rs_private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS384), claims, &key).unwrap()
}

/// A test server: the `/auth` routes, `/fhir/AuditEvent`, and two gated probes.
struct Server {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    dir: TempDir,
    /// The bootstrap admin's password.
    admin_password: String,
}

fn config() -> AuthConfig {
    AuthConfig {
        token_url: Some(TOKEN_URL.into()),
        clients: vec![
            ClientRegistration {
                id: ES_CLIENT.into(),
                keys: ClientKeys::Jwks(keys().es_jwks.clone()),
                scopes: vec!["system/*.read".into(), "system/Observation.cruds".into()],
            },
            ClientRegistration {
                id: RS_CLIENT.into(),
                keys: ClientKeys::Pem(keys().rs_public_pem.clone()),
                scopes: vec!["system/Patient.rs".into()],
            },
        ],
        attempts_per_minute: 1000,
        ..AuthConfig::default()
    }
}

/// `GET /api/check/role/{role}`: a role-gated probe; `GET /api/check/fhir/{type}/{read|write}`:
/// a FHIR-access probe.
async fn check_role(who: Principal, Path(role): Path<String>) -> ApiResult<&'static str> {
    let role = Role::parse(&role).expect("role");
    // Handlers under /api answer JSON errors, as the management API will.
    who.require_role(role).map_err(|e| e.on(Surface::Api))?;
    Ok("allowed")
}

async fn check_fhir(
    who: Principal,
    Path((resource_type, access)): Path<(String, String)>,
) -> ApiResult<&'static str> {
    let access = if access == "write" {
        Access::Write
    } else {
        Access::Read
    };
    who.require_fhir(&resource_type, access)?;
    Ok("allowed")
}

async fn start(config: AuthConfig) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("data"), SqliteOptions::default())
            .await
            .expect("store"),
    );
    let admin_password = auth::ensure_admin(&*store)
        .await
        .expect("bootstrap")
        .expect("first start creates the admin");
    assert_eq!(
        auth::ensure_admin(&*store).await.expect("again"),
        None,
        "printed once"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AppState {
        auth: Arc::new(Auth::new(store.clone(), config).expect("auth")),
        audit: Arc::new(Audit::new(store.clone())),
        fhir_base: format!("http://{addr}/fhir").into(),
        store: store.clone(),
        channels: Arc::new(BTreeMap::new()),
        reload: None,
        monitor: None,
        metrics_token: None,
        alerts: None,
        exports: None,
    };
    let app = Router::new()
        .nest("/auth", auth::routes())
        .nest("/fhir", audit::fhir_routes())
        .route("/api/check/role/{role}", get(check_role))
        .route("/api/check/fhir/{type}/{access}", get(check_fhir))
        .with_state(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    Server {
        base: format!("http://{addr}"),
        http: http_client(),
        store,
        dir,
        admin_password,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /auth/token` with a form built by hand (every value here is URL-safe but `:`,
    /// `/` and spaces, which are encoded).
    async fn token_request(&self, fields: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let enc = |s: &str| {
            s.replace('%', "%25")
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace(' ', "+")
                .replace('*', "%2A")
        };
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        let r = self
            .http
            .post(self.url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .expect("token request");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn token_for(&self, assertion: &str, scope: &str) -> (StatusCode, Value) {
        let (s, _, b) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
                ("scope", scope),
            ])
            .await;
        (s, b)
    }

    async fn get_with(&self, path: &str, headers: &[(&str, String)]) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.expect("get")
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/auth/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login")
    }

    /// Signs in and returns the `Cookie` header value.
    async fn session(&self, username: &str, password: &str) -> String {
        let r = self.login(username, password).await;
        assert_eq!(r.status(), StatusCode::OK);
        let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        set.split(';').next().unwrap().to_owned()
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_assertions_get_tokens_that_open_the_api() {
    let s = start(config()).await;
    // ES384, key from a JWKS chosen by kid.
    let (status, headers, body) = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &sign_es(&claims(ES_CLIENT))),
            ("scope", "system/Observation.rs"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "system/Observation.rs");
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64);

    let me = s.get_with("/auth/me", &[bearer(&token)]).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        me,
        json!({ "subject": ES_CLIENT, "kind": "client", "scope": "system/Observation.rs" })
    );

    // RS384, key from PEM.
    let (status, body) = s
        .token_for(&sign_rs(&claims(RS_CLIENT)), "system/Patient.read")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "system/Patient.read");

    // The token is checked against the store, so it survives a restart of the server: a
    // second Auth over the same database (another process) accepts it.
    let other = Auth::new(s.store.clone(), config()).expect("auth");
    let mut h = axum::http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let p = other.authenticate(&h).await.expect("accepted elsewhere");
    assert_eq!(p.subject, ES_CLIENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_assertions_are_refused_with_oauth_errors() {
    let s = start(config()).await;
    let header_b64 =
        |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        header_b64(json!({ "alg": "none", "typ": "JWT" })),
        header_b64(claims(ES_CLIENT))
    );
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(ES_CLIENT),
        &EncodingKey::from_secret(keys().es_jwks.as_bytes()),
    )
    .unwrap();
    let stranger = {
        let mut h = Header::new(Algorithm::ES384);
        h.kid = Some("es-1".into());
        let key = EncodingKey::from_ec_pem(keys().stranger_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, &claims(ES_CLIENT), &key).unwrap()
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(ES_CLIENT);
        f(&mut c);
        sign_es(&c)
    };
    let replayed = sign_es(&claims(ES_CLIENT));
    let (status, _) = s.token_for(&replayed, "system/Observation.read").await;
    assert_eq!(status, StatusCode::OK, "first use");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad signature",
            stranger,
            "the client assertion's signature does not verify",
        ),
        (
            "alg none",
            unsigned,
            "the client assertion is not a JWT signed with RS384 or ES384",
        ),
        (
            "alg HS256",
            hs256,
            "client assertions must be signed with RS384 or ES384, not HS256",
        ),
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(now() - 120);
                c["iat"] = json!(now() - 300);
            }),
            "the client assertion has expired",
        ),
        (
            "lifetime over five minutes",
            with(&|c| c["exp"] = json!(now() + 600)),
            "the client assertion's exp is more than five minutes ahead",
        ),
        (
            "exp - iat over five minutes",
            with(&|c| {
                c["iat"] = json!(now() - 100);
                c["exp"] = json!(now() + 280);
            }),
            "the client assertion is valid for more than five minutes (exp - iat)",
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("https://elsewhere.test/auth/token")),
            "the client assertion's aud must be this token endpoint: https://causeway.test/auth/token",
        ),
        (
            "sub is not the client",
            with(&|c| c["sub"] = json!("someone-else")),
            "the client assertion's iss and sub must both be the client id",
        ),
        (
            "unknown client",
            with(&|c| {
                c["iss"] = json!("intruder");
                c["sub"] = json!("intruder");
            }),
            "the assertion's iss is not a registered client",
        ),
        (
            "no jti",
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "the client assertion has no jti",
        ),
        (
            "replayed jti",
            replayed,
            "the client assertion's jti was already used",
        ),
    ];
    for (name, assertion, reason) in cases {
        let (status, body) = s.token_for(&assertion, "system/Observation.read").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(body["error"], "invalid_client", "{name}");
        assert_eq!(body["error_description"], reason, "{name}");
    }

    // Requests that are malformed before any assertion is read: 400.
    let good = sign_es(&claims(ES_CLIENT));
    for (name, fields, error) in [
        (
            "grant type",
            vec![
                ("grant_type", "password"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", good.as_str()),
                ("scope", "system/*.read"),
            ],
            "unsupported_grant_type",
        ),
        (
            "assertion type",
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:other"),
                ("client_assertion", good.as_str()),
                ("scope", "system/*.read"),
            ],
            "invalid_request",
        ),
        (
            "no assertion",
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("scope", "system/*.read"),
            ],
            "invalid_request",
        ),
        (
            "no scope",
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", good.as_str()),
            ],
            "invalid_scope",
        ),
    ] {
        let (status, _, body) = s.token_request(&fields).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"], error, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_carry_the_intersection_of_requested_and_allowed_scopes() {
    let s = start(config()).await;
    // Allowed: system/*.read system/Observation.cruds.
    let (status, body) = s
        .token_for(
            &sign_es(&claims(ES_CLIENT)),
            "system/Patient.* system/Observation.write system/Encounter.cud launch openid",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["scope"],
        "system/Patient.read system/Observation.write"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    let probe = |path: &'static str| {
        let s = &s;
        let token = token.clone();
        async move { s.get_with(path, &[bearer(&token)]).await.status() }
    };
    assert_eq!(probe("/api/check/fhir/Patient/read").await, StatusCode::OK);
    assert_eq!(
        probe("/api/check/fhir/Observation/write").await,
        StatusCode::OK
    );
    assert_eq!(
        probe("/api/check/fhir/Patient/write").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        probe("/api/check/fhir/Observation/read").await,
        StatusCode::FORBIDDEN,
        "read was not requested for Observation"
    );
    assert_eq!(
        probe("/api/check/role/viewer").await,
        StatusCode::FORBIDDEN,
        "clients have no role"
    );
    assert_eq!(probe("/fhir/AuditEvent").await, StatusCode::FORBIDDEN);

    // Nothing requested is allowed: invalid_scope.
    let (status, body) = s
        .token_for(&sign_rs(&claims(RS_CLIENT)), "system/Observation.read")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_or_malformed_tokens_get_401_with_a_bearer_challenge() {
    let s = start(AuthConfig {
        token_lifetime: Duration::from_millis(300),
        ..config()
    })
    .await;
    let (status, body) = s
        .token_for(&sign_es(&claims(ES_CLIENT)), "system/*.read")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get_with("/auth/me", &[bearer(&token)]).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = s.get_with("/auth/me", &[bearer(&token)]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "the access token has expired");

    for (headers, message) in [
        (
            vec![],
            "authentication required: a bearer token or a session",
        ),
        (
            vec![bearer(&"0".repeat(64))],
            "unknown or revoked access token",
        ),
        (vec![bearer("not-a-token")], "unknown access token"),
        (
            vec![("authorization", "Basic YWRtaW46YWRtaW4=".to_string())],
            "the Authorization header must be `Bearer <access token>`",
        ),
    ] {
        let r = s.get_with("/api/check/role/viewer", &headers).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{message}");
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], message);
    }
    // On FHIR routes the 401 is an OperationOutcome.
    let r = s.get_with("/fhir/AuditEvent", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_admin_signs_in_with_a_strict_session_cookie() {
    let s = start(config()).await;
    assert_eq!(s.admin_password.len(), 24);
    let r = s.login("admin", &s.admin_password).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "username": "admin", "role": "admin" }));
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(
        attrs[0].starts_with("causeway_session=") && attrs[0].len() == 17 + 64,
        "{set}"
    );
    for flag in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"] {
        assert!(attrs.contains(&flag), "{flag} missing from {set}");
    }
    assert!(!attrs.contains(&"Secure"), "not configured: {set}");
    let cookie = attrs[0].to_owned();

    let me: Value = s
        .get_with("/auth/me", &[("cookie", cookie.clone())])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({ "subject": "admin", "kind": "user", "role": "admin" })
    );
    let audit = s
        .get_with("/fhir/AuditEvent", &[("cookie", cookie.clone())])
        .await;
    assert_eq!(audit.status(), StatusCode::OK);

    let out = s
        .http
        .post(s.url("/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("causeway_session=;") && cleared.contains("Max-Age=0"));
    let r = s.get_with("/auth/me", &[("cookie", cookie)]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the session ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_are_secure_and_host_prefixed() {
    let s = start(AuthConfig {
        secure_cookies: true,
        session_lifetime: Duration::from_secs(3600),
        ..config()
    })
    .await;
    let r = s.login("admin", &s.admin_password).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("__Host-causeway_session="), "{set}");
    for flag in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(attrs.contains(&flag), "{flag} missing from {set}");
    }
    // The plain-HTTP cookie name is not accepted in its place.
    let value = attrs[0].split_once('=').unwrap().1;
    let r = s
        .get_with(
            "/auth/me",
            &[("cookie", format!("causeway_session={value}"))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .get_with("/auth/me", &[("cookie", attrs[0].to_owned())])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_users_get_the_same_401() {
    let s = start(config()).await;
    for (user, password) in [
        ("admin", "not-the-password"),
        ("nobody", "whatever"),
        ("", ""),
    ] {
        let r = s.login(user, password).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(r.headers().get(SET_COOKIE).is_none());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "wrong user name or password");
    }
    let r = s
        .http
        .post(s.url("/auth/login"))
        .body("username=admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_forbidden_what_needs_a_higher_role() {
    let s = start(config()).await;
    let hash = auth::hash_password("viewer-password").unwrap();
    s.store
        .create_user(NewUser {
            username: "vera".into(),
            password_hash: hash,
            role: Role::Viewer,
        })
        .await
        .unwrap();
    let cookie = s.session("vera", "viewer-password").await;
    let get = |path: &'static str| {
        let (s, cookie) = (&s, cookie.clone());
        async move { s.get_with(path, &[("cookie", cookie)]).await }
    };
    assert_eq!(get("/api/check/role/viewer").await.status(), StatusCode::OK);
    let r = get("/api/check/role/operator").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "this needs the operator role; vera has viewer"
    );
    assert_eq!(
        get("/api/check/fhir/Patient/read").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/api/check/fhir/Patient/write").await.status(),
        StatusCode::FORBIDDEN
    );
    let r = get("/fhir/AuditEvent").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["issue"][0]["code"], "forbidden");

    // A role change applies to the running session at once.
    s.store.set_role("vera", Role::Operator).await.unwrap();
    assert_eq!(
        get("/api/check/role/operator").await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_endpoints_are_rate_limited_per_peer() {
    let s = start(AuthConfig {
        attempts_per_minute: 3,
        ..config()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            s.login("admin", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = s.login("admin", &s.admin_password).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right one"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    // The token endpoint has its own budget.
    for _ in 0..3 {
        let (status, _) = s.token_for("garbage", "system/*.read").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = s
        .token_for(&sign_es(&claims(ES_CLIENT)), "system/*.read")
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_chains_every_sign_in_and_search_and_names_a_tampered_record() {
    let s = start(config()).await;
    let admin = s.session("admin", &s.admin_password).await;
    assert_eq!(
        s.login("admin", "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = s
        .token_for(&sign_es(&claims(ES_CLIENT)), "system/*.read")
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = s
        .get_with(
            "/fhir/AuditEvent?entity=Patient&agent=nobody",
            &[("cookie", admin.clone())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(
        (&bundle["resourceType"], &bundle["type"]),
        (&json!("Bundle"), &json!("searchset"))
    );
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 0);

    let r = s
        .get_with(
            "/fhir/AuditEvent?_count=10&date=ge2020-01-01",
            &[("cookie", admin.clone())],
        )
        .await;
    let bundle: Value = r.json().await.unwrap();
    let events: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    // Newest first: the earlier AuditEvent search, the token, the refused and the good sign-in.
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["agent"][0]["who"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                e["subtype"][0]["code"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let owned = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        summary,
        [
            owned("admin", "search-type", "0"),
            owned(ES_CLIENT, "110122", "0"),
            owned("admin", "110122", "4"),
            owned("admin", "110122", "0"),
        ]
    );
    let search = events[0];
    assert_eq!(search["entity"][0]["type"]["code"], "AuditEvent");
    let query = base64::engine::general_purpose::STANDARD
        .decode(search["entity"][0]["query"].as_str().unwrap())
        .unwrap();
    assert_eq!(query, b"entity=Patient&agent=nobody");
    assert_eq!(search["agent"][0]["network"]["address"], "127.0.0.1");

    // A page of one links to the next.
    let r = s
        .get_with("/fhir/AuditEvent?_count=1", &[("cookie", admin.clone())])
        .await;
    let page: Value = r.json().await.unwrap();
    let next = page["link"][1]["url"].as_str().expect("next link");
    assert!(
        next.ends_with("/fhir/AuditEvent?_count=1&_before=5"),
        "{next}"
    );

    let v = s.store.verify_audit().await.unwrap();
    assert_eq!((v.records, v.broken), (6, None));

    // Tampering: change a refused sign-in into a granted one, straight in the SQLite file.
    let db = rusqlite::Connection::open(s.dir.path().join("data/causeway.db")).unwrap();
    db.execute_batch("DROP TRIGGER audit_log_no_update")
        .unwrap();
    let changed = db
        .execute("UPDATE audit_log SET outcome = 200 WHERE id = 2", [])
        .unwrap();
    assert_eq!(changed, 1);
    let v = s.store.verify_audit().await.unwrap();
    let broken = v.broken.expect("found");
    assert_eq!(
        (broken.id, broken.reason.as_str(), v.records),
        (2, "its hash does not match its contents", 1)
    );
}
