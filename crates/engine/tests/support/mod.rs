//! Shared parts of the engine's black-box tests: a running engine on a real SQLite store in a
//! temporary directory, test messages, and real peers standing in for destinations (an MLLP
//! receiver built on `net::server::run` and a small axum webhook), each answering as scripted.
//!
//! Invariants:
//! - Nothing sleeps waiting for start-up: the engine and the stand-ins bind before they are
//!   used. Asynchronous outcomes are polled with [`eventually`], which fails with a message
//!   saying what never happened once its deadline passes.
//! - The temporary directory outlives the engine (field order), so the store is never
//!   deleted under a running writer.

#![allow(dead_code)]

pub mod alerting;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use causeway_engine::config::Config;
use causeway_engine::net::client::{MllpClient, read_ack};
use causeway_engine::net::server::{self, Handler, Peer, Reply, ServerOptions};
use causeway_engine::runtime::Engine;
use causeway_store::{
    Delivery, MessageId, MessageSummary, SearchFilter, SqliteOptions, SqliteStore, Store,
    StoredMessage,
};
use hl7v2::{AckCode, AckError, AckHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for anything asynchronous (a delivery, a file being picked up). Generous so a
/// loaded machine does not fail a test; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`eventually`] looks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Time allowed for an ACK over a socket.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// ---------------------------------------------------------------------------------------
// Test messages
// ---------------------------------------------------------------------------------------

/// A test message; every field has a value the default channel accepts.
#[derive(Debug, Clone)]
pub struct Msg {
    control_id: String,
    kind: String,
    processing_id: String,
    version: String,
    accept_ack: String,
    app_ack: String,
    family: String,
    sex: String,
}

/// An `ADT^A01` in v2.5.1, processing id `P`, original acknowledgement mode.
pub fn msg(control_id: &str) -> Msg {
    Msg {
        control_id: control_id.to_string(),
        kind: "ADT^A01^ADT_A01".into(),
        processing_id: "P".into(),
        version: "2.5.1".into(),
        accept_ack: String::new(),
        app_ack: String::new(),
        family: "DOE".into(),
        sex: "F".into(),
    }
}

impl Msg {
    /// MSH-9 as written, e.g. `ORU^R01^ORU_R01`.
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind.into();
        self
    }
    /// MSH-11.
    pub fn processing_id(mut self, id: &str) -> Self {
        self.processing_id = id.into();
        self
    }
    /// MSH-12.
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    /// MSH-15 (accept acknowledgement type: AL, NE, ER, SU).
    pub fn accept_ack(mut self, v: &str) -> Self {
        self.accept_ack = v.into();
        self
    }
    /// MSH-16 (application acknowledgement type).
    pub fn app_ack(mut self, v: &str) -> Self {
        self.app_ack = v.into();
        self
    }
    /// PID-5.1.
    pub fn family(mut self, v: &str) -> Self {
        self.family = v.into();
        self
    }
    /// PID-8.
    pub fn sex(mut self, v: &str) -> Self {
        self.sex = v.into();
        self
    }
    pub fn build(&self) -> Vec<u8> {
        format!(
            "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||{kind}|{cid}|{pid}|{ver}|||{aa}|{ap}\r\
             EVN|A01|20240101120000\r\
             PID|1||12345^^^HOSP^MR||{family}^JANE||19800101|{sex}\r\
             PV1|1|I|WARD^101^1^HOSP_A\r",
            kind = self.kind,
            cid = self.control_id,
            pid = self.processing_id,
            ver = self.version,
            aa = self.accept_ack,
            ap = self.app_ack,
            family = self.family,
            sex = self.sex,
        )
        .into_bytes()
    }
}

/// MSH-10 of a message (decoded), or empty.
pub fn control_id_of(payload: &[u8]) -> String {
    hl7v2::parse(payload)
        .ok()
        .and_then(|m| m.control_id().map(|c| c.into_owned()))
        .unwrap_or_default()
}

