//! MLLP benchmark: Causeway's engine, persisted and FIFO, against python-hl7's asyncio MLLP
//! server without persistence, driven by one in-process client over loopback.
//!
//! Map: read settings from the environment -> probe the disk (fsyncs per second where the
//! data directory lives) -> generate the messages (seeded corpus) -> start python-hl7 once
//! -> for every row: a fresh engine on a fresh store (its own temporary data directory on the
//! real disk), warm-up, the timed load, store counters, shutdown; then the same load against
//! python-hl7 -> print one table, the ratios and the targets.
//!
//! What a Causeway row runs: one MLLP channel on 127.0.0.1:0 with one `set` transform
//! (`MSH-5` := `DOWNSTREAM`, so the stored outbound bytes differ from the raw ones) and one
//! MLLP destination to an in-process responder that answers AA. Every message is committed to
//! SQLite (WAL, `synchronous=FULL`, group commit with the shipped defaults) with its delivery
//! entry before the engine ACKs it. By default the destination drains while the load runs
//! (`CAUSEWAY_BENCH_MLLP_DELIVERY=concurrent`), as a running engine does; its claim and
//! completion writes share the store's group commits, so they are counted in fsyncs/msg.
//! With `held` the responder withholds its first answer until the row is over, so the
//! destination worker sits on one delivery and the row measures the inbound path alone (the
//! queue entries are still written, FIFO, in the same transaction as each message).
//!
//! Loads (each connection sends message `i` only on its own connection, in order):
//! - closed loop, window 1: the next message goes out once the previous one's ACK is read;
//! - closed loop, window W: each connection keeps W messages in flight (MLLP allows it);
//! - paced: an open loop at a fixed rate across the connections, each message sent at its
//!   scheduled time whatever is still in flight, latency measured from the scheduled time (so
//!   a stalled server is charged for the messages it delayed).
//!
//! Invariants:
//! - Both targets get the same frames, in the same order, on the same number of connections,
//!   from the same client code.
//! - An ACK counts only when [`check_ack`] accepts it (AA or CA answering the MSH-10 sent);
//!   anything else is counted as failed and reported, never dropped.
//! - Every wait for the peer is bounded ([`ACK_TIMEOUT`]), so a wedged server ends its row
//!   with an error instead of hanging the run. This is a benchmark: nothing here fails the
//!   process because a target is missed or unavailable.
//! - fsyncs/msg comes from [`Store::stats`] deltas over the timed part only.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use causeway_bench::corpus::{Generator, MessageKind};
use causeway_bench::{DEFAULT_SEED, ENV_SEED, env_u64};
use causeway_engine::config::Config;
use causeway_engine::monitor::Histogram;
use causeway_engine::net::client::{AckVerdict, check_ack};
use causeway_engine::runtime::{Engine, queue_name};
use causeway_store::{
    GROUP_TIME_BOUNDS_MS, GROUP_TIME_BUCKETS, SqliteOptions, SqliteStore, Store, WriteStats,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

// The allocator `causeway serve` runs with, so the engine in these rows is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages per timed closed-loop row by default: enough for a stable p99 (100 samples above
/// it) while the slowest row, one connection waiting out an fsync per message, stays near
/// 20 s on this disk.
const DEFAULT_MESSAGES: u64 = 10_000;
/// Messages sent before each row's timer starts: fills the page cache, the statement caches
/// and the WAL's first pages of a fresh store, and gets python's interpreter warm.
const DEFAULT_WARMUP: u64 = 300;
/// Rate of the paced row, from the issue's latency target (p99 at most 10 ms at 2,000 msg/s).
const DEFAULT_RATE: u64 = 2_000;
/// Length of the paced row: ten seconds at 2,000 msg/s is 20,000 latency samples.
const DEFAULT_PACED_SECONDS: u64 = 10;
/// Messages each connection keeps in flight in the pipelined rows: 8 connections x 8 gives
/// the store up to 64 messages to share one commit.
const DEFAULT_WINDOW: u64 = 8;
/// Connections of the multi-connection rows, as the issue asks.
const MANY_CONNECTIONS: usize = 8;

/// Longest wait for any one read or write of the peer. A healthy server answers in
/// milliseconds; 30 s matches what senders commonly allow before giving up on an ACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for python-hl7 to print that it is listening (interpreter start-up included).
const PYTHON_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the warm-up's deliveries to drain before a row starts, so that each row
/// starts with an empty queue when delivery runs concurrently.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The issue's targets.
const TARGET_MSGS_PER_SEC: f64 = 20_000.0;
const TARGET_P99: Duration = Duration::from_millis(10);

/// Delay between connecting and the first timed send, so every connection starts together.
const START_DELAY: Duration = Duration::from_millis(20);

/// MLLP frame bytes.
const VT: u8 = 0x0B;
const FS: u8 = 0x1C;
const CR: u8 = 0x0D;

const CHANNEL: &str = "bench";
const DESTINATION: &str = "downstream";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// The destination worker drains while the load runs.
    Concurrent,
    /// The responder withholds its first answer until the row ends.
    Held,
}

struct Settings {
    seed: u64,
    messages: usize,
    warmup: usize,
    rate: u64,
    paced_seconds: u64,
    window: usize,
    delivery: Delivery,
    python: Option<String>,
    dir: PathBuf,
    only: Option<Vec<String>>,
}

