//! The SQLite backend: the shared conformance suite, then what only SQLite has (group commit,
//! files on disk, the key file, migrations, a real crash).

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use causeway_store::sqlite::{DB_FILE_NAME, SCHEMA_VERSION};
use causeway_store::{BoxFuture, ErrorKind, MessageId, SqliteOptions, SqliteStore, Store};
use common::{Harness, ack_for, adt};
use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;

/// A data directory in a tempdir; every `open` opens the same directory.
struct SqliteHarness {
    dir: TempDir,
    options: SqliteOptions,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            options: SqliteOptions::default(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Harness for SqliteHarness {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let store = SqliteStore::open(self.data_dir(), self.options.clone())
                .await
                .expect("open store");
            Arc::new(store) as Arc<dyn Store>
        })
    }
}

conformance_tests!(SqliteHarness::new();
    insert_then_read_back,
    duplicate_returns_stored_ack_and_queues_nothing,
    duplicate_uses_ack_recorded_later_or_none,
    reused_control_id_is_stored_flagged_and_routed,
    duplicate_scope_is_channel_sender_and_control_id,
    racing_copies_are_routed_exactly_once,
    retransmission_after_error_is_processed_again,
    fifo_head_blocks_its_destination,
    fifo_advances_after_delivery_or_failure,
    parallel_claims_take_several_in_order,
    expired_lease_is_taken_over_and_fenced,
    renewed_lease_keeps_the_claim,
    a_restarted_worker_takes_over_its_own_lease_at_once,
    batches_claim_in_order_and_release_what_was_not_attempted,
    settling_and_claiming_share_one_commit_and_keep_fifo,
    in_flight_after_restart_is_delivered_again,
    requeue_appends_at_the_tail,
    outbound_bytes_are_kept_and_reprocess_requeues,
    search_filters_combine,
    state_changes_and_events,
    invalid_input_is_refused_with_its_field,
    large_payload_round_trips_and_oversize_is_refused,
    everything_survives_close_and_reopen,
    purge_respects_cutoffs_and_pending_deliveries,
    purge_works_through_many_chunks,
    retention_task_runs_passes_until_shutdown,
    resources_are_versioned_and_unchanged_writes_make_no_version,
    if_match_guards_writes_and_a_batch_is_all_or_nothing,
    deleted_resources_leave_search_but_keep_history,
    search_matches_tokens_text_dates_and_references,
    search_sorts_by_dates_values_and_ids,
    a_clause_of_thousands_of_values_is_answered,
    an_update_replaces_the_search_values,
    search_matches_quantities_by_prefix_precision_and_unit,
    composites_match_a_code_with_its_own_quantity,
    reindexing_replaces_search_values_of_the_current_version,
    a_scan_pages_through_the_live_resources_of_a_type,
    a_bulk_load_leaves_search_answers_unchanged,
    error_queue_holds_failed_deliveries_until_sent_again,
);

/// A store with the shipped options in `dir`; `what` names the open in a failure.
async fn open_default(dir: &Path, what: &str) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn outside_connection(db: &Path) -> Connection {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).expect("outside connection")
}

