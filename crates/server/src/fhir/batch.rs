//! `POST /fhir` with a `batch` Bundle: each entry is run as the request it describes, through
//! the same routes, with the caller's credentials, and answered in a `batch-response` Bundle
//! in the same order.
//!
//! Because every entry is an ordinary request, each is authorised, audited, counted against
//! the request limit and (for writes) sent back to the EHR exactly as it would be on its own;
//! one entry failing does not stop the others. A `transaction` is refused: its entries go to EHRs as separate HL7 v2 messages, so
//! they cannot be made to succeed or fail together.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{FHIR_JSON, fhir_response};
use crate::AppState;
use crate::auth::{PeerAddr, Principal};
use crate::error::{ApiError, ApiResult, IssueCode};

/// Most entries one batch may hold: each runs as a request of its own, and a write waits for
/// its EHR's answer when `Prefer: respond-sync` is asked.
pub const MAX_BATCH_ENTRIES: usize = 100;

/// The request headers an entry's request carries over from the batch's own.
const CARRIED_HEADERS: [HeaderName; 3] = [header::COOKIE, header::AUTHORIZATION, header::ACCEPT];

pub(crate) async fn batch(
    State(state): State<AppState>,
    _who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let bundle: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let entries = batch_entries(&bundle)?;
    // The routes of `/fhir` as the server mounts them, request limit included: an entry is
    // charged as a request of its own, so a batch is no way around the limit.
    let router = axum::Router::new()
        .nest("/fhir", super::routes().merge(crate::audit::fhir_routes()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::limit_requests,
        ))
        .with_state(state.clone());
    let mut answers = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let answer = match entry_request(&state, entry, &headers, peer.0) {
            Ok(request) => {
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
                entry_answer(response).await
            }
            Err(e) => Ok(refused_entry(&e)),
        };
        answers.push(answer.unwrap_or_else(|e| {
            tracing::error!(entry = i, error = %e, "a batch entry's answer could not be read");
            refused_entry(&ApiError::internal(e))
        }));
    }
    Ok(fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": answers,
        }),
    ))
}

/// The entries of a `batch` Bundle, or why the Bundle is not one.
fn batch_entries(bundle: &Value) -> ApiResult<&[Value]> {
    if bundle["resourceType"] != "Bundle" {
        return Err(ApiError::bad_request(
            "POST /fhir takes a Bundle of type batch",
        ));
    }
    match bundle["type"].as_str() {
        Some("batch") => {}
        Some("transaction") => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueCode::NotSupported,
                "transaction Bundles are not offered: writes go back to the EHR as separate HL7 v2 \
                 messages, which cannot succeed or fail together; send a batch (each entry \
                 answered on its own)",
            ));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "POST /fhir takes a Bundle of type batch, not {}",
                other.map_or_else(|| "one without a type".to_owned(), |t| format!("{t:?}"))
            )));
        }
    }
    let entries = match &bundle["entry"] {
        Value::Null => &[][..],
        Value::Array(entries) => entries.as_slice(),
        _ => return Err(ApiError::bad_request("Bundle.entry must be an array")),
    };
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooCostly,
            format!(
                "a batch holds at most {MAX_BATCH_ENTRIES} entries; this one has {}",
                entries.len()
            ),
        ));
    }
    Ok(entries)
}

/// The HTTP request one entry describes (`request.method`, `request.url` relative to the FHIR
/// base or absolute under it, the conditional headers), with the batch's credentials.
fn entry_request(
    state: &AppState,
    entry: &Value,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> ApiResult<Request<Body>> {
    let request = &entry["request"];
    let method = match request["method"].as_str() {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        Some("DELETE") => Method::DELETE,
        Some("PATCH") => Method::PATCH,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "entry.request.method {other:?} is not an HTTP method FHIR uses"
            )));
        }
        None => return Err(ApiError::bad_request("entry.request.method is missing")),
    };
    let url = request["url"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("entry.request.url is missing"))?;
    let relative = url
        .strip_prefix(&*state.fhir_base)
        .unwrap_or(url)
        .trim_start_matches('/');
    if relative.contains("://") {
        return Err(ApiError::bad_request(format!(
            "entry.request.url {url:?} is not under this server's FHIR base {}",
            state.fhir_base
        )));
    }
    if relative.is_empty() || relative.starts_with('?') {
        return Err(ApiError::bad_request(
            "entry.request.url names no resource type (a batch cannot hold a batch)",
        ));
    }
    if request.get("ifNoneExist").is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueCode::NotSupported,
            "conditional create (entry.request.ifNoneExist) is not offered",
        ));
    }
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("/fhir/{relative}"));
    for name in CARRIED_HEADERS {
        for value in headers.get_all(&name) {
            builder = builder.header(&name, value);
        }
    }
    if let Some(prefer) = headers.get("prefer") {
        builder = builder.header("prefer", prefer);
    }
    for (element, name) in [
        ("ifMatch", header::IF_MATCH),
        ("ifNoneMatch", header::IF_NONE_MATCH),
        ("ifModifiedSince", header::IF_MODIFIED_SINCE),
    ] {
        if let Some(value) = request[element].as_str() {
            builder = builder.header(name, value);
        }
    }
    let body = match &entry["resource"] {
        Value::Null => Body::empty(),
        resource => {
            builder = builder.header(header::CONTENT_TYPE, FHIR_JSON);
            Body::from(resource.to_string())
        }
    };
    let mut request = builder.body(body).map_err(|e| {
        ApiError::bad_request(format!(
            "entry.request.url {url:?} is not a usable URL: {e}"
        ))
    })?;
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    Ok(request)
}

