//! The FHIR R4 REST API under `/fhir`: capabilities, read, vread, history, search with paging,
//! sorting, chained parameters and `_has`, `_include` and `_revinclude` (with `:iterate`),
//! `_elements`, batches, `Patient/$everything`, `Patient/$match` and `Observation/$lastn`, over
//! the resource store the `fhir-store` destinations fill.
//!
//! Every route needs a principal with a FHIR scope (or role) for the type it touches, and
//! every answer that carries PHI is recorded in the audit log before it leaves.

pub(crate) mod batch;
mod capability;
pub mod export;
mod group;
mod lastn;
mod matching;
pub mod query;
pub mod subscription;
pub mod write;

use std::collections::HashSet;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use causeway_store::{HistoryQuery, ResourceQuery, StoredResource, UnixMillis, ValueTest};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{AuditAction, AuditRecord};
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult};
use causeway_engine::fhir_query::Link;
use query::Presentation;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Most resources of one type `$everything` returns for a patient.
///
/// A patient with more (years of lab results) gets the most recent ones and a warning in the
/// bundle; a type-level search with paging reaches the rest.
pub const EVERYTHING_PER_TYPE: u32 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            post(batch::batch).layer(axum::extract::DefaultBodyLimit::max(write::MAX_WRITE_BODY)),
        )
        .route("/metadata", get(capability::metadata))
        .route("/_history", get(history_all))
        .route("/_write/{message}", get(write::status))
        .route("/$export", get(export::system).post(export::system_post))
        .route(
            "/Patient/$export",
            get(export::patient).post(export::patient_post),
        )
        .route(
            "/Group/{id}/$export",
            get(export::group).post(export::group_post),
        )
        .route("/_export/{job}", get(export::status).delete(export::cancel))
        .route("/_export/{job}/{file}", get(export::download))
        .route(
            "/Group",
            post(group::create).layer(axum::extract::DefaultBodyLimit::max(write::MAX_WRITE_BODY)),
        )
        .route(
            "/Group/{id}",
            get(group::read)
                .put(group::update)
                .layer(axum::extract::DefaultBodyLimit::max(write::MAX_WRITE_BODY)),
        )
        .route("/Observation/$lastn", get(lastn::lastn))
        .route("/Patient/$match", post(matching::patient_match))
        .route(
            "/Subscription",
            get(subscription::list).post(subscription::create),
        )
        .route(
            "/Subscription/{id}",
            get(subscription::read)
                .put(subscription::update)
                .delete(subscription::delete),
        )
        .route(
            "/{type}",
            get(search)
                .post(write::create)
                .layer(axum::extract::DefaultBodyLimit::max(write::MAX_WRITE_BODY)),
        )
        .route("/{type}/_history", get(history_type))
        .route(
            "/{type}/{id}",
            get(read)
                .put(write::update)
                .layer(axum::extract::DefaultBodyLimit::max(write::MAX_WRITE_BODY)),
        )
        .route("/{type}/{id}/{operation}", get(instance_operation))
        .route("/{type}/{id}/_history/{version}", get(vread))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn(json_acceptable))
        .layer(axum::middleware::map_response(as_operation_outcome))
}

/// The media types an `Accept` header may name for what this API answers: FHIR JSON, plain
/// JSON, the Bulk Data NDJSON files, and wildcards.
const ACCEPTABLE: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "application/fhir+ndjson",
    "application/ndjson",
    "application/*",
    "*/*",
];

/// 406 for a client that accepts only what is not served (XML, Turtle, HTML): it would
/// otherwise get JSON it cannot read. No `Accept` header accepts anything.
async fn json_acceptable(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let accept = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let acceptable = accept.trim().is_empty()
        || accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            ACCEPTABLE.iter().any(|a| media.eq_ignore_ascii_case(a))
        });
    if !acceptable {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            crate::error::IssueCode::NotSupported,
            format!("only FHIR JSON (application/fhir+json) is served; Accept was {accept:?}"),
        ));
    }
    Ok(next.run(request).await)
}

/// No route matched under `/fhir` (whose path the nested router sees without the prefix).
async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let path = uri.path().trim_end_matches('/');
    ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::IssueCode::NotSupported,
        format!("{method} /fhir{path} is not a FHIR interaction this server offers"),
    )
}

