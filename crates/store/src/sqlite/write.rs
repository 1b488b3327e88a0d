//! The write operations, run by the writer thread inside a group's transaction.
//!
//! Each function is one job's body: it either completes fully or returns an error, after which
//! the writer rolls the job back to its savepoint. Every transition that users see in the event
//! log writes its event here, in the same transaction.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::ids::MessageIds;
use super::rows::{self, DELIVERY_COLUMNS, FLAG_CONTROL_ID_REUSED, SETTLED_STATES};
use crate::crypto::{self, Cipher};
use crate::error::Record;
use crate::{
    Claim, ClaimMode, Delivery, DeliverySeq, DeliveryState, Duplicate, Error, EventKind,
    InsertOutcome, MessageId, MessageState, NewEvent, NewMessage, Outcome, PurgeReport, Result,
    UnixMillis, clip_text,
};

/// An inbound message with the work that needs no database done ahead, outside the writer.
pub(crate) struct PreparedInsert {
    pub(crate) msg: NewMessage,
    pub(crate) sha256: [u8; 32],
    /// Keyed hashes of the patient identifiers, duplicates removed.
    pub(crate) patient_macs: Vec<[u8; 32]>,
    /// Destinations, duplicates removed, order kept.
    pub(crate) destinations: Vec<String>,
    /// The id handed out for this message ([`MessageIds`]), which the sealed copies below are
    /// bound to.
    pub(crate) id: MessageId,
    /// The payload and the outbound bytes, compressed when that paid, sealed under `id`.
    pub(crate) payload_sealed: Vec<u8>,
    pub(crate) outbound_sealed: Option<Vec<u8>>,
}

/// A message row's sealed columns.
struct Sealed<'a> {
    payload: Option<&'a [u8]>,
    outbound: Option<&'a [u8]>,
}

/// The payload of message `id`, compressed when that pays (zstd costs a few microseconds per
/// kilobyte), and its outbound copy, as a delta against the payload when a transform changed
/// little ([`Cipher::seal_outbound`]), each sealed under the id.
pub(crate) fn seal_message(
    cipher: &Cipher,
    id: MessageId,
    raw: &[u8],
    outbound: Option<&[u8]>,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let payload = cipher.seal_compressed(
        Record::MessagePayload(id),
        raw,
        crypto::compress(raw).as_deref(),
    )?;
    let outbound = outbound
        .map(|o| cipher.seal_outbound(id, raw, o))
        .transpose()?;
    Ok((payload, outbound))
}

/// The first pending delivery a claim looks at.
struct Candidate {
    seq: i64,
    state: String,
    next_attempt_at: Option<i64>,
    lease_until: Option<i64>,
    claimed_by: Option<String>,
}

/// The writer's view of the open transaction.
pub(crate) struct WriteCx<'c> {
    conn: &'c Connection,
    cipher: &'c Cipher,
    ids: &'c MessageIds,
    /// Whether `ids` has seen this transaction's `sqlite_sequence`.
    ids_synced: bool,
}

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::db(op, e)
}

impl<'c> WriteCx<'c> {
    pub(crate) fn new(conn: &'c Connection, cipher: &'c Cipher, ids: &'c MessageIds) -> Self {
        Self {
            conn,
            cipher,
            ids,
            ids_synced: false,
        }
    }

