//! The audit log: who did what to which resource, when, from where, and with what outcome.
//!
//! Records go to the store's append-only, hash-chained `audit_log` (see
//! `causeway_store::auth`): each one holds `SHA-256(previous hash ‖ canonical record)`, so
//! `causeway audit verify` finds the first edited, inserted or removed record. Search query
//! strings may name patients: they are sealed in the store and never logged.
//!
//! Handlers call [`Audit::record`] before their response leaves; if the record cannot be
//! written the request fails (no PHI goes out unaudited). Admins read the log as FHIR
//! `AuditEvent` resources at `GET /fhir/AuditEvent` ([`fhir_routes`]).

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use causeway_store::{AuditEntry, AuditQuery, NewAuditRecord, Store, UnixMillis};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::fhir::instant;

/// Records returned by an `AuditEvent` search without `_count`.
pub const DEFAULT_AUDIT_PAGE: u32 = 100;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// Read or vread of one resource.
    Read,
    /// A search (the entity is the type; the query string is kept).
    Search,
    /// A history read.
    History,
    Create,
    Update,
    Delete,
    /// An operation such as `$everything`.
    Operation,
    /// A user signed in (or failed to).
    Login,
    /// A user signed out.
    Logout,
    /// A backend client asked for an access token.
    Token,
}

impl AuditAction {
    pub const ALL: [AuditAction; 10] = [
        Self::Read,
        Self::Search,
        Self::History,
        Self::Create,
        Self::Update,
        Self::Delete,
        Self::Operation,
        Self::Login,
        Self::Logout,
        Self::Token,
    ];

    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::History => "history",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Operation => "operation",
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// FHIR `AuditEvent.action`: C, R, U, D or E.
    fn fhir_action(self) -> &'static str {
        match self {
            Self::Create => "C",
            Self::Read | Self::Search | Self::History => "R",
            Self::Update => "U",
            Self::Delete => "D",
            Self::Operation | Self::Login | Self::Logout | Self::Token => "E",
        }
    }

    /// `AuditEvent.type` and `.subtype`.
    fn fhir_type(self) -> (Value, Value) {
        let rest = |code: &str| {
            (
                json!({
                    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                    "code": "rest",
                    "display": "RESTful Operation"
                }),
                json!({ "system": "http://hl7.org/fhir/restful-interaction", "code": code }),
            )
        };
        let dicom = |code: &str, display: &str| {
            (
                json!({
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110114",
                    "display": "User Authentication"
                }),
                json!({
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": code,
                    "display": display
                }),
            )
        };
        match self {
            Self::Read => rest("read"),
            Self::Search => rest("search-type"),
            Self::History => rest("history-instance"),
            Self::Create => rest("create"),
            Self::Update => rest("update"),
            Self::Delete => rest("delete"),
            Self::Operation => rest("operation"),
            Self::Login | Self::Token => dicom("110122", "Login"),
            Self::Logout => dicom("110123", "Logout"),
        }
    }
}

/// One event to record.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub action: AuditAction,
    /// `Patient/123`, or the type for a search (`Observation`).
    pub entity: String,
    /// The query string of a search, as sent (may hold PHI: sealed in the store, never logged).
    pub query: Option<String>,
    /// The HTTP status answered.
    pub outcome: u16,
    /// The client's address.
    pub peer: Option<String>,
}

impl fmt::Debug for AuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditRecord")
            .field("action", &self.action)
            .field("entity", &self.entity)
            .field("query", &self.query.as_ref().map(|_| "[redacted]"))
            .field("outcome", &self.outcome)
            .field("peer", &self.peer)
            .finish()
    }
}

/// Appends audit records to the store's chain.
pub struct Audit {
    store: Arc<dyn Store>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Audit")
    }
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Audit {
        Audit { store }
    }

    /// Appends `rec` as done by `who`. Returns once the record is committed; an error means
    /// it is not in the log, and the request must fail.
    pub async fn record(&self, who: &Principal, rec: AuditRecord) -> ApiResult<()> {
        self.record_as(&who.subject, who.kind_name(), rec).await
    }

    /// Appends `rec` for an agent that is not (yet) a principal: a refused sign-in.
    pub(crate) async fn record_as(
        &self,
        agent: &str,
        agent_kind: &str,
        rec: AuditRecord,
    ) -> ApiResult<()> {
        self.store
            .append_audit(NewAuditRecord {
                agent: agent.to_owned(),
                agent_kind: agent_kind.to_owned(),
                action: rec.action.as_str().to_owned(),
                entity: rec.entity,
                query: rec.query,
                outcome: rec.outcome,
                peer: rec.peer,
            })
            .await?;
        Ok(())
    }
}

/// `GET /AuditEvent`, to merge under `/fhir`.
pub fn fhir_routes() -> Router<AppState> {
    Router::new().route("/AuditEvent", get(search))
}

