//! The MLLP client: one persistent connection, plain or TLS, that sends a message and waits for
//! its one reply frame.
//!
//! Lifecycle: [`MllpClient::new`] only checks its arguments; the connection is opened by
//! [`MllpClient::connect`] or by the first [`MllpClient::send`]. A send that fails for any
//! reason other than an unframeable payload leaves the client disconnected, and the next send
//! opens a new connection: after a timeout the peer may still answer, and that late ACK must
//! never be read as the answer to the next message. A connection that the peer closed while
//! idle (servers drop idle clients) is noticed before writing and replaced silently, so an
//! idle close does not fail the next message.
//!
//! [`check_ack`] turns a reply into a verdict: accepted only when MSA-1 is AA or CA and MSA-2
//! is the MSH-10 that was sent.
//!
//! Enhanced mode: a message's MSH-15 says whether its receiver answers at all
//! ([`accept_condition_of`]).
//! [`MllpClient::send_as_asked`] honours it: for NE it writes the message and waits for nothing
//! (a compliant receiver sends nothing, and waiting would stall a FIFO queue behind it); for ER
//! and SU, silence until the ACK timeout is itself the answer. A receiver that answers an NE
//! message anyway is tolerated: the connection remembers the control ids it sent under NE and
//! discards replies to them instead of reading them as the answer to a later message.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hl7v2::{AckCode, AckCondition};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use super::{READ_CHUNK, Stream, tls};

/// Default time allowed to open a connection, TCP and TLS handshake together.
///
/// 10 s: long enough for a TLS handshake over a slow VPN to a remote site, short enough that
/// a peer that is down is reported (and retried) promptly.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time to wait for the ACK after a message is written.
///
/// 30 s: receivers that commit to a database before answering can take seconds under load;
/// this is the figure interface engines commonly default to.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest [`MllpClient::disconnect`] waits for a clean close (TLS close_notify, FIN).
///
/// 1 s: the close is a courtesy to the peer; a peer that does not take it promptly is not
/// worth holding up the caller for.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What went wrong sending a message. The reason is part of each message and not also the
/// error's source, so a report that prints the chain says it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    /// Opening the connection (TCP and TLS handshake) took longer than allowed.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    /// The TLS handshake failed (certificate not trusted, wrong name, refused client
    /// certificate, ...).
    #[error("tls handshake with {addr} failed: {error}")]
    Handshake { addr: String, error: std::io::Error },
    /// The TLS server name is not a DNS name or IP address.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// No complete reply frame within the ACK timeout; the connection was dropped.
    #[error("no acknowledgement from {addr} within {after:?}")]
    AckTimeout { addr: String, after: Duration },
    /// The peer closed the connection before its reply was complete.
    #[error("{addr} closed the connection before acknowledging")]
    Closed { addr: String },
    /// A plain connection's peer answered with a TLS record and closed: it is a TLS listener.
    #[error(
        "{addr} answered with TLS, not MLLP, and closed the connection: it expects a TLS connection"
    )]
    ExpectsTls { addr: String },
    /// Reading or writing failed.
    #[error("i/o error with {addr}: {error}")]
    Io { addr: String, error: std::io::Error },
    /// The peer's reply is not a valid MLLP frame (e.g. larger than the frame limit).
    #[error("bad reply frame from {addr}: {error}")]
    Frame { addr: String, error: mllp::Error },
    /// The payload cannot be framed: it holds a VT or FS byte. Sending again will not help.
    #[error("cannot send the message: {0}")]
    Payload(mllp::Error),
}

impl ClientError {
    /// True when a retry cannot succeed: the message itself cannot be sent.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Payload(_) | ClientError::Tls(_))
    }
}

/// When `payload`'s receiver sends its accept acknowledgement, by the message's own MSH-15
/// ([`hl7v2::AckMode::accept_condition`], the rule `serve` answers by); `Always` for a message
/// whose header cannot be read.
pub fn accept_condition_of(payload: &[u8]) -> AckCondition {
    hl7v2::parse(payload).map_or(AckCondition::Always, |msg| {
        hl7v2::AckMode::of(&msg).accept_condition()
    })
}

