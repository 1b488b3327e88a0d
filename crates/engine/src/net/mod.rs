//! MLLP over TCP and TLS: a client that waits for each message's ACK, a small reusable
//! listener, and TLS configuration from PEM files.
//!
//! Map:
//! - [`tls`]: rustls server and client configurations (ring provider, CA files, mutual TLS);
//! - [`https`]: the HTTP server's TLS listener (handshakes off the accept path);
//! - [`client`]: [`MllpClient`], one persistent connection that sends a frame and reads
//!   exactly one reply frame, and [`check_ack`], the verdict on that reply;
//! - [`server`]: [`server::run`], an accept loop over an already-bound listener that hands
//!   each frame to a [`server::Handler`] and writes back its reply (used by `causeway listen`
//!   and by tests that need a real MLLP peer).
//!
//! Invariants:
//! - One request, one reply, in order: a connection never has two messages in flight, so a
//!   reply always belongs to the last frame sent on that connection.
//! - After a timeout, an I/O error or a framing error the client drops the connection: a late
//!   ACK could otherwise be taken for the answer to the next message.
//! - Nothing here logs payloads; logs carry peers, sizes and reasons only.

pub mod client;
pub mod https;
pub mod server;
pub mod tls;

pub use client::{
    AckFields, AckVerdict, Answer, ClientError, MllpClient, accept_condition_of, check_ack,
    read_ack,
};
pub use server::{Handler, Peer, Reply, ServerOptions, ServerStats};
pub use tls::TlsError;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream: plain TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Bytes reserved in the read buffer before each read; larger frames arrive over several reads.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
