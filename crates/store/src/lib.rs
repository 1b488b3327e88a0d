//! Durable message store and delivery queues: the [`Store`] trait and the embedded SQLite
//! backend ([`sqlite::SqliteStore`]) with group commit.
//!
//! # Map
//!
//! - this file: the [`Store`] trait and the plain data types it speaks in
//! - [`error`]: the one error type of the crate, [`Error`], with an [`ErrorKind`]
//! - [`crypto`]: the key file, XChaCha20-Poly1305 sealing of payloads, the patient-identifier index
//! - [`sqlite`]: the SQLite backend (one writer thread doing group commit, pooled readers, migrations)
//! - [`retention`]: the background task that purges payloads and metadata by age
//! - [`error_queue`]: sending a destination's error queue again, oldest failure first
//! - [`auth`]: users, tokens and the hash-chained audit log of the HTTP API (types and the
//!   chain's canonical encoding)
//!
//! # The contract
//!
//! The store is the only place durability lives. A source hands each inbound message to
//! [`Store::insert_inbound`]; the call returns only after the message, its delivery-queue entries
//! and its duplicate check are committed **and** flushed to disk (fsync), so the listener may
//! answer AA as soon as it returns `Ok`. An `Err` means nothing was stored: answer AE.
//!
//! Invariants every backend keeps:
//!
//! 1. A committed message is never lost and never silently dropped: duplicates and control-id
//!    reuse are stored and flagged, not discarded.
//! 2. Duplicate detection (same channel, sending application, sending facility, control id and
//!    payload SHA-256) runs inside the writer, so two copies racing in on two connections cannot
//!    both be routed.
//! 3. Delivery queues are FIFO per destination ([`Delivery::seq`] order). A claim is a lease
//!    (`claimed_by`, `lease_until`) kept in the database, never in memory, so several processes can
//!    share one store and a crashed worker's claim simply expires. Delivery is therefore
//!    **at-least-once**: a crash between sending and [`Store::complete`] re-delivers after the lease
//!    runs out; receivers de-duplicate by control id as HL7 expects.
//! 4. Payloads and ACK bytes are encrypted at rest, bound to their row (see [`crypto`]); patient
//!    identifiers are stored only as keyed hashes. Nothing PHI-bearing goes to logs or events.
//! 5. The store writes an [`Event`] in the same transaction as each transition it performs
//!    (duplicate, control-id reuse, state change, delivery outcome, requeue, purge), so the event
//!    log never disagrees with the tables.
//!
//! Times are unix milliseconds ([`UnixMillis`]) from the system clock of the process performing
//! the operation; processes sharing one database need synchronised clocks for leases to be fair.

#![forbid(unsafe_code)]

pub mod auth;
pub mod crypto;
pub mod error;
pub mod error_queue;
pub mod resources;
pub mod retention;
pub mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use auth::{
    AuditBreak, AuditEntry, AuditQuery, AuditVerification, NewAuditRecord, NewToken, NewUser, Role,
    StoredToken, TokenHash, TokenKind, User,
};
pub use error::{Error, ErrorKind};
pub use resources::{
    DatePrefix, DateTest, HistoryQuery, IndexEntry, IndexTest, IndexValue, NewNotification,
    Notification, NotificationOutcome, PendingState, PendingWrite, PutOutcome, QuantityTest,
    Reindex, ResourceChange, ResourcePage, ResourcePut, ResourceQuery, ResourceSort, SortBy,
    SortKey, StoredResource, ValueTest,
};
pub use retention::{
    RetentionConfig, RetentionHandle, RetentionPass, RetentionPolicy, run_retention_once,
    spawn_retention,
};
pub use sqlite::{SqliteOptions, SqliteStore};

/// The result type of every store operation.
pub type Result<T> = std::result::Result<T, Error>;

/// A boxed, sendable future: what the object-safe [`Store`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest raw message accepted, in bytes.
///
/// Above the MLLP listener's 16 MiB frame default (ORU results with embedded PDFs reach several
/// MiB) with room for other sources, yet small enough that one row cannot stall the single writer
/// for long or approach SQLite's 1 GB value limit.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;

/// Longest header field, channel, destination, peer, worker or patient identifier, in bytes.
///
/// HL7 caps MSH-10 at 199 characters and HD components similarly; 1 KiB accepts every real
/// sender while refusing garbage that would bloat the search indexes.
pub const MAX_FIELD_LEN: usize = 1024;

/// Most destinations one message may be queued to.
///
/// Real channels fan out to a handful of systems; the cap bounds the work one insert adds to a
/// group commit.
pub const MAX_DESTINATIONS: usize = 64;

/// Most patient identifiers indexed for one message.
///
/// PID-3 repetitions plus merge identifiers rarely exceed ten; the cap bounds index rows per insert.
pub const MAX_PATIENT_IDS: usize = 64;

/// Longest error or event detail text kept, in bytes; longer text is cut and marked `…[cut]`.
///
/// Remote systems can answer with huge error texts; 4 KiB keeps the useful head.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most rows a single [`Store::search`] or [`Store::events`] call returns.
///
/// Pages of results for a dashboard; bigger exports should page with `offset`.
pub const MAX_PAGE_LEN: u32 = 1000;

