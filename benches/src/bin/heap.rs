//! Heap probe for the parse bench: how much heap each parser's tree holds.
//!
//! Runs every row of `causeway_bench::cases` once over the corpus chosen by
//! `CAUSEWAY_BENCH_SEED` and `CAUSEWAY_BENCH_MESSAGES`, under a counting global
//! allocator, and prints one `heap` line per row (format in
//! `causeway_bench::heap`). The parse bench starts this process itself; it can
//! also be run alone: `cargo run --release -p causeway-bench --bin causeway-bench-heap`.
//!
//! Why a separate process: `stats_alloc` counts with atomic adds on every
//! allocation and free. That is exact, but it would slow the allocation-heavy
//! peers in the timed runs, so timing happens in a process with the plain
//! system allocator and only the counting happens here.
//!
//! Why `stats_alloc`: it wraps the system allocator with a safe API (our code
//! stays free of `unsafe`), counts exact requested bytes, allocations and
//! reallocations, has no dependencies, and costs a few atomics per call.
//! `dhat` was the other candidate; it records a backtrace per allocation and
//! writes a profile file, far too slow for the millions of allocations some
//! peers make over a 20,000-message corpus.

use std::process::ExitCode;

use causeway_bench::cases::{Target, cases, check};
use causeway_bench::corpus::samples;
use causeway_bench::heap::HeapLine;
use causeway_bench::{DEFAULT_MESSAGES, DEFAULT_SEED, ENV_MESSAGES, ENV_SEED, env_u64};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes between two snapshots (allocated minus freed, reallocations included).
fn live(from: stats_alloc::Stats, to: stats_alloc::Stats) -> i64 {
    let allocated = (to.bytes_allocated - from.bytes_allocated) as i64;
    let freed = (to.bytes_deallocated - from.bytes_deallocated) as i64;
    let grown = (to.bytes_reallocated - from.bytes_reallocated) as i64;
    allocated - freed + grown
}

fn main() -> ExitCode {
    let (seed, n) = match (
        env_u64(ENV_SEED, DEFAULT_SEED),
        env_u64(ENV_MESSAGES, DEFAULT_MESSAGES as u64),
    ) {
        (Ok(seed), Ok(n)) => (seed, n as usize),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("causeway-bench-heap: {e}");
            return ExitCode::FAILURE;
        }
    };
    let corpus = samples(seed, n);
    for case in cases() {
        let mut line = HeapLine {
            id: case.id.to_string(),
            messages: 0,
            tree_bytes: 0,
            allocs: 0,
            status: "ok".to_string(),
        };
        // A row that fails anywhere is reported, not measured on a subset.
        if let Err(e) = check(&case, &corpus) {
            line.status = e;
            println!("{}", line.render());
            continue;
        }
        for s in &corpus {
            let target = Target::for_kind(s.kind);
            let start = GLOBAL.stats();
            let mut tree = 0i64;
            let result = (case.run)(&s.bytes, target, &mut || tree = live(start, GLOBAL.stats()));
            let end = GLOBAL.stats();
            if let Err(e) = result {
                line.status = e;
                break;
            }
            line.messages += 1;
            line.tree_bytes += tree.max(0) as u64;
            line.allocs += ((end.allocations - start.allocations)
                + (end.reallocations - start.reallocations)) as u64;
        }
        println!("{}", line.render());
    }
    ExitCode::SUCCESS
}