/// How a message sent by [`MllpClient::send_as_asked`] was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The reply frame's payload.
    Ack(Bytes),
    /// MSH-15 NE: nothing was waited for.
    NotAsked,
    /// MSH-15 ER and no reply within the ACK timeout: accepted.
    NoErrorReported,
    /// MSH-15 SU and no reply within the ACK timeout: not accepted.
    NotAccepted,
}

/// Control ids sent under MSH-15 NE that one connection remembers, to discard late replies.
///
/// 64: a receiver that answers anyway answers promptly; older replies than that are
/// unlikely, and one that does come is then judged (and flagged) as a mismatch.
const UNASKED_REMEMBERED: usize = 64;

/// An open connection and what has been read from it but not yet used.
struct Connection {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    decoder: mllp::Decoder,
    /// MSH-10s of messages sent under MSH-15 NE, newest last.
    unasked: std::collections::VecDeque<String>,
    /// Opened without TLS, and what its first bytes from the peer looked like: a TLS record
    /// header (content type 21 alert or 22 handshake, version 3.x) is a TLS listener refusing a
    /// plain sender, which would otherwise read as a peer that closed without a reason.
    plain: bool,
    first_read: Option<bool>,
}

/// A persistent MLLP connection to one peer. See the module docs for its lifecycle.
pub struct MllpClient {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    max_frame_len: usize,
    conn: Option<Connection>,
    opened: u64,
}

impl fmt::Debug for MllpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MllpClient")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name.to_str()))
            .field("connect_timeout", &self.connect_timeout)
            .field("max_frame_len", &self.max_frame_len)
            .field("connected", &self.conn.is_some())
            .field("opened", &self.opened)
            .finish()
    }
}