fn settings() -> Result<Settings, String> {
    let delivery = match std::env::var("CAUSEWAY_BENCH_MLLP_DELIVERY").as_deref() {
        Err(_) | Ok("concurrent") => Delivery::Concurrent,
        Ok("held") => Delivery::Held,
        Ok(other) => {
            return Err(format!(
                "CAUSEWAY_BENCH_MLLP_DELIVERY={other:?}: expected concurrent or held"
            ));
        }
    };
    let python = match std::env::var("CAUSEWAY_BENCH_PYTHON") {
        Err(_) => Some("python3".to_string()),
        Ok(v) if v.is_empty() || v == "0" || v == "off" => None,
        Ok(v) => Some(v),
    };
    let dir = std::env::var_os("CAUSEWAY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let only = std::env::var("CAUSEWAY_BENCH_MLLP_ONLY").ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    Ok(Settings {
        seed: env_u64(ENV_SEED, DEFAULT_SEED)?,
        messages: env_u64("CAUSEWAY_BENCH_MLLP_MESSAGES", DEFAULT_MESSAGES)?.max(1) as usize,
        warmup: env_u64("CAUSEWAY_BENCH_MLLP_WARMUP", DEFAULT_WARMUP)? as usize,
        rate: env_u64("CAUSEWAY_BENCH_MLLP_RATE", DEFAULT_RATE)?.max(1),
        paced_seconds: env_u64("CAUSEWAY_BENCH_MLLP_PACED_SECONDS", DEFAULT_PACED_SECONDS)?.max(1),
        window: env_u64("CAUSEWAY_BENCH_MLLP_WINDOW", DEFAULT_WINDOW)?.max(1) as usize,
        delivery,
        python,
        dir,
        only,
    })
}

/// Which messages a row sends.
#[derive(Clone, Copy)]
enum Mix {
    Adt,
    Oru,
    /// ADT^A01 and ORU^R01 alternating.
    Both,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Adt => "ADT^A01",
            Mix::Oru => "ORU^R01",
            Mix::Both => "ADT+ORU",
        }
    }

    fn kind(self, i: usize) -> MessageKind {
        match self {
            Mix::Adt => MessageKind::AdtA01,
            Mix::Oru => MessageKind::OruR01,
            Mix::Both if i.is_multiple_of(2) => MessageKind::AdtA01,
            Mix::Both => MessageKind::OruR01,
        }
    }
}

#[derive(Clone, Copy)]
enum Load {
    /// Each connection keeps `window` messages in flight.
    Closed { window: usize },
    /// Open loop: message `i` is sent at `start + i / rate`.
    Paced { rate: u64 },
}

struct Spec {
    id: String,
    mix: Mix,
    connections: usize,
    load: Load,
    messages: usize,
}

impl Spec {
    fn shape(&self) -> String {
        match self.load {
            Load::Closed { window: 1 } => format!("{} conn, closed", self.connections),
            Load::Closed { window } => format!("{} conn x {window} in flight", self.connections),
            Load::Paced { rate } => format!("{} conn, paced {rate}/s", self.connections),
        }
    }
}

fn specs(s: &Settings) -> Vec<Spec> {
    let closed = |id: &str, mix, connections, window| Spec {
        id: id.to_string(),
        mix,
        connections,
        load: Load::Closed { window },
        messages: s.messages,
    };
    let w = s.window;
    let mut all = vec![
        closed("adt-1", Mix::Adt, 1, 1),
        closed("adt-8", Mix::Adt, MANY_CONNECTIONS, 1),
        closed("oru-1", Mix::Oru, 1, 1),
        closed("oru-8", Mix::Oru, MANY_CONNECTIONS, 1),
        closed("adt-8-pipelined", Mix::Adt, MANY_CONNECTIONS, w),
        closed("oru-8-pipelined", Mix::Oru, MANY_CONNECTIONS, w),
        Spec {
            id: "paced".to_string(),
            mix: Mix::Both,
            connections: MANY_CONNECTIONS,
            load: Load::Paced { rate: s.rate },
            messages: (s.rate * s.paced_seconds) as usize,
        },
    ];
    if let Some(only) = &s.only {
        all.retain(|spec| only.contains(&spec.id));
    }
    all
}

/// One row's messages, framed, with the control id each ACK must answer.
struct Prepared {
    frames: Vec<Vec<u8>>,
    control_ids: Vec<String>,
    mean_len: usize,
}

fn prepare(seed: u64, mix: Mix, n: usize) -> Prepared {
    let mut generator = Generator::new(seed);
    let mut frames = Vec::with_capacity(n);
    let mut control_ids = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n {
        let payload = generator.message_of(mix.kind(i));
        bytes += payload.len();
        control_ids.push(msh_10(&payload));
        let mut frame = Vec::with_capacity(payload.len() + 3);
        frame.push(VT);
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&[FS, CR]);
        frames.push(frame);
    }
    Prepared {
        frames,
        control_ids,
        mean_len: bytes.checked_div(n).unwrap_or(0),
    }
}

/// MSH-10 of a generated message (the generator never escapes inside it).
fn msh_10(payload: &[u8]) -> String {
    let first = payload.split(|&b| b == CR).next().unwrap_or_default();
    let field = first.split(|&b| b == b'|').nth(9).unwrap_or_default();
    String::from_utf8_lossy(field).into_owned()
}

