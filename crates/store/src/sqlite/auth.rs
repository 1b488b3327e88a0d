//! The security tables (schema version 4): users, tokens, the assertion replay register and the
//! audit log. Writes run in the writer's group transaction like every other write, which makes
//! "create the first user only if there is none", "a jti is new" and "append after the last
//! audit record" atomic even across processes sharing the database (`BEGIN IMMEDIATE` holds
//! SQLite's write lock). See [`crate::auth`] for the audit chain.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::write::WriteCx;
use crate::auth::{
    AUDIT_GENESIS, AuditBreak, AuditEntry, AuditFields, AuditQuery, AuditVerification,
    MAX_AUDIT_FIELD_LEN, MAX_AUDIT_QUERY_LEN, MAX_USERNAME_LEN, NewAuditRecord, NewToken, NewUser,
    Role, StoredToken, TokenHash, TokenKind, User, audit_canonical_bytes, audit_chain_hash,
};
use crate::crypto::Cipher;
use crate::error::Record;
use crate::{Error, MAX_PAGE_LEN, Result, UnixMillis};

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::db(op, e)
}

/// Longest PHC password hash string accepted: argon2id strings are about 100 bytes.
const MAX_PASSWORD_HASH_LEN: usize = 512;

// --- checks done before a job reaches the writer ---

pub(super) fn check_username(username: &str) -> Result<()> {
    if username.is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(Error::invalid(
            "username",
            format!("must be 1 to {MAX_USERNAME_LEN} bytes"),
        ));
    }
    if username
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(
            "username",
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

pub(super) fn check_password_hash(hash: &str) -> Result<()> {
    if !hash.starts_with('$') || hash.len() > MAX_PASSWORD_HASH_LEN {
        return Err(Error::invalid("password_hash", "not a PHC hash string"));
    }
    Ok(())
}

pub(super) fn check_user(user: &NewUser) -> Result<()> {
    check_username(&user.username)?;
    check_password_hash(&user.password_hash)
}

pub(super) fn check_token(token: &NewToken) -> Result<()> {
    super::check_name("token.subject", &token.subject)?;
    super::check_field("token.scope", &token.scope)
}

/// Validates an audit record and cuts its query to [`MAX_AUDIT_QUERY_LEN`].
pub(super) fn prepare_audit(mut rec: NewAuditRecord) -> Result<NewAuditRecord> {
    for (field, value) in [
        ("audit.agent", &rec.agent),
        ("audit.agent_kind", &rec.agent_kind),
        ("audit.action", &rec.action),
        ("audit.entity", &rec.entity),
    ] {
        if value.is_empty() {
            return Err(Error::invalid(field, "empty"));
        }
        if value.len() > MAX_AUDIT_FIELD_LEN {
            return Err(Error::invalid(
                field,
                format!("longer than {MAX_AUDIT_FIELD_LEN} bytes"),
            ));
        }
    }
    if let Some(peer) = &rec.peer {
        super::check_field("audit.peer", peer)?;
    }
    if let Some(q) = &mut rec.query
        && q.len() > MAX_AUDIT_QUERY_LEN
    {
        const MARK: &str = "…[cut]";
        let mut end = MAX_AUDIT_QUERY_LEN - MARK.len();
        while !q.is_char_boundary(end) {
            end -= 1;
        }
        q.truncate(end);
        q.push_str(MARK);
    }
    Ok(rec)
}

// --- writes (inside the writer's transaction) ---

fn user_exists(conn: &Connection, username: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM users WHERE username = ?1")
        .and_then(|mut s| s.exists([username]))
        .map_err(db("read user"))
}

pub(super) fn create_user(cx: &mut WriteCx<'_>, user: &NewUser) -> Result<()> {
    let conn = cx.conn();
    if user_exists(conn, &user.username)? {
        return Err(Error::invalid(
            "username",
            format!("{:?} is taken", user.username),
        ));
    }
    let now = UnixMillis::now();
    conn.prepare_cached(
        "INSERT INTO users (username, password_hash, role, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user.username,
            user.password_hash,
            user.role.as_str(),
            now.0
        ])
    })
    .map_err(db("create user"))?;
    Ok(())
}