impl MllpClient {
    /// A client for `addr` (`host:port`) that connects on its first send.
    ///
    /// With `tls`, the server's certificate is checked against `server_name`, or against the
    /// host part of `addr` when that is `None`.
    pub fn new(
        addr: impl Into<String>,
        tls: Option<Arc<ClientConfig>>,
        server_name: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let addr = addr.into();
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = tls::server_name(server_name.unwrap_or_else(|| tls::host_of(&addr)))?;
                Some((TlsConnector::from(config), name))
            }
        };
        Ok(MllpClient {
            addr,
            tls,
            connect_timeout,
            max_frame_len: mllp::DEFAULT_MAX_FRAME_LEN,
            conn: None,
            opened: 0,
        })
    }

    /// A client for `addr` with its connection already open; see [`MllpClient::new`].
    pub async fn connect(
        addr: impl Into<String>,
        tls: Option<Arc<ClientConfig>>,
        server_name: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut client = MllpClient::new(addr, tls, server_name, connect_timeout)?;
        client.conn = Some(client.open().await?);
        Ok(client)
    }

    /// Refuse replies longer than `max_frame_len` bytes (default
    /// [`mllp::DEFAULT_MAX_FRAME_LEN`]); applies to connections opened from now on, so set it
    /// on [`MllpClient::new`]'s result, before the first send.
    pub fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.max_frame_len = max_frame_len;
        self
    }

    /// The peer's address as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether a connection is open (as far as this side knows).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// How many connections this client has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened
    }

    /// Closes the connection, if any; the next send opens a new one.
    pub async fn disconnect(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Best effort: the peer may already be gone, and nothing is lost either way.
            let _ = timeout(CLOSE_TIMEOUT, conn.stream.shutdown()).await;
        }
    }

    /// Sends one message and returns the payload of the one frame that answers it.
    ///
    /// `ack_timeout` covers writing the message and reading the whole reply; opening a
    /// connection first is bounded by the connect timeout. On any error the connection is
    /// dropped (except for [`ClientError::Payload`], raised before anything is written). If
    /// this future is dropped before it completes, the connection is dropped with it.
    pub async fn send(
        &mut self,
        payload: &[u8],
        ack_timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let frame = mllp::frame(payload).map_err(ClientError::Payload)?;
        let mut conn = self.usable_connection().await?;
        match timeout(ack_timeout, conn.exchange(&frame, &self.addr)).await {
            Ok(Ok(reply)) => {
                self.conn = Some(conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.ack_timeout(ack_timeout)),
        }
    }

    /// Sends one message and waits for its answer as its MSH-15 says ([`accept_condition_of`]).
    ///
    /// As [`MllpClient::send`] for AL (and original mode). For NE the call returns
    /// [`Answer::NotAsked`] once the message is written and flushed, keeping the connection.
    /// For ER and SU, no reply within `ack_timeout` is [`Answer::NoErrorReported`] or
    /// [`Answer::NotAccepted`], and drops the connection, since a reply may still come.
    pub async fn send_as_asked(
        &mut self,
        payload: &[u8],
        control_id: &str,
        ack_timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let silence = match accept_condition_of(payload) {
            AckCondition::Never => None,
            AckCondition::Always => return self.send(payload, ack_timeout).await.map(Answer::Ack),
            AckCondition::OnError => Some(Answer::NoErrorReported),
            AckCondition::OnSuccess => Some(Answer::NotAccepted),
        };
        if let Some(silence) = silence {
            return match self.send(payload, ack_timeout).await {
                Ok(reply) => Ok(Answer::Ack(reply)),
                Err(ClientError::AckTimeout { .. }) => Ok(silence),
                Err(e) => Err(e),
            };
        }
        let frame = mllp::frame(payload).map_err(ClientError::Payload)?;
        let mut conn = self.usable_connection().await?;
        match timeout(ack_timeout, conn.write_frame(&frame, &self.addr)).await {
            Ok(Ok(())) => {
                if conn.unasked.len() == UNASKED_REMEMBERED {
                    conn.unasked.pop_front();
                }
                conn.unasked.push_back(control_id.to_owned());
                self.conn = Some(conn);
                Ok(Answer::NotAsked)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.ack_timeout(ack_timeout)),
        }
    }

    fn ack_timeout(&self, after: Duration) -> ClientError {
        ClientError::AckTimeout {
            addr: self.addr.clone(),
            after,
        }
    }

    /// The open connection if the peer has not closed it, else a new one.
    async fn usable_connection(&mut self) -> Result<Connection, ClientError> {
        if let Some(mut conn) = self.conn.take() {
            if conn.peer_still_there().await {
                return Ok(conn);
            }
            tracing::debug!(peer = %self.addr, "peer closed the idle connection; reconnecting");
        }
        self.open().await
    }

    async fn open(&mut self) -> Result<Connection, ClientError> {
        let deadline = Instant::now() + self.connect_timeout;
        let timed_out = || ClientError::ConnectTimeout {
            addr: self.addr.clone(),
            after: self.connect_timeout,
        };
        let tcp = match timeout_at(deadline, TcpStream::connect(&self.addr)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) => {
                return Err(ClientError::Connect {
                    addr: self.addr.clone(),
                    error,
                });
            }
            Ok(Ok(tcp)) => tcp,
        };
        // One small frame each way per message: Nagle's delay would only add latency.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                match timeout_at(deadline, connector.connect(name.clone(), tcp)).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(error)) => {
                        return Err(ClientError::Handshake {
                            addr: self.addr.clone(),
                            error,
                        });
                    }
                    Ok(Ok(tls)) => Box::new(tls),
                }
            }
        };
        self.opened += 1;
        tracing::debug!(peer = %self.addr, tls = self.tls.is_some(), "connection opened");
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            decoder: mllp::Decoder::with_max_frame_len(self.max_frame_len),
            unasked: std::collections::VecDeque::new(),
            plain: self.tls.is_none(),
            first_read: None,
        })
    }
}

