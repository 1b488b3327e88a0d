//! Bulk import benchmark: a generated legacy archive (`src/archive.rs`: gzip files, Latin-1,
//! batches, broken messages, duplicates) imported as `causeway import` does it, rows in one run:
//! - `read+parse` (the dry run: decompress, split, parse, profile; the floor),
//! - `to ndjson, 1 thread` and `to ndjson, N threads` (parse + convert + stage + merge + write),
//! - `to store, N threads` (the same, then loaded into a real SQLite store).
//!
//! Messages/s and MB/s (decompressed text) per row, and the ratio to the target
//! (100,000 messages/s to NDJSON on this machine). The binary's allocator (mimalloc) is used here
//! too, so the figures are the command's. Settings (environment): `CAUSEWAY_BENCH_MESSAGES`
//! (default 50,000), `CAUSEWAY_BENCH_THREADS` (default: the cores), `CAUSEWAY_BENCH_ONLY` (row ids,
//! comma-separated: `dry`, `ndjson-1`, `ndjson-n`, `store`; default all).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_bench::archive::{ArchiveSpec, write_archive};
use causeway_bench::env_u64;
use causeway_import::{Options, Progress, Settings, finish, stage, store};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGET_MSGS_PER_SEC: f64 = 100_000.0;

/// The rows' ids for `CAUSEWAY_BENCH_ONLY`, in the order they run.
const ROW_IDS: [&str; 4] = ["dry", "ndjson-1", "ndjson-n", "store"];

enum Target {
    DryRun,
    Ndjson,
    Store,
}

struct Row {
    label: String,
    messages: u64,
    bytes: u64,
    staging: Duration,
    total: Duration,
}

fn import(
    archive: &std::path::Path,
    work: &std::path::Path,
    threads: usize,
    target: Target,
) -> Result<Row, String> {
    let options = Options {
        inputs: vec![archive.to_path_buf()],
        settings: Settings {
            parse_only: matches!(target, Target::DryRun),
            ..Settings::default()
        },
        threads,
        work_dir: work.to_path_buf(),
        resume: false,
        dry_run: matches!(target, Target::DryRun),
        fingerprint: String::new(),
    };
    let started = Instant::now();
    let result = stage(&options, &Progress::default()).map_err(|e| e.to_string())?;
    let staging = started.elapsed();
    let label = match target {
        Target::DryRun => "read+parse (dry run)".to_string(),
        Target::Ndjson => {
            finish::write_ndjson(&result.staged, work, |_| {}).map_err(|e| e.to_string())?;
            finish::write_reports(&result.staged, &work.join("quarantine"))
                .map_err(|e| e.to_string())?;
            format!("to ndjson, {threads} thread(s)")
        }
        Target::Store => {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let data = work.join("data");
                let db = causeway_store::SqliteStore::open(&data, Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let db: Arc<dyn causeway_store::Store> = Arc::new(db);
                store::load(&result.staged, Arc::clone(&db), |_| {})
                    .await
                    .map_err(|e| e.to_string())?;
                db.close().await.map_err(|e| e.to_string())
            })?;
            format!("to store, {threads} thread(s)")
        }
    };
    let stats = &result.staged.stats;
    if stats.messages_read != stats.converted + stats.quarantined + stats.duplicates {
        return Err(format!("{label}: totals do not reconcile: {stats:?}"));
    }
    Ok(Row {
        label,
        messages: stats.messages_read,
        bytes: stats.bytes,
        staging,
        total: started.elapsed(),
    })
}

fn main() -> ExitCode {
    let run = || -> Result<(), String> {
        let n = env_u64("CAUSEWAY_BENCH_MESSAGES", 50_000)? as usize;
        // `CAUSEWAY_BENCH_ONLY=ndjson-n,store` runs some rows only, e.g. to profile one.
        let only = std::env::var("CAUSEWAY_BENCH_ONLY").ok();
        let unknown: Vec<&str> = only
            .iter()
            .flat_map(|o| o.split(','))
            .filter(|id| !ROW_IDS.contains(id))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "CAUSEWAY_BENCH_ONLY: unknown row id(s) {unknown:?}; known: {}",
                ROW_IDS.join(", ")
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = env_u64("CAUSEWAY_BENCH_THREADS", cores as u64)? as usize;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let archive = dir.path().join("archive");
        let manifest =
            write_archive(&archive, &ArchiveSpec::scaled(n)).map_err(|e| e.to_string())?;
        println!(
            "import benchmark: {} messages in {} files ({:.1} MB of text, {:.1} MB on disk), {cores} cores",
            manifest.messages_written,
            manifest.files.total,
            manifest.bytes_text as f64 / 1e6,
            manifest.bytes_on_disk as f64 / 1e6,
        );
        println!(
            "{:26} {:>10} {:>8} {:>10} {:>10} {:>12}",
            "row", "msg/s", "MB/s", "staging s", "total s", "vs target"
        );
        let rows = [
            (ROW_IDS[0], Target::DryRun, threads),
            (ROW_IDS[1], Target::Ndjson, 1),
            (ROW_IDS[2], Target::Ndjson, threads),
            (ROW_IDS[3], Target::Store, threads),
        ];
        let rows = rows.into_iter().filter(|(id, ..)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|wanted| wanted == *id))
        });
        for (i, (_, target, t)) in rows.enumerate() {
            let work = dir.path().join(format!("work-{i}"));
            let row = import(&archive, &work, t, target)?;
            let secs = row.total.as_secs_f64();
            let rate = row.messages as f64 / secs;
            println!(
                "{:26} {:>10.0} {:>8.1} {:>10.2} {:>10.2} {:>11.3}x",
                row.label,
                rate,
                row.bytes as f64 / 1e6 / secs,
                row.staging.as_secs_f64(),
                secs,
                rate / TARGET_MSGS_PER_SEC
            );
            // Each row's output is large; keep the disk free for the next.
            let _ = std::fs::remove_dir_all(&work);
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("import bench: {e}");
            ExitCode::FAILURE
        }
    }
}
