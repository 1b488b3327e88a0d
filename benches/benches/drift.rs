//! Cost of drift observation per message, beside parsing alone, on corpus messages:
//! - `oru-tbrd`: the 44 ORU^R01 case notifications of CDC's TBRD feed (`../shared/corpus`,
//!   20 to 60 segments each), the feed the drift integration test learns;
//! - `adt-a01`: rethinkhealth's `adt-a01-full.hl7` (9 segments).
//!
//! Rows per set: `parse` (the floor) and `parse+drift` (parse, then `FeedProfile::observe` on a
//! profile whose baseline is complete, i.e. the comparing path every message takes in
//! production). Before criterion runs, a plain timing loop prints the ratio of the two (median of
//! rounds), which is the figure to quote.
//!
//! Run: `cargo bench -p causeway-bench --bench drift`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway_engine::drift::{DriftSettings, FeedProfile};
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

/// Median per-message times of both rows and their ratio, printed once.
fn ratio(label: &str, msgs: &[Vec<u8>]) {
    let s = settings();
    let mut p = learned(msgs, &s);
    let reps = (2000 / msgs.len()).max(1);
    let batch: Vec<Vec<u8>> = (0..reps).flat_map(|_| msgs.iter().cloned()).collect();
    let (mut parse, mut drift) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        parse.push(pass(&batch, None));
        drift.push(pass(&batch, Some((&mut p, &s))));
    }
    parse.sort();
    drift.sort();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / batch.len() as f64;
    let (a, b) = (per(parse[4]), per(drift[4]));
    println!(
        "drift/{label}: parse {a:.2} µs/msg, parse+drift {b:.2} µs/msg, drift alone {:.2} µs/msg, ratio {:.2}",
        b - a,
        b / a
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
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
