//! Benchmarks of Causeway against peer implementations, run side by side.
//!
//! Map:
//! - [`archive`]: a generator of legacy HL7 v2 archives (years of ADT/ORU/ORM in gzip and
//!   plain files, Latin-1, batches, duplicates, broken messages) with a manifest of ground
//!   truth, for `causeway import`; `src/bin/gen-archive.rs` is its command line.
//! - [`corpus`]: the seedable generator of realistic synthetic HL7 v2.5.1
//!   messages (ADT^A01/A08, ORU^R01, ORM^O01, about 2 KB each). Later benches
//!   (MLLP, conversion) reuse it.
//! - [`cases`]: one function per parser under test, all with the same contract
//!   (parse, walk to full depth, read one decoded value).
//! - [`heap`]: the line format the heap probe (`causeway-bench-heap`) prints and
//!   the parse bench reads back.
//! - `benches/parse.rs`: the timing harness that prints the comparison table.
//! - `src/bin/heap.rs`: the heap probe, a separate process with a counting
//!   allocator so that counting never slows the timed runs.
//!
//! Invariants: every row of one run sees the same corpus (same seed, same
//! count); a row that errors or panics on any message is reported as failed,
//! never dropped.

pub mod archive;
pub mod cases;
pub mod corpus;
pub mod heap;

/// Environment variable: corpus seed (decimal or `0x` hex).
pub const ENV_SEED: &str = "CAUSEWAY_BENCH_SEED";
/// Environment variable: number of messages in the corpus.
pub const ENV_MESSAGES: &str = "CAUSEWAY_BENCH_MESSAGES";

/// Default corpus seed: any fixed value works; this one is just memorable.
pub const DEFAULT_SEED: u64 = 0x000C_A05E_3A11;
/// Default corpus size: 20,000 messages of about 2 KB is about 40 MB, large
/// enough to defeat the 2-core machine's caches (so every row pays for memory
/// as a real receiver would) and small enough that a round of the slowest peer
/// stays near a second.
pub const DEFAULT_MESSAGES: usize = 20_000;

/// Reads a `u64` from the environment (decimal or `0x` hex), or the default.
///
/// # Errors
/// The variable is set but is not a number.
pub fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => {
            let t = text.trim();
            let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            parsed.map_err(|_| format!("{name}={text:?} is not a number"))
        }
    }
}
