//! FHIR API benchmark: reads and searches under load over loopback, against a store holding
//! 10,000 patients and 1,000,000 observations (scaled by the environment).
//!
//! What runs: a real SQLite store in `target/tmp` (encrypted, WAL, `synchronous=FULL`), loaded
//! through the store API with the same search values the `fhir-store` destination writes; the
//! server's real router (authentication, audit on every PHI read: one audit record committed
//! per request, group-committed); a closed-loop client (reqwest over keep-alive HTTP/1.1) in the
//! same process, sharing the 2 cores, at each concurrency level in turn.
//!
//! Rows:
//! - `read`: `GET /fhir/Patient/{random id}`;
//! - `read-observation`: `GET /fhir/Observation/{random id}`;
//! - `search`: `GET /fhir/Observation?patient={random}&code=http://loinc.org|{random code}&_count=10`;
//! - `search-date`: `GET /fhir/Observation?patient={random}&date=ge2024-06-01&_count=20`;
//! - `search-sorted`: `GET /fhir/Observation?patient={random}&_sort=-date&_count=10` (a
//!   patient's latest results).
//!
//! Settings: `CAUSEWAY_BENCH_PATIENTS` (10,000), `CAUSEWAY_BENCH_OBSERVATIONS` (1,000,000),
//! `CAUSEWAY_BENCH_SECONDS` per row (10), `CAUSEWAY_BENCH_CONCURRENCY` (client connections, a
//! comma-separated list of levels each row runs at: `8,32`),
//! `CAUSEWAY_BENCH_DIR` (target/tmp), `CAUSEWAY_BENCH_ROWS` (comma-separated row ids: `read`,
//! `read-observation`, `search`, `search-date`, `search-sorted`; default all). The loaded store is kept in `DIR/fhir-api-PATIENTS-OBS`
//! and reused by the next run (delete it to reload).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_bench::env_u64;
use causeway_engine::destinations::fhir_store::index_entries;
use causeway_server::audit::Audit;
use causeway_server::auth::{self, Auth, AuthConfig};
use causeway_server::{AppState, router};
use causeway_store::{ResourcePut, SqliteOptions, SqliteStore, Store};
use serde_json::json;

/// The targets: reads per second, and p99 at that load.
const TARGET_READS_PER_SEC: f64 = 10_000.0;
const TARGET_P99_MS: f64 = 20.0;

const CODES: [&str; 8] = [
    "2345-7", "718-7", "2951-2", "2823-3", "2160-0", "6690-2", "789-8", "8867-4",
];

/// SplitMix64: the same ids and values every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn patient(i: u64) -> serde_json::Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.999.1", "value": format!("MRN{i:07}")}],
        "name": [{"family": format!("Family{}", i % 997), "given": [format!("Given{}", i % 331)]}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("{}-{:02}-{:02}", 1930 + i % 80, 1 + i % 12, 1 + i % 28),
    })
}

