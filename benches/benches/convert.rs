//! Conversion benchmark: HL7 v2 -> FHIR R4 bundle JSON, per core, beside parse alone, in one run.
//!
//! Rows, for ADT^A01 and ORU^R01 messages from the synthetic generator (`src/corpus.rs`):
//! - `parse`: `hl7v2::parse` alone (the floor);
//! - `parse+convert`: parse and `v2fhir::convert` to a transaction bundle;
//! - `parse+convert+json`: the same and serialising the bundle to JSON (what a channel delivers).
//!
//! One thread, so the figure is msg/s per core. Rounds interleave the rows and the median round is
//! reported. Settings (environment): `CAUSEWAY_BENCH_SEED`, `CAUSEWAY_BENCH_MESSAGES` (per kind, default
//! 5,000), `CAUSEWAY_BENCH_ROUNDS` (default 7).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use causeway_bench::corpus::{Generator, MessageKind};
use causeway_bench::{DEFAULT_SEED, ENV_SEED, env_u64};

/// The allocator the `causeway` binary ships with, so the figures are what a channel or an import pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The target: parse + convert + serialise, per core.
const TARGET_MSGS_PER_SEC: f64 = 50_000.0;

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Parse,
    Convert,
    ConvertJson,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Convert => "parse+convert",
            Stage::ConvertJson => "parse+convert+json",
        }
    }
}

fn pass(messages: &[Vec<u8>], stage: Stage, profile: &v2fhir::Profile) -> Result<Duration, String> {
    let start = Instant::now();
    let mut sink = 0usize;
    for bytes in messages {
        let message = hl7v2::parse(black_box(bytes)).map_err(|e| e.to_string())?;
        match stage {
            Stage::Parse => sink += message.segment_count(),
            Stage::Convert => {
                let c = v2fhir::convert(&message, profile).map_err(|e| e.to_string())?;
                sink += c.bundle.entry.len();
            }
            Stage::ConvertJson => {
                let c = v2fhir::convert(&message, profile).map_err(|e| e.to_string())?;
                sink += fhir::to_vec(&c.bundle).len();
            }
        }
    }
    black_box(sink);
    Ok(start.elapsed())
}

fn main() -> ExitCode {
    let run = || -> Result<(), String> {
        let seed = env_u64(ENV_SEED, DEFAULT_SEED)?;
        let n = env_u64("CAUSEWAY_BENCH_MESSAGES", 5_000)? as usize;
        let rounds = env_u64("CAUSEWAY_BENCH_ROUNDS", 7)?.max(1) as usize;
        // Times without a zone are read in this zone, as a site profile would say.
        let profile = v2fhir::Profile {
            name: "bench".into(),
            time_zone: Some("-0500".into()),
            ..Default::default()
        };
        let stages = [Stage::Parse, Stage::Convert, Stage::ConvertJson];
        println!("conversion benchmark: {n} messages per kind, {rounds} rounds, one thread");
        println!(
            "{:10} {:20} {:>12} {:>10} {:>12} {:>10}",
            "kind", "row", "msg/s", "µs/msg", "bundle KiB", "vs parse"
        );
        for kind in [MessageKind::AdtA01, MessageKind::OruR01] {
            let mut generator = Generator::new(seed);
            let messages: Vec<Vec<u8>> = (0..n).map(|_| generator.message_of(kind)).collect();
            // One checked pass per row first: a failure is reported, not timed.
            for stage in stages {
                pass(&messages, stage, &profile).map_err(|e| format!("{}: {e}", stage.label()))?;
            }
            let bundle_bytes: usize = messages
                .iter()
                .map(|m| {
                    let parsed = hl7v2::parse(m).expect("checked");
                    let c = v2fhir::convert(&parsed, &profile).expect("checked");
                    fhir::to_vec(&c.bundle).len()
                })
                .sum();
            let mut times: Vec<Vec<Duration>> = vec![Vec::new(); stages.len()];
            for round in 0..rounds {
                for k in 0..stages.len() {
                    let i = (k + round) % stages.len();
                    times[i].push(pass(&messages, stages[i], &profile)?);
                }
            }
            let rate = |i: usize| {
                let mut t = times[i].clone();
                t.sort();
                n as f64 / t[t.len() / 2].as_secs_f64()
            };
            let parse_rate = rate(0);
            for (i, stage) in stages.iter().enumerate() {
                let r = rate(i);
                println!(
                    "{:10} {:20} {:>12.0} {:>10.2} {:>12.1} {:>9.2}x",
                    kind.label(),
                    stage.label(),
                    r,
                    1e6 / r,
                    if *stage == Stage::ConvertJson {
                        bundle_bytes as f64 / n as f64 / 1024.0
                    } else {
                        0.0
                    },
                    r / parse_rate
                );
                if *stage == Stage::ConvertJson {
                    let verdict = if r >= TARGET_MSGS_PER_SEC {
                        "met"
                    } else {
                        "MISSED"
                    };
                    println!(
                        "{:10} target {:.0} msg/s per core for parse+convert+json: {verdict}",
                        "", TARGET_MSGS_PER_SEC
                    );
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convert bench: {e}");
            ExitCode::FAILURE
        }
    }
}