/// One record as a FHIR R4 AuditEvent.
pub fn audit_event(e: &AuditEntry) -> Value {
    let action = AuditAction::parse(&e.action);
    let (kind, subtype) = action.map_or_else(
        || {
            (
                json!({ "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest" }),
                json!({ "code": e.action }),
            )
        },
        AuditAction::fhir_type,
    );
    let outcome = match e.outcome {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    let mut agent = json!({
        "type": { "text": e.agent_kind },
        "who": { "identifier": { "value": e.agent }, "display": e.agent },
        "requestor": true,
    });
    if let Some(peer) = &e.peer {
        agent["network"] = json!({ "address": peer, "type": "2" });
    }
    let auth_event = matches!(
        action,
        Some(AuditAction::Login | AuditAction::Logout | AuditAction::Token)
    );
    let mut entity = if auth_event {
        json!({ "what": { "display": e.entity } })
    } else if e.entity.contains('/') {
        json!({ "what": { "reference": e.entity } })
    } else {
        json!({ "type": { "system": "http://hl7.org/fhir/resource-types", "code": e.entity } })
    };
    if let Some(q) = &e.query {
        entity["query"] = Value::String(base64::engine::general_purpose::STANDARD.encode(q));
    }
    json!({
        "resourceType": "AuditEvent",
        "id": e.id.to_string(),
        "type": kind,
        "subtype": [subtype],
        "action": action.map_or("E", AuditAction::fhir_action),
        "recorded": instant(e.at),
        "outcome": outcome,
        "outcomeDesc": format!("HTTP {}", e.outcome),
        "agent": [agent],
        "source": { "observer": { "display": "causeway" } },
        "entity": [entity],
        "extension": [{
            "url": "urn:causeway:audit-chain-hash",
            "valueString": hex::encode(e.hash),
        }],
    })
}

/// A FHIR date search value as the half-open period `[lo, hi)` in unix milliseconds:
/// `2024`, `2024-05`, `2024-05-06` or an instant with its offset (to the second or finer).
fn date_period(value: &str) -> Option<(i64, i64)> {
    use jiff::civil::Date;
    let day_start = |d: Date| -> Option<i64> {
        jiff::tz::Offset::UTC
            .to_timestamp(d.at(0, 0, 0, 0))
            .ok()
            .map(|t| t.as_millisecond())
    };
    let parts: Vec<&str> = value.split('-').collect();
    let num = |s: &str, len: usize| -> Option<i16> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match parts.as_slice() {
        [y] => {
            let y = num(y, 4)?;
            let lo = Date::new(y, 1, 1).ok()?;
            let hi = Date::new(y.checked_add(1)?, 1, 1).ok()?;
            Some((day_start(lo)?, day_start(hi)?))
        }
        [y, m] => {
            let lo = Date::new(num(y, 4)?, i8::try_from(num(m, 2)?).ok()?, 1).ok()?;
            let hi = lo.checked_add(jiff::Span::new().months(1)).ok()?;
            Some((day_start(lo)?, day_start(hi)?))
        }
        [_, _, d] if d.len() == 2 => {
            let lo: Date = value.parse().ok()?;
            let hi = lo.tomorrow().ok()?;
            Some((day_start(lo)?, day_start(hi)?))
        }
        _ => {
            let t: jiff::Timestamp = value.parse().ok()?;
            let lo = t.as_millisecond();
            // To the second: the whole second; finer: that millisecond.
            let width = if t.subsec_nanosecond() == 0 && !value.contains('.') {
                1000
            } else {
                1
            };
            Some((lo, lo.saturating_add(width)))
        }
    }
}

/// Narrows `q` by one `date` parameter (prefixes eq, gt, ge, lt, le; none means eq).
fn apply_date(q: &mut AuditQuery, value: &str) -> ApiResult<()> {
    let (prefix, rest) = match value.get(..2) {
        Some(p @ ("eq" | "gt" | "ge" | "lt" | "le" | "ne" | "sa" | "eb" | "ap")) => {
            (p, &value[2..])
        }
        _ => ("eq", value),
    };
    let (lo, hi) = date_period(rest).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid date {value:?}: expected YYYY, YYYY-MM, YYYY-MM-DD or an instant with its offset, optionally after eq, gt, ge, lt or le"
        ))
    })?;
    let (since, until) = match prefix {
        "eq" => (Some(lo), Some(hi)),
        "gt" => (Some(hi), None),
        "ge" => (Some(lo), None),
        "lt" => (None, Some(lo)),
        "le" => (None, Some(hi)),
        other => {
            return Err(ApiError::bad_request(format!(
                "the date prefix {other} is not supported here (eq, gt, ge, lt, le are)"
            )));
        }
    };
    if let Some(s) = since {
        q.since = Some(UnixMillis(q.since.map_or(s, |old| old.0.max(s))));
    }
    if let Some(u) = until {
        q.until = Some(UnixMillis(q.until.map_or(u, |old| old.0.min(u))));
    }
    Ok(())
}

/// `GET /fhir/AuditEvent?date=&agent=|who=&entity=&_count=`: newest first; the next page
/// link carries `_before` (the last record's id).
async fn search(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    RawQuery(raw): RawQuery,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let record = |outcome: StatusCode| AuditRecord {
        action: AuditAction::Search,
        entity: "AuditEvent".to_owned(),
        query: raw.clone().filter(|q| !q.is_empty()),
        outcome: outcome.as_u16(),
        peer: peer.text(),
    };
    if let Err(e) = who.require_role(Role::Admin) {
        state.audit.record(&who, record(e.status)).await?;
        return Err(e);
    }
    let result = search_inner(&state, raw.as_deref(), params).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    state.audit.record(&who, record(status)).await?;
    result
}

