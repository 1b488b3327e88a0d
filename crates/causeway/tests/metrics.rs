//! `/metrics`, `/api/monitor` and `/api/stream` of a real `causeway serve`, after real MLLP
//! traffic: accepted, refused and repeated messages, one destination that delivers (a file)
//! and one whose receiver is down (a closed port).
//!
//! The exposition is read by the Prometheus project's own Python client parser
//! (`prometheus_client.parser`, installed by `scripts/setup`), an independent reader of the
//! text format: if our output were malformed it would refuse it. Without python3 or the
//! package the test fails and says to run `scripts/setup`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Ack, Mllp, Server, adt, toml_path, write_config};

const LIMIT: Duration = Duration::from_secs(20);

const SETUP_HINT: &str =
    "run scripts/setup (pip install -r scripts/requirements-test.txt provides prometheus_client)";

/// Reads an exposition with `prometheus_client.parser` and prints one JSON sample a line.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": s.name, "labels": s.labels, "value": s.value}))
"#;

/// One sample as the parser read it.
#[derive(Debug, Clone)]
struct Sample {
    family_type: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {SETUP_HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition ({SETUP_HINT} if it is missing):\n{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("parser JSON");
            Sample {
                family_type: v["type"].as_str().unwrap_or_default().to_string(),
                name: v["name"].as_str().unwrap_or_default().to_string(),
                labels: v["labels"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                value: v["value"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

async fn scrape(http: &reqwest::Client, base: &str) -> Vec<Sample> {
    let r = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers()
    );
    parse_exposition(&r.text().await.expect("body"))
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn config(dir: &std::path::Path, metrics: &str) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[server]
data_dir = {data}
http = "127.0.0.1:0"
log_format = "json"
{metrics}

[[channel]]
name = "feed"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}

  [[channel.destination]]
  name = "archive"
  type = "file"
  dir = {out}

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "{down}"
  connect_timeout = "200ms"
"#,
            data = toml_path(&dir.join("data")),
            out = toml_path(&dir.join("out")),
            down = closed_port(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_sent_and_parse_as_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&config(dir.path(), ""));
    let base = format!("http://{}", server.http.expect("HTTP address"));
    let http = client();

    // Five accepted, one that does not parse (AR), one repeat of the first (duplicate).
    let mut mllp = Mllp::connect(server.addr("feed"), LIMIT).expect("connect");
    let first = adt("MET-1", "P", 0);
    for i in 1..=5 {
        let ack = Ack::parse(&mllp.send(&adt(&format!("MET-{i}"), "P", 0)).expect("ACK"));
        assert_eq!(ack.code, "AA");
    }
    let refused = Ack::parse(&mllp.send(b"this is not HL7").expect("NAK"));
    assert_eq!(refused.code, "AR");
    let again = Ack::parse(&mllp.send(&first).expect("ACK"));
    assert_eq!(again.code, "AA");

    // The archive delivers all five; the EHR is down, so its queue holds them (gauges are
    // sampled once a second).
    let deadline = Instant::now() + LIMIT;
    let samples = loop {
        let samples = scrape(&http, &base).await;
        let archive = [("channel", "feed"), ("destination", "archive")];
        let ehr = [("channel", "feed"), ("destination", "ehr")];
        let delivered = value(&samples, "causeway_destination_delivered_total", &archive);
        let depth = value(&samples, "causeway_destination_queue_depth", &ehr);
        let retried = value(&samples, "causeway_destination_retries_total", &ehr);
        if delivered == Some(5.0) && depth == Some(5.0) && retried >= Some(1.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "delivered {delivered:?}, EHR queue {depth:?}, retries {retried:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let feed = [("channel", "feed")];
    let count = |name: &str| value(&samples, name, &feed);
    assert_eq!(count("causeway_messages_received_total"), Some(7.0));
    assert_eq!(count("causeway_messages_accepted_total"), Some(5.0));
    assert_eq!(count("causeway_messages_rejected_total"), Some(1.0));
    assert_eq!(count("causeway_messages_duplicate_total"), Some(1.0));
    assert_eq!(count("causeway_messages_errored_total"), Some(0.0));
    assert_eq!(count("causeway_channel_running"), Some(1.0));
    assert_eq!(count("causeway_source_connections_open"), Some(1.0));
    assert!(count("causeway_last_received_timestamp_seconds") > Some(1.7e9));
    // Every message was answered, so the time-to-ACK histogram counted seven, and its
    // buckets are cumulative up to +Inf.
    assert_eq!(count("causeway_ack_seconds_count"), Some(7.0));
    assert_eq!(
        value(
            &samples,
            "causeway_ack_seconds_bucket",
            &[("channel", "feed"), ("le", "+Inf")]
        ),
        Some(7.0)
    );
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "causeway_ack_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let types: BTreeMap<&str, &str> = samples
        .iter()
        .map(|s| (s.name.as_str(), s.family_type.as_str()))
        .collect();
    assert_eq!(types["causeway_messages_received_total"], "counter");
    assert_eq!(types["causeway_destination_queue_depth"], "gauge");
    assert_eq!(types["causeway_ack_seconds_bucket"], "histogram");
    let ehr = [("channel", "feed"), ("destination", "ehr")];
    assert!(value(&samples, "causeway_destination_oldest_age_seconds", &ehr) > Some(0.0));
    assert!(value(&samples, "causeway_destination_consecutive_failures", &ehr) >= Some(1.0));
    assert_eq!(
        value(&samples, "causeway_destination_delivered_total", &ehr),
        Some(0.0)
    );
    assert!(
        value(&samples, "causeway_store_messages_total", &[]) >= Some(6.0),
        "the store counts what it committed"
    );
    // No PHI: the test patient's name and identifier appear nowhere in the exposition.
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(!text.contains("PATIENT") && !text.contains("MET-1"));

    // The same figures for the dashboard: /api/monitor (with history) and /api/stream.
    let password = server.admin_password.clone().expect("admin password");
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let anonymous = http
        .get(format!("{base}/api/monitor"))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
    let monitor: Value = http
        .get(format!("{base}/api/monitor?seconds=60"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /api/monitor")
        .json()
        .await
        .expect("JSON");
    let now = &monitor["now"]["channels"][0];
    assert_eq!(now["name"], "feed");
    assert_eq!(now["accepted"], 5);
    assert_eq!(now["ack"]["count"], 7);
    assert_eq!(now["destinations"][1]["queue_depth"], 5);
    let history = monitor["history"].as_array().expect("history");
    assert!(!history.is_empty(), "a sample a second is kept");
    assert!(
        history
            .windows(2)
            .all(|w| w[0]["at"].as_i64() < w[1]["at"].as_i64())
    );
    let too_far = http
        .get(format!("{base}/api/monitor?seconds=999999"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(too_far.status(), 400);

    let mut stream = http
        .get(format!("{base}/api/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET /api/stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The current figures at once, then one sample a second: read two snapshots.
    let mut text = String::new();
    let deadline = Instant::now() + LIMIT;
    while text.matches("event: snapshot").count() < 2 {
        assert!(Instant::now() < deadline, "stream so far: {text}");
        let chunk = tokio::time::timeout(LIMIT, stream.chunk())
            .await
            .expect("a chunk within the limit")
            .expect("stream")
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let snapshot: Value = serde_json::from_str(data).expect("snapshot JSON");
    assert_eq!(snapshot["channels"][0]["received"], 7);

    // Bytes before a frame are skipped (the message after them is answered) and counted by
    // the source, as no message counter can: 14, as CR and LF between frames are not garbage.
    let mut raw = std::net::TcpStream::connect(server.addr("feed")).expect("connect");
    raw.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut bytes = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    bytes.push(0x0b);
    bytes.extend_from_slice(&first);
    bytes.extend_from_slice(&[0x1c, 0x0d]);
    std::io::Write::write_all(&mut raw, &bytes).expect("write");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 1024];
    while !reply.ends_with(&[0x1c, 0x0d]) {
        let n = std::io::Read::read(&mut raw, &mut chunk).expect("read the ACK");
        assert!(n > 0, "closed before the ACK");
        reply.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&reply).contains("MSA|AA|MET-1"));
    let deadline = Instant::now() + LIMIT;
    loop {
        let samples = scrape(&http, &base).await;
        let garbage = value(&samples, "causeway_source_garbage_bytes_total", &feed);
        if garbage == Some(14.0) {
            assert_eq!(
                value(&samples, "causeway_source_connections_total", &feed),
                Some(2.0)
            );
            assert_eq!(
                value(&samples, "causeway_source_oversized_frames_total", &feed),
                Some(0.0)
            );
            assert_eq!(
                value(&samples, "causeway_source_files_failed_total", &feed),
                Some(0.0),
                "an MLLP source moves no files"
            );
            break;
        }
        assert!(Instant::now() < deadline, "garbage bytes {garbage:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(raw);
    drop(mllp);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_keeps_scrapers_without_it_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        dir.path(),
        "[server.metrics]\ntoken_env = \"CAUSEWAY_TEST_METRICS_TOKEN\"",
    );
    let server =
        Server::try_start_with(&config, &[("CAUSEWAY_TEST_METRICS_TOKEN", "s3cret-scrape")])
            .unwrap_or_else(|e| panic!("serve did not start: {}", e.stderr));
    let base = format!("http://{}", server.http.expect("HTTP address"));
    let http = client();
    let without = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET");
    assert_eq!(without.status(), 401);
    assert!(without.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(format!("{base}/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(format!("{base}/metrics"))
        .bearer_auth("s3cret-scrape")
        .send()
        .await
        .expect("GET");
    assert_eq!(right.status(), 200);
    let samples = parse_exposition(&right.text().await.expect("body"));
    assert_eq!(
        value(
            &samples,
            "causeway_messages_received_total",
            &[("channel", "feed")]
        ),
        Some(0.0)
    );
    // The probes stay open.
    let health = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), 200);
    server.stop();

    // Named but not set: `causeway check` refuses the configuration, naming the variable.
    let out = Command::new(support::BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("CAUSEWAY_TEST_METRICS_TOKEN")
        .output()
        .expect("causeway check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.metrics.token_env")
            && stderr.contains("CAUSEWAY_TEST_METRICS_TOKEN"),
        "{stderr}"
    );
}
