//! `[server.auth] requests_per_minute`: the data routes (`/fhir`, `/api`) answer 429 with
//! `Retry-After` once an address has used its minute; the probes are never limited.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use causeway_server::audit::Audit;
use causeway_server::auth::{self, Auth, AuthConfig};
use causeway_server::{AppState, router};
use causeway_store::{SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};

/// A server with `requests_per_minute` on a fresh store, and a signed-in administrator's
/// session cookie (sign-in is not counted).
async fn start(requests_per_minute: u32) -> (tempfile::TempDir, reqwest::Client, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("data"), SqliteOptions::default())
            .await
            .expect("store"),
    );
    let password = auth::ensure_admin(&*store)
        .await
        .expect("bootstrap")
        .expect("first start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = AuthConfig {
        requests_per_minute,
        ..AuthConfig::default()
    };
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
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_string();
    (dir, http, base, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_requests_per_minute_is_told_to_wait() {
    let (_dir, http, base, cookie) = start(3).await;
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(get("/fhir/metadata").await.expect("get").status(), 200);
    }
    assert_eq!(get("/api/channels").await.expect("get").status(), 200);
    let over = get("/fhir/metadata").await.expect("get");
    assert_eq!(over.status(), 429);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let outcome: Value = over.json().await.expect("json");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "throttled");
    let api = get("/api/channels").await.expect("get");
    assert_eq!(api.status(), 429);
    let body: Value = api.json().await.expect("json");
    assert_eq!(body["code"], "throttled");
    // The probes are not counted.
    for _ in 0..5 {
        assert_eq!(get("/health").await.expect("get").status(), 200);
    }
}

/// Each entry of a batch counts as a request: a batch is no way around the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_count_against_the_limit() {
    let (_dir, http, base, cookie) = start(3).await;
    let entry = json!({"request": {"method": "GET", "url": "metadata"}});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [entry, entry, entry]});
    let answered = http
        .post(format!("{base}/fhir"))
        .header("cookie", &cookie)
        .header("content-type", "application/fhir+json")
        .body(batch.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        answered.status(),
        200,
        "the batch itself is the first request"
    );
    let answered: Value = answered.json().await.expect("json");
    let entries = answered["entry"].as_array().expect("entries");
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["200 OK", "200 OK", "429 Too Many Requests"],
        "{answered}"
    );
    assert_eq!(
        entries[0]["resource"]["resourceType"],
        "CapabilityStatement"
    );
    assert_eq!(
        entries[2]["response"]["outcome"]["issue"][0]["code"], "throttled",
        "{answered}"
    );
}
