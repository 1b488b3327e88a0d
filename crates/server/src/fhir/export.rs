//! FHIR Bulk Data export (Bulk Data Access IG v2.0.0): `$export` at the system, Patient and
//! Group levels, with the asynchronous kick-off / status / download pattern and NDJSON files.
//!
//! # Map
//!
//! ```text
//! GET|POST /fhir/$export, /fhir/Patient/$export, /fhir/Group/{id}/$export   (kick-off)
//!     parse (400) -> scopes per type (403) -> Group (404) -> a free slot (429)
//!     -> job task spawned -> 202, Content-Location: /fhir/_export/{job}
//! GET    /fhir/_export/{job}           202 + X-Progress while running, 200 + manifest, 500 failed
//! DELETE /fhir/_export/{job}           cancels, removes the files: 202
//! GET    /fhir/_export/{job}/{file}    the NDJSON file, streamed
//! ```
//!
//! # Where things live, and what a crash leaves behind
//!
//! Jobs are held in this process ([`Exports`]); their files under `<data_dir>/exports/<job>/`,
//! one `<Type>.ndjson` per resource type (`<Type>.<n>.ndjson` past [`ExportConfig::max_file_bytes`]).
//! A restart forgets every job: [`Exports::new`] removes what the previous process left in
//! the directory, and the old status URLs answer 404. A job's files are removed when it is
//! cancelled, when it fails, and [`ExportConfig::file_expiry`] after it completed.
//!
//! # Invariants
//!
//! - Only the principal that started a job (same subject and kind), or an admin, sees its
//!   status and downloads its files.
//! - Each line is the current version of one live resource as `GET /fhir/{type}/{id}` serves
//!   it, last updated after `_since` (when given) and not after the job's `transactionTime`.
//! - The store is read a page at a time; nothing holds more than one page in memory.
//! - Logs and audit records carry job ids, types and counts only, never resource content.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_engine::config::ExportSettings;
use causeway_engine::fhir_query;
use causeway_store::{
    DatePrefix, DateTest, IndexTest, ResourceQuery, ResourceSort, UnixMillis, ValueTest,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{audit, compartment_types, instant, instant_param, query, render};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult, IssueCode};

/// The NDJSON media type of the files.
pub const NDJSON: &str = "application/fhir+ndjson";

/// Resources read from the store per page.
const PAGE: u32 = causeway_store::resources::MAX_RESOURCE_PAGE;

/// Group members asked for per query (an OR of references): keeps each query's SQL small.
const MEMBER_CHUNK: usize = 100;

/// What a client is told to wait between status polls, in seconds.
const RETRY_AFTER_SECS: &str = "2";

/// Bytes per chunk of a streamed download.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// `_outputFormat` values meaning NDJSON (the spec's abbreviations included).
const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Parameters of the Bulk Data spec this server does not implement: refused with 400 unless
/// `Prefer: handling=lenient`, then ignored.
const UNSUPPORTED: [&str; 3] = [
    "includeAssociatedData",
    "organizeOutputBy",
    "allowPartialManifests",
];

/// How the export subsystem behaves.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Where job directories are made: `<data_dir>/exports`.
    pub dir: PathBuf,
    /// Jobs running at once; a kick-off beyond is 429.
    pub max_jobs: usize,
    /// How long a completed job and its files are kept.
    pub file_expiry: Duration,
    /// Size past which a type's output continues in a new file.
    pub max_file_bytes: u64,
    /// Tests only (`None` otherwise): a job takes a permit of this before it reads the store,
    /// so that a test holds jobs running for as long as it needs, without timing guesses.
    pub hold: Option<Arc<Semaphore>>,
}

impl ExportConfig {
    /// The defaults of `[server.export]` (see `causeway_engine::config::ExportSettings`), with
    /// files under `<data_dir>/exports`.
    pub fn new(data_dir: &FsPath) -> ExportConfig {
        ExportConfig::from_settings(data_dir, &ExportSettings::default())
    }