/// Longest error text taken from a non-FHIR error body (axum's extractor refusals are a line).
const MAX_PLAIN_ERROR: usize = 1024;

/// Every `/fhir` error answers with an OperationOutcome: axum's own refusals (a path segment
/// that is not a number, a body over the limit, a wrong method) come as plain text, and are
/// rewrapped here with their text, so no route needs its own handling of them.
async fn as_operation_outcome(response: Response) -> Response {
    let status = response.status();
    let is_fhir = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(FHIR_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => {
            crate::error::IssueCode::NotSupported
        }
        StatusCode::PAYLOAD_TOO_LARGE => crate::error::IssueCode::TooCostly,
        _ => crate::error::IssueCode::Invalid,
    };
    let mut rewrapped = ApiError::new(status, code, text).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewrapped
}

pub(crate) fn check_type(resource_type: &str) -> ApiResult<()> {
    if fhir::RESOURCE_TYPES.contains(&resource_type) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            crate::error::IssueCode::NotSupported,
            format!("resource type {resource_type} is not supported"),
        ))
    }
}

pub(crate) use causeway_engine::destinations::fhir_store::instant;

/// The stored JSON with the server-owned `id` and `meta` put back.
pub(crate) fn render(r: &StoredResource) -> ApiResult<Value> {
    causeway_engine::destinations::fhir_store::rendered(r)
        .ok_or_else(|| ApiError::internal("a stored resource is not a JSON object"))
}

/// A FHIR JSON response.
pub(crate) fn fhir_response(status: StatusCode, body: &Value) -> Response {
    fhir_response_shown(status, body, false)
}

/// A searchset entry: `resource` at its full URL under this server's base, with its search mode
/// (`match`, `include`).
pub(crate) fn search_entry(
    state: &AppState,
    resource_type: &str,
    id: &str,
    resource: Value,
    mode: &str,
) -> Value {
    json!({
        "fullUrl": format!("{}/{resource_type}/{id}", state.fhir_base),
        "resource": resource,
        "search": {"mode": mode},
    })
}

/// The searchset entry (mode `outcome`) warning that some related resources were left out.
fn cut_short_entry(text: &str) -> Value {
    json!({
        "resource": crate::error::operation_outcome(
            "warning",
            crate::error::IssueCode::TooCostly,
            text,
        ),
        "search": {"mode": "outcome"},
    })
}

/// A FHIR JSON response, indented when `_pretty=true` asked for it.
fn fhir_response_shown(status: StatusCode, body: &Value, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
    } else {
        body.to_string()
    };
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// Applies `_elements` and `_summary=data` to a rendered resource.
fn present(resource: &mut Value, p: &Presentation) {
    if !p.elements.is_empty() {
        subset(resource, &p.elements);
    } else if p.without_text
        && let Some(object) = resource.as_object_mut()
        && object.remove("text").is_some()
    {
        tag_subsetted(object);
    }
}

/// `Last-Modified` form of a store time.
fn http_date(t: causeway_store::UnixMillis) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(t.0).ok()?;
    Some(t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// An HTTP date (`Last-Modified`, `If-Modified-Since`).
fn parse_http_date(text: &str) -> Option<jiff::Timestamp> {
    Some(jiff::fmt::rfc2822::parse(text).ok()?.timestamp())
}

/// True when the client's cached copy is this version: `If-None-Match` names its ETag (or is
/// `*`), or, without `If-None-Match`, `If-Modified-Since` is not before its last update.
fn not_modified(r: &StoredResource, headers: &HeaderMap) -> bool {
    if let Some(tags) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let version = r.version.to_string();
        return tags.split(',').map(str::trim).any(|tag| {
            tag == "*"
                || tag
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .eq(version.as_str())
        });
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .map(|t| t.as_millisecond());
    // HTTP dates have whole seconds: compare at that precision.
    since.is_some_and(|since| r.last_updated.0.div_euclid(1000) <= since.div_euclid(1000))
}

/// A single resource with its ETag and Last-Modified, or 304 when the client has it already.
fn resource_response(
    r: &StoredResource,
    headers: &HeaderMap,
    p: &Presentation,
) -> ApiResult<Response> {
    let mut resp = if not_modified(r, headers) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut resource = render(r)?;
        present(&mut resource, p);
        fhir_response_shown(StatusCode::OK, &resource, p.pretty)
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", r.version)) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = http_date(r.last_updated).and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    Ok(resp)
}

fn gone(r: &StoredResource) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        crate::error::IssueCode::Deleted,
        format!("{}/{} was deleted", r.resource_type, r.id),
    )
}