impl Connection {
    /// False when the peer has closed the connection (or it failed) since the last reply.
    ///
    /// Only looks at what is already readable: a read that would wait counts as "still
    /// there". Bytes that did arrive are kept for [`Connection::exchange`] to discard.
    async fn peer_still_there(&mut self) -> bool {
        self.buf.reserve(READ_CHUNK);
        // Poll the read exactly once. (A zero timeout would do the same on paper, but tokio's
        // timer only fires on its next millisecond tick, which would add ~1 ms per message.)
        let mut read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
        let polled = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Pending => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
        })
        .await;
        match polled {
            None => true,
            Some(Ok(0)) | Some(Err(_)) => false,
            Some(Ok(_)) => true,
        }
    }

    /// Writes one frame and reads the one frame that answers it.
    async fn exchange(&mut self, frame: &[u8], addr: &str) -> Result<Bytes, ClientError> {
        // Frames that arrived before this message was sent cannot answer it.
        while let Some(stale) = self
            .decoder
            .decode(&mut self.buf)
            .map_err(frame_error(addr))?
        {
            if self.answers_unasked(&stale) {
                tracing::debug!(peer = %addr, "discarding a reply to a message sent with MSH-15 NE");
            } else {
                tracing::warn!(peer = %addr, bytes = stale.len(), "discarding a frame the peer sent unasked");
            }
        }
        self.write_frame(frame, addr).await?;
        loop {
            let reply = self.read_frame(addr).await?;
            if !self.answers_unasked(&reply) {
                return Ok(reply);
            }
            tracing::debug!(peer = %addr, "discarding a reply to a message sent with MSH-15 NE");
        }
    }

    async fn write_frame(&mut self, frame: &[u8], addr: &str) -> Result<(), ClientError> {
        self.stream.write_all(frame).await.map_err(io_error(addr))?;
        self.stream.flush().await.map_err(io_error(addr))
    }

    /// Reads the next whole frame.
    async fn read_frame(&mut self, addr: &str) -> Result<Bytes, ClientError> {
        loop {
            if let Some(reply) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(frame_error(addr))?
            {
                return Ok(reply);
            }
            self.buf.reserve(READ_CHUNK);
            let before = self.buf.len();
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(io_error(addr))?;
            if read > 0 && self.first_read.is_none() {
                let fresh = &self.buf[before..];
                self.first_read = Some(
                    self.plain
                        && fresh.len() >= 3
                        && matches!(fresh[0], 0x15 | 0x16)
                        && fresh[1] == 0x03,
                );
            }
            if read == 0 {
                return match self
                    .decoder
                    .decode_eof(&mut self.buf)
                    .map_err(frame_error(addr))?
                {
                    Some(reply) => Ok(reply),
                    None if self.first_read == Some(true) => Err(ClientError::ExpectsTls {
                        addr: addr.to_string(),
                    }),
                    None => Err(ClientError::Closed {
                        addr: addr.to_string(),
                    }),
                };
            }
        }
    }

    /// True when `reply` acknowledges a message this connection sent under MSH-15 NE (the
    /// receiver answered although asked not to); that control id is then forgotten.
    fn answers_unasked(&mut self, reply: &[u8]) -> bool {
        if self.unasked.is_empty() {
            return false;
        }
        let Ok(fields) = read_ack(reply) else {
            return false;
        };
        match self.unasked.iter().position(|id| *id == fields.control_id) {
            Some(at) => {
                self.unasked.remove(at);
                true
            }
            None => false,
        }
    }
}

fn frame_error(addr: &str) -> impl Fn(mllp::Error) -> ClientError + '_ {
    move |error| ClientError::Frame {
        addr: addr.to_string(),
        error,
    }
}

fn io_error(addr: &str) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |error| ClientError::Io {
        addr: addr.to_string(),
        error,
    }
}

/// What an acknowledgement says, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFields {
    /// MSA-1, e.g. `AA`.
    pub code: String,
    /// MSA-2: the MSH-10 of the message it answers.
    pub control_id: String,
    /// The first non-empty of ERR-8, ERR-3.2, ERR-1.4.2 (before v2.5) and MSA-3.
    pub text: Option<String>,
}

