//! The embedded SQLite backend.
//!
//! # On-disk format
//!
//! ```text
//! <data dir>/            created with mode 0700
//!   causeway.db          SQLite database, schema in crates/store/migrations/, version in
//!                        PRAGMA user_version
//!   causeway.db-wal      write-ahead log: committed transactions not yet checkpointed
//!   causeway.db-shm      WAL index (rebuilt from the WAL if lost)
//!   store.key            master key, mode 0600 (see crate::crypto)
//! ```
//!
//! Tables: `messages` (one row per inbound message, payload sealed), `message_patient_ids`
//! (keyed hashes of identifiers), `deliveries` (per-destination FIFO queues, `seq` order, lease
//! columns), `acks` (the ACK sent per message, sealed), `events` (transitions, no PHI), `meta`
//! (the key check value); for the HTTP API `users`, `auth_tokens`, `jwt_replay` and the
//! hash-chained `audit_log` (see [`crate::auth`]).
//!
//! # Invariants and what a crash leaves behind
//!
//! - Journal mode WAL with `synchronous=FULL`: a transaction is durable once COMMIT returns,
//!   because the WAL is fsynced before it does. Only then does a caller get its answer.
//! - A crash loses at most the group being written, whose callers were never answered (so no
//!   AA went out for them and senders will retransmit). Reopening lets SQLite replay the WAL up
//!   to the last complete commit record and ignore a torn tail.
//! - Deliveries left `in_flight` by a crash keep their lease until `lease_until`; then any
//!   claim takes them over and delivers again (at-least-once). Nothing needs repair at open,
//!   and nothing in memory is needed to resume: several processes may share the file.
//! - Migrations run at open in one transaction (see [`migrations`]).
//! - A database that holds a key check refuses a missing or different key file.
//!
//! # Concurrency
//!
//! One writer thread (`causeway-writer`) owns the write connection and commits groups of jobs
//! ([`writer`]); every write, claims included, goes through it, so SQLite never sees two
//! writers from one process. A checkpointer thread (`causeway-ckpt`) copies the WAL into the
//! database off the commit path ([`checkpoint`]). Reads use a small pool of query-only
//! connections in tokio's blocking pool. Other processes may open the same directory: SQLite's
//! file locks serialise their groups with ours, and ids are allocated under that lock.

mod auth;
mod checkpoint;
mod ids;
mod migrations;
mod notify;
mod read;
mod resources;
mod rows;
mod write;
mod writer;

use std::fmt;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, params};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, oneshot};

use ids::MessageIds;
pub use migrations::SCHEMA_VERSION;
use write::{PreparedInsert, WriteCx};
use writer::{Batching, Msg, Op, Stats};

use crate::crypto::{self, Cipher, KEY_FILE_NAME, MasterKey};
use crate::{
    BoxFuture, Claim, Delivery, DeliverySeq, Error, Event, EventFilter, HistoryQuery,
    InsertOutcome, MAX_DESTINATIONS, MAX_FIELD_LEN, MAX_PATIENT_IDS, MAX_PAYLOAD_LEN, MessageId,
    MessageState, MessageSummary, NewEvent, NewMessage, NewNotification, Notification,
    NotificationOutcome, Outcome, PendingWrite, PurgeReport, PutOutcome, Reindex, ResourceChange,
    ResourcePage, ResourcePut, ResourceQuery, Result, SearchFilter, SettledAndClaimed, Store,
    StoredMessage, StoredResource, UnixMillis, WriteStats,
};

/// Name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "causeway.db";

/// Default most jobs per group commit.
///
/// SQLite reaches ~75k messages/s at 64 per commit on the reference machine; a larger cap lets a
/// backlog drain in fewer fsyncs while bounding one commit's latency to a few milliseconds.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Default wait for more jobs once a group has its first.
///
/// Zero: groups form naturally from whatever queued up during the previous fsync, so a lone
/// message is not delayed, and under load batches grow with the number of waiting senders.
pub const DEFAULT_MAX_WAIT: Duration = Duration::ZERO;

/// Default bytes of payload that may wait in front of the writer.
///
/// Bounds memory under overload (callers wait for room instead); 256 MiB holds thousands of
/// ordinary messages and several maximal ones.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;

/// Default number of pooled read connections (and reads running at once).
///
/// Reads are short and CPU-bound once cached: a few per core keep the cores busy while one
/// waits on a cold page; more only switch contexts.
pub const DEFAULT_READ_CONNECTIONS: usize = 8;