pub(crate) async fn audit(
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

/// The HTTP status a handler's result answers with.
pub(crate) fn status_of(result: &ApiResult<Response>) -> StatusCode {
    match result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    }
}

/// Runs `work`, then records its outcome (success or error status) before answering.
pub(crate) async fn audited<F>(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    entity: String,
    query: Option<String>,
    peer: Option<String>,
    work: F,
) -> ApiResult<Response>
where
    F: std::future::Future<Output = ApiResult<Response>>,
{
    let result = work.await;
    audit(state, who, action, entity, query, status_of(&result), peer).await?;
    result
}

async fn read(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path((resource_type, id)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    who.require_fhir(&resource_type, Access::Read)?;
    if let Some(operation) = id.strip_prefix('$') {
        // `Patient/$everything` names an operation where an id belongs (ids cannot hold `$`).
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            crate::error::IssueCode::NotSupported,
            format!(
                "${operation} is not supported on {resource_type} as a whole; the operations are \
                 Patient/{{id}}/$everything, $export, Patient/$export and Group/{{id}}/$export"
            ),
        ));
    }
    let shown = query::parse_read(&pairs)?;
    let entity = format!("{resource_type}/{id}");
    audited(
        &state,
        &who,
        AuditAction::Read,
        entity,
        None,
        peer.text(),
        async {
            match state.store.resource(&resource_type, &id, None).await? {
                Some(r) if r.deleted => Err(gone(&r)),
                Some(r) => resource_response(&r, &headers, &shown),
                None => Err(ApiError::not_found(format!(
                    "{resource_type}/{id} is not known"
                ))),
            }
        },
    )
    .await
}

async fn vread(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    who.require_fhir(&resource_type, Access::Read)?;
    let shown = query::parse_read(&pairs)?;
    let v: u64 = version
        .parse()
        .map_err(|_| ApiError::bad_request(format!("version {version:?} is not a number")))?;
    let entity = format!("{resource_type}/{id}/_history/{v}");
    audited(
        &state,
        &who,
        AuditAction::Read,
        entity,
        None,
        peer.text(),
        async {
            match state.store.resource(&resource_type, &id, Some(v)).await? {
                Some(r) if r.deleted => Err(gone(&r)),
                Some(r) => resource_response(&r, &headers, &shown),
                None => Err(ApiError::not_found(format!(
                    "{resource_type}/{id} has no version {v}"
                ))),
            }
        },
    )
    .await
}

async fn instance_operation(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    match (resource_type.as_str(), operation.as_str()) {
        (_, "_history") => history(state, who, peer, Some(resource_type), Some(id), pairs).await,
        ("Patient", "$everything") => everything(state, who, peer, id, pairs).await,
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            crate::error::IssueCode::NotSupported,
            format!("{resource_type}/{{id}}/{operation} is not supported"),
        )),
    }
}

async fn history_all(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    history(state, who, peer, None, None, pairs).await
}

async fn history_type(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(resource_type): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    history(state, who, peer, Some(resource_type), None, pairs).await
}

