//! Write-back: `POST /fhir/{type}` and `PUT /fhir/{type}/{id}` of ServiceRequest, Observation,
//! Patient, Appointment and Immunization become HL7 v2 messages to the EHR, and the EHR's
//! application ACK settles the call.
//!
//! # The loop
//!
//! ```text
//! client ─POST─> strict read ─> FHIR -> v2 (the channel's EHR profile) ─> channel.ingest_with
//!        (message + pending resource committed together) ─> the channel's one destination (EHR)
//!        EHR ACK ─> store settles the delivery: AA applies the resource in the same transaction,
//!                   AE/AR marks the write rejected (nothing stored)
//! Prefer: respond-sync ─> wait for that: 201 / 422 with the ERR text / 202 after sync_timeout
//! otherwise            ─> 202 at once, Content-Location: /fhir/_write/{message id}
//! ```
//!
//! The resource is stored only once the EHR accepted it; a crash anywhere leaves the write
//! pending in the store, and the destination's queue finishes it after restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use causeway_engine::destinations::fhir_store::resource_put;
use causeway_engine::runtime::channel::Channel;
use causeway_store::{DeliveryState, MessageId, PendingState, UnixMillis};
use hl7v2::AckCode;
use serde_json::Value;
use v2fhir::fhir_to_v2::{self, Hd, OrderStructure, Resolve, WriteOptions};

use super::{fhir_response, instant, render, status_of};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult, IssueCode, operation_outcome};

/// Largest resource body accepted.
///
/// A ServiceRequest or Patient is a few KiB; an Observation with an attachment may be large,
/// but the EHR's MLLP frame limit (16 MiB by default) is the real bound.
pub const MAX_WRITE_BODY: usize = 8 * 1024 * 1024;

/// How often a waiting `respond-sync` write looks at its delivery.
const SYNC_POLL: Duration = Duration::from_millis(20);

/// The channel that writes `resource_type` back, if any.
fn write_back_channel<'a>(state: &'a AppState, resource_type: &str) -> Option<&'a Arc<Channel>> {
    state.channels.values().find(|c| {
        c.write_back
            .as_ref()
            .is_some_and(|w| w.resources.iter().any(|r| r == resource_type))
    })
}

/// Unique MSH-10 values for the messages written (at most 20 characters, v2's ST length).
fn control_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
    format!("CWW{:x}{n:04x}", UnixMillis::now().0)
}

/// References to resources in our store, loaded for the v2 writer (a subject Patient, a
/// requester Practitioner...).
struct StoreRefs {
    found: HashMap<String, fhir::Resource>,
    /// Types referenced that the caller may not read: left unresolved, so that a write
    /// cannot read through its references. Named when the writer needed one of them.
    unreadable: Vec<String>,
}

impl Resolve for StoreRefs {
    fn resolve(&self, reference: &str) -> Option<&fhir::Resource> {
        let key = reference
            .rsplitn(3, '/')
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("/");
        self.found.get(&key).or_else(|| self.found.get(reference))
    }
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x.as_str()) {
                    ("reference", Some(r)) if fhir::search::is_relative_reference(r) => {
                        out.push(r.to_owned())
                    }
                    _ => references(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

async fn load_references(state: &AppState, who: &Principal, v: &Value) -> ApiResult<StoreRefs> {
    let mut refs = Vec::new();
    references(v, &mut refs);
    refs.sort();
    refs.dedup();
    let mut map = HashMap::new();
    let mut unreadable: Vec<String> = Vec::new();
    for r in refs.into_iter().take(64) {
        let Some((t, id)) = r.split_once('/') else {
            continue;
        };
        if who.require_fhir(t, Access::Read).is_err() {
            if !unreadable.iter().any(|u| u == t) {
                unreadable.push(t.to_owned());
            }
            continue;
        }
        if let Some(found) = state.store.resource(t, id, None).await?
            && !found.deleted
        {
            let json = render(&found)?;
            if let Ok(resource) = fhir::from_value::<fhir::Resource>(json) {
                map.insert(r, resource);
            }
        }
    }
    Ok(StoreRefs {
        found: map,
        unreadable,
    })
}

pub(crate) async fn create(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    write(state, who, peer, resource_type, None, headers, body).await
}

pub(crate) async fn update(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    write(state, who, peer, resource_type, Some(id), headers, body).await
}

/// `If-Match: W/"3"` -> 3.
fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or("");
    let digits = text.trim().trim_start_matches("W/").trim_matches('"');
    digits
        .parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("If-Match {text:?}: expected W/\"<version>\"")))
}