/// Reads MSA-1, MSA-2 and the error text of an acknowledgement.
///
/// Fails, with a lowercase reason, when the payload does not parse or has no MSA segment.
pub fn read_ack(payload: &[u8]) -> Result<AckFields, String> {
    let msg = hl7v2::parse(payload).map_err(|e| format!("acknowledgement does not parse: {e}"))?;
    if msg.find_segment("MSA", 1).is_none() {
        return Err("acknowledgement has no MSA segment".to_string());
    }
    let text = |path: &str| {
        msg.text(path)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    Ok(AckFields {
        code: text("MSA-1").unwrap_or_default(),
        control_id: msg
            .text("MSA-2")
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        text: text("ERR-8")
            .or_else(|| text("ERR-3.2"))
            .or_else(|| text("ERR-1.4.2"))
            .or_else(|| text("MSA-3")),
    })
}

/// Why a receiver refused a message, told without its free text (which can quote patient data):
/// the HL7 error code (ERR-3.1, or ERR-1.4.1 before v2.5; table 0357, e.g. `101`) and where the
/// receiver found the problem (ERR-2, or ERR-1, as `PID-3` or `OBX[2]-5`). Each part is given only
/// when it has the shape of a code or a position; `None` when the reply has neither, or does not
/// parse.
pub fn ack_error_code(ack_payload: &[u8]) -> Option<String> {
    error_code_of(&hl7v2::parse(ack_payload).ok()?)
}

/// [`ack_error_code`] of an acknowledgement already parsed.
pub fn error_code_of(msg: &hl7v2::Message<'_>) -> Option<String> {
    let text = |path: &str| {
        msg.text(path)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    let is_code = |c: &String| c.len() <= 8 && c.bytes().all(|b| b.is_ascii_alphanumeric());
    let code = text("ERR-3.1")
        .or_else(|| text("ERR-1.4.1"))
        .filter(is_code);
    let location = ["ERR-2", "ERR-1"].into_iter().find_map(|field| {
        let segment = text(&format!("{field}.1"))
            .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphanumeric()))?;
        let number = |c: usize| {
            text(&format!("{field}.{c}"))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
        };
        let occurrence = number(2).filter(|n| *n > 1);
        Some(match (occurrence, number(3)) {
            (Some(o), Some(f)) => format!("{segment}[{o}]-{f}"),
            (Some(o), None) => format!("{segment}[{o}]"),
            (None, Some(f)) => format!("{segment}-{f}"),
            (None, None) => segment,
        })
    });
    match (code, location) {
        (Some(code), Some(at)) => Some(format!("ERR-3 {code} at {at}")),
        (Some(code), None) => Some(format!("ERR-3 {code}")),
        (None, Some(at)) => Some(format!("at {at}")),
        (None, None) => None,
    }
}

/// The verdict on an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckVerdict {
    /// AA or CA for the message sent.
    Accepted,
    /// AE or CE (a retry may succeed), or a reply that is not a usable acknowledgement; the
    /// text says why (empty when the ACK gives no reason).
    Error(String),
    /// AR or CR: retrying will not help; the text says why (empty when none given).
    Rejected(String),
    /// MSA-2 is not the control id sent: the reply answers some other message.
    Mismatch,
}