/// Takes the next complete frame's payload out of `buf`, dropping bytes before its start.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let start = memchr::memchr(VT, buf)?;
    let mut from = start + 1;
    loop {
        let fs = from + memchr::memchr(FS, &buf[from..])?;
        if fs + 1 >= buf.len() {
            return None;
        }
        if buf[fs + 1] == CR {
            let payload = buf[start + 1..fs].to_vec();
            buf.drain(..fs + 2);
            return Some(payload);
        }
        from = fs + 1;
    }
}

/// What one connection saw.
#[derive(Default)]
struct ConnOutcome {
    latencies: Vec<Duration>,
    /// How late each paced message left, against its schedule (the client's own lag).
    send_lag: Vec<Duration>,
    /// Paced only: time to ACK from the actual write rather than the schedule.
    from_write: Vec<Duration>,
    acked: u64,
    failed: u64,
    first_failure: Option<String>,
    last_ack: Option<Instant>,
}

impl ConnOutcome {
    fn judge(&mut self, control_id: &str, ack: &[u8], sent: Instant) -> Instant {
        let now = Instant::now();
        self.latencies.push(now.saturating_duration_since(sent));
        self.last_ack = Some(now);
        match check_ack(control_id, ack) {
            AckVerdict::Accepted => self.acked += 1,
            other => {
                self.failed += 1;
                self.first_failure
                    .get_or_insert_with(|| format!("ACK for {control_id}: {other:?}"));
            }
        }
        now
    }
}

