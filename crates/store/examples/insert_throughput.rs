//! Measures persisted inbound messages per second through group commit.
//!
//! ```text
//! cargo run --release -p causeway-store --example insert_throughput -- \
//!     [--messages 100000] [--tasks 8] [--destinations 1] [--max-wait-us 0] [--dir PATH]
//! ```
//!
//! Each task behaves like one MLLP connection: it inserts a message and waits for the commit
//! (the moment the listener may send AA) before sending the next. Messages are ~1 KiB ADT^A01
//! with one patient identifier, each queued to `--destinations` destinations. The store is the
//! real thing: SQLite WAL, `synchronous=FULL`, encryption, duplicate check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_store::{
    Header, MessageState, NewMessage, SqliteOptions, SqliteStore, Store, UnixMillis,
};

struct Args {
    messages: usize,
    tasks: usize,
    destinations: usize,
    max_wait: Duration,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        messages: 100_000,
        tasks: 8,
        destinations: 1,
        max_wait: Duration::ZERO,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--messages" => args.messages = number(value()?)?,
            "--tasks" => args.tasks = number(value()?)?.max(1),
            "--destinations" => args.destinations = number(value()?)?,
            "--max-wait-us" => args.max_wait = Duration::from_micros(number(value()?)? as u64),
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn message(n: usize, destinations: &[String]) -> NewMessage {
    let control_id = format!("BENCH{n:09}");
    let mrn = format!("MRN{:07}", n % 50_000);
    let mut raw = format!(
        "MSH|^~\\&|LABAPP|NORTH|CAUSEWAY|HUB|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r\
         EVN|A01|20240101120000|||OPERATOR^SMITH^JOHN\r\
         PID|1||{mrn}^^^NORTH^MR~99{mrn}^^^STATE^SS||DOE^JANE^Q^^MS||19800101|F|||123 MAIN ST^^SPRINGFIELD^IL^62701^USA||(217)555-0100|||M|||123-45-6789\r\
         NK1|1|DOE^JOHN|SPO|123 MAIN ST^^SPRINGFIELD^IL^62701^USA|(217)555-0101\r\
         PV1|1|I|WARD3^301^B^NORTH||||1234^WELBY^MARCUS^^^DR|||MED||||ADM|||1234^WELBY^MARCUS^^^DR|IN||SELF|||||||||||||||||||NORTH||ADMITTED|||20240101115500\r\
         AL1|1|DA|PCN^PENICILLIN^L|SV|HIVES\r\
         DG1|1||I10^ESSENTIAL HYPERTENSION^I10||20240101|A\r"
    );
    while raw.len() < 1024 {
        raw.push_str("NTE|1||ROUTINE ADMISSION NOTE TEXT PADDING\r");
    }
    NewMessage {
        channel: "adt-main".to_owned(),
        peer: "10.1.2.3:40000".to_owned(),
        received_at: UnixMillis::now(),
        header: Header {
            sending_app: "LABAPP".to_owned(),
            sending_facility: "NORTH".to_owned(),
            message_type: "ADT^A01".to_owned(),
            control_id,
            version: "2.5.1".to_owned(),
        },
        patient_ids: vec![mrn],
        raw: raw.into_bytes(),
        destinations: destinations.to_vec(),
        state: MessageState::Accepted,
        ack: None,
        outbound: None,
        events: Vec::new(),
        pending_resource: None,
    }
}

/// Appends 4 KiB and fsyncs, repeatedly for one second, in `dir`: the disk's own ceiling on
/// commits per second, printed so the store's figure can be read against it.
fn fsyncs_per_second(dir: &std::path::Path) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(1) {
        file.write_all(&block)?;
        file.sync_all()?;
        n += 1;
    }
    let rate = f64::from(n) / started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("data"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Probe beside the data directory, on the same file system.
        let disk = fsyncs_per_second(dir.parent().unwrap_or(&dir))?;
        let options = SqliteOptions {
            max_wait: args.max_wait,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&dir, options).await?;
        let destinations: Arc<Vec<String>> = Arc::new(
            (0..args.destinations)
                .map(|d| format!("dest-{d}"))
                .collect(),
        );
        let per_task = args.messages / args.tasks;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..args.tasks {
            let store = store.clone();
            let destinations = Arc::clone(&destinations);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let msg = message(t * per_task + i, &destinations);
                    let sent = Instant::now();
                    store.insert_inbound(msg).await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, causeway_store::Error>(latencies)
            }));
        }
        let mut latencies = Vec::with_capacity(args.messages);
        for t in tasks {
            latencies.extend(t.await??);
        }
        let elapsed = started.elapsed();
        let stats = store.write_stats();
        store.close().await?;
        latencies.sort_unstable();
        let total = latencies.len();
        println!(
            "{total} messages, {} tasks, {} destination(s) each, max_wait {:?}",
            args.tasks, args.destinations, args.max_wait
        );
        println!(
            "disk baseline      {disk:.0} fsync/s (4 KiB append + fsync, just before the run)"
        );
        println!("elapsed            {:.2} s", elapsed.as_secs_f64());
        println!(
            "throughput         {:.0} msg/s",
            total as f64 / elapsed.as_secs_f64()
        );
        println!(
            "commits            {} ({:.0} commits/s)",
            stats.commits,
            stats.commits as f64 / elapsed.as_secs_f64()
        );
        println!("commits per msg    {:.4}", stats.commits_per_message());
        println!(
            "writer time        {:.2} s running operations, {:.2} s in COMMIT (fsync)",
            stats.work_time.as_secs_f64(),
            stats.commit_time.as_secs_f64()
        );
        println!(
            "messages per commit {:.1}",
            1.0 / stats.commits_per_message().max(f64::MIN_POSITIVE)
        );
        println!(
            "insert latency     p50 {:?}  p99 {:?}  max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default()
        );
        let db_size: u64 = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "data dir size      {:.1} MiB",
            db_size as f64 / (1024.0 * 1024.0)
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