/// Judges `ack_payload` as the answer to the message whose MSH-10 (decoded text) was
/// `sent_control_id`.
///
/// MSA-2 is compared first: an answer to another message says nothing about this one,
/// whatever its code. A reply that does not parse, has no MSA or an unknown MSA-1 is an
/// [`AckVerdict::Error`] naming the problem.
pub fn check_ack(sent_control_id: &str, ack_payload: &[u8]) -> AckVerdict {
    let ack = match read_ack(ack_payload) {
        Ok(ack) => ack,
        Err(problem) => return AckVerdict::Error(problem),
    };
    if ack.control_id != sent_control_id {
        return AckVerdict::Mismatch;
    }
    let text = ack.text.unwrap_or_default();
    match AckCode::parse(&ack.code) {
        Some(AckCode::AA | AckCode::CA) => AckVerdict::Accepted,
        Some(AckCode::AE | AckCode::CE) => AckVerdict::Error(text),
        Some(AckCode::AR | AckCode::CR) => AckVerdict::Rejected(text),
        None => AckVerdict::Error(format!(
            "unknown acknowledgement code {:?} in MSA-1",
            ack.code
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSH: &str = "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240102030405||ACK^R01^ACK|A1|P|2.5.1\r";

    fn ack(rest: &str) -> Vec<u8> {
        format!("{MSH}{rest}").into_bytes()
    }

    #[test]
    fn error_codes_are_told_without_the_receiver_text() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "MSA|AE|C42\rERR||PID^1^3|101^Required field missing^HL70357|E||||Doe John has no MRN\r",
                Some("ERR-3 101 at PID-3"),
            ),
            (
                "MSA|AR|C42\rERR||OBX^2^5|102^Data type error^HL70357|E\r",
                Some("ERR-3 102 at OBX[2]-5"),
            ),
            // Before v2.5: ERR-1 holds the location and the code.
            (
                "MSA|AE|C42\rERR|PV1^1^3^103&Table value not found&HL70357\r",
                Some("ERR-3 103 at PV1-3"),
            ),
            ("MSA|AE|C42\rERR||PID|207\r", Some("ERR-3 207 at PID")),
            ("MSA|AE|C42|database busy\r", None),
            // A "code" or "segment" that is really text is not repeated.
            (
                "MSA|AE|C42\rERR||Doe John^x|patient Doe John unknown\r",
                None,
            ),
        ];
        for (rest, expected) in cases {
            assert_eq!(ack_error_code(&ack(rest)).as_deref(), *expected, "{rest}");
        }
        assert_eq!(ack_error_code(b"not hl7"), None);
    }

    #[test]
    fn verdicts() {
        let cases: &[(&str, AckVerdict)] = &[
            ("MSA|AA|C42\r", AckVerdict::Accepted),
            ("MSA|CA|C42\r", AckVerdict::Accepted),
            ("MSA|AA|C43\r", AckVerdict::Mismatch),
            ("MSA|AR|C43|no\r", AckVerdict::Mismatch),
            ("MSA|AA\r", AckVerdict::Mismatch),
            (
                "MSA|AE|C42|short\rERR||PID^1^3|101^Required field missing^HL70357|E||||PID-3 is required\r",
                AckVerdict::Error("PID-3 is required".into()),
            ),
            (
                "MSA|CE|C42\rERR|||207^Application internal error^HL70357|E\r",
                AckVerdict::Error("Application internal error".into()),
            ),
            (
                "MSA|AR|C42\rERR|PID^1^3^101&Required field missing&HL70357\r",
                AckVerdict::Rejected("Required field missing".into()),
            ),
            (
                "MSA|CR|C42|duplicate \\T\\ late\r",
                AckVerdict::Rejected("duplicate & late".into()),
            ),
            ("MSA|AR|C42\r", AckVerdict::Rejected(String::new())),
            (
                "MSA|XX|C42\r",
                AckVerdict::Error("unknown acknowledgement code \"XX\" in MSA-1".into()),
            ),
            (
                "ERR|||207\r",
                AckVerdict::Error("acknowledgement has no MSA segment".into()),
            ),
        ];
        for (rest, verdict) in cases {
            assert_eq!(&check_ack("C42", &ack(rest)), verdict, "{rest}");
        }
    }

    #[test]
    fn reply_that_is_not_hl7() {
        let AckVerdict::Error(text) = check_ack("C42", b"hello") else {
            panic!("not an error");
        };
        assert!(
            text.starts_with("acknowledgement does not parse: "),
            "{text}"
        );
    }

    #[test]
    fn fields_of_an_ack() {
        let fields = read_ack(&ack(
            "MSA|AE|C42|see ERR\rERR||||E||||first\rERR||||E||||second\r",
        ))
        .unwrap();
        assert_eq!(
            fields,
            AckFields {
                code: "AE".into(),
                control_id: "C42".into(),
                text: Some("first".into()),
            }
        );
    }

    #[test]
    fn tls_needs_a_valid_server_name() {
        let config = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let err = MllpClient::new(
            "bad name:2575",
            Some(config.clone()),
            None,
            DEFAULT_CONNECT_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "invalid tls server name \"bad name\"");
        assert!(err.is_permanent());
        let client = MllpClient::new(
            "bad name:2575",
            Some(config),
            Some("localhost"),
            DEFAULT_CONNECT_TIMEOUT,
        )
        .unwrap();
        assert!(!client.is_connected());
    }

    #[tokio::test]
    async fn unframeable_payload_is_refused_before_connecting() {
        // Nothing listens on the address; the payload error must come first.
        let mut client =
            MllpClient::new("127.0.0.1:9", None, None, DEFAULT_CONNECT_TIMEOUT).unwrap();
        let err = client
            .send(b"MSH|\x1c", DEFAULT_ACK_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot send the message: payload contains the end-block byte 0x1c at byte 4"
        );
        assert!(err.is_permanent());
        assert_eq!(client.connections_opened(), 0);
    }
}
