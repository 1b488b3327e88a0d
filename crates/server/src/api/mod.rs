//! The management API under `/api`: channels (status, counters, stop and start), stored
//! messages (search, detail, reprocess, resend, edit and resubmit), error queues, unmapped codes, events, and the
//! OpenAPI 3 document describing all of it (`GET /api/openapi.json`).
//!
//! # Map
//!
//! - this file: the route table ([`routes`], [`route_table`]), the OpenAPI document
//!   ([`openapi`]), and what every handler shares (times, paging, errors, audit)
//! - `channels`: `GET /channels`, `GET /channels/{name}`, `POST /channels/{name}/stop|start`
//! - `messages`: `GET /messages`, `GET /messages/{id}`,
//!   `POST /messages/{id}/reprocess|resend|resubmit`
//! - `view`: the parsed view of a v2 message (segments and fields with their standard names)
//! - `mask`: PHI masking of a message's detail (unless `?reveal=true`)
//! - `queues`: `GET /errors` and `POST /errors/retry` (error queues), `GET /unmapped` (unmapped
//!   code values)
//! - `events`: `GET /events`
//! - `drift`: `GET /drift`, `GET /channels/{name}/drift/profile`, `POST /channels/{name}/drift/reset`
//! - `profiles`: `GET /profiles` (sender profiles and code maps), `POST /profiles/mappings`
//! - `monitor`: `GET /monitor` (live figures and their history), `GET /stream` (pushed)
//! - `alerts`: `GET /alerts` (what the alert rules raise)
//!
//! # Invariants
//!
//! - Every route needs a signed-in user: viewer to read, operator to act. Backend clients
//!   (access tokens) have no role and are refused (403).
//! - Only `GET /messages/{id}` answers PHI (the payload, its parsed view, its FHIR bundle, the
//!   ACKs), masked unless `?reveal=true` (operator role): every read is audited before the
//!   answer leaves, a revealed one with the query `reveal=true`. A search by patient identifier is
//!   audited as a search (it ties a patient to messages). Everything else (summaries, counters,
//!   events, error texts) carries no PHI by the store's own rules; operator actions are audited
//!   too, as who changed what.
//! - Errors are JSON `{"error", "code"}` ([`ApiError`] on [`Surface::Api`]).
//! - The router is built from one table ([`route_table`]); the document from the handlers'
//!   `#[utoipa::path]` attributes. A test checks the two name the same routes.

mod alerts;
mod channels;
mod config;
mod drift;
mod events;
mod mask;
mod messages;
mod monitor;
mod profiles;
mod queues;
mod view;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::Router;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use causeway_store::UnixMillis;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::AppState;
use crate::audit::{AuditAction, AuditRecord};
use crate::auth::{Principal, Role, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult, Surface};

/// Where [`routes`] is nested by [`crate::router`]; the document's paths include it.
pub const PREFIX: &str = "/api";

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verb {
    Get,
    Post,
}

/// One route: how the router serves it.
struct Route {
    verb: Verb,
    /// Below [`PREFIX`], in axum's (and OpenAPI's) `{param}` syntax.
    path: &'static str,
    service: MethodRouter<AppState>,
}

fn route<H, T>(verb: Verb, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match verb {
        Verb::Get => MethodFilter::GET,
        Verb::Post => MethodFilter::POST,
    };
    Route {
        verb,
        path,
        service: on(filter, handler),
    }
}

/// Every route of the API. The one list the router is built from.
fn table() -> Vec<Route> {
    use Verb::{Get, Post};
    vec![
        route(Get, "/channels", channels::list),
        route(Get, "/channels/{name}", channels::detail),
        route(Post, "/channels/{name}/stop", channels::stop),
        route(Post, "/channels/{name}/start", channels::start),
        route(Post, "/config/reload", config::reload),
        route(Get, "/messages", messages::search),
        route(Get, "/messages/{id}", messages::detail),
        route(Post, "/messages/{id}/reprocess", messages::reprocess),
        route(Post, "/messages/{id}/resend", messages::resend),
        route(Post, "/messages/{id}/resubmit", messages::resubmit),
        route(Get, "/errors", queues::errors),
        route(Post, "/errors/retry", queues::retry),
        route(Get, "/unmapped", queues::unmapped),
        route(Get, "/events", events::list),
        route(Get, "/drift", drift::overview),
        route(Get, "/channels/{name}/drift/profile", drift::profile),
        route(Post, "/channels/{name}/drift/reset", drift::reset),
        route(Get, "/profiles", profiles::list),
        route(Post, "/profiles/mappings", profiles::add_mapping),
        route(Get, "/monitor", monitor::figures),
        route(Get, "/stream", monitor::stream),
        route(Get, "/alerts", alerts::list),
        route(Get, "/openapi.json", openapi_json),
    ]
}

/// The management API's routes, to nest under [`PREFIX`].
pub fn routes() -> Router<AppState> {
    table()
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.service))
}