/// Row id of a stored message. Also bound into the payload's encryption as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A delivery's sequence number: its identity and its position in its destination's FIFO queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliverySeq(pub i64);

impl fmt::Display for DeliverySeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time as milliseconds since the unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The system clock now. A clock before 1970 reads as 0.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    /// `self + d`, saturating at the end of time.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// `self - d`, saturating at the beginning of time.
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

/// Lifecycle state of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// Stored; no routing decision recorded yet.
    Received,
    /// Accepted and routed to its destinations.
    Accepted,
    /// Refused (AR): kept for the audit trail, not routed.
    Rejected,
    /// Identical to an earlier message (same sender, control id and bytes): not routed again.
    Duplicate,
    /// Dropped by a channel filter on purpose: kept, not routed.
    Filtered,
    /// Processing failed (for example a transform error): kept for reprocessing.
    Error,
    /// Accepted (AA) but waiting for review before it is routed: a code map's `hold` policy met a
    /// code it does not know. Reprocessing after the map is fixed routes it.
    Held,
}

impl MessageState {
    /// Every state, in lifecycle order.
    pub const ALL: [MessageState; 7] = [
        Self::Received,
        Self::Accepted,
        Self::Rejected,
        Self::Duplicate,
        Self::Filtered,
        Self::Error,
        Self::Held,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::Filtered => "filtered",
            Self::Error => "error",
            Self::Held => "held",
        }
    }

    /// Parses [`MessageState::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of one message's delivery to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting in the destination's queue.
    Queued,
    /// Claimed by a worker whose lease has not been settled.
    InFlight,
    /// Sent and acknowledged.
    Delivered,
    /// Failed an attempt; claimable again from `next_attempt_at`.
    Retrying,
    /// Given up on: in the error queue until someone requeues it.
    Failed,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 5] = [
        Self::Queued,
        Self::InFlight,
        Self::Delivered,
        Self::Retrying,
        Self::Failed,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }

    /// Parses [`DeliveryState::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the delivery still occupies its queue (counts towards depth, blocks FIFO order).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::InFlight | Self::Retrying)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// MSH fields the caller has already extracted (the store does not parse HL7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// MSH-3, sending application (as sent, components included).
    pub sending_app: String,
    /// MSH-4, sending facility.
    pub sending_facility: String,
    /// MSH-9 as `TYPE^EVENT`, for example `ADT^A01`.
    pub message_type: String,
    /// MSH-10, message control id. Empty disables duplicate detection for this message.
    pub control_id: String,
    /// MSH-12, version id, for example `2.5.1`.
    pub version: String,
}

/// An inbound message to store.
#[derive(Clone, PartialEq)]
pub struct NewMessage {
    /// Channel that received it.
    pub channel: String,
    /// Remote address or other source description (not PHI).
    pub peer: String,
    /// When it was received.
    pub received_at: UnixMillis,
    /// Header fields for search and duplicate detection.
    pub header: Header,
    /// Patient identifiers to make searchable, as the engine normalises them (exact match).
    pub patient_ids: Vec<String>,
    /// The message exactly as received.
    pub raw: Vec<u8>,
    /// Destination queues to append it to, in this order. Ignored for a detected duplicate.
    pub destinations: Vec<String>,
    /// Initial state; a detected duplicate is stored as [`MessageState::Duplicate`] instead.
    pub state: MessageState,
    /// The ACK the caller will send once this insert commits, stored in the same transaction so
    /// a retransmission gets the very same ACK back. `None` to record it later with
    /// [`Store::record_ack`].
    pub ack: Option<Vec<u8>>,
    /// The bytes destinations receive, when the channel's transforms changed the message;
    /// `None` delivers `raw`. Encrypted like the payload and purged with it.
    pub outbound: Option<Vec<u8>>,
    /// Events about this message (kind, detail without PHI, e.g. an unmapped code), written in the
    /// same transaction so recording them costs the sender no extra commit. Not written for a
    /// detected duplicate (its original already has them).
    pub events: Vec<(EventKind, String)>,
    /// A FHIR API write this message carries to an EHR: stored with the message (sealed) and
    /// applied to the resource store only when a delivery of the message settles `delivered`.
    pub pending_resource: Option<ResourcePut>,
}

impl fmt::Debug for NewMessage {
    // Payload and patient identifiers are PHI: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("channel", &self.channel)
            .field("peer", &self.peer)
            .field("received_at", &self.received_at)
            .field("header", &self.header)
            .field(
                "patient_ids",
                &format_args!("[{} redacted]", self.patient_ids.len()),
            )
            .field("raw", &format_args!("[{} bytes redacted]", self.raw.len()))
            .field("destinations", &self.destinations)
            .field("state", &self.state)
            .field("ack", &self.ack.as_ref().map(Vec::len))
            .field(
                "outbound",
                &self
                    .outbound
                    .as_ref()
                    .map(|o| format!("[{} bytes redacted]", o.len())),
            )
            .finish()
    }
}

