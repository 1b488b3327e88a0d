//! `GET /api/channels`, `GET /api/channels/{name}`, `POST /api/channels/{name}/stop` and
//! `/start`.
//!
//! Stop and start act on this process's engine only (the flag is in memory): another process
//! sharing the store keeps its own channels running, and a restart starts every channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use causeway_engine::runtime::channel::{Channel, ChannelStats};
use causeway_store::{EventFilter, EventKind, NewEvent, SearchFilter};
use serde::Serialize;
use utoipa::ToSchema;

use super::events::EventView;
use super::{ErrorBody, api, audit, channel, rfc3339};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::ApiResult;

/// Events shown with a channel's detail.
pub const RECENT_EVENTS: u32 = 20;

/// Every channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelSummary>,
}

/// A channel's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelSummary {
    pub name: String,
    /// The source's kind: `mllp`, `http` or `directory`.
    pub source: String,
    /// False while stopped: inbound messages are answered AE, destinations do not send.
    pub running: bool,
    /// Routed messages are converted to FHIR R4 at ingest (`[channel.fhir]`).
    pub fhir: bool,
    pub destinations: Vec<DestinationStatus>,
    /// This process's counters since it started.
    pub stats: ChannelCounters,
}

/// A destination's queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationStatus {
    /// The destination's name in its channel.
    pub name: String,
    /// Its queue in the store (`channel/destination`), as `/api/errors` and resend name it.
    pub queue: String,
    /// Deliveries waiting, in flight or retrying.
    pub queue_depth: u64,
    /// Age of the oldest of those, in milliseconds.
    pub oldest_queued_age_ms: Option<u64>,
    /// Deliveries in the error queue (failed for good, not sent again since).
    pub failed: u64,
}

/// A channel's counters (this process, since it started). No PHI.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCounters {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub filtered: u64,
    pub errored: u64,
    pub duplicates: u64,
    /// Answered AE because the store failed.
    pub store_failures: u64,
    pub unmapped_codes: u64,
    pub script_errors: u64,
    /// Answered AE because the channel was stopped (not stored, not counted as received).
    pub refused_stopped: u64,
    /// Changes from the feed's learned profile (`GET /api/drift`).
    pub drift_findings: u64,
}

impl From<&ChannelStats> for ChannelCounters {
    fn from(s: &ChannelStats) -> Self {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Self {
            received: n(&s.received),
            accepted: n(&s.accepted),
            rejected: n(&s.rejected),
            filtered: n(&s.filtered),
            errored: n(&s.errored),
            duplicates: n(&s.duplicates),
            store_failures: n(&s.store_failures),
            unmapped_codes: n(&s.unmapped_codes),
            script_errors: n(&s.script_errors),
            refused_stopped: n(&s.refused_stopped),
            drift_findings: n(&s.drift_findings),
        }
    }
}

/// A channel with its configuration outline, statistics and recent events.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelDetail {
    #[serde(flatten)]
    pub summary: ChannelSummary,
    /// Filters every message must pass.
    pub filters: usize,
    /// Transform steps.
    pub transforms: usize,
    /// Names of the sender profiles of the FHIR conversion.
    pub fhir_profiles: Vec<String>,
    /// The channel carries FHIR API writes to an EHR.
    pub write_back: bool,
    /// When the newest stored message arrived.
    #[schema(format = DateTime)]
    pub last_received_at: Option<String>,
    /// The newest events of the channel, newest first.
    pub recent_events: Vec<EventView>,
}

/// What stop and start did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunChange {
    /// False when the channel already was in that state.
    pub changed: bool,
    pub channel: ChannelSummary,
}

async fn summary(state: &AppState, c: &Channel) -> ApiResult<ChannelSummary> {
    let mut destinations = Vec::with_capacity(c.queues.len());
    for queue in &c.queues {
        let name = queue
            .strip_prefix(&format!("{}/", c.name))
            .unwrap_or(queue)
            .to_owned();
        let depth = state.store.queue_depth(queue).await?;
        let age = state.store.oldest_queued_age(queue).await?;
        let failed = state.store.error_queue(queue, 1, 0).await?.total;
        destinations.push(DestinationStatus {
            name,
            queue: queue.clone(),
            queue_depth: depth,
            oldest_queued_age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
            failed,
        });
    }
    Ok(ChannelSummary {
        name: c.name.clone(),
        source: c.source_kind.to_owned(),
        running: c.is_running(),
        fhir: c.fhir.get().is_some(),
        destinations,
        stats: ChannelCounters::from(&*c.stats),
    })
}