/// The `(method, full path)` of every route the router serves, `/api` included.
pub fn route_table() -> BTreeSet<(Method, String)> {
    table()
        .into_iter()
        .map(|r| {
            let method = match r.verb {
                Verb::Get => Method::GET,
                Verb::Post => Method::POST,
            };
            (method, format!("{PREFIX}{}", r.path))
        })
        .collect()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Causeway management API",
        description = "Channels, stored messages, error queues, unmapped codes, events and alerts of a \
            Causeway engine. Every operation needs a signed-in user (`POST /auth/login` sets the \
            session cookie): the viewer role reads, the operator role acts. Errors are \
            `{\"error\", \"code\"}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        channels::list,
        channels::detail,
        channels::stop,
        channels::start,
        config::reload,
        messages::search,
        messages::detail,
        messages::reprocess,
        messages::resend,
        messages::resubmit,
        queues::errors,
        queues::retry,
        queues::unmapped,
        events::list,
        drift::overview,
        drift::profile,
        drift::reset,
        profiles::list,
        profiles::add_mapping,
        monitor::figures,
        monitor::stream,
        alerts::list,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SessionCookie),
    security(("session" = [])),
    tags(
        (name = "channels", description = "Channels: status, counters, stop and start"),
        (name = "messages", description = "Stored messages: search, detail, reprocess, resend, edit and resubmit"),
        (name = "queues", description = "Error queues and unmapped code values"),
        (name = "events", description = "The event log"),
        (name = "drift", description = "Each feed's learned profile and its changes"),
        (name = "profiles", description = "Sender profiles and their code maps"),
        (name = "monitor", description = "Live figures: counters, queue gauges, latency"),
        (name = "alerts", description = "What the alert rules raise"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// Declares the session cookie [`crate::auth`] sets at sign-in as the security scheme.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by `POST /auth/login` (named \
                 `__Host-causeway_session` when the server sets Secure cookies).",
            ))),
        );
    }
}

/// The OpenAPI 3 document of this API, generated from the handlers and types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once.
fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"))
    })
}

/// This document.
///
/// The OpenAPI 3 description of every `/api` route, generated from the server's code.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
async fn openapi_json(who: Principal) -> ApiResult<Response> {
    api(async {
        who.require_role(Role::Viewer)?;
        let mut r = (StatusCode::OK, openapi_text()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(r)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Shared by the handlers
// ---------------------------------------------------------------------------------------

/// The error body of every 4xx and 5xx.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Why, for a 4xx; a fixed text for a 5xx (the detail is in the server log).
    pub error: String,
    /// The kind of error (a FHIR issue type: `invalid`, `not-found`, `forbidden`, ...).
    pub code: String,
}

/// Runs a handler body and puts its error on the JSON surface.
async fn api<T>(work: impl Future<Output = ApiResult<T>>) -> ApiResult<T> {
    work.await.map_err(|e| e.on(Surface::Api))
}

/// A store error as the API answers it: missing rows are 404, refused requests 409 (the
/// store says why, without PHI), the rest as [`ApiError`]'s conversion decides.
fn store_error(e: causeway_store::Error) -> ApiError {
    use causeway_store::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => ApiError::not_found(e.to_string()),
        ErrorKind::InvalidInput | ErrorKind::Conflict => ApiError::conflict(e.to_string()),
        _ => ApiError::from(e),
    }
}

/// RFC 3339, UTC, with milliseconds.
fn rfc3339(at: UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(at.0)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// An RFC 3339 query parameter (`2024-05-06T10:00:00Z`, with any offset).
fn parse_time(name: &str, value: &str) -> ApiResult<UnixMillis> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| UnixMillis(t.as_millisecond()))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name}: expected an RFC 3339 time such as 2024-05-06T10:00:00Z"
            ))
        })
}

/// A query string that did not deserialize: the parameter and what is wrong with it, without
/// the extractor's preamble and with number errors said plainly.
fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = e.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let plain = match text.split_once(": ") {
        Some((
            name,
            "invalid digit found in string"
            | "number too large to fit in target type"
            | "cannot parse integer from empty string",
        )) => format!("{name}: expected a whole number, 0 or more"),
        _ => text.to_owned(),
    };
    ApiError::bad_request(plain)
}

/// Appends an audit record; the caller fails when it cannot be written.
async fn audit(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    entity: String,
    query: Option<String>,
    outcome: StatusCode,
    peer: Option<String>,
) -> ApiResult<()> {
    state
        .audit
        .record(
            who,
            AuditRecord {
                action,
                entity,
                query,
                outcome: outcome.as_u16(),
                peer,
            },
        )
        .await
}

/// Runs `work`, then records its outcome (its status, error or not) before answering.
async fn audited<T>(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    entity: String,
    query: Option<String>,
    peer: Option<String>,
    work: impl Future<Output = ApiResult<T>>,
) -> ApiResult<T> {
    let result = work.await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    audit(state, who, action, entity, query, status, peer).await?;
    result
}

/// The schema of a string holding one of `names`.
fn names_schema(names: &[&str], description: &str) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names.iter().copied()))
        .description(Some(description))
        .build()
}

/// The channel of that name this process runs, or 404.
fn channel<'a>(
    state: &'a AppState,
    name: &str,
) -> ApiResult<&'a std::sync::Arc<causeway_engine::runtime::channel::Channel>> {
    state
        .channels
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("channel {name:?} is not running here")))
}