/// What [`Store::insert_inbound`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The new row (a duplicate gets its own row too, in state `duplicate`).
    pub id: MessageId,
    /// Set when the message repeats an earlier one byte for byte: nothing was queued.
    pub duplicate_of: Option<Duplicate>,
    /// Set when an earlier message from the same sender had this control id but different bytes.
    /// The message was stored, flagged and routed normally.
    pub control_id_reused: bool,
}

/// The earlier message a duplicate repeats.
#[derive(Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The original message.
    pub original: MessageId,
    /// The ACK stored for the original, to send again unchanged. `None` when none was recorded
    /// (for example a crash between commit and ACK): the caller builds a fresh AA, since the
    /// original is safely stored.
    pub ack: Option<Vec<u8>>,
}

impl fmt::Debug for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duplicate")
            .field("original", &self.original)
            .field(
                "ack",
                &self.ack.as_ref().map(|a| format!("[{} bytes]", a.len())),
            )
            .finish()
    }
}

/// Flags raised on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageFlags {
    /// An earlier message from the same sender had the same control id with different bytes.
    pub control_id_reused: bool,
}

/// A stored message's metadata (no payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// Row id.
    pub id: MessageId,
    /// Receiving channel.
    pub channel: String,
    /// Reception time.
    pub received_at: UnixMillis,
    /// Source description.
    pub peer: String,
    /// MSH fields.
    pub header: Header,
    /// Current state.
    pub state: MessageState,
    /// Raw size in bytes.
    pub size: u64,
    /// Raised flags.
    pub flags: MessageFlags,
    /// For a duplicate, the message it repeats.
    pub duplicate_of: Option<MessageId>,
    /// Whether retention has removed the payload.
    pub payload_purged: bool,
}

/// What [`Store::settle_and_claim`] wrote.
#[derive(Debug)]
pub struct SettledAndClaimed {
    /// One result per settled delivery, in order, as [`Store::complete_batch`] gives them.
    pub settled: Vec<Result<()>>,
    /// The next batch, as [`Store::claim_batch`] gives it.
    pub claimed: Vec<Delivery>,
}

/// A stored message with its payload decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Metadata.
    pub summary: MessageSummary,
    /// The bytes as received; `None` once retention purged them. A duplicate shares its
    /// original's bytes (they are identical by SHA-256) and returns those.
    pub raw: Option<Vec<u8>>,
    /// The ACK recorded for this message, if any.
    pub ack: Option<Vec<u8>>,
    /// The transformed bytes destinations receive; `None` when they receive `raw` (or once
    /// purged).
    pub outbound: Option<Vec<u8>>,
}

impl fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMessage")
            .field("summary", &self.summary)
            .field(
                "raw",
                &self
                    .raw
                    .as_ref()
                    .map(|r| format!("[{} bytes redacted]", r.len())),
            )
            .field(
                "ack",
                &self.ack.as_ref().map(|a| format!("[{} bytes]", a.len())),
            )
            .field(
                "outbound",
                &self
                    .outbound
                    .as_ref()
                    .map(|o| format!("[{} bytes redacted]", o.len())),
            )
            .finish()
    }
}

/// Criteria for [`Store::search`]; all set fields must match. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Receiving channel.
    pub channel: Option<String>,
    /// MSH-9 message code and event exactly, for example `ADT^A01`; or a message code alone,
    /// `ADT` or `ADT^*`, for every event of it.
    pub message_type: Option<String>,
    /// Message state.
    pub state: Option<MessageState>,
    /// MSH-10 exactly.
    pub control_id: Option<String>,
    /// MSH-3 (its first component) exactly, as summaries show it.
    pub sending_application: Option<String>,
    /// MSH-4 (its first component) exactly, as summaries show it.
    pub sending_facility: Option<String>,
    /// A patient identifier exactly as it was given at insert.
    pub patient_id: Option<String>,
    /// Received at or after.
    pub received_from: Option<UnixMillis>,
    /// Received strictly before.
    pub received_before: Option<UnixMillis>,
    /// Rows to return: 0 means [`MAX_PAGE_LEN`]; larger values are capped to it.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

/// One message's delivery to one destination.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Identity and FIFO position.
    pub seq: DeliverySeq,
    /// The message to deliver.
    pub message_id: MessageId,
    /// Channel of the message.
    pub channel: String,
    /// Destination queue name.
    pub destination: String,
    /// Current state.
    pub state: DeliveryState,
    /// Claims so far (each claim is one attempt). Also the fencing token of the current lease.
    pub attempts: u32,
    /// For `retrying`: not claimable before this time.
    pub next_attempt_at: Option<UnixMillis>,
    /// Last error reported by a worker.
    pub last_error: Option<String>,
    /// Last ACK received from the destination (decrypted).
    pub last_ack: Option<Vec<u8>>,
    /// Worker holding the lease (while `in_flight`).
    pub claimed_by: Option<String>,
    /// Lease expiry (while `in_flight`); after it, another worker may claim the delivery.
    pub lease_until: Option<UnixMillis>,
    /// When the delivery was queued.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("channel", &self.channel)
            .field("destination", &self.destination)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("last_error", &self.last_error)
            .field(
                "last_ack",
                &self
                    .last_ack
                    .as_ref()
                    .map(|a| format!("[{} bytes]", a.len())),
            )
            .field("claimed_by", &self.claimed_by)
            .field("lease_until", &self.lease_until)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Which deliveries of a destination a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimMode {
    /// Only the head of the queue. While the head is in flight (lease valid) or waiting for its
    /// retry time, the destination is blocked: strict order, as HL7 receivers expect.
    #[default]
    Fifo,
    /// The oldest claimable delivery, skipping those in flight or waiting: several workers can
    /// deliver concurrently, in roughly FIFO order.
    Parallel,
}