/// A `batch-response` entry from an entry's response: its status line, location, ETag and
/// last update, and the resource (or bundle) it returned, or its OperationOutcome.
async fn entry_answer(response: Response) -> Result<Value, String> {
    let status = response.status();
    let mut answer = json!({ "status": status_line(status) });
    for (element, value) in answer_headers(&response) {
        answer[element] = json!(value);
    }
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let returned: Option<Value> = serde_json::from_slice(&body).ok();
    let mut entry = json!({});
    match returned {
        Some(outcome) if outcome["resourceType"] == "OperationOutcome" && !status.is_success() => {
            answer["outcome"] = outcome;
        }
        Some(resource) if resource["resourceType"].is_string() => entry["resource"] = resource,
        _ => {}
    }
    entry["response"] = answer;
    Ok(entry)
}

/// `location` (or, for a write still waiting on its EHR, the status URL), `etag` and
/// `lastModified` of an entry's response, as `Bundle.entry.response` names them.
fn answer_headers(response: &Response) -> Vec<(&'static str, String)> {
    let text = |name: HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    [
        (
            "location",
            text(header::LOCATION).or_else(|| text(header::CONTENT_LOCATION)),
        ),
        ("etag", text(header::ETAG)),
        (
            "lastModified",
            text(header::LAST_MODIFIED).and_then(|d| fhir_instant(&d)),
        ),
    ]
    .into_iter()
    .filter_map(|(element, value)| Some((element, value?)))
    .collect()
}

/// The entry answer for one that could not be run (a server error's cause stays in the log).
fn refused_entry(e: &ApiError) -> Value {
    let diagnostics = if e.status.is_server_error() {
        "internal error; see the server log"
    } else {
        e.message.as_str()
    };
    json!({
        "response": {
            "status": status_line(e.status),
            "outcome": crate::error::operation_outcome("error", e.code, diagnostics),
        }
    })
}

/// `201 Created`, as `Bundle.entry.response.status` carries it.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An HTTP date (`Last-Modified`) as a FHIR instant.
fn fhir_instant(http_date: &str) -> Option<String> {
    let t = super::parse_http_date(http_date)?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batch_bundles_are_taken() {
        let refused = |b: Value| batch_entries(&b).expect_err("refused");
        let e = refused(json!({"resourceType": "Bundle", "type": "transaction", "entry": []}));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.message.starts_with("transaction Bundles are not offered"),
            "{}",
            e.message
        );
        let e = refused(json!({"resourceType": "Bundle", "type": "collection"}));
        assert_eq!(
            e.message,
            "POST /fhir takes a Bundle of type batch, not \"collection\""
        );
        let e = refused(json!({"resourceType": "Patient"}));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let many: Vec<Value> = (0..=MAX_BATCH_ENTRIES).map(|_| json!({})).collect();
        let e = refused(json!({"resourceType": "Bundle", "type": "batch", "entry": many}));
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            batch_entries(&json!({"resourceType": "Bundle", "type": "batch"}))
                .expect("empty batch")
                .len(),
            0
        );
    }

    #[test]
    fn statuses_and_dates_take_their_bundle_forms() {
        assert_eq!(status_line(StatusCode::CREATED), "201 Created");
        assert_eq!(status_line(StatusCode::NOT_MODIFIED), "304 Not Modified");
        assert_eq!(
            fhir_instant("Fri, 27 Nov 2026 21:40:04 GMT").as_deref(),
            Some("2026-11-27T21:40:04Z")
        );
    }
}