    /// The limits of `[server.export]`, with files under `<data_dir>/exports`.
    pub fn from_settings(data_dir: &FsPath, settings: &ExportSettings) -> ExportConfig {
        ExportConfig {
            dir: data_dir.join("exports"),
            max_jobs: settings.max_jobs,
            file_expiry: settings.file_expiry,
            max_file_bytes: settings.max_file_size,
            hold: None,
        }
    }
}

/// The export jobs of this process.
pub struct Exports {
    config: ExportConfig,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// One permit per running job; the permit moves into the job's task.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Exports {
    /// Sets up the export directory, removing jobs a previous process left (they are gone:
    /// nothing here knows them any more).
    pub fn new(config: ExportConfig) -> std::io::Result<Exports> {
        match std::fs::remove_dir_all(&config.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&config.dir)?;
        Ok(Exports {
            slots: Arc::new(Semaphore::new(config.max_jobs)),
            config,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job `id` if `who` may see it: 404 unknown, 403 someone else's.
    fn job_for(&self, id: &str, who: &Principal) -> ApiResult<Arc<Job>> {
        let job = self
            .jobs()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("export {id} is not known")))?;
        if job.owner.subject == who.subject && job.owner.kind_name() == who.kind_name()
            || who.is_admin()
        {
            Ok(job)
        } else {
            Err(ApiError::forbidden(format!(
                "export {id} was started by another principal"
            )))
        }
    }

    /// Removes a job and its files (cancelling it if it runs).
    async fn remove(&self, id: &str) {
        let job = self.jobs().remove(id);
        if let Some(job) = job {
            let task = job.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                task.abort();
                // Wait for the abort to land so that no file is created after the removal.
                let _ = task.await;
            }
            if let Err(e) = tokio::fs::remove_dir_all(&job.dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(job = %id, error = %e, "cannot remove an export's files");
            }
        }
    }
}

/// One export job.
struct Job {
    id: String,
    owner: Principal,
    /// The kick-off URL, for the manifest's `request`.
    request: String,
    transaction_time: UnixMillis,
    dir: PathBuf,
    /// Resources written so far (`X-Progress`).
    written: AtomicU64,
    state: Mutex<JobState>,
    /// The running task; taken by whoever removes the job.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Job {
    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone)]
enum JobState {
    Running,
    Done(Vec<Output>),
    Failed,
}

/// One written file.
#[derive(Debug, Clone)]
struct Output {
    resource_type: String,
    file: String,
    count: u64,
}

/// Which resources an export covers.
#[derive(Debug, Clone)]
enum Level {
    System,
    /// Every patient and their compartments.
    Patient,
    /// The group's member patients (ids) and their compartments.
    Group(String),
}

/// A checked kick-off request.
#[derive(Debug, Clone, Default)]
struct Request {
    types: Vec<&'static str>,
    since: Option<UnixMillis>,
    until: Option<UnixMillis>,
    /// `_typeFilter`: per type, searches of which a resource must match one (types without
    /// an entry are not filtered). Their chains are answered at the kick-off.
    filters: BTreeMap<&'static str, Vec<fhir_query::Search>>,
    /// `_elements`: the top-level elements written.
    elements: Elements,
    /// `patient`: only these patients (ids) and their compartments.
    patients: Option<Vec<String>>,
    /// The parameters as given, for the audit record.
    echo: Vec<(String, String)>,
}

/// `_elements`: `element` for every type, `Type.element` for one.
#[derive(Debug, Clone, Default)]
struct Elements {
    all: Vec<String>,
    by_type: Vec<(&'static str, String)>,
}

impl Elements {
    /// The elements written of a `resource_type` resource; empty: all of them.
    fn of(&self, resource_type: &str) -> Vec<String> {
        let mut out = self.all.clone();
        out.extend(
            self.by_type
                .iter()
                .filter(|(t, _)| *t == resource_type)
                .map(|(_, e)| e.clone()),
        );
        out
    }
}

/// `_typeFilter` values: one query each (repeated), or several joined by commas as Bulk Data
/// v1 wrote them. A comma inside a query (`code=a,b`, an OR) stays there: a new query starts
/// only where a resource type and `?` follow the comma.
fn split_filters(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let starts_query = rest
            .split_once('?')
            .is_some_and(|(t, _)| fhir::RESOURCE_TYPES.contains(&t));
        if starts_query {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .collect()
}

/// The id of a Patient reference: `Patient/1`, or an absolute URL ending in it.
fn patient_id(reference: &str) -> Option<String> {
    let mut parts = reference.trim().trim_end_matches('/').rsplit('/');
    let id = parts.next().filter(|id| !id.is_empty())?;
    (parts.next()? == "Patient").then(|| id.to_owned())
}

/// The resource types an export can hold: those the API serves (Subscription, which may hold
/// a receiver's credentials in its headers, is not one).
fn exportable() -> impl Iterator<Item = &'static str> {
    fhir::RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "Bundle" | "OperationOutcome"))
}

