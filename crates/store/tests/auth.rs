//! Users, tokens, the assertion replay register and the audit chain of the SQLite store,
//! including what a second handle (another process) sees and what tampering with the file does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_store::{
    AuditQuery, ErrorKind, NewAuditRecord, NewToken, NewUser, Role, SqliteOptions, SqliteStore,
    Store, TokenHash, TokenKind, UnixMillis,
};
use rusqlite::Connection;

async fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(dir, SqliteOptions::default())
            .await
            .expect("open store"),
    )
}

fn user(name: &str, role: Role) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: format!("$argon2id$v=19$fake-hash-of-{name}"),
        role,
    }
}

fn audit(agent: &str, action: &str, entity: &str, query: Option<&str>) -> NewAuditRecord {
    NewAuditRecord {
        agent: agent.to_owned(),
        agent_kind: "user".to_owned(),
        action: action.to_owned(),
        entity: entity.to_owned(),
        query: query.map(str::to_owned),
        outcome: 200,
        peer: Some("127.0.0.1".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_once_changed_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    assert!(store.users().await.expect("users").is_empty());

    // The first-start administrator: only while there is no user at all.
    assert!(
        store
            .create_first_user(user("admin", Role::Admin))
            .await
            .expect("first")
    );
    assert!(
        !store
            .create_first_user(user("other", Role::Admin))
            .await
            .expect("second")
    );
    store
        .create_user(user("ann", Role::Viewer))
        .await
        .expect("ann");
    let err = store
        .create_user(user("ann", Role::Admin))
        .await
        .expect_err("taken");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "invalid username: \"ann\" is taken");
    for bad in ["", "a b", "tab\there", &"x".repeat(65)] {
        let err = store
            .create_user(user(bad, Role::Viewer))
            .await
            .expect_err("bad name");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let names: Vec<String> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin", "ann"]);

    let ann = store.user("ann").await.expect("read").expect("ann");
    assert_eq!(ann.role, Role::Viewer);
    assert!(!format!("{ann:?}").contains("fake-hash"), "{ann:?}");

    assert!(store.set_role("ann", Role::Operator).await.expect("role"));
    assert!(
        store
            .set_password("ann", "$argon2id$v=19$new")
            .await
            .expect("password")
    );
    let ann = store.user("ann").await.expect("read").expect("ann");
    assert_eq!(
        (ann.role, ann.password_hash.as_str()),
        (Role::Operator, "$argon2id$v=19$new")
    );
    assert!(!store.set_role("nobody", Role::Admin).await.expect("role"));
    assert!(
        !store
            .set_password("nobody", "$argon2id$x")
            .await
            .expect("pw")
    );
    assert_eq!(
        store
            .set_password("ann", "plain text")
            .await
            .expect_err("not a hash")
            .kind(),
        ErrorKind::InvalidInput
    );
    assert!(store.delete_user("ann").await.expect("delete"));
    assert!(store.user("ann").await.expect("read").is_none());
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_together_create_one_first_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path()).await;
    let b = open(dir.path()).await;
    let (x, y) = tokio::join!(
        a.create_first_user(user("admin", Role::Admin)),
        b.create_first_user(user("admin2", Role::Admin))
    );
    assert_eq!(
        u8::from(x.expect("a")) + u8::from(y.expect("b")),
        1,
        "exactly one"
    );
    assert_eq!(a.users().await.expect("users").len(), 1);
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_found_by_hash_with_the_sessions_current_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    store
        .create_user(user("ann", Role::Viewer))
        .await
        .expect("ann");
    let later = UnixMillis::now().plus(Duration::from_secs(60));
    let session = TokenHash::of("session-secret");
    store
        .insert_token(NewToken {
            hash: session,
            kind: TokenKind::Session,
            subject: "ann".into(),
            scope: String::new(),
            expires_at: later,
        })
        .await
        .expect("session");
    let access = TokenHash::of("access-secret");
    store
        .insert_token(NewToken {
            hash: access,
            kind: TokenKind::Access,
            subject: "lab-client".into(),
            scope: "system/Observation.read".into(),
            expires_at: later,
        })
        .await
        .expect("access");

    let s = store.token(session).await.expect("read").expect("session");
    assert_eq!(
        (s.kind, s.subject.as_str(), s.role),
        (TokenKind::Session, "ann", Some(Role::Viewer))
    );
    store.set_role("ann", Role::Admin).await.expect("role");
    let s = store.token(session).await.expect("read").expect("session");
    assert_eq!(s.role, Some(Role::Admin), "role read live");
    let t = store.token(access).await.expect("read").expect("access");
    assert_eq!(
        (t.kind, t.scope.as_str(), t.role),
        (TokenKind::Access, "system/Observation.read", None)
    );
    assert!(
        store
            .token(TokenHash::of("unknown"))
            .await
            .expect("read")
            .is_none()
    );

    // Neither the token nor anything that reverses to it is on disk.
    let db = std::fs::read(dir.path().join("causeway.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("causeway.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes
                .windows(b"access-secret".len())
                .any(|w| w == b"access-secret")
        );
    }

    // A new password ends the user's sessions; access tokens are untouched.
    store
        .set_password("ann", "$argon2id$v=19$new")
        .await
        .expect("password");
    assert!(store.token(session).await.expect("read").is_none());
    assert!(store.delete_token(access).await.expect("revoke"));
    assert!(!store.delete_token(access).await.expect("again"));
    assert!(store.token(access).await.expect("read").is_none());

    // Expired tokens are swept by the next insert.
    let old = TokenHash::of("old");
    store
        .insert_token(NewToken {
            hash: old,
            kind: TokenKind::Access,
            subject: "c".into(),
            scope: String::new(),
            expires_at: UnixMillis::now().minus(Duration::from_secs(1)),
        })
        .await
        .expect("old");
    assert!(
        store.token(old).await.expect("read").is_some(),
        "the caller checks expiry"
    );
    store
        .insert_token(NewToken {
            hash: TokenHash::of("new"),
            kind: TokenKind::Access,
            subject: "c".into(),
            scope: String::new(),
            expires_at: later,
        })
        .await
        .expect("new");
    assert!(store.token(old).await.expect("read").is_none());
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jti_is_accepted_once_across_handles_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path()).await;
    let b = open(dir.path()).await;
    let exp = UnixMillis::now().plus(Duration::from_secs(300));
    assert!(a.record_jti("client-1", "j1", exp).await.expect("first"));
    assert!(
        !b.record_jti("client-1", "j1", exp).await.expect("replay"),
        "seen by the other handle"
    );
    assert!(
        b.record_jti("client-2", "j1", exp)
            .await
            .expect("other issuer"),
        "per issuer"
    );
    let (x, y) = tokio::join!(
        a.record_jti("client-1", "race", exp),
        b.record_jti("client-1", "race", exp)
    );
    assert_eq!(u8::from(x.expect("a")) + u8::from(y.expect("b")), 1);
    a.close().await.expect("close");
    b.close().await.expect("close");
    let c = open(dir.path()).await;
    assert!(
        !c.record_jti("client-1", "j1", exp)
            .await
            .expect("after restart"),
        "survives a restart"
    );
    // An expired entry is swept and its jti may come again (its assertion would be refused as
    // expired anyway).
    let past = UnixMillis::now().minus(Duration::from_secs(1));
    assert!(c.record_jti("client-1", "old", past).await.expect("old"));
    assert!(c.record_jti("client-1", "old", exp).await.expect("swept"));
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_chain_search_and_seal_their_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path()).await;
    let b = open(dir.path()).await;
    let empty = a.verify_audit().await.expect("verify");
    assert_eq!((empty.records, empty.head, empty.broken), (0, None, None));

    let first = a
        .append_audit(audit("ann", "read", "Patient/1", None))
        .await
        .expect("1");
    assert_eq!((first.id, first.prev_hash), (1, [0; 32]));
    // Two handles (two processes) append to one chain.
    let second = b
        .append_audit(audit(
            "lab-client",
            "search",
            "Observation",
            Some("subject=Patient/1&code=SECRETNAME"),
        ))
        .await
        .expect("2");
    assert_eq!((second.id, second.prev_hash), (2, first.hash));
    let mut joins = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        joins.push(tokio::spawn(async move {
            s.append_audit(audit("ann", "read", &format!("Patient/{i}"), None))
                .await
        }));
    }
    for j in joins {
        j.await.expect("join").expect("append");
    }
    let v = a.verify_audit().await.expect("verify");
    assert_eq!(v.records, 22);
    assert_eq!(v.broken, None);

    let newest = a.audit_records(AuditQuery::default()).await.expect("all");
    assert_eq!(newest.len(), 22);
    assert_eq!(newest[0].hash, v.head.expect("head"));
    assert!(
        newest.windows(2).all(|w| w[0].id == w[1].id + 1),
        "newest first"
    );

    let by_agent = a
        .audit_records(AuditQuery {
            agent: Some("lab-client".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("agent");
    assert_eq!(by_agent.len(), 1);
    assert_eq!(
        by_agent[0].query.as_deref(),
        Some("subject=Patient/1&code=SECRETNAME")
    );
    let by_entity = a
        .audit_records(AuditQuery {
            entity: Some("Patient/1".into()),
            ..AuditQuery::default()
        })
        .await
        .expect("entity");
    assert_eq!(
        by_entity.len(),
        2,
        "the first read and the loop's Patient/1"
    );
    let by_type = a
        .audit_records(AuditQuery {
            entity: Some("Patient".into()),
            limit: 5,
            ..AuditQuery::default()
        })
        .await
        .expect("type");
    assert_eq!(by_type.len(), 5);
    let none_yet = a
        .audit_records(AuditQuery {
            since: Some(UnixMillis::now().plus(Duration::from_secs(60))),
            ..AuditQuery::default()
        })
        .await
        .expect("future");
    assert!(none_yet.is_empty());
    let page = a
        .audit_records(AuditQuery {
            before_id: Some(3),
            ..AuditQuery::default()
        })
        .await
        .expect("page");
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 1]);

    // The query is sealed at rest.
    a.close().await.expect("close");
    b.close().await.expect("close");
    let db = std::fs::read(dir.path().join("causeway.db")).expect("db");
    assert!(!db.windows(10).any(|w| w == b"SECRETNAME"));
}