async fn read_ack(
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, String> {
    loop {
        if let Some(frame) = take_frame(buf) {
            return Ok(frame);
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(ACK_TIMEOUT, stream.read(&mut chunk)).await {
            Err(_) => return Err(format!("no ACK within {ACK_TIMEOUT:?}")),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Ok(Ok(0)) => return Err("the server closed the connection".to_string()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn write_timed(
    stream: &mut (impl AsyncWriteExt + Unpin),
    frame: &[u8],
) -> Result<(), String> {
    match tokio::time::timeout(ACK_TIMEOUT, stream.write_all(frame)).await {
        Err(_) => Err(format!("write blocked for {ACK_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Ok(Ok(())) => Ok(()),
    }
}

/// Sends `items` (indices into `msgs`, in order) on one connection and reads their ACKs. A
/// paced message `i` is due at `start + (i - base) / rate`.
async fn run_connection(
    mut stream: TcpStream,
    msgs: Arc<Prepared>,
    items: Vec<usize>,
    base: usize,
    load: Load,
    start: Instant,
) -> Result<ConnOutcome, String> {
    let mut out = ConnOutcome {
        latencies: Vec::with_capacity(items.len()),
        ..ConnOutcome::default()
    };
    tokio::time::sleep_until(start).await;
    if let Load::Closed { window: 1 } = load {
        // The plain closed loop: no second task, no queue between writer and reader.
        let mut buf = Vec::with_capacity(4096);
        for i in items {
            let sent = Instant::now();
            write_timed(&mut stream, &msgs.frames[i]).await?;
            let ack = read_ack(&mut stream, &mut buf).await?;
            out.judge(&msgs.control_ids[i], &ack, sent);
        }
        return Ok(out);
    }
    let total = items.len();
    let (mut reader, mut writer) = stream.into_split();
    // (message, time its latency counts from, time it was actually written)
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant, Instant)>();
    let window = match load {
        Load::Closed { window } => Some(Arc::new(Semaphore::new(window))),
        Load::Paced { .. } => None,
    };
    let rate = match load {
        Load::Paced { rate } => Some(rate),
        Load::Closed { .. } => None,
    };
    let writer_msgs = msgs.clone();
    let writer_window = window.clone();
    let writer_task = tokio::spawn(async move {
        let mut lag = Vec::new();
        for i in items {
            let sent = match (rate, &writer_window) {
                (Some(rate), _) => {
                    let due = start + Duration::from_secs_f64((i - base) as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                    lag.push(Instant::now().saturating_duration_since(due));
                    due
                }
                (None, Some(window)) => {
                    match window.acquire().await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return Ok(lag),
                    }
                    Instant::now()
                }
                (None, None) => Instant::now(),
            };
            // Queued before the write, so the reader always knows what an ACK answers.
            if tx.send((i, sent, Instant::now())).is_err() {
                return Ok(lag);
            }
            write_timed(&mut writer, &writer_msgs.frames[i]).await?;
        }
        Ok::<_, String>(lag)
    });
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut pending: VecDeque<(usize, Instant, Instant)> = VecDeque::new();
    let mut result = Ok(());
    for _ in 0..total {
        let ack = match read_ack(&mut reader, &mut buf).await {
            Ok(ack) => ack,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        while let Ok(item) = rx.try_recv() {
            pending.push_back(item);
        }
        let Some((i, sent, written)) = pending.pop_front() else {
            result = Err("an ACK arrived for a message not sent yet".to_string());
            break;
        };
        let acked = out.judge(&msgs.control_ids[i], &ack, sent);
        if rate.is_some() {
            out.from_write
                .push(acked.saturating_duration_since(written));
        }
        if let Some(window) = &window {
            window.add_permits(1);
        }
    }
    if let Some(window) = &window {
        window.close();
    }
    drop(rx);
    match writer_task.await {
        Ok(Ok(lag)) => out.send_lag = lag,
        Ok(Err(e)) => result = result.and(Err(e)),
        Err(e) => result = result.and(Err(format!("writer task failed: {e}"))),
    }
    result.map(|()| out)
}

/// A load's combined outcome.
struct Measured {
    acked: u64,
    failed: u64,
    first_failure: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    send_lag: Vec<Duration>,
    from_write: Vec<Duration>,
    /// CPU used during the load by this process (client and, for Causeway, the engine) and,
    /// for python-hl7, by its server process too.
    cpu: Option<Duration>,
}

/// Runs `load` with `msgs[range]` over `connections` connections to `addr`.
async fn drive(
    addr: SocketAddr,
    msgs: &Arc<Prepared>,
    range: std::ops::Range<usize>,
    connections: usize,
    load: Load,
) -> Result<Measured, String> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = tokio::time::timeout(ACK_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
        streams.push(stream);
    }
    let base = range.start;
    let start = Instant::now() + START_DELAY;
    let mut tasks = Vec::with_capacity(connections);
    for (c, stream) in streams.into_iter().enumerate() {
        // Message i goes to connection i % connections, so in a paced load every connection's
        // schedule is in order and the connections share the rate evenly.
        let items: Vec<usize> = range
            .clone()
            .filter(|i| (i - base) % connections == c)
            .collect();
        let msgs = msgs.clone();
        tasks.push(tokio::spawn(async move {
            run_connection(stream, msgs, items, base, load, start).await
        }));
    }
    let mut measured = Measured {
        acked: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(range.len()),
        send_lag: Vec::new(),
        from_write: Vec::new(),
        cpu: None,
    };
    let mut last = start;
    let mut error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(out)) => {
                measured.acked += out.acked;
                measured.failed += out.failed;
                if measured.first_failure.is_none() {
                    measured.first_failure = out.first_failure;
                }
                measured.latencies.extend(out.latencies);
                measured.send_lag.extend(out.send_lag);
                measured.from_write.extend(out.from_write);
                if let Some(t) = out.last_ack {
                    last = last.max(t);
                }
            }
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(e) => error = error.or(Some(format!("connection task failed: {e}"))),
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    measured.elapsed = last.saturating_duration_since(start);
    measured.latencies.sort_unstable();
    measured.send_lag.sort_unstable();
    measured.from_write.sort_unstable();
    Ok(measured)
}

/// What the store did during a row's timed part.
struct StoreDelta {
    commits: u64,
    messages: u64,
    failed_commits: u64,
    /// Writer time running operations inside transactions (before COMMIT).
    work_time: Duration,
    /// Writer time in COMMIT, mostly the WAL fsync.
    commit_time: Duration,
    /// Transactions by time from BEGIN to the end of COMMIT ([`WriteStats::group_time`]).
    group_time: [u64; GROUP_TIME_BUCKETS],
    /// Messages the responder acknowledged to the destination during the timed part.
    delivered: u64,
    /// Deliveries still pending when the timed part ended.
    backlog: u64,
}

/// One row's result for one target.
enum Cell {
    Done(Measured, Option<Box<StoreDelta>>),
    Unavailable(String),
    Failed(String),
}

/// The in-process receiver the destination delivers to: answers AA with the MSH-10 it got.
struct Responder {
    addr: SocketAddr,
    acked: Arc<AtomicU64>,
    /// Messages that arrived without the transform's `MSH-5` value: must stay 0.
    untransformed: Arc<AtomicU64>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_responder(held: bool) -> std::io::Result<Responder> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acked = Arc::new(AtomicU64::new(0));
    let untransformed = Arc::new(AtomicU64::new(0));
    let (release, released) = watch::channel(!held);
    let (a, u) = (acked.clone(), untransformed.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (acked, untransformed) = (a.clone(), u.clone());
            let mut released = released.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = Vec::with_capacity(16 * 1024);
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    while let Some(frame) = take_frame(&mut buf) {
                        if released.wait_for(|r| *r).await.is_err() {
                            return;
                        }
                        let first = frame.split(|&b| b == CR).next().unwrap_or_default();
                        if first.split(|&b| b == b'|').nth(4) != Some(b"DOWNSTREAM".as_slice()) {
                            untransformed.fetch_add(1, Ordering::Relaxed);
                        }
                        let ack = format!(
                            "\x0bMSH|^~\\&|RESPONDER|BENCH|CAUSEWAY|HUB|20240101000000||ACK|R{}|P|2.5.1\rMSA|AA|{}\r\x1c\r",
                            acked.load(Ordering::Relaxed),
                            msh_10(&frame)
                        );
                        if stream.write_all(ack.as_bytes()).await.is_err() {
                            return;
                        }
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Ok(Responder {
        addr,
        acked,
        untransformed,
        release,
        task,
    })
}

fn engine_config(responder: SocketAddr, held: bool) -> String {
    // A held responder never answers during the row: give the worker room to wait for it.
    let ack_timeout = if held { "1h" } else { "30s" };
    format!(
        r#"[server]
data_dir = "data"

[[channel]]
name = "{CHANNEL}"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}

  [[channel.transform]]
  set = {{ path = "MSH-5", value = "DOWNSTREAM" }}

  [[channel.destination]]
  name = "{DESTINATION}"
  type = "mllp"
  connect = "{responder}"
  ack_timeout = "{ack_timeout}"
"#
    )
}

/// One Causeway row: fresh data directory, store and engine; warm-up; timed load.
async fn run_causeway(
    settings: &Settings,
    spec: &Spec,
    msgs: &Arc<Prepared>,
    responder_untransformed: &AtomicU64,
) -> Result<(Measured, StoreDelta), String> {
    let held = settings.delivery == Delivery::Held;
    let tmp = tempfile::Builder::new()
        .prefix("causeway-mllp-bench-")
        .tempdir_in(&settings.dir)
        .map_err(|e| {
            format!(
                "cannot create a data directory in {}: {e}",
                settings.dir.display()
            )
        })?;
    let responder = start_responder(held)
        .await
        .map_err(|e| format!("cannot start the responder: {e}"))?;
    let text = engine_config(responder.addr, held);
    let config = Config::from_str(&text, tmp.path()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("the bench's configuration is invalid: {}", lines.join("; "))
    })?;
    let options = SqliteOptions {
        max_batch: config.store.group_commit_max_messages,
        max_wait: config.store.group_commit_max_wait,
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&config.server.data_dir, options)
            .await
            .map_err(|e| format!("cannot open the store: {e}"))?,
    );
    let engine = Engine::start(&config, store.clone())
        .await
        .map_err(|e| format!("cannot start the engine: {e}"))?;
    let addr = engine
        .mllp_addr(CHANNEL)
        .ok_or("the engine has no MLLP listener")?;
    let queue = queue_name(CHANNEL, DESTINATION);

    let result = async {
        let range = settings.warmup..settings.warmup + spec.messages;
        if settings.warmup > 0 {
            let warm = 0..settings.warmup;
            let w = drive(
                addr,
                msgs,
                warm,
                spec.connections,
                Load::Closed { window: 1 },
            )
            .await?;
            if w.failed > 0 {
                return Err(format!("warm-up: {}", w.first_failure.unwrap_or_default()));
            }
        }
        if !held {
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            while store.queue_depth(&queue).await.map_err(|e| e.to_string())? > 0
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let before: WriteStats = store.stats();
        let delivered_before = responder.acked.load(Ordering::Relaxed);
        let cpu_before = cpu_time("self");
        let mut measured = drive(addr, msgs, range, spec.connections, spec.load).await?;
        measured.cpu = cpu_time("self")
            .zip(cpu_before)
            .map(|(a, b)| a.saturating_sub(b));
        let after: WriteStats = store.stats();
        let delivered = responder.acked.load(Ordering::Relaxed) - delivered_before;
        let backlog = store.queue_depth(&queue).await.map_err(|e| e.to_string())?;
        Ok((
            measured,
            StoreDelta {
                commits: after.commits - before.commits,
                messages: after.messages - before.messages,
                failed_commits: after.failed_commits - before.failed_commits,
                work_time: after.work_time.saturating_sub(before.work_time),
                commit_time: after.commit_time.saturating_sub(before.commit_time),
                group_time: std::array::from_fn(|i| {
                    after.group_time[i].saturating_sub(before.group_time[i])
                }),
                delivered,
                backlog,
            },
        ))
    }
    .await;

    // Let a held worker finish its one attempt, so shutdown does not wait out its timeout.
    let _ = responder.release.send(true);
    engine.shutdown().await;
    responder_untransformed.fetch_add(
        responder.untransformed.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    responder.task.abort();
    result
}

/// python-hl7's server, started once for every python row.
struct Python {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    version: String,
    /// The last line the server wrote to stderr (why it dropped a connection).
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl Python {
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        // Closing stdin asks the script to stop; kill it if it has not.
        drop(self.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_python(program: &str) -> Result<Python, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/hl7_mllp_server.py");
    let mut child = Command::new(program)
        .arg(&script)
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(PYTHON_START_TIMEOUT).unwrap_or_default();
    let mut python = Python {
        child,
        stdin,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        version: String::new(),
        last_error: Arc::new(std::sync::Mutex::new(None)),
    };
    let mut words = line.split_whitespace();
    if words.next() == Some("ready")
        && let Some(port) = words.next().and_then(|p| p.parse::<u16>().ok())
    {
        python.addr.set_port(port);
        python.version = words.collect::<Vec<_>>().join(" ");
        let last = python.last_error.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = last.lock() {
                    *l = Some(line);
                }
            }
        });
        return Ok(python);
    }
    // Not ready: say why, from what it wrote to stderr.
    let _ = python.child.kill();
    let mut reason = String::new();
    for l in BufReader::new(stderr).lines().map_while(Result::ok) {
        if !l.trim().is_empty() {
            reason = l.trim().to_string();
        }
    }
    if reason.is_empty() {
        reason = format!("{} did not report ready", script.display());
    }
    Err(reason.trim_start_matches("unavailable: ").to_string())
}

/// Appends 4 KiB and fsyncs it, for about a second, in `dir`: the disk's own ceiling on
/// commits per second there, and the mean time of one fsync.
fn probe_fsync(dir: &Path) -> std::io::Result<(f64, Duration)> {
    let path = dir.join(format!("causeway-mllp-fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let started = std::time::Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(1) {
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((f64::from(n) / elapsed.as_secs_f64(), elapsed / n.max(1)))
}

/// The file system `path` lives on, from /proc/mounts: (type, device, mount point).
fn file_system_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at)
                .then(|| (kind.to_string(), dev.to_string(), at.to_string()))
        })
        .max_by_key(|(_, _, at)| at.len())
}

/// CPU time (user + system) used so far by process `pid` ("self" for this one), from
/// /proc/PID/stat in clock ticks of 10 ms (USER_HZ is 100 on Linux): coarse, but rows last
/// seconds. `None` where /proc is missing.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The 1, 5 and 15 minute load averages, to show whether other work shared the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1e3;
    if m < 10.0 {
        format!("{m:.2}")
    } else if m < 100.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.0}")
    }
}

fn rate(m: &Measured) -> f64 {
    m.acked as f64 / m.elapsed.as_secs_f64().max(1e-9)
}

/// Renders rows of cells as an aligned text table (first column left, others right).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if i <= 1 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.push('\n');
    };
    line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        &mut out,
    );
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for row in rows {
        line(row, &mut out);
    }
    out
}

