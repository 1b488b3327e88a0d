//! Parser benchmark: Causeway's hl7v2 against peer crates and a memchr floor,
//! side by side over one generated corpus, in one run.
//!
//! Map: read settings from the environment -> generate the corpus -> run the
//! heap probe (a separate process, see `src/bin/heap.rs`) -> check every row
//! once under `catch_unwind` -> warm up -> timed rounds, rows interleaved ->
//! print the table and the targets.
//!
//! Invariants:
//! - Every row runs over the same messages, in the same order.
//! - Rounds interleave the rows (and rotate which goes first), so drift in the
//!   machine's speed (other builds, thermal state) lands on all rows alike.
//! - A row that errors or panics on any message is shown as failed, not
//!   timed on a subset and not dropped.
//! - The timing process uses the plain system allocator.
//!
//! Settings (environment): `CAUSEWAY_BENCH_SEED`, `CAUSEWAY_BENCH_MESSAGES`,
//! `CAUSEWAY_BENCH_ROUNDS`, `CAUSEWAY_BENCH_WARMUP`, `CAUSEWAY_BENCH_ONLY`
//! (comma-separated row ids), `CAUSEWAY_BENCH_HEAP=0` to skip the heap probe.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use causeway_bench::cases::{Case, Group, Target, Totals, cases, check};
use causeway_bench::corpus::{MessageKind, Sample, Stats, samples};
use causeway_bench::heap::HeapLine;
use causeway_bench::{DEFAULT_MESSAGES, DEFAULT_SEED, ENV_MESSAGES, ENV_SEED, env_u64};

/// Timed rounds per row by default: an odd count, so the median is one round;
/// seven keeps the whole run near a minute with the slowest peers.
const DEFAULT_ROUNDS: u64 = 7;
/// Untimed passes per row before timing: one pass over 40 MB is enough to
/// fault in pages, train branch predictors and fill lazily built state.
const DEFAULT_WARMUP: u64 = 1;

/// The targets from the issue: ours against the floor and the peers.
const TARGET_VS_MEMCHR: f64 = 1.5;
const TARGET_VS_ER7: f64 = 20.0;
const TARGET_VS_BEST_PEER: f64 = 2.0;

struct Settings {
    seed: u64,
    messages: usize,
    rounds: usize,
    warmup: usize,
    only: Option<Vec<String>>,
    heap: bool,
}

fn settings() -> Result<Settings, String> {
    let only = std::env::var("CAUSEWAY_BENCH_ONLY").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let rounds = env_u64("CAUSEWAY_BENCH_ROUNDS", DEFAULT_ROUNDS)?.max(1) as usize;
    Ok(Settings {
        seed: env_u64(ENV_SEED, DEFAULT_SEED)?,
        messages: env_u64(ENV_MESSAGES, DEFAULT_MESSAGES as u64)?.max(1) as usize,
        rounds,
        warmup: env_u64("CAUSEWAY_BENCH_WARMUP", DEFAULT_WARMUP)? as usize,
        only,
        heap: std::env::var("CAUSEWAY_BENCH_HEAP").map_or(true, |v| v != "0"),
    })
}

/// Runs the heap probe over the same corpus; row id -> its line.
fn heap_probe(s: &Settings) -> Result<HashMap<String, HeapLine>, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_causeway-bench-heap"))
        .env(ENV_SEED, s.seed.to_string())
        .env(ENV_MESSAGES, s.messages.to_string())
        .output()
        .map_err(|e| format!("could not start the heap probe: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "heap probe exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(HeapLine::parse)
        .map(|l| (l.id.clone(), l))
        .collect())
}

/// One pass of `case` over the corpus.
fn pass(case: &Case, inputs: &[(&[u8], Target)]) -> Duration {
    let mut noop = || {};
    let mut sink = 0u64;
    let start = Instant::now();
    for &(bytes, target) in inputs {
        match (case.run)(black_box(bytes), target, &mut noop) {
            Ok(out) => sink = sink.wrapping_add(out.leaves ^ out.read_len as u64),
            Err(_) => sink = sink.wrapping_add(1),
        }
    }
    let elapsed = start.elapsed();
    black_box(sink);
    elapsed
}

struct Row {
    case: Case,
    totals: Result<Totals, String>,
    times: Vec<Duration>,
}

impl Row {
    fn median(&self) -> Option<Duration> {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied()
    }

    /// (max - min) / median, the spread of the rounds.
    fn spread(&self) -> Option<f64> {
        let med = self.median()?.as_secs_f64();
        let min = self.times.iter().min()?.as_secs_f64();
        let max = self.times.iter().max()?.as_secs_f64();
        Some((max - min) / med)
    }
}

