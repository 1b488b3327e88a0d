//! Subscription support: the change feed over `resource_versions`, named cursors, and the
//! leased notification queue.
//!
//! What a crash leaves behind: the cursor moves in the transaction that queues the
//! notifications it covered, so a scan is either done (cursor and notifications) or not at
//! all; a notification claimed but not settled is claimed again once its lease expires, so a
//! receiver may see one twice (at-least-once, like deliveries).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::write::WriteCx;
use crate::crypto::Cipher;
use crate::error::Record;
use crate::{
    Error, MessageId, NewNotification, Notification, NotificationOutcome, ResourceChange, Result,
    StoredResource, UnixMillis, clip_text,
};

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::db(op, e)
}

pub(crate) fn changes(
    conn: &Connection,
    cipher: &Cipher,
    after: i64,
    limit: u32,
) -> Result<Vec<ResourceChange>> {
    const OP: &str = "resource changes";
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.rowid, r.type, r.id, v.key, v.version, v.last_updated, v.deleted,
                    v.payload, v.source_message
             FROM resource_versions v JOIN resources r ON r.key = v.key
             WHERE v.rowid > ?1 ORDER BY v.rowid LIMIT ?2",
        )
        .map_err(db(OP))?;
    let mut rows = stmt
        .query(params![after, i64::from(limit.clamp(1, 10_000))])
        .map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(OP))? {
        let key: i64 = row.get(3).map_err(db(OP))?;
        let version = u64::try_from(row.get::<_, i64>(4).map_err(db(OP))?).unwrap_or(0);
        let sealed: Option<Vec<u8>> = row.get(7).map_err(db(OP))?;
        let json = match sealed {
            Some(s) => cipher.open(Record::ResourceVersion { key, version }, &s)?,
            None => Vec::new(),
        };
        out.push(ResourceChange {
            position: row.get(0).map_err(db(OP))?,
            resource: StoredResource {
                resource_type: row.get(1).map_err(db(OP))?,
                id: row.get(2).map_err(db(OP))?,
                version,
                last_updated: UnixMillis(row.get(5).map_err(db(OP))?),
                deleted: row.get(6).map_err(db(OP))?,
                json,
                source: row.get::<_, Option<i64>>(8).map_err(db(OP))?.map(MessageId),
            },
        });
    }
    Ok(out)
}

pub(crate) fn cursor(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT position FROM cursors WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map(|p| p.unwrap_or(0))
        .map_err(db("read cursor"))
}

pub(crate) fn queue(
    cx: &mut WriteCx<'_>,
    cursor: &str,
    position: i64,
    notifications: &[NewNotification],
) -> Result<()> {
    const OP: &str = "queue notifications";
    let conn = cx.conn();
    let now = UnixMillis::now().0;
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO notifications (subscription, resource_type, resource_id,
                 version, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
        )
        .map_err(db(OP))?;
    for n in notifications {
        insert
            .execute(params![
                n.subscription,
                n.resource_type,
                n.resource_id,
                i64::try_from(n.version).unwrap_or(i64::MAX),
                now
            ])
            .map_err(db(OP))?;
    }
    conn.prepare_cached(
        "INSERT INTO cursors (name, position) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
    )
    .and_then(|mut s| s.execute(params![cursor, position]))
    .map(|_| ())
    .map_err(db(OP))
}

/// The oldest claimable notifications. The first term is the WHERE of the partial index
/// `notifications_pending` (seq), which SQLite then walks in order, past no settled entry.
const CLAIMABLE: &str = "SELECT seq, subscription, resource_type, resource_id, version, attempts
     FROM notifications
     WHERE state NOT IN ('delivered', 'failed')
       AND (state = 'queued'
            OR (state = 'retrying' AND coalesce(next_attempt_at, 0) <= ?1)
            OR (state = 'in_flight' AND coalesce(lease_until, 0) <= ?1))
     ORDER BY seq LIMIT ?2";

pub(crate) fn claim(
    cx: &mut WriteCx<'_>,
    worker: &str,
    max: usize,
    lease: Duration,
) -> Result<Vec<Notification>> {
    const OP: &str = "claim notifications";
    let conn = cx.conn();
    let now = UnixMillis::now();
    let until = now.plus(lease);
    let mut found = conn
        .prepare_cached(CLAIMABLE)
        .and_then(|mut s| {
            s.query_map(
                params![now.0, i64::try_from(max.max(1)).unwrap_or(1)],
                |r| {
                    Ok(Notification {
                        seq: r.get(0)?,
                        subscription: r.get(1)?,
                        resource_type: r.get(2)?,
                        resource_id: r.get(3)?,
                        version: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                        claimed_by: worker.to_owned(),
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db(OP))?;
    let mut update = conn
        .prepare_cached(
            "UPDATE notifications SET state = 'in_flight', attempts = attempts + 1,
                 claimed_by = ?2, lease_until = ?3, updated_at = ?4
             WHERE seq = ?1",
        )
        .map_err(db(OP))?;
    for n in &mut found {
        update
            .execute(params![n.seq, worker, until.0, now.0])
            .map_err(db(OP))?;
        n.attempts += 1;
    }
    Ok(found)
}

pub(crate) fn settle(
    cx: &mut WriteCx<'_>,
    n: &Notification,
    outcome: &NotificationOutcome,
) -> Result<()> {
    const OP: &str = "settle notification";
    let (state, error, next) = match outcome {
        NotificationOutcome::Delivered => ("delivered", None, None),
        NotificationOutcome::Retry {
            error,
            next_attempt_at,
        } => ("retrying", Some(clip_text(error)), Some(next_attempt_at.0)),
        NotificationOutcome::Failed { error } => ("failed", Some(clip_text(error)), None),
    };
    let changed = cx
        .conn()
        .prepare_cached(
            "UPDATE notifications SET state = ?2, last_error = coalesce(?3, last_error),
                 next_attempt_at = ?4, claimed_by = NULL, lease_until = NULL, updated_at = ?5
             WHERE seq = ?1 AND state = 'in_flight' AND claimed_by = ?6 AND attempts = ?7",
        )
        .and_then(|mut s| {
            s.execute(params![
                n.seq,
                state,
                error,
                next,
                UnixMillis::now().0,
                n.claimed_by,
                i64::from(n.attempts)
            ])
        })
        .map_err(db(OP))?;
    if changed == 0 {
        return Err(Error::invalid(
            "notification",
            format!(
                "notification {} is no longer leased by {}",
                n.seq, n.claimed_by
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claiming_walks_only_the_pending_notifications() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plans.db");
        let mut conn =
            super::super::open_connection(&path, std::time::Duration::from_secs(1), false)
                .expect("open");
        super::super::migrations::migrate(&mut conn, &path).expect("migrate");
        let plan: String = conn
            .query_row(&format!("EXPLAIN QUERY PLAN {CLAIMABLE}"), [0, 1], |r| {
                r.get(3)
            })
            .expect("plan");
        assert!(plan.contains("notifications_pending"), "{plan}");
    }
}