pub(super) fn create_first_user(cx: &mut WriteCx<'_>, user: &NewUser) -> Result<bool> {
    let now = UnixMillis::now();
    let inserted = cx
        .conn()
        .prepare_cached(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?4 WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .and_then(|mut s| {
            s.execute(params![
                user.username,
                user.password_hash,
                user.role.as_str(),
                now.0
            ])
        })
        .map_err(db("create first user"))?;
    Ok(inserted == 1)
}

fn end_sessions(conn: &Connection, username: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM auth_tokens WHERE kind = 'session' AND subject = ?1")
        .and_then(|mut s| s.execute([username]))
        .map_err(db("end sessions"))?;
    Ok(())
}

pub(super) fn set_password(
    cx: &mut WriteCx<'_>,
    username: &str,
    password_hash: &str,
) -> Result<bool> {
    let conn = cx.conn();
    let changed = conn
        .prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE username = ?1")
        .and_then(|mut s| s.execute(params![username, password_hash, UnixMillis::now().0]))
        .map_err(db("set password"))?;
    if changed == 1 {
        // Whoever signed in with the old password is signed out.
        end_sessions(conn, username)?;
    }
    Ok(changed == 1)
}

pub(super) fn set_role(cx: &mut WriteCx<'_>, username: &str, role: Role) -> Result<bool> {
    let changed = cx
        .conn()
        .prepare_cached("UPDATE users SET role = ?2, updated_at = ?3 WHERE username = ?1")
        .and_then(|mut s| s.execute(params![username, role.as_str(), UnixMillis::now().0]))
        .map_err(db("set role"))?;
    Ok(changed == 1)
}

pub(super) fn delete_user(cx: &mut WriteCx<'_>, username: &str) -> Result<bool> {
    let conn = cx.conn();
    let deleted = conn
        .prepare_cached("DELETE FROM users WHERE username = ?1")
        .and_then(|mut s| s.execute([username]))
        .map_err(db("delete user"))?;
    end_sessions(conn, username)?;
    Ok(deleted == 1)
}

pub(super) fn record_jti(
    cx: &mut WriteCx<'_>,
    issuer: &str,
    jti: &str,
    expires_at: UnixMillis,
) -> Result<bool> {
    const OP: &str = "record jti";
    let conn = cx.conn();
    let now = UnixMillis::now();
    // Entries past their assertion's expiry protect nothing: such an assertion is refused anyway.
    conn.prepare_cached("DELETE FROM jwt_replay WHERE expires_at < ?1")
        .and_then(|mut s| s.execute([now.0]))
        .map_err(db(OP))?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO jwt_replay (issuer, jti, expires_at) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![issuer, jti, expires_at.0]))
        .map_err(db(OP))?;
    Ok(inserted == 1)
}

pub(super) fn insert_token(cx: &mut WriteCx<'_>, token: &NewToken) -> Result<()> {
    const OP: &str = "insert token";
    let conn = cx.conn();
    let now = UnixMillis::now();
    // Expired tokens are swept here, so the table holds roughly the live ones.
    conn.prepare_cached("DELETE FROM auth_tokens WHERE expires_at < ?1")
        .and_then(|mut s| s.execute([now.0]))
        .map_err(db(OP))?;
    conn.prepare_cached(
        "INSERT INTO auth_tokens (hash, kind, subject, scope, issued_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &token.hash.0[..],
            token.kind.as_str(),
            token.subject,
            token.scope,
            now.0,
            token.expires_at.0
        ])
    })
    .map_err(db(OP))?;
    Ok(())
}