fn main() -> ExitCode {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parse bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `cargo bench` passes `--bench`; a plain harness has no other flags to honour.
    let corpus: Vec<Sample> = samples(s.seed, s.messages);
    let stats = Stats::of(&corpus);
    let inputs: Vec<(&[u8], Target)> = corpus
        .iter()
        .map(|x| (x.bytes.as_slice(), Target::for_kind(x.kind)))
        .collect();
    eprintln!(
        "corpus: {} messages, {:.1} MB, seed {:#x}; {} rounds after {} warm-up",
        stats.messages,
        stats.bytes as f64 / 1e6,
        s.seed,
        s.rounds,
        s.warmup
    );

    let heap = if s.heap {
        eprintln!("heap probe: running");
        Some(heap_probe(&s))
    } else {
        None
    };

    let mut rows: Vec<Row> = cases()
        .into_iter()
        .filter(|c| {
            s.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|id| id == c.id) || c.group == Group::Floor)
        })
        .map(|case| {
            eprintln!("check: {}", case.id);
            let totals = check(&case, &corpus);
            Row {
                case,
                totals,
                times: Vec::new(),
            }
        })
        .collect();

    for _ in 0..s.warmup {
        for row in rows.iter().filter(|r| r.totals.is_ok()) {
            black_box(pass(&row.case, &inputs));
        }
    }
    let runnable: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].totals.is_ok())
        .collect();
    for round in 0..s.rounds {
        eprintln!("round {}/{}", round + 1, s.rounds);
        for k in 0..runnable.len() {
            let i = runnable[(k + round) % runnable.len()];
            let t = pass(&rows[i].case, &inputs);
            rows[i].times.push(t);
        }
    }

    print_report(&s, &stats, &rows, heap.as_ref());
    ExitCode::SUCCESS
}

fn rate(row: &Row, messages: usize) -> Option<f64> {
    Some(messages as f64 / row.median()?.as_secs_f64())
}