/// The decoded value at `path` of a message that must parse.
pub fn field(payload: &[u8], path: &str) -> String {
    let m = hl7v2::parse(payload).unwrap_or_else(|e| {
        panic!(
            "does not parse ({e}): {:?}",
            String::from_utf8_lossy(payload)
        )
    });
    m.text(path).map(|t| t.into_owned()).unwrap_or_default()
}

/// What an acknowledgement says: MSA-1, MSA-2, ERR-3 code (ERR-1.4.1 before v2.5) and the
/// error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: String,
    pub control_id: String,
    pub err3: String,
    pub text: Option<String>,
}

pub fn ack_of(payload: &[u8]) -> Ack {
    let fields = read_ack(payload).unwrap_or_else(|e| {
        panic!(
            "not an acknowledgement ({e}): {:?}",
            String::from_utf8_lossy(payload)
        )
    });
    let err3 = {
        let modern = field(payload, "ERR-3.1");
        if modern.is_empty() {
            field(payload, "ERR-1.4.1")
        } else {
            modern
        }
    };
    Ack {
        code: fields.code,
        control_id: fields.control_id,
        err3,
        text: fields.text,
    }
}

// ---------------------------------------------------------------------------------------
// The engine under test
// ---------------------------------------------------------------------------------------

/// A running engine on a SQLite store in a temporary directory.
pub struct Harness {
    // Dropped before `dir`: the engine's tasks are aborted before the files go.
    engine: Option<Engine>,
    pub store: Arc<dyn Store>,
    pub config: Config,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts `toml` in a fresh temporary directory; see [`Harness::start_in`].
    pub async fn start(toml: &str) -> Harness {
        Harness::start_in(tempfile::tempdir().expect("tempdir"), toml).await
    }

    /// Starts the configuration `[server] data_dir = "data"` followed by `toml`, with
    /// relative paths resolved against `dir`. `toml` may begin with more `[server]` keys
    /// (e.g. `http = "127.0.0.1:0"`) before its first table.
    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> Harness {
        let text = format!("[server]\ndata_dir = \"data\"\n{toml}");
        let config = Config::from_str(&text, dir.path()).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!(
                "test configuration invalid:\n{}\n---\n{text}",
                lines.join("\n")
            )
        });
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&config.server.data_dir, SqliteOptions::default())
                .await
                .expect("open the store"),
        );
        let engine = Engine::start(&config, store.clone())
            .await
            .expect("engine starts");
        Harness {
            engine: Some(engine),
            store,
            config,
            dir,
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Stops the engine; panics when that takes longer than [`DEADLINE`].
    pub async fn shutdown(&mut self) {
        let engine = self.engine.take().expect("engine running");
        tokio::time::timeout(DEADLINE, engine.shutdown())
            .await
            .expect("engine shutdown finished within the deadline");
    }

    pub fn mllp_addr(&self, channel: &str) -> SocketAddr {
        self.engine()
            .mllp_addr(channel)
            .unwrap_or_else(|| panic!("channel {channel} has no MLLP listener"))
    }

    /// A connected MLLP client for `channel`.
    pub async fn client(&self, channel: &str) -> MllpClient {
        MllpClient::connect(
            self.mllp_addr(channel).to_string(),
            None,
            None,
            Duration::from_secs(5),
        )
        .await
        .expect("connect to the engine")
    }

    /// Sends one message on a new connection and returns the ACK bytes.
    pub async fn send(&self, channel: &str, payload: &[u8]) -> Bytes {
        let mut client = self.client(channel).await;
        send(&mut client, payload).await
    }

    /// Every stored message with this MSH-10, oldest first.
    pub async fn stored(&self, control_id: &str) -> Vec<MessageSummary> {
        let mut rows = self
            .store
            .search(SearchFilter {
                control_id: Some(control_id.to_string()),
                ..SearchFilter::default()
            })
            .await
            .expect("search");
        rows.reverse();
        rows
    }

    /// The one stored message with this MSH-10, payload included.
    pub async fn only(&self, control_id: &str) -> StoredMessage {
        let rows = self.stored(control_id).await;
        assert_eq!(
            rows.len(),
            1,
            "expected one stored message with control id {control_id}: {rows:?}"
        );
        self.message(rows[0].id).await
    }

    pub async fn message(&self, id: MessageId) -> StoredMessage {
        self.store
            .message(id)
            .await
            .expect("read message")
            .unwrap_or_else(|| panic!("message {id} not stored"))
    }

    /// Every stored message of `channel`, oldest first.
    pub async fn in_channel(&self, channel: &str) -> Vec<MessageSummary> {
        let mut rows = self
            .store
            .search(SearchFilter {
                channel: Some(channel.to_string()),
                ..SearchFilter::default()
            })
            .await
            .expect("search");
        rows.reverse();
        rows
    }

    pub async fn deliveries(&self, id: MessageId) -> Vec<Delivery> {
        self.store.deliveries(id).await.expect("deliveries")
    }

    /// Waits until every delivery of `id` is settled (none pending) and returns them.
    pub async fn settled(&self, id: MessageId) -> Vec<Delivery> {
        eventually(
            &format!("the deliveries of message {id} to settle"),
            || async {
                let d = self.deliveries(id).await;
                (!d.is_empty() && d.iter().all(|d| !d.state.is_pending())).then_some(d)
            },
        )
        .await
    }
}