/// Default wait for a lock held by another connection or process before failing.
///
/// Long enough to ride out a checkpoint or another process's group commit, short enough that
/// an AE goes back well inside a sender's ACK timeout.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages (or events) removed per purge step; steps interleave with inbound traffic.
///
/// 500 rows keep one step well under the time of a few ordinary group commits.
pub const PURGE_CHUNK: i64 = 500;

/// Bytes of WAL kept on disk after a checkpoint resets it.
///
/// Avoids regrowing the file (and its metadata fsyncs) for ordinary bursts while returning the
/// space a huge burst used.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Page cache per connection, in KiB (8 MiB: 2,048 pages of 4 KiB).
///
/// Enough for the hot index pages of a busy store, and no more: when a commit's B-tree rebalance
/// has parked a page at SQLite's lock-byte page number (a temporary key far past the end of the
/// file), ending that transaction scans the cache's whole hash table, so each commit pays in
/// proportion to this size. With 32 MiB that scan was a tenth of the writer's CPU; pages that
/// do not fit are read back from the OS page cache in microseconds.
const PAGE_CACHE_KIB: i64 = 8 * 1024;

/// Payloads above this size are hashed and compressed in the blocking pool rather than on the
/// async worker.
///
/// SHA-256 runs at roughly 0.5 GB/s here and zstd level 1 faster: 1 MiB costs a few ms, the
/// most a tokio worker should be held; a 16 MiB ORU with PDFs would otherwise stall other
/// connections for tens of ms.
const HASH_INLINE_LIMIT: usize = 1024 * 1024;

/// Semaphore units are KiB of payload, so a permit count fits in `u32`.
const PERMIT_UNIT: usize = 1024;

