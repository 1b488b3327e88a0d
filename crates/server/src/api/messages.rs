//! `GET /api/messages` (search, summaries only), `GET /api/messages/{id}` (everything, audited),
//! `POST /api/messages/{id}/reprocess`, `POST /api/messages/{id}/resend` and
//! `POST /api/messages/{id}/resubmit` (an edited copy through the channel).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use causeway_engine::runtime::channel::ReprocessError;
use causeway_store::{
    Delivery, DeliveryState, EventKind, MAX_PAGE_LEN, MessageId, MessageState, MessageSummary,
    NewEvent, SearchFilter,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};

use super::mask;
use super::view::{ParsedMessage, parsed};
use super::{
    ErrorBody, api, audited, bad_query, channel, names_schema, parse_time, rfc3339, store_error,
};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, ApiResult};

/// Summaries returned when `limit` is not given.
pub const DEFAULT_MESSAGES: u32 = 100;

fn message_states() -> Object {
    let names: Vec<&str> = MessageState::ALL.iter().map(|s| s.as_str()).collect();
    names_schema(&names, "A message state")
}

fn delivery_states() -> Object {
    let names: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    names_schema(&names, "A delivery state")
}

/// A stored message's metadata. No payload, no PHI.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageSummaryView {
    pub id: i64,
    pub channel: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The sender's address.
    pub peer: String,
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-9 as `TYPE^EVENT`.
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-12.
    pub version: String,
    #[schema(schema_with = message_states)]
    pub state: String,
    /// Size as received, in bytes.
    pub size: u64,
    /// An earlier message of the sender had this control id with other bytes.
    pub control_id_reused: bool,
    /// For a duplicate: the message it repeats.
    pub duplicate_of: Option<i64>,
    /// Retention removed the payload (the metadata stays).
    pub payload_purged: bool,
}

impl From<&MessageSummary> for MessageSummaryView {
    fn from(m: &MessageSummary) -> Self {
        Self {
            id: m.id.0,
            channel: m.channel.clone(),
            received_at: rfc3339(m.received_at),
            peer: m.peer.clone(),
            sending_application: m.header.sending_app.clone(),
            sending_facility: m.header.sending_facility.clone(),
            message_type: m.header.message_type.clone(),
            control_id: m.header.control_id.clone(),
            version: m.header.version.clone(),
            state: m.state.as_str().to_owned(),
            size: m.size,
            control_id_reused: m.flags.control_id_reused,
            duplicate_of: m.duplicate_of.map(|d| d.0),
            payload_purged: m.payload_purged,
        }
    }
}

/// A page of search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    /// Newest first.
    pub messages: Vec<MessageSummaryView>,
    pub limit: u32,
    pub offset: u64,
    /// The `offset` of the next page, when this one is full.
    pub next_offset: Option<u64>,
}

/// Criteria of `GET /api/messages`; all given ones must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// An unknown parameter (a typo, `since` for `from`) is refused, not ignored: ignoring it
// would widen the search without saying so.
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    /// Channel name.
    pub channel: Option<String>,
    /// MSH-9 message code and event, e.g. `ADT^A01`; a message code alone (`ADT`, or
    /// `ADT^*`) finds every event of it.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub message_type: Option<String>,
    /// Message state.
    #[param(schema_with = message_states)]
    pub state: Option<String>,
    /// MSH-10 exactly.
    pub control_id: Option<String>,
    /// MSH-3 exactly, as summaries show it (its first component), e.g. `EPICADT`.
    pub sending_application: Option<String>,
    /// MSH-4 exactly, as summaries show it (its first component).
    pub sending_facility: Option<String>,
    /// A patient identifier as `id^authority` (PID-3.1 and PID-3.4.1), e.g. `12345^HOSP`.
    /// A search by patient is recorded in the audit log.
    pub patient: Option<String>,
    /// Received at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Received before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Results per page (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Results to skip.
    pub offset: Option<u64>,
}

