//! Versioned schema migrations: SQL files under `crates/store/migrations/`, applied at open.
//!
//! Invariants: `PRAGMA user_version` holds the number of the last migration applied. All pending
//! migrations run in one `BEGIN IMMEDIATE` transaction together with the version bump, so a crash
//! leaves the schema either before or after, never half-way, and two processes opening a fresh
//! file at once cannot both apply it (the second sees the new version and does nothing).
//! Migrations are append-only: a released file is never edited. A version may add a step in Rust
//! after its SQL, for what SQL cannot say ([`rewrite_in_list_checks`]).

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::{Error, Result};

/// One schema version: its SQL, then a step in Rust for what SQL cannot say, if any.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Transaction<'_>) -> Result<()>>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, then: None }
}

/// The migrations in order; entry `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[Migration] = &[
    sql(include_str!("../../migrations/0001_initial.sql")),
    sql(include_str!("../../migrations/0002_held_state.sql")),
    sql(include_str!("../../migrations/0003_resources.sql")),
    sql(include_str!("../../migrations/0004_users_audit.sql")),
    Migration {
        sql: include_str!("../../migrations/0005_leaner_indexes.sql"),
        then: Some(rewrite_in_list_checks),
    },
    sql(include_str!("../../migrations/0006_quantity_index.sql")),
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
    for (index, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(migration.sql).map_err(db)?;
        if let Some(step) = migration.then {
            step(&tx)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(found)
}

/// Version 5's CHECK constraints, as (table, text written by versions 1 to 4, text from now on).
/// Each accepts exactly the same values as before.
const CHECK_REWRITES: &[(&str, &str, &str)] = &[
    (
        "messages",
        "CHECK (state IN
                          ('received', 'accepted', 'rejected', 'duplicate', 'filtered', 'error',
                           'held'))",
        "CHECK (state = 'received' OR state = 'accepted' OR state = 'rejected'
                          OR state = 'duplicate' OR state = 'filtered' OR state = 'error'
                          OR state = 'held')",
    ),
    (
        "deliveries",
        "CHECK (state IN
                        ('queued', 'in_flight', 'delivered', 'retrying', 'failed'))",
        "CHECK (state = 'queued' OR state = 'in_flight' OR state = 'delivered'
                        OR state = 'retrying' OR state = 'failed')",
    ),
    (
        "notifications",
        "CHECK (state IN
                        ('queued', 'in_flight', 'delivered', 'retrying', 'failed'))",
        "CHECK (state = 'queued' OR state = 'in_flight' OR state = 'delivered'
                        OR state = 'retrying' OR state = 'failed')",
    ),
    (
        "pending_resources",
        "CHECK (state IN ('pending', 'applied', 'rejected'))",
        "CHECK (state = 'pending' OR state = 'applied' OR state = 'rejected')",
    ),
];