/// A request to claim work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who claims: unique per worker across all processes (for example `host:pid:destination`).
    pub worker: String,
    /// How long the claim holds before another worker may take the delivery over.
    pub lease: Duration,
    /// FIFO or parallel.
    pub mode: ClaimMode,
    /// The worker identity is stable across restarts and a worker holds at most one claim at
    /// a time: a delivery still leased under this identity was left by an earlier run that
    /// died, and is taken over at once instead of after its lease expires.
    pub resume_own: bool,
}

/// How an attempt ended, for [`Store::complete`].
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `ack` is the destination's response, if it sends one.
    Delivered {
        /// Response bytes.
        ack: Option<Vec<u8>>,
    },
    /// Failed in a way a later attempt may fix. `error` must not contain PHI (stored in clear).
    Retry {
        /// Why (no PHI).
        error: String,
        /// Not claimable before this time.
        next_attempt_at: UnixMillis,
        /// The receiver's answer (an AE, an HTTP error body), kept encrypted: its text may
        /// quote patient data, so it never goes into `error`.
        ack: Option<Vec<u8>>,
    },
    /// Failed for good: moves to the error queue. `error` must not contain PHI.
    Failed {
        /// Why (no PHI).
        error: String,
        /// The receiver's answer (an AR, an HTTP error body), kept encrypted.
        ack: Option<Vec<u8>>,
    },
    /// Not attempted (a batch stopped at an earlier failure): back in the queue as it was,
    /// the claim's attempt undone.
    Released,
}

impl Outcome {
    /// The receiver's answer this outcome carries, if any.
    pub fn ack(&self) -> Option<&[u8]> {
        match self {
            Self::Delivered { ack } | Self::Retry { ack, .. } | Self::Failed { ack, .. } => {
                ack.as_deref()
            }
            Self::Released => None,
        }
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered { ack } => f
                .debug_struct("Delivered")
                .field("ack", &ack.as_ref().map(|a| format!("[{} bytes]", a.len())))
                .finish(),
            Self::Retry {
                error,
                next_attempt_at,
                ack,
            } => f
                .debug_struct("Retry")
                .field("error", error)
                .field("next_attempt_at", next_attempt_at)
                .field("ack", &ack.as_ref().map(|a| format!("[{} bytes]", a.len())))
                .finish(),
            Self::Failed { error, ack } => f
                .debug_struct("Failed")
                .field("error", error)
                .field("ack", &ack.as_ref().map(|a| format!("[{} bytes]", a.len())))
                .finish(),
            Self::Released => f.write_str("Released"),
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A message repeated an earlier one and was not routed (written by the store).
    Duplicate,
    /// A control id came again with different bytes (written by the store).
    ControlIdReused,
    /// A message changed state through [`Store::set_state`] (written by the store).
    StateChanged,
    /// A delivery succeeded (written by the store).
    Delivered,
    /// A delivery attempt failed and will be retried (written by the store).
    Retrying,
    /// A delivery failed for good (written by the store).
    Failed,
    /// A delivery was queued again by [`Store::requeue`] (written by the store).
    Requeued,
    /// Retention removed data (written by the store).
    Purged,
    /// A connection opened or closed (written by the engine).
    Connection,
    /// A channel started or stopped (written by the engine).
    Lifecycle,
    /// A configured alert fired (written by the engine).
    Alert,
    /// A coded value no code map of its sender knew (written by the engine; the detail names the
    /// map, field, system and code, which are vocabulary, not patient data).
    UnmappedCode,
    /// A feed changed from its learned profile: a new message type, segment or code, or a
    /// field's fill rate (written by the engine; the detail names types, segments, fields, codes
    /// of coded fields and rates, never other values).
    Drift,
    /// Anything else worth recording (written by the engine).
    Note,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 14] = [
        Self::Duplicate,
        Self::ControlIdReused,
        Self::StateChanged,
        Self::Delivered,
        Self::Retrying,
        Self::Failed,
        Self::Requeued,
        Self::Purged,
        Self::Connection,
        Self::Lifecycle,
        Self::Alert,
        Self::UnmappedCode,
        Self::Drift,
        Self::Note,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::ControlIdReused => "control_id_reused",
            Self::StateChanged => "state_changed",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Requeued => "requeued",
            Self::Purged => "purged",
            Self::Connection => "connection",
            Self::Lifecycle => "lifecycle",
            Self::Alert => "alert",
            Self::UnmappedCode => "unmapped_code",
            Self::Drift => "drift",
            Self::Note => "note",
        }
    }

    /// Parses [`EventKind::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to record. `detail` is stored in clear and must not contain PHI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Channel concerned.
    pub channel: String,
    /// Destination concerned, if any.
    pub destination: Option<String>,
    /// Message concerned, if any.
    pub message_id: Option<MessageId>,
    /// What happened.
    pub kind: EventKind,
    /// Human-readable detail, no PHI (control ids, types, sizes, counts, error classes).
    pub detail: String,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing id: tail the log with [`EventFilter::after`].
    pub id: i64,
    /// When it was recorded.
    pub at: UnixMillis,
    /// Channel concerned.
    pub channel: String,
    /// Destination concerned.
    pub destination: Option<String>,
    /// Message concerned.
    pub message_id: Option<MessageId>,
    /// What happened.
    pub kind: EventKind,
    /// Detail text.
    pub detail: String,
}