async fn history(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    resource_type: Option<String>,
    id: Option<String>,
    pairs: Vec<(String, String)>,
) -> ApiResult<Response> {
    match &resource_type {
        Some(t) => {
            check_type(t)?;
            who.require_fhir(t, Access::Read)?;
        }
        None => who.require_fhir("*", Access::Read)?,
    }
    let mut q = HistoryQuery {
        resource_type: resource_type.clone(),
        id: id.clone(),
        count: query::DEFAULT_COUNT,
        ..HistoryQuery::default()
    };
    for (k, v) in &pairs {
        match k.as_str() {
            "_count" => {
                q.count = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("_count: expected a whole number"))?
            }
            "_offset" => {
                q.offset = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("_offset: expected a whole number"))?
            }
            "_since" => {
                let (lo, _) = fhir::search::parse_date(v)
                    .ok_or_else(|| ApiError::bad_request("_since: expected a FHIR instant"))?;
                q.since = Some(UnixMillis(lo));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "history parameter {other} is not supported"
                )));
            }
        }
    }
    let entity = match (&resource_type, &id) {
        (Some(t), Some(i)) => format!("{t}/{i}/_history"),
        (Some(t), None) => format!("{t}/_history"),
        _ => "_history".into(),
    };
    audited(&state, &who, AuditAction::Search, entity.clone(), None, peer.text(), async {
        let versions = state.store.resource_history(q.clone()).await?;
        if let (Some(t), Some(i), true) = (&resource_type, &id, versions.is_empty())
            && q.offset == 0
        {
            return Err(ApiError::not_found(format!("{t}/{i} is not known")));
        }
        let mut entries = Vec::with_capacity(versions.len());
        for r in &versions {
            let url = format!("{}/{}/{}", state.fhir_base, r.resource_type, r.id);
            let mut entry = json!({
                "fullUrl": url,
                "request": {
                    "method": if r.deleted { "DELETE" } else if r.version == 1 { "POST" } else { "PUT" },
                    "url": format!("{}/{}", r.resource_type, r.id),
                },
                "response": {
                    "status": if r.deleted { "204" } else if r.version == 1 { "201" } else { "200" },
                    "etag": format!("W/\"{}\"", r.version),
                    "lastModified": instant(r.last_updated),
                },
            });
            if !r.deleted {
                entry["resource"] = render(r)?;
            }
            entries.push(entry);
        }
        let mut bundle = json!({
            "resourceType": "Bundle",
            "type": "history",
            "entry": entries,
        });
        if versions.len() as u32 == q.count.min(causeway_store::resources::MAX_RESOURCE_PAGE)
            && q.count > 0
        {
            let base = format!("{}/{}", state.fhir_base, entity);
            bundle["link"] = json!([{
                "relation": "next",
                "url": format!("{base}?_count={}&_offset={}", q.count, q.offset + q.count),
            }]);
        }
        if entries_empty(&bundle) {
            bundle.as_object_mut().map(|o| o.remove("entry"));
        }
        Ok(fhir_response(StatusCode::OK, &bundle))
    })
    .await
}

fn entries_empty(bundle: &Value) -> bool {
    bundle["entry"].as_array().is_some_and(Vec::is_empty)
}