/// Most deliveries one [`Store::claim_batch`] takes: a batch shares one lease, so a crash
/// re-delivers at most this many messages.
pub const MAX_CLAIM_BATCH: usize = 256;

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most jobs per group commit.
    pub max_batch: usize,
    /// How long a group waits for more jobs after its first (zero: take what is queued).
    pub max_wait: Duration,
    /// Payload bytes that may queue in front of the writer before callers wait.
    pub max_pending_bytes: usize,
    /// Pooled read connections kept open.
    pub read_connections: usize,
    /// Lock wait before an operation fails.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_wait: DEFAULT_MAX_WAIT,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            read_connections: DEFAULT_READ_CONNECTIONS,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The SQLite store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db_path: PathBuf,
    options: SqliteOptions,
    cipher: Arc<Cipher>,
    /// Message ids, handed out when a message is prepared so that it is sealed off the writer.
    ids: Arc<MessageIds>,
    /// `None` once closed.
    sender: Mutex<Option<Sender<Msg>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    permits: Arc<Semaphore>,
    total_permits: u32,
    readers: Mutex<Vec<Connection>>,
    /// One per pooled read connection: reads beyond the pool wait instead of opening (and
    /// then closing) connections of their own, which costs a schema parse and cold caches.
    read_slots: Arc<Semaphore>,
    stats: Arc<Stats>,
    closed: AtomicBool,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.options)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their contents half-updated.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_connection(path: &Path, busy_timeout: Duration, read_only: bool) -> Result<Connection> {
    let db = |e| Error::db("open database", e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db)?;
    conn.busy_timeout(busy_timeout).map_err(db)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::db(
            "open database",
            std::io::Error::other(format!("journal mode is {mode}, WAL could not be enabled")),
        ));
    }
    let pragma = |name: &str, value: &dyn rusqlite::ToSql| conn.pragma_update(None, name, value);
    pragma("synchronous", &"FULL").map_err(db)?;
    // Statement and savepoint journals in memory (a group commit that starts over after a
    // failed job runs one savepoint per job).
    pragma("temp_store", &"MEMORY").map_err(db)?;
    pragma("cache_size", &-PAGE_CACHE_KIB).map_err(db)?;
    pragma("journal_size_limit", &WAL_SIZE_LIMIT).map_err(db)?;
    // Plans that do not depend on bound values: without this, SQLite re-prepares a cached
    // statement when some parameters are rebound (a fifth of the writer's CPU in profiles).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db)?;
    if read_only {
        conn.pragma_update(None, "query_only", true).map_err(db)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`: creates the directory (0700), the database
    /// and the key file (0600), applies migrations, checks the key, starts the writer thread.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Io`], [`crate::ErrorKind::Key`], [`crate::ErrorKind::Schema`] or
    /// [`crate::ErrorKind::Database`] as the failing step dictates.
    pub async fn open(dir: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, options))
            .await
            .map_err(|e| Error::db("open database", e))?
    }

    fn open_blocking(dir: PathBuf, options: SqliteOptions) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io("create data directory", &dir, e))?;
        crypto::remove_stale_tmp_keys(&dir);
        let db_path = dir.join(DB_FILE_NAME);
        let key_path = dir.join(KEY_FILE_NAME);
        let mut conn = open_connection(&db_path, options.busy_timeout, false)?;
        let from = migrations::migrate(&mut conn, &db_path)?;
        if from != SCHEMA_VERSION {
            tracing::info!(from, to = SCHEMA_VERSION, path = %db_path.display(), "store schema migrated");
        }
        // A bulk load that was interrupted left its suspended indexes unbuilt.
        if resources::build_value_indexes(&conn)? {
            tracing::info!(path = %db_path.display(), "search value indexes rebuilt after an interrupted bulk load");
        }
        let stored_check = read::key_check(&conn)?;
        let (key, created) = MasterKey::load_or_create(&key_path, stored_check.is_none())?;
        if created {
            tracing::info!(path = %key_path.display(), "store key file created");
        }
        let cipher = Cipher::new(&key);
        drop(key);
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?1)",
            params![&cipher.key_check()[..]],
        )
        .map_err(|e| Error::db("write key check", e))?;
        // Re-read: another process may have recorded its key first.
        if read::key_check(&conn)?.as_deref() != Some(&cipher.key_check()[..]) {
            return Err(Error::Key {
                path: key_path,
                reason: format!(
                    "does not match {} (sealed with another key)",
                    db_path.display()
                ),
            });
        }

        let cipher = Arc::new(cipher);
        let stats = Arc::new(Stats::default());
        // Checkpoints run on their own thread, off the commit path; the writer checkpoints
        // itself only when that thread could not keep the WAL short (see `checkpoint`).
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpoint::WRITER_FALLBACK_FRAMES,
        )
        .map_err(|e| Error::db("open database", e))?;
        let checkpoint_conn = open_connection(&db_path, options.busy_timeout, false)?;
        let (nudge, nudges) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("causeway-ckpt".into())
            .spawn(move || checkpoint::run(checkpoint_conn, nudges))
            .map_err(|e| Error::io("start checkpoint thread for", &db_path, e))?;

        let (tx, rx) = mpsc::channel();
        let batching = Batching {
            max_batch: options.max_batch,
            max_wait: options.max_wait,
            checkpoint: Some((nudge, checkpointer)),
        };
        let ids = Arc::new(MessageIds::after(last_message_id(&conn)?));
        let writer = {
            let (cipher, ids, stats) = (Arc::clone(&cipher), Arc::clone(&ids), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("causeway-writer".into())
                .spawn(move || writer::run(conn, rx, cipher, ids, stats, batching))
                .map_err(|e| Error::io("start writer thread for", &db_path, e))?
        };
        let total_permits =
            u32::try_from((options.max_pending_bytes / PERMIT_UNIT).max(1)).unwrap_or(u32::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                db_path,
                cipher,
                ids,
                sender: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                permits: Arc::new(Semaphore::new(total_permits as usize)),
                total_permits,
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(Semaphore::new(options.read_connections.max(1))),
                stats,
                closed: AtomicBool::new(false),
                options,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Path of the database file.
    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// Path of the key file.
    pub fn key_path(&self) -> PathBuf {
        self.inner.dir.join(KEY_FILE_NAME)
    }

    /// Write-path counters since open.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.stats.snapshot()
    }

    /// Sends `f` to the writer and waits until its group has committed.
    async fn write<T, F>(&self, payload_len: usize, inbound: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut WriteCx<'_>) -> Result<T> + Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let units = u32::try_from(payload_len / PERMIT_UNIT + 1).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.inner.permits)
            .acquire_many_owned(units.min(self.inner.total_permits))
            .await
            .map_err(|_| Error::Closed)?;
        let (job, reply) = Op::job(f, inbound, permit);
        {
            let sender = lock(&self.inner.sender);
            let sender = sender.as_ref().ok_or(Error::Closed)?;
            sender.send(Msg::Job(job)).map_err(|_| Error::Closed)?;
        }
        // A dropped reply means the writer stopped before running the job.
        reply.await.map_err(|_| Error::Closed)?
    }

    /// Runs `f` on a pooled read connection in the blocking pool.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Cipher) -> Result<T> + Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let slot = Arc::clone(&self.inner.read_slots)
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = lock(&inner.readers).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.db_path, inner.options.busy_timeout, true)?,
            };
            let out = f(&conn, &inner.cipher);
            let mut pool = lock(&inner.readers);
            if pool.len() < inner.options.read_connections && !inner.closed.load(Ordering::Acquire)
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::db(op, e))?
    }
}

