//! `GET /api/alerts`: the alerts the engine's rules raise, active (pending or firing) and
//! recent (the latest firings and recoveries). Names, numbers and times only: no PHI.

use axum::Json;
use axum::extract::State;
use causeway_engine::alerts::AlertView as EngineView;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::Object;

use super::{ErrorBody, api, names_schema, rfc3339};
use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::ApiResult;

fn states() -> Object {
    names_schema(&["pending", "firing", "resolved"], "Where the alert is")
}

fn kinds() -> Object {
    names_schema(
        &causeway_engine::config::alerts::Condition::KINDS,
        "The rule's type",
    )
}

fn severities() -> Object {
    names_schema(
        &causeway_engine::config::alerts::Severity::NAMES,
        "The rule's severity",
    )
}

/// One alert: a rule on a channel, or on one destination of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// The rule's name (`[[alert]] name`).
    pub rule: String,
    #[schema(schema_with = kinds)]
    pub kind: String,
    #[schema(schema_with = severities)]
    pub severity: String,
    pub channel: String,
    /// The destination, for the rules about one.
    pub destination: Option<String>,
    #[schema(schema_with = states)]
    pub state: String,
    /// Pending since, or fired at.
    #[schema(format = DateTime)]
    pub since: String,
    /// When it was resolved (`resolved` alerts only).
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    /// The last measured value, in `unit`.
    pub value: f64,
    /// The rule's threshold, in `unit`.
    pub threshold: f64,
    /// `ratio`, `messages`, `ms`, `failures`, `codes` or `findings`.
    pub unit: String,
    /// What was measured, in words.
    pub summary: String,
    /// Notices sent for it so far (firing, reminders, recovery).
    pub notified: u32,
}

impl From<&EngineView> for AlertView {
    fn from(v: &EngineView) -> Self {
        AlertView {
            rule: v.rule.clone(),
            kind: v.kind.to_string(),
            severity: v.severity.to_string(),
            channel: v.channel.clone(),
            destination: v.destination.clone(),
            state: v.state.to_string(),
            since: rfc3339(v.since),
            resolved_at: v.resolved_at.map(rfc3339),
            value: v.value,
            threshold: v.threshold,
            unit: v.unit.to_string(),
            summary: v.summary.clone(),
            notified: v.notified,
        }
    }
}

/// The alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    /// Pending and firing now.
    pub active: Vec<AlertView>,
    /// The latest firings and recoveries, newest first (at most 200).
    pub recent: Vec<AlertView>,
}

/// List alerts.
///
/// What the alert rules (`[[alert]]` in the configuration) raise: the alerts pending or firing
/// now, and the latest transitions. Empty when no rule is configured.
#[utoipa::path(
    get,
    path = "/api/alerts",
    tag = "alerts",
    responses(
        (status = 200, description = "The alerts", body = AlertList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<AlertList>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let (active, recent) = match &state.alerts {
            Some(board) => (board.active(), board.recent()),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Json(AlertList {
            active: active.iter().map(AlertView::from).collect(),
            recent: recent.iter().map(AlertView::from).collect(),
        }))
    })
    .await
}
