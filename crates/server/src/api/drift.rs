//! Drift detection (`[channel.drift]`): `GET /api/drift` (each channel's learned profile and its
//! recent findings), `GET /api/channels/{name}/drift/profile` (the profile as a starting
//! conformance profile for `causeway validate --profile`) and `POST /api/channels/{name}/drift/reset`
//! (learn again from scratch).
//!
//! No PHI: a learned profile holds segment and field names, fill rates, lengths and the codes of
//! coded fields only (see `causeway_engine::drift::learner`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use causeway_engine::drift::{DriftTracker, FeedProfile};
use causeway_engine::runtime::channel::Channel;
use causeway_store::{EventFilter, EventKind, NewEvent};
use serde::Serialize;
use utoipa::ToSchema;

use super::events::EventView;
use super::{ErrorBody, api, audit, channel, rfc3339};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, ApiResult};

/// Findings shown per channel.
pub const RECENT_FINDINGS: u32 = 50;

/// Every channel's drift state.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftOverview {
    pub channels: Vec<ChannelDrift>,
}

/// One channel's learned profile and recent findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelDrift {
    pub channel: String,
    /// False when `[channel.drift] enabled = false`: nothing is learned.
    pub enabled: bool,
    /// `learning` (the baseline is not complete) or `comparing`.
    pub state: String,
    /// Messages observed since learning started.
    pub messages: u64,
    /// The baseline's size in messages (`[channel.drift] baseline_messages`).
    pub baseline_messages: u64,
    /// When learning started (the first message observed).
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// Messages of types past the tracked limit, observed but not learned.
    pub untracked_messages: u64,
    pub message_types: Vec<TypeDrift>,
    /// The newest `drift` events of the channel, newest first.
    pub findings: Vec<EventView>,
}