/// One delivery of a message to one destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Its identity and position in its queue.
    pub seq: i64,
    /// The destination queue (`channel/destination`).
    pub destination: String,
    #[schema(schema_with = delivery_states)]
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// For `retrying`: not before this time.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// The last error a worker reported (no PHI).
    pub last_error: Option<String>,
    /// The destination's last answer (its ACK, or an HTTP error body).
    pub last_ack: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            seq: d.seq.0,
            destination: d.destination.clone(),
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            last_error: d.last_error.clone(),
            last_ack: d.last_ack.as_deref().map(text),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// Everything about one message, PHI masked unless revealed (`?reveal=true`). Reading it is
/// audited.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    pub message: MessageSummaryView,
    /// True when the patient's fields are replaced by `***` in `raw`, `outbound`, `ack`,
    /// `parsed`, `fhir` and each delivery's `last_ack` (the default); false when revealed.
    pub masked: bool,
    /// The message as received (`null` once retention purged it).
    pub raw: Option<String>,
    /// The bytes destinations receive, when the channel's transforms changed the message.
    pub outbound: Option<String>,
    /// The acknowledgement the sender was answered.
    pub ack: Option<String>,
    /// The message as segments and named fields (`null` when it does not parse).
    pub parsed: Option<ParsedMessage>,
    /// Why the message does not parse.
    pub parse_error: Option<String>,
    /// The FHIR R4 transaction bundle of the message, when its channel converts to FHIR.
    #[schema(value_type = Option<Object>)]
    pub fhir: Option<serde_json::Value>,
    /// Why the conversion to FHIR failed.
    pub fhir_error: Option<String>,
    /// Every delivery, oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// Options of `GET /api/messages/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    /// Show the patient's fields unmasked. Needs the operator or admin role; the read is
    /// audited as a PHI read (its audit record has the query `reveal=true`).
    pub reveal: Option<bool>,
}

/// What a reprocess did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReprocessOutcome {
    pub message_id: i64,
    /// The message's state after running through the channel again.
    #[schema(schema_with = message_states)]
    pub state: String,
    /// Queues it was appended to.
    pub queues: Vec<String>,
    /// Why it was not routed (the refusal, the transform's error, the filter or hold); absent when
    /// it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which destination to send a message to again.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendRequest {
    /// A destination of the message's channel (`lab`), or its queue (`adt/lab`).
    pub destination: String,
}

/// What a resend did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResendOutcome {
    pub message_id: i64,
    /// The queue it was appended to.
    pub destination: String,
    /// The new delivery.
    pub seq: i64,
}

/// An edited copy of a stored message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResubmitRequest {
    /// The whole message as HL7 v2 text; segments end with CR, LF or CRLF (stored with CR).
    pub message: String,
}

/// What a resubmit did: the edited copy is a new message, the original is left as it was.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResubmitOutcome {
    /// The new message.
    pub message_id: i64,
    /// The message it is an edited copy of.
    pub edited_from: i64,
    /// MSA-1 of the channel's answer to the copy, as a sender would have got it (`AA`, `AE`, `AR`).
    pub ack_code: String,
    /// The copy's state (`accepted` when routed, `filtered`, `held`, `rejected`, `error`).
    #[schema(schema_with = message_states)]
    pub state: String,
}

/// Bytes as text for display (invalid UTF-8 replaced).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn message_id(path: Result<Path<i64>, PathRejection>) -> ApiResult<MessageId> {
    path.map(|Path(id)| MessageId(id))
        .map_err(|_| ApiError::bad_request("the message id must be a whole number"))
}