/// Sends one message and returns the reply frame's payload.
pub async fn send(client: &mut MllpClient, payload: &[u8]) -> Bytes {
    client
        .send(payload, ACK_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("no ACK: {e}"))
}

/// A raw MLLP connection, for what `MllpClient` cannot express (messages that get no ACK).
pub struct RawConnection {
    stream: TcpStream,
    buf: BytesMut,
    decoder: mllp::Decoder,
}

impl RawConnection {
    pub async fn open(addr: SocketAddr) -> RawConnection {
        RawConnection {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            decoder: mllp::Decoder::new(),
        }
    }

    pub async fn write_frame(&mut self, payload: &[u8]) {
        let frame = mllp::frame(payload).expect("frameable");
        self.stream.write_all(&frame).await.expect("write");
    }

    /// Writes bytes as they are (several frames at once, partial frames).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame; panics on timeout or close.
    pub async fn read_frame(&mut self) -> Bytes {
        tokio::time::timeout(ACK_TIMEOUT, async {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buf).expect("valid frame") {
                    return frame;
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed while waiting for a frame");
            }
        })
        .await
        .expect("a frame within the ACK timeout")
    }

    /// True when the peer has closed the connection (reads end), false on a timeout.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut scratch = [0u8; 1024];
        tokio::time::timeout(limit, async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A local address nothing listens on (bound, then released). Another process may take it in
/// between; the test that uses it accepts that small race.
pub async fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

// ---------------------------------------------------------------------------------------
// MLLP stand-in for a destination
// ---------------------------------------------------------------------------------------

/// A scripted answer of the MLLP stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Code(AckCode),
    /// AA, but for another control id in MSA-2.
    WrongControlId,
    /// No answer at all, as a receiver honouring MSH-15 NE or ER behaves.
    Nothing,
}

#[derive(Default)]
struct Script {
    /// Answers queued per control id; once used up (or for others), AA.
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    received: Mutex<Vec<Vec<u8>>>,
}

struct Scripted(Arc<Script>);

fn receiver_ack(payload: &[u8], code: AckCode) -> Vec<u8> {
    let msg = hl7v2::parse(payload).expect("delivered messages parse");
    let errors = if code.is_accept() {
        Vec::new()
    } else {
        vec![AckError::new(207, format!("scripted {}", code.as_str()))]
    };
    hl7v2::build_ack(
        &msg,
        code,
        &errors,
        AckHeader {
            control_id: "RCV1",
            timestamp: "20240101120001",
        },
    )
}