pub(super) fn delete_token(cx: &mut WriteCx<'_>, hash: TokenHash) -> Result<bool> {
    let deleted = cx
        .conn()
        .prepare_cached("DELETE FROM auth_tokens WHERE hash = ?1")
        .and_then(|mut s| s.execute([&hash.0[..]]))
        .map_err(db("delete token"))?;
    Ok(deleted == 1)
}

/// Appends one record after the current last one.
pub(super) fn append_audit(cx: &mut WriteCx<'_>, rec: &NewAuditRecord) -> Result<AuditEntry> {
    const OP: &str = "append audit record";
    let conn = cx.conn();
    // The group holds the write lock, so nobody appends between this read and the insert;
    // earlier jobs of the same group are visible here.
    let prev_hash: [u8; 32] = match conn
        .prepare_cached("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, Vec<u8>>(0)).optional())
        .map_err(db(OP))?
    {
        None => AUDIT_GENESIS,
        Some(h) => h.try_into().map_err(|_| Error::Corrupt {
            table: "audit_log",
            column: "hash",
            row: 0,
            detail: "the last record's hash is not 32 bytes".into(),
        })?,
    };
    // The id is bound into the sealed query, so it is chosen before the row exists, as for
    // messages: AUTOINCREMENT's counter never hands out an id twice.
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(db(OP))?;
    let id = last.unwrap_or(0) + 1;
    let at = UnixMillis::now();
    let fields = AuditFields {
        id,
        at,
        agent: &rec.agent,
        agent_kind: &rec.agent_kind,
        action: &rec.action,
        entity: &rec.entity,
        query: rec.query.as_deref(),
        outcome: rec.outcome,
        peer: rec.peer.as_deref(),
    };
    let hash = audit_chain_hash(&prev_hash, &audit_canonical_bytes(&fields));
    let sealed = rec
        .query
        .as_ref()
        .map(|q| cx.cipher().seal(Record::AuditQuery(id), q.as_bytes()))
        .transpose()?;
    conn.prepare_cached(
        "INSERT INTO audit_log (id, at, agent, agent_kind, action, entity, query, outcome, peer,
                                prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            at.0,
            rec.agent,
            rec.agent_kind,
            rec.action,
            rec.entity,
            sealed,
            rec.outcome,
            rec.peer,
            &prev_hash[..],
            &hash[..],
        ])
    })
    .map_err(db(OP))?;
    Ok(AuditEntry {
        id,
        at,
        agent: rec.agent.clone(),
        agent_kind: rec.agent_kind.clone(),
        action: rec.action.clone(),
        entity: rec.entity.clone(),
        query: rec.query.clone(),
        outcome: rec.outcome,
        peer: rec.peer.clone(),
        prev_hash,
        hash,
    })
}

// --- reads (pooled connections) ---

const USER_COLUMNS: &str = "username, password_hash, role, created_at, updated_at";

fn user_row(row: &Row<'_>) -> Result<User> {
    const OP: &str = "read user";
    let username: String = row.get(0).map_err(db(OP))?;
    let role: String = row.get(2).map_err(db(OP))?;
    let role = Role::parse(&role).ok_or_else(|| Error::Corrupt {
        table: "users",
        column: "role",
        row: 0,
        detail: format!("unknown role {role:?} of user {username:?}"),
    })?;
    Ok(User {
        password_hash: row.get(1).map_err(db(OP))?,
        role,
        created_at: UnixMillis(row.get(3).map_err(db(OP))?),
        updated_at: UnixMillis(row.get(4).map_err(db(OP))?),
        username,
    })
}

pub(super) fn user(conn: &Connection, username: &str) -> Result<Option<User>> {
    const OP: &str = "read user";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
        ))
        .map_err(db(OP))?;
    let mut rows = stmt.query([username]).map_err(db(OP))?;
    match rows.next().map_err(db(OP))? {
        Some(row) => user_row(row).map(Some),
        None => Ok(None),
    }
}

pub(super) fn users(conn: &Connection) -> Result<Vec<User>> {
    const OP: &str = "list users";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .map_err(db(OP))?;
    let mut rows = stmt.query([]).map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(OP))? {
        out.push(user_row(row)?);
    }
    Ok(out)
}