/// Search messages.
///
/// Summaries (no payloads) of the stored messages matching every given criterion, newest first.
#[utoipa::path(
    get,
    path = "/api/messages",
    tag = "messages",
    params(MessageQuery),
    responses(
        (status = 200, description = "One page of matching messages", body = MessageList),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn search(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    RawQuery(raw_query): RawQuery,
    query: Result<Query<MessageQuery>, QueryRejection>,
) -> ApiResult<Json<MessageList>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let Query(q) = query.map_err(bad_query)?;
        let states = || {
            MessageState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let message_state = q
            .state
            .as_deref()
            .map(|s| {
                MessageState::parse(s).ok_or_else(|| {
                    ApiError::bad_request(format!("state: expected one of {}", states()))
                })
            })
            .transpose()?;
        let from = q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?;
        let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
        let limit = q.limit.unwrap_or(DEFAULT_MESSAGES).clamp(1, MAX_PAGE_LEN);
        let offset = q.offset.unwrap_or(0);
        // Identifiers are indexed with their authority; a bare `12345` would match nothing,
        // and an empty page would read as "no messages for this patient".
        if q.patient.as_deref().is_some_and(|p| !p.contains('^')) {
            return Err(ApiError::bad_request(
                "patient: expected `id^authority` as PID-3 holds it (PID-3.1 and PID-3.4.1, \
                 e.g. `12345^HOSP`), or `12345^` for an identifier sent without an authority",
            ));
        }
        let by_patient = q.patient.is_some();
        let filter = SearchFilter {
            channel: q.channel,
            message_type: q.message_type,
            state: message_state,
            control_id: q.control_id,
            sending_application: q.sending_application,
            sending_facility: q.sending_facility,
            patient_id: q.patient,
            received_from: from,
            received_before: to,
            limit,
            offset,
        };
        let work = async {
            let found = state.store.search(filter).await?;
            let full = found.len() as u64 == u64::from(limit);
            Ok(MessageList {
                messages: found.iter().map(MessageSummaryView::from).collect(),
                limit,
                offset,
                next_offset: full.then(|| offset + u64::from(limit)),
            })
        };
        // Which messages a patient has is PHI: such a search is audited, query included
        // (the audit log seals it).
        let list = if by_patient {
            audited(
                &state,
                &who,
                AuditAction::Search,
                "Message".into(),
                raw_query,
                peer.text(),
                work,
            )
            .await?
        } else {
            work.await?
        };
        Ok(Json(list))
    })
    .await
}

/// Show a message.
///
/// The summary, the raw v2 text, its parsed view with field names, the FHIR bundle when its
/// channel converts to FHIR, the ACK sent, and every delivery with its attempts, last error
/// and last answer. The patient's fields are masked (`***`) unless `reveal=true` is asked by
/// an operator or admin. Every read is recorded in the audit log.
#[utoipa::path(
    get,
    path = "/api/messages/{id}",
    tag = "messages",
    params(("id" = i64, Path, description = "The message id"), DetailQuery),
    responses(
        (status = 200, description = "The message", body = MessageDetail),
        (status = 400, description = "The id is not a number, or `reveal` not a boolean", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role, or `reveal=true` without the operator role", body = ErrorBody),
        (status = 404, description = "No such message", body = ErrorBody),
    ),
)]
pub(super) async fn detail(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> ApiResult<Json<MessageDetail>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let id = message_id(path)?;
        let Query(q) = query.map_err(bad_query)?;
        let reveal = q.reveal.unwrap_or(false);
        if reveal {
            who.require_role(Role::Operator).map_err(|_| {
                ApiError::forbidden(
                    "reveal=true shows PHI and needs the operator or admin role; \
                     without it the patient's fields are masked",
                )
            })?;
        }
        let entity = format!("Message/{id}");
        let work = async {
            let stored = state
                .store
                .message(id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("message {id} is not stored")))?;
            let deliveries = state.store.deliveries(id).await?;
            let (parsed_view, parse_error) = match stored.raw.as_deref().map(hl7v2::parse) {
                Some(Ok(msg)) => (Some(parsed(&msg)), None),
                Some(Err(e)) => (None, Some(e.to_string())),
                None => (None, None),
            };
            let (fhir, fhir_error) = fhir_of(&state, &stored).await;
            let detail = MessageDetail {
                message: MessageSummaryView::from(&stored.summary),
                masked: false,
                raw: stored.raw.as_deref().map(text),
                outbound: stored.outbound.as_deref().map(text),
                ack: stored.ack.as_deref().map(text),
                parsed: parsed_view,
                parse_error,
                fhir,
                fhir_error,
                deliveries: deliveries.iter().map(DeliveryView::from).collect(),
            };
            Ok(if reveal { detail } else { masked(detail) })
        };
        // A revealed read is the PHI read: its record says so in the query.
        let detail = audited(
            &state,
            &who,
            AuditAction::Read,
            entity,
            reveal.then(|| "reveal=true".to_owned()),
            peer.text(),
            work,
        )
        .await?;
        Ok(Json(detail))
    })
    .await
}

