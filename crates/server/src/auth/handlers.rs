//! The `/auth` endpoints.
//!
//! `POST /auth/token` answers in OAuth2's own JSON (`{"error": ...}`), as clients expect;
//! the others answer [`ApiError`]s on the JSON surface. Both sign-in endpoints are rate limited
//! per peer, and every attempt, granted or refused, is appended to the audit log.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_store::{TokenHash, TokenKind};
use serde::Deserialize;
use serde_json::json;

use super::client::{self, Refused};
use super::{Auth, MAX_PASSWORD_LEN, PeerAddr, Principal, PrincipalKind, Scopes, cookie};
use crate::AppState;
use crate::audit::{AuditAction, AuditRecord};
use crate::error::{ApiError, ApiResult, IssueCode, Surface};

/// The only client assertion type SMART Backend Services uses.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn too_many(wait: Duration) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        IssueCode::Throttled,
        "too many attempts from this address; try again later",
    )
    .on(Surface::Api)
    .into_response();
    let secs = wait.as_secs().max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    no_store(r.headers_mut());
    r
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `POST /auth/token`: SMART Backend Services (client credentials with a JWT assertion).
pub(super) async fn token(
    State(state): State<AppState>,
    peer: PeerAddr,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let auth = &state.auth;
    if let Err(wait) = auth.token_limit.check(peer.ip()) {
        return too_many(wait);
    }
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if field("client_assertion_type") != Some(JWT_BEARER) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("client_assertion_type must be {JWT_BEARER}"),
        );
    }
    let Some(assertion) = field("client_assertion").filter(|a| !a.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion is required",
        );
    };
    let requested = match field("scope") {
        Some(s) if !s.trim().is_empty() => Scopes::parse(s),
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "scope is required",
            );
        }
    };
    let now = causeway_store::UnixMillis::now().0 / 1000;
    match grant(&state, auth, assertion, &requested, now, &peer).await {
        Ok(response) | Err(response) => response,
    }
}

/// Verifies the assertion, records its `jti`, and issues a token for the scopes granted.
async fn grant(
    state: &AppState,
    auth: &Auth,
    assertion: &str,
    requested: &Scopes,
    now: i64,
    peer: &PeerAddr,
) -> Result<Response, Response> {
    let refuse = |r: Refused| async move {
        // Refusals are audited under the client they claimed to be, when it is registered.
        let (agent, kind) = match &r.client_id {
            Some(id) => (id.as_str(), "client"),
            None => ("unknown-client", "anonymous"),
        };
        tracing::info!(client = agent, reason = %r.reason, "client assertion refused");
        let audited = audit_auth(state, agent, kind, AuditAction::Token, 401, peer).await;
        match audited {
            Ok(()) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &r.reason),
            Err(e) => e.on(Surface::Api).into_response(),
        }
    };
    let verified = match client::verify(&auth.clients, auth.token_url.as_deref(), assertion, now) {
        Ok(v) => v,
        Err(r) => return Err(refuse(r).await),
    };
    let id = verified.client_id.as_str();
    let kept_until =
        causeway_store::UnixMillis((verified.exp + client::CLOCK_SKEW_SECS).saturating_mul(1000));
    let fresh = auth
        .store
        .record_jti(id, &verified.jti, kept_until)
        .await
        .map_err(|e| ApiError::from(e).on(Surface::Api).into_response())?;
    if !fresh {
        return Err(refuse(Refused {
            client_id: Some(id.to_owned()),
            reason: "the client assertion's jti was already used".into(),
        })
        .await);
    }
    let Some(client) = auth.clients.get(id) else {
        return Err(ApiError::internal("verified client vanished")
            .on(Surface::Api)
            .into_response());
    };
    let granted = Scopes::intersect(requested, &client.allowed);
    if granted.is_empty() {
        audit_auth(state, id, "client", AuditAction::Token, 400, peer)
            .await
            .map_err(|e| e.on(Surface::Api).into_response())?;
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes is allowed for this client",
        ));
    }
    let scope = granted.to_string();
    let token = auth
        .issue(TokenKind::Access, id, scope.clone(), auth.token_lifetime)
        .await
        .map_err(|e| e.on(Surface::Api).into_response())?;
    audit_auth(state, id, "client", AuditAction::Token, 200, peer)
        .await
        .map_err(|e| e.on(Surface::Api).into_response())?;
    tracing::info!(client = id, scope = %scope, "access token issued");
    let mut r = Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": auth.token_lifetime.as_secs(),
        "scope": scope,
    }))
    .into_response();
    no_store(r.headers_mut());
    Ok(r)
}