/// Reads `Prefer`: whether it asks `respond-async`, and `handling=lenient`.
fn prefer(headers: &HeaderMap) -> (bool, bool) {
    let mut async_ = false;
    let mut lenient = false;
    for v in headers.get_all("prefer") {
        for token in v.to_str().unwrap_or("").split([',', ';']) {
            match token.trim().to_ascii_lowercase().replace(' ', "").as_str() {
                "respond-async" => async_ = true,
                "handling=lenient" => lenient = true,
                _ => {}
            }
        }
    }
    (async_, lenient)
}

/// Checks the kick-off parameters and the caller's access to the types asked for.
fn check(
    level: &Level,
    who: &Principal,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> ApiResult<Request> {
    let (respond_async, lenient) = prefer(headers);
    if !respond_async {
        return Err(ApiError::bad_request(
            "$export needs the header Prefer: respond-async",
        ));
    }
    let allowed: Vec<&'static str> = match level {
        Level::System => exportable().collect(),
        Level::Patient | Level::Group(_) => compartment_types(),
    };
    let mut asked: Vec<&'static str> = Vec::new();
    let mut request = Request::default();
    for (k, v) in pairs {
        let known = match k.as_str() {
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&v.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "_outputFormat {v:?} is not supported (application/fhir+ndjson)"
                    )));
                }
                true
            }
            "_type" => {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    let known = allowed_type(&allowed, "_type", t)?;
                    if !asked.contains(&known) {
                        asked.push(known);
                    }
                }
                true
            }
            "_since" => {
                request.since = Some(instant_param("_since", v)?);
                true
            }
            "_until" => {
                request.until = Some(instant_param("_until", v)?);
                true
            }
            "_typeFilter" => {
                for f in split_filters(v) {
                    let (t, search) = fhir_query::parse_selection("_typeFilter", f)
                        .map_err(|e| ApiError::bad_request(e.0))?;
                    let t = allowed_type(&allowed, "_typeFilter", &t)?;
                    request.filters.entry(t).or_default().push(search);
                }
                true
            }
            "_elements" => {
                for e in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    match e.split_once('.') {
                        Some((t, name)) if fhir_query::is_element_name(name) => {
                            let t = allowed_type(&allowed, "_elements", t)?;
                            request.elements.by_type.push((t, name.to_owned()));
                        }
                        None if fhir_query::is_element_name(e) => {
                            request.elements.all.push(e.to_owned())
                        }
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "_elements: {e:?} is not an element name (top-level elements, e.g. code or Observation.value)"
                            )));
                        }
                    }
                }
                true
            }
            "patient" => {
                if matches!(level, Level::System) {
                    return Err(ApiError::bad_request(
                        "patient applies to Patient and Group exports, not to a system export",
                    ));
                }
                let listed = request.patients.get_or_insert_with(Vec::new);
                for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    let id = patient_id(r).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "patient: {r:?} is not a Patient reference (Patient/[id])"
                        ))
                    })?;
                    listed.push(id);
                }
                true
            }
            // Lenient handling ignores what it does not implement, as FHIR defines it.
            _ if lenient => false,
            other if UNSUPPORTED.contains(&other) => {
                return Err(ApiError::bad_request(format!(
                    "$export parameter {other} is not supported (Prefer: handling=lenient ignores it)"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "$export parameter {other} is not supported"
                )));
            }
        };
        if known {
            request.echo.push((k.clone(), v.clone()));
        }
    }
    if let (Some(since), Some(until)) = (request.since, request.until)
        && until.0 < since.0
    {
        return Err(ApiError::bad_request("_until is before _since"));
    }
    if let Some(listed) = &mut request.patients {
        if listed.is_empty() {
            return Err(ApiError::bad_request("patient names no Patient"));
        }
        listed.sort();
        listed.dedup();
    }
    // A filter narrows a type that is exported; it cannot add one `_type` left out.
    if !asked.is_empty()
        && let Some(t) = request.filters.keys().find(|t| !asked.contains(t))
    {
        return Err(ApiError::bad_request(format!(
            "_typeFilter: {t} is not among the types of _type"
        )));
    }
    // The compartments are found through the patients.
    if !matches!(level, Level::System) {
        who.require_fhir("Patient", Access::Read)?;
    }
    if let Level::Group(_) = level {
        who.require_fhir("Group", Access::Read)?;
    }
    request.types = if asked.is_empty() {
        // No `_type`: every type the caller may read (the spec's "within the scope of the
        // client authorization").
        let mine: Vec<&'static str> = allowed
            .into_iter()
            .filter(|t| who.require_fhir(t, Access::Read).is_ok())
            .collect();
        if mine.is_empty() {
            return Err(ApiError::forbidden(
                "the access token's scopes do not allow to read any exported type",
            ));
        }
        // A filter on a type the caller may not read would silently export nothing of it.
        for t in request.filters.keys() {
            who.require_fhir(t, Access::Read)?;
        }
        mine
    } else {
        // Types asked for by name must all be allowed: a silently shorter export would look
        // complete to the client.
        for t in &asked {
            who.require_fhir(t, Access::Read)?;
        }
        asked
    };
    Ok(request)
}