fn print_report(
    s: &Settings,
    stats: &Stats,
    rows: &[Row],
    heap: Option<&Result<HashMap<String, HeapLine>, String>>,
) {
    let n = stats.messages;
    let memchr = rows
        .iter()
        .find(|r| r.case.group == Group::Floor)
        .and_then(Row::median);
    let er7 = rows
        .iter()
        .find(|r| r.case.group == Group::Er7)
        .and_then(|r| rate(r, n));
    let best_peer = rows
        .iter()
        .filter(|r| matches!(r.case.group, Group::Er7 | Group::Peer))
        .filter_map(|r| rate(r, n).map(|v| (v, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));

    let mix: Vec<String> = MessageKind::ALL
        .iter()
        .zip(stats.by_kind)
        .map(|(k, c)| format!("{} {}", k.label(), c))
        .collect();
    println!();
    println!(
        "Parser benchmark: {} messages, seed {:#x}, {:.2} MB, mean {} B/msg (min {}, max {}); {}",
        n,
        s.seed,
        stats.bytes as f64 / 1e6,
        stats.mean_len(),
        stats.min_len,
        stats.max_len,
        mix.join(", ")
    );
    println!(
        "median of {} rounds after {} warm-up; MB = 10^6 bytes; one thread; {} cores online",
        s.rounds,
        s.warmup,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!();

    let header = [
        "row",
        "msg/s",
        "MB/s",
        "µs/msg",
        "spread",
        "tree B/msg",
        "allocs/msg",
        "leaves/msg",
        "t÷memchr",
        "×er7",
        "×best peer",
        "depth / status",
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let name = row.case.name.to_string();
        let heap_line = match heap {
            Some(Ok(map)) => map.get(row.case.id),
            _ => None,
        };
        let (tree, allocs) = match heap_line {
            Some(l) if l.status == "ok" && l.messages > 0 => (
                format!("{:.0}", l.tree_bytes as f64 / l.messages as f64),
                format!("{:.1}", l.allocs as f64 / l.messages as f64),
            ),
            _ => ("n/a".to_string(), "n/a".to_string()),
        };
        match (&row.totals, row.median()) {
            (Ok(totals), Some(med)) => {
                let msgs = n as f64 / med.as_secs_f64();
                let mbs = stats.bytes as f64 / med.as_secs_f64() / 1e6;
                let vs_memchr = memchr.map_or("n/a".into(), |m| {
                    format!("{:.2}", med.as_secs_f64() / m.as_secs_f64())
                });
                let vs_er7 = er7.map_or("n/a".into(), |e| format!("{:.2}", msgs / e));
                let vs_best = best_peer.map_or("n/a".into(), |(b, _)| format!("{:.2}", msgs / b));
                table.push(vec![
                    name,
                    format!("{msgs:.0}"),
                    format!("{mbs:.1}"),
                    format!("{:.2}", med.as_secs_f64() * 1e6 / n as f64),
                    row.spread()
                        .map_or("n/a".into(), |x| format!("{:.1}%", x * 100.0)),
                    tree,
                    allocs,
                    format!(
                        "{:.1}",
                        totals.leaves as f64 / totals.messages.max(1) as f64
                    ),
                    vs_memchr,
                    vs_er7,
                    vs_best,
                    row.case.depth.to_string(),
                ]);
            }
            (Err(e), _) => {
                let mut cells = vec![name];
                cells.extend(std::iter::repeat_n("-".to_string(), header.len() - 2));
                cells.push(format!("FAILED, not timed: {e}"));
                table.push(cells);
            }
            (Ok(_), None) => {
                let mut cells = vec![name];
                cells.extend(std::iter::repeat_n("-".to_string(), header.len() - 2));
                cells.push("not timed".to_string());
                table.push(cells);
            }
        }
    }
    print_table(&header, &table);

    println!();
    println!("columns: t÷memchr = median time / memchr scan time (1.00 = as fast as the floor);");
    println!(
        "  ×er7, ×best peer = msg/s / that row's msg/s; best peer = fastest peer row of any depth"
    );
    if let Some((_, r)) = best_peer {
        println!("  (here: {} [{}]);", r.case.name, r.case.id);
    }
    println!(
        "  tree B/msg = heap bytes the parsed message holds right after parse (requested sizes);"
    );
    println!("  allocs/msg = allocations + reallocations over parse, walk and read;");
    println!("  leaves/msg = non-empty values at the deepest level the row reaches (see depth).");
    if rows.iter().any(|r| r.case.id == "rust-hl7") {
        println!(
            "  rust-hl7 prints \"Converted hex code ...\" to stdout (a println! in its decoder)"
        );
        println!(
            "  for every \\X..\\ escape it decodes: those lines above are its, and count in its time."
        );
    }
    match heap {
        None => println!("heap probe: skipped (CAUSEWAY_BENCH_HEAP=0)"),
        Some(Err(e)) => println!("heap probe: {e}"),
        Some(Ok(map)) => {
            for row in rows {
                if let Some(l) = map.get(row.case.id).filter(|l| l.status != "ok") {
                    println!("heap probe, {}: {}", row.case.id, l.status);
                }
            }
        }
    }

    let ours: Vec<&Row> = rows
        .iter()
        .filter(|r| r.case.group == Group::Ours)
        .collect();
    if ours.is_empty() {
        println!();
        println!("causeway hl7v2 rows: not built (enable with `--features hl7v2`)");
        return;
    }
    println!();
    println!(
        "targets: t÷memchr <= {TARGET_VS_MEMCHR}, ×er7 >= {TARGET_VS_ER7}, ×best peer >= {TARGET_VS_BEST_PEER}"
    );
    for row in ours {
        let (Some(med), Some(msgs)) = (row.median(), rate(row, n)) else {
            println!("  {} [{}]: not timed", row.case.name, row.case.id);
            continue;
        };
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let mut parts = Vec::new();
        if let Some(m) = memchr {
            let r = med.as_secs_f64() / m.as_secs_f64();
            parts.push(format!(
                "t÷memchr {r:.2} {}",
                verdict(r <= TARGET_VS_MEMCHR)
            ));
        }
        if let Some(e) = er7 {
            let r = msgs / e;
            parts.push(format!("×er7 {r:.1} {}", verdict(r >= TARGET_VS_ER7)));
        }
        if let Some((b, _)) = best_peer {
            let r = msgs / b;
            parts.push(format!(
                "×best peer {r:.2} {}",
                verdict(r >= TARGET_VS_BEST_PEER)
            ));
        }
        println!(
            "  {} [{}]: {}",
            row.case.name,
            row.case.id,
            parts.join("; ")
        );
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            // Text columns (first and last) left-aligned, numbers right-aligned.
            if i == 0 || i == cols - 1 {
                out.push_str(cell);
                if i != cols - 1 {
                    out.push_str(&" ".repeat(pad));
                }
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
            if i != cols - 1 {
                out.push_str("  ");
            }
        }
        println!("{}", out.trim_end());
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(&head);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule);
    for r in rows {
        line(r);
    }
}