/// The query string as given, for the audit record (it may hold PHI: only the audit log,
/// which is protected, keeps it).
fn query_text(pairs: &[(String, String)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    Some(
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

async fn search(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(resource_type): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    check_type(&resource_type)?;
    who.require_fhir(&resource_type, Access::Read)?;
    let mut parsed = query::parse(&resource_type, &pairs)?;
    for link in parsed.includes.iter().chain(&parsed.iterate_includes) {
        who.require_fhir(link.target.unwrap_or("*"), Access::Read)?;
    }
    for link in parsed.revincludes.iter().chain(&parsed.iterate_revincludes) {
        who.require_fhir(link.source, Access::Read)?;
    }
    let q = query_text(&pairs);
    audited(
        &state,
        &who,
        AuditAction::Search,
        resource_type.clone(),
        q,
        peer.text(),
        async {
            let page = if query::resolve_chains(&*state.store, &who, &mut parsed).await? {
                state.store.search_resources(parsed.query.clone()).await?
            } else {
                // A chain matched nothing, so neither can the search.
                causeway_store::ResourcePage {
                    total: 0,
                    resources: Vec::new(),
                }
            };
            let mut entries = Vec::with_capacity(page.resources.len());
            let mut seen: HashSet<(String, String)> = HashSet::new();
            for r in &page.resources {
                seen.insert((r.resource_type.clone(), r.id.clone()));
                let mut resource = render(r)?;
                present(&mut resource, &parsed.presentation);
                entries.push(search_entry(
                    &state,
                    &r.resource_type,
                    &r.id,
                    resource,
                    "match",
                ));
            }
            let mut answer = Answer {
                state: &state,
                who: &who,
                seen,
                entries,
                cut: Vec::new(),
            };
            let mut added = Vec::new();
            for link in &parsed.includes {
                added.extend(answer.follow(link, &page.resources).await?);
            }
            for link in &parsed.revincludes {
                added.extend(answer.referring(link, &page.resources).await?);
            }
            if !parsed.iterate_includes.is_empty() || !parsed.iterate_revincludes.is_empty() {
                let mut frontier: Vec<StoredResource> =
                    page.resources.iter().cloned().chain(added).collect();
                let mut round = 0;
                while !frontier.is_empty() {
                    if round == MAX_ITERATE_ROUNDS {
                        answer.cut.push(format!(
                            "_include:iterate and _revinclude:iterate stopped after {round} rounds"
                        ));
                        break;
                    }
                    let mut next = Vec::new();
                    for link in &parsed.iterate_includes {
                        next.extend(answer.follow(link, &frontier).await?);
                    }
                    for link in &parsed.iterate_revincludes {
                        next.extend(answer.referring(link, &frontier).await?);
                    }
                    frontier = next;
                    round += 1;
                }
            }
            let Answer {
                mut entries, cut, ..
            } = answer;
            if !cut.is_empty() {
                entries.push(cut_short_entry(&format!(
                    "only part of the included resources are in this answer: {}",
                    cut.join("; ")
                )));
            }
            let bundle = searchset(&state, &resource_type, &parsed, page.total, entries);
            Ok(fhir_response_shown(
                StatusCode::OK,
                &bundle,
                parsed.presentation.pretty,
            ))
        },
    )
    .await
}

/// A search answer while its included resources are added: each resource at most once.
struct Answer<'a> {
    state: &'a AppState,
    who: &'a Principal,
    /// `(type, id)` of every resource in the answer.
    seen: HashSet<(String, String)>,
    entries: Vec<Value>,
    /// What was cut short, for the answer's warning.
    cut: Vec<String>,
}

impl Answer<'_> {
    /// Adds what `link` (a reference parameter) of each `link.source` resource of `from` refers
    /// to, skipping resources already in the answer and types the caller may not read; returns
    /// the added resources.
    async fn follow(
        &mut self,
        link: &Link,
        from: &[StoredResource],
    ) -> ApiResult<Vec<StoredResource>> {
        let mut added = Vec::new();
        for r in from.iter().filter(|r| r.resource_type == link.source) {
            let v: Value = serde_json::from_slice(&r.json).map_err(ApiError::internal)?;
            for (name, value) in fhir::search::extract(&r.resource_type, &v) {
                let fhir::search::SearchValue::Reference(target) = value else {
                    continue;
                };
                if name != link.param.name {
                    continue;
                }
                let Some((t, id)) = target.split_once('/') else {
                    continue;
                };
                if !link.reaches(t) || self.who.require_fhir(t, Access::Read).is_err() {
                    continue;
                }
                if !self.seen.insert((t.to_owned(), id.to_owned())) {
                    continue;
                }
                if let Some(found) = self.state.store.resource(t, id, None).await?
                    && !found.deleted
                {
                    self.entries
                        .push(search_entry(self.state, t, id, render(&found)?, "include"));
                    added.push(found);
                }
            }
        }
        Ok(added)
    }

    /// Adds the `link.source` resources whose `link.param` refers to one of `targets` (those
    /// the link reaches), at most [`REVINCLUDE_LIMIT`] of them (the most recently updated),
    /// skipping resources already in the answer; returns the added resources.
    async fn referring(
        &mut self,
        link: &Link,
        targets: &[StoredResource],
    ) -> ApiResult<Vec<StoredResource>> {
        let param = format!("{}.{}", link.source, link.param.name);
        let refs: Vec<causeway_store::IndexTest> = targets
            .iter()
            .filter(|r| link.reaches(&r.resource_type))
            .map(|r| causeway_store::IndexTest {
                param: param.clone(),
                test: ValueTest::Reference(format!("{}/{}", r.resource_type, r.id)),
            })
            .collect();
        // The targets a thousand at a time: an iterated answer may hold many more, and one
        // query's values stay within what SQLite binds.
        let mut added = Vec::new();
        let mut total = 0u64;
        for chunk in refs.chunks(REVINCLUDE_LIMIT as usize) {
            let room = REVINCLUDE_LIMIT.saturating_sub(added.len() as u32);
            let referring = self
                .state
                .store
                .search_resources(ResourceQuery {
                    resource_type: link.source.to_owned(),
                    clauses: vec![chunk.to_vec()],
                    count: room,
                    ..ResourceQuery::default()
                })
                .await?;
            total += referring.total;
            for r in referring.resources {
                if !self.seen.insert((r.resource_type.clone(), r.id.clone())) {
                    continue;
                }
                self.entries.push(search_entry(
                    self.state,
                    &r.resource_type,
                    &r.id,
                    render(&r)?,
                    "include",
                ));
                added.push(r);
            }
        }
        if total > u64::from(REVINCLUDE_LIMIT) {
            self.cut.push(format!(
                "{}:{} ({REVINCLUDE_LIMIT} of {total}, the most recently updated)",
                link.source, link.param.name
            ));
        }
        Ok(added)
    }
}

/// Rounds of `_include:iterate` and `_revinclude:iterate` after the first-level includes: enough
/// for chains such as MedicationRequest -> Medication -> Organization, while a web of
/// references cannot make one answer unbounded.
const MAX_ITERATE_ROUNDS: usize = 4;

/// Most resources one `_revinclude` adds to a page (the most recently updated first).
const REVINCLUDE_LIMIT: u32 = causeway_store::resources::MAX_RESOURCE_PAGE;

/// The FHIR data type names a choice element's name ends with (`value[x]` is sent as
/// `valueQuantity`, `valueString`...), so `_elements=value` finds every form.
const CHOICE_TYPE_SUFFIXES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Date",
    "DateTime",
    "Decimal",
    "Distance",
    "Dosage",
    "Duration",
    "HumanName",
    "Id",
    "Identifier",
    "Instant",
    "Integer",
    "Markdown",
    "Money",
    "Oid",
    "Period",
    "PositiveInt",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "String",
    "Time",
    "Timing",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

/// Keeps only the `elements` asked for (and what every resource needs: its type, id and
/// meta) of a rendered resource, tagged SUBSETTED.
fn subset(resource: &mut Value, elements: &[String]) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    object.retain(|key, _| {
        let key = key.strip_prefix('_').unwrap_or(key);
        matches!(key, "resourceType" | "id" | "meta")
            || elements.iter().any(|e| {
                key == e
                    || key
                        .strip_prefix(e.as_str())
                        .is_some_and(|rest| CHOICE_TYPE_SUFFIXES.contains(&rest))
            })
    });
    tag_subsetted(object);
}