fn check_field(field: &'static str, value: &str) -> Result<()> {
    if value.len() > MAX_FIELD_LEN {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    Ok(())
}

/// FHIR's rules for a type name and an id (`[A-Za-z0-9\-\.]{1,64}`).
fn check_resource_name(resource_type: &str, id: &str) -> Result<()> {
    if resource_type.is_empty() || !resource_type.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid("resource_type", "not a FHIR type name"));
    }
    let id_ok = !id.is_empty()
        && id.len() <= crate::resources::MAX_RESOURCE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !id_ok {
        return Err(Error::invalid("resource id", "not a FHIR id"));
    }
    Ok(())
}

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "empty"));
    }
    check_field(field, value)
}

/// Validates an inbound message and does the hashing outside the writer thread.
/// A batch claim's arguments, checked and owned for the writer; `max` within 1 and
/// [`MAX_CLAIM_BATCH`].
fn claim_args(destination: &str, claim: &Claim, max: usize) -> Result<(String, Claim, usize)> {
    check_name("destination", destination)?;
    check_name("claim.worker", &claim.worker)?;
    Ok((
        destination.to_owned(),
        claim.clone(),
        max.clamp(1, MAX_CLAIM_BATCH),
    ))
}

/// The bytes of the ACKs a batch of settled deliveries records (for back-pressure), or an
/// error if one is longer than any payload may be.
fn settled_ack_len(settled: &[(Delivery, Outcome)]) -> Result<usize> {
    let mut len = 0;
    for (_, outcome) in settled {
        let ack = outcome.ack().map_or(0, <[u8]>::len);
        if ack > MAX_PAYLOAD_LEN {
            return Err(Error::invalid(
                "ack",
                format!("longer than {MAX_PAYLOAD_LEN} bytes"),
            ));
        }
        len += ack;
    }
    Ok(len)
}

/// The highest message id the database has given out, purged rows included.
fn last_message_id(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
                    coalesce((SELECT max(id) FROM messages), 0))",
        [],
        |r| r.get(0),
    )
    .map_err(|e| Error::db("read message ids", e))
}

fn prepare(msg: NewMessage, cipher: &Cipher, ids: &MessageIds) -> Result<PreparedInsert> {
    check_name("channel", &msg.channel)?;
    check_field("peer", &msg.peer)?;
    check_field("header.sending_app", &msg.header.sending_app)?;
    check_field("header.sending_facility", &msg.header.sending_facility)?;
    check_field("header.message_type", &msg.header.message_type)?;
    check_field("header.control_id", &msg.header.control_id)?;
    check_field("header.version", &msg.header.version)?;
    if msg.raw.is_empty() {
        return Err(Error::invalid("raw", "empty message"));
    }
    if msg.raw.len() > MAX_PAYLOAD_LEN {
        return Err(Error::invalid(
            "raw",
            format!(
                "{} bytes exceed the limit of {MAX_PAYLOAD_LEN}",
                msg.raw.len()
            ),
        ));
    }
    if msg.destinations.len() > MAX_DESTINATIONS {
        return Err(Error::invalid(
            "destinations",
            format!(
                "{} exceed the limit of {MAX_DESTINATIONS}",
                msg.destinations.len()
            ),
        ));
    }
    if msg.patient_ids.len() > MAX_PATIENT_IDS {
        return Err(Error::invalid(
            "patient_ids",
            format!(
                "{} exceed the limit of {MAX_PATIENT_IDS}",
                msg.patient_ids.len()
            ),
        ));
    }
    if msg.ack.as_ref().is_some_and(|a| a.len() > MAX_PAYLOAD_LEN) {
        return Err(Error::invalid(
            "ack",
            format!("longer than {MAX_PAYLOAD_LEN} bytes"),
        ));
    }
    let mut destinations: Vec<String> = Vec::with_capacity(msg.destinations.len());
    for (i, d) in msg.destinations.iter().enumerate() {
        check_name("destinations", d).map_err(|_| {
            Error::invalid(
                "destinations",
                format!("entry {} is empty or too long", i + 1),
            )
        })?;
        if !destinations.contains(d) {
            destinations.push(d.clone());
        }
    }
    let mut patient_macs: Vec<[u8; 32]> = Vec::with_capacity(msg.patient_ids.len());
    for (i, p) in msg.patient_ids.iter().enumerate() {
        check_name("patient_ids", p).map_err(|_| {
            Error::invalid(
                "patient_ids",
                format!("entry {} is empty or too long", i + 1),
            )
        })?;
        let mac = cipher.patient_index(p);
        if !patient_macs.contains(&mac) {
            patient_macs.push(mac);
        }
    }
    let sha256: [u8; 32] = Sha256::digest(&msg.raw).into();
    // A duplicate stores no payload, but whether this is one is known only to the writer;
    // sealing here keeps that work off the writer for the common case.
    let id = ids.issue();
    let (payload_sealed, outbound_sealed) =
        write::seal_message(cipher, id, &msg.raw, msg.outbound.as_deref())?;
    Ok(PreparedInsert {
        msg,
        sha256,
        patient_macs,
        destinations,
        id,
        payload_sealed,
        outbound_sealed,
    })
}

