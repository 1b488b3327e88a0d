//! `GET /api/errors` (the error queue of each destination), `POST /api/errors/retry` (send one
//! again) and `GET /api/unmapped` (the coded values no code map knew, aggregated from the
//! `unmapped_code` events).
//!
//! Neither answers PHI: error texts, header fields and code values are what the store and the
//! engine already keep in clear (a code is vocabulary, not patient data).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use causeway_store::error_queue::{MAX_RETRY, RetryRefused, retry_error_queue};
use causeway_store::{EventFilter, EventKind, FailedDelivery, MAX_PAGE_LEN, UnixMillis};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, api, audited, bad_query, parse_time, rfc3339};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, ApiResult};

/// Entries per error queue when `limit` is not given.
pub const DEFAULT_ERRORS: u32 = 50;

/// Most `unmapped_code` events one `GET /api/unmapped` reads (in pages of
/// [`MAX_PAGE_LEN`]); past it the answer says `truncated`. A hundred thousand events cover
/// months of a busy interface with a few unmapped codes a day while bounding one request to
/// well under a second of reads; narrow with `since` or `channel` beyond that.
pub const MAX_UNMAPPED_SCAN: usize = 100_000;

/// Criteria of `GET /api/errors`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ErrorQuery {
    /// Only this channel's destinations.
    pub channel: Option<String>,
    /// Only this queue (`channel/destination`); it may belong to a channel this process does
    /// not run.
    pub queue: Option<String>,
    /// Entries per queue (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Entries to skip in each queue.
    pub offset: Option<u64>,
}

/// The error queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorQueues {
    pub queues: Vec<ErrorQueueView>,
}

/// One destination's error queue: deliveries that failed for good and were not sent again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorQueueView {
    /// The queue (`channel/destination`).
    pub queue: String,
    /// Its channel, when this process runs it.
    pub channel: Option<String>,
    /// Entries in all (pages together).
    pub total: u64,
    /// This page, most recently queued first.
    pub entries: Vec<FailedEntry>,
}

/// A failed delivery with its message's header (no payload, no PHI).
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedEntry {
    /// The delivery.
    pub seq: i64,
    pub message_id: i64,
    /// MSH-10.
    pub control_id: String,
    /// MSH-9.
    pub message_type: String,
    /// MSH-3.
    pub sending_application: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed (no PHI).
    pub last_error: Option<String>,
    /// When it failed.
    #[schema(format = DateTime)]
    pub failed_at: String,
}

impl From<&FailedDelivery> for FailedEntry {
    fn from(f: &FailedDelivery) -> Self {
        let (d, m) = (&f.delivery, &f.message);
        Self {
            seq: d.seq.0,
            message_id: m.id.0,
            control_id: m.header.control_id.clone(),
            message_type: m.header.message_type.clone(),
            sending_application: m.header.sending_app.clone(),
            received_at: rfc3339(m.received_at),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            failed_at: rfc3339(d.updated_at),
        }
    }
}

/// List error queues.
///
/// For each destination of the channels this process runs (or the one `queue` asked for), its
/// failed deliveries: those that failed for good and were not sent again since. Resend one
/// with `POST /api/messages/{id}/resend`, the whole queue with `POST /api/errors/retry`.
#[utoipa::path(
    get,
    path = "/api/errors",
    tag = "queues",
    params(ErrorQuery),
    responses(
        (status = 200, description = "The error queues", body = ErrorQueues),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn errors(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<ErrorQuery>, QueryRejection>,
) -> ApiResult<Json<ErrorQueues>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let Query(q) = query.map_err(bad_query)?;
        let limit = q.limit.unwrap_or(DEFAULT_ERRORS).clamp(1, MAX_PAGE_LEN);
        let offset = q.offset.unwrap_or(0);
        let mut targets: Vec<(String, Option<String>)> = state
            .channels
            .values()
            .filter(|c| q.channel.as_ref().is_none_or(|name| *name == c.name))
            .flat_map(|c| {
                c.queues
                    .iter()
                    .map(|queue| (queue.clone(), Some(c.name.clone())))
            })
            .filter(|(queue, _)| q.queue.as_ref().is_none_or(|wanted| wanted == queue))
            .collect();
        if let (Some(queue), true) = (&q.queue, targets.is_empty()) {
            targets.push((queue.clone(), None));
        }
        let mut queues = Vec::with_capacity(targets.len());
        for (queue, channel) in targets {
            let page = state.store.error_queue(&queue, limit, offset).await?;
            queues.push(ErrorQueueView {
                queue,
                channel,
                total: page.total,
                entries: page.entries.iter().map(FailedEntry::from).collect(),
            });
        }
        Ok(Json(ErrorQueues { queues }))
    })
    .await
}

