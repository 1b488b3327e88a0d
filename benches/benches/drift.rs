//! Cost of drift observation per message, beside parsing alone, on corpus messages:
//! - `oru-tbrd`: the 44 ORU^R01 case notifications of CDC's TBRD feed (`../shared/corpus`,
//!   20 to 60 segments each), the feed the drift integration test learns;
//! - `adt-a01`: rethinkhealth's `adt-a01-full.hl7` (9 segments).
//!
//! Rows per set: `parse` (the floor), `parse+metrics` (parse, then what ingest and one
//! destination do to the monitor's counters for a message: four relaxed increments, a
//! timestamp, two latency-histogram records with their clock reads) and `parse+drift` (parse,
//! then `FeedProfile::observe` on a profile whose baseline is complete, i.e. the comparing path
//! every message takes in production). Before criterion runs, a plain timing loop prints the
//! ratios to parsing alone (median of rounds), which are the figures to quote. A last row times
//! one `/metrics` rendering of 20 channels with 3 destinations each (a scrape's cost).
//!
//! Run: `cargo bench -p causeway-bench --bench drift`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use causeway_engine::drift::{DriftSettings, FeedProfile};
use causeway_engine::monitor::DestinationStats;
use causeway_engine::runtime::channel::ChannelStats;
use criterion::{Criterion, criterion_group, criterion_main};

fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"))
}

fn tbrd() -> Vec<Vec<u8>> {
    let dir =
        corpus().join("cdc-data-exchange-hl7/deprecated/fn-mmg-validator/src/test/resources/tbrd");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the shared corpus beside the clone")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect()
}

fn adt() -> Vec<Vec<u8>> {
    let file = corpus().join("rethinkhealth-hl7v2/qa/fixtures/adt-a01-full.hl7");
    vec![std::fs::read(file).expect("the shared corpus beside the clone")]
}

/// A profile that has learned `msgs` and compares from now on.
fn learned(msgs: &[Vec<u8>], settings: &DriftSettings) -> FeedProfile {
    let mut p = FeedProfile::new();
    for _ in 0..=(settings.baseline_messages as usize / msgs.len() + 1) {
        for m in msgs {
            p.observe(&hl7v2::parse(m).expect("parses"), settings, 0);
        }
    }
    assert!(p.baseline_complete);
    p
}

fn settings() -> DriftSettings {
    DriftSettings {
        baseline_messages: 100,
        min_samples: 10,
        ..DriftSettings::default()
    }
}

fn pass(msgs: &[Vec<u8>], drift: Option<(&mut FeedProfile, &DriftSettings)>) -> Duration {
    let start = Instant::now();
    let mut sink = 0usize;
    match drift {
        None => {
            for m in msgs {
                sink += hl7v2::parse(black_box(m)).expect("parses").segment_count();
            }
        }
        Some((p, s)) => {
            for m in msgs {
                let msg = hl7v2::parse(black_box(m)).expect("parses");
                sink += p.observe(&msg, s, 0).len();
            }
        }
    }
    black_box(sink);
    start.elapsed()
}

/// Parse, then count the message as ingest and a destination worker do.
fn pass_metrics(msgs: &[Vec<u8>], stats: &ChannelStats, dest: &DestinationStats) -> Duration {
    let start = Instant::now();
    let mut sink = 0usize;
    for m in msgs {
        let arrived = Instant::now();
        stats.received.fetch_add(1, Ordering::Relaxed);
        stats
            .last_received_ms
            .store(causeway_store::UnixMillis::now().0, Ordering::Relaxed);
        sink += hl7v2::parse(black_box(m)).expect("parses").segment_count();
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.ack_time.record(arrived.elapsed());
        let sent = Instant::now();
        dest.record(Some(true), sent.elapsed());
    }
    black_box(sink);
    start.elapsed()
}

/// Median per-message times of the rows and their ratios, printed once.
fn ratio(label: &str, msgs: &[Vec<u8>]) {
    let s = settings();
    let mut p = learned(msgs, &s);
    let reps = (2000 / msgs.len()).max(1);
    let batch: Vec<Vec<u8>> = (0..reps).flat_map(|_| msgs.iter().cloned()).collect();
    let (stats, dest) = (ChannelStats::default(), DestinationStats::default());
    let (mut parse, mut drift, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        parse.push(pass(&batch, None));
        drift.push(pass(&batch, Some((&mut p, &s))));
        metrics.push(pass_metrics(&batch, &stats, &dest));
    }
    parse.sort();
    drift.sort();
    metrics.sort();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / batch.len() as f64;
    let (a, b, m) = (per(parse[4]), per(drift[4]), per(metrics[4]));
    println!(
        "drift/{label}: parse {a:.2} µs/msg, parse+drift {b:.2} µs/msg, drift alone {:.2} µs/msg, ratio {:.2}",
        b - a,
        b / a
    );
    println!(
        "metrics/{label}: parse+metrics {m:.2} µs/msg, metrics alone {:.3} µs/msg, ratio {:.3}",
        m - a,
        m / a
    );
}

fn bench(c: &mut Criterion) {
    for (label, msgs) in [("oru-tbrd", tbrd()), ("adt-a01", adt())] {
        ratio(label, &msgs);
        let s = settings();
        let mut group = c.benchmark_group(format!("drift/{label}"));
        group.bench_function("parse", |b| {
            b.iter(|| pass(&msgs, None));
        });
        let mut p = learned(&msgs, &s);
        group.bench_function("parse+drift", |b| {
            b.iter(|| pass(&msgs, Some((&mut p, &s))));
        });
        let (stats, dest) = (ChannelStats::default(), DestinationStats::default());
        group.bench_function("parse+metrics", |b| {
            b.iter(|| pass_metrics(&msgs, &stats, &dest));
        });
        group.finish();
    }
    let snapshot = scrape_snapshot();
    c.bench_function("metrics/render-20-channels", |b| {
        b.iter(|| {
            causeway_server::metrics::render(
                Some(black_box(&snapshot)),
                &causeway_store::WriteStats::default(),
            )
            .len()
        });
    });
}

/// Figures of 20 channels with 3 destinations each, every histogram filled.
fn scrape_snapshot() -> causeway_engine::monitor::Snapshot {
    use causeway_engine::monitor::{
        ChannelSnapshot, DestinationSnapshot, LatencyHistogram, Snapshot,
    };
    let h = LatencyHistogram::default();
    for ms in [0.3, 2.0, 8.0, 40.0, 300.0] {
        h.record(Duration::from_secs_f64(ms / 1000.0));
    }
    let ack = h.read();
    Snapshot {
        at: causeway_store::UnixMillis::now(),
        channels: (0..20)
            .map(|i| ChannelSnapshot {
                name: format!("channel-{i}"),
                running: true,
                source: "mllp",
                received: 1_000_000,
                accepted: 999_000,
                rejected: 900,
                filtered: 0,
                errored: 100,
                duplicates: 3,
                store_failures: 0,
                unmapped_codes: 12,
                script_errors: 0,
                drift_findings: 2,
                connections_open: 4,
                source_counts: Default::default(),
                last_received: Some(causeway_store::UnixMillis::now()),
                ack: ack.clone(),
                destinations: (0..3)
                    .map(|d| DestinationSnapshot {
                        name: format!("dest-{d}"),
                        queue: format!("channel-{i}/dest-{d}"),
                        queue_depth: 7,
                        oldest_age_ms: Some(1500),
                        delivered: 998_000,
                        retried: 40,
                        failed: 2,
                        consecutive_failures: 0,
                        last_success: Some(causeway_store::UnixMillis::now()),
                        last_failure: None,
                        ack: ack.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
