//! `/fhir/Group`: create, read and update R4 Groups, which name the cohorts of
//! `Group/{id}/$export`.
//!
//! Group is not one of the clinical types the unified model serialises (no feed sends one),
//! so it is kept here as given, after checking its top-level elements, the required `type`
//! and `actual`, and that every `member` has an `entity` reference. Nested elements
//! (`characteristic`, `code`...) are stored as sent, not checked one by one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use causeway_store::{IndexEntry, IndexValue, ResourcePut};
use serde_json::Value;

use super::{audited, fhir_response, render};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult};

const TYPE: &str = "Group";

/// The elements of R4 Group (and of every DomainResource).
const ELEMENTS: [&str; 17] = [
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "extension",
    "modifierExtension",
    "identifier",
    "active",
    "type",
    "actual",
    "code",
    "name",
    "quantity",
    "managingEntity",
    "characteristic",
];

/// `Group.type`'s required binding.
const GROUP_TYPES: [&str; 6] = [
    "person",
    "animal",
    "practitioner",
    "device",
    "medication",
    "substance",
];

fn put_of(id: &str, mut v: Value) -> ApiResult<ResourcePut> {
    let o = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    if o.get("resourceType").and_then(Value::as_str) != Some(TYPE) {
        return Err(ApiError::bad_request(
            "the body's resourceType must be Group",
        ));
    }
    if let Some(k) = o
        .keys()
        .find(|k| !ELEMENTS.contains(&k.as_str()) && *k != "member" && !k.starts_with('_'))
    {
        return Err(ApiError::bad_request(format!(
            "Group.{k} is not an element of Group"
        )));
    }
    match o.get("type").and_then(Value::as_str) {
        Some(t) if GROUP_TYPES.contains(&t) => {}
        _ => {
            return Err(ApiError::bad_request(format!(
                "Group.type is required: one of {}",
                GROUP_TYPES.join(", ")
            )));
        }
    }
    if !o.get("actual").is_some_and(Value::is_boolean) {
        return Err(ApiError::bad_request(
            "Group.actual is required: true or false",
        ));
    }
    let mut index = Vec::new();
    if let Some(members) = o.get("member") {
        let members = members
            .as_array()
            .ok_or_else(|| ApiError::bad_request("Group.member must be an array"))?;
        for (i, m) in members.iter().enumerate() {
            let Some(reference) = m["entity"]["reference"].as_str() else {
                return Err(ApiError::bad_request(format!(
                    "Group.member[{i}].entity.reference is required"
                )));
            };
            index.push(IndexEntry {
                param: format!("{TYPE}.member"),
                value: IndexValue::Reference(reference.to_owned()),
            });
        }
    }
    o.remove("meta");
    o.insert("id".into(), Value::String(id.to_owned()));
    Ok(ResourcePut {
        resource_type: TYPE.into(),
        id: id.to_owned(),
        json: serde_json::to_vec(&v).map_err(ApiError::internal)?,
        index,
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
    if id.is_empty()
        || id.len() > causeway_store::resources::MAX_RESOURCE_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::bad_request(format!("{id:?} is not a FHIR id")));
    }
    let put = put_of(id, v)?;
    let out = state.store.put_resources(vec![put]).await?;
    let stored = state
        .store
        .resource(TYPE, id, None)
        .await?
        .ok_or_else(|| ApiError::internal("group not found after writing it"))?;
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

/// `PUT /fhir/Group/{id}`: update, or create with that id.
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
