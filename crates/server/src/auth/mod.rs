//! Authentication and authorisation of the HTTP API.
//!
//! # Map
//!
//! - this file: [`Auth`] (built once from an [`AuthConfig`]), the [`Principal`] a request acts
//!   as and its checks, the extractor, [`ensure_admin`] and [`hash_password`]
//! - [`scopes`]: SMART system scopes (parse, intersect, allow)
//! - `client`: registered backend clients: their keys, verifying client assertions
//! - `handlers`: `POST /auth/token`, `POST /auth/login`, `POST /auth/logout`, `GET /auth/me`
//! - `limit`: the per-peer rate limit of the two sign-in endpoints
//!
//! # How a request is authenticated
//!
//! ```text
//! Authorization: Bearer T ──┐                            ┌─ access  -> Principal::Client (scopes)
//!                           ├─> SHA-256(T) ─> store.token ┤
//! Cookie: <session> = T ────┘      expired/unknown: 401  └─ session -> Principal::User (role, read
//!                                                                     with the token, so a role
//!                                                                     change applies at once)
//! ```
//!
//! # Invariants
//!
//! - Access tokens and session ids are 256 random bits, opaque; the store keeps only their
//!   SHA-256 with subject, scopes and expiry. So every process sharing the database accepts
//!   them, a restart keeps them, revocation is a row delete, and a copy of the database lets
//!   nobody in.
//! - Passwords, tokens, session ids and client assertions never reach logs or `Debug` output.
//! - A 401 always carries `WWW-Authenticate: Bearer`; a 403 means "known, but not allowed".

mod client;
mod handlers;
mod limit;
pub mod scopes;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use causeway_store::{NewUser, Store, TokenHash, TokenKind, UnixMillis};

pub use causeway_store::Role;
pub use client::{CLOCK_SKEW_SECS, MAX_ASSERTION_LIFETIME_SECS};
pub use limit::DEFAULT_ATTEMPTS_PER_MINUTE;
pub use scopes::{Scope, Scopes};

use crate::AppState;
use crate::error::{ApiError, ApiResult, Surface};

/// Name of the session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "causeway_session";

/// Name of the session cookie when cookies are `Secure`: the `__Host-` prefix makes browsers
/// refuse it unless it is Secure, host-only and for path `/`, so no sibling domain can plant one.
pub const SECURE_SESSION_COOKIE: &str = "__Host-causeway_session";

/// User name of the administrator created on the first start.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Characters of the bootstrap administrator's random password (about 143 bits).
const BOOTSTRAP_PASSWORD_LEN: usize = 24;

/// Longest password accepted at sign-in: argon2 hashes any length, but a megabyte "password"
/// would only be a way to burn CPU.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// What a request may do to FHIR resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read, vread, history and search.
    Read,
    /// Create, update and delete.
    Write,
}

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user name or the client id.
    pub subject: String,
    pub kind: PrincipalKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person signed in with a password (session cookie).
    User { role: Role },
    /// A backend client holding an access token.
    Client { scopes: Scopes },
}

impl Principal {
    /// Whether this principal may `access` resources of `resource_type` (`*`: of every type at
    /// once, as a search across types asks). Users: a viewer reads, an operator reads and
    /// writes, an admin does everything. Clients: their token's scopes decide. The audit log
    /// (`AuditEvent`) is for admins only, whatever a client's scopes say.
    pub fn require_fhir(&self, resource_type: &str, access: Access) -> ApiResult<()> {
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        if resource_type == "AuditEvent" {
            return self.require_role(Role::Admin);
        }
        match &self.kind {
            PrincipalKind::User { role } => {
                let needed = match access {
                    Access::Read => Role::Viewer,
                    Access::Write => Role::Operator,
                };
                if *role >= needed {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(format!(
                        "the {role} role may not {verb} FHIR resources"
                    )))
                }
            }
            PrincipalKind::Client { scopes } => {
                if scopes.allows(resource_type, access) {
                    Ok(())
                } else {
                    let what = if resource_type == "*" {
                        "every resource type".to_string()
                    } else {
                        resource_type.to_string()
                    };
                    Err(ApiError::forbidden(format!(
                        "the access token's scopes do not allow to {verb} {what}"
                    )))
                }
            }
        }
    }

    /// Whether this is a user with at least `role`. Backend clients have no role.
    pub fn require_role(&self, role: Role) -> ApiResult<()> {
        match &self.kind {
            PrincipalKind::User { role: have } if *have >= role => Ok(()),
            PrincipalKind::User { role: have } => Err(ApiError::forbidden(format!(
                "this needs the {role} role; {} has {have}",
                self.subject
            ))),
            PrincipalKind::Client { .. } => Err(ApiError::forbidden(format!(
                "this needs a user with the {role} role; backend clients have no role"
            ))),
        }
    }

    /// A user with the admin role.
    pub fn is_admin(&self) -> bool {
        matches!(self.kind, PrincipalKind::User { role: Role::Admin })
    }

    /// `user` or `client`, as the audit log records it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            PrincipalKind::User { .. } => "user",
            PrincipalKind::Client { .. } => "client",
        }
    }
}

