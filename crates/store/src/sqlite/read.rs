//! The read operations, run on pooled read connections in tokio's blocking pool.
//!
//! WAL lets these run alongside the writer: each statement sees the last commit made before it
//! started, so a read issued after a write returned sees that write.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::rows::{self, DELIVERY_COLUMNS, EVENT_COLUMNS, SETTLED_STATES, SUMMARY_COLUMNS};
use crate::crypto::{self, Cipher};
use crate::error::Record;
use crate::{
    Delivery, Error, Event, EventFilter, MAX_PAGE_LEN, MessageId, MessageState, MessageSummary,
    Result, SearchFilter, StoredMessage, UnixMillis,
};

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::db(op, e)
}

fn page_len(limit: u32) -> i64 {
    i64::from(if limit == 0 {
        MAX_PAGE_LEN
    } else {
        limit.min(MAX_PAGE_LEN)
    })
}

/// Which sealed parts of a message [`message`] opens (each costs a decryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts {
    /// The raw bytes, the transformed copy and the ACK.
    All,
    /// What destinations send: the transformed copy when there is one, else the raw bytes.
    Outgoing,
}

pub(crate) fn message(
    conn: &Connection,
    cipher: &Cipher,
    id: MessageId,
    parts: Parts,
) -> Result<Option<StoredMessage>> {
    const OP: &str = "message";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, payload, outbound FROM messages WHERE id = ?1"
        ))
        .map_err(db(OP))?;
    let mut found = stmt.query([id.0]).map_err(db(OP))?;
    let Some(row) = found.next().map_err(db(OP))? else {
        return Ok(None);
    };
    let summary = rows::summary(row)?;
    let sealed: Option<Vec<u8>> = row.get(14).map_err(db(OP))?;
    let sealed_outbound: Option<Vec<u8>> = row.get(15).map_err(db(OP))?;
    // A delta opens only with the payload it was made against.
    let outbound_alone = sealed_outbound
        .as_deref()
        .is_some_and(|s| !crypto::needs_base(s));
    let raw = match (sealed, summary.duplicate_of) {
        _ if parts == Parts::Outgoing && outbound_alone => None,
        (Some(sealed), _) => Some(cipher.open(Record::MessagePayload(id), &sealed)?),
        (None, Some(original)) => {
            let sealed: Option<Vec<u8>> = conn
                .prepare_cached("SELECT payload FROM messages WHERE id = ?1")
                .and_then(|mut s| s.query_row([original.0], |r| r.get(0)).optional())
                .map_err(db(OP))?
                .flatten();
            sealed
                .map(|s| cipher.open(Record::MessagePayload(original), &s))
                .transpose()?
        }
        (None, None) => None,
    };
    let outbound = sealed_outbound
        .map(|s| cipher.open_with_base(Record::MessageOutbound(id), &s, raw.as_deref()))
        .transpose()?;
    let raw = raw.filter(|_| parts == Parts::All || outbound.is_none());
    let ack: Option<Vec<u8>> = match parts {
        Parts::All => conn
            .prepare_cached("SELECT ack FROM acks WHERE message_id = ?1")
            .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional())
            .map_err(db(OP))?,
        Parts::Outgoing => None,
    };
    let ack = ack
        .map(|a| cipher.open(Record::InboundAck(id), &a))
        .transpose()?;
    Ok(Some(StoredMessage {
        summary,
        raw,
        ack,
        outbound,
    }))
}

pub(crate) fn search(
    conn: &Connection,
    cipher: &Cipher,
    f: &SearchFilter,
) -> Result<Vec<MessageSummary>> {
    const OP: &str = "search";
    let (sql, args) = search_sql(cipher, f);
    let mut stmt = conn.prepare(&sql).map_err(db(OP))?;
    let mut found = stmt.query(params_from_iter(args)).map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(db(OP))? {
        out.push(rows::summary(row)?);
    }
    Ok(out)
}

/// `ADT` or `ADT^*`: the message code of a type filter that asks for all its events.
fn message_code_only(filter: &str) -> Option<&str> {
    let code = filter.strip_suffix("^*").unwrap_or(filter);
    (!code.is_empty() && !code.contains('^')).then_some(code)
}