/// What `POST /api/errors/retry` sends again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// The error queue (`channel/destination`).
    pub queue: String,
    /// Only these entries (the `seq` of each, from `GET /api/errors`); every entry when absent.
    pub seqs: Option<Vec<i64>>,
}

/// What a retry did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryOutcome {
    pub queue: String,
    /// The messages queued again, in the order they will be sent (oldest failure first, as
    /// they were first queued), with their new deliveries.
    pub requeued: Vec<Requeued>,
    /// Entries that could not be queued again, and why (still pending there, payload purged).
    pub skipped: Vec<Skipped>,
    /// Entries still in the error queue past the 10 000 one request takes; send it again for them.
    pub remaining: u64,
}

/// One message queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    pub message_id: i64,
    /// The failed delivery it replaces.
    pub failed_seq: i64,
    /// The new delivery.
    pub seq: i64,
}

/// An entry left in the error queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub message_id: i64,
    pub seq: i64,
    /// Why (no PHI).
    pub reason: String,
}

/// Send an error queue again.
///
/// Appends a new delivery of each message in one destination's error queue (or of the entries
/// `seqs` names) to the tail of that queue, in the order the messages were first queued, so a
/// receiver that needs order gets them in order. Use it once the cause is fixed (the receiver
/// is back, its table has the code). The failed deliveries stay as history.
#[utoipa::path(
    post,
    path = "/api/errors/retry",
    tag = "queues",
    request_body = RetryRequest,
    responses(
        (status = 200, description = "Queued again", body = RetryOutcome),
        (status = 400, description = "The body is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such queue, or a seq not in its error queue", body = ErrorBody),
    ),
)]
pub(super) async fn retry(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    body: Result<Json<RetryRequest>, JsonRejection>,
) -> ApiResult<Json<RetryOutcome>> {
    api(async {
        who.require_role(Role::Operator)?;
        let Json(request) = body.map_err(|e| {
            ApiError::bad_request(format!(
                "expected a JSON body {{\"queue\": \"channel/destination\", \"seqs\": [...]}}: {}",
                e.body_text()
            ))
        })?;
        let queue = request.queue.clone();
        let work = async {
            let running = state
                .channels
                .values()
                .find(|c| c.queues.contains(&request.queue));
            let done = match retry_error_queue(
                state.store.as_ref(),
                &request.queue,
                request.seqs.as_deref(),
            )
            .await?
            {
                Ok(done) => done,
                Err(RetryRefused::TooMany) => {
                    return Err(ApiError::bad_request(format!(
                        "at most {MAX_RETRY} seqs in one request"
                    )));
                }
                Err(RetryRefused::NotInQueue(seq)) => {
                    return Err(ApiError::not_found(format!(
                        "delivery {seq} is not in the error queue of {:?}",
                        request.queue
                    )));
                }
            };
            if running.is_none() && done.total == 0 {
                return Err(ApiError::not_found(format!(
                    "no destination queue {:?} runs here and it has no error queue",
                    request.queue
                )));
            }
            let requeued: Vec<Requeued> = done
                .requeued
                .into_iter()
                .map(|r| Requeued {
                    message_id: r.message_id,
                    failed_seq: r.failed_seq,
                    seq: r.seq,
                })
                .collect();
            let skipped: Vec<Skipped> = done
                .skipped
                .into_iter()
                .map(|k| Skipped {
                    message_id: k.message_id,
                    seq: k.seq,
                    reason: k.reason,
                })
                .collect();
            let remaining = done.remaining;
            if let Some(c) = running {
                c.wake.notify_waiters();
            }
            tracing::info!(queue = %request.queue, requeued = requeued.len(), skipped = skipped.len(), user = %who.subject, "error queue sent again");
            Ok(RetryOutcome {
                queue: request.queue.clone(),
                requeued,
                skipped,
                remaining,
            })
        };
        let done = audited(
            &state,
            &who,
            AuditAction::Operation,
            format!("Queue/{queue}/$retry"),
            None,
            peer.text(),
            work,
        )
        .await?;
        Ok(Json(done))
    })
    .await
}