/// Where a backend client's public keys come from.
#[derive(Clone, Debug)]
pub enum ClientKeys {
    /// A JSON Web Key Set file.
    JwksFile(PathBuf),
    /// A PEM public key file (RSA or EC P-384).
    PemFile(PathBuf),
    /// A JSON Web Key Set, inline.
    Jwks(String),
    /// A PEM public key, inline.
    Pem(String),
}

/// A registered SMART Backend Services client.
#[derive(Clone, Debug)]
pub struct ClientRegistration {
    /// `iss` and `sub` of its assertions.
    pub id: String,
    pub keys: ClientKeys,
    /// The most it may be granted (SMART system scopes).
    pub scopes: Vec<String>,
}

/// How [`Auth`] behaves.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Lifetime of an access token.
    pub token_lifetime: Duration,
    /// Lifetime of a user's session.
    pub session_lifetime: Duration,
    /// Session cookies are `Secure` (and named with the `__Host-` prefix).
    pub secure_cookies: bool,
    /// What client assertions' `aud` must equal, exactly as configured. Required with clients.
    pub token_url: Option<String>,
    pub clients: Vec<ClientRegistration>,
    /// Attempts per peer and minute on `/auth/login`, and separately on `/auth/token`.
    pub attempts_per_minute: u32,
    /// Requests per client address and minute on `/fhir` and `/api`; 0: no limit.
    pub requests_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_lifetime: causeway_engine::config::DEFAULT_TOKEN_LIFETIME,
            session_lifetime: causeway_engine::config::DEFAULT_SESSION_LIFETIME,
            secure_cookies: false,
            token_url: None,
            clients: Vec::new(),
            attempts_per_minute: DEFAULT_ATTEMPTS_PER_MINUTE,
            requests_per_minute: 0,
        }
    }
}

impl From<&causeway_engine::config::AuthSettings> for AuthConfig {
    fn from(s: &causeway_engine::config::AuthSettings) -> Self {
        use causeway_engine::config::ClientKeys as K;
        Self {
            token_lifetime: s.token_lifetime,
            session_lifetime: s.session_lifetime,
            secure_cookies: s.secure_cookies,
            token_url: s.token_url.clone(),
            clients: s
                .clients
                .iter()
                .map(|c| ClientRegistration {
                    id: c.id.clone(),
                    keys: match &c.keys {
                        K::Jwks(p) => ClientKeys::JwksFile(p.clone()),
                        K::PublicKey(p) => ClientKeys::PemFile(p.clone()),
                    },
                    scopes: c.scopes.clone(),
                })
                .collect(),
            attempts_per_minute: DEFAULT_ATTEMPTS_PER_MINUTE,
            requests_per_minute: s.requests_per_minute,
        }
    }
}

/// Why [`Auth`] could not be set up, or a password not hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A client's registration is unusable (its key file, its scopes).
    #[error("client {client}: {reason}")]
    Client { client: String, reason: String },
    /// The configuration as a whole is unusable.
    #[error("authentication settings: {0}")]
    Config(String),
    /// Hashing failed (no OS randomness).
    #[error("cannot hash a password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] causeway_store::Error),
}

/// Authentication state shared by every request.
pub struct Auth {
    store: Arc<dyn Store>,
    token_lifetime: Duration,
    session_lifetime: Duration,
    secure_cookies: bool,
    token_url: Option<String>,
    clients: HashMap<String, client::Client>,
    login_limit: limit::RateLimiter,
    token_limit: limit::RateLimiter,
    /// `/fhir` and `/api` requests per address, when configured.
    request_limit: Option<limit::RateLimiter>,
    /// A hash of no password, verified against when the user does not exist, so that an
    /// unknown name costs the same time as a wrong password.
    dummy_hash: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clients: Vec<&String> = self.clients.keys().collect();
        clients.sort();
        f.debug_struct("Auth")
            .field("token_lifetime", &self.token_lifetime)
            .field("session_lifetime", &self.session_lifetime)
            .field("secure_cookies", &self.secure_cookies)
            .field("token_url", &self.token_url)
            .field("clients", &clients)
            .finish_non_exhaustive()
    }
}

