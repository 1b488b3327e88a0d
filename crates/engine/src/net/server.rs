//! A small MLLP listener: accept, read frames, let a [`Handler`] answer each one, write the
//! reply back. Used by `causeway listen` and by tests that need a real MLLP peer.
//!
//! Lifecycle: [`run`] takes an already-bound listener (tests bind port 0 and read the port
//! before anything starts, so nothing sleeps waiting for start-up) and a shutdown future. It
//! accepts until that future resolves; each connection then finishes the message it is
//! handling (its reply is written) and closes, and `run` returns once every connection is
//! closed, or after [`ServerOptions::shutdown_grace`], when the stragglers are aborted.
//!
//! Invariants:
//! - One message at a time per connection: frame n+1 is not handed to the handler before the
//!   reply to frame n is written, so replies come back in order.
//! - At most `max_connections` connections are open; the next one waits in the kernel's
//!   backlog (the permit is taken before `accept` and moves into the connection's task).
//! - A bad frame (over the size limit) or a failed TLS handshake closes that connection only;
//!   the listener goes on.
//! - A connection closed in the middle of a frame hands nothing to the handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{READ_CHUNK, Stream};

/// Default cap on open connections.
///
/// 256: far more than the handful of interfaces that feed one endpoint, while bounding the
/// memory a flood of connections can take (each may buffer up to one frame).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default time allowed for a client's TLS handshake.
///
/// 10 s: a handshake is a few round trips; a client that takes longer is broken or hostile and
/// would otherwise hold a connection slot.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time an open connection may send nothing before it is closed.
///
/// 10 minutes: MLLP senders keep connections open between messages, often for minutes on a
/// quiet feed; this only reclaims connections whose peer vanished without closing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Default time connections get, after shutdown, to finish the message they are handling.
///
/// 30 s: matches the usual sender ACK timeout; a reply later than that is useless anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Settings of one listener.
#[derive(Clone)]
pub struct ServerOptions {
    /// TLS for every connection when set.
    pub tls: Option<Arc<ServerConfig>>,
    /// Largest accepted payload; a larger frame closes its connection.
    pub max_frame_len: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// Close a connection that sends nothing for this long; `None` keeps it open.
    pub idle_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tls: None,
            max_frame_len: mllp::DEFAULT_MAX_FRAME_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("tls", &self.tls.is_some())
            .field("max_frame_len", &self.max_frame_len)
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// Who sent a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
    /// 1-based number of the connection since the listener started, for logs.
    pub connection: u64,
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Write this payload back as one frame and go on reading.
    Ack(Vec<u8>),
    /// Answer nothing and go on reading (e.g. MSH-15 NE asked for no ACK).
    Nothing,
    /// Close the connection without answering.
    Close,
}

/// Answers frames. One call at a time per connection; calls from different connections run
/// concurrently.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, peer: &Peer, payload: Bytes) -> impl Future<Output = Reply> + Send;
}

/// What a listener saw between start and shutdown. No PHI.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub connections: u64,
    /// Frames handed to the handler.
    pub frames: u64,
    /// Frames refused (over the size limit); each closed its connection.
    pub bad_frames: u64,
    pub tls_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    frames: AtomicU64,
    bad_frames: AtomicU64,
    tls_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            bad_frames: self.bad_frames.load(Ordering::Relaxed),
            tls_failures: self.tls_failures.load(Ordering::Relaxed),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then drains connections (see the module docs).
pub async fn run<H: Handler>(
    listener: TcpListener,
    options: ServerOptions,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) -> ServerStats {
    let options = Arc::new(options);
    let counters = Arc::new(Counters::default());
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let connection = counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let handler = handler.clone();
        let options = options.clone();
        let counters = counters.clone();
        let acceptor = acceptor.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            connection_task(
                tcp, addr, connection, acceptor, &*handler, &options, &counters, stop,
            )
            .await;
        });
        while let Some(done) = tasks.try_join_next() {
            log_panic(done);
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while let Some(done) = tasks.join_next().await {
            log_panic(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "connections still busy after the shutdown grace; aborting them"
        );
        tasks.shutdown().await;
    }
    counters.snapshot()
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("a connection task panicked");
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection_task<H: Handler>(
    tcp: TcpStream,
    addr: SocketAddr,
    connection: u64,
    acceptor: Option<TlsAcceptor>,
    handler: &H,
    options: &ServerOptions,
    counters: &Counters,
    stop: watch::Receiver<bool>,
) {
    // Replies are small and awaited one by one: Nagle's delay would only add latency.
    let _ = tcp.set_nodelay(true);
    let peer = Peer {
        addr,
        tls: acceptor.is_some(),
        connection,
    };
    tracing::debug!(peer = %addr, connection, "connection opened");
    let stream: Box<dyn Stream> = match acceptor {
        None => Box::new(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    counters.tls_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %addr, connection, error = %e, "tls handshake failed");
                    return;
                }
                Err(_) => {
                    counters.tls_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %addr, connection, "tls handshake timed out");
                    return;
                }
            }
        }
    };
    let end = serve(stream, &peer, handler, options, counters, stop).await;
    tracing::debug!(peer = %addr, connection, reason = end, "connection closed");
}

/// Reads and answers frames until the connection ends; returns why, for the log.
async fn serve<H: Handler>(
    mut stream: Box<dyn Stream>,
    peer: &Peer,
    handler: &H,
    options: &ServerOptions,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    let mut decoder = mllp::Decoder::with_max_frame_len(options.max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(payload)) => {
                counters.frames.fetch_add(1, Ordering::Relaxed);
                match handler.handle(peer, payload).await {
                    Reply::Ack(ack) => {
                        if let Err(e) = write_frame(&mut stream, &ack).await {
                            tracing::info!(peer = %peer.addr, error = %e, "cannot write the reply");
                            return "write failed";
                        }
                        // Frames already buffered behind this one are not started after shutdown.
                        if *stop.borrow() {
                            let _ = stream.shutdown().await;
                            return "shutdown";
                        }
                    }
                    Reply::Nothing => {
                        if *stop.borrow() {
                            let _ = stream.shutdown().await;
                            return "shutdown";
                        }
                    }
                    Reply::Close => {
                        let _ = stream.shutdown().await;
                        return "closed by the handler";
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.addr, error = %e, "frame refused; closing the connection");
                let _ = stream.shutdown().await;
                return "bad frame";
            }
        }
        if *stop.borrow() {
            let _ = stream.shutdown().await;
            return "shutdown";
        }
        buf.reserve(READ_CHUNK);
        let read = async {
            match options.idle_timeout {
                None => Some(stream.read_buf(&mut buf).await),
                Some(idle) => tokio::time::timeout(idle, stream.read_buf(&mut buf))
                    .await
                    .ok(),
            }
        };
        let read = tokio::select! {
            read = read => read,
            _ = stop.changed() => return "shutdown",
        };
        match read {
            None => return "idle timeout",
            Some(Err(e)) => {
                tracing::info!(peer = %peer.addr, error = %e, "read failed");
                return "read failed";
            }
            Some(Ok(0)) => {
                return match decoder.decode_eof(&mut buf) {
                    Ok(_) => "closed by the peer",
                    Err(e) => {
                        tracing::info!(peer = %peer.addr, error = %e, "connection closed inside a frame");
                        "closed inside a frame"
                    }
                };
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn write_frame(stream: &mut Box<dyn Stream>, payload: &[u8]) -> std::io::Result<()> {
    let frame = mllp::frame(payload)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    stream.write_all(&frame).await?;
    stream.flush().await
}