/// `detail` with the patient's fields masked everywhere they appear ([`super::mask`]).
fn masked(mut detail: MessageDetail) -> MessageDetail {
    let secrets = detail.parsed.as_mut().map(mask::parsed).unwrap_or_default();
    for text in [&mut detail.raw, &mut detail.outbound, &mut detail.ack]
        .into_iter()
        .flatten()
    {
        *text = mask::raw(text);
    }
    for d in &mut detail.deliveries {
        if let Some(ack) = &mut d.last_ack {
            *ack = mask::raw(ack);
        }
    }
    if let Some(bundle) = &mut detail.fhir {
        mask::fhir(bundle, &secrets);
    }
    detail.masked = true;
    detail
}

/// The FHIR bundle of a stored message, when its channel converts to FHIR: converted again
/// from the stored bytes (after the channel's transforms), as `format = "fhir"` destinations
/// do. Conversion is CPU work on a possibly large message: off the async workers.
async fn fhir_of(
    state: &AppState,
    stored: &causeway_store::StoredMessage,
) -> (Option<serde_json::Value>, Option<String>) {
    let Some(c) = state.channels.get(&stored.summary.channel) else {
        return (None, None);
    };
    // A write-back channel's messages were made from FHIR: there is nothing to convert back.
    let (Some(conversion), None) = (c.fhir.get(), &c.write_back) else {
        return (None, None);
    };
    let Some(payload) = stored.outbound.clone().or_else(|| stored.raw.clone()) else {
        return (None, None);
    };
    let converted: Result<Vec<u8>, String> =
        tokio::task::spawn_blocking(move || conversion.bundle_json(&payload))
            .await
            .unwrap_or_else(|e| Err(format!("conversion task failed: {e}")));
    match converted.and_then(|json| {
        serde_json::from_slice(&json).map_err(|e| format!("bundle JSON does not read back: {e}"))
    }) {
        Ok(bundle) => (Some(bundle), None),
        Err(e) => (None, Some(e)),
    }
}