fn main() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mllp bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mllp bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(settings));
    ExitCode::SUCCESS
}

async fn run(settings: Settings) {
    let specs = specs(&settings);
    println!("MLLP benchmark: Causeway (persisted, FIFO) vs python-hl7 (no persistence), loopback");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores; client, engine and python-hl7 share them; load average at start: {}",
        load_average()
    );
    if let Err(e) = std::fs::create_dir_all(&settings.dir) {
        println!("cannot create {}: {e}", settings.dir.display());
        return;
    }
    match file_system_of(&settings.dir) {
        Some((kind, dev, at)) => {
            let warn = if kind == "tmpfs" || kind == "ramfs" {
                "  WARNING: memory file system, fsync is free here; set CAUSEWAY_BENCH_DIR to a disk"
            } else {
                ""
            };
            println!(
                "data dirs under {} ({kind} on {dev}, mounted at {at}){warn}",
                settings.dir.display()
            )
        }
        None => println!("data dirs under {}", settings.dir.display()),
    }
    match probe_fsync(&settings.dir) {
        Ok((per_sec, each)) => println!(
            "disk: {per_sec:.0} fsync/s there (4 KiB append + fdatasync, {} ms each): the ceiling on commits/s",
            ms(each)
        ),
        Err(e) => println!("disk probe failed: {e}"),
    }
    let d = SqliteOptions::default();
    println!(
        "store: SQLite WAL, synchronous=FULL, group commit up to {} messages, max wait {:?} (shipped defaults)",
        d.max_batch, d.max_wait
    );
    println!(
        "channel: 1 MLLP source, 1 transform (set MSH-5), 1 MLLP destination (FIFO queue) to an in-process AA responder; delivery {}",
        match settings.delivery {
            Delivery::Concurrent =>
                "drains concurrently (its claim/complete writes share the commits)",
            Delivery::Held => "held (queue entries written, worker parked: inbound path alone)",
        }
    );
    println!(
        "messages: seed {:#x}, {} per closed row after {} warm-up; paced row {} msg/s for {} s; window {}",
        settings.seed,
        settings.messages,
        settings.warmup,
        settings.rate,
        settings.paced_seconds,
        settings.window
    );

    let mut python = match &settings.python {
        None => Err("skipped (CAUSEWAY_BENCH_PYTHON=0)".to_string()),
        Some(program) => start_python(program),
    };
    match &python {
        Ok(p) => println!("reference: {} on {}", p.version, p.addr),
        Err(e) => println!("reference: python-hl7 unavailable: {e}"),
    }
    println!();

    let untransformed = AtomicU64::new(0);
    let mut results: Vec<(&Spec, usize, Cell, Cell)> = Vec::new();
    for spec in &specs {
        let (warm_total, seed) = (settings.warmup + spec.messages, settings.seed);
        let msgs = Arc::new(prepare(seed, spec.mix, warm_total));
        print!("{:<16} {:<22} causeway ... ", spec.id, spec.shape());
        let _ = std::io::stdout().flush();
        let ours = match run_causeway(&settings, spec, &msgs, &untransformed).await {
            Ok((m, s)) => {
                print!("{:.0} msg/s", rate(&m));
                Cell::Done(m, Some(Box::new(s)))
            }
            Err(e) => {
                print!("failed");
                Cell::Failed(e)
            }
        };
        print!("; python-hl7 ... ");
        let _ = std::io::stdout().flush();
        let theirs = match &mut python {
            Err(e) => Cell::Unavailable(e.clone()),
            Ok(p) => {
                if p.child.try_wait().ok().flatten().is_some() {
                    python = Err("the python-hl7 server exited".to_string());
                    Cell::Unavailable("the python-hl7 server exited".to_string())
                } else {
                    let addr = p.addr;
                    let warm = async {
                        if settings.warmup > 0 {
                            let w = 0..settings.warmup;
                            let w =
                                drive(addr, &msgs, w, spec.connections, Load::Closed { window: 1 })
                                    .await?;
                            if w.failed > 0 {
                                return Err(format!(
                                    "warm-up: {}",
                                    w.first_failure.unwrap_or_default()
                                ));
                            }
                        }
                        let range = settings.warmup..settings.warmup + spec.messages;
                        let pid = p.child.id().to_string();
                        let before = cpu_time("self").zip(cpu_time(&pid));
                        let mut m = drive(addr, &msgs, range, spec.connections, spec.load).await?;
                        let after = cpu_time("self").zip(cpu_time(&pid));
                        m.cpu = after
                            .zip(before)
                            .map(|((a1, a2), (b1, b2))| (a1 + a2).saturating_sub(b1 + b2));
                        Ok(m)
                    };
                    match warm.await {
                        Ok(m) => Cell::Done(m, None),
                        Err(e) => match p.last_error() {
                            Some(said) => Cell::Failed(format!("{e} (python-hl7: {said})")),
                            None => Cell::Failed(e),
                        },
                    }
                }
            }
        };
        match &theirs {
            Cell::Done(m, _) => println!("{:.0} msg/s", rate(m)),
            Cell::Unavailable(_) => println!("unavailable"),
            Cell::Failed(_) => println!("failed"),
        }
        results.push((spec, msgs.mean_len, ours, theirs));
    }
    drop(python);
    println!("load average at the end: {}", load_average());

    print_report(&settings, &results, untransformed.load(Ordering::Relaxed));
}