pub(super) fn token(conn: &Connection, hash: TokenHash) -> Result<Option<StoredToken>> {
    const OP: &str = "read token";
    let mut stmt = conn
        .prepare_cached(
            "SELECT t.kind, t.subject, t.scope, t.issued_at, t.expires_at, u.role
             FROM auth_tokens t
             LEFT JOIN users u ON t.kind = 'session' AND u.username = t.subject
             WHERE t.hash = ?1",
        )
        .map_err(db(OP))?;
    let mut rows = stmt.query([&hash.0[..]]).map_err(db(OP))?;
    let Some(row) = rows.next().map_err(db(OP))? else {
        return Ok(None);
    };
    let kind: String = row.get(0).map_err(db(OP))?;
    let kind = TokenKind::parse(&kind).ok_or_else(|| Error::Corrupt {
        table: "auth_tokens",
        column: "kind",
        row: 0,
        detail: format!("unknown kind {kind:?}"),
    })?;
    let role: Option<String> = row.get(5).map_err(db(OP))?;
    Ok(Some(StoredToken {
        kind,
        subject: row.get(1).map_err(db(OP))?,
        scope: row.get(2).map_err(db(OP))?,
        issued_at: UnixMillis(row.get(3).map_err(db(OP))?),
        expires_at: UnixMillis(row.get(4).map_err(db(OP))?),
        role: role.as_deref().and_then(Role::parse),
    }))
}

const AUDIT_COLUMNS: &str =
    "id, at, agent, agent_kind, action, entity, query, outcome, peer, prev_hash, hash";

/// A row read as stored; `Err` names the column that cannot be read as its type.
struct RawAudit {
    id: i64,
    at: i64,
    agent: String,
    agent_kind: String,
    action: String,
    entity: String,
    query: Option<Vec<u8>>,
    outcome: i64,
    peer: Option<String>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

fn raw_audit(row: &Row<'_>) -> std::result::Result<RawAudit, String> {
    fn col<T: rusqlite::types::FromSql>(
        row: &Row<'_>,
        i: usize,
        name: &str,
    ) -> std::result::Result<T, String> {
        row.get(i)
            .map_err(|_| format!("its {name} column has a value of the wrong type"))
    }
    Ok(RawAudit {
        id: col(row, 0, "id")?,
        at: col(row, 1, "at")?,
        agent: col(row, 2, "agent")?,
        agent_kind: col(row, 3, "agent_kind")?,
        action: col(row, 4, "action")?,
        entity: col(row, 5, "entity")?,
        query: col(row, 6, "query")?,
        outcome: col(row, 7, "outcome")?,
        peer: col(row, 8, "peer")?,
        prev_hash: col(row, 9, "prev_hash")?,
        hash: col(row, 10, "hash")?,
    })
}

/// Opens a row into an entry; `Err` says what is wrong with it.
fn open_audit(cipher: &Cipher, raw: RawAudit) -> std::result::Result<AuditEntry, String> {
    let query = match raw.query {
        None => None,
        Some(sealed) => {
            let plain = cipher
                .open(Record::AuditQuery(raw.id), &sealed)
                .map_err(|_| {
                    "its sealed query does not open (altered, or moved from another record)"
                        .to_string()
                })?;
            Some(String::from_utf8(plain).map_err(|_| "its query is not utf-8".to_string())?)
        }
    };
    let hash32 = |v: Vec<u8>, name: &str| -> std::result::Result<[u8; 32], String> {
        v.try_into()
            .map_err(|_| format!("its {name} is not 32 bytes"))
    };
    Ok(AuditEntry {
        id: raw.id,
        at: UnixMillis(raw.at),
        agent: raw.agent,
        agent_kind: raw.agent_kind,
        action: raw.action,
        entity: raw.entity,
        query,
        outcome: u16::try_from(raw.outcome)
            .map_err(|_| format!("its outcome {} is not an HTTP status", raw.outcome))?,
        peer: raw.peer,
        prev_hash: hash32(raw.prev_hash, "prev_hash")?,
        hash: hash32(raw.hash, "hash")?,
    })
}

pub(super) fn audit_records(
    conn: &Connection,
    cipher: &Cipher,
    q: &AuditQuery,
) -> Result<Vec<AuditEntry>> {
    const OP: &str = "read audit log";
    let limit = i64::from(if q.limit == 0 {
        MAX_PAGE_LEN
    } else {
        q.limit.min(MAX_PAGE_LEN)
    });
    // A bare type matches the type's searches and every instance (`Patient/…`).
    let entity_prefix = q
        .entity
        .as_ref()
        .filter(|e| !e.contains('/'))
        .map(|t| format!("{t}/"));
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2)
               AND (?3 IS NULL OR agent = ?3)
               AND (?4 IS NULL OR entity = ?4
                    OR (?5 IS NOT NULL AND substr(entity, 1, length(?5)) = ?5))
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7"
        ))
        .map_err(db(OP))?;
    let mut rows = stmt
        .query(params![
            q.since.map(|t| t.0),
            q.until.map(|t| t.0),
            q.agent,
            q.entity,
            entity_prefix,
            q.before_id,
            limit
        ])
        .map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(OP))? {
        let corrupt = |id: i64, detail: String| Error::Corrupt {
            table: "audit_log",
            column: "*",
            row: id,
            detail,
        };
        let raw = raw_audit(row).map_err(|d| corrupt(0, d))?;
        let id = raw.id;
        out.push(open_audit(cipher, raw).map_err(|d| corrupt(id, d))?);
    }
    Ok(out)
}

