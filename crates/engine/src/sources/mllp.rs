//! The MLLP listener: one task per connection, frames answered in order.
//!
//! Lifecycle: `run(listener, ...)` accepts until `shutdown` resolves; each connection holds a
//! permit of the connection cap (the permit moves into its task, so a finished connection
//! frees its slot). A connection handles its frames one after another: the ACK for frame n
//! is written before frame n+1 is processed, which keeps per-sender order.
//!
//! Limits and what each answer is:
//! - a frame longer than `max_frame` is refused as soon as the limit is passed (AR with what
//!   of MSH could be read, then the connection is closed: the rest of that frame cannot be
//!   trusted);
//! - bytes outside frames are skipped and counted;
//! - no frame started within `idle_timeout`: the connection is closed;
//! - a started frame not finished within `read_timeout` (a trickling sender): closed;
//! - a connection closed in the middle of a frame: nothing was acknowledged, nothing stored;
//! - a TLS handshake not finished within `read_timeout`: closed.
//!
//! On shutdown each connection finishes the frame it is processing (its ACK is sent), then
//! closes; frames not yet started are not read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use hl7v2::{AckCode, AckError, AckHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::SourceStats;
use crate::runtime::channel::{Channel, hl7_timestamp};

/// Settings of one MLLP listener.
#[derive(Clone)]
pub struct MllpSourceOptions {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub max_frame: usize,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for MllpSourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpSourceOptions")
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_frame", &self.max_frame)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Bytes read per call; frames larger than this arrive over several reads.
const READ_CHUNK: usize = 64 * 1024;

/// Most frames of one connection processed together: a pipelining sender gets them stored
/// in one group commit, while one connection cannot hold more than this many ACKs back.
const MAX_PIPELINED: usize = 64;

/// Accepts connections until `shutdown` changes to `true`, then waits for open connections
/// to finish the frame they are on.
pub async fn run(
    listener: TcpListener,
    options: MllpSourceOptions,
    channel: Arc<Channel>,
    stats: Arc<SourceStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // Wait for a free slot first, so connections beyond the cap wait in the kernel's
        // backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = addr.to_string();
        let channel = channel.clone();
        let options = options.clone();
        let stats = stats.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            stats.connections_open.fetch_add(1, Ordering::Relaxed);
            stats.connections_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(channel = %channel.name, peer, "connection opened");
            match acceptor {
                None => serve(stream, &peer, &options, &channel, &stats, shutdown).await,
                Some(acceptor) => match tokio::time::timeout(options.read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve(tls, &peer, &options, &channel, &stats, shutdown).await,
                    Ok(Err(e)) if speaks_no_tls(&e) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(channel = %channel.name, peer, "TLS handshake failed: the peer does not speak TLS (a plain MLLP sender on this TLS listener?)");
                    }
                    Ok(Err(e)) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(channel = %channel.name, peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(channel = %channel.name, peer, "TLS handshake timed out");
                    }
                },
            }
            stats.connections_open.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(channel = %channel.name, peer, "connection closed");
        });
        // Reap finished connections so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Why a connection ended, for logs.
