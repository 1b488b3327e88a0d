//! Shared parts of the system tests: the real `causeway` binary started as `serve` and
//! `listen` (guards that kill it on every path), a small MLLP client of our own over std
//! sockets, ACK reading, and reading back what the store and a listener's `--out` file hold.
//!
//! Map:
//! - [`Server`]: `causeway serve --config FILE`, JSON logs on stderr; ready once it logged
//!   `causeway serving`, with each channel's bound address taken from its `MLLP listening` line
//!   (so configs can use port 0 and nothing waits on a timer).
//! - [`Listener`]: `causeway listen`, its `listening on ADDR` line, and the control ids it
//!   reports on stdout, waited on with a condition variable.
//! - [`Mllp`]: one MLLP connection (plain or TLS), one message in flight at a time.
//! - [`Ack`]: MSA-1, MSA-2, ERR-3.1 and the error text of an acknowledgement.
//! - [`stored`], [`out_records`]: what a data dir's store and an `--out` file hold.
//!
//! Invariants: every process a test starts is owned by a guard whose `Drop` kills and reaps it;
//! ports come from the kernel (port 0), never from a fixed list; nothing here asserts on speed.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use causeway_store::{
    DeliveryState, MessageId, MessageState, SearchFilter, SqliteOptions, SqliteStore, Store,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// MLLP start block.
pub const VT: u8 = 0x0b;
/// MLLP end block.
pub const FS: u8 = 0x1c;
/// Segment terminator, and the byte after the end block.
pub const CR: u8 = 0x0d;

/// Longest a process gets to print its ready line before the test gives up on it.
///
/// 60 s: start-up is a config parse, a store open and a bind (milliseconds), but the machine
/// may be busy compiling or running other tests; this only turns a hang into a failure.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// Longest a stopped process gets to exit after SIGTERM before it is killed and the test fails.
///
/// 60 s: above the engine's own 30 s shutdown grace for connections, so a clean but slow
/// shutdown still passes; a hang fails.
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1, as the kernel hands it out. Used only where a port must be
/// known before the process that binds it starts (a destination that is down at first, a
/// server restarted on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM (the signal an init system sends) to a process.
pub fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// Resident set size of a process in bytes, from /proc/PID/status (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable VmRSS line {line:?}"));
    kib * 1024
}

/// Waits for a child to exit, killing it after `limit`. Returns the status and whether it
/// had to be killed.
pub fn wait_limited(child: &mut Child, limit: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a process printed on one stream, collected by a thread, with a signal for lines the
/// owner waits for.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    ended: bool,
}

type SharedLog = Arc<(Mutex<Log>, Condvar)>;

fn collect_lines(from: impl Read + Send + 'static, log: SharedLog) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let reader = BufReader::new(from);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).into_owned();
            let (lock, cv) = &*log;
            lock.lock().unwrap().lines.push(text);
            cv.notify_all();
        }
        let (lock, cv) = &*log;
        lock.lock().unwrap().ended = true;
        cv.notify_all();
    })
}

/// A JSON log line's `fields` object, when the line is one.
fn json_fields(line: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("fields")?.as_object().cloned()
}

/// `causeway serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    stderr: SharedLog,
    reader: Option<JoinHandle<()>>,
    /// Bound MLLP address of each channel, from the start-up log.
    pub addrs: HashMap<String, SocketAddr>,
    /// Bound HTTP address, from the start-up log, when `[server] http` is set.
    pub http: Option<SocketAddr>,
    /// The first administrator's password, when this start created it.
    pub admin_password: Option<String>,
    pub started: Instant,
}

/// A `causeway serve` that exited before it was ready.
#[derive(Debug)]
pub struct StartFailed {
    pub status: ExitStatus,
    pub stderr: String,
}

impl Server {
    /// Starts `causeway serve --config CONFIG` and waits for its ready line. Panics when it
    /// does not start; see [`Server::try_start`] to handle that.
    pub fn start(config: &Path) -> Server {
        Server::try_start(config).unwrap_or_else(|e| {
            panic!(
                "causeway serve exited before it was ready ({}):\n{}",
                e.status, e.stderr
            )
        })
    }

    /// Starts the server; `Err` when it exited before logging that it serves (for example
    /// because its port is still taken).
    pub fn try_start(config: &Path) -> Result<Server, StartFailed> {
        Server::try_start_with(config, &[])
    }