async fn search_inner(
    state: &AppState,
    raw: Option<&str>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let mut q = AuditQuery {
        limit: DEFAULT_AUDIT_PAGE,
        ..AuditQuery::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "date" => apply_date(&mut q, value)?,
            "agent" | "who" => q.agent = Some(value.clone()),
            "entity" => q.entity = Some(value.clone()),
            "_count" => {
                q.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=causeway_store::MAX_PAGE_LEN).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "_count must be from 1 to {}",
                            causeway_store::MAX_PAGE_LEN
                        ))
                    })?;
            }
            "_before" => {
                q.before_id = Some(value.parse().map_err(|_| {
                    ApiError::bad_request("_before must be a record id from a next link")
                })?);
            }
            "_format" if value.contains("json") => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown search parameter {other} (AuditEvent supports date, agent, who, entity, _count)"
                )));
            }
        }
    }
    let entries = state.store.audit_records(q.clone()).await?;
    let base = format!("{}/AuditEvent", state.fhir_base);
    let self_url = match raw {
        Some(r) if !r.is_empty() => format!("{base}?{r}"),
        _ => base.clone(),
    };
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if entries.len() == q.limit as usize
        && let Some(last) = entries.last()
    {
        let kept: Vec<String> = params
            .iter()
            .filter(|(n, _)| n != "_before")
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .chain([format!("_before={}", last.id)])
            .collect();
        links.push(json!({ "relation": "next", "url": format!("{base}?{}", kept.join("&")) }));
    }
    let entry: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "fullUrl": format!("{base}/{}", e.id),
                "resource": audit_event(e),
                "search": { "mode": "match" },
            })
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entry,
    });
    let mut r = (StatusCode::OK, bundle.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::fhir::FHIR_JSON),
    );
    Ok(r)
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn date_values_are_periods() {
        assert_eq!(
            date_period("2024"),
            Some((ms("2024-01-01T00:00:00Z"), ms("2025-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_period("2024-02"),
            Some((ms("2024-02-01T00:00:00Z"), ms("2024-03-01T00:00:00Z")))
        );
        assert_eq!(
            date_period("2024-02-29"),
            Some((ms("2024-02-29T00:00:00Z"), ms("2024-03-01T00:00:00Z")))
        );
        let t = ms("2024-05-06T08:00:00Z");
        assert_eq!(
            date_period("2024-05-06T10:00:00+02:00"),
            Some((t, t + 1000))
        );
        assert_eq!(
            date_period("2024-05-06T08:00:00.250Z"),
            Some((t + 250, t + 251))
        );
        for bad in [
            "24",
            "2024-2",
            "2024-13",
            "2024-02-30",
            "2024-05-06T10:00:00",
            "x",
        ] {
            assert_eq!(date_period(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_prefixes_narrow_the_query() {
        let mut q = AuditQuery::default();
        apply_date(&mut q, "ge2024-01-01").unwrap();
        apply_date(&mut q, "lt2024-02").unwrap();
        assert_eq!(q.since, Some(UnixMillis(ms("2024-01-01T00:00:00Z"))));
        assert_eq!(q.until, Some(UnixMillis(ms("2024-02-01T00:00:00Z"))));
        let mut q = AuditQuery::default();
        apply_date(&mut q, "2024-01-01").unwrap();
        assert_eq!(
            (q.since, q.until),
            (
                Some(UnixMillis(ms("2024-01-01T00:00:00Z"))),
                Some(UnixMillis(ms("2024-01-02T00:00:00Z")))
            )
        );
        assert!(apply_date(&mut q, "ne2024").is_err());
        assert!(apply_date(&mut q, "2024-1-1").is_err());
    }

    #[test]
    fn events_are_fhir_audit_events_without_clear_queries_in_debug() {
        let e = AuditEntry {
            id: 7,
            at: UnixMillis(0),
            agent: "ann".into(),
            agent_kind: "user".into(),
            action: "search".into(),
            entity: "Patient".into(),
            query: Some("name=Smith".into()),
            outcome: 200,
            peer: Some("127.0.0.1".into()),
            prev_hash: [0; 32],
            hash: [1; 32],
        };
        let v = audit_event(&e);
        assert_eq!(v["action"], "R");
        assert_eq!(v["subtype"][0]["code"], "search-type");
        assert_eq!(v["entity"][0]["type"]["code"], "Patient");
        assert_eq!(v["entity"][0]["query"], "bmFtZT1TbWl0aA==");
        assert_eq!(v["agent"][0]["who"]["identifier"]["value"], "ann");
        assert_eq!(v["outcome"], "0");
        let rec = AuditRecord {
            action: AuditAction::Search,
            entity: "Patient".into(),
            query: Some("name=Smith".into()),
            outcome: 200,
            peer: None,
        };
        assert!(!format!("{rec:?}").contains("Smith"));
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
    }
}