impl Handler for Scripted {
    async fn handle(&self, _peer: &Peer, payload: Bytes) -> Reply {
        self.0.received.lock().unwrap().push(payload.to_vec());
        let id = control_id_of(&payload);
        let answer = self
            .0
            .answers
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Answer::Code(AckCode::AA));
        match answer {
            Answer::Code(code) => Reply::Ack(receiver_ack(&payload, code)),
            Answer::WrongControlId => {
                let moved = String::from_utf8_lossy(&payload).replace(&id, "SOMEONE-ELSE");
                Reply::Ack(receiver_ack(moved.as_bytes(), AckCode::AA))
            }
            Answer::Nothing => Reply::Nothing,
        }
    }
}

/// An MLLP receiver standing in for a destination system.
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Script>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<server::ServerStats>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    /// Serves an already-bound listener.
    pub async fn on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().expect("addr");
        let script = Arc::new(Script::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let options = ServerOptions {
            shutdown_grace: Duration::from_secs(1),
            ..ServerOptions::default()
        };
        let task = tokio::spawn(server::run(
            listener,
            options,
            Arc::new(Scripted(script.clone())),
            async move {
                let _ = stopped.await;
            },
        ));
        Receiver {
            addr,
            script,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Answers the next messages with this control id with `answers`, in order (then AA).
    pub fn script(&self, control_id: &str, answers: &[Answer]) {
        self.script
            .answers
            .lock()
            .unwrap()
            .entry(control_id.to_string())
            .or_default()
            .extend(answers.iter().copied());
    }

    /// Every payload received so far, in order (retries included).
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.script.received.lock().unwrap().clone()
    }

    pub fn received_ids(&self) -> Vec<String> {
        self.received().iter().map(|p| control_id_of(p)).collect()
    }

    /// Waits until `n` payloads have been received and returns them all.
    pub async fn wait_received(&self, n: usize) -> Vec<Vec<u8>> {
        eventually(&format!("the receiver to get {n} messages"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP stand-in for a destination
// ---------------------------------------------------------------------------------------

/// One request the webhook got.
#[derive(Debug, Clone)]
pub struct Posted {
    pub content_type: String,
    pub control_id_header: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct WebhookState {
    statuses: Mutex<HashMap<String, VecDeque<u16>>>,
    posted: Mutex<Vec<Posted>>,
}

/// An HTTP receiver standing in for a webhook destination: answers each POST with the next
/// scripted status for its MSH-10 (200 once those are used up).
pub struct Webhook {
    pub addr: SocketAddr,
    state: Arc<WebhookState>,
    task: JoinHandle<()>,
}

async fn webhook(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let id = control_id_of(&body);
    state.posted.lock().unwrap().push(Posted {
        content_type: header("content-type"),
        control_id_header: header("x-hl7-control-id"),
        body: body.to_vec(),
    });
    let status = state
        .statuses
        .lock()
        .unwrap()
        .get_mut(&id)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    (
        StatusCode::from_u16(status).expect("valid status"),
        "scripted",
    )
}

impl Webhook {
    pub async fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(WebhookState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(webhook))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("webhook serves");
        });
        Webhook { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn script(&self, control_id: &str, statuses: &[u16]) {
        self.state
            .statuses
            .lock()
            .unwrap()
            .entry(control_id.to_string())
            .or_default()
            .extend(statuses.iter().copied());
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.state.posted.lock().unwrap().clone()
    }

    pub async fn wait_posted(&self, n: usize) -> Vec<Posted> {
        eventually(&format!("the webhook to get {n} requests"), || async {
            let got = self.posted();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain-HTTP client for talking to the engine's HTTP sources.
///
/// reqwest is built without a TLS provider; this client brings its own (with no trusted
/// roots: tests speak plain HTTP) instead of installing a process-wide default, so whether the
/// engine copes without one is still tested.
pub fn http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("http client")
}

/// Writes `contents` to `dir/name` through a hidden temporary name, so a directory source
/// never sees it half written.
pub fn drop_file(dir: &Path, name: &str, contents: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write the file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename the file");
}