/// Criteria for [`Store::events`]; all set fields must match. Oldest first unless `newest_first`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Channel.
    pub channel: Option<String>,
    /// Destination.
    pub destination: Option<String>,
    /// Message.
    pub message_id: Option<MessageId>,
    /// Kind.
    pub kind: Option<EventKind>,
    /// Only events with a larger id (for tailing).
    pub after: Option<i64>,
    /// Recorded at or after.
    pub since: Option<UnixMillis>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Rows to return: 0 means [`MAX_PAGE_LEN`]; larger values are capped to it.
    pub limit: u32,
}

/// What one [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Messages whose payload was removed (metadata kept).
    pub payloads_cleared: u64,
    /// Messages removed entirely, with their deliveries, ACKs and identifiers.
    pub messages_deleted: u64,
    /// Events removed.
    pub events_deleted: u64,
}

impl PurgeReport {
    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: PurgeReport) {
        self.payloads_cleared += other.payloads_cleared;
        self.messages_deleted += other.messages_deleted;
        self.events_deleted += other.events_deleted;
    }
}

/// Counters of the write path, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Transactions committed (each one fsync of the log with SQLite `synchronous=FULL`).
    pub commits: u64,
    /// Commits that failed (every operation in that group got an error).
    pub failed_commits: u64,
    /// Inbound messages committed (duplicates included).
    pub messages: u64,
    /// Write operations committed, of every kind.
    pub operations: u64,
    /// Time the writer spent running operations inside transactions (before COMMIT).
    pub work_time: Duration,
    /// Time the writer spent in COMMIT, which is mostly waiting for fsync.
    pub commit_time: Duration,
    /// Committed transactions by how long each took from BEGIN to the end of COMMIT (what
    /// every write in it waited for, beyond its time in the queue): `group_time[i]` fell in
    /// `(GROUP_TIME_BOUNDS_MS[i-1], GROUP_TIME_BOUNDS_MS[i]]`, the last above every bound.
    pub group_time: [u64; GROUP_TIME_BUCKETS],
}

/// Upper bounds, in milliseconds, of the [`WriteStats::group_time`] buckets: from a fast disk's
/// group commit to a stalled one. The engine's latency histograms use the same, so the two read
/// side by side.
pub const GROUP_TIME_BOUNDS_MS: [f64; 15] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0,
];

/// Buckets of [`WriteStats::group_time`]: one per bound, and one above them all.
pub const GROUP_TIME_BUCKETS: usize = GROUP_TIME_BOUNDS_MS.len() + 1;

impl WriteStats {
    /// The bucket of [`WriteStats::group_time`] a transaction of `took` belongs in.
    pub fn group_time_bucket(took: Duration) -> usize {
        let ms = took.as_secs_f64() * 1000.0;
        GROUP_TIME_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(GROUP_TIME_BOUNDS_MS.len())
    }

    /// Commits per stored message; below 1 means group commit is batching.
    pub fn commits_per_message(&self) -> f64 {
        if self.messages == 0 {
            return 0.0;
        }
        self.commits as f64 / self.messages as f64
    }
}