#[derive(Debug)]
enum End {
    Closed,
    Shutdown,
    Idle,
    Trickle,
    MidFrame,
    Io(std::io::Error),
    Oversized,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: &str,
    options: &MllpSourceOptions,
    channel: &Channel,
    stats: &SourceStats,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut decoder = mllp::Decoder::with_max_frame_len(options.max_frame);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut frame_started: Option<Instant> = None;
    let mut skipped_seen = 0u64;
    let end = loop {
        // Answer every complete frame already buffered, in order. A sender that pipelines
        // (several frames before reading ACKs) has all of them stored in one group commit:
        // the ingests run concurrently, are submitted to the store in frame order (each
        // reaches the store's queue on its first poll, and `join_all` polls in order), and
        // their ACKs are written in frame order.
        let mut frames = Vec::new();
        let mut refused = None;
        while frames.len() < MAX_PIPELINED {
            // The decoder drops an oversized frame when it refuses it; keep its head first so
            // the NAK can echo MSH-10.
            let head = (buf.len() > options.max_frame).then(|| buf[..buf.len().min(4096)].to_vec());
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    refused = Some((e, head));
                    break;
                }
            }
        }
        if !frames.is_empty() {
            frame_started = None;
            let replies =
                futures_util::future::join_all(frames.iter().map(|f| channel.ingest(f, peer)))
                    .await;
            let mut out = Vec::new();
            for ack in replies.into_iter().filter_map(|r| r.ack) {
                if let Err(e) = mllp::encode(&ack, &mut out) {
                    tracing::error!(channel = %channel.name, peer, error = %e, "cannot frame an ACK");
                }
            }
            if let Err(e) = write_all(&mut stream, &out).await {
                return log_end(channel, peer, End::Io(e));
            }
            if refused.is_none() && buf.contains(&mllp::FS) {
                // More complete frames than one round takes: answer them before reading.
                continue;
            }
        }
        if let Some((e, head)) = refused {
            stats.oversized_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(channel = %channel.name, peer, error = %e, "frame refused");
            let nak = oversized_nak(head.as_deref().unwrap_or(&buf), options.max_frame);
            let _ = write_frame(&mut stream, &nak).await;
            return log_end(channel, peer, End::Oversized);
        }
        let skipped = decoder.skipped_bytes();
        if skipped > skipped_seen {
            stats
                .garbage_bytes
                .fetch_add(skipped - skipped_seen, Ordering::Relaxed);
            tracing::info!(channel = %channel.name, peer, bytes = skipped - skipped_seen, "bytes outside MLLP frames skipped");
            skipped_seen = skipped;
        }
        if *shutdown.borrow() {
            break End::Shutdown;
        }
        let partial = buf.contains(&mllp::VT);
        let deadline = if partial {
            let started = *frame_started.get_or_insert_with(Instant::now);
            started + options.read_timeout
        } else {
            frame_started = None;
            Instant::now() + options.idle_timeout
        };
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => r,
            _ = shutdown.changed() => break End::Shutdown,
        };
        match read {
            Err(_) if partial => {
                stats.read_timeouts.fetch_add(1, Ordering::Relaxed);
                break End::Trickle;
            }
            Err(_) => {
                stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                break End::Idle;
            }
            Ok(Err(e)) => break End::Io(e),
            Ok(Ok(0)) => break if partial { End::MidFrame } else { End::Closed },
            Ok(Ok(_)) => {}
        }
    };
    let _ = stream.shutdown().await;
    log_end(channel, peer, end);
}

/// True when a handshake failed because the first bytes were not a TLS record at all: the
/// usual cause is a sender configured for plain MLLP (its frame starts 0x0B), which rustls
/// reports only as "corrupt message of type InvalidContentType".
fn speaks_no_tls(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

fn log_end(channel: &Channel, peer: &str, end: End) {
    match end {
        End::Closed | End::Shutdown => {
            tracing::debug!(channel = %channel.name, peer, reason = ?end, "connection ended")
        }
        End::Io(e) => {
            tracing::info!(channel = %channel.name, peer, error = %e, "connection failed")
        }
        other => {
            tracing::info!(channel = %channel.name, peer, reason = ?other, "connection closed by the listener")
        }
    }
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    mllp::encode(payload, &mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    write_all(stream, &out).await
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// AR for a frame over the limit, built from the part of it that was buffered.
fn oversized_nak(buffered: &[u8], max: usize) -> Vec<u8> {
    let head = buffered
        .iter()
        .position(|&b| b == mllp::VT)
        .map(|i| &buffered[i + 1..])
        .unwrap_or(buffered);
    let head = &head[..head.len().min(4096)];
    let ts = hl7_timestamp();
    let err = AckError::new(207, format!("message too large: the limit is {max} bytes"));
    hl7v2::build_nak_for_bytes(
        head,
        AckCode::AR,
        &err,
        AckHeader {
            control_id: "CW-OVERSIZE",
            timestamp: &ts,
        },
    )
}