/// Walks the whole log in id order, recomputing every link; stops at the first broken record.
pub(super) fn verify_audit(conn: &Connection, cipher: &Cipher) -> Result<AuditVerification> {
    const OP: &str = "verify audit log";
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY id"
        ))
        .map_err(db(OP))?;
    let mut rows = stmt.query([]).map_err(db(OP))?;
    let mut expected_prev = AUDIT_GENESIS;
    let mut last_id = 0i64;
    let mut records = 0u64;
    let mut head = None;
    let broken = |id: i64, reason: String| AuditBreak { id, reason };
    while let Some(row) = rows.next().map_err(db(OP))? {
        let row_id: i64 = row.get(0).map_err(db(OP))?;
        let checked = raw_audit(row).and_then(|raw| open_audit(cipher, raw));
        let entry = match checked {
            Ok(e) => e,
            Err(reason) => {
                return Ok(AuditVerification {
                    records,
                    head,
                    broken: Some(broken(row_id, reason)),
                });
            }
        };
        let fail = if entry.id != last_id + 1 {
            Some(if last_id + 1 == entry.id - 1 {
                format!("record {} before it is missing", last_id + 1)
            } else {
                format!(
                    "records {} to {} before it are missing",
                    last_id + 1,
                    entry.id - 1
                )
            })
        } else if entry.prev_hash != expected_prev {
            Some(if last_id == 0 {
                "its prev_hash is not the chain's start".to_string()
            } else {
                format!("its prev_hash does not match the hash of record {last_id}")
            })
        } else if audit_chain_hash(&entry.prev_hash, &entry.canonical_bytes()) != entry.hash {
            Some("its hash does not match its contents".to_string())
        } else {
            None
        };
        if let Some(reason) = fail {
            return Ok(AuditVerification {
                records,
                head,
                broken: Some(broken(entry.id, reason)),
            });
        }
        records += 1;
        last_id = entry.id;
        expected_prev = entry.hash;
        head = Some(entry.hash);
    }
    Ok(AuditVerification {
        records,
        head,
        broken: None,
    })
}

pub(super) fn check_jti(issuer: &str, jti: &str) -> Result<()> {
    super::check_name("jti.issuer", issuer)?;
    super::check_name("jti", jti)
}
