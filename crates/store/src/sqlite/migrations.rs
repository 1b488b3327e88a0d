//! Versioned schema migrations: SQL files under `crates/store/migrations/`, applied at open.
//!
//! Invariants: `PRAGMA user_version` holds the number of the last migration applied. All pending
//! migrations run in one `BEGIN IMMEDIATE` transaction together with the version bump, so a crash
//! leaves the schema either before or after, never half-way, and two processes opening a fresh
//! file at once cannot both apply it (the second sees the new version and does nothing).
//! Migrations are append-only: a released file is never edited.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{Error, Result};

/// The migrations in order; entry `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_initial.sql"),
    include_str!("../../migrations/0002_held_state.sql"),
    include_str!("../../migrations/0003_resources.sql"),
    include_str!("../../migrations/0004_users_audit.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` (open on `conn`) to [`SCHEMA_VERSION`]. Returns the version
/// found before.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64> {
    let db = |e| Error::db("migrate", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(found)
}

/// The schema version recorded in an open database.
#[cfg(test)]
fn version(conn: &Connection) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| Error::db("read schema version", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_the_latest_version_once() {
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut conn, Path::new(":memory:")).expect("first"), 0);
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
        assert_eq!(
            migrate(&mut conn, Path::new(":memory:")).expect("again"),
            SCHEMA_VERSION
        );
        assert_eq!(version(&conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn version_2_keeps_rows_and_the_id_counter_and_allows_held() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("version 1");
        conn.pragma_update(None, "user_version", 1).expect("v1");
        let insert = |conn: &Connection, id: i64, state: &str| {
            conn.execute(
                "INSERT INTO messages (id, channel, received_at, peer, sending_app, sending_facility,
                     message_type, control_id, version, state, payload_sha256, size)
                 VALUES (?1, 'c', 1, 'p', 'a', 'f', 'ADT^A01', 'x', '2.5', ?2, x'00', 1)",
                rusqlite::params![id, state],
            )
        };
        insert(&conn, 1, "accepted").expect("row 1");
        insert(&conn, 7, "accepted").expect("row 7");
        assert!(insert(&conn, 8, "held").is_err(), "version 1 refuses held");
        // The highest id was deleted (metadata retention): its number must not come back.
        conn.execute("DELETE FROM messages WHERE id = 7", [])
            .expect("purge");
        assert_eq!(
            migrate(&mut conn, Path::new(":memory:")).expect("migrate"),
            1
        );
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
        conn.execute(
            "INSERT INTO messages (channel, received_at, peer, sending_app, sending_facility,
                 message_type, control_id, version, state, payload_sha256, size)
             VALUES ('c', 1, 'p', 'a', 'f', 'ADT^A01', 'y', '2.5', 'held', x'00', 1)",
            [],
        )
        .expect("held is allowed");
        let id: i64 = conn
            .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
            .expect("id");
        assert_eq!(id, 8, "ids continue after the purged 7");
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'
                   AND name LIKE 'messages_%'",
                [],
                |r| r.get(0),
            )
            .expect("indexes");
        assert_eq!(indexes, 6);
    }

    #[test]
    fn newer_schema_is_refused_with_both_versions() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .expect("bump");
        let err = migrate(&mut conn, Path::new("x.db")).expect_err("must refuse");
        assert_eq!(
            err.to_string(),
            format!(
                "schema version {} of x.db is newer than the {SCHEMA_VERSION} this build knows",
                SCHEMA_VERSION + 5
            )
        );
    }
}