    /// The open transaction's connection, for write modules beside this one.
    pub(crate) fn conn(&self) -> &'c Connection {
        self.conn
    }

    pub(crate) fn cipher(&self) -> &'c Cipher {
        self.cipher
    }

    /// Whether the id handed out for `p` is still this process's own (see [`MessageIds`]):
    /// the first call in a transaction compares the ids with `sqlite_sequence`, which no other
    /// process can move while this transaction holds the write lock.
    fn id_is_ours(&mut self, id: MessageId) -> Result<bool> {
        if !self.ids_synced {
            let sequence: Option<i64> = self
                .conn
                .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")
                .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                .map_err(db("check message ids"))?;
            self.ids.sync(sequence.unwrap_or(0));
            self.ids_synced = true;
        }
        Ok(self.ids.usable(id))
    }

    fn event(&self, at: UnixMillis, e: &NewEvent) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (at, channel, destination, message_id, kind, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    at.0,
                    e.channel,
                    e.destination,
                    e.message_id.map(|m| m.0),
                    e.kind.as_str(),
                    clip_text(&e.detail),
                ])
            })
            .map(|_| ())
            .map_err(db("add event"))
    }

    /// Stores an inbound message: duplicate check, row, identifiers, deliveries, ACK.
    pub(crate) fn insert_inbound(&mut self, p: &PreparedInsert) -> Result<InsertOutcome> {
        const OP: &str = "insert_inbound";
        let now = UnixMillis::now();
        let m = &p.msg;
        let h = &m.header;
        let mut reused = false;
        if !h.control_id.is_empty() {
            // Originals in state `error` do not count: the sender retransmits after our AE and
            // expects the message to be processed this time.
            let original: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT id FROM messages
                     WHERE control_id = ?1 AND channel = ?2 AND sending_app = ?3
                       AND sending_facility = ?4 AND payload_sha256 = ?5
                       AND state NOT IN ('duplicate', 'error')
                     ORDER BY id LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            h.control_id,
                            m.channel,
                            h.sending_app,
                            h.sending_facility,
                            &p.sha256[..]
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(db(OP))?;
            if let Some(original) = original {
                return self.insert_duplicate(p, MessageId(original), now);
            }
            reused = self
                .conn
                .prepare_cached(
                    "SELECT 1 FROM messages
                     WHERE control_id = ?1 AND channel = ?2 AND sending_app = ?3
                       AND sending_facility = ?4 AND payload_sha256 <> ?5
                     LIMIT 1",
                )
                .and_then(|mut s| {
                    s.exists(params![
                        h.control_id,
                        m.channel,
                        h.sending_app,
                        h.sending_facility,
                        &p.sha256[..]
                    ])
                })
                .map_err(db(OP))?;
        }

        let resealed;
        let (id, sealed, outbound) = if self.id_is_ours(p.id)? {
            (p.id, &p.payload_sealed, p.outbound_sealed.as_ref())
        } else {
            // Another process may hold this id: a fresh one, and the copies sealed again.
            let id = self.ids.issue();
            resealed = seal_message(self.cipher, id, &m.raw, m.outbound.as_deref())?;
            (id, &resealed.0, resealed.1.as_ref())
        };
        let flags = if reused { FLAG_CONTROL_ID_REUSED } else { 0 };
        let row = Sealed {
            payload: Some(sealed),
            outbound: outbound.map(Vec::as_slice),
        };
        self.insert_message_row(p, id, m.state, row, flags, None)?;
        self.ids.wrote(id);

        let mut ids = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO message_patient_ids (identifier_mac, message_id)
                 VALUES (?1, ?2)",
            )
            .map_err(db(OP))?;
        for mac in &p.patient_macs {
            ids.execute(params![&mac[..], id.0]).map_err(db(OP))?;
        }
        let mut queue = self
            .conn
            .prepare_cached(
                "INSERT INTO deliveries (message_id, channel, destination, state, created_at,
                                         updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .map_err(db(OP))?;
        for destination in &p.destinations {
            queue
                .execute(params![id.0, m.channel, destination, now.0])
                .map_err(db(OP))?;
        }
        if let Some(ack) = &m.ack {
            self.put_ack(id, ack, now)?;
        }
        if let Some(pending) = &m.pending_resource {
            super::resources::insert_pending(self, id, pending)?;
        }
        for (kind, detail) in &m.events {
            self.event(
                now,
                &NewEvent {
                    channel: m.channel.clone(),
                    destination: None,
                    message_id: Some(id),
                    kind: *kind,
                    detail: detail.clone(),
                },
            )?;
        }
        if reused {
            self.event(
                now,
                &NewEvent {
                    channel: m.channel.clone(),
                    destination: None,
                    message_id: Some(id),
                    kind: EventKind::ControlIdReused,
                    detail: format!(
                        "control id {} from {}|{} reused with different content; stored, flagged and routed",
                        h.control_id, h.sending_app, h.sending_facility
                    ),
                },
            )?;
        }
        Ok(InsertOutcome {
            id,
            duplicate_of: None,
            control_id_reused: reused,
        })
    }

    fn insert_duplicate(
        &mut self,
        p: &PreparedInsert,
        original: MessageId,
        now: UnixMillis,
    ) -> Result<InsertOutcome> {
        // Nothing sealed is stored, so any fresh id will do.
        let id = if self.id_is_ours(p.id)? {
            p.id
        } else {
            self.ids.issue()
        };
        // The bytes are the original's (same SHA-256): no second copy of the payload.
        let row = Sealed {
            payload: None,
            outbound: None,
        };
        self.insert_message_row(p, id, MessageState::Duplicate, row, 0, Some(original))?;
        self.ids.wrote(id);
        let ack = self.ack_of(original)?;
        if let (None, Some(own)) = (&ack, &p.msg.ack) {
            // The caller will send its own ACK, since the original has none on record.
            self.put_ack(id, own, now)?;
        }
        self.event(
            now,
            &NewEvent {
                channel: p.msg.channel.clone(),
                destination: None,
                message_id: Some(id),
                kind: EventKind::Duplicate,
                detail: format!(
                    "duplicate of message {original} (control id {}); not routed again",
                    p.msg.header.control_id
                ),
            },
        )?;
        Ok(InsertOutcome {
            id,
            duplicate_of: Some(Duplicate { original, ack }),
            control_id_reused: false,
        })
    }

    fn insert_message_row(
        &self,
        p: &PreparedInsert,
        id: MessageId,
        state: MessageState,
        sealed: Sealed<'_>,
        flags: i64,
        duplicate_of: Option<MessageId>,
    ) -> Result<()> {
        let m = &p.msg;
        let h = &m.header;
        self.conn
            .prepare_cached(
                "INSERT INTO messages (id, channel, received_at, peer, sending_app,
                     sending_facility, message_type, control_id, version, state, payload,
                     payload_sha256, size, flags, duplicate_of, outbound)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.0,
                    m.channel,
                    m.received_at.0,
                    m.peer,
                    h.sending_app,
                    h.sending_facility,
                    h.message_type,
                    h.control_id,
                    h.version,
                    state.as_str(),
                    sealed.payload,
                    &p.sha256[..],
                    i64::try_from(m.raw.len()).unwrap_or(i64::MAX),
                    flags,
                    duplicate_of.map(|d| d.0),
                    sealed.outbound,
                ])
            })
            .map(|_| ())
            .map_err(db("insert_inbound"))
    }

    pub(crate) fn reprocess(
        &mut self,
        id: MessageId,
        state: MessageState,
        // The transformed bytes, and their zstd frame when compressing them paid.
        outbound: Option<(&[u8], Option<&[u8]>)>,
        destinations: &[String],
    ) -> Result<Vec<DeliverySeq>> {
        const OP: &str = "reprocess";
        let now = UnixMillis::now();
        let channel: Option<String> = self
            .conn
            .prepare_cached("SELECT channel FROM messages WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional())
            .map_err(db(OP))?;
        let channel = channel.ok_or(Error::MessageNotFound(id))?;
        let sealed = outbound
            .map(|(bytes, frame)| {
                self.cipher
                    .seal_compressed(Record::MessageOutbound(id), bytes, frame)
            })
            .transpose()?;
        self.conn
            .prepare_cached("UPDATE messages SET state = ?2, outbound = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id.0, state.as_str(), sealed]))
            .map_err(db(OP))?;
        self.event(
            now,
            &NewEvent {
                channel: channel.clone(),
                destination: None,
                message_id: Some(id),
                kind: EventKind::StateChanged,
                detail: format!("reprocessed: now {state}"),
            },
        )?;
        let mut created = Vec::new();
        for destination in destinations {
            let pending = self
                .conn
                .prepare_cached(&format!(
                    "SELECT 1 FROM deliveries
                     WHERE message_id = ?1 AND destination = ?2 AND state NOT IN {SETTLED_STATES}"
                ))
                .and_then(|mut s| s.exists(params![id.0, destination]))
                .map_err(db(OP))?;
            if pending {
                continue;
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO deliveries (message_id, channel, destination, state, created_at,
                                             updated_at)
                     VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
                )
                .and_then(|mut s| s.execute(params![id.0, channel, destination, now.0]))
                .map_err(db(OP))?;
            let seq = DeliverySeq(self.conn.last_insert_rowid());
            self.event(
                now,
                &NewEvent {
                    channel: channel.clone(),
                    destination: Some(destination.clone()),
                    message_id: Some(id),
                    kind: EventKind::Requeued,
                    detail: format!("reprocessed and queued as delivery {seq}"),
                },
            )?;
            created.push(seq);
        }
        Ok(created)
    }

    fn put_ack(&self, id: MessageId, ack: &[u8], now: UnixMillis) -> Result<()> {
        let sealed = self.cipher.seal(Record::InboundAck(id), ack)?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO acks (message_id, ack, at) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![id.0, sealed, now.0]))
            .map(|_| ())
            .map_err(db("record_ack"))
    }

    fn ack_of(&self, id: MessageId) -> Result<Option<Vec<u8>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT ack FROM acks WHERE message_id = ?1")
            .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional())
            .map_err(db("read ack"))?;
        sealed
            .map(|s| self.cipher.open(Record::InboundAck(id), &s))
            .transpose()
    }

    fn message_channel(&self, id: MessageId, op: &'static str) -> Result<(String, String)> {
        self.conn
            .prepare_cached("SELECT channel, state FROM messages WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db(op))?
            .ok_or(Error::MessageNotFound(id))
    }

    pub(crate) fn record_ack(&mut self, id: MessageId, ack: &[u8]) -> Result<()> {
        self.message_channel(id, "record_ack")?;
        self.put_ack(id, ack, UnixMillis::now())
    }

    pub(crate) fn set_state(&mut self, id: MessageId, state: MessageState) -> Result<()> {
        let (channel, old) = self.message_channel(id, "set_state")?;
        let now = UnixMillis::now();
        self.conn
            .prepare_cached("UPDATE messages SET state = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id.0, state.as_str()]))
            .map_err(db("set_state"))?;
        self.event(
            now,
            &NewEvent {
                channel,
                destination: None,
                message_id: Some(id),
                kind: EventKind::StateChanged,
                detail: format!("{old} -> {state}"),
            },
        )
    }

    pub(crate) fn claim(&mut self, destination: &str, claim: &Claim) -> Result<Option<Delivery>> {
        self.claim_after(destination, claim, -1)
    }

    /// Claims up to `max` deliveries in queue order, in one transaction. FIFO stops at the
    /// first entry that is not claimable, so a batch never skips past a waiting head.
    pub(crate) fn claim_batch(
        &mut self,
        destination: &str,
        claim: &Claim,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        let mut claimed: Vec<Delivery> = Vec::new();
        while claimed.len() < max {
            let after = claimed.last().map_or(-1, |d| d.seq.0);
            match self.claim_after(destination, claim, after)? {
                Some(d) => claimed.push(d),
                None => break,
            }
        }
        Ok(claimed)
    }

    /// Claims the first claimable delivery after sequence number `after`.
    fn claim_after(
        &mut self,
        destination: &str,
        claim: &Claim,
        after: i64,
    ) -> Result<Option<Delivery>> {
        const OP: &str = "claim_next";
        let now = UnixMillis::now();
        let candidate = |r: &rusqlite::Row<'_>| {
            Ok(Candidate {
                seq: r.get(0)?,
                state: r.get(1)?,
                next_attempt_at: r.get(2)?,
                lease_until: r.get(3)?,
                claimed_by: r.get(4)?,
            })
        };
        // FIFO looks at the head only; parallel at the oldest claimable entry.
        let candidate = match claim.mode {
            ClaimMode::Fifo => self
                .conn
                .prepare_cached(&format!(
                    "SELECT seq, state, next_attempt_at, lease_until, claimed_by FROM deliveries
                     WHERE destination = ?1 AND seq > ?2 AND state NOT IN {SETTLED_STATES}
                     ORDER BY seq LIMIT 1"
                ))
                .and_then(|mut s| {
                    s.query_row(params![destination, after], candidate)
                        .optional()
                }),
            ClaimMode::Parallel => self
                .conn
                .prepare_cached(&format!(
                    "SELECT seq, state, next_attempt_at, lease_until, claimed_by FROM deliveries
                     WHERE destination = ?1 AND seq > ?5 AND state NOT IN {SETTLED_STATES}
                       AND (state = 'queued'
                            OR (state = 'retrying' AND coalesce(next_attempt_at, 0) <= ?2)
                            OR (state = 'in_flight' AND (coalesce(lease_until, 0) <= ?2
                                                         OR (?4 AND claimed_by = ?3))))
                     ORDER BY seq LIMIT 1"
                ))
                .and_then(|mut s| {
                    s.query_row(
                        params![destination, now.0, claim.worker, claim.resume_own, after],
                        candidate,
                    )
                    .optional()
                }),
        }
        .map_err(db(OP))?;
        let seq = candidate.and_then(|c| {
            let claimable = match DeliveryState::parse(&c.state) {
                Some(DeliveryState::Queued) => true,
                Some(DeliveryState::Retrying) => c.next_attempt_at.unwrap_or(0) <= now.0,
                Some(DeliveryState::InFlight) => {
                    // With `resume_own`, a lease held under the claimant's own identity belongs
                    // to an earlier run of it that died: taking it over at once spares the
                    // queue the wait for the lease to expire.
                    let own =
                        claim.resume_own && c.claimed_by.as_deref() == Some(claim.worker.as_str());
                    let expired = own || c.lease_until.unwrap_or(0) <= now.0;
                    if expired {
                        tracing::warn!(
                            seq = c.seq,
                            destination,
                            previous = c.claimed_by.as_deref().unwrap_or(""),
                            "lease expired; delivering again (at-least-once)"
                        );
                    }
                    expired
                }
                _ => false,
            };
            claimable.then_some(c.seq)
        });
        let Some(seq) = seq else { return Ok(None) };
        let lease_until = now.plus(claim.lease);
        // Read back with a SELECT rather than `RETURNING`, which SQLite buffers in a temporary
        // B-tree built for each run of the statement.
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET state = 'in_flight', claimed_by = ?2, lease_until = ?3,
                     attempts = attempts + 1, updated_at = ?4
                 WHERE seq = ?1",
            )
            .and_then(|mut s| s.execute(params![seq, claim.worker, lease_until.0, now.0]))
            .map_err(db(OP))?;
        if changed == 0 {
            return Err(Error::DeliveryNotFound(DeliverySeq(seq)));
        }
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE seq = ?1"
            ))
            .map_err(db(OP))?;
        let mut result = stmt.query([seq]).map_err(db(OP))?;
        match result.next().map_err(db(OP))? {
            Some(row) => rows::delivery(row, self.cipher).map(Some),
            None => Err(Error::DeliveryNotFound(DeliverySeq(seq))),
        }
    }

    /// Checks that `d` is still leased by its worker under the same attempt (the fencing token).
    fn lease_lost(&self, d: &Delivery, op: &'static str) -> Error {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM deliveries WHERE seq = ?1")
            .and_then(|mut s| s.exists([d.seq.0]));
        match exists {
            Ok(false) => Error::DeliveryNotFound(d.seq),
            Ok(true) => Error::LeaseLost {
                seq: d.seq,
                destination: d.destination.clone(),
                worker: d.claimed_by.clone().unwrap_or_default(),
                attempt: d.attempts,
            },
            Err(e) => Error::db(op, e),
        }
    }

    pub(crate) fn renew(&mut self, d: &Delivery, lease: Duration) -> Result<UnixMillis> {
        let until = UnixMillis::now().plus(lease);
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries SET lease_until = ?2, updated_at = ?3
                 WHERE seq = ?1 AND state = 'in_flight' AND claimed_by = ?4 AND attempts = ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.seq.0,
                    until.0,
                    UnixMillis::now().0,
                    d.claimed_by,
                    i64::from(d.attempts)
                ])
            })
            .map_err(db("renew_lease"))?;
        if changed == 0 {
            return Err(self.lease_lost(d, "renew_lease"));
        }
        Ok(until)
    }

    pub(crate) fn complete(&mut self, d: &Delivery, outcome: &Outcome) -> Result<()> {
        const OP: &str = "complete";
        let now = UnixMillis::now();
        let (state, error, next_attempt_at) = match outcome {
            Outcome::Delivered { .. } => (DeliveryState::Delivered, None, None),
            Outcome::Retry {
                error,
                next_attempt_at,
                ..
            } => (
                DeliveryState::Retrying,
                Some(clip_text(error)),
                Some(next_attempt_at.0),
            ),
            Outcome::Failed { error, .. } => (DeliveryState::Failed, Some(clip_text(error)), None),
            Outcome::Released => return self.release(d, now),
        };
        let ack = outcome.ack();
        let sealed_ack = ack
            .map(|a| self.cipher.seal(Record::DeliveryAck(d.seq), a))
            .transpose()?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET state = ?2, last_error = coalesce(?3, last_error),
                     last_ack = coalesce(?4, last_ack), next_attempt_at = ?5,
                     claimed_by = NULL, lease_until = NULL, updated_at = ?6
                 WHERE seq = ?1 AND state = 'in_flight' AND claimed_by = ?7 AND attempts = ?8",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.seq.0,
                    state.as_str(),
                    error,
                    sealed_ack,
                    next_attempt_at,
                    now.0,
                    d.claimed_by,
                    i64::from(d.attempts),
                ])
            })
            .map_err(db(OP))?;
        if changed == 0 {
            return Err(self.lease_lost(d, OP));
        }
        match outcome {
            Outcome::Delivered { .. } => {
                super::resources::settle_pending(self, d.message_id, true)?
            }
            Outcome::Failed { .. } => super::resources::settle_pending(self, d.message_id, false)?,
            Outcome::Retry { .. } | Outcome::Released => {}
        }
        let (kind, detail) = match outcome {
            Outcome::Delivered { .. } => (
                EventKind::Delivered,
                format!("delivery {} attempt {}", d.seq, d.attempts),
            ),
            Outcome::Retry {
                error,
                next_attempt_at,
                ..
            } => (
                EventKind::Retrying,
                format!(
                    "delivery {} attempt {} failed: {error}; next attempt at {}",
                    d.seq, d.attempts, next_attempt_at.0
                ),
            ),
            Outcome::Released => return Ok(()),
            Outcome::Failed { error, .. } => (
                EventKind::Failed,
                format!(
                    "delivery {} attempt {} failed for good: {error}",
                    d.seq, d.attempts
                ),
            ),
        };
        self.event(
            now,
            &NewEvent {
                channel: d.channel.clone(),
                destination: Some(d.destination.clone()),
                message_id: Some(d.message_id),
                kind,
                detail,
            },
        )
    }

    /// Settles each of `settled` in turn: one result per delivery, in order (a lost lease
    /// fails that delivery only; its UPDATE matched no row, so it wrote nothing).
    pub(crate) fn complete_batch(&mut self, settled: &[(Delivery, Outcome)]) -> Vec<Result<()>> {
        settled.iter().map(|(d, o)| self.complete(d, o)).collect()
    }

    /// Puts a claimed, unattempted delivery back as it was: its attempt undone, queued again
    /// (or retrying, when it had failed before), its place in the queue unchanged.
    fn release(&mut self, d: &Delivery, now: UnixMillis) -> Result<()> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE deliveries
                 SET attempts = attempts - 1,
                     state = CASE WHEN attempts - 1 > 0 THEN 'retrying' ELSE 'queued' END,
                     claimed_by = NULL, lease_until = NULL, updated_at = ?2
                 WHERE seq = ?1 AND state = 'in_flight' AND claimed_by = ?3 AND attempts = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![d.seq.0, now.0, d.claimed_by, i64::from(d.attempts)])
            })
            .map_err(db("complete"))?;
        if changed == 0 {
            return Err(self.lease_lost(d, "complete"));
        }
        Ok(())
    }

    pub(crate) fn requeue(&mut self, id: MessageId, destination: &str) -> Result<DeliverySeq> {
        const OP: &str = "requeue";
        let now = UnixMillis::now();
        let row: Option<(String, bool)> = self
            .conn
            .prepare_cached(
                "SELECT channel, payload IS NULL AND duplicate_of IS NULL FROM messages
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db(OP))?;
        let (channel, purged) = row.ok_or(Error::MessageNotFound(id))?;
        if purged {
            return Err(Error::invalid(
                "message",
                format!("payload of message {id} was purged by retention"),
            ));
        }
        let pending = self
            .conn
            .prepare_cached(&format!(
                "SELECT 1 FROM deliveries
                 WHERE message_id = ?1 AND destination = ?2 AND state NOT IN {SETTLED_STATES}"
            ))
            .and_then(|mut s| s.exists(params![id.0, destination]))
            .map_err(db(OP))?;
        if pending {
            return Err(Error::invalid(
                "destination",
                format!("message {id} already has a pending delivery to {destination}"),
            ));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO deliveries (message_id, channel, destination, state, created_at,
                                         updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .and_then(|mut s| s.execute(params![id.0, channel, destination, now.0]))
            .map_err(db(OP))?;
        let seq = DeliverySeq(self.conn.last_insert_rowid());
        self.event(
            now,
            &NewEvent {
                channel,
                destination: Some(destination.to_owned()),
                message_id: Some(id),
                kind: EventKind::Requeued,
                detail: format!("queued again as delivery {seq}"),
            },
        )?;
        Ok(seq)
    }

    pub(crate) fn add_event(&mut self, e: &NewEvent) -> Result<()> {
        self.event(UnixMillis::now(), e)
    }

    /// One bounded step of retention; the caller repeats while it removed a full chunk.
    pub(crate) fn purge_chunk(
        &mut self,
        channel: &str,
        payload_before: Option<UnixMillis>,
        metadata_before: Option<UnixMillis>,
        chunk: i64,
    ) -> Result<PurgeReport> {
        const OP: &str = "purge";
        let now = UnixMillis::now();
        let mut report = PurgeReport::default();
        // Messages still waiting for a delivery keep everything: purging them would lose data.
        let not_pending = format!(
            "NOT EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.message_id = messages.id AND d.state NOT IN {SETTLED_STATES})"
        );
        if let Some(before) = metadata_before {
            let ids: Vec<i64> = {
                let mut stmt = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT id FROM messages
                         WHERE channel = ?1 AND received_at < ?2 AND {not_pending}
                         LIMIT ?3"
                    ))
                    .map_err(db(OP))?;
                let rows = stmt
                    .query_map(params![channel, before.0, chunk], |r| r.get(0))
                    .map_err(db(OP))?;
                rows.collect::<rusqlite::Result<_>>().map_err(db(OP))?
            };
            for table_key in [
                "DELETE FROM message_patient_ids WHERE message_id = ?1",
                "DELETE FROM deliveries WHERE message_id = ?1",
                "DELETE FROM acks WHERE message_id = ?1",
                "DELETE FROM messages WHERE id = ?1",
            ] {
                let mut stmt = self.conn.prepare_cached(table_key).map_err(db(OP))?;
                for id in &ids {
                    stmt.execute([id]).map_err(db(OP))?;
                }
            }
            report.messages_deleted = ids.len() as u64;
            report.events_deleted = self
                .conn
                .prepare_cached(
                    "DELETE FROM events WHERE id IN
                         (SELECT id FROM events WHERE channel = ?1 AND at < ?2 LIMIT ?3)",
                )
                .and_then(|mut s| s.execute(params![channel, before.0, chunk]))
                .map_err(db(OP))? as u64;
        }
        if let Some(before) = payload_before {
            report.payloads_cleared = self
                .conn
                .prepare_cached(&format!(
                    "UPDATE messages SET payload = NULL, outbound = NULL, payload_purged_at = ?4
                     WHERE id IN (SELECT id FROM messages
                                  WHERE channel = ?1 AND received_at < ?2
                                    AND payload IS NOT NULL AND {not_pending}
                                  LIMIT ?3)"
                ))
                .and_then(|mut s| s.execute(params![channel, before.0, chunk, now.0]))
                .map_err(db(OP))? as u64;
        }
        Ok(report)
    }
}
