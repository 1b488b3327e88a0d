//! Drift detection through a real channel on a real SQLite store, fed with corpus traffic: 44
//! public-health ORU^R01 messages of one sender (CDC's Lyme/TBRD case notifications, see
//! `../shared/corpus/cdc-data-exchange-hl7/PROVENANCE.md`). The channel learns them as its
//! baseline; then a steady replay raises nothing, and a feed that starts sending a new Z segment,
//! a new code, or stops filling a field raises exactly one `drift` event each. The learned profile
//! survives a restart, and exports as a conformance profile the feed's own messages validate
//! against.

mod support;

use std::path::Path;

use causeway_store::{EventFilter, EventKind};
use support::Harness;

const FEED: &str = "cdc-data-exchange-hl7/deprecated/fn-mmg-validator/src/test/resources/tbrd";

/// The corpus feed, each message once, in file-name order.
fn corpus_feed() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(FEED);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): the shared corpus must lie beside the clone",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let msgs: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().replace("\r\n", "\n"))
        .collect();
    assert_eq!(msgs.len(), 44, "the TBRD feed has 44 messages");
    msgs
}

/// `msg` with MSH-10 set (so that no replay is a duplicate) and each segment line passed
/// through `edit`, and `extra` segments appended.
fn variant(msg: &str, control_id: &str, edit: &dyn Fn(&str) -> String, extra: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in msg.split('\n').filter(|l| !l.trim().is_empty()) {
        let line = if line.starts_with("MSH|") {
            let mut f: Vec<&str> = line.split('|').collect();
            f[9] = control_id;
            f.join("|")
        } else {
            edit(line)
        };
        out.push_str(&line);
        out.push('\r');
    }
    out.push_str(extra);
    out.into_bytes()
}

/// Field `n` of a segment line set to `value`.
fn set_field(line: &str, n: usize, value: &str) -> String {
    let mut f: Vec<String> = line.split('|').map(str::to_string).collect();
    if f.len() <= n {
        f.resize(n + 1, String::new());
    }
    f[n] = value.to_string();
    f.join("|")
}

const CONFIG: &str = "[[channel]]\nname = \"cases\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n\
  [channel.drift]\n  baseline_messages = 44\n  window = 44\n  min_samples = 10\n";

/// Sends one round of the feed through the channel and returns the drift events it raised.
async fn round(
    h: &Harness,
    round: &str,
    edit: &dyn Fn(&str) -> String,
    extra: &str,
) -> Vec<String> {
    let channel = h.engine().channel("cases").expect("channel");
    let before = drift_events(h).await.len();
    for (i, msg) in corpus_feed().iter().enumerate() {
        let raw = variant(msg, &format!("{round}-{i}"), edit, extra);
        let reply = channel.ingest(&raw, "test").await;
        assert!(reply.message_id.is_some(), "{round}-{i} stored");
    }
    drift_events(h).await.split_off(before)
}

async fn drift_events(h: &Harness) -> Vec<String> {
    h.store
        .events(EventFilter {
            kind: Some(EventKind::Drift),
            ..EventFilter::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|e| {
            assert_eq!(e.channel, "cases");
            assert!(e.message_id.is_some(), "a finding names its message");
            e.detail
        })
        .collect()
}

fn same(line: &str) -> String {
    line.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_feed_raises_nothing_and_each_change_is_reported_once() {
    let mut h = Harness::start(CONFIG).await;
    assert_eq!(round(&h, "baseline", &same, "").await, Vec::<String>::new());
    assert_eq!(round(&h, "steady-1", &same, "").await, Vec::<String>::new());
    assert_eq!(round(&h, "steady-2", &same, "").await, Vec::<String>::new());

    let z = "ZLY|1|TICK-EXPOSURE^Tick exposure^L\r";
    assert_eq!(
        round(&h, "z-segment", &same, z).await,
        ["ORU^R01: new Z segment ZLY"]
    );
    let unknown_sex = |l: &str| {
        if l.starts_with("PID|") {
            set_field(l, 8, "U")
        } else {
            l.to_string()
        }
    };
    assert_eq!(
        round(&h, "new-code", &unknown_sex, z).await,
        ["ORU^R01: PID-8 (Administrative Sex) carries new code \"U\""]
    );
    let no_birth_date = |l: &str| {
        if l.starts_with("PID|") {
            set_field(&set_field(l, 8, "U"), 7, "")
        } else {
            l.to_string()
        }
    };
    assert_eq!(
        round(&h, "no-dob", &no_birth_date, z).await,
        [
            "ORU^R01: PID-7 (Date/Time of Birth) filled in 50% of the last 44 messages, 100% in the baseline"
        ]
    );
    // The condition stands: not reported again.
    assert_eq!(
        round(&h, "no-dob-2", &no_birth_date, z).await,
        Vec::<String>::new()
    );
    let stats = &h.engine().channel("cases").unwrap().stats;
    assert_eq!(
        stats
            .drift_findings
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // Learning survives a restart: the same changed feed is nothing new to the restarted engine.
    h.shutdown().await;
    let saved = h.path("data/drift/cases.json");
    let learned = causeway_engine::drift::read_profile(&saved).expect("the profile was saved");
    assert!(learned.baseline_complete);
    assert_eq!(learned.messages, 44 * 7);
    let Harness { dir, .. } = h;
    let h = Harness::start_in(dir, CONFIG).await;
    assert_eq!(
        round(&h, "after-restart", &no_birth_date, z).await,
        Vec::<String>::new()
    );

    // The learned profile as a conformance profile: the feed's own changed messages validate
    // against it (the Z segment declared, the new code added to table 0001).
    let tracker = h
        .engine()
        .channel("cases")
        .unwrap()
        .drift
        .clone()
        .expect("drift on");
    let json = causeway_engine::drift::export::conformance_profile("cases", &tracker.profile());
    assert_eq!(json["base_version"], "2.5.1");
    assert_eq!(json["segments"]["ZLY"]["fields"][1]["name"], "ZLY-2");
    let sexes = json["tables"]["1"]["values"].as_array().expect("table 1");
    assert!(sexes.iter().any(|v| v == "U"), "{json}");
    let profile = hl7v2::validate::Profile::from_json_str(&json.to_string()).expect("loads");
    for (i, msg) in corpus_feed().iter().enumerate() {
        let raw = variant(msg, &format!("v-{i}"), &no_birth_date, z);
        let m = hl7v2::parse(&raw).unwrap();
        let with = hl7v2::validate::validate_with(&m, &profile);
        let without = hl7v2::validate::validate(&m);
        // Everything the profile knows is no longer an error, nothing new is.
        assert!(
            with.iter().filter(|f| f.is_error()).count()
                <= without.iter().filter(|f| f.is_error()).count(),
            "message {i}"
        );
        assert!(
            !with.iter().any(|f| f.text.contains("ZLY")),
            "message {i}: {with:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_can_be_turned_off() {
    let h = Harness::start(
        "[[channel]]\nname = \"cases\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n\
         drift = { enabled = false }\n",
    )
    .await;
    assert!(h.engine().channel("cases").unwrap().drift.is_none());
    let z = "ZLY|1\r";
    round(&h, "a", &same, "").await;
    assert_eq!(round(&h, "b", &same, z).await, Vec::<String>::new());
    assert!(!h.path("data/drift/cases.json").exists());
}