/// `t` if an export at this level may hold it: 400 naming `param` otherwise.
fn allowed_type(allowed: &[&'static str], param: &str, t: &str) -> ApiResult<&'static str> {
    allowed.iter().copied().find(|a| *a == t).ok_or_else(|| {
        let why = if exportable().any(|e| e == t) {
            "is not in the Patient compartment"
        } else {
            "is not a resource type this server exports"
        };
        ApiError::bad_request(format!("{param}: {t} {why}"))
    })
}

/// The `parameter` of a `Parameters` body as query pairs.
fn parameters(body: &Bytes) -> ApiResult<Vec<(String, String)>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if v["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(
            "the body of a POST $export must be a Parameters resource",
        ));
    }
    let mut out = Vec::new();
    for p in v["parameter"].as_array().into_iter().flatten() {
        let name = p["name"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request("Parameters.parameter.name is required"))?;
        let value = ["valueString", "valueInstant", "valueCode", "valueUri"]
            .iter()
            .find_map(|k| p[*k].as_str())
            .or_else(|| p["valueReference"]["reference"].as_str())
            .unwrap_or_default();
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Kick-off
// ---------------------------------------------------------------------------------------

pub(crate) async fn system(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    kick_off(state, who, peer, headers, Level::System, raw, pairs).await
}

pub(crate) async fn system_post(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let pairs = parameters(&body)?;
    kick_off(state, who, peer, headers, Level::System, None, pairs).await
}

pub(crate) async fn patient(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    kick_off(state, who, peer, headers, Level::Patient, raw, pairs).await
}

pub(crate) async fn patient_post(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let pairs = parameters(&body)?;
    kick_off(state, who, peer, headers, Level::Patient, None, pairs).await
}

pub(crate) async fn group(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    kick_off(state, who, peer, headers, Level::Group(id), raw, pairs).await
}

pub(crate) async fn group_post(
    state: State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let pairs = parameters(&body)?;
    kick_off(state, who, peer, headers, Level::Group(id), None, pairs).await
}

fn exports(state: &AppState) -> ApiResult<Arc<Exports>> {
    state.exports.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueCode::NotSupported,
            "bulk data export is not enabled on this server",
        )
    })
}