/// The durable store. Object safe: the engine holds an `Arc<dyn Store>` whatever the backend.
///
/// Every write returns only after it is committed and flushed. Reads see every write that has
/// returned. Methods taking a destination name treat it as an opaque queue name, unique across
/// channels (the engine qualifies it).
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores an inbound message with its delivery entries (and its ACK, if given), running the
    /// duplicate check in the same transaction.
    ///
    /// Duplicate: an earlier message of the same channel with the same sending application,
    /// sending facility, control id and payload SHA-256, whose state is not `error` (after an
    /// AE the sender retransmits and expects processing). The copy is stored in state
    /// `duplicate`, nothing is queued, and the original's stored ACK is returned to be sent
    /// again. Same key with different bytes: stored, flagged `control_id_reused`, routed.
    /// An empty control id disables the check.
    ///
    /// Returns only once committed and flushed; a dropped future does not cancel the write.
    fn insert_inbound(&self, msg: NewMessage) -> BoxFuture<'_, Result<InsertOutcome>>;

    /// Records (or replaces) the ACK sent for a message.
    fn record_ack(&self, id: MessageId, ack: Vec<u8>) -> BoxFuture<'_, Result<()>>;

    /// Changes a message's state and records a [`EventKind::StateChanged`] event.
    fn set_state(&self, id: MessageId, state: MessageState) -> BoxFuture<'_, Result<()>>;

    /// A message with its payload decrypted; `None` if there is no such row.
    fn message(&self, id: MessageId) -> BoxFuture<'_, Result<Option<StoredMessage>>>;

    /// A message as a destination sends it: metadata, and the transformed copy (`outbound`)
    /// when there is one, else the raw bytes (`raw`); the other copy and the ACK are left out
    /// (`None`), which spares a backend their decryption. The default reads everything.
    fn outgoing(&self, id: MessageId) -> BoxFuture<'_, Result<Option<StoredMessage>>> {
        self.message(id)
    }

    /// Message metadata matching `filter`, newest first.
    fn search(&self, filter: SearchFilter) -> BoxFuture<'_, Result<Vec<MessageSummary>>>;

    /// Every delivery of a message, oldest first.
    fn deliveries(&self, id: MessageId) -> BoxFuture<'_, Result<Vec<Delivery>>>;

    /// Claims the next delivery of `destination` under a lease, or `None` when nothing is
    /// claimable (empty queue, or in FIFO mode a head that is leased or waiting to retry).
    /// A delivery left `in_flight` by a crashed worker becomes claimable when its lease expires,
    /// or at once by the same worker identity when the claim sets [`Claim::resume_own`].
    fn claim_next<'a>(
        &'a self,
        destination: &'a str,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<Option<Delivery>>>;

    /// Claims up to `max` deliveries of `destination` in queue order in one write, under one
    /// lease: FIFO takes the head and the entries right behind it while they are claimable,
    /// so a batch keeps order. Settle them with [`Store::complete_batch`].
    fn claim_batch<'a>(
        &'a self,
        destination: &'a str,
        claim: &'a Claim,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Settles several claimed deliveries in one write; one result per delivery, in order
    /// (a lost lease fails that delivery only).
    fn complete_batch(
        &self,
        settled: Vec<(Delivery, Outcome)>,
    ) -> BoxFuture<'_, Result<Vec<Result<()>>>>;

    /// Settles a finished batch and claims the next one of `destination` in the same write:
    /// one commit to wait for per batch instead of two, which is what a FIFO worker does in a
    /// loop. The results are [`Store::complete_batch`]'s; the claim sees the batch settled. An
    /// error means the write failed: nothing was settled nor claimed (the default, which calls
    /// the two methods in turn, may have settled).
    fn settle_and_claim<'a>(
        &'a self,
        settled: Vec<(Delivery, Outcome)>,
        destination: &'a str,
        claim: &'a Claim,
        max: usize,
    ) -> BoxFuture<'a, Result<SettledAndClaimed>> {
        Box::pin(async move {
            let settled = self.complete_batch(settled).await?;
            let claimed = self.claim_batch(destination, claim, max).await?;
            Ok(SettledAndClaimed { settled, claimed })
        })
    }

    /// Extends the lease of a claimed delivery; returns the new expiry.
    /// [`ErrorKind::LeaseLost`] if another worker took it over.
    fn renew_lease<'a>(
        &'a self,
        delivery: &'a Delivery,
        lease: Duration,
    ) -> BoxFuture<'a, Result<UnixMillis>>;

    /// Settles a claimed delivery. [`ErrorKind::LeaseLost`] if its lease expired and another
    /// worker claimed it meanwhile (that worker's result wins).
    fn complete<'a>(
        &'a self,
        delivery: &'a Delivery,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<()>>;

    /// Appends a new delivery of a stored message to the tail of `destination` (reprocess,
    /// resend from the error queue). Refused while the message already has a pending delivery
    /// there, or when its payload was purged.
    fn requeue<'a>(
        &'a self,
        id: MessageId,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<DeliverySeq>>;

    /// [`Store::requeue`] for several messages, in order, in one commit: each gets its own
    /// outcome, and one refused as `requeue` refuses it (not found, purged, already pending)
    /// leaves the others queued. Fails as a whole (nothing queued) only when the store does.
    fn requeue_many<'a>(
        &'a self,
        ids: Vec<MessageId>,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Result<DeliverySeq>>>>;

    /// Records the outcome of running a stored message through its channel again: its new
    /// state and outbound bytes, and a new delivery at the tail of each of `destinations`
    /// (skipping those where it is still pending). Returns the deliveries created.
    fn reprocess<'a>(
        &'a self,
        id: MessageId,
        state: MessageState,
        outbound: Option<Vec<u8>>,
        destinations: Vec<String>,
    ) -> BoxFuture<'a, Result<Vec<DeliverySeq>>>;

    /// Deliveries still pending (queued, in flight or retrying) for `destination`.
    fn queue_depth<'a>(&'a self, destination: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Age of the oldest pending delivery of `destination`, `None` if the queue is empty.
    fn oldest_queued_age<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<Option<Duration>>>;

    /// Records an event.
    fn add_event(&self, event: NewEvent) -> BoxFuture<'_, Result<()>>;

    /// Events matching `filter`.
    fn events(&self, filter: EventFilter) -> BoxFuture<'_, Result<Vec<Event>>>;

    /// Retention for one channel: removes the payload of messages received before
    /// `payload_older_than`, and whole messages (with deliveries, ACKs, identifiers) and events
    /// before `metadata_older_than`. Messages with a pending delivery are never touched.
    /// Works in bounded chunks so inbound traffic keeps flowing.
    fn purge<'a>(
        &'a self,
        channel: &'a str,
        payload_older_than: Option<UnixMillis>,
        metadata_older_than: Option<UnixMillis>,
    ) -> BoxFuture<'a, Result<PurgeReport>>;

    // --- FHIR resources (the API's store) ---

    /// Writes resources in one transaction, all or none: a new version of each (or none when
    /// its content is unchanged), its search values replaced. Fails with
    /// [`ErrorKind::Conflict`] when an `if_match` does not hold. Returns once flushed.
    fn put_resources(&self, puts: Vec<ResourcePut>) -> BoxFuture<'_, Result<Vec<PutOutcome>>>;

    /// Starts loading about `resources` resources at once (an archive import). A backend may
    /// stop maintaining the search indexes that cost far more to keep up row by row than to
    /// build again by sorting (random keys: each row dirties a page of its own), when the load
    /// is large beside what the store holds. Searches stay correct meanwhile, only slower.
    /// Returns whether it did; then [`Store::end_bulk_load`] must follow (a store opened
    /// again builds them too, so an interrupted load leaves nothing broken).
    fn begin_bulk_load(&self, resources: u64) -> BoxFuture<'_, Result<bool>> {
        let _ = resources;
        Box::pin(async { Ok(false) })
    }

    /// Builds again what [`Store::begin_bulk_load`] suspended; nothing when nothing was.
    fn end_bulk_load(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// The current version of a resource (`version: None`) or a given one; a deleted resource
    /// is returned with `deleted` set. `None` when it never existed.
    fn resource<'a>(
        &'a self,
        resource_type: &'a str,
        id: &'a str,
        version: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<StoredResource>>>;

    /// Versions, newest first.
    fn resource_history(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<StoredResource>>>;

    /// Current, live resources matching `query`, with the total count.
    fn search_resources(&self, query: ResourceQuery) -> BoxFuture<'_, Result<ResourcePage>>;

    /// The state of the API write a message carries, `None` when it carries none.
    fn pending_resource(&self, message: MessageId) -> BoxFuture<'_, Result<Option<PendingWrite>>>;

    /// The current, live resources of one type after `position` in storage order (0 to
    /// start; [`ResourceChange::position`] is then the resource's place, to continue after), at
    /// most `limit`. A maintenance scan: each page costs the same however far it is.
    fn scan_resources<'a>(
        &'a self,
        resource_type: &'a str,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ResourceChange>>>;

    /// Versions written after `position` (see [`ResourceChange::position`]), oldest first, at
    /// most `limit`; deletions included.
    fn resource_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ResourceChange>>>;

    /// The position a named scanner recorded (0 before the first).
    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64>>;

    /// Replaces the search values of current resources without making new versions (after
    /// the extraction of search values changed), and then moves the named cursor, if given,
    /// to `position`, in one transaction. An entry whose version is no longer the current,
    /// live one is skipped: the write that replaced it indexed it already. Returns how many
    /// resources were reindexed.
    fn reindex_resources(
        &self,
        items: Vec<Reindex>,
        cursor: Option<(String, i64)>,
    ) -> BoxFuture<'_, Result<u64>>;

    /// Queues notifications (an existing one for the same subscription and version is kept,
    /// so a scan repeated after a crash sends nothing twice) and moves the cursor, in one
    /// transaction.
    fn queue_notifications(
        &self,
        cursor: String,
        position: i64,
        notifications: Vec<NewNotification>,
    ) -> BoxFuture<'_, Result<()>>;

    /// Claims up to `max` due notifications (queued, retrying and due, or with an expired
    /// lease) for `worker`, leased for `lease`.
    fn claim_notifications<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notification>>>;

    /// Settles a claimed notification; [`ErrorKind::LeaseLost`] if another worker took it.
    fn settle_notification(
        &self,
        notification: Notification,
        outcome: NotificationOutcome,
    ) -> BoxFuture<'_, Result<()>>;

    /// Write-path counters since open.
    fn stats(&self) -> WriteStats;

    /// Finishes queued writes and releases the database. Later calls fail with
    /// [`ErrorKind::Closed`].
    fn close(&self) -> BoxFuture<'_, Result<()>>;

    // --- users, tokens and audit (server) ---

    /// Creates a user. [`ErrorKind::InvalidInput`] when the name is taken or malformed.
    fn create_user(&self, user: NewUser) -> BoxFuture<'_, Result<()>>;

    /// Creates `user` only if no user exists at all (the first start's administrator), in one
    /// write, so two processes starting together create one. Returns whether it did.
    fn create_first_user(&self, user: NewUser) -> BoxFuture<'_, Result<bool>>;

    /// Replaces a user's password hash and ends the user's sessions. `false`: no such user.
    fn set_password<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Changes a user's role (sessions see it at their next request). `false`: no such user.
    fn set_role<'a>(&'a self, username: &'a str, role: Role) -> BoxFuture<'a, Result<bool>>;

    /// Removes a user and ends the user's sessions. `false`: no such user.
    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// A user by name.
    fn user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<User>>>;

    /// Every user, by name.
    fn users(&self) -> BoxFuture<'_, Result<Vec<User>>>;

    /// Records the `jti` of a client assertion from `issuer`, kept until `expires_at`. Returns
    /// `false` when it is already recorded (a replay), in this process or any other sharing the
    /// database.
    fn record_jti<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: UnixMillis,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Stores a token by its hash (and sweeps expired ones).
    fn insert_token(&self, token: NewToken) -> BoxFuture<'_, Result<()>>;

    /// A token by its hash, expired or not (the caller compares `expires_at`).
    fn token(&self, hash: TokenHash) -> BoxFuture<'_, Result<Option<StoredToken>>>;

    /// Revokes a token. `false`: there was none.
    fn delete_token(&self, hash: TokenHash) -> BoxFuture<'_, Result<bool>>;

    /// Appends a record to the audit chain; returns it as stored (id, time, hashes).
    fn append_audit(&self, record: NewAuditRecord) -> BoxFuture<'_, Result<AuditEntry>>;

    /// Audit records matching `query`, newest first, queries opened.
    fn audit_records(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditEntry>>>;

    /// Recomputes the whole audit chain and reports the first broken record, if any.
    fn verify_audit(&self) -> BoxFuture<'_, Result<AuditVerification>>;

    // --- management (server) ---

    /// The error queue of `destination`: its deliveries that failed for good and were not
    /// queued again since (a resend or reprocess appends a newer delivery of the message to
    /// the same destination, which takes it out), most recently queued first. `limit` rows (0 means
    /// [`MAX_PAGE_LEN`]; larger values are capped to it) after `offset`, with the total.
    fn error_queue<'a>(
        &'a self,
        destination: &'a str,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, Result<ErrorQueue>>;
}

/// One page of a destination's error queue ([`Store::error_queue`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorQueue {
    /// Deliveries in the error queue, all pages together.
    pub total: u64,
    /// The page asked for, most recently queued first.
    pub entries: Vec<FailedDelivery>,
}

/// A delivery in an error queue with the metadata of its message (no payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub delivery: Delivery,
    pub message: MessageSummary,
}