/// One message type of a feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeDrift {
    /// MSH-9 `type^trigger`.
    pub message_type: String,
    /// MSH-12 of its first message (the definitions its fields are typed with).
    pub version: String,
    pub messages: u64,
    pub baseline_messages: u64,
    /// Compared with its baseline (the feed's baseline is complete and this type has enough
    /// messages in it).
    pub comparing: bool,
    pub segments: Vec<SegmentDrift>,
    pub fields: Vec<FieldDrift>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentDrift {
    pub segment: String,
    /// Messages that carried it.
    pub messages: u64,
    /// Most occurrences in one message.
    pub max_occurs: u32,
    /// First seen after the baseline (reported as a finding).
    pub new: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldDrift {
    /// `SEG-n`.
    pub field: String,
    /// The standard name, when the definitions have one.
    pub name: Option<String>,
    /// Share of the type's messages that filled it (0 to 1).
    pub fill_rate: f64,
    /// The same share in the baseline.
    pub baseline_fill_rate: f64,
    pub max_length: u32,
    pub typical_length: u32,
    pub data_type: Option<String>,
    /// HL7 table number (0: none).
    pub table: u32,
    /// Coded fields: each code seen and how often.
    pub values: Vec<CodeCount>,
    /// A coded field with more distinct values than tracked (not a closed code set).
    pub open_ended: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeCount {
    pub code: String,
    pub count: u64,
}

/// A restarted learner.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftReset {
    pub channel: String,
    /// Always `learning`.
    pub state: String,
}

fn tracker(c: &Channel) -> ApiResult<&Arc<DriftTracker>> {
    c.drift.as_ref().ok_or_else(|| {
        ApiError::conflict(format!(
            "drift detection is off for channel {:?} ([channel.drift] enabled = false)",
            c.name
        ))
    })
}

fn types_of(p: &FeedProfile) -> Vec<TypeDrift> {
    p.types
        .iter()
        .map(|(key, t)| {
            let rate = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
            TypeDrift {
                message_type: key.clone(),
                version: t.version.clone(),
                messages: t.messages,
                baseline_messages: t.baseline_messages,
                comparing: t.compared > 0,
                segments: t
                    .segments
                    .iter()
                    .map(|(id, s)| SegmentDrift {
                        segment: id.clone(),
                        messages: s.messages,
                        max_occurs: s.max_occurs,
                        new: s.new,
                    })
                    .collect(),
                fields: t
                    .fields
                    .iter()
                    .map(|(key, f)| FieldDrift {
                        field: key.to_string(),
                        name: hl7v2::validate::field_name(&t.version, key.segment(), key.field()),
                        fill_rate: rate(f.filled, t.messages),
                        baseline_fill_rate: rate(f.baseline_filled, t.baseline_messages),
                        max_length: f.max_len,
                        typical_length: f.typical_len(),
                        data_type: f.data_type.clone(),
                        table: f.table,
                        values: causeway_engine::drift::learner::sorted_values(&f.values)
                            .into_iter()
                            .map(|(code, count)| CodeCount {
                                code: code.clone(),
                                count: *count,
                            })
                            .collect(),
                        open_ended: f.open_ended,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Drift detection, every channel.
///
/// Per channel: whether it is still learning its baseline, what it learned (message types,
/// segments with counts, fields with fill rates and lengths, coded fields with their codes) and
/// its most recent drift findings. No patient data: codes of coded fields are the only values.
#[utoipa::path(
    get,
    path = "/api/drift",
    tag = "drift",
    responses(
        (status = 200, description = "Each channel's learned profile and findings", body = DriftOverview),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn overview(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<DriftOverview>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let mut channels = Vec::with_capacity(state.channels.len());
        for c in state.channels.values() {
            let findings = state
                .store
                .events(EventFilter {
                    channel: Some(c.name.clone()),
                    kind: Some(EventKind::Drift),
                    newest_first: true,
                    limit: RECENT_FINDINGS,
                    ..EventFilter::default()
                })
                .await?;
            let findings: Vec<EventView> = findings.iter().map(EventView::from).collect();
            let Some(t) = &c.drift else {
                channels.push(ChannelDrift {
                    channel: c.name.clone(),
                    enabled: false,
                    state: "off".into(),
                    messages: 0,
                    baseline_messages: 0,
                    started_at: None,
                    untracked_messages: 0,
                    message_types: Vec::new(),
                    findings,
                });
                continue;
            };
            let p = t.profile();
            channels.push(ChannelDrift {
                channel: c.name.clone(),
                enabled: true,
                state: if p.baseline_complete {
                    "comparing"
                } else {
                    "learning"
                }
                .into(),
                messages: p.messages,
                baseline_messages: t.settings.baseline_messages,
                started_at: p
                    .started_at
                    .map(|at| rfc3339(causeway_store::UnixMillis(at))),
                untracked_messages: p.untracked_messages,
                message_types: types_of(&p),
                findings,
            });
        }
        Ok(Json(DriftOverview { channels }))
    })
    .await
}

/// A channel's learned profile as a conformance profile.
///
/// The JSON `causeway validate --profile` reads: the Z segments seen, declared with their
/// fields; the codes of coded fields added to their HL7 tables (`"extend": true`); the base
/// version when the feed uses one. A starting point to review, not a specification.
#[utoipa::path(
    get,
    path = "/api/channels/{name}/drift/profile",
    tag = "drift",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "The conformance profile", content_type = "application/json"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "Drift detection is off for the channel", body = ErrorBody),
    ),
)]
pub(super) async fn profile(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let c = channel(&state, &name)?;
        let p = tracker(c)?.profile();
        Ok(Json(causeway_engine::drift::export::conformance_profile(
            &c.name, &p,
        )))
    })
    .await
}

/// Restart learning.
///
/// Forgets the channel's learned profile: a new baseline starts with the next message, and no
/// finding is raised until it is complete. For a feed whose change was expected (an upgrade).
#[utoipa::path(
    post,
    path = "/api/channels/{name}/drift/reset",
    tag = "drift",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "Learning again", body = DriftReset),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "Drift detection is off for the channel", body = ErrorBody),
    ),
)]
pub(super) async fn reset(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
) -> ApiResult<Json<DriftReset>> {
    api(async {
        who.require_role(Role::Operator)?;
        let c = channel(&state, &name)?;
        let t = tracker(c)?.clone();
        audit(
            &state,
            &who,
            AuditAction::Operation,
            format!("Channel/{}/$drift-reset", c.name),
            None,
            StatusCode::OK,
            peer.text(),
        )
        .await?;
        tokio::task::spawn_blocking(move || t.reset())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        tracing::info!(channel = %c.name, user = %who.subject, "drift learning restarted");
        let event = NewEvent {
            channel: c.name.clone(),
            destination: None,
            message_id: None,
            kind: EventKind::Note,
            detail: format!("drift learning restarted by {}", who.subject),
        };
        if let Err(e) = state.store.add_event(event).await {
            tracing::error!(channel = %c.name, error = %e, "recording the drift reset failed");
        }
        Ok(Json(DriftReset {
            channel: c.name.clone(),
            state: "learning".into(),
        }))
    })
    .await
}