fn outside(dir: &Path) -> Connection {
    Connection::open(dir.join("causeway.db")).expect("open db file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_audit_file_is_found_at_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    for i in 1..=5 {
        store
            .append_audit(audit(
                "ann",
                "search",
                "Patient",
                Some(&format!("name=N{i}")),
            ))
            .await
            .expect("append");
    }
    store.close().await.expect("close");

    // The table refuses edits outright...
    let conn = outside(dir.path());
    let err = conn
        .execute("UPDATE audit_log SET outcome = 500 WHERE id = 3", [])
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(
        conn.execute("DELETE FROM audit_log WHERE id = 3", [])
            .is_err()
    );
    // ...and whoever removes that guard is caught by the chain.
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .expect("drop guards");
    let check = |expect_id: i64, expect_reason: &str| {
        let dir = dir.path().to_owned();
        let reason = expect_reason.to_owned();
        async move {
            let store = open(&dir).await;
            let v = store.verify_audit().await.expect("verify");
            store.close().await.expect("close");
            let broken = v.broken.expect("broken");
            assert_eq!(
                (broken.id, broken.reason.as_str()),
                (expect_id, reason.as_str())
            );
            assert_eq!(
                v.records,
                (expect_id - 1) as u64,
                "records before the break"
            );
        }
    };

    conn.execute("UPDATE audit_log SET outcome = 500 WHERE id = 3", [])
        .expect("tamper");
    check(3, "its hash does not match its contents").await;
    conn.execute("UPDATE audit_log SET outcome = 200 WHERE id = 3", [])
        .expect("restore");
    let store = open(dir.path()).await;
    assert_eq!(store.verify_audit().await.expect("verify").broken, None);
    store.close().await.expect("close");

    // A sealed query moved to another record does not open there.
    conn.execute(
        "UPDATE audit_log SET query = (SELECT query FROM audit_log WHERE id = 1) WHERE id = 2",
        [],
    )
    .expect("move");
    check(
        2,
        "its sealed query does not open (altered, or moved from another record)",
    )
    .await;
    conn.execute("UPDATE audit_log SET query = NULL WHERE id = 2", [])
        .expect("drop query");
    check(2, "its hash does not match its contents").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_recomputed_record_breaks_the_next_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    for i in 1..=4 {
        store
            .append_audit(audit("ann", "read", &format!("Patient/{i}"), None))
            .await
            .expect("append");
    }
    store.close().await.expect("close");
    let conn = outside(dir.path());
    conn.execute_batch("DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_log_no_update;")
        .expect("drop guards");
    // Rewriting a record's hash to match its new contents still breaks the link after it.
    conn.execute(
        "UPDATE audit_log SET entity = 'Patient/99', hash = zeroblob(32) WHERE id = 2",
        [],
    )
    .expect("tamper");
    let store = open(dir.path()).await;
    let v = store.verify_audit().await.expect("verify");
    assert_eq!(v.broken.expect("broken").id, 2);
    store.close().await.expect("close");

    conn.execute("DELETE FROM audit_log WHERE id = 2", [])
        .expect("delete");
    let store = open(dir.path()).await;
    let v = store.verify_audit().await.expect("verify");
    let broken = v.broken.expect("broken");
    assert_eq!(
        (broken.id, broken.reason.as_str()),
        (3, "record 2 before it is missing")
    );
    store.close().await.expect("close");
}