#[allow(clippy::too_many_arguments)]
async fn write(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    resource_type: String,
    id: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    super::check_type(&resource_type)?;
    who.require_fhir(&resource_type, Access::Write)?;
    let channel = write_back_channel(&state, &resource_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueCode::NotSupported,
            format!("{resource_type} is not written back: no fhir-api channel lists it"),
        )
    })?;
    let wb = channel
        .write_back
        .clone()
        .ok_or_else(|| ApiError::internal("write-back channel without settings"))?;
    let precondition = if_match(&headers)?;
    let entity = format!("{resource_type}/{}", id.as_deref().unwrap_or("(new)"));
    let sync = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split([',', ';']).any(|p| p.trim() == "respond-sync"));
    let work: ApiResult<Response> = async {
        // Strict reading: an unknown field is refused rather than dropped on the way to the EHR.
        let mut resource: fhir::Resource = fhir::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a valid {resource_type}: {e}")))?;
        let mut value = fhir::to_value(&resource).map_err(ApiError::internal)?;
        if value.get("resourceType").and_then(Value::as_str) != Some(resource_type.as_str()) {
            return Err(ApiError::bad_request(format!(
                "the body's resourceType must be {resource_type}"
            )));
        }
        let id = match &id {
            Some(id) => {
                if value.get("id").and_then(Value::as_str).is_some_and(|b| b != id) {
                    return Err(ApiError::bad_request(
                        "the body's id differs from the URL's",
                    ));
                }
                id.clone()
            }
            None => uuid::Uuid::now_v7().simple().to_string(),
        };
        if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(ApiError::bad_request("the id is not a FHIR id"));
        }
        value["id"] = Value::String(id.clone());
        resource = fhir::from_value(value.clone()).map_err(ApiError::internal)?;
        let current = state.store.resource(&resource_type, &id, None).await?;
        let live = current.as_ref().filter(|c| !c.deleted).map_or(0, |c| c.version);
        if let Some(expected) = precondition
            && expected != live
        {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                IssueCode::Conflict,
                format!("{resource_type}/{id} is at version {live}, not {expected}"),
            ));
        }

        let options = WriteOptions {
            sending_application: Hd::named(&wb.sending_application),
            sending_facility: hd(&wb.sending_facility),
            receiving_application: hd(&wb.receiving_application),
            receiving_facility: hd(&wb.receiving_facility),
            control_id: control_id(),
            timestamp: jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            version: wb.version.clone(),
            order_structure: if wb.order_message == "OML^O21" {
                OrderStructure::Oml
            } else {
                OrderStructure::Orm
            },
            event: match (resource_type.as_str(), live) {
                ("Patient", 0) => Some("A04".into()),
                _ => None,
            },
            ..WriteOptions::default()
        };
        let refs = load_references(&state, &who, &value).await?;
        let fallback = v2fhir::Profile::default();
        let conversion = channel.fhir.get();
        let profile = conversion
            .as_ref()
            .and_then(|f| f.profiles.first())
            .unwrap_or(&fallback);
        let message = fhir_to_v2::to_v2_with(&resource, &refs, &options, profile).map_err(|e| {
            let mut why = format!("cannot be written as HL7 v2: {e}");
            if !refs.unreadable.is_empty() {
                why.push_str(&format!(
                    " (the access token's scopes do not allow to read {}, which it references)",
                    refs.unreadable.join(", ")
                ));
            }
            ApiError::unprocessable(why)
        })?;
        let mut pending = resource_put(&resource_type, &id, value, None)
            .map_err(ApiError::internal)?;
        pending.if_match = precondition;
        let reply = channel
            .ingest_with(&message.encode(), &format!("api:{}", who.subject), Some(pending))
            .await;
        let message_id = match (reply.code, reply.message_id) {
            (AckCode::AA | AckCode::CA, Some(m)) => m,
            (AckCode::AE | AckCode::CE, _) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueCode::Transient,
                    "the write was not taken (its channel is stopped, or the store failed); try again",
                ));
            }
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "the channel {} refused the message made from this {resource_type}",
                    channel.name
                )));
            }
        };
        tracing::info!(channel = %channel.name, message = %message_id, resource_type, "write queued for the EHR");
        if sync {
            let deadline = tokio::time::Instant::now() + wb.sync_timeout;
            loop {
                if let Some(done) = settled(&state, message_id, Some(live == 0)).await? {
                    return Ok(done);
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(SYNC_POLL).await;
            }
        }
        Ok(accepted(&state, message_id, sync))
    }
    .await;
    let status = status_of(&work);
    let action = if id.is_some() {
        AuditAction::Update
    } else {
        AuditAction::Create
    };
    super::audit(&state, &who, action, entity, None, status, peer.text()).await?;
    work
}

fn hd(namespace: &str) -> Hd {
    if namespace.is_empty() {
        Hd::default()
    } else {
        Hd::named(namespace)
    }
}