/// Reprocess a message.
///
/// Runs the stored message through its channel again (accept rules, filters, transforms and
/// FHIR conversion as they are configured now) and queues it to the channel's destinations when
/// it is routed. The sender is not answered again.
#[utoipa::path(
    post,
    path = "/api/messages/{id}/reprocess",
    tag = "messages",
    params(("id" = i64, Path, description = "The message id")),
    responses(
        (status = 200, description = "Reprocessed", body = ReprocessOutcome),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such message, or its channel is not running here", body = ErrorBody),
        (status = 409, description = "The payload was purged by retention", body = ErrorBody),
    ),
)]
pub(super) async fn reprocess(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    path: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<ReprocessOutcome>> {
    api(async {
        who.require_role(Role::Operator)?;
        let id = message_id(path)?;
        let work = async {
            let summary = summary_of(&state, id).await?;
            let c = channel(&state, &summary.channel)?;
            let done = c.reprocess(id).await.map_err(|e| match e {
                ReprocessError::NotFound(_) => ApiError::not_found(e.to_string()),
                ReprocessError::Store(e) => store_error(e),
                ReprocessError::Purged(_) | ReprocessError::OtherChannel(..) => {
                    ApiError::conflict(e.to_string())
                }
            })?;
            tracing::info!(id = %id, channel = %c.name, state = %done.state, user = %who.subject, "message reprocessed");
            Ok(ReprocessOutcome {
                message_id: id.0,
                state: done.state.as_str().to_owned(),
                queues: done.queues,
                reason: done.reason,
            })
        };
        let entity = format!("Message/{id}/$reprocess");
        let done = audited(
            &state,
            &who,
            AuditAction::Operation,
            entity,
            None,
            peer.text(),
            work,
        )
        .await?;
        Ok(Json(done))
    })
    .await
}

/// The metadata of a message, or 404. (The store reads a message by id with its payload;
/// the callers act on the payload anyway.)
async fn summary_of(state: &AppState, id: MessageId) -> ApiResult<MessageSummary> {
    state
        .store
        .message(id)
        .await?
        .map(|m| m.summary)
        .ok_or_else(|| ApiError::not_found(format!("message {id} is not stored")))
}

/// Send a message again.
///
/// Appends a new delivery of the stored message to the tail of one destination's queue (from
/// the error queue, or to deliver it once more). Refused while it is still pending there.
#[utoipa::path(
    post,
    path = "/api/messages/{id}/resend",
    tag = "messages",
    params(("id" = i64, Path, description = "The message id")),
    request_body = ResendRequest,
    responses(
        (status = 200, description = "Queued again", body = ResendOutcome),
        (status = 400, description = "The id or the body is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such message or destination", body = ErrorBody),
        (status = 409, description = "Still pending there, or the payload was purged", body = ErrorBody),
    ),
)]
pub(super) async fn resend(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<ResendRequest>, JsonRejection>,
) -> ApiResult<Json<ResendOutcome>> {
    api(async {
        who.require_role(Role::Operator)?;
        let id = message_id(path)?;
        let Json(request) = body.map_err(|e| {
            ApiError::bad_request(format!(
                "expected a JSON body {{\"destination\": \"...\"}}: {}",
                e.body_text()
            ))
        })?;
        let work = async {
            let summary = summary_of(&state, id).await?;
            let running = state.channels.get(&summary.channel);
            let past: Vec<String> = state
                .store
                .deliveries(id)
                .await?
                .into_iter()
                .map(|d| d.destination)
                .collect();
            let wanted = &request.destination;
            let qualified = causeway_engine::runtime::queue_name(&summary.channel, wanted);
            let known = |q: &str| {
                running.is_some_and(|c| c.queues.iter().any(|k| k == q))
                    || past.iter().any(|p| p == q)
            };
            let queue = [qualified.as_str(), wanted.as_str()]
                .into_iter()
                .find(|q| known(q))
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "channel {:?} has no destination {wanted:?}",
                        summary.channel
                    ))
                })?
                .to_owned();
            let seq = state.store.requeue(id, &queue).await.map_err(store_error)?;
            if let Some(c) = running {
                c.wake.notify_waiters();
            }
            tracing::info!(id = %id, queue = %queue, seq = %seq, user = %who.subject, "message queued again");
            Ok(ResendOutcome {
                message_id: id.0,
                destination: queue,
                seq: seq.0,
            })
        };
        let entity = format!("Message/{id}/$resend");
        let done = audited(
            &state,
            &who,
            AuditAction::Operation,
            entity,
            None,
            peer.text(),
            work,
        )
        .await?;
        Ok(Json(done))
    })
    .await
}