/// Middleware of `/fhir` and `/api`: counts each request against its address's
/// `requests_per_minute`; over it, 429 with `Retry-After` (an OperationOutcome on `/fhir`).
pub async fn limit_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(limit) = &state.auth.request_limit {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        if let Err(wait) = limit.check(peer) {
            let surface = if req.uri().path().starts_with("/fhir") {
                Surface::Fhir
            } else {
                Surface::Api
            };
            let mut r = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                crate::error::IssueCode::Throttled,
                "too many requests from this address; try again later",
            )
            .on(surface)
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    next.run(req).await
}

impl Auth {
    /// Reads every client's keys. Fails when a key is unreadable, or clients are registered
    /// without a token URL.
    pub fn new(store: Arc<dyn Store>, config: AuthConfig) -> Result<Auth, AuthError> {
        if !config.clients.is_empty() && config.token_url.is_none() {
            return Err(AuthError::Config(
                "clients are registered but no token_url is set".into(),
            ));
        }
        if config.token_lifetime.is_zero() || config.session_lifetime.is_zero() {
            return Err(AuthError::Config("lifetimes must be longer than 0".into()));
        }
        let clients = client::load_clients(&config.clients)?;
        let mut salt_source = [0u8; 32];
        random(&mut salt_source).map_err(AuthError::Hash)?;
        let dummy_hash = hash_password(&hex::encode(salt_source))?;
        Ok(Auth {
            store,
            token_lifetime: config.token_lifetime,
            session_lifetime: config.session_lifetime,
            secure_cookies: config.secure_cookies,
            token_url: config.token_url,
            clients,
            login_limit: limit::RateLimiter::new(config.attempts_per_minute),
            token_limit: limit::RateLimiter::new(config.attempts_per_minute),
            request_limit: (config.requests_per_minute > 0)
                .then(|| limit::RateLimiter::new(config.requests_per_minute)),
            dummy_hash,
        })
    }

    /// The store this authenticates against.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The principal of a request: its bearer token, or else its session cookie. A request
    /// with an `Authorization` header is judged by it alone.
    pub async fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        let (token, kind) = if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("unreadable Authorization header"))?;
            let token = match value.split_once(' ') {
                Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
                _ => {
                    return Err(ApiError::unauthorized(
                        "the Authorization header must be `Bearer <access token>`",
                    ));
                }
            };
            (token.to_owned(), TokenKind::Access)
        } else if let Some(id) = cookie(headers, self.cookie_name()) {
            (id, TokenKind::Session)
        } else {
            return Err(ApiError::unauthorized(
                "authentication required: a bearer token or a session",
            ));
        };
        let what = match kind {
            TokenKind::Access => "access token",
            TokenKind::Session => "session",
        };
        if !is_token_shaped(&token) {
            return Err(ApiError::unauthorized(format!("unknown {what}")));
        }
        let stored = self
            .store
            .token(TokenHash::of(&token))
            .await?
            .filter(|t| t.kind == kind)
            .ok_or_else(|| ApiError::unauthorized(format!("unknown or revoked {what}")))?;
        if stored.expires_at <= UnixMillis::now() {
            return Err(ApiError::unauthorized(format!("the {what} has expired")));
        }
        let kind = match kind {
            TokenKind::Access => {
                // A client removed from the configuration loses its tokens at once.
                if !self.clients.contains_key(&stored.subject) {
                    return Err(ApiError::unauthorized(
                        "the access token's client is no longer registered",
                    ));
                }
                PrincipalKind::Client {
                    scopes: Scopes::parse(&stored.scope),
                }
            }
            TokenKind::Session => match stored.role {
                Some(role) => PrincipalKind::User { role },
                None => return Err(ApiError::unauthorized("the session's user was removed")),
            },
        };
        Ok(Principal {
            subject: stored.subject,
            kind,
        })
    }

    /// Stores a new token for `subject` and returns it (the only time it exists in clear).
    async fn issue(
        &self,
        kind: TokenKind,
        subject: &str,
        scope: String,
        lifetime: Duration,
    ) -> ApiResult<String> {
        let token = new_token().map_err(ApiError::internal)?;
        self.store
            .insert_token(causeway_store::NewToken {
                hash: TokenHash::of(&token),
                kind,
                subject: subject.to_owned(),
                scope,
                expires_at: UnixMillis::now().plus(lifetime),
            })
            .await?;
        Ok(token)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Length of a token in hex: 32 random bytes.
const TOKEN_HEX_LEN: usize = 64;

fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_HEX_LEN && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| format!("no OS randomness: {e}"))
}

