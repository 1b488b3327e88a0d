//! `/fhir/Subscription`: create, read, list, update and delete R4 Subscriptions (rest-hook).
//! The engine's subscription worker does the matching and sending.
//!
//! Subscription is not one of the clinical types the model serialises, so its JSON is checked
//! here element by element ([`causeway_engine::subscriptions::read_subscription`]); a valid
//! one is stored `active` (the endpoint is not called at creation; failures show up as the
//! notifications' retries).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use causeway_engine::subscriptions::read_subscription;
use causeway_store::{IndexEntry, IndexTest, IndexValue, ResourcePut, ResourceQuery, ValueTest};
use serde_json::{Value, json};

use super::{audited, fhir_response, render};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult};

const TYPE: &str = "Subscription";

fn put_of(id: &str, mut v: Value) -> ApiResult<ResourcePut> {
    if v.get("resourceType").and_then(Value::as_str) != Some(TYPE) {
        return Err(ApiError::bad_request(
            "the body's resourceType must be Subscription",
        ));
    }
    let sub = read_subscription(id, &v).map_err(ApiError::bad_request)?;
    if v.get("reason")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request("Subscription.reason is required"));
    }
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("requested");
    let status = match status {
        // Accepted: the criteria parse and the channel is supported.
        "requested" | "active" => "active",
        "off" => "off",
        other => {
            return Err(ApiError::bad_request(format!(
                "Subscription.status: {other:?} cannot be set (requested, active or off)"
            )));
        }
    };
    let o = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    o.insert("status".into(), Value::String(status.into()));
    o.remove("meta");
    o.insert("id".into(), Value::String(id.to_owned()));
    let token = |param: &str, code: &str| IndexEntry {
        param: format!("{TYPE}.{param}"),
        value: IndexValue::Token {
            system: String::new(),
            code: code.to_owned(),
        },
    };
    Ok(ResourcePut {
        resource_type: TYPE.into(),
        id: id.to_owned(),
        json: serde_json::to_vec(&v).map_err(ApiError::internal)?,
        index: vec![token("status", status), token("type", &sub.resource_type)],
        if_match: None,
        source: None,
        delete: false,
    })
}

async fn write(state: &AppState, id: &str, body: &Bytes, created: bool) -> ApiResult<Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if let Some(body_id) = v.get("id").and_then(Value::as_str)
        && !created
        && body_id != id
    {
        return Err(ApiError::bad_request(
            "the body's id differs from the URL's",
        ));
    }
    let put = put_of(id, v)?;
    let out = state.store.put_resources(vec![put]).await?;
    let stored = state
        .store
        .resource(TYPE, id, None)
        .await?
        .ok_or_else(|| ApiError::internal("subscription not found after writing it"))?;
    let status = if out.first().is_some_and(|o| o.created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = fhir_response(status, &render(&stored)?);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/{TYPE}/{id}/_history/{}",
        state.fhir_base, stored.version
    )) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    body: Bytes,
) -> ApiResult<Response> {
    who.require_fhir(TYPE, Access::Write)?;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let entity = format!("{TYPE}/{id}");
    audited(
        &state,
        &who,
        AuditAction::Create,
        entity,
        None,
        peer.text(),
        async { write(&state, &id, &body, true).await },
    )
    .await
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    who.require_fhir(TYPE, Access::Write)?;
    let entity = format!("{TYPE}/{id}");
    audited(
        &state,
        &who,
        AuditAction::Update,
        entity,
        None,
        peer.text(),
        async { write(&state, &id, &body, false).await },
    )
    .await
}

pub(crate) async fn read(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    who.require_fhir(TYPE, Access::Read)?;
    let entity = format!("{TYPE}/{id}");
    audited(
        &state,
        &who,
        AuditAction::Read,
        entity,
        None,
        peer.text(),
        async {
            match state.store.resource(TYPE, &id, None).await? {
                Some(r) if !r.deleted => Ok(fhir_response(StatusCode::OK, &render(&r)?)),
                _ => Err(ApiError::not_found(format!("{TYPE}/{id} is not known"))),
            }
        },
    )
    .await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    who.require_fhir(TYPE, Access::Write)?;
    let put = ResourcePut {
        resource_type: TYPE.into(),
        id: id.clone(),
        json: Vec::new(),
        index: Vec::new(),
        if_match: None,
        source: None,
        delete: true,
    };
    let entity = format!("{TYPE}/{id}");
    audited(
        &state,
        &who,
        AuditAction::Delete,
        entity,
        None,
        peer.text(),
        async {
            state.store.put_resources(vec![put]).await?;
            Ok(fhir_response(
                StatusCode::OK,
                &crate::error::operation_outcome(
                    "information",
                    crate::error::IssueCode::Informational,
                    &format!("{TYPE}/{id} deleted"),
                ),
            ))
        },
    )
    .await
}

/// `GET /fhir/Subscription[?status=active]`.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    who.require_fhir(TYPE, Access::Read)?;
    audited(
        &state,
        &who,
        AuditAction::Search,
        TYPE.to_owned(),
        None,
        peer.text(),
        async {
            let mut q = ResourceQuery {
                resource_type: TYPE.into(),
                count: causeway_store::resources::MAX_RESOURCE_PAGE,
                ..ResourceQuery::default()
            };
            for (k, v) in &pairs {
                match k.as_str() {
                    "status" | "type" => q.clauses.push(vec![IndexTest {
                        param: format!("{TYPE}.{k}"),
                        test: ValueTest::Code(v.clone()),
                    }]),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "search parameter {other}: unknown search parameter for Subscription"
                        )));
                    }
                }
            }
            let page = state.store.search_resources(q).await?;
            let mut entries = Vec::new();
            for r in &page.resources {
                entries.push(super::search_entry(
                    &state,
                    TYPE,
                    &r.id,
                    render(r)?,
                    "match",
                ));
            }
            let mut bundle =
                json!({"resourceType": "Bundle", "type": "searchset", "total": page.total});
            if !entries.is_empty() {
                bundle["entry"] = Value::Array(entries);
            }
            Ok(fhir_response(StatusCode::OK, &bundle))
        },
    )
    .await
}