/// The statement and arguments of a message search.
fn search_sql(cipher: &Cipher, f: &SearchFilter) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut add = |clause: &str, v: Value, sql: &mut String| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(v) = &f.channel {
        add(" AND channel = ?", Value::Text(v.clone()), &mut sql);
    }
    if let Some(v) = &f.message_type {
        match message_code_only(v) {
            // Every event of a message code: `ADT^` up to (not including) `ADT_`, the next
            // character after `^`, a range the type index serves; and the code sent alone.
            Some(code) => {
                add(
                    " AND (message_type = ?",
                    Value::Text(code.to_owned()),
                    &mut sql,
                );
                add(
                    " OR (message_type >= ?",
                    Value::Text(format!("{code}^")),
                    &mut sql,
                );
                add(
                    " AND message_type < ?))",
                    Value::Text(format!("{code}_")),
                    &mut sql,
                );
            }
            None => add(" AND message_type = ?", Value::Text(v.clone()), &mut sql),
        }
    }
    if let Some(v) = f.state {
        add(
            " AND state = ?",
            Value::Text(v.as_str().to_owned()),
            &mut sql,
        );
        if v != MessageState::Accepted {
            // Lets SQLite see that the partial index `messages_unusual_state` holds every match.
            sql.push_str(" AND state <> 'accepted'");
        }
    }
    if let Some(v) = &f.control_id {
        add(" AND control_id = ?", Value::Text(v.clone()), &mut sql);
    }
    // Not indexed: read newest first alongside the other criteria, as a search by state is.
    if let Some(v) = &f.sending_application {
        add(" AND sending_app = ?", Value::Text(v.clone()), &mut sql);
    }
    if let Some(v) = &f.sending_facility {
        add(
            " AND sending_facility = ?",
            Value::Text(v.clone()),
            &mut sql,
        );
    }
    if let Some(v) = &f.patient_id {
        let mac = cipher.patient_index(v).to_vec();
        add(
            " AND id IN (SELECT message_id FROM message_patient_ids WHERE identifier_mac = ?)",
            Value::Blob(mac),
            &mut sql,
        );
    }
    if let Some(v) = f.received_from {
        add(" AND received_at >= ?", Value::Integer(v.0), &mut sql);
    }
    if let Some(v) = f.received_before {
        add(" AND received_at < ?", Value::Integer(v.0), &mut sql);
    }
    add(
        " ORDER BY id DESC LIMIT ?",
        Value::Integer(page_len(f.limit)),
        &mut sql,
    );
    add(
        " OFFSET ?",
        Value::Integer(i64::try_from(f.offset).unwrap_or(i64::MAX)),
        &mut sql,
    );
    (sql, args)
}

pub(crate) fn deliveries(
    conn: &Connection,
    cipher: &Cipher,
    id: MessageId,
) -> Result<Vec<Delivery>> {
    const OP: &str = "deliveries";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ?1 ORDER BY seq"
        ))
        .map_err(db(OP))?;
    let mut found = stmt.query([id.0]).map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(db(OP))? {
        out.push(rows::delivery(row, cipher)?);
    }
    Ok(out)
}

pub(crate) fn queue_depth(conn: &Connection, destination: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM deliveries WHERE destination = ?1 AND state NOT IN {SETTLED_STATES}"
        ))
        .and_then(|mut s| s.query_row([destination], |r| r.get(0)))
        .map_err(db("queue_depth"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn oldest_queued_age(
    conn: &Connection,
    destination: &str,
) -> Result<Option<std::time::Duration>> {
    let created: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT created_at FROM deliveries WHERE destination = ?1 AND state NOT IN {SETTLED_STATES}
             ORDER BY seq LIMIT 1"
        ))
        .and_then(|mut s| s.query_row([destination], |r| r.get(0)).optional())
        .map_err(db("oldest_queued_age"))?;
    Ok(created.map(|c| UnixMillis::now().since(UnixMillis(c))))
}

pub(crate) fn events(conn: &Connection, f: &EventFilter) -> Result<Vec<Event>> {
    const OP: &str = "events";
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut add = |clause: &str, v: Value, sql: &mut String| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(v) = &f.channel {
        add(" AND channel = ?", Value::Text(v.clone()), &mut sql);
    }
    if let Some(v) = &f.destination {
        add(" AND destination = ?", Value::Text(v.clone()), &mut sql);
    }
    if let Some(v) = f.message_id {
        add(" AND message_id = ?", Value::Integer(v.0), &mut sql);
    }
    if let Some(v) = f.kind {
        add(
            " AND kind = ?",
            Value::Text(v.as_str().to_owned()),
            &mut sql,
        );
    }
    if let Some(v) = f.after {
        add(" AND id > ?", Value::Integer(v), &mut sql);
    }
    if let Some(v) = f.since {
        add(" AND at >= ?", Value::Integer(v.0), &mut sql);
    }
    sql.push_str(if f.newest_first {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id"
    });
    add(" LIMIT ?", Value::Integer(page_len(f.limit)), &mut sql);
    let mut stmt = conn.prepare(&sql).map_err(db(OP))?;
    let mut found = stmt.query(params_from_iter(args)).map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(db(OP))? {
        out.push(rows::event(row)?);
    }
    Ok(out)
}

