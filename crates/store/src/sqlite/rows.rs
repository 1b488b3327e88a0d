//! Mapping between SQLite rows and the crate's types, shared by the writer and the readers.

use rusqlite::Row;

use crate::crypto::Cipher;
use crate::error::Record;
use crate::{
    Delivery, DeliverySeq, DeliveryState, Error, Event, EventKind, Header, MessageFlags, MessageId,
    MessageState, MessageSummary, Result, UnixMillis,
};

/// Bit 0 of `messages.flags`.
pub(crate) const FLAG_CONTROL_ID_REUSED: i64 = 1;

/// The delivery (and notification) states that are settled; every other state (queued,
/// in_flight, retrying) is pending. Written `state NOT IN {SETTLED_STATES}` exactly as in the
/// `deliveries_pending` partial index's WHERE, so that SQLite matches the term with the index,
/// and with two constants so that SQLite compares instead of building a temporary B-tree.
pub(crate) const SETTLED_STATES: &str = "('delivered', 'failed')";

/// Columns read by [`summary`], in order.
pub(crate) const SUMMARY_COLUMNS: &str = "id, channel, received_at, peer, sending_app, \
     sending_facility, message_type, control_id, version, state, size, flags, duplicate_of, \
     payload_purged_at IS NOT NULL";

/// Columns read by [`delivery`], in order.
pub(crate) const DELIVERY_COLUMNS: &str = "seq, message_id, channel, destination, state, \
     attempts, next_attempt_at, last_error, last_ack, claimed_by, lease_until, created_at, \
     updated_at";

/// Columns read by [`event`], in order.
pub(crate) const EVENT_COLUMNS: &str = "id, at, channel, destination, message_id, kind, detail";

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, idx: usize, op: &'static str) -> Result<T> {
    row.get(idx).map_err(|e| Error::db(op, e))
}

/// A message summary from [`SUMMARY_COLUMNS`].
pub(crate) fn summary(row: &Row<'_>) -> Result<MessageSummary> {
    const OP: &str = "read message";
    let id: i64 = get(row, 0, OP)?;
    let state: String = get(row, 9, OP)?;
    let state = MessageState::parse(&state).ok_or_else(|| Error::Corrupt {
        table: "messages",
        column: "state",
        row: id,
        detail: format!("unknown state {state:?}"),
    })?;
    let size: i64 = get(row, 10, OP)?;
    let flags: i64 = get(row, 11, OP)?;
    Ok(MessageSummary {
        id: MessageId(id),
        channel: get(row, 1, OP)?,
        received_at: UnixMillis(get(row, 2, OP)?),
        peer: get(row, 3, OP)?,
        header: Header {
            sending_app: get(row, 4, OP)?,
            sending_facility: get(row, 5, OP)?,
            message_type: get(row, 6, OP)?,
            control_id: get(row, 7, OP)?,
            version: get(row, 8, OP)?,
        },
        state,
        size: u64::try_from(size).unwrap_or(0),
        flags: MessageFlags {
            control_id_reused: flags & FLAG_CONTROL_ID_REUSED != 0,
        },
        duplicate_of: get::<Option<i64>>(row, 12, OP)?.map(MessageId),
        payload_purged: get(row, 13, OP)?,
    })
}

/// A delivery from [`DELIVERY_COLUMNS`], its last ACK decrypted.
pub(crate) fn delivery(row: &Row<'_>, cipher: &Cipher) -> Result<Delivery> {
    const OP: &str = "read delivery";
    let seq = DeliverySeq(get(row, 0, OP)?);
    let state: String = get(row, 4, OP)?;
    let state = DeliveryState::parse(&state).ok_or_else(|| Error::Corrupt {
        table: "deliveries",
        column: "state",
        row: seq.0,
        detail: format!("unknown state {state:?}"),
    })?;
    let attempts: i64 = get(row, 5, OP)?;
    let last_ack = match get::<Option<Vec<u8>>>(row, 8, OP)? {
        Some(sealed) => Some(cipher.open(Record::DeliveryAck(seq), &sealed)?),
        None => None,
    };
    Ok(Delivery {
        seq,
        message_id: MessageId(get(row, 1, OP)?),
        channel: get(row, 2, OP)?,
        destination: get(row, 3, OP)?,
        state,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: get::<Option<i64>>(row, 6, OP)?.map(UnixMillis),
        last_error: get(row, 7, OP)?,
        last_ack,
        claimed_by: get(row, 9, OP)?,
        lease_until: get::<Option<i64>>(row, 10, OP)?.map(UnixMillis),
        created_at: UnixMillis(get(row, 11, OP)?),
        updated_at: UnixMillis(get(row, 12, OP)?),
    })
}

/// An event from [`EVENT_COLUMNS`].
pub(crate) fn event(row: &Row<'_>) -> Result<Event> {
    const OP: &str = "read event";
    let id: i64 = get(row, 0, OP)?;
    let kind: String = get(row, 5, OP)?;
    let kind = EventKind::parse(&kind).ok_or_else(|| Error::Corrupt {
        table: "events",
        column: "kind",
        row: id,
        detail: format!("unknown kind {kind:?}"),
    })?;
    Ok(Event {
        id,
        at: UnixMillis(get(row, 1, OP)?),
        channel: get(row, 2, OP)?,
        destination: get(row, 3, OP)?,
        message_id: get::<Option<i64>>(row, 4, OP)?.map(MessageId),
        kind,
        detail: get(row, 6, OP)?,
    })
}