/// List channels.
///
/// Every channel this process runs, with its destinations' queues and its counters.
#[utoipa::path(
    get,
    path = "/api/channels",
    tag = "channels",
    responses(
        (status = 200, description = "The channels, by name", body = ChannelList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<ChannelList>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let mut channels = Vec::with_capacity(state.channels.len());
        for c in state.channels.values() {
            channels.push(summary(&state, c).await?);
        }
        Ok(Json(ChannelList { channels }))
    })
    .await
}

/// Show a channel.
///
/// Its status and queues, counters, configuration outline and most recent events.
#[utoipa::path(
    get,
    path = "/api/channels/{name}",
    tag = "channels",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "The channel", body = ChannelDetail),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
)]
pub(super) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<ChannelDetail>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let c = channel(&state, &name)?;
        let last = state
            .store
            .search(SearchFilter {
                channel: Some(c.name.clone()),
                limit: 1,
                ..SearchFilter::default()
            })
            .await?;
        let events = state
            .store
            .events(EventFilter {
                channel: Some(c.name.clone()),
                newest_first: true,
                limit: RECENT_EVENTS,
                ..EventFilter::default()
            })
            .await?;
        Ok(Json(ChannelDetail {
            summary: summary(&state, c).await?,
            filters: c.filters.len(),
            transforms: c.transforms.len(),
            fhir_profiles: c
                .fhir
                .get()
                .iter()
                .flat_map(|f| f.profiles.iter().map(|p| p.name.clone()))
                .collect(),
            write_back: c.write_back.is_some(),
            last_received_at: last.first().map(|m| rfc3339(m.received_at)),
            recent_events: events.iter().map(EventView::from).collect(),
        }))
    })
    .await
}

/// Stop a channel.
///
/// Inbound messages are answered AE "channel stopped" and not stored (senders keep them and
/// retry); its destinations stop sending. Takes effect at once in this process only.
#[utoipa::path(
    post,
    path = "/api/channels/{name}/stop",
    tag = "channels",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "Stopped (or already stopped)", body = RunChange),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
)]
pub(super) async fn stop(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
) -> ApiResult<Json<RunChange>> {
    switch(state, who, peer, name, false).await
}

/// Start a channel.
///
/// A stopped channel takes messages again and its destinations resume sending.
#[utoipa::path(
    post,
    path = "/api/channels/{name}/start",
    tag = "channels",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "Running (or already running)", body = RunChange),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
    ),
)]
pub(super) async fn start(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
) -> ApiResult<Json<RunChange>> {
    switch(state, who, peer, name, true).await
}

async fn switch(
    state: AppState,
    who: Principal,
    peer: PeerAddr,
    name: String,
    run: bool,
) -> ApiResult<Json<RunChange>> {
    api(async {
        who.require_role(Role::Operator)?;
        let c: &Arc<Channel> = channel(&state, &name)?;
        let (op, verb) = if run {
            ("start", "started")
        } else {
            ("stop", "stopped")
        };
        // Recorded first: when the record cannot be written, nothing changes.
        audit(
            &state,
            &who,
            AuditAction::Operation,
            format!("Channel/{}/${op}", c.name),
            None,
            axum::http::StatusCode::OK,
            peer.text(),
        )
        .await?;
        let changed = if run { c.start() } else { c.stop() };
        if changed {
            tracing::info!(channel = %c.name, user = %who.subject, "channel {verb}");
            // The flag already took effect; a lost event must not undo it or fail the call.
            let event = NewEvent {
                channel: c.name.clone(),
                destination: None,
                message_id: None,
                kind: EventKind::Lifecycle,
                detail: format!("{verb} by {} through the management API", who.subject),
            };
            if let Err(e) = state.store.add_event(event).await {
                tracing::error!(channel = %c.name, error = %e, "recording a lifecycle event failed");
            }
        }
        Ok(Json(RunChange {
            changed,
            channel: summary(&state, c).await?,
        }))
    })
    .await
}