/// Name and SQL of every index on the search-value table, in name order.
fn resource_index_indexes(db: &Path) -> Vec<(String, String)> {
    let conn = outside_connection(db);
    let mut stmt = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index'
             AND tbl_name = 'resource_index' ORDER BY name",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

#[tokio::test]
async fn a_bulk_load_drops_the_value_indexes_and_builds_them_as_the_migration_did() {
    let h = SqliteHarness::new();
    let store = h.open().await;
    let db = h.data_dir().join(DB_FILE_NAME);
    let fresh = resource_index_indexes(&db);
    let names = |indexes: &[(String, String)]| -> Vec<String> {
        indexes.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(
        names(&fresh),
        [
            "resource_index_date",
            "resource_index_key",
            "resource_index_num",
            "resource_index_value"
        ]
    );
    let puts = (0..20)
        .map(|i| causeway_store::ResourcePut {
            resource_type: "Patient".into(),
            id: format!("p{i}"),
            json: b"{}".to_vec(),
            index: vec![causeway_store::IndexEntry {
                param: "Patient.family".into(),
                value: causeway_store::IndexValue::Text(format!("name{i}")),
            }],
            if_match: None,
            source: None,
            delete: false,
        })
        .collect();
    store.put_resources(puts).await.expect("write");

    // Below a tenth of what is stored: maintained row by row as always.
    assert!(!store.begin_bulk_load(1).await.expect("begin small"));
    assert_eq!(resource_index_indexes(&db), fresh);
    // From a tenth on: dropped until the load ends, the key index kept for searches.
    assert!(store.begin_bulk_load(2).await.expect("begin"));
    assert_eq!(names(&resource_index_indexes(&db)), ["resource_index_key"]);
    store.end_bulk_load().await.expect("end");
    assert_eq!(resource_index_indexes(&db), fresh);

    // A load that never ended (killed): opening the store builds them again.
    assert!(store.begin_bulk_load(100).await.expect("begin again"));
    store.close().await.expect("close");
    drop(store);
    let store = h.open().await;
    assert_eq!(resource_index_indexes(&db), fresh);
    store.close().await.expect("close");
}

fn count(conn: &Connection, sql: &str, id: i64) -> i64 {
    conn.query_row(sql, [id], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_and_releases_callers_only_after_commit() {
    const CALLERS: usize = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    // A short gathering window makes the grouping independent of scheduling luck.
    let options = SqliteOptions {
        max_wait: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path(), options).await.expect("open");
    let db = store.db_path().to_owned();
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let out = store
                .insert_inbound(adt("adt", &format!("GC{i}"), "MRN-GC", &["lab"]))
                .await
                .expect("insert");
            // Released: the row and its queue entry must already be committed, visible to a
            // brand-new connection that shares nothing with the store.
            let conn = outside_connection(&db);
            assert_eq!(
                count(
                    &conn,
                    "SELECT count(*) FROM messages WHERE id = ?1",
                    out.id.0
                ),
                1
            );
            assert_eq!(
                count(
                    &conn,
                    "SELECT count(*) FROM deliveries WHERE message_id = ?1",
                    out.id.0
                ),
                1
            );
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let stats = store.write_stats();
    assert_eq!(stats.messages, CALLERS as u64);
    assert_eq!(stats.failed_commits, 0);
    assert!(stats.commits >= 1);
    assert!(
        stats.commits < CALLERS as u64,
        "{} commits for {CALLERS} messages: no batching",
        stats.commits
    );
    assert!(stats.commits_per_message() < 1.0);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_continuous_writes() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 500;
    const NOTE_BYTES: usize = 16 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let wal = dir.path().join(format!("{DB_FILE_NAME}-wal"));
    // Eight callers that never pause: the checkpointer thread alone never sees a moment with
    // every frame copied, so only the writer's fallback lets the WAL rewind.
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let mut m = adt("adt", &format!("WAL{w}-{i}"), "MRN-WAL", &["lab"]);
                m.raw.extend_from_slice(b"NTE|1||");
                // Letters from a xorshift: text that compression cannot shrink to nothing.
                let mut x = 0x9e37_79b9_u32 ^ (w * PER_WRITER + i) as u32;
                m.raw.extend((0..NOTE_BYTES).map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    b'A' + (x % 26) as u8
                }));
                m.raw.push(b'\r');
                store.insert_inbound(m).await.expect("insert");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let written = (WRITERS * PER_WRITER * NOTE_BYTES) as u64;
    let wal_len = std::fs::metadata(&wal).expect("wal file").len();
    // 4,096 frames of 4 KiB plus the groups in flight when the fallback ran; without it the
    // file holds every frame written (more than `written`).
    assert!(
        wal_len < 32 * 1024 * 1024,
        "WAL grew to {wal_len} bytes after {written} bytes of payload"
    );
    store.close().await.expect("close");
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read file");
        if bytes.windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_acks_and_patient_ids_never_reach_the_disk_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let mut m = adt("adt", "VISIBLE-CONTROL-ID", "MRN-SECRET-0042", &["lab"]);
    m.raw
        .extend_from_slice(b"NTE|1||PATIENT-NOTE-ZQXJ-SECRET\r");
    m.ack = Some(b"MSH|^~\\&|X\rMSA|AA|1|ACK-TEXT-SECRET-VVK\r".to_vec());
    let id = store.insert_inbound(m).await.expect("insert").id;
    let d = store
        .claim_next(
            "lab",
            &common::claim("w", Duration::from_secs(60), Default::default()),
        )
        .await
        .expect("claim")
        .expect("delivery");
    store
        .complete(
            &d,
            causeway_store::Outcome::Delivered {
                ack: Some(b"REMOTE-ACK-SECRET-PPQ".to_vec()),
            },
        )
        .await
        .expect("complete");
    assert!(store.message(id).await.expect("read").is_some());

    for phase in ["while open (WAL)", "after close (checkpointed)"] {
        // The scan does find what is stored in clear, so an empty result means something.
        assert!(
            !files_contain(dir.path(), b"VISIBLE-CONTROL-ID").is_empty(),
            "{phase}"
        );
        for secret in [
            &b"PATIENT-NOTE-ZQXJ-SECRET"[..],
            b"DOE^JANE",
            b"MRN-SECRET-0042",
            b"ACK-TEXT-SECRET-VVK",
            b"REMOTE-ACK-SECRET-PPQ",
        ] {
            let hits = files_contain(dir.path(), secret);
            assert!(
                hits.is_empty(),
                "{phase}: {:?} found in {hits:?}",
                String::from_utf8_lossy(secret)
            );
        }
        if phase.starts_with("while") {
            store.close().await.expect("close");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_altered_or_renumbered_ciphertexts_fail_to_decrypt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut m = adt("adt", &format!("T{i}"), &format!("MRN-T{i}"), &[]);
        m.ack = Some(ack_for(&format!("T{i}")));
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let conn = outside_connection(store.db_path());

    // A payload copied to another row.
    conn.execute(
        "UPDATE messages SET payload = (SELECT payload FROM messages WHERE id = ?1) WHERE id = ?2",
        [ids[0].0, ids[1].0],
    )
    .expect("move payload");
    let err = store.message(ids[1]).await.expect_err("moved payload");
    assert_eq!(err.kind(), ErrorKind::Decrypt);
    assert_eq!(
        err.to_string(),
        format!(
            "payload of message {} failed to decrypt: wrong key, tampered bytes, or ciphertext moved from another row",
            ids[1]
        )
    );
    assert!(
        store
            .message(ids[0])
            .await
            .expect("source row still fine")
            .is_some()
    );

    // One flipped byte.
    let mut sealed: Vec<u8> = conn
        .query_row(
            "SELECT payload FROM messages WHERE id = ?1",
            [ids[2].0],
            |r| r.get(0),
        )
        .expect("payload");
    let last = sealed.len() - 20;
    sealed[last] ^= 0x40;
    conn.execute(
        "UPDATE messages SET payload = ?1 WHERE id = ?2",
        rusqlite::params![sealed, ids[2].0],
    )
    .expect("flip");
    assert_eq!(
        store.message(ids[2]).await.expect_err("flipped").kind(),
        ErrorKind::Decrypt
    );

    // The row's id (the associated data) changed.
    let renumbered = MessageId(ids[3].0 + 1000);
    conn.execute(
        "UPDATE messages SET id = ?1 WHERE id = ?2",
        [renumbered.0, ids[3].0],
    )
    .expect("renumber");
    conn.execute(
        "UPDATE acks SET message_id = ?1 WHERE message_id = ?2",
        [renumbered.0, ids[3].0],
    )
    .expect("renumber ack");
    let err = store.message(renumbered).await.expect_err("renumbered");
    assert_eq!(err.kind(), ErrorKind::Decrypt);

    // An ACK moved to another message.
    conn.execute(
        "UPDATE acks SET ack = (SELECT ack FROM acks WHERE message_id = ?1) WHERE message_id = ?2",
        [ids[1].0, ids[0].0],
    )
    .expect("move ack");
    let err = store.message(ids[0]).await.expect_err("moved ack");
    assert_eq!(
        err.to_string().split(':').next(),
        Some(&*format!("ack of message {} failed to decrypt", ids[0]))
    );
    store.close().await.expect("close");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_is_private_checked_and_never_replaced() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let store = SqliteStore::open(&dir, SqliteOptions::default())
        .await
        .expect("open");
    let key_path = store.key_path();
    assert_eq!(mode(&key_path), 0o600, "key file mode");
    assert_eq!(mode(&dir), 0o700, "data directory mode");
    let text = std::fs::read_to_string(&key_path).expect("key");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "causeway-store-key v1");
    assert_eq!(lines[1].len(), 64);
    assert!(lines[1].bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        !format!("{store:?}").contains(lines[1]),
        "Debug shows no key"
    );
    let id = store
        .insert_inbound(adt("adt", "KF1", "MRN-K", &[]))
        .await
        .expect("insert")
        .id;
    store.close().await.expect("close");

    let expect_key_error = |result: causeway_store::Result<SqliteStore>, fragment: &str| {
        let err = result.expect_err("must refuse");
        assert_eq!(err.kind(), ErrorKind::Key, "{err}");
        assert!(err.to_string().contains(fragment), "{err}");
    };

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    expect_key_error(
        SqliteStore::open(&dir, SqliteOptions::default()).await,
        "permissions 0644 are too open; run chmod 600 on it",
    );
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let original = std::fs::read(&key_path).expect("key");
    let other = format!("causeway-store-key v1\n{}\n", "ab".repeat(32));
    std::fs::write(&key_path, other).expect("write other key");
    expect_key_error(
        SqliteStore::open(&dir, SqliteOptions::default()).await,
        "does not match",
    );

    std::fs::write(&key_path, "not a key\n").expect("write garbage");
    expect_key_error(
        SqliteStore::open(&dir, SqliteOptions::default()).await,
        "does not start with the line `causeway-store-key v1`",
    );

    std::fs::remove_file(&key_path).expect("remove key");
    expect_key_error(
        SqliteStore::open(&dir, SqliteOptions::default()).await,
        "missing",
    );
    assert!(!key_path.exists(), "a lost key is never silently replaced");

    std::fs::write(&key_path, &original).expect("restore");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let store = SqliteStore::open(&dir, SqliteOptions::default())
        .await
        .expect("reopen with the right key");
    assert!(
        store
            .message(id)
            .await
            .expect("read")
            .expect("present")
            .raw
            .is_some()
    );
    store.close().await.expect("close");
}

fn schema_of(db: &Path) -> (i64, Vec<String>) {
    let conn = outside_connection(db);
    let version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    let mut stmt = conn
        .prepare("SELECT type || ' ' || name FROM sqlite_master ORDER BY name")
        .expect("prepare");
    let names = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<String>, _>>()
        .expect("rows");
    (version, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_refuse_a_newer_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let id = store
        .insert_inbound(adt("adt", "MG1", "MRN-M", &["lab"]))
        .await
        .expect("insert")
        .id;
    let db = store.db_path().to_owned();
    store.close().await.expect("close");
    let first = schema_of(&db);
    assert_eq!(first.0, SCHEMA_VERSION);
    assert!(first.1.contains(&"table messages".to_owned()));
    assert!(first.1.contains(&"index deliveries_failed".to_owned()));

    for _ in 0..2 {
        let store = open_default(dir.path(), "reopen").await;
        assert!(store.message(id).await.expect("read").is_some());
        store.close().await.expect("close");
        assert_eq!(schema_of(&db), first, "reopening changes nothing");
    }
    let mode: String = outside_connection(&db)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");

    outside_connection(&db)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    let err = SqliteStore::open(dir.path(), SqliteOptions::default())
        .await
        .expect_err("newer");
    assert_eq!(err.kind(), ErrorKind::Schema);
    assert_eq!(
        err.to_string(),
        format!(
            "schema version {} of {} is newer than the {SCHEMA_VERSION} this build knows",
            SCHEMA_VERSION + 1,
            dir.path().join(DB_FILE_NAME).display()
        )
    );
}

/// A destination reads only what it sends: the transformed copy when there is one, else the
/// raw bytes; never the ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_reads_only_the_bytes_destinations_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let mut transformed = adt("adt", "OUT1", "MRN-OUT", &["lab"]);
    transformed.outbound = Some(b"MSH|transformed".to_vec());
    transformed.ack = Some(b"MSH|ack".to_vec());
    let plain = adt("adt", "OUT2", "MRN-OUT", &["lab"]);
    let plain_raw = plain.raw.clone();
    let a = store.insert_inbound(transformed).await.expect("insert").id;
    let b = store.insert_inbound(plain).await.expect("insert").id;

    let full = store.message(a).await.expect("read").expect("present");
    assert!(full.raw.is_some() && full.ack.as_deref() == Some(&b"MSH|ack"[..]));
    let out = store.outgoing(a).await.expect("read").expect("present");
    assert_eq!(out.outbound.as_deref(), Some(&b"MSH|transformed"[..]));
    assert_eq!((out.raw, out.ack), (None, None));
    assert_eq!(out.summary, full.summary);

    let out = store.outgoing(b).await.expect("read").expect("present");
    assert_eq!(out.raw.as_deref(), Some(&plain_raw[..]));
    assert_eq!(out.outbound, None);
    assert_eq!(store.outgoing(MessageId(9_999)).await.expect("read"), None);
    store.close().await.expect("close");
}

/// A transform that changes one field leaves a copy that is stored as a delta against the raw
/// bytes (a few dozen bytes, not a second compressed message), and reads back whole either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_changed_in_one_field_is_stored_small_and_reads_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_default(dir.path(), "open").await;
    let mut msg = adt("adt", "DELTA1", "MRN-DELTA", &["lab"]);
    // Long enough to be compressed, as real messages are.
    msg.raw.extend_from_slice(
        &b"NTE|1||a note that makes the message longer than a page of text\r".repeat(20),
    );
    let raw = msg.raw.clone();
    let changed = String::from_utf8(raw.clone())
        .expect("ascii")
        .replacen("|CAUSEWAY|", "|DOWNSTREAM|", 1)
        .into_bytes();
    msg.outbound = Some(changed.clone());
    let id = store.insert_inbound(msg).await.expect("insert").id;

    let out = store.outgoing(id).await.expect("read").expect("present");
    assert_eq!(out.outbound.as_deref(), Some(&changed[..]));
    assert_eq!(out.raw, None, "a destination gets only the bytes it sends");
    let full = store.message(id).await.expect("read").expect("present");
    assert_eq!(full.raw.as_deref(), Some(&raw[..]));
    assert_eq!(full.outbound.as_deref(), Some(&changed[..]));
    store.close().await.expect("close");

    let conn = Connection::open_with_flags(
        dir.path().join(DB_FILE_NAME),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open db");
    let (payload, outbound): (i64, i64) = conn
        .query_row(
            "SELECT length(payload), length(outbound) FROM messages WHERE id = ?1",
            [id.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert!(
        outbound < 100 && outbound * 2 < payload,
        "sealed payload {payload} bytes, outbound {outbound}"
    );
}

/// Message ids are handed out before the writer (so payloads are sealed on the callers'
/// threads); two processes writing one database must still never share an id, and every
/// payload must open under the id it was stored with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_inserting_in_turn_never_share_a_message_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open_default(dir.path(), "open a").await;
    let b = open_default(dir.path(), "open b").await;
    let mut stored = Vec::new();
    for i in 0..6 {
        let (store, name) = if i % 3 == 0 { (&b, "b") } else { (&a, "a") };
        let mut msg = adt("adt", &format!("ID{i}"), "MRN-ID", &["lab"]);
        msg.outbound = Some(format!("outbound {i} via {name}").into_bytes());
        let raw = msg.raw.clone();
        let outcome = store.insert_inbound(msg).await.expect("insert");
        assert!(outcome.duplicate_of.is_none());
        stored.push((outcome.id, raw, i));
    }
    let mut ids: Vec<_> = stored.iter().map(|(id, _, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{stored:?}");
    for (id, raw, i) in &stored {
        for reader in [&a, &b] {
            let m = reader.message(*id).await.expect("read").expect("present");
            assert_eq!(m.raw.as_deref(), Some(&raw[..]), "message {id}");
            let outbound = m.outbound.expect("outbound");
            assert!(outbound.starts_with(format!("outbound {i} ").as_bytes()));
        }
    }
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_directory_share_queues_through_leases() {
    // Two independent opens (as two processes would) on one database.
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open_default(dir.path(), "open a").await;
    let b = open_default(dir.path(), "open b").await;
    for i in 0..3 {
        a.insert_inbound(adt("adt", &format!("TW{i}"), "MRN-TW", &["lab"]))
            .await
            .expect("insert");
    }
    let dup = b
        .insert_inbound(adt("adt", "TW1", "MRN-TW", &["lab"]))
        .await
        .expect("insert via b");
    assert!(
        dup.duplicate_of.is_some(),
        "b sees a's messages for duplicate detection"
    );
    let p = common::claim(
        "node-a",
        Duration::from_secs(60),
        causeway_store::ClaimMode::Parallel,
    );
    let q = common::claim(
        "node-b",
        Duration::from_secs(60),
        causeway_store::ClaimMode::Parallel,
    );
    let x = a.claim_next("lab", &p).await.expect("claim").expect("x");
    let y = b.claim_next("lab", &q).await.expect("claim").expect("y");
    let z = a.claim_next("lab", &p).await.expect("claim").expect("z");
    assert!(
        x.seq < y.seq && y.seq < z.seq,
        "no delivery is claimed twice"
    );
    assert_eq!(b.claim_next("lab", &q).await.expect("claim"), None);
    let later = b
        .insert_inbound(adt("adt", "TW9", "MRN-TW", &[]))
        .await
        .expect("insert")
        .id;
    assert!(later.0 > dup.id.0, "ids stay unique across handles");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

const CHILD_ENV: &str = "CAUSEWAY_STORE_CRASH_CHILD_DIR";
const CONFIRMATIONS_BEFORE_KILL: usize = 40;

/// The child half of the crash test: inserts from 8 tasks and prints each confirmation the
/// moment it arrives, while more inserts are in flight, until it is killed.
fn crash_child(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(dir, SqliteOptions::default())
            .await
            .expect("open");
        let work = async {
            let mut tasks = Vec::new();
            for t in 0..8usize {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..10_000usize {
                        let n = t * 10_000 + i;
                        let out = store
                            .insert_inbound(adt(
                                "adt",
                                &format!("CR{n}"),
                                &format!("MRN-{n}"),
                                &["lab"],
                            ))
                            .await
                            .expect("insert");
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "COMMITTED {} {n}", out.id.0).expect("stdout");
                        stdout.flush().expect("flush");
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        };
        // Never outlive a parent that failed to kill us.
        let _ = tokio::time::timeout(Duration::from_secs(60), work).await;
    });
    std::process::exit(3);
}

#[test]
fn sigkill_right_after_commit_confirmations_loses_nothing_confirmed() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "sigkill_right_after_commit_confirmations_loses_nothing_confirmed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut confirmed: Vec<(i64, usize)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("COMMITTED ") {
            let (id, n) = rest.split_once(' ').expect("two numbers");
            confirmed.push((id.parse().expect("id"), n.parse().expect("n")));
            if confirmed.len() == CONFIRMATIONS_BEFORE_KILL {
                // SIGKILL: no destructors, no closing of the database, inserts still in flight.
                child.kill().expect("kill");
                break;
            }
        }
    }
    let status = child.wait().expect("wait");
    assert_eq!(
        confirmed.len(),
        CONFIRMATIONS_BEFORE_KILL,
        "child stopped early: {status}"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open_default(dir.path(), "reopen after crash").await;
        for (id, n) in &confirmed {
            let expected = adt("adt", &format!("CR{n}"), &format!("MRN-{n}"), &["lab"]);
            let stored = store
                .message(MessageId(*id))
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("message {id} lost"));
            assert_eq!(
                stored.raw.as_deref(),
                Some(&expected.raw[..]),
                "message {id}"
            );
            assert_eq!(stored.summary.header.control_id, format!("CR{n}"));
            assert_eq!(
                store
                    .deliveries(MessageId(*id))
                    .await
                    .expect("deliveries")
                    .len(),
                1
            );
        }
        // The store is fully usable after recovery.
        let out = store
            .insert_inbound(adt("adt", "AFTER", "MRN-A", &[]))
            .await
            .expect("insert");
        assert!(out.id.0 > confirmed.iter().map(|c| c.0).max().unwrap_or(0));
        store.close().await.expect("close");
    });
}