/// Cuts `text` to [`MAX_TEXT_LEN`] bytes on a character boundary, marking the cut.
pub(crate) fn clip_text(text: &str) -> String {
    const MARK: &str = "…[cut]";
    if text.len() <= MAX_TEXT_LEN {
        return text.to_owned();
    }
    let mut end = MAX_TEXT_LEN - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in MessageState::ALL {
            assert_eq!(MessageState::parse(s.as_str()), Some(s));
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MessageState::parse("Accepted"), None);
    }

    #[test]
    fn clip_text_cuts_on_a_char_boundary_and_marks_it() {
        let short = "connection refused";
        assert_eq!(clip_text(short), short);
        let long = "é".repeat(MAX_TEXT_LEN);
        let clipped = clip_text(&long);
        assert!(clipped.len() <= MAX_TEXT_LEN);
        assert!(clipped.ends_with("…[cut]"));
    }

    #[test]
    fn debug_output_hides_payload_and_patient_ids() {
        let msg = NewMessage {
            channel: "adt".into(),
            peer: "127.0.0.1:1".into(),
            received_at: UnixMillis(1),
            header: Header::default(),
            patient_ids: vec!["MRN-SECRET-42".into()],
            raw: b"PID|||SECRET-NAME".to_vec(),
            destinations: vec![],
            state: MessageState::Received,
            ack: None,
            outbound: None,
            events: Vec::new(),
            pending_resource: None,
        };
        let text = format!("{msg:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("17 bytes redacted"), "{text}");
    }

    #[test]
    fn group_times_fall_in_the_bucket_their_bound_closes() {
        let ms = |m: f64| Duration::from_secs_f64(m / 1000.0);
        assert_eq!(WriteStats::group_time_bucket(Duration::ZERO), 0);
        assert_eq!(WriteStats::group_time_bucket(ms(0.5)), 0);
        assert_eq!(WriteStats::group_time_bucket(ms(0.6)), 1);
        assert_eq!(WriteStats::group_time_bucket(ms(10.0)), 4);
        assert_eq!(WriteStats::group_time_bucket(ms(1000.0)), 10);
        assert_eq!(WriteStats::group_time_bucket(ms(1000.1)), 11);
        assert_eq!(
            WriteStats::group_time_bucket(Duration::from_secs(3600)),
            GROUP_TIME_BUCKETS - 1
        );
    }

    #[test]
    fn unix_millis_arithmetic_saturates() {
        assert_eq!(UnixMillis(5).plus(Duration::from_millis(3)), UnixMillis(8));
        assert_eq!(
            UnixMillis(i64::MAX).plus(Duration::from_secs(1)),
            UnixMillis(i64::MAX)
        );
        assert_eq!(UnixMillis(5).minus(Duration::from_millis(3)), UnixMillis(2));
        assert_eq!(UnixMillis(5).since(UnixMillis(9)), Duration::ZERO);
        assert_eq!(UnixMillis(9).since(UnixMillis(5)), Duration::from_millis(4));
    }
}