    /// [`Server::try_start`] with extra environment variables.
    pub fn try_start_with(config: &Path, env: &[(&str, &str)]) -> Result<Server, StartFailed> {
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            // Info level: the ready and address lines are info; no payloads are logged.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start causeway serve");
        let stderr: SharedLog = Arc::default();
        let reader = collect_lines(child.stderr.take().unwrap(), stderr.clone());
        let mut server = Server {
            child: Some(child),
            stderr,
            reader: Some(reader),
            addrs: HashMap::new(),
            http: None,
            admin_password: None,
            started,
        };
        let deadline = started + START_LIMIT;
        let (lock, cv) = &*server.stderr.clone();
        let mut log = lock.lock().unwrap();
        let mut seen = 0;
        loop {
            while seen < log.lines.len() {
                if let Some(p) = log.lines[seen].split("user \"admin\", password ").nth(1) {
                    server.admin_password = Some(p.trim().to_string());
                }
                if let Some(fields) = json_fields(&log.lines[seen]) {
                    let message = fields.get("message").and_then(|m| m.as_str());
                    if message == Some("MLLP listening") {
                        let channel = fields["channel"].as_str().unwrap().to_string();
                        let addr = fields["addr"].as_str().unwrap().parse().unwrap();
                        server.addrs.insert(channel, addr);
                    }
                    if message == Some("HTTP listening") {
                        server.http = fields["addr"].as_str().and_then(|a| a.parse().ok());
                    }
                    if message == Some("causeway serving") {
                        drop(log);
                        return Ok(server);
                    }
                }
                seen += 1;
            }
            if log.ended {
                let stderr = log.lines.join("\n");
                drop(log);
                let status = server.child.as_mut().unwrap().wait().unwrap();
                server.child = None;
                return Err(StartFailed { status, stderr });
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "causeway serve printed no ready line within {START_LIMIT:?}:\n{}",
                log.lines.join("\n")
            );
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Waits until the server has logged its `nth` ready line (1: the start, 2: after the
    /// first reload...) and takes the addresses logged before it, as [`Server::start`] does.
    /// Panics after [`START_LIMIT`] or when the server exits first.
    pub fn wait_ready(&mut self, nth: usize) {
        let deadline = Instant::now() + START_LIMIT;
        let (lock, cv) = &*self.stderr.clone();
        let mut log = lock.lock().unwrap();
        loop {
            let mut seen = 0;
            let mut addrs = HashMap::new();
            let mut http = None;
            for line in &log.lines {
                let Some(fields) = json_fields(line) else {
                    continue;
                };
                match fields.get("message").and_then(|m| m.as_str()) {
                    Some("MLLP listening") => {
                        let channel = fields["channel"].as_str().unwrap().to_string();
                        addrs.insert(channel, fields["addr"].as_str().unwrap().parse().unwrap());
                    }
                    Some("HTTP listening") => {
                        http = fields["addr"].as_str().and_then(|a| a.parse().ok());
                    }
                    Some("causeway serving") => {
                        seen += 1;
                        if seen == nth {
                            self.addrs = addrs;
                            self.http = http;
                            return;
                        }
                        addrs = HashMap::new();
                    }
                    _ => {}
                }
            }
            assert!(
                !log.ended,
                "causeway serve exited:\n{}",
                log.lines.join("\n")
            );
            let now = Instant::now();
            assert!(
                now < deadline,
                "no ready line #{nth}:\n{}",
                log.lines.join("\n")
            );
            log = cv.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// The bound address of a channel's MLLP listener.
    pub fn addr(&self, channel: &str) -> SocketAddr {
        *self
            .addrs
            .get(channel)
            .unwrap_or_else(|| panic!("channel {channel} logged no MLLP address"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.stderr.0.lock().unwrap().lines.join("\n")
    }

    /// SIGKILL: no shutdown path runs, as in a power cut of the process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status and the whole log. Fails the test when it does not exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("server not running");
        terminate(child.id());
        let (status, killed) = wait_limited(&mut child, STOP_LIMIT);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log();
        assert!(
            !killed,
            "causeway serve did not exit within {STOP_LIMIT:?} of SIGTERM:\n{log}"
        );
        (status, log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a `causeway listen` reported on stdout: one line per message.
#[derive(Default)]
struct Seen {
    lines: u64,
    unique: HashSet<String>,
    ended: bool,
}

/// `causeway listen --port P --out FILE`, killed when dropped.
pub struct Listener {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub out: PathBuf,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stderr: Option<JoinHandle<String>>,
}

impl Listener {
    /// Starts a listener on `port` (0 for any) that keeps every answered message in `out`.
    pub fn start(port: u16, out: &Path) -> Listener {
        Listener::start_with(port, out, &[])
    }

    /// [`Listener::start`] with more `causeway listen` arguments (`--ack AR`).
    pub fn start_with(port: u16, out: &Path, args: &[&str]) -> Listener {
        let mut child = Command::new(BIN)
            .arg("listen")
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start causeway listen");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let Some(addr) = line.strip_prefix("listening on ") else {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            let _ = child.kill();
            let _ = child.wait();
            panic!("causeway listen did not start: {line}{rest}");
        };
        let addr = addr.split_whitespace().next().unwrap().parse().unwrap();
        let seen: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let shared = seen.clone();
        std::thread::spawn(move || {
            // `<n> <MSH-10> <MSH-9> <size> bytes -> <answer>`
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let id = line.split(' ').nth(1).unwrap_or_default().to_string();
                let (lock, cv) = &*shared;
                let mut s = lock.lock().unwrap();
                s.lines += 1;
                s.unique.insert(id);
                cv.notify_all();
            }
            let (lock, cv) = &*shared;
            lock.lock().unwrap().ended = true;
            cv.notify_all();
        });
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            rest
        });
        Listener {
            child: Some(child),
            addr,
            out: out.to_path_buf(),
            seen,
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits until the listener has received every one of `ids` at least once. Returns
    /// false when `limit` passed first (the caller fails with its own figures).
    pub fn wait_for_all(&self, ids: &HashSet<String>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (lock, cv) = &*self.seen;
        let mut s = lock.lock().unwrap();
        loop {
            if ids.iter().all(|id| s.unique.contains(id)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || s.ended {
                return false;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Messages received so far (copies included) and distinct control ids.
    pub fn received(&self) -> (u64, usize) {
        let s = self.seen.0.lock().unwrap();
        (s.lines, s.unique.len())
    }

    /// SIGTERM; returns its summary line. Fails the test when it does not exit cleanly.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        terminate(child.id());
        let (status, killed) = wait_limited(&mut child, STOP_LIMIT);
        assert!(!killed, "causeway listen did not exit after SIGTERM");
        assert!(status.success(), "causeway listen exited with {status}");
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One MLLP connection with one message in flight at a time.
pub struct Mllp<S: Read + Write> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Mllp<TcpStream> {
    /// Connects with an ACK wait of `timeout` (a hang guard, not a speed check).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Mllp::new(stream))
    }
}

impl<S: Read + Write> Mllp<S> {
    pub fn new(stream: S) -> Self {
        Mllp {
            stream,
            buf: Vec::new(),
        }
    }

    /// Frames and writes one payload.
    pub fn write_message(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 3);
        frame.push(VT);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(&[FS, CR]);
        self.stream.write_all(&frame)?;
        self.stream.flush()
    }

    /// Reads one framed reply; `UnexpectedEof` when the peer closed first.
    pub fn read_reply(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == [FS, CR]) {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let start = frame.iter().position(|&b| b == VT).map_or(0, |i| i + 1);
                return Ok(frame[start..end].to_vec());
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete reply",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one message and reads its reply.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        self.write_message(payload)?;
        self.read_reply()
    }

    /// Whether the peer has closed: a read returns end of stream or an error (a reset counts).
    /// Blocks up to the stream's read timeout; a timeout counts as still open.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// The parts of an acknowledgement the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// MSA-1: AA, AE, AR (or CA, CE, CR).
    pub code: String,
    /// MSA-2: the control id acknowledged.
    pub control_id: String,
    /// ERR-3.1 of the first ERR segment (HL7 table 0357).
    pub err3: Option<String>,
    /// ERR-8 of the first ERR segment, else MSA-3.
    pub text: String,
}

impl Ack {
    /// Reads an ACK with its own separators (MSH-1 and MSH-2). Panics on anything that is
    /// not an ACK, which fails the test with the bytes shown.
    pub fn parse(bytes: &[u8]) -> Ack {
        let text = String::from_utf8_lossy(bytes);
        let fail = || -> ! { panic!("not an acknowledgement: {text:?}") };
        if !text.starts_with("MSH") || text.len() < 8 {
            fail();
        }
        let field_sep = text.as_bytes()[3] as char;
        let component = text.as_bytes()[4] as char;
        let segments: Vec<&str> = text.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
        let fields_of = |id: &str| -> Option<Vec<&str>> {
            segments
                .iter()
                .find(|s| s.starts_with(id) && s[3..].starts_with(field_sep))
                .map(|s| s.split(field_sep).collect())
        };
        let msa = fields_of("MSA").unwrap_or_else(|| fail());
        let err = fields_of("ERR");
        let field = |f: &Option<Vec<&str>>, n: usize| -> String {
            f.as_ref()
                .and_then(|v| v.get(n))
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        let msa = Some(msa);
        let err3 = err
            .as_ref()
            .and_then(|e| e.get(3))
            .map(|v| v.split(component).next().unwrap_or_default().to_string())
            .filter(|v| !v.is_empty());
        let mut detail = field(&err, 8);
        if detail.is_empty() {
            detail = field(&msa, 3);
        }
        Ack {
            code: field(&msa, 1),
            control_id: field(&msa, 2),
            err3,
            text: detail,
        }
    }
}

/// A small ADT^A01 with the given control id and processing id; `filler` pads an NTE
/// segment to make the message bigger. Test data only: no real patient.
pub fn adt(control_id: &str, processing_id: &str, filler: usize) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|CWTEST|LOAD|CAUSEWAY|TEST|20240101120000||ADT^A01^ADT_A01|{control_id}|{processing_id}|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||{control_id}^^^TESTHOSP^MR||TEST^PATIENT||19800101|U\r\
         PV1|1|I|WARD^1^1\r"
    );
    if filler > 0 {
        m.push_str("NTE|1||");
        // Printable, no delimiters: survives every hop unchanged.
        m.extend(std::iter::repeat_n('x', filler));
        m.push('\r');
    }
    m.into_bytes()
}

/// MSH-10 of an ER7 message (read with its own field separator).
pub fn control_id_of(message: &[u8]) -> String {
    let sep = *message.get(3).unwrap_or(&b'|');
    let first = message
        .split(|&b| b == CR || b == b'\n')
        .next()
        .unwrap_or_default();
    first
        .split(|&b| b == sep)
        .nth(9)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_default()
}

/// The records of a `causeway listen --out` file: one payload per LF, in the order received.
pub fn out_records(path: &Path) -> Vec<Vec<u8>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "{} ends inside a record",
        path.display()
    );
    data.split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// One stored message as the tests see it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub id: MessageId,
    pub control_id: String,
    pub state: MessageState,
    /// (destination, FIFO position, state) of each delivery.
    pub deliveries: Vec<(String, i64, DeliveryState)>,
}

/// Every message of `channel` in the store of `data_dir` (the server must be stopped), oldest
/// first, with their deliveries.
pub fn stored(data_dir: &Path, channel: &str) -> Vec<StoredRow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(data_dir, SqliteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot open the store in {}: {e}", data_dir.display()));
        let mut summaries = Vec::new();
        loop {
            let page = store
                .search(SearchFilter {
                    channel: Some(channel.to_string()),
                    limit: causeway_store::MAX_PAGE_LEN,
                    offset: summaries.len() as u64,
                    ..SearchFilter::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            summaries.extend(page);
        }
        summaries.sort_by_key(|s| s.id);
        let mut rows = Vec::with_capacity(summaries.len());
        for s in summaries {
            let deliveries = store
                .deliveries(s.id)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.destination, d.seq.0, d.state))
                .collect();
            rows.push(StoredRow {
                id: s.id,
                control_id: s.header.control_id,
                state: s.state,
                deliveries,
            });
        }
        store.close().await.unwrap();
        rows
    })
}

/// The raw bytes of stored messages, by id (server stopped).
pub fn stored_payloads(data_dir: &Path, ids: &[MessageId]) -> BTreeMap<MessageId, Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(data_dir, SqliteOptions::default())
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for &id in ids {
            let m = store.message(id).await.unwrap().expect("message stored");
            out.insert(id, m.raw.expect("payload kept"));
        }
        store.close().await.unwrap();
        out
    })
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("causeway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A TOML string literal for a path (basic string, escaped).
pub fn toml_path(path: &Path) -> String {
    let s = path.to_str().expect("utf-8 temp path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A small seeded generator (SplitMix64): reproducible schedules from a seed printed in
/// the test output.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (half-open).
    pub fn range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }
}

/// `p`-quantile of sorted durations.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Where reports go: `target/` of the workspace (CARGO_TARGET_DIR when set).
pub fn report_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let _ = std::fs::create_dir_all(&target);
    target.join(name)
}
