//! `GET /api/events`: the store's event log (transitions, connections, lifecycle, alerts,
//! unmapped codes). Event details hold no PHI by the store's contract.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use causeway_store::{Event, EventFilter, EventKind, MAX_PAGE_LEN, MessageId};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, api, bad_query, names_schema, parse_time, rfc3339};
use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};

/// Events returned when `limit` is not given.
pub const DEFAULT_EVENTS: u32 = 100;

pub(super) fn event_kinds() -> Object {
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    names_schema(&names, "An event kind")
}

/// One event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Increasing: tail the log with `after`.
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub channel: String,
    /// The destination queue concerned, if any.
    pub destination: Option<String>,
    pub message_id: Option<i64>,
    #[schema(schema_with = event_kinds)]
    pub kind: String,
    /// What happened (no PHI).
    pub detail: String,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            channel: e.channel.clone(),
            destination: e.destination.clone(),
            message_id: e.message_id.map(|m| m.0),
            kind: e.kind.as_str().to_owned(),
            detail: e.detail.clone(),
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

/// Criteria of `GET /api/events`; all given ones must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Channel name.
    pub channel: Option<String>,
    /// Event kind.
    #[param(schema_with = event_kinds)]
    pub kind: Option<String>,
    /// Destination queue (`channel/destination`).
    pub destination: Option<String>,
    /// Message id.
    pub message: Option<i64>,
    /// Recorded at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only events with a larger id, oldest first (for tailing); without it, newest first.
    pub after: Option<i64>,
    /// Events to return (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// List events.
///
/// Newest first; with `after`, the events after that id, oldest first, for tailing.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "The events", body = EventList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> ApiResult<Json<EventList>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let Query(q) = query.map_err(bad_query)?;
        let kind = q
            .kind
            .as_deref()
            .map(|k| {
                EventKind::parse(k).ok_or_else(|| {
                    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_request(format!("kind: expected one of {}", names.join(", ")))
                })
            })
            .transpose()?;
        let since = q
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?;
        let filter = EventFilter {
            channel: q.channel,
            destination: q.destination,
            message_id: q.message.map(MessageId),
            kind,
            after: q.after,
            since,
            newest_first: q.after.is_none(),
            limit: q.limit.unwrap_or(DEFAULT_EVENTS).clamp(1, MAX_PAGE_LEN),
        };
        let events = state.store.events(filter).await?;
        Ok(Json(EventList {
            events: events.iter().map(EventView::from).collect(),
        }))
    })
    .await
}