/// The member patients' ids of a Group resource (`member.entity`, inactive members left out).
fn members(group: &Value) -> Vec<String> {
    let mut out: Vec<String> = group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["inactive"] != Value::Bool(true))
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(patient_id)
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn kick_off(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    headers: HeaderMap,
    level: Level,
    raw: Option<String>,
    pairs: Vec<(String, String)>,
) -> ApiResult<Response> {
    let exports = exports(&state)?;
    let request = check(&level, &who, &headers, &pairs)?;
    let path = match &level {
        Level::System => "$export".to_owned(),
        Level::Patient => "Patient/$export".to_owned(),
        Level::Group(id) => format!("Group/{id}/$export"),
    };
    let url = match raw.as_deref() {
        Some(q) if !q.is_empty() => format!("{}/{path}?{q}", state.fhir_base),
        _ => format!("{}/{path}", state.fhir_base),
    };
    // The audit record: the types exported and the parameters as given (encrypted like every
    // audit query: a filter may name a patient).
    let mut query = format!("_type={}", request.types.join(","));
    for (k, v) in request.echo.iter().filter(|(k, _)| k != "_type") {
        query.push('&');
        query.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .append_pair(k, v)
                .finish(),
        );
    }
    let query = Some(query);
    let entity = path.clone();
    super::audited(
        &state,
        &who,
        AuditAction::Operation,
        entity,
        query,
        peer.text(),
        async {
            let patients = match &level {
                Level::Group(id) => {
                    let members = match state.store.resource("Group", id, None).await? {
                        Some(g) if !g.deleted => {
                            let v: Value =
                                serde_json::from_slice(&g.json).map_err(ApiError::internal)?;
                            members(&v)
                        }
                        Some(_) => {
                            return Err(ApiError::new(
                                StatusCode::GONE,
                                IssueCode::Deleted,
                                format!("Group/{id} was deleted"),
                            ));
                        }
                        None => {
                            return Err(ApiError::not_found(format!("Group/{id} is not known")));
                        }
                    };
                    match &request.patients {
                        // `patient` narrows the group to some of its members.
                        Some(listed) => {
                            if let Some(p) =
                                listed.iter().find(|p| members.binary_search(p).is_err())
                            {
                                return Err(ApiError::bad_request(format!(
                                    "patient: Patient/{p} is not an active member of Group/{id}"
                                )));
                            }
                            Some(listed.clone())
                        }
                        None => Some(members),
                    }
                }
                Level::Patient => match &request.patients {
                    Some(listed) => {
                        for p in listed {
                            let live = state
                                .store
                                .resource("Patient", p, None)
                                .await?
                                .is_some_and(|r| !r.deleted);
                            if !live {
                                return Err(ApiError::bad_request(format!(
                                    "patient: Patient/{p} is not known"
                                )));
                            }
                        }
                        Some(listed.clone())
                    }
                    None => None,
                },
                Level::System => None,
            };
            // A filter's chains are answered now: the export is of the store as it is at
            // the kick-off.
            let mut filters: BTreeMap<&'static str, Vec<ResourceQuery>> = BTreeMap::new();
            for (t, searches) in &request.filters {
                let kept = filters.entry(t).or_default();
                for search in searches {
                    let mut search = search.clone();
                    if query::resolve_chains(&*state.store, &who, &mut search).await? {
                        kept.push(search.query);
                    }
                }
            }
            let Ok(permit) = exports.slots.clone().try_acquire_owned() else {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    IssueCode::Throttled,
                    format!(
                        "{} exports are running, the most this server runs at once; retry later",
                        exports.config.max_jobs
                    ),
                )
                .into_response();
                e.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                return Ok(e);
            };
            let id = uuid::Uuid::now_v7().simple().to_string();
            let job = Arc::new(Job {
                dir: exports.config.dir.join(&id),
                id: id.clone(),
                owner: who.clone(),
                request: url,
                transaction_time: UnixMillis::now(),
                written: AtomicU64::new(0),
                state: Mutex::new(JobState::Running),
                task: Mutex::new(None),
            });
            tokio::fs::create_dir_all(&job.dir)
                .await
                .map_err(ApiError::internal)?;
            exports.jobs().insert(id.clone(), job.clone());
            let scope = Scope {
                level,
                patients,
                request,
                filters,
            };
            let task = tokio::spawn(run(
                state.clone(),
                exports.clone(),
                job.clone(),
                scope,
                permit,
            ));
            *job.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
            tracing::info!(job = %id, "export started");
            let mut r = StatusCode::ACCEPTED.into_response();
            let location = format!("{}/_export/{id}", state.fhir_base);
            r.headers_mut().insert(
                header::CONTENT_LOCATION,
                HeaderValue::from_str(&location).map_err(ApiError::internal)?,
            );
            Ok(r)
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------

/// What a job exports.
struct Scope {
    level: Level,
    /// The patients whose compartments are exported: a Group's members, or `patient`.
    patients: Option<Vec<String>>,
    request: Request,
    /// `_typeFilter` with its chains answered: per type, queries of which a resource must
    /// match one (an empty list: none can, as a chain found nothing).
    filters: BTreeMap<&'static str, Vec<ResourceQuery>>,
}

/// Runs a job to its end, then keeps its files for the expiry time and removes them.
async fn run(
    state: AppState,
    exports: Arc<Exports>,
    job: Arc<Job>,
    scope: Scope,
    permit: OwnedSemaphorePermit,
) {
    let held = match &exports.config.hold {
        Some(hold) => hold.acquire().await.ok(),
        None => None,
    };
    let result = write_all(&state, &exports.config, &job, &scope).await;
    drop(held);
    // The slot is free once writing ends; the files' wait below takes none.
    drop(permit);
    let (outcome, summary) = match result {
        Ok(outputs) => {
            let summary: Vec<String> = outputs
                .iter()
                .map(|o| format!("{}={}", o.file, o.count))
                .collect();
            tracing::info!(job = %job.id, files = outputs.len(), resources = job.written.load(Ordering::Relaxed), "export complete");
            *job.state() = JobState::Done(outputs);
            (StatusCode::OK, summary.join(","))
        }
        Err(e) => {
            // The cause is logged (never with PHI: store and I/O errors); the files go.
            tracing::error!(job = %job.id, error = %e, "export failed");
            let _ = tokio::fs::remove_dir_all(&job.dir).await;
            *job.state() = JobState::Failed;
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
    };
    let entity = format!("_export/{}", job.id);
    if let Err(e) = audit(
        &state,
        &job.owner,
        AuditAction::Operation,
        entity,
        Some(format!("complete {summary}")),
        outcome,
        None,
    )
    .await
    {
        tracing::error!(job = %job.id, error = %e, "cannot audit an export's completion");
    }
    tokio::time::sleep(exports.config.file_expiry).await;
    // Take the task handle first, so that `remove` does not wait for this very task.
    job.task.lock().unwrap_or_else(|p| p.into_inner()).take();
    exports.remove(&job.id).await;
    tracing::info!(job = %job.id, "export expired");
}

/// One type's output, split into files past the size limit.
struct Writer<'a> {
    config: &'a ExportConfig,
    job: &'a Job,
    resource_type: &'static str,
    file: Option<(tokio::io::BufWriter<tokio::fs::File>, String, u64, u64)>,
    parts: u32,
    done: Vec<Output>,
}

impl Writer<'_> {
    async fn line(&mut self, value: &Value) -> std::io::Result<()> {
        if self.file.is_none() {
            self.parts += 1;
            let name = if self.parts == 1 {
                format!("{}.ndjson", self.resource_type)
            } else {
                format!("{}.{}.ndjson", self.resource_type, self.parts)
            };
            let f = tokio::fs::File::create(self.job.dir.join(&name)).await?;
            self.file = Some((tokio::io::BufWriter::new(f), name, 0, 0));
        }
        let mut bytes = serde_json::to_vec(value)?;
        bytes.push(b'\n');
        let Some((w, _, size, count)) = self.file.as_mut() else {
            return Ok(());
        };
        w.write_all(&bytes).await?;
        *size += bytes.len() as u64;
        *count += 1;
        self.job.written.fetch_add(1, Ordering::Relaxed);
        if *size >= self.config.max_file_bytes {
            self.close().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> std::io::Result<()> {
        if let Some((mut w, file, _, count)) = self.file.take() {
            w.flush().await?;
            w.into_inner().sync_all().await?;
            self.done.push(Output {
                resource_type: self.resource_type.to_owned(),
                file,
                count,
            });
        }
        Ok(())
    }
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("writing an export file: {e}"))
}

/// Writes every type's files; the outputs in type order.
async fn write_all(
    state: &AppState,
    config: &ExportConfig,
    job: &Job,
    scope: &Scope,
) -> ApiResult<Vec<Output>> {
    let mut outputs = Vec::new();
    // Not after the job's start (nor `_until`), and not before `_since`.
    let upper = scope
        .request
        .until
        .map_or(job.transaction_time.0, |u| u.0.min(job.transaction_time.0));
    let mut window = vec![DateTest {
        prefix: DatePrefix::Le,
        lo: upper,
        hi: upper,
    }];
    if let Some(since) = scope.request.since {
        window.push(DateTest {
            prefix: DatePrefix::Ge,
            lo: since.0,
            hi: since.0,
        });
    }
    for t in &scope.request.types {
        let mut w = Writer {
            config,
            job,
            resource_type: t,
            file: None,
            parts: 0,
            done: Vec::new(),
        };
        // One query per chunk of patients for a Group or a `patient` list, one for the others.
        let chosen: Vec<ResourceQuery> = match (&scope.level, &scope.patients) {
            (_, Some(ids)) => ids
                .chunks(MEMBER_CHUNK)
                .map(|chunk| {
                    if *t == "Patient" {
                        ResourceQuery {
                            ids: chunk.to_vec(),
                            ..query(t, &window, Vec::new())
                        }
                    } else {
                        let refs = chunk
                            .iter()
                            .map(|id| IndexTest {
                                param: format!("{t}.patient"),
                                test: ValueTest::Reference(format!("Patient/{id}")),
                            })
                            .collect();
                        query(t, &window, vec![refs])
                    }
                })
                .collect(),
            (Level::Patient, None) if *t != "Patient" => vec![query(
                t,
                &window,
                vec![vec![IndexTest {
                    param: format!("{t}.patient"),
                    test: ValueTest::Missing(false),
                }]],
            )],
            _ => vec![query(t, &window, Vec::new())],
        };
        // `_typeFilter`: each query once per filter, narrowed by it.
        let filters = scope.filters.get(t);
        let queries: Vec<ResourceQuery> = match filters {
            None => chosen,
            Some(filters) => chosen
                .iter()
                .flat_map(|q| filters.iter().filter_map(|f| narrowed(q, f)))
                .collect(),
        };
        // A resource matching several filters is written once: the ids written are kept
        // (ids only) when there are several filters.
        let mut written: Option<HashSet<String>> =
            filters.is_some_and(|f| f.len() > 1).then(HashSet::new);
        let elements = scope.request.elements.of(t);
        for mut q in queries {
            loop {
                let page = state.store.search_resources(q.clone()).await?;
                for r in &page.resources {
                    if let Some(seen) = &mut written
                        && !seen.insert(r.id.clone())
                    {
                        continue;
                    }
                    let mut v = render(r)?;
                    if !elements.is_empty() {
                        super::subset(&mut v, &elements);
                    }
                    w.line(&v).await.map_err(io_error)?;
                }
                if (page.resources.len() as u32) < PAGE {
                    break;
                }
                q.offset += PAGE;
            }
        }
        w.close().await.map_err(io_error)?;
        outputs.append(&mut w.done);
    }
    Ok(outputs)
}

/// `q` narrowed by a `_typeFilter` search `f`: both must hold. `None` when their `_id` lists
/// share no id (nothing can match).
fn narrowed(q: &ResourceQuery, f: &ResourceQuery) -> Option<ResourceQuery> {
    let mut out = q.clone();
    if !f.ids.is_empty() {
        out.ids = if q.ids.is_empty() {
            f.ids.clone()
        } else {
            q.ids
                .iter()
                .filter(|id| f.ids.contains(id))
                .cloned()
                .collect()
        };
        if out.ids.is_empty() {
            return None;
        }
    }
    out.last_updated.extend(f.last_updated.iter().cloned());
    out.clauses.extend(f.clauses.iter().cloned());
    Some(out)
}

/// Live resources of `t` in the time window, oldest first (so that paging by offset meets
/// each once while newer writes land after the window).
fn query(t: &str, window: &[DateTest], clauses: Vec<Vec<IndexTest>>) -> ResourceQuery {
    ResourceQuery {
        resource_type: t.to_owned(),
        last_updated: window.to_vec(),
        clauses,
        sort: ResourceSort::last_updated_asc(),
        count: PAGE,
        ..ResourceQuery::default()
    }
}

// ---------------------------------------------------------------------------------------
// Status, cancel, download
// ---------------------------------------------------------------------------------------

pub(crate) async fn status(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let exports = exports(&state)?;
    let job = exports.job_for(&id, &who)?;
    let current = job.state().clone();
    match current {
        JobState::Running => {
            let mut r = StatusCode::ACCEPTED.into_response();
            let h = r.headers_mut();
            let progress = format!("{} resources written", job.written.load(Ordering::Relaxed));
            h.insert(
                "x-progress",
                HeaderValue::from_str(&progress).map_err(ApiError::internal)?,
            );
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            Ok(r)
        }
        JobState::Failed => Err(ApiError::internal(format!("export {id} failed"))),
        JobState::Done(outputs) => {
            let entity = format!("_export/{id}");
            super::audited(
                &state,
                &who,
                AuditAction::Read,
                entity,
                None,
                peer.text(),
                async {
                    let output: Vec<Value> = outputs
                        .iter()
                        .map(|o| {
                            json!({
                                "type": o.resource_type,
                                "url": format!("{}/_export/{id}/{}", state.fhir_base, o.file),
                                "count": o.count,
                            })
                        })
                        .collect();
                    let manifest = json!({
                        "transactionTime": instant(job.transaction_time),
                        "request": job.request,
                        "requiresAccessToken": true,
                        "output": output,
                        "error": [],
                    });
                    let mut r = (StatusCode::OK, manifest.to_string()).into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    if let Ok(v) = HeaderValue::from_str(&instant(job.transaction_time)) {
                        r.headers_mut().insert("x-transaction-time", v);
                    }
                    Ok(r)
                },
            )
            .await
        }
    }
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let exports = exports(&state)?;
    exports.job_for(&id, &who)?;
    let entity = format!("_export/{id}");
    super::audited(
        &state,
        &who,
        AuditAction::Delete,
        entity,
        None,
        peer.text(),
        async {
            exports.remove(&id).await;
            tracing::info!(job = %id, "export cancelled");
            Ok(StatusCode::ACCEPTED.into_response())
        },
    )
    .await
}

pub(crate) async fn download(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Path((id, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let exports = exports(&state)?;
    let job = exports.job_for(&id, &who)?;
    // Only a file of the manifest: the name never reaches the file system otherwise.
    let known = match &*job.state() {
        JobState::Done(outputs) => outputs.iter().any(|o| o.file == file),
        _ => false,
    };
    let entity = format!("_export/{id}/{file}");
    super::audited(
        &state,
        &who,
        AuditAction::Read,
        entity,
        None,
        peer.text(),
        async {
            if !known {
                return Err(ApiError::not_found(format!(
                    "export {id} has no file {file}"
                )));
            }
            let f = tokio::fs::File::open(job.dir.join(&file))
                .await
                .map_err(ApiError::internal)?;
            let len = f.metadata().await.map_err(ApiError::internal)?.len();
            let stream = futures_util::stream::unfold(f, |mut f| async move {
                let mut buf = vec![0u8; DOWNLOAD_CHUNK];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            let mut r = Response::new(Body::from_stream(stream));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            Ok(r)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_members_are_patient_references_of_active_members() {
        let g = json!({"member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "http://h/fhir/Patient/b"}},
            {"entity": {"reference": "Patient/c"}, "inactive": true},
            {"entity": {"reference": "Practitioner/d"}},
            {"entity": {"reference": "Patient/a"}},
        ]});
        assert_eq!(members(&g), vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn prefer_reads_tokens_in_any_order_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            "prefer",
            HeaderValue::from_static("handling=lenient, Respond-Async"),
        );
        assert_eq!(prefer(&h), (true, true));
        h.insert("prefer", HeaderValue::from_static("respond-sync"));
        assert_eq!(prefer(&h), (false, false));
    }
}