/// 256 random bits as 64 hex digits.
fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    random(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// An argon2id hash (PHC string, OWASP's default parameters) of `password`, for the store.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    PasswordHasher::<PasswordHash>::hash_password(&Argon2::default(), password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC `hash`. CPU-heavy: call it off the async workers.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordVerifier::<str>::verify_password(&Argon2::default(), password.as_bytes(), hash).is_ok()
}

/// On the first start (no user at all), creates [`BOOTSTRAP_ADMIN`] with a random password and
/// returns that password, for `serve` to print once. `None` when users exist. Two processes
/// starting together create one administrator; the other gets `None`.
pub async fn ensure_admin(store: &dyn Store) -> Result<Option<String>, AuthError> {
    if !store.users().await?.is_empty() {
        return Ok(None);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; BOOTSTRAP_PASSWORD_LEN];
    random(&mut bytes).map_err(AuthError::Hash)?;
    // 256 is not a multiple of 57: the bias is below 1%, against ~140 bits of strength.
    let password: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))??
    };
    let created = store
        .create_first_user(NewUser {
            username: BOOTSTRAP_ADMIN.to_owned(),
            password_hash: hash,
            role: Role::Admin,
        })
        .await?;
    Ok(created.then_some(password))
}

/// The client's address, when the server runs with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>()`).
pub(crate) fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The peer's address, for rate limits and audit records (never fails).
pub(crate) struct PeerAddr(pub(crate) Option<SocketAddr>);

impl PeerAddr {
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.0.map(|a| a.ip())
    }

    pub(crate) fn text(&self) -> Option<String> {
        self.0.map(|a| a.ip().to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(peer_addr(parts)))
    }
}

/// Which error body fits the route: JSON for `/api` and `/auth`, OperationOutcome elsewhere.
fn surface(parts: &Parts) -> Surface {
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |u| u.0.path());
    if path.starts_with("/api") || path.starts_with("/auth") {
        Surface::Api
    } else {
        Surface::Fhir
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let surface = surface(parts);
        state
            .auth
            .authenticate(&parts.headers)
            .await
            .map_err(|e| e.on(surface))
    }
}

/// The `/auth` routes (nested under `/auth` by [`crate::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/token", post(handlers::token))
        .route("/login", post(handlers::login))
        .route("/logout", post(handlers::logout))
        .route("/me", get(handlers::me))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Principal {
        Principal {
            subject: "ann".into(),
            kind: PrincipalKind::User { role },
        }
    }

    #[test]
    fn roles_gate_fhir_access_and_roles() {
        let viewer = user(Role::Viewer);
        assert!(viewer.require_fhir("Patient", Access::Read).is_ok());
        assert!(viewer.require_fhir("*", Access::Read).is_ok());
        let e = viewer.require_fhir("Patient", Access::Write).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (403, "the viewer role may not write FHIR resources")
        );
        assert!(
            user(Role::Operator)
                .require_fhir("Patient", Access::Write)
                .is_ok()
        );
        assert!(
            user(Role::Operator)
                .require_fhir("AuditEvent", Access::Read)
                .is_err()
        );
        assert!(
            user(Role::Admin)
                .require_fhir("AuditEvent", Access::Read)
                .is_ok()
        );
        assert!(viewer.require_role(Role::Viewer).is_ok());
        assert_eq!(
            viewer.require_role(Role::Admin).unwrap_err().message,
            "this needs the admin role; ann has viewer"
        );
        assert!(user(Role::Admin).is_admin() && !viewer.is_admin());
    }

    #[test]
    fn clients_are_gated_by_scopes_and_have_no_role() {
        let c = Principal {
            subject: "lab".into(),
            kind: PrincipalKind::Client {
                scopes: Scopes::parse("system/*.read system/Observation.write"),
            },
        };
        assert!(c.require_fhir("Patient", Access::Read).is_ok());
        assert!(c.require_fhir("Observation", Access::Write).is_ok());
        assert_eq!(
            c.require_fhir("Patient", Access::Write)
                .unwrap_err()
                .message,
            "the access token's scopes do not allow to write Patient"
        );
        assert!(c.require_fhir("AuditEvent", Access::Read).is_err());
        assert!(c.require_role(Role::Viewer).is_err());
        assert!(!c.is_admin());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; causeway_session=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