/// Marks a resource that is not whole, as FHIR asks.
fn tag_subsetted(object: &mut serde_json::Map<String, Value>) {
    let meta = object
        .entry("meta")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted",
            }));
        }
    }
}

/// A searchset Bundle with its total and paging links.
fn searchset(
    state: &AppState,
    resource_type: &str,
    parsed: &query::Search,
    total: u64,
    entries: Vec<Value>,
) -> Value {
    let q = &parsed.query;
    let link = |offset: u32| {
        let mut params: Vec<String> = parsed
            .echo
            .iter()
            .map(|(k, v)| {
                form_urlencoded::Serializer::new(String::new())
                    .append_pair(k, v)
                    .finish()
            })
            .collect();
        params.push(format!("_count={}", q.count));
        params.push(format!("_offset={offset}"));
        format!("{}/{resource_type}?{}", state.fhir_base, params.join("&"))
    };
    let mut links = vec![json!({"relation": "self", "url": link(q.offset)})];
    if q.count > 0 {
        if u64::from(q.offset) + u64::from(q.count) < total {
            links.push(json!({"relation": "next", "url": link(q.offset + q.count)}));
        }
        if q.offset > 0 {
            links.push(
                json!({"relation": "previous", "url": link(q.offset.saturating_sub(q.count))}),
            );
        }
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

/// The types of the Patient compartment, Patient first.
fn compartment_types() -> Vec<&'static str> {
    std::iter::once("Patient")
        .chain(fhir::search::patient_compartment())
        .collect()
}

/// A FHIR instant parameter (`_since`, `_until`), refused as `{name} "..." is not a FHIR
/// instant`.
fn instant_param(name: &str, value: &str) -> ApiResult<UnixMillis> {
    let t: jiff::Timestamp = value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name} {value:?} is not a FHIR instant (e.g. 2024-03-01T00:00:00Z)"
        ))
    })?;
    Ok(UnixMillis(t.as_millisecond()))
}

/// What `$everything` takes: `_type` (which types), `_since` (last updated at or after),
/// `_count` (most resources of each type, at most [`EVERYTHING_PER_TYPE`]).
struct EverythingOptions {
    types: Option<Vec<&'static str>>,
    since: Option<UnixMillis>,
    per_type: u32,
}

