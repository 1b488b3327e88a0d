//! The data types of the HTTP API's security tables: users, bearer tokens and sessions, the
//! replay register of client assertions, and the hash-chained audit log.
//!
//! # The audit chain
//!
//! Every audit record is appended by the writer inside its group's transaction, which holds
//! SQLite's write lock (even against other processes), so records form one sequence:
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) ‖ canonical(n) )        hash(0) = 32 zero bytes
//! canonical(n) = "causeway-audit v1" ‖ field ‖ field ‖ …     (see [`audit_canonical_bytes`])
//! ```
//!
//! Each row keeps `prev_hash` and `hash`; [`crate::Store::verify_audit`] walks the rows in id
//! order and recomputes both, so an edited, inserted, reordered or removed row breaks the chain at
//! that row (or at the next one). The query string of a search may name a patient, so it is
//! sealed at rest like payloads (associated data: the record's id) and hashed in clear: the
//! chain covers what was asked, and a sealed value moved to another row fails to open.
//!
//! Limits: a chain proves order and integrity, not completeness at the tail: whoever can write
//! the database file can cut the newest records and nothing inside the file shows it. Keep the
//! head hash that `causeway audit verify` prints somewhere else to detect that.
//!
//! Tokens and session ids are never stored, only their SHA-256: they are 256-bit random values,
//! so the hash cannot be reversed, and a copy of the database does not let anyone sign in.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::UnixMillis;

/// Longest user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;

/// Longest audit entity (`Type/id`) or agent, in bytes: FHIR ids are at most 64 characters and
/// type names short; client ids are configuration names or URLs.
pub const MAX_AUDIT_FIELD_LEN: usize = 1024;

/// Longest audited query string, in bytes; a longer one is cut (and marked) before sealing.
///
/// Search URLs in practice stay under a few hundred bytes; 8 KiB is the usual HTTP server limit
/// for a whole request line.
pub const MAX_AUDIT_QUERY_LEN: usize = 8192;

/// The first record's `prev_hash`.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// What a user may do, in increasing order of power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads FHIR resources.
    Viewer,
    /// Reads and writes FHIR resources, operates channels.
    Operator,
    /// Everything, including users and the audit log.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Self::Viewer, Self::Operator, Self::Admin];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Sign-in name: 1 to [`MAX_USERNAME_LEN`] bytes, no control characters.
    pub username: String,
    /// The password hash as a PHC string (`$argon2id$...`); the store never sees a password.
    pub password_hash: String,
    pub role: Role,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("role", &self.role)
            .finish()
    }
}

/// A stored user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// PHC string of the password hash.
    pub password_hash: String,
    pub role: Role,
    pub created_at: UnixMillis,
    /// Last change of password or role.
    pub updated_at: UnixMillis,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What a stored token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An OAuth2 access token issued to a backend client (`Authorization: Bearer`).
    Access,
    /// A browser session of a signed-in user (cookie).
    Session,
}

impl TokenKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Session => "session",
        }
    }

    /// Parses [`TokenKind::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Access, Self::Session]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// SHA-256 of a token: what the store keeps and looks tokens up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented by a client.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret (one-way), but there is no reason to print it either.
        f.write_str("TokenHash([redacted])")
    }
}

/// A token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub hash: TokenHash,
    pub kind: TokenKind,
    /// The client id ([`TokenKind::Access`]) or user name ([`TokenKind::Session`]).
    pub subject: String,
    /// Granted scopes, space-separated (access tokens; empty for sessions).
    pub scope: String,
    pub expires_at: UnixMillis,
}

/// A stored token, as looked up by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub kind: TokenKind,
    pub subject: String,
    pub scope: String,
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// For a session: the user's current role (read with the token, so a role change or a
    /// removed user takes effect at once); `None` when the user no longer exists. Always
    /// `None` for access tokens.
    pub role: Option<Role>,
}

/// An audit record to append.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    /// Who: a user name or a client id.
    pub agent: String,
    /// `user`, `client` or `anonymous` (a failed sign-in).
    pub agent_kind: String,
    /// What was done: `read`, `search`, `create`, `login`... (the server's vocabulary).
    pub action: String,
    /// To what: `Patient/123`, or the type for a search (`Observation`).
    pub entity: String,
    /// The query string of a search: may hold PHI, so it is sealed at rest and never logged.
    pub query: Option<String>,
    /// The HTTP status answered.
    pub outcome: u16,
    /// The client's address.
    pub peer: Option<String>,
}

impl fmt::Debug for NewAuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAuditRecord")
            .field("agent", &self.agent)
            .field("agent_kind", &self.agent_kind)
            .field("action", &self.action)
            .field("entity", &self.entity)
            .field("query", &self.query.as_ref().map(|_| "[redacted]"))
            .field("outcome", &self.outcome)
            .field("peer", &self.peer)
            .finish()
    }
}