async fn audit_auth(
    state: &AppState,
    agent: &str,
    agent_kind: &str,
    action: AuditAction,
    outcome: u16,
    peer: &PeerAddr,
) -> ApiResult<()> {
    let entity = match action {
        AuditAction::Login => "auth/login",
        AuditAction::Logout => "auth/logout",
        _ => "auth/token",
    };
    state
        .audit
        .record_as(
            agent,
            agent_kind,
            AuditRecord {
                action,
                entity: entity.to_owned(),
                query: None,
                outcome,
                peer: peer.text(),
            },
        )
        .await
}

/// `POST /auth/login` body. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub(super) struct Login {
    username: String,
    password: String,
}

/// `Set-Cookie` for a session (or, with `None`, one that removes it).
fn session_cookie(auth: &Auth, value: Option<&str>) -> HeaderValue {
    let (value, max_age) = match value {
        Some(v) => (v, auth.session_lifetime.as_secs()),
        None => ("", 0),
    };
    let secure = if auth.secure_cookies { "; Secure" } else { "" };
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        auth.cookie_name()
    );
    // Token values are hex and the name is a constant: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /auth/login`: `{username, password}` -> session cookie and `{username, role}`.
pub(super) async fn login(
    State(state): State<AppState>,
    peer: PeerAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    let auth = &state.auth;
    if let Err(wait) = auth.login_limit.check(peer.ip()) {
        return too_many(wait);
    }
    match login_inner(&state, &peer, body).await {
        Ok(r) => r,
        Err(e) => e.on(Surface::Api).into_response(),
    }
}

async fn login_inner(
    state: &AppState,
    peer: &PeerAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> ApiResult<Response> {
    let auth = &state.auth;
    let Json(login) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON body {{\"username\", \"password\"}}: {}",
            e.body_text()
        ))
    })?;
    let plausible = causeway_store::auth::MAX_USERNAME_LEN >= login.username.len()
        && !login.username.is_empty()
        && login.password.len() <= MAX_PASSWORD_LEN;
    let user = if plausible {
        auth.store.user(&login.username).await?
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map_or_else(|| auth.dummy_hash.clone(), |u| u.password_hash.clone());
    let password = login.password;
    // argon2 takes tens of milliseconds of CPU: off the async workers. An unknown user is
    // checked against a dummy hash, so the answer takes as long as for a wrong password.
    let matches = tokio::task::spawn_blocking(move || super::verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let known = user.is_some();
    let Some(user) = user.filter(|_| matches) else {
        let (agent, kind) = if known {
            (login.username.as_str(), "user")
        } else {
            ("unknown-user", "anonymous")
        };
        audit_auth(state, agent, kind, AuditAction::Login, 401, peer).await?;
        tracing::info!(peer = ?peer.text(), "sign-in refused");
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    let session = auth
        .issue(
            TokenKind::Session,
            &user.username,
            String::new(),
            auth.session_lifetime,
        )
        .await?;
    audit_auth(state, &user.username, "user", AuditAction::Login, 200, peer).await?;
    tracing::info!(user = %user.username, "signed in");
    let mut r =
        Json(json!({ "username": user.username, "role": user.role.as_str() })).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(auth, Some(&session)));
    no_store(r.headers_mut());
    Ok(r)
}

/// `POST /auth/logout`: ends the session of the cookie, if any, and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
) -> Response {
    let auth = &state.auth;
    let ended: ApiResult<()> = async {
        let Some(id) = cookie(&headers, auth.cookie_name()) else {
            return Ok(());
        };
        let hash = TokenHash::of(&id);
        let Some(session) = auth
            .store
            .token(hash)
            .await?
            .filter(|t| t.kind == TokenKind::Session)
        else {
            return Ok(());
        };
        auth.store.delete_token(hash).await?;
        audit_auth(
            &state,
            &session.subject,
            "user",
            AuditAction::Logout,
            204,
            &peer,
        )
        .await
    }
    .await;
    match ended {
        Ok(()) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(auth, None));
            r
        }
        Err(e) => e.on(Surface::Api).into_response(),
    }
}

/// `GET /auth/me`: who the request is.
pub(super) async fn me(who: Principal) -> Response {
    let body = match &who.kind {
        PrincipalKind::User { role } => {
            json!({ "subject": who.subject, "kind": "user", "role": role.as_str() })
        }
        PrincipalKind::Client { scopes } => {
            json!({ "subject": who.subject, "kind": "client", "scope": scopes.to_string() })
        }
    };
    Json(body).into_response()
}
