//! `GET /api/monitor` (the figures now and their recent history, for charts) and
//! `GET /api/stream` (the same figures pushed as server-sent events once a second, for
//! live views). Counts and durations per channel and destination: no PHI.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use causeway_engine::monitor::{HISTORY_SAMPLES, Monitor, SAMPLE_EVERY, Snapshot};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, api, bad_query};
use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult, IssueCode};

/// History returned when `seconds` is not given: ten minutes.
pub const DEFAULT_HISTORY_SECONDS: u64 = 600;

/// The figures now and the samples of the last `seconds`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorView {
    /// Every channel's counters, gauges and latency histograms now (`at` in Unix ms).
    #[schema(value_type = Object)]
    pub now: Snapshot,
    /// One sample a second, oldest first (the same shape as `now`).
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Snapshot>,
}

/// Criteria of `GET /api/monitor`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MonitorQuery {
    /// How far back the history goes (default 600, at most 3600; 0: none).
    pub seconds: Option<u64>,
}

fn monitor_of(state: &AppState) -> ApiResult<&Arc<Monitor>> {
    state.monitor.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueCode::Transient,
            "no engine runs behind this server",
        )
    })
}

/// The live figures.
///
/// Each channel's counters (received, accepted, rejected, ...), time-to-ACK histogram and
/// destinations (queue depth, oldest age, delivered, failed, receiver latency), now and as
/// sampled every second over the last `seconds`.
#[utoipa::path(
    get,
    path = "/api/monitor",
    tag = "monitor",
    params(MonitorQuery),
    responses(
        (status = 200, description = "The figures", body = MonitorView),
        (status = 400, description = "A bad criterion", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn figures(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<MonitorQuery>, QueryRejection>,
) -> ApiResult<Json<MonitorView>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let Query(query) = query.map_err(bad_query)?;
        let max = HISTORY_SAMPLES as u64 * SAMPLE_EVERY.as_secs().max(1);
        let seconds = query.seconds.unwrap_or(DEFAULT_HISTORY_SECONDS);
        if seconds > max {
            return Err(ApiError::bad_request(format!(
                "seconds: at most {max} (the history kept)"
            )));
        }
        let monitor = monitor_of(&state)?;
        let history = if seconds == 0 {
            Vec::new()
        } else {
            monitor
                .history(Duration::from_secs(seconds))
                .iter()
                .map(|s| Snapshot::clone(s))
                .collect()
        };
        Ok(Json(MonitorView {
            now: monitor.snapshot(),
            history,
        }))
    })
    .await
}

/// The live figures, pushed.
///
/// Server-sent events: `event: snapshot` with the figures (the shape of `/api/monitor`'s
/// `now`) once a second, starting with the current ones. A viewer that falls behind skips
/// to the newest sample.
#[utoipa::path(
    get,
    path = "/api/stream",
    tag = "monitor",
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn stream(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let monitor = monitor_of(&state)?.clone();
        let first = Arc::new(monitor.snapshot());
        let samples = monitor.subscribe();
        let events = futures_util::stream::unfold(
            (Some(first), samples),
            |(first, mut samples)| async move {
                let next = match first {
                    Some(s) => s,
                    None => loop {
                        match samples.recv().await {
                            Ok(s) => break s,
                            // Behind: the next receive gives the oldest kept; go on.
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    },
                };
                let event = Event::default()
                    .event("snapshot")
                    .json_data(&*next)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable sample"));
                Some((Ok(event), (None, samples)))
            },
        );
        Ok(Sse::new(events).keep_alive(KeepAlive::default()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_history_fits_in_what_is_kept() {
        assert!(DEFAULT_HISTORY_SECONDS <= HISTORY_SAMPLES as u64 * SAMPLE_EVERY.as_secs());
    }
}