/// 202 with the status URL.
fn accepted(state: &AppState, message: MessageId, waited: bool) -> Response {
    let text = if waited {
        "the EHR has not answered yet; poll the Content-Location for the outcome"
    } else {
        "queued for the EHR; poll the Content-Location for the outcome"
    };
    let mut r = fhir_response(
        StatusCode::ACCEPTED,
        &operation_outcome("information", IssueCode::Informational, text),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/_write/{}", state.fhir_base, message.0)) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

/// The final answer of a write, or `None` while the EHR has not settled it.
///
/// `created`: whether the write made the resource, as the caller saw it (201, else 200). An
/// update that changes nothing keeps the version it had, so without that (the status URL)
/// version 1 is taken for a creation.
async fn settled(
    state: &AppState,
    message: MessageId,
    created: Option<bool>,
) -> ApiResult<Option<Response>> {
    let Some(p) = state.store.pending_resource(message).await? else {
        return Err(ApiError::not_found(format!("write {message} is not known")));
    };
    match p.state {
        PendingState::Pending => Ok(None),
        PendingState::Applied => {
            let version = p.version.unwrap_or(1);
            let stored = state
                .store
                .resource(&p.resource_type, &p.id, Some(version))
                .await?
                .ok_or_else(|| ApiError::internal("an applied write has no stored version"))?;
            let status = if created.unwrap_or(version == 1) {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut r = fhir_response(status, &render(&stored)?);
            let h = r.headers_mut();
            let location = format!(
                "{}/{}/{}/_history/{version}",
                state.fhir_base, p.resource_type, p.id
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
                h.insert(header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&instant(stored.last_updated)) {
                h.insert("x-last-updated", v);
            }
            Ok(Some(r))
        }
        PendingState::Rejected => {
            let deliveries = state.store.deliveries(message).await?;
            let last = deliveries
                .iter()
                .rev()
                .find(|d| d.state == DeliveryState::Failed);
            let why = last
                .and_then(|d| d.last_ack.as_deref().and_then(ack_text))
                .or_else(|| last.and_then(|d| d.last_error.clone()))
                .unwrap_or_else(|| "the EHR did not accept the message".into());
            let body = operation_outcome("error", IssueCode::Processing, &why);
            Ok(Some(fhir_response(StatusCode::UNPROCESSABLE_ENTITY, &body)))
        }
    }
}

/// `AE: <the EHR's error text>` from an ACK: ERR-8 (user message), else ERR-3.2, else MSA-3.
pub fn ack_text(ack: &[u8]) -> Option<String> {
    let msg = hl7v2::parse(ack).ok()?;
    let code = msg.text("MSA-1")?.into_owned();
    let text = ["ERR-8", "ERR-3.2", "ERR-3.9", "MSA-3", "ERR-1.4.2"]
        .iter()
        .find_map(|p| {
            msg.text(p)
                .filter(|t| !t.is_empty())
                .map(|t| t.into_owned())
        });
    Some(match text {
        Some(t) => format!("{code}: {t}"),
        None => format!("{code} from the EHR (no error text)"),
    })
}

/// `GET /fhir/_write/{message}`: where an asynchronous write stands.
pub(crate) async fn status(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(message): Path<i64>,
) -> ApiResult<Response> {
    let p = state
        .store
        .pending_resource(MessageId(message))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("write {message} is not known")))?;
    who.require_fhir(&p.resource_type, Access::Read)?;
    let entity = format!("{}/{}", p.resource_type, p.id);
    let work = async {
        Ok(match settled(&state, MessageId(message), None).await? {
            Some(r) => r,
            None => {
                let mut r = accepted(&state, MessageId(message), true);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        })
    };
    let result: ApiResult<Response> = work.await;
    let status = status_of(&result);
    super::audit(
        &state,
        &who,
        AuditAction::Read,
        entity,
        None,
        status,
        peer.text(),
    )
    .await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ehr_error_text_comes_from_err_then_msa() {
        let ack = b"MSH|^~\\&|EHR|MAIN|CAUSEWAY||20240101||ACK^O01|A1|P|2.5.1\rMSA|AE|C1|ignored\rERR||ORC^1^2|207^Application internal error^HL70357|E||||Unknown ordering provider\r";
        assert_eq!(
            ack_text(ack).as_deref(),
            Some("AE: Unknown ordering provider")
        );
        let msa_only = b"MSH|^~\\&|EHR|MAIN|CAUSEWAY||20240101||ACK^O01|A1|P|2.5.1\rMSA|AR|C1|Patient unknown\r";
        assert_eq!(ack_text(msa_only).as_deref(), Some("AR: Patient unknown"));
        let bare = b"MSH|^~\\&|EHR|MAIN|CAUSEWAY||20240101||ACK^O01|A1|P|2.5.1\rMSA|AE|C1\r";
        assert_eq!(
            ack_text(bare).as_deref(),
            Some("AE from the EHR (no error text)")
        );
    }

    #[test]
    fn control_ids_fit_msh_10() {
        let a = control_id();
        let b = control_id();
        assert_ne!(a, b);
        assert!(a.len() <= 20, "{a}");
    }
}