/// Criteria of `GET /api/unmapped`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnmappedQuery {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only values seen at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
}

/// Unmapped code values.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmappedCodes {
    /// Most frequent first.
    pub codes: Vec<UnmappedCode>,
    /// Events read to build this.
    pub events_scanned: u64,
    /// More events matched than one request reads (narrow with `since` or `channel`).
    pub truncated: bool,
}

/// One code value no code map of its sender knew, with how often it came.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnmappedCode {
    pub channel: String,
    /// The sender as `MSH-3/MSH-4`.
    pub sender: Option<String>,
    /// The code map that did not know the value.
    pub map: Option<String>,
    /// Where the value was, e.g. `OBX-5`.
    pub field: Option<String>,
    /// The code system the sender named, if any.
    pub system: Option<String>,
    /// The value.
    pub code: Option<String>,
    /// `reject` when the map refused the message (answered AE); absent for `pass` and `hold`.
    pub policy: Option<String>,
    /// Events recording this value.
    pub count: u64,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// The newest message that carried it (reprocess it once the map is fixed).
    pub last_message_id: Option<i64>,
    /// The event text, when it is not in a form this server reads.
    pub detail: Option<String>,
}

/// The fields of an `unmapped_code` event's detail, as the engine writes them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
struct Unmapped {
    sender: Option<String>,
    map: Option<String>,
    field: Option<String>,
    system: Option<String>,
    code: Option<String>,
    policy: Option<String>,
    /// The whole detail, when it did not read.
    detail: Option<String>,
}

/// Reads the engine's two forms:
/// `sender=S map=M field=F system=Y code=C` (pass and hold policies) and
/// ``sender=S policy=reject F: code `C` (system `Y`) is not in code map `M` `` (reject).
fn read_detail(detail: &str) -> Unmapped {
    read_known(detail).unwrap_or_else(|| Unmapped {
        detail: Some(detail.to_owned()),
        ..Unmapped::default()
    })
}

fn read_known(detail: &str) -> Option<Unmapped> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let rest = detail.strip_prefix("sender=")?;
    if let Some((sender, tail)) = rest.split_once(" policy=reject ") {
        let (field, tail) = tail.split_once(": code `")?;
        let (code, tail) = tail.split_once('`')?;
        let (system, tail) = match tail.strip_prefix(" (system `") {
            Some(t) => {
                let (system, t) = t.split_once("`)")?;
                (some(system), t)
            }
            None => (None, tail),
        };
        let map = tail
            .strip_prefix(" is not in code map `")?
            .strip_suffix('`')?;
        return Some(Unmapped {
            sender: some(sender),
            map: some(map),
            field: some(field),
            system,
            code: Some(code.to_owned()),
            policy: Some("reject".into()),
            detail: None,
        });
    }
    let (sender, rest) = rest.split_once(" map=")?;
    let (map, rest) = rest.split_once(" field=")?;
    let (field, rest) = rest.split_once(" system=")?;
    let (system, code) = rest.split_once(" code=")?;
    Some(Unmapped {
        sender: some(sender),
        map: some(map),
        field: some(field),
        system: some(system),
        code: Some(code.to_owned()),
        policy: None,
        detail: None,
    })
}

struct Tally {
    count: u64,
    first: UnixMillis,
    last: UnixMillis,
    last_message: Option<i64>,
}