impl EverythingOptions {
    fn read(pairs: &[(String, String)]) -> ApiResult<EverythingOptions> {
        let mut o = EverythingOptions {
            types: None,
            since: None,
            per_type: EVERYTHING_PER_TYPE,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "_type" => {
                    let types = o.types.get_or_insert_with(Vec::new);
                    for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        let known = compartment_types()
                            .into_iter()
                            .find(|c| *c == t)
                            .ok_or_else(|| {
                                ApiError::bad_request(format!(
                                    "$everything parameter _type: {t} is not in the Patient compartment"
                                ))
                            })?;
                        types.push(known);
                    }
                }
                "_since" => o.since = Some(instant_param("$everything parameter _since:", v)?),
                "_count" => {
                    // As a search does, more than the most is the most.
                    o.per_type = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "$everything parameter _count: expected a whole number above 0",
                            )
                        })?
                        .min(EVERYTHING_PER_TYPE);
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "$everything parameter {other} is not supported (_type, _since, _count)"
                    )));
                }
            }
        }
        Ok(o)
    }

    fn includes(&self, resource_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|ts| ts.contains(&resource_type))
    }
}

/// `Patient/{id}/$everything`: the patient and every resource of its compartment.
async fn everything(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    id: String,
    pairs: Vec<(String, String)>,
) -> ApiResult<Response> {
    who.require_fhir("Patient", Access::Read)?;
    let options = EverythingOptions::read(&pairs)?;
    let entity = format!("Patient/{id}/$everything");
    audited(
        &state,
        &who,
        AuditAction::Read,
        entity,
        query_text(&pairs),
        peer.text(),
        async {
            let patient = match state.store.resource("Patient", &id, None).await? {
                Some(p) if p.deleted => return Err(gone(&p)),
                Some(p) => p,
                None => return Err(ApiError::not_found(format!("Patient/{id} is not known"))),
            };
            let mut entries = Vec::new();
            if options.includes("Patient")
                && options.since.is_none_or(|s| patient.last_updated.0 >= s.0)
            {
                entries.push(search_entry(
                    &state,
                    "Patient",
                    &id,
                    render(&patient)?,
                    "match",
                ));
            }
            let since: Vec<causeway_store::DateTest> = options
                .since
                .map(|s| causeway_store::DateTest {
                    prefix: causeway_store::DatePrefix::Ge,
                    lo: s.0,
                    hi: s.0,
                })
                .into_iter()
                .collect();
            let mut truncated = Vec::new();
            for t in fhir::search::patient_compartment() {
                if !options.includes(t) || who.require_fhir(t, Access::Read).is_err() {
                    continue;
                }
                let page = state
                    .store
                    .search_resources(ResourceQuery {
                        resource_type: t.to_owned(),
                        clauses: vec![vec![causeway_store::IndexTest {
                            param: format!("{t}.patient"),
                            test: ValueTest::Reference(format!("Patient/{id}")),
                        }]],
                        last_updated: since.clone(),
                        count: options.per_type,
                        ..ResourceQuery::default()
                    })
                    .await?;
                if page.total > u64::from(options.per_type) {
                    truncated.push(format!("{t} ({} of {})", options.per_type, page.total));
                }
                for r in &page.resources {
                    entries.push(search_entry(
                        &state,
                        &r.resource_type,
                        &r.id,
                        render(r)?,
                        "match",
                    ));
                }
            }
            let total = entries.len();
            if !truncated.is_empty() {
                entries.push(cut_short_entry(&format!(
                    "only the most recent resources of these types are included: {}",
                    truncated.join(", ")
                )));
            }
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "entry": entries,
            });
            Ok(fhir_response(StatusCode::OK, &bundle))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keeps_the_elements_asked_their_choice_forms_and_extensions() {
        let mut observation = json!({
            "resourceType": "Observation",
            "id": "o1",
            "meta": {"versionId": "2"},
            "status": "final",
            "_status": {"extension": []},
            "statusReason": {"text": "not a choice form of status"},
            "code": {"text": "glucose"},
            "valueQuantity": {"value": 5.4},
            "subject": {"reference": "Patient/p1"}
        });
        subset(&mut observation, &["status".to_owned(), "value".to_owned()]);
        let mut keys: Vec<&str> = observation
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "_status",
                "id",
                "meta",
                "resourceType",
                "status",
                "valueQuantity"
            ]
        );
        assert_eq!(observation["meta"]["versionId"], "2");
        assert_eq!(observation["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}