/// Rewrites the `state IN (a, b, c, ...)` CHECK constraints of the tables written for every
/// message as chains of equalities. SQLite evaluates an IN list of more than two constants by
/// building a temporary B-tree of them each time a statement checks the constraint: every
/// insert, and every update of the state; that was a fifth of the store writer's instructions.
///
/// The constraints accept the same values and every stored row still satisfies them, so only
/// the schema text changes, by the procedure SQLite documents for such changes (ALTER TABLE,
/// "making other kinds of table schema changes"): `writable_schema`, the new text, and
/// `schema_version` + 1 so that every connection reads the schema again. A text that is not
/// exactly what versions 1 to 4 wrote stops the migration (the transaction rolls back).
fn rewrite_in_list_checks(tx: &Transaction<'_>) -> Result<()> {
    let db = |e| Error::db("migrate to version 5", e);
    let cookie: i64 = tx
        .pragma_query_value(None, "schema_version", |r| r.get(0))
        .map_err(db)?;
    tx.pragma_update(None, "writable_schema", true)
        .map_err(db)?;
    for (table, old, new) in CHECK_REWRITES {
        let (row, sql): (i64, String) = tx
            .query_row(
                "SELECT rowid, sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        if sql.matches(old).count() != 1 {
            return Err(Error::Corrupt {
                table: "sqlite_schema",
                column: "sql",
                row,
                detail: format!("table {table} does not have the CHECK constraint version 4 wrote"),
            });
        }
        tx.execute(
            "UPDATE sqlite_schema SET sql = ?2 WHERE type = 'table' AND name = ?1",
            params![table, sql.replacen(old, new, 1)],
        )
        .map_err(db)?;
    }
    tx.pragma_update(None, "schema_version", cookie + 1)
        .map_err(db)?;
    tx.pragma_update(None, "writable_schema", false)
        .map_err(db)?;
    Ok(())
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
        conn.execute_batch(MIGRATIONS[0].sql).expect("version 1");
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

    /// Version 5 rewrote the state CHECK constraints: they must refuse and accept exactly what
    /// they did, and the statements run for every message must no longer build temporary
    /// B-trees (`OpenEphemeral`), which is what the rewrite was for.
    #[test]
    fn version_5_checks_accept_the_same_states_without_temporary_trees() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, Path::new(":memory:")).expect("migrate");
        let schema: String = conn
            .query_row(
                "SELECT group_concat(sql, ';') FROM sqlite_schema
                 WHERE name IN ('messages', 'deliveries', 'notifications', 'pending_resources')",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert!(!schema.contains("state IN"), "{schema}");

        let message = |state: &str| {
            conn.execute(
                "INSERT INTO messages (channel, received_at, peer, sending_app, sending_facility,
                     message_type, control_id, version, state, payload_sha256, size)
                 VALUES ('c', 1, 'p', 'a', 'f', 'ADT^A01', 'x', '2.5', ?1, x'00', 1)",
                [state],
            )
        };
        for state in [
            "received",
            "accepted",
            "rejected",
            "duplicate",
            "filtered",
            "error",
            "held",
        ] {
            message(state).unwrap_or_else(|e| panic!("{state}: {e}"));
        }
        for state in ["Accepted", "", "queued"] {
            assert!(message(state).is_err(), "{state:?} must be refused");
        }
        let delivery = |state: &str| {
            conn.execute(
                "INSERT INTO deliveries (message_id, channel, destination, state, created_at,
                                         updated_at)
                 VALUES (1, 'c', 'd', ?1, 1, 1)",
                [state],
            )
        };
        for state in ["queued", "in_flight", "delivered", "retrying", "failed"] {
            delivery(state).unwrap_or_else(|e| panic!("{state}: {e}"));
        }
        for state in ["accepted", "done"] {
            assert!(delivery(state).is_err(), "{state:?} must be refused");
        }
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        assert_eq!(ok, "ok");

        for sql in [
            "INSERT INTO messages (channel, received_at, peer, sending_app, sending_facility,
                 message_type, control_id, version, state, payload_sha256, size)
             VALUES ('c', 1, 'p', 'a', 'f', 'ADT^A01', 'x', '2.5', 'accepted', x'00', 1)",
            "INSERT INTO deliveries (message_id, channel, destination, state, created_at,
                                     updated_at)
             VALUES (1, 'c', 'd', 'queued', 1, 1)",
            "UPDATE deliveries SET state = 'in_flight' WHERE seq = 1",
            "UPDATE deliveries SET state = 'delivered' WHERE seq = 1",
            "UPDATE notifications SET state = 'in_flight' WHERE seq = 1",
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect("explain");
            let ops = stmt
                .query_map([], |r| r.get::<_, String>(1))
                .expect("ops")
                .collect::<std::result::Result<Vec<_>, _>>()
                .expect("ops");
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {ops:?}"
            );
        }
    }

    /// Version 6 adds the quantity column to a search-value table that already has rows: they
    /// stay, and a quantity range is then served by its own index.
    #[test]
    fn version_6_keeps_search_values_and_indexes_quantities() {
        let mut conn = Connection::open_in_memory().expect("open");
        {
            let tx = conn.transaction().expect("tx");
            for migration in &MIGRATIONS[..5] {
                tx.execute_batch(migration.sql).expect("sql");
                if let Some(step) = migration.then {
                    step(&tx).expect("step");
                }
            }
            tx.pragma_update(None, "user_version", 5).expect("v5");
            tx.commit().expect("commit");
        }
        conn.execute(
            "INSERT INTO resource_index (key, param, system, value) VALUES (1, 'P.x', 's', 'v')",
            [],
        )
        .expect("v5 row");
        assert_eq!(migrate(&mut conn, Path::new(":memory:")).expect("up"), 5);
        let (value, num): (String, Option<f64>) = conn
            .query_row(
                "SELECT value, num FROM resource_index WHERE key = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row kept");
        assert_eq!((value.as_str(), num), ("v", None));
        conn.execute(
            "INSERT INTO resource_index (key, param, system, value, num)
             VALUES (2, 'O.q', '', 'mg', 5.4)",
            [],
        )
        .expect("quantity row");
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT key FROM resource_index
                 WHERE param = 'O.q' AND num IS NOT NULL AND num > 5",
            )
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        assert!(
            plan.iter().any(|p| p.contains("resource_index_num")),
            "{plan:?}"
        );
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