/// Edit and resubmit a message.
///
/// Takes an edited copy of a stored message (a wrong code fixed, a missing field filled) and
/// runs it through the original's channel as a new message, as if its sender had sent it: the
/// same accept rules, filters, transforms and queues, and the answer it would have got. The
/// original is not changed; both carry an event naming the other, and the copy's peer names
/// the user and the original.
#[utoipa::path(
    post,
    path = "/api/messages/{id}/resubmit",
    tag = "messages",
    params(("id" = i64, Path, description = "The message id")),
    request_body = ResubmitRequest,
    responses(
        (status = 200, description = "The copy was stored and answered", body = ResubmitOutcome),
        (status = 400, description = "The id or the body is malformed, or the copy does not parse as HL7 v2", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such message, or its channel is not running here", body = ErrorBody),
        (status = 409, description = "The channel is stopped, or the copy is the original unchanged", body = ErrorBody),
    ),
)]
pub(super) async fn resubmit(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<ResubmitRequest>, JsonRejection>,
) -> ApiResult<Json<ResubmitOutcome>> {
    api(async {
        who.require_role(Role::Operator)?;
        let id = message_id(path)?;
        let Json(request) = body.map_err(|e| {
            ApiError::bad_request(format!(
                "expected a JSON body {{\"message\": \"MSH|...\"}}: {}",
                e.body_text()
            ))
        })?;
        let edited = segments_with_cr(&request.message);
        if let Err(e) = hl7v2::parse(&edited) {
            return Err(ApiError::bad_request(format!(
                "the edited message does not parse: {e}"
            )));
        }
        let work = async {
            let original = state
                .store
                .message(id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("message {id} is not stored")))?;
            let c = channel(&state, &original.summary.channel)?;
            // Unchanged, whatever line ends the original came with.
            let unchanged = original
                .raw
                .as_deref()
                .is_some_and(|raw| segments_with_cr(&String::from_utf8_lossy(raw)) == edited);
            if unchanged {
                return Err(ApiError::conflict(format!(
                    "the edited message is message {id} unchanged: reprocess it instead"
                )));
            }
            if !c.is_running() {
                return Err(ApiError::conflict(format!(
                    "channel {:?} is stopped",
                    c.name
                )));
            }
            let reply = c
                .ingest(&edited, &format!("api:{} (edit of message {id})", who.subject))
                .await;
            let Some(copy) = reply.message_id else {
                return Err(ApiError::internal(format!(
                    "the edited copy of message {id} could not be stored"
                )));
            };
            let copy_state = state
                .store
                .message(copy)
                .await?
                .map(|m| m.summary.state)
                .unwrap_or(MessageState::Received);
            for (message, detail) in [
                (copy, format!("edited copy of message {id}, resubmitted by {}", who.subject)),
                (id, format!("resubmitted after an edit as message {copy} by {}", who.subject)),
            ] {
                state
                    .store
                    .add_event(NewEvent {
                        channel: c.name.clone(),
                        destination: None,
                        message_id: Some(message),
                        kind: EventKind::Note,
                        detail,
                    })
                    .await?;
            }
            tracing::info!(id = %id, copy = %copy, channel = %c.name, ack = reply.code.as_str(), user = %who.subject, "edited message resubmitted");
            Ok(ResubmitOutcome {
                message_id: copy.0,
                edited_from: id.0,
                ack_code: reply.code.as_str().to_owned(),
                state: copy_state.as_str().to_owned(),
            })
        };
        let entity = format!("Message/{id}/$resubmit");
        let done = audited(
            &state,
            &who,
            AuditAction::Operation,
            entity,
            None,
            peer.text(),
            work,
        )
        .await?;
        Ok(Json(done))
    })
    .await
}

/// HL7 v2 text with every segment ending in CR: an edit made in a browser or a file has LF or
/// CRLF line ends, and blank lines at the end.
fn segments_with_cr(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\r');
    }
    out
}

#[cfg(test)]
mod resubmit_tests {
    use super::segments_with_cr;

    #[test]
    fn any_line_ends_become_cr_and_blank_lines_go() {
        let want = b"MSH|^~\\&|A\rPID|1\r".to_vec();
        for text in [
            "MSH|^~\\&|A\rPID|1\r",
            "MSH|^~\\&|A\nPID|1\n",
            "MSH|^~\\&|A\r\nPID|1\r\n\r\n",
            "MSH|^~\\&|A\n\nPID|1",
        ] {
            assert_eq!(segments_with_cr(text), want, "{text:?}");
        }
    }
}