fn observation(i: u64, patients: u64, rng: &mut Rng) -> serde_json::Value {
    let p = rng.below(patients);
    let code = CODES[rng.below(CODES.len() as u64) as usize];
    let day = rng.below(365);
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/p{p}")},
        "effectiveDateTime": format!("2024-{:02}-{:02}T08:{:02}:00Z", 1 + day / 31 % 12, 1 + day % 28, i % 60),
        "valueQuantity": {"value": (rng.below(2000) as f64) / 100.0, "unit": "mmol/L",
                          "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    })
}

fn put(t: &str, id: String, v: serde_json::Value) -> ResourcePut {
    ResourcePut {
        index: index_entries(t, &v),
        json: serde_json::to_vec(&v).expect("json"),
        resource_type: t.into(),
        id,
        if_match: None,
        source: None,
        delete: false,
    }
}

async fn load(store: &dyn Store, patients: u64, observations: u64) -> Result<(), String> {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(2000);
    for i in 0..patients {
        batch.push(put("Patient", format!("p{i}"), patient(i)));
        if batch.len() == 2000 {
            store
                .put_resources(std::mem::take(&mut batch))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let mut rng = Rng(0xFEED);
    for i in 0..observations {
        batch.push(put(
            "Observation",
            format!("o{i}"),
            observation(i, patients, &mut rng),
        ));
        if batch.len() == 2000 {
            store
                .put_resources(std::mem::take(&mut batch))
                .await
                .map_err(|e| e.to_string())?;
        }
        if i > 0 && i.is_multiple_of(200_000) {
            eprintln!("  loaded {i} observations in {:.0?}", started.elapsed());
        }
    }
    if !batch.is_empty() {
        store
            .put_resources(batch)
            .await
            .map_err(|e| e.to_string())?;
    }
    eprintln!(
        "loaded {patients} patients and {observations} observations in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Row {
    Read,
    ReadObservation,
    Search,
    SearchDate,
    SearchSorted,
}

impl Row {
    fn id(self) -> &'static str {
        match self {
            Row::Read => "read",
            Row::ReadObservation => "read-observation",
            Row::Search => "search",
            Row::SearchDate => "search-date",
            Row::SearchSorted => "search-sorted",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Row::Read => "read Patient",
            Row::ReadObservation => "read Observation",
            Row::Search => "search Observation?patient&code",
            Row::SearchDate => "search Observation?patient&date",
            Row::SearchSorted => "search Observation?patient, sorted",
        }
    }

    fn path(self, rng: &mut Rng, patients: u64, observations: u64) -> String {
        match self {
            Row::Read => format!("/fhir/Patient/p{}", rng.below(patients)),
            Row::ReadObservation => format!("/fhir/Observation/o{}", rng.below(observations)),
            Row::Search => format!(
                "/fhir/Observation?patient=p{}&code=http://loinc.org%7C{}&_count=10",
                rng.below(patients),
                CODES[rng.below(CODES.len() as u64) as usize]
            ),
            Row::SearchDate => format!(
                "/fhir/Observation?patient=p{}&date=ge2024-06-01&_count=20",
                rng.below(patients)
            ),
            Row::SearchSorted => format!(
                "/fhir/Observation?patient=p{}&_sort=-date&_count=10",
                rng.below(patients)
            ),
        }
    }
}

struct Outcome {
    requests: u64,
    errors: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn run_row(
    row: Row,
    base: &str,
    cookie: &str,
    concurrency: usize,
    seconds: u64,
    patients: u64,
    observations: u64,
) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let http = http.clone();
        let base = base.to_string();
        let cookie = cookie.to_string();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xABCD + c as u64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let path = row.path(&mut rng, patients, observations);
                let t = Instant::now();
                let ok = match http
                    .get(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Outcome {
        requests: all.len() as u64,
        errors,
        per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

async fn bench() -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let patients = env_u64("CAUSEWAY_BENCH_PATIENTS", 10_000)?;
    let observations = env_u64("CAUSEWAY_BENCH_OBSERVATIONS", 1_000_000)?;
    let seconds = env_u64("CAUSEWAY_BENCH_SECONDS", 10)?;
    let levels: Vec<usize> = std::env::var("CAUSEWAY_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "8,32".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("CAUSEWAY_BENCH_CONCURRENCY: {c:?}"))
        })
        .collect::<Result<_, _>>()?;
    let root = std::env::var("CAUSEWAY_BENCH_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp"),
        PathBuf::from,
    );
    let dir = root.join(format!("fhir-api-{patients}-{observations}"));
    let fresh = !dir.join("causeway.db").exists();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir, SqliteOptions::default())
            .await
            .map_err(|e| e.to_string())?,
    );
    println!(
        "FHIR API benchmark: {patients} patients, {observations} observations, store in {}",
        dir.display()
    );
    println!(
        "machine: {} cores, shared by the client and the server; {levels:?} connections, {seconds} s per row",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if fresh {
        load(&*store, patients, observations).await?;
    } else {
        println!("(reusing the loaded store)");
    }
    let password = match auth::ensure_admin(&*store)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(p) => {
            std::fs::write(dir.join("admin-password"), &p).map_err(|e| e.to_string())?;
            p
        }
        None => std::fs::read_to_string(dir.join("admin-password")).map_err(|e| e.to_string())?,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = AuthConfig {
        attempts_per_minute: 1000,
        ..AuthConfig::default()
    };
    let state = AppState {
        auth: Arc::new(Auth::new(store.clone(), config).map_err(|e| e.to_string())?),
        audit: Arc::new(Audit::new(store.clone())),
        fhir_base: format!("http://{addr}/fhir").into(),
        store: store.clone(),
        channels: Arc::default(),
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
    let base = format!("http://{addr}");
    let login = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password.trim()}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("login gave no cookie")?
        .to_string();
    println!();
    println!(
        "{:<36} {:>5} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8}",
        "row", "conn", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    // (row, connections, outcome) of every run, for the verdicts below.
    let mut results: Vec<(Row, usize, Outcome)> = Vec::new();
    let only = std::env::var("CAUSEWAY_BENCH_ROWS").unwrap_or_default();
    for row in [
        Row::Read,
        Row::ReadObservation,
        Row::Search,
        Row::SearchDate,
        Row::SearchSorted,
    ] {
        if !only.is_empty() && !only.split(',').any(|r| r == row.id()) {
            continue;
        }
        for &concurrency in &levels {
            let o = run_row(
                row,
                &base,
                &cookie,
                concurrency,
                seconds,
                patients,
                observations,
            )
            .await;
            println!(
                "{:<36} {:>5} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.1}",
                row.label(),
                concurrency,
                o.requests,
                o.errors,
                o.per_sec,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
            );
            results.push((row, concurrency, o));
        }
    }
    let stats = store.stats();
    println!();
    println!(
        "store: {} commits for {} operations (audit records and sessions) during the run",
        stats.commits, stats.operations
    );
    // Reads: the pair, at one load: >= 10,000 reads/s with p99 <= 20 ms.
    let best_read = results
        .iter()
        .filter(|(r, _, o)| matches!(r, Row::Read) && o.errors == 0)
        .max_by(|a, b| a.2.per_sec.total_cmp(&b.2.per_sec));
    match best_read {
        Some((_, c, o)) => println!(
            "target: >= {TARGET_READS_PER_SEC:.0} reads/s with p99 <= {TARGET_P99_MS:.0} ms: best {:.0} reads/s, p99 {:.2} ms at {c} connections ({:.2}x) -> {}",
            o.per_sec,
            o.p99_ms,
            o.per_sec / TARGET_READS_PER_SEC,
            if o.per_sec >= TARGET_READS_PER_SEC && o.p99_ms <= TARGET_P99_MS {
                "met"
            } else {
                "MISSED"
            }
        ),
        None => println!("target: reads not run"),
    }
    for (row, c, o) in &results {
        if o.p99_ms > TARGET_P99_MS {
            println!(
                "  p99 over {TARGET_P99_MS:.0} ms: {} at {c} connections ({:.2} ms)",
                row.label(),
                o.p99_ms
            );
        }
    }
    store.close().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fhir_api bench: {e}");
            ExitCode::FAILURE
        }
    }
}