/// A stored audit record.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub id: i64,
    pub at: UnixMillis,
    pub agent: String,
    pub agent_kind: String,
    pub action: String,
    pub entity: String,
    /// Opened (decrypted) query string.
    pub query: Option<String>,
    pub outcome: u16,
    pub peer: Option<String>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl fmt::Debug for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEntry")
            .field("id", &self.id)
            .field("at", &self.at)
            .field("agent", &self.agent)
            .field("agent_kind", &self.agent_kind)
            .field("action", &self.action)
            .field("entity", &self.entity)
            .field("query", &self.query.as_ref().map(|_| "[redacted]"))
            .field("outcome", &self.outcome)
            .field("peer", &self.peer)
            .field("hash", &hex::encode(self.hash))
            .finish_non_exhaustive()
    }
}

impl AuditEntry {
    /// The canonical bytes of this record (what its hash covers, after `prev_hash`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        audit_canonical_bytes(&AuditFields {
            id: self.id,
            at: self.at,
            agent: &self.agent,
            agent_kind: &self.agent_kind,
            action: &self.action,
            entity: &self.entity,
            query: self.query.as_deref(),
            outcome: self.outcome,
            peer: self.peer.as_deref(),
        })
    }
}

/// The fields of one audit record, borrowed, for [`audit_canonical_bytes`].
#[derive(Debug, Clone, Copy)]
pub struct AuditFields<'a> {
    pub id: i64,
    pub at: UnixMillis,
    pub agent: &'a str,
    pub agent_kind: &'a str,
    pub action: &'a str,
    pub entity: &'a str,
    pub query: Option<&'a str>,
    pub outcome: u16,
    pub peer: Option<&'a str>,
}

/// The canonical encoding of an audit record: the tag `causeway-audit v1`, then every field in
/// a fixed order, integers as 8-byte big-endian, texts as an 8-byte big-endian length and the
/// UTF-8 bytes, optional texts preceded by one byte (0 absent, 1 present). Unambiguous: no two
/// different records encode alike, whatever their texts contain.
pub fn audit_canonical_bytes(r: &AuditFields<'_>) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn opt(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                text(out, s);
            }
        }
    }
    let mut out = Vec::with_capacity(
        64 + r.agent.len()
            + r.agent_kind.len()
            + r.action.len()
            + r.entity.len()
            + r.query.map_or(0, str::len)
            + r.peer.map_or(0, str::len),
    );
    text(&mut out, "causeway-audit v1");
    out.extend_from_slice(&r.id.to_be_bytes());
    out.extend_from_slice(&r.at.0.to_be_bytes());
    text(&mut out, r.agent);
    text(&mut out, r.agent_kind);
    text(&mut out, r.action);
    text(&mut out, r.entity);
    opt(&mut out, r.query);
    out.extend_from_slice(&u64::from(r.outcome).to_be_bytes());
    opt(&mut out, r.peer);
    out
}

/// `SHA-256(prev_hash ‖ canonical)`: one link of the chain.
pub fn audit_chain_hash(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// Criteria for [`crate::Store::audit_records`]; all set fields must match. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Recorded at or after.
    pub since: Option<UnixMillis>,
    /// Recorded before.
    pub until: Option<UnixMillis>,
    /// Exactly this agent.
    pub agent: Option<String>,
    /// Exactly this entity (`Patient/1`); a bare type (`Patient`) matches the type's searches
    /// and every `Patient/...`.
    pub entity: Option<String>,
    /// Only records with a smaller id (paging backwards).
    pub before_id: Option<i64>,
    /// Rows to return: 0 means [`crate::MAX_PAGE_LEN`]; larger values are capped to it.
    pub limit: u32,
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    /// The first record that does not verify.
    pub id: i64,
    /// Why, e.g. `its hash does not match its contents`.
    pub reason: String,
}

/// What [`crate::Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Records checked (all of them when the chain is intact; up to the break otherwise).
    pub records: u64,
    /// Hash of the last record checked, `None` for an empty log.
    pub head: Option<[u8; 32]>,
    /// The first broken record, `None` when the chain is intact.
    pub broken: Option<AuditBreak>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn canonical_bytes_are_unambiguous() {
        let base = AuditFields {
            id: 1,
            at: UnixMillis(2),
            agent: "ab",
            agent_kind: "user",
            action: "read",
            entity: "Patient/1",
            query: None,
            outcome: 200,
            peer: None,
        };
        // Moving a character from one field to the next changes the bytes.
        let shifted = AuditFields {
            agent: "a",
            agent_kind: "buser",
            ..base
        };
        assert_ne!(
            audit_canonical_bytes(&base),
            audit_canonical_bytes(&shifted)
        );
        // An empty query is not an absent one.
        let empty = AuditFields {
            query: Some(""),
            ..base
        };
        assert_ne!(audit_canonical_bytes(&base), audit_canonical_bytes(&empty));
    }

    #[test]
    fn debug_hides_secrets_and_queries() {
        let u = NewUser {
            username: "ann".into(),
            password_hash: "$argon2id$SECRET".into(),
            role: Role::Viewer,
        };
        assert!(!format!("{u:?}").contains("SECRET"));
        let r = NewAuditRecord {
            agent: "ann".into(),
            agent_kind: "user".into(),
            action: "search".into(),
            entity: "Patient".into(),
            query: Some("name=SECRET".into()),
            outcome: 200,
            peer: None,
        };
        assert!(!format!("{r:?}").contains("SECRET"));
    }
}