fn print_report(settings: &Settings, results: &[(&Spec, usize, Cell, Cell)], untransformed: u64) {
    let header = [
        "row",
        "target",
        "load",
        "msgs",
        "ACKed msg/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU µs/msg",
        "fsyncs/msg",
        "msgs/fsync",
        "delivered",
        "delivered msg/s",
        "backlog",
    ];
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (spec, mean_len, ours, theirs) in results {
        for (name, cell) in [("causeway", ours), ("python-hl7", theirs)] {
            let id = format!("{} {} (~{} B)", spec.id, spec.mix.label(), mean_len);
            let mut row = vec![id, name.to_string(), spec.shape()];
            match cell {
                Cell::Done(m, store) => {
                    row.push(m.acked.to_string());
                    row.push(format!("{:.0}", rate(m)));
                    row.push(ms(percentile(&m.latencies, 0.50)));
                    row.push(ms(percentile(&m.latencies, 0.99)));
                    row.push(ms(m.latencies.last().copied().unwrap_or_default()));
                    row.push(match m.cpu {
                        Some(cpu) => format!(
                            "{:.0}",
                            cpu.as_secs_f64() * 1e6 / (m.acked + m.failed).max(1) as f64
                        ),
                        None => "-".to_string(),
                    });
                    match store {
                        Some(s) => {
                            let per = s.commits as f64 / s.messages.max(1) as f64;
                            row.push(format!("{per:.3}"));
                            row.push(format!("{:.1}", 1.0 / per.max(f64::MIN_POSITIVE)));
                            row.push(s.delivered.to_string());
                            row.push(format!(
                                "{:.0}",
                                s.delivered as f64 / m.elapsed.as_secs_f64().max(1e-9)
                            ));
                            row.push(s.backlog.to_string());
                            if s.failed_commits > 0 {
                                notes.push(format!(
                                    "{} causeway: {} failed commits",
                                    spec.id, s.failed_commits
                                ));
                            }
                            if s.messages != m.acked + m.failed {
                                notes.push(format!(
                                    "{} causeway: the store counted {} messages for {} sent",
                                    spec.id,
                                    s.messages,
                                    m.acked + m.failed
                                ));
                            }
                        }
                        None => row
                            .extend(["none (not persisted)", "-", "-", "-", "-"].map(String::from)),
                    }
                    if m.failed > 0 {
                        notes.push(format!(
                            "{} {name}: {} ACKs not accepted; first: {}",
                            spec.id,
                            m.failed,
                            m.first_failure.as_deref().unwrap_or("?")
                        ));
                    }
                    if !m.send_lag.is_empty() {
                        notes.push(format!(
                            "{} {name}: the client wrote p50 {} ms, p99 {} ms behind schedule (tokio timers tick in 1 ms; \
                             counted in the latencies above); from the actual write: p50 {} ms, p99 {} ms",
                            spec.id,
                            ms(percentile(&m.send_lag, 0.50)),
                            ms(percentile(&m.send_lag, 0.99)),
                            ms(percentile(&m.from_write, 0.50)),
                            ms(percentile(&m.from_write, 0.99)),
                        ));
                    }
                }
                Cell::Unavailable(reason) => row.push(format!("unavailable: {reason}")),
                Cell::Failed(reason) => row.push(format!("FAILED: {reason}")),
            }
            rows.push(row);
        }
    }
    println!();
    print!("{}", table(&header, &rows));
    println!(
        "time to ACK: from the client's write (closed loop) or the scheduled send time (paced) to the whole ACK read; \
         CPU µs/msg: CPU time of the bench process (client and engine; for python-hl7, client plus the python server) per message; \
         fsyncs/msg: store commits (each one WAL fsync) / messages stored, timed part only; \
         delivered/backlog: messages the destination delivered during the row (and per second of it) / still queued at its end"
    );
    for n in &notes {
        println!("note: {n}");
    }
    if untransformed > 0 {
        println!("note: {untransformed} delivered messages lacked the transform's MSH-5 value");
    }

    // Where the store's time went: what bounds msgs/fsync and so msg/s.
    println!();
    let mut store_rows = Vec::new();
    for (spec, _, ours, _) in results {
        if let Cell::Done(m, Some(s)) = ours {
            let commits = s.commits.max(1) as f64;
            let elapsed = m.elapsed.as_secs_f64().max(1e-9);
            store_rows.push(vec![
                spec.id.clone(),
                spec.shape(),
                s.commits.to_string(),
                format!("{:.0}", s.commits as f64 / elapsed),
                format!("{:.2}", s.commit_time.as_secs_f64() * 1e3 / commits),
                format!("{:.2}", s.work_time.as_secs_f64() * 1e3 / commits),
                format!(
                    "{:.0}%",
                    100.0 * (s.commit_time + s.work_time).as_secs_f64() / elapsed
                ),
                Histogram::store_transactions(&s.group_time, s.commit_time + s.work_time)
                    .quantile(0.99)
                    .map_or("-".into(), |ms| format!("{ms:.2}")),
                // Buckets whose lower bound is 10 ms or more.
                s.group_time
                    .iter()
                    .zip(std::iter::once(0.0).chain(GROUP_TIME_BOUNDS_MS))
                    .filter(|(_, lower)| *lower >= 10.0)
                    .map(|(n, _)| n)
                    .sum::<u64>()
                    .to_string(),
            ]);
        }
    }
    if !store_rows.is_empty() {
        println!(
            "causeway store, timed part: commits (fsyncs), their rate, mean COMMIT (fsync) and in-transaction work per commit, writer busy, \
             the 99th percentile of whole transactions (BEGIN to the end of COMMIT, interpolated in its bucket as Prometheus does) and how many took over 10 ms"
        );
        print!(
            "{}",
            table(
                &[
                    "row",
                    "load",
                    "commits",
                    "commits/s",
                    "fsync ms",
                    "work ms",
                    "writer busy",
                    "txn p99 ms",
                    "txns > 10 ms"
                ],
                &store_rows
            )
        );
    }

    // Ratios: ours / python-hl7, row by row.
    println!();
    let mut ratio_rows = Vec::new();
    for (spec, _, ours, theirs) in results {
        let mut row = vec![spec.id.clone(), spec.shape()];
        match (ours, theirs) {
            (Cell::Done(a, _), Cell::Done(b, _)) => {
                row.push(format!("{:.2}", rate(a) / rate(b).max(1e-9)));
                let p = |m: &Measured, q| percentile(&m.latencies, q).as_secs_f64();
                row.push(format!("{:.2}", p(a, 0.50) / p(b, 0.50).max(1e-12)));
                row.push(format!("{:.2}", p(a, 0.99) / p(b, 0.99).max(1e-12)));
            }
            _ => row.extend(["-", "-", "-"].map(String::from)),
        }
        ratio_rows.push(row);
    }
    println!(
        "ratios, causeway / python-hl7 (throughput: higher is better; latency: lower is better)"
    );
    print!(
        "{}",
        table(
            &["row", "load", "msg/s ratio", "p50 ratio", "p99 ratio"],
            &ratio_rows
        )
    );

    // The issue's targets.
    println!();
    let find = |id: &str| results.iter().find(|(s, ..)| s.id == id);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let peer_best = results
        .iter()
        .filter_map(|(_, _, _, t)| match t {
            Cell::Done(m, _) => Some(rate(m)),
            _ => None,
        })
        .fold(0.0f64, f64::max);
    for id in ["adt-8", "oru-8"] {
        if let Some((_, _, Cell::Done(m, s), _)) = find(id) {
            let r = rate(m);
            let per = s
                .as_ref()
                .map(|s| s.commits as f64 / s.messages.max(1) as f64)
                .unwrap_or(0.0);
            println!(
                "target: >= {TARGET_MSGS_PER_SEC:.0} persisted ACKed msg/s, 8 connections ({id}): {r:.0} msg/s, {per:.3} fsyncs/msg -> {}",
                verdict(r >= TARGET_MSGS_PER_SEC)
            );
        }
    }
    for id in ["adt-8-pipelined", "oru-8-pipelined"] {
        if let Some((spec, _, Cell::Done(m, _), _)) = find(id) {
            println!(
                "  for reference, {} ({}): {:.0} msg/s",
                id,
                spec.shape(),
                rate(m)
            );
        }
    }
    if peer_best > 0.0 {
        println!(
            "  fastest unpersisted peer row measured in this run: {peer_best:.0} msg/s (python-hl7)"
        );
    }
    if let Some((spec, _, Cell::Done(m, _), _)) = find("paced") {
        let p99 = percentile(&m.latencies, 0.99);
        let achieved = rate(m);
        println!(
            "target: p99 time to ACK <= {} ms at {} msg/s ({}; {achieved:.0} msg/s achieved): p99 {} ms -> {}",
            TARGET_P99.as_millis(),
            settings.rate,
            spec.shape(),
            ms(p99),
            verdict(p99 <= TARGET_P99 && m.failed == 0)
        );
    }
    println!(
        "settings: CAUSEWAY_BENCH_MLLP_MESSAGES, _WARMUP, _RATE, _PACED_SECONDS, _WINDOW, _DELIVERY, _ONLY; \
         CAUSEWAY_BENCH_PYTHON, CAUSEWAY_BENCH_DIR, CAUSEWAY_BENCH_SEED (see benches/README.md)"
    );
}