/// Whether the `meta` table records a key check (the database has been used with a key).
pub(crate) fn key_check(conn: &Connection) -> Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'key_check'",
        params![],
        |r| r.get(0),
    )
    .optional()
    .map_err(db("read key check"))
}

/// Which deliveries are in the error queue of destination `?1`.
const IN_ERROR_QUEUE: &str = "destination = ?1 AND state = 'failed' AND NOT EXISTS (
             SELECT 1 FROM deliveries later
             WHERE later.message_id = deliveries.message_id
               AND later.destination = deliveries.destination AND later.seq > deliveries.seq)";

/// A destination's error queue: failed deliveries with no later delivery of the same message to
/// the same destination. Both the count and the page walk the partial index `deliveries_failed`
/// (destination, seq) and probe `deliveries_message` for a later delivery.
pub(crate) fn error_queue(
    conn: &Connection,
    cipher: &Cipher,
    destination: &str,
    limit: u32,
    offset: u64,
) -> Result<crate::ErrorQueue> {
    const OP: &str = "error_queue";
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM deliveries WHERE {IN_ERROR_QUEUE}"
        ))
        .and_then(|mut s| s.query_row([destination], |r| r.get(0)))
        .map_err(db(OP))?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {IN_ERROR_QUEUE}
             ORDER BY seq DESC LIMIT ?2 OFFSET ?3"
        ))
        .map_err(db(OP))?;
    let mut found = stmt
        .query(params![
            destination,
            page_len(limit),
            i64::try_from(offset).unwrap_or(i64::MAX)
        ])
        .map_err(db(OP))?;
    let mut deliveries = Vec::new();
    while let Some(row) = found.next().map_err(db(OP))? {
        deliveries.push(rows::delivery(row, cipher)?);
    }
    let mut summary = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM messages WHERE id = ?1"
        ))
        .map_err(db(OP))?;
    let mut entries = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let mut message = summary.query([delivery.message_id.0]).map_err(db(OP))?;
        // Retention removes a message together with its deliveries, so one snapshot never
        // shows a delivery without its message; skip one rather than fail if it ever does.
        if let Some(row) = message.next().map_err(db(OP))? {
            let message = rows::summary(row)?;
            entries.push(crate::FailedDelivery { delivery, message });
        }
    }
    Ok(crate::ErrorQueue {
        total: u64::try_from(total).unwrap_or(0),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::crypto::MasterKey;

    /// SQLite's plan for `sql`, one line per step.
    fn plan_of(conn: &Connection, sql: &str, args: Vec<Value>) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        let steps = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("steps");
        steps.join("\n")
    }

    /// A migrated database on a connection set up as the store sets up its own (the query
    /// planner's settings included).
    fn schema(dir: &Path) -> Connection {
        let path = dir.join("plans.db");
        let mut conn =
            super::super::open_connection(&path, std::time::Duration::from_secs(1), false)
                .expect("open");
        super::super::migrations::migrate(&mut conn, &path).expect("migrate");
        conn
    }

    /// The indexes that hold only the rare rows must still serve the searches for them, or a
    /// search for errors among millions of accepted messages would read the whole table.
    #[test]
    fn searches_for_rare_rows_use_the_partial_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = schema(dir.path());
        let cipher = Cipher::new(&MasterKey::generate(Path::new("key")).expect("key"));
        let by_state = |state| SearchFilter {
            state: Some(state),
            ..SearchFilter::default()
        };
        for state in [
            MessageState::Error,
            MessageState::Held,
            MessageState::Rejected,
        ] {
            let (sql, args) = search_sql(&cipher, &by_state(state));
            let plan = plan_of(&conn, &sql, args);
            assert!(plan.contains("messages_unusual_state"), "{state:?}: {plan}");
        }
        // Nearly every row is accepted: newest first through the table finds a page at once.
        let (sql, args) = search_sql(&cipher, &by_state(MessageState::Accepted));
        let plan = plan_of(&conn, &sql, args);
        assert!(!plan.contains("messages_unusual_state"), "{plan}");

        for sql in [
            format!("SELECT count(*) FROM deliveries WHERE {IN_ERROR_QUEUE}"),
            format!("SELECT seq FROM deliveries WHERE {IN_ERROR_QUEUE} ORDER BY seq DESC"),
        ] {
            let plan = plan_of(&conn, &sql, vec![Value::Text("out".into())]);
            assert!(plan.contains("deliveries_failed"), "{plan}");
        }
    }
}