impl Store for SqliteStore {
    fn insert_inbound(&self, msg: NewMessage) -> BoxFuture<'_, Result<InsertOutcome>> {
        Box::pin(async move {
            let len = msg.raw.len();
            let prepared = if len > HASH_INLINE_LIMIT {
                let inner = Arc::clone(&self.inner);
                tokio::task::spawn_blocking(move || prepare(msg, &inner.cipher, &inner.ids))
                    .await
                    .map_err(|e| Error::db("insert_inbound", e))??
            } else {
                prepare(msg, &self.inner.cipher, &self.inner.ids)?
            };
            self.write(len, true, move |cx| cx.insert_inbound(&prepared))
                .await
        })
    }

    fn record_ack(&self, id: MessageId, ack: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if ack.len() > MAX_PAYLOAD_LEN {
                return Err(Error::invalid(
                    "ack",
                    format!("longer than {MAX_PAYLOAD_LEN} bytes"),
                ));
            }
            self.write(ack.len(), false, move |cx| cx.record_ack(id, &ack))
                .await
        })
    }

    fn set_state(&self, id: MessageId, state: MessageState) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(0, false, move |cx| cx.set_state(id, state)))
    }

    fn message(&self, id: MessageId) -> BoxFuture<'_, Result<Option<StoredMessage>>> {
        Box::pin(self.read("message", move |c, k| {
            read::message(c, k, id, read::Parts::All)
        }))
    }

    fn outgoing(&self, id: MessageId) -> BoxFuture<'_, Result<Option<StoredMessage>>> {
        Box::pin(self.read("outgoing message", move |c, k| {
            read::message(c, k, id, read::Parts::Outgoing)
        }))
    }

    fn search(&self, filter: SearchFilter) -> BoxFuture<'_, Result<Vec<MessageSummary>>> {
        Box::pin(self.read("search", move |c, k| read::search(c, k, &filter)))
    }

    fn deliveries(&self, id: MessageId) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        Box::pin(self.read("deliveries", move |c, k| read::deliveries(c, k, id)))
    }

    fn claim_next<'a>(
        &'a self,
        destination: &'a str,
        claim: &'a Claim,
    ) -> BoxFuture<'a, Result<Option<Delivery>>> {
        Box::pin(async move {
            check_name("destination", destination)?;
            check_name("claim.worker", &claim.worker)?;
            let destination = destination.to_owned();
            let claim = claim.clone();
            self.write(0, false, move |cx| cx.claim(&destination, &claim))
                .await
        })
    }

    fn claim_batch<'a>(
        &'a self,
        destination: &'a str,
        claim: &'a Claim,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let (destination, claim, max) = claim_args(destination, claim, max)?;
            self.write(0, false, move |cx| {
                cx.claim_batch(&destination, &claim, max)
            })
            .await
        })
    }

    fn complete_batch(
        &self,
        settled: Vec<(Delivery, Outcome)>,
    ) -> BoxFuture<'_, Result<Vec<Result<()>>>> {
        Box::pin(async move {
            let len = settled_ack_len(&settled)?;
            // One job for the whole batch (see `WriteCx::complete_batch`).
            self.write(len, false, move |cx| Ok(cx.complete_batch(&settled)))
                .await
        })
    }

    fn settle_and_claim<'a>(
        &'a self,
        settled: Vec<(Delivery, Outcome)>,
        destination: &'a str,
        claim: &'a Claim,
        max: usize,
    ) -> BoxFuture<'a, Result<SettledAndClaimed>> {
        Box::pin(async move {
            let (destination, claim, max) = claim_args(destination, claim, max)?;
            let len = settled_ack_len(&settled)?;
            self.write(len, false, move |cx| {
                Ok(SettledAndClaimed {
                    settled: cx.complete_batch(&settled),
                    claimed: cx.claim_batch(&destination, &claim, max)?,
                })
            })
            .await
        })
    }

    fn renew_lease<'a>(
        &'a self,
        delivery: &'a Delivery,
        lease: Duration,
    ) -> BoxFuture<'a, Result<UnixMillis>> {
        let delivery = delivery.clone();
        Box::pin(self.write(0, false, move |cx| cx.renew(&delivery, lease)))
    }

    fn complete<'a>(
        &'a self,
        delivery: &'a Delivery,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        let delivery = delivery.clone();
        let len = outcome.ack().map_or(0, <[u8]>::len);
        Box::pin(async move {
            if len > MAX_PAYLOAD_LEN {
                return Err(Error::invalid(
                    "ack",
                    format!("longer than {MAX_PAYLOAD_LEN} bytes"),
                ));
            }
            self.write(len, false, move |cx| cx.complete(&delivery, &outcome))
                .await
        })
    }

    fn reprocess<'a>(
        &'a self,
        id: MessageId,
        state: MessageState,
        outbound: Option<Vec<u8>>,
        destinations: Vec<String>,
    ) -> BoxFuture<'a, Result<Vec<DeliverySeq>>> {
        Box::pin(async move {
            for d in &destinations {
                check_name("destination", d)?;
            }
            let bytes = outbound.as_ref().map_or(0, Vec::len);
            // Compressed before the writer, as an insert's payload is (in the blocking pool
            // when large), so the writer only seals.
            let (outbound, outbound_zstd) = match outbound {
                Some(o) if o.len() > HASH_INLINE_LIMIT => tokio::task::spawn_blocking(move || {
                    let frame = crypto::compress(&o);
                    (Some(o), frame)
                })
                .await
                .map_err(|e| Error::db("reprocess", e))?,
                Some(o) => {
                    let frame = crypto::compress(&o);
                    (Some(o), frame)
                }
                None => (None, None),
            };
            self.write(bytes, false, move |cx| {
                let outbound = outbound
                    .as_deref()
                    .map(|bytes| (bytes, outbound_zstd.as_deref()));
                cx.reprocess(id, state, outbound, &destinations)
            })
            .await
        })
    }

    fn requeue<'a>(
        &'a self,
        id: MessageId,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<DeliverySeq>> {
        Box::pin(async move {
            check_name("destination", destination)?;
            let destination = destination.to_owned();
            self.write(0, false, move |cx| cx.requeue(id, &destination))
                .await
        })
    }

    fn requeue_many<'a>(
        &'a self,
        ids: Vec<MessageId>,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Result<DeliverySeq>>>> {
        Box::pin(async move {
            check_name("destination", destination)?;
            let destination = destination.to_owned();
            self.write(0, false, move |cx| {
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    // A refusal is decided before anything is written for that message.
                    match cx.requeue(*id, &destination) {
                        Err(e) if !e.refuses_one_requeue() => return Err(e),
                        outcome => out.push(outcome),
                    }
                }
                Ok(out)
            })
            .await
        })
    }

    fn queue_depth<'a>(&'a self, destination: &'a str) -> BoxFuture<'a, Result<u64>> {
        let destination = destination.to_owned();
        Box::pin(self.read("queue_depth", move |c, _| {
            read::queue_depth(c, &destination)
        }))
    }

    fn oldest_queued_age<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<Option<Duration>>> {
        let destination = destination.to_owned();
        Box::pin(self.read("oldest_queued_age", move |c, _| {
            read::oldest_queued_age(c, &destination)
        }))
    }

    fn add_event(&self, event: NewEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            check_name("channel", &event.channel)?;
            self.write(event.detail.len(), false, move |cx| cx.add_event(&event))
                .await
        })
    }

    fn events(&self, filter: EventFilter) -> BoxFuture<'_, Result<Vec<Event>>> {
        Box::pin(self.read("events", move |c, _| read::events(c, &filter)))
    }

    fn purge<'a>(
        &'a self,
        channel: &'a str,
        payload_older_than: Option<UnixMillis>,
        metadata_older_than: Option<UnixMillis>,
    ) -> BoxFuture<'a, Result<PurgeReport>> {
        Box::pin(async move {
            check_name("channel", channel)?;
            let mut total = PurgeReport::default();
            loop {
                let ch = channel.to_owned();
                let step = self
                    .write(0, false, move |cx| {
                        cx.purge_chunk(&ch, payload_older_than, metadata_older_than, PURGE_CHUNK)
                    })
                    .await?;
                total.add(step);
                let full = |n: u64| n >= PURGE_CHUNK as u64;
                if !(full(step.payloads_cleared)
                    || full(step.messages_deleted)
                    || full(step.events_deleted))
                {
                    break;
                }
            }
            if total != PurgeReport::default() {
                let detail = format!(
                    "retention removed {} payloads, {} messages, {} events",
                    total.payloads_cleared, total.messages_deleted, total.events_deleted
                );
                let event = NewEvent {
                    channel: channel.to_owned(),
                    destination: None,
                    message_id: None,
                    kind: crate::EventKind::Purged,
                    detail,
                };
                self.write(0, false, move |cx| cx.add_event(&event)).await?;
            }
            Ok(total)
        })
    }

    fn put_resources(&self, puts: Vec<ResourcePut>) -> BoxFuture<'_, Result<Vec<PutOutcome>>> {
        Box::pin(async move {
            let mut bytes = 0;
            for p in &puts {
                check_resource_name(&p.resource_type, &p.id)?;
                if p.json.len() > MAX_PAYLOAD_LEN {
                    return Err(Error::invalid(
                        "resource",
                        format!("longer than {MAX_PAYLOAD_LEN} bytes"),
                    ));
                }
                bytes += p.json.len();
            }
            self.write(bytes, false, move |cx| resources::put(cx, &puts))
                .await
        })
    }

    fn begin_bulk_load(&self, incoming: u64) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.write(0, false, move |cx| {
            resources::suspend_value_indexes(cx.conn(), incoming)
        }))
    }

    fn end_bulk_load(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let built = self
                .write(0, false, |cx| resources::build_value_indexes(cx.conn()))
                .await?;
            if built {
                tracing::info!("search value indexes built after a bulk load");
            }
            Ok(())
        })
    }

    fn resource<'a>(
        &'a self,
        resource_type: &'a str,
        id: &'a str,
        version: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<StoredResource>>> {
        let (t, i) = (resource_type.to_owned(), id.to_owned());
        Box::pin(self.read("read resource", move |c, k| {
            resources::read(c, k, &t, &i, version)
        }))
    }

    fn resource_history(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<StoredResource>>> {
        Box::pin(self.read("resource history", move |c, k| {
            resources::history(c, k, &query)
        }))
    }

    fn scan_resources<'a>(
        &'a self,
        resource_type: &'a str,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ResourceChange>>> {
        let resource_type = resource_type.to_owned();
        Box::pin(self.read("scan resources", move |c, k| {
            resources::scan(c, k, &resource_type, after, limit)
        }))
    }

    fn resource_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ResourceChange>>> {
        Box::pin(self.read("resource changes", move |c, k| {
            notify::changes(c, k, after, limit)
        }))
    }

    fn cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64>> {
        let name = name.to_owned();
        Box::pin(self.read("read cursor", move |c, _| notify::cursor(c, &name)))
    }

    fn reindex_resources(
        &self,
        items: Vec<Reindex>,
        cursor: Option<(String, i64)>,
    ) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.write(0, false, move |cx| {
            resources::reindex(cx, &items, cursor.as_ref())
        }))
    }

    fn queue_notifications(
        &self,
        cursor: String,
        position: i64,
        notifications: Vec<NewNotification>,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(0, false, move |cx| {
            notify::queue(cx, &cursor, position, &notifications)
        }))
    }

    fn claim_notifications<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Notification>>> {
        let worker = worker.to_owned();
        Box::pin(self.write(0, false, move |cx| notify::claim(cx, &worker, max, lease)))
    }

    fn settle_notification(
        &self,
        notification: Notification,
        outcome: NotificationOutcome,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(0, false, move |cx| {
            notify::settle(cx, &notification, &outcome)
        }))
    }

    fn pending_resource(&self, message: MessageId) -> BoxFuture<'_, Result<Option<PendingWrite>>> {
        Box::pin(self.read("read pending resource", move |c, _| {
            resources::read_pending(c, message)
        }))
    }

    fn search_resources(&self, query: ResourceQuery) -> BoxFuture<'_, Result<ResourcePage>> {
        Box::pin(self.read("search resources", move |c, k| {
            resources::search(c, k, &query)
        }))
    }

    fn stats(&self) -> WriteStats {
        self.write_stats()
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner.closed.store(true, Ordering::Release);
            self.inner.permits.close();
            // Readers go first so that the writer's connection is the last one open: closing
            // it then checkpoints the whole WAL into the database file.
            lock(&self.inner.readers).clear();
            let sender = lock(&self.inner.sender).take();
            if let Some(sender) = sender {
                let (tx, rx) = oneshot::channel();
                if sender.send(Msg::Close(tx)).is_ok() {
                    // Err only if the writer thread died; joining below reports that.
                    let _ = rx.await;
                }
            }
            let handle = lock(&self.inner.writer).take();
            if let Some(handle) = handle {
                tokio::task::spawn_blocking(move || handle.join())
                    .await
                    .map_err(|e| Error::db("close", e))?
                    .map_err(|_| {
                        Error::db("close", std::io::Error::other("writer thread panicked"))
                    })?;
            }
            Ok(())
        })
    }

    // --- users, tokens and audit (server) ---

    fn create_user(&self, user: crate::NewUser) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            auth::check_user(&user)?;
            self.write(0, false, move |cx| auth::create_user(cx, &user))
                .await
        })
    }

    fn create_first_user(&self, user: crate::NewUser) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            auth::check_user(&user)?;
            self.write(0, false, move |cx| auth::create_first_user(cx, &user))
                .await
        })
    }

    fn set_password<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            auth::check_username(username)?;
            auth::check_password_hash(password_hash)?;
            let (u, h) = (username.to_owned(), password_hash.to_owned());
            self.write(0, false, move |cx| auth::set_password(cx, &u, &h))
                .await
        })
    }

    fn set_role<'a>(&'a self, username: &'a str, role: crate::Role) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            auth::check_username(username)?;
            let u = username.to_owned();
            self.write(0, false, move |cx| auth::set_role(cx, &u, role))
                .await
        })
    }

    fn delete_user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            auth::check_username(username)?;
            let u = username.to_owned();
            self.write(0, false, move |cx| auth::delete_user(cx, &u))
                .await
        })
    }

    fn user<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<crate::User>>> {
        let u = username.to_owned();
        Box::pin(self.read("read user", move |c, _| auth::user(c, &u)))
    }

    fn users(&self) -> BoxFuture<'_, Result<Vec<crate::User>>> {
        Box::pin(self.read("list users", |c, _| auth::users(c)))
    }

    fn record_jti<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: UnixMillis,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            auth::check_jti(issuer, jti)?;
            let (i, j) = (issuer.to_owned(), jti.to_owned());
            self.write(0, false, move |cx| auth::record_jti(cx, &i, &j, expires_at))
                .await
        })
    }

    fn insert_token(&self, token: crate::NewToken) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            auth::check_token(&token)?;
            self.write(0, false, move |cx| auth::insert_token(cx, &token))
                .await
        })
    }

    fn token(&self, hash: crate::TokenHash) -> BoxFuture<'_, Result<Option<crate::StoredToken>>> {
        Box::pin(self.read("read token", move |c, _| auth::token(c, hash)))
    }

    fn delete_token(&self, hash: crate::TokenHash) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.write(0, false, move |cx| auth::delete_token(cx, hash)))
    }

    fn append_audit(
        &self,
        record: crate::NewAuditRecord,
    ) -> BoxFuture<'_, Result<crate::AuditEntry>> {
        Box::pin(async move {
            let record = auth::prepare_audit(record)?;
            let len = record.query.as_ref().map_or(0, String::len);
            self.write(len, false, move |cx| auth::append_audit(cx, &record))
                .await
        })
    }

    fn audit_records(
        &self,
        query: crate::AuditQuery,
    ) -> BoxFuture<'_, Result<Vec<crate::AuditEntry>>> {
        Box::pin(self.read("read audit log", move |c, k| {
            auth::audit_records(c, k, &query)
        }))
    }

    fn verify_audit(&self) -> BoxFuture<'_, Result<crate::AuditVerification>> {
        Box::pin(self.read("verify audit log", auth::verify_audit))
    }

    // --- management (server) ---

    fn error_queue<'a>(
        &'a self,
        destination: &'a str,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'a, Result<crate::ErrorQueue>> {
        let destination = destination.to_owned();
        Box::pin(self.read("error_queue", move |c, k| {
            read::error_queue(c, k, &destination, limit, offset)
        }))
    }
}
