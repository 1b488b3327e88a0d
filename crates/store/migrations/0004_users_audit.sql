-- Causeway store schema, version 4: the HTTP API's users, tokens, client-assertion replay
-- register and the hash-chained audit log.

-- Users of the dashboard and API. Passwords only as argon2id PHC strings.
CREATE TABLE users (
    username      TEXT    PRIMARY KEY NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Access tokens of backend clients and session ids of users, by SHA-256 only: a copy of the
-- database opens no session. Looked up by every authenticated request.
CREATE TABLE auth_tokens (
    hash       BLOB    PRIMARY KEY NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('access', 'session')),
    subject    TEXT    NOT NULL,             -- client id or user name
    scope      TEXT    NOT NULL DEFAULT '',  -- granted scopes of an access token
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at);
CREATE INDEX auth_tokens_subject ON auth_tokens (kind, subject);

-- The `jti` of every accepted client assertion until it expires: an assertion is accepted once,
-- by whichever process sharing this database sees it first.
CREATE TABLE jwt_replay (
    issuer     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
CREATE INDEX jwt_replay_expiry ON jwt_replay (expires_at);

-- Append-only audit log: hash = SHA-256(prev_hash || canonical record), see crate::auth.
-- `query` is sealed (it may name a patient); everything else is in clear for searching.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    agent      TEXT    NOT NULL,
    agent_kind TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    query      BLOB,
    outcome    INTEGER NOT NULL,
    peer       TEXT,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_agent ON audit_log (agent, id);
CREATE INDEX audit_log_entity ON audit_log (entity, id);

-- Mistakes, not attackers, are stopped here (whoever can write the file can drop a trigger);
-- the hash chain is what shows deliberate edits.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