/// List unmapped code values.
///
/// The coded values no code map of their sender knew, per channel, sender, map, field,
/// code system and value, with how often and when they came, most frequent first. Built from
/// the `unmapped_code` events.
#[utoipa::path(
    get,
    path = "/api/unmapped",
    tag = "queues",
    params(UnmappedQuery),
    responses(
        (status = 200, description = "The unmapped values", body = UnmappedCodes),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn unmapped(
    State(state): State<AppState>,
    who: Principal,
    query: Result<Query<UnmappedQuery>, QueryRejection>,
) -> ApiResult<Json<UnmappedCodes>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let Query(q) = query.map_err(bad_query)?;
        let since = q
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?;
        let mut tallies: HashMap<(String, Unmapped), Tally> = HashMap::new();
        let mut after = None;
        let mut scanned = 0usize;
        let mut truncated = false;
        loop {
            let page = state
                .store
                .events(EventFilter {
                    channel: q.channel.clone(),
                    kind: Some(EventKind::UnmappedCode),
                    since,
                    after,
                    limit: MAX_PAGE_LEN,
                    ..EventFilter::default()
                })
                .await?;
            for e in &page {
                let t = tallies
                    .entry((e.channel.clone(), read_detail(&e.detail)))
                    .or_insert(Tally {
                        count: 0,
                        first: e.at,
                        last: e.at,
                        last_message: None,
                    });
                t.count += 1;
                t.first = t.first.min(e.at);
                if e.at >= t.last {
                    t.last = e.at;
                    t.last_message = e.message_id.map(|m| m.0).or(t.last_message);
                }
            }
            scanned += page.len();
            match page.last() {
                Some(last) if page.len() == MAX_PAGE_LEN as usize => {
                    if scanned >= MAX_UNMAPPED_SCAN {
                        truncated = true;
                        break;
                    }
                    after = Some(last.id);
                }
                _ => break,
            }
        }
        let mut codes: Vec<UnmappedCode> = tallies
            .into_iter()
            .map(|((channel, u), t)| UnmappedCode {
                channel,
                sender: u.sender,
                map: u.map,
                field: u.field,
                system: u.system,
                code: u.code,
                policy: u.policy,
                count: t.count,
                first_seen: rfc3339(t.first),
                last_seen: rfc3339(t.last),
                last_message_id: t.last_message,
                detail: u.detail,
            })
            .collect();
        codes.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| b.last_seen.cmp(&a.last_seen))
                .then_with(|| a.channel.cmp(&b.channel))
                .then_with(|| a.code.cmp(&b.code))
        });
        Ok(Json(UnmappedCodes {
            codes,
            events_scanned: scanned as u64,
            truncated,
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_detail_forms_read() {
        let pass =
            read_detail("sender=LAB/CLINIC P map=smoking-status field=OBX-5 system=L code=9 x");
        assert_eq!(
            pass,
            Unmapped {
                sender: Some("LAB/CLINIC P".into()),
                map: Some("smoking-status".into()),
                field: Some("OBX-5".into()),
                system: Some("L".into()),
                code: Some("9 x".into()),
                ..Unmapped::default()
            }
        );
        let no_system = read_detail("sender=A/B map=m field=PID-8 system= code=U");
        assert_eq!(no_system.system, None);
        assert_eq!(no_system.code.as_deref(), Some("U"));

        let reject = read_detail(
            "sender=LAB/CLINIC_R policy=reject OBX-5: code `9` (system `L`) is not in code map `smoking-status`",
        );
        assert_eq!(
            reject,
            Unmapped {
                sender: Some("LAB/CLINIC_R".into()),
                map: Some("smoking-status".into()),
                field: Some("OBX-5".into()),
                system: Some("L".into()),
                code: Some("9".into()),
                policy: Some("reject".into()),
                detail: None,
            }
        );
        let reject_no_system =
            read_detail("sender=A/B policy=reject PID-8: code `Q` is not in code map `sex`");
        assert_eq!(reject_no_system.system, None);
        assert_eq!(reject_no_system.map.as_deref(), Some("sex"));

        let other = read_detail("something else entirely");
        assert_eq!(other.detail.as_deref(), Some("something else entirely"));
        assert_eq!(other.code, None);
    }
}
