//! Sender (vendor) profiles of the FHIR conversion (`[channel.fhir] profiles`):
//! `GET /api/profiles` lists each channel's profiles with their code maps, and
//! `POST /api/profiles/mappings` adds one entry to a code map (the "add a mapping" button of the
//! unmapped-codes page).
//!
//! Adding a mapping edits the profile's TOML file in place with `toml_edit`, so comments, order and
//! layout stay as the analyst wrote them; the entry records who added it and when. The new text is
//! read as a profile first, then written atomically (temporary file, fsync, rename), then the whole
//! profile set is read again with the same loader as `causeway check`: if it no longer loads, the
//! old file is put back and the request refused. On success every channel converting with that
//! profile set takes the new set for its next message, without a restart. Edits are serialized in
//! this process; two servers editing the same files must not be run.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use causeway_engine::fhir::FhirConversion;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ErrorBody, api, audited};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{PeerAddr, Principal, Role};
use crate::error::{ApiError, ApiResult};

/// Longest code, system or display accepted in a new mapping.
pub const MAX_MAPPING_TEXT: usize = 256;

/// Every channel's sender profiles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    pub channels: Vec<ChannelProfiles>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelProfiles {
    pub channel: String,
    /// The profile file or folder (`[channel.fhir] profiles`); empty when none is configured.
    pub source: String,
    pub profiles: Vec<ProfileView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub name: String,
    pub description: Option<String>,
    /// MSH-3.1 it is for (`null`: any).
    pub sender_application: Option<String>,
    /// MSH-4.1 it is for (`null`: any).
    pub sender_facility: Option<String>,
    pub code_maps: Vec<CodeMapView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeMapView {
    pub name: String,
    pub description: Option<String>,
    /// Fields it applies to, e.g. `OBX-5`.
    pub fields: Vec<String>,
    /// Only in OBX with this OBX-3.1.
    pub observation: Option<String>,
    /// The sender's code system it expects (`null`: any).
    pub source_system: Option<String>,
    /// `pass`, `reject` or `hold`.
    pub unmapped: String,
    pub entries: Vec<EntryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    pub code: String,
    /// The concept it means; `null` when it means nothing to record.
    pub target: Option<Target>,
    /// What it means when it records nothing.
    pub nothing: Option<String>,
    pub added_by: String,
    pub added_at: String,
    pub comment: Option<String>,
}

/// A concept in a standard code system.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// A mapping to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMapping {
    pub channel: String,
    /// The profile's name; needed only when several of the channel's profiles have the map.
    pub profile: Option<String>,
    /// The code map's name.
    pub map: String,
    /// The sender's code.
    pub code: String,
    /// The sender's code system, when given checked against the map's `source_system`.
    pub system: Option<String>,
    pub target: Target,
}

/// A mapping added.
#[derive(Debug, Serialize, ToSchema)]
pub struct MappingAdded {
    pub channel: String,
    pub profile: String,
    pub map: String,
    pub code: String,
    /// The file edited.
    pub file: String,
    /// The new entry's author and date.
    pub added_by: String,
    pub added_at: String,
    /// Channels now converting with the new profile set.
    pub channels: Vec<String>,
}

fn view(p: &v2fhir::Profile) -> ProfileView {
    ProfileView {
        name: p.name.clone(),
        description: p.description.clone(),
        sender_application: p.sender_application.clone(),
        sender_facility: p.sender_facility.clone(),
        code_maps: p
            .code_maps
            .iter()
            .map(|m| CodeMapView {
                name: m.name.clone(),
                description: m.description.clone(),
                fields: m.fields.clone(),
                observation: m.observation.clone(),
                source_system: m.source_system.clone(),
                unmapped: match m.unmapped {
                    v2fhir::profile::UnmappedPolicy::Pass => "pass",
                    v2fhir::profile::UnmappedPolicy::Reject => "reject",
                    v2fhir::profile::UnmappedPolicy::Hold => "hold",
                }
                .into(),
                entries: m
                    .entries
                    .iter()
                    .map(|e| {
                        let (target, nothing) = match &e.meaning {
                            v2fhir::profile::Meaning::Concept {
                                system,
                                code,
                                display,
                            } => (
                                Some(Target {
                                    system: system.clone(),
                                    code: code.clone(),
                                    display: display.clone(),
                                }),
                                None,
                            ),
                            v2fhir::profile::Meaning::Nothing { display } => {
                                (None, Some(display.clone()))
                            }
                        };
                        EntryView {
                            code: e.code.clone(),
                            target,
                            nothing,
                            added_by: e.added_by.clone(),
                            added_at: e.added_at.clone(),
                            comment: e.comment.clone(),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// List sender profiles.
///
/// Per channel that converts to FHIR: its sender profiles, which senders they match, and their
/// code maps with every entry (who added it and when).
#[utoipa::path(
    get,
    path = "/api/profiles",
    tag = "profiles",
    responses(
        (status = 200, description = "The profiles, by channel", body = ProfileList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the viewer role", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<ProfileList>> {
    api(async {
        who.require_role(Role::Viewer)?;
        let channels = state
            .channels
            .values()
            .filter_map(|c| {
                let conv = c.fhir.get()?;
                Some(ChannelProfiles {
                    channel: c.name.clone(),
                    source: conv.source.display().to_string(),
                    profiles: conv.profiles.iter().map(view).collect(),
                })
            })
            .collect();
        Ok(Json(ProfileList { channels }))
    })
    .await
}

/// Add a mapping.
///
/// Adds an entry (`code` -> `target`) to a code map of the channel's sender profile, in the
/// profile's TOML file (comments and order kept; `added_by` is the signed-in user, `added_at`
/// today). The profile set is checked again as `causeway check` does and takes effect for the
/// next message, without a restart. Refused: an unknown channel, profile or map (404), a
/// channel without profiles or a code the map already has (409), a bad body (400).
#[utoipa::path(
    post,
    path = "/api/profiles/mappings",
    tag = "profiles",
    request_body = NewMapping,
    responses(
        (status = 200, description = "Added and in effect", body = MappingAdded),
        (status = 400, description = "A malformed body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a user with the operator role", body = ErrorBody),
        (status = 404, description = "No such channel, profile or code map", body = ErrorBody),
        (status = 409, description = "No profiles on the channel, or the code is already mapped", body = ErrorBody),
        (status = 422, description = "The edited profile set does not load; nothing changed", body = ErrorBody),
    ),
)]
pub(super) async fn add_mapping(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    body: Result<Json<NewMapping>, JsonRejection>,
) -> ApiResult<Json<MappingAdded>> {
    api(async {
        who.require_role(Role::Operator)?;
        let Json(m) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let entity = format!(
            "Profile/{}/code_map/{}",
            m.profile.as_deref().unwrap_or("*"),
            m.map
        );
        audited(
            &state,
            &who,
            AuditAction::Update,
            entity,
            None,
            peer.text(),
            add(&state, &who, m),
        )
        .await
        .map(Json)
    })
    .await
}

fn check_text(name: &str, v: &str) -> ApiResult<()> {
    if v.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{name}: must not be empty")));
    }
    if v.chars().count() > MAX_MAPPING_TEXT {
        return Err(ApiError::bad_request(format!(
            "{name}: at most {MAX_MAPPING_TEXT} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{name}: control characters are not allowed"
        )));
    }
    Ok(())
}

async fn add(state: &AppState, who: &Principal, m: NewMapping) -> ApiResult<MappingAdded> {
    check_text("channel", &m.channel)?;
    check_text("map", &m.map)?;
    check_text("code", &m.code)?;
    check_text("target.system", &m.target.system)?;
    check_text("target.code", &m.target.code)?;
    for (name, v) in [
        ("profile", &m.profile),
        ("system", &m.system),
        ("target.display", &m.target.display),
    ] {
        if let Some(v) = v {
            check_text(name, v)?;
        }
    }
    let c = super::channel(state, &m.channel)?;
    let conv = c
        .fhir
        .get()
        .filter(|f| !f.profiles.is_empty() && !f.source.as_os_str().is_empty())
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "channel {:?} has no sender profiles ([channel.fhir] profiles)",
                c.name
            ))
        })?;
    let candidates: Vec<&v2fhir::Profile> = conv
        .profiles
        .iter()
        .filter(|p| m.profile.as_ref().is_none_or(|n| &p.name == n))
        .filter(|p| p.code_maps.iter().any(|cm| cm.name == m.map))
        .collect();
    let profile = match candidates.as_slice() {
        [] => {
            return Err(ApiError::not_found(match &m.profile {
                Some(p) if !conv.profiles.iter().any(|x| &x.name == p) => {
                    format!("channel {:?} has no profile named {p:?}", c.name)
                }
                Some(p) => format!("profile {p:?} has no code map named {:?}", m.map),
                None => format!(
                    "no profile of channel {:?} has a code map named {:?}",
                    c.name, m.map
                ),
            }));
        }
        [one] => *one,
        several => {
            let names: Vec<&str> = several.iter().map(|p| p.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "profiles {} each have a code map named {:?}: say which with \"profile\"",
                names.join(", "),
                m.map
            )));
        }
    };
    let map = profile
        .code_maps
        .iter()
        .find(|cm| cm.name == m.map)
        .ok_or_else(|| ApiError::internal("code map vanished"))?;
    if let (Some(system), Some(expected)) = (&m.system, &map.source_system)
        && system != expected
    {
        return Err(ApiError::bad_request(format!(
            "code map {:?} is for codes of system {expected:?}, not {system:?}",
            m.map
        )));
    }
    if let Some(e) = map.entries.iter().find(|e| e.code == m.code) {
        return Err(ApiError::conflict(format!(
            "code {:?} is already mapped in code map {:?} of profile {:?} (added by {} on {})",
            m.code, m.map, profile.name, e.added_by, e.added_at
        )));
    }
    let added_at = jiff::ZonedDateTime::now().date().to_string();
    let added_by = who.subject.clone();
    let source = conv.source.clone();
    let profile_name = profile.name.clone();
    let (map_name, code, target) = (m.map.clone(), m.code.clone(), m.target.clone());
    let (by, at) = (added_by.clone(), added_at.clone());
    // One edit at a time in this process: two read-modify-writes of one file would lose one.
    static EDITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _edit = EDITS.lock().await;
    let (file, profiles) = tokio::task::spawn_blocking(move || {
        edit_profile_file(&source, &profile_name, &map_name, &code, &target, &by, &at)
    })
    .await
    .map_err(ApiError::internal)??;
    let new = Arc::new(FhirConversion {
        source: conv.source.clone(),
        profiles,
    });
    let mut channels = Vec::new();
    for other in state.channels.values() {
        if other.fhir.get().is_some_and(|f| f.source == conv.source) {
            other.fhir.replace(new.clone());
            channels.push(other.name.clone());
        }
    }
    tracing::info!(channel = %c.name, profile = %profile.name, map = %m.map, code = %m.code, user = %who.subject, "code map entry added");
    Ok(MappingAdded {
        channel: c.name.clone(),
        profile: profile.name.clone(),
        map: m.map,
        code: m.code,
        file: file.display().to_string(),
        added_by,
        added_at,
        channels,
    })
}

/// The file of the profile named `name` in `source` (a file, or a folder of `*.toml`).
fn profile_file(source: &FsPath, name: &str) -> ApiResult<PathBuf> {
    if !source.is_dir() {
        return Ok(source.to_path_buf());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(source)
        .map_err(ApiError::internal)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if v2fhir::Profile::from_toml(&text, &f.display().to_string()).is_ok_and(|p| p.name == name)
        {
            return Ok(f);
        }
    }
    Err(ApiError::not_found(format!(
        "no file in {} holds profile {name:?} any more",
        source.display()
    )))
}

/// Adds the entry to the file, checks the file and the whole set, and returns the set.
fn edit_profile_file(
    source: &FsPath,
    profile: &str,
    map: &str,
    code: &str,
    target: &Target,
    added_by: &str,
    added_at: &str,
) -> ApiResult<(PathBuf, Vec<v2fhir::Profile>)> {
    use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};
    let file = profile_file(source, profile)?;
    let old = std::fs::read_to_string(&file).map_err(ApiError::internal)?;
    let mut doc: DocumentMut = old
        .parse()
        .map_err(|e| ApiError::unprocessable(format!("{} does not parse: {e}", file.display())))?;
    let maps = doc
        .get_mut("code_map")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| ApiError::not_found(format!("{} has no code maps", file.display())))?;
    let table = maps
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(map))
        .ok_or_else(|| {
            ApiError::not_found(format!("{} has no code map named {map:?}", file.display()))
        })?;
    if table.get("entry").is_none() {
        table.insert("entry", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let entries = table
        .get_mut("entry")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "{}: the entries of code map {map:?} are not written as [[code_map.entry]] tables",
                file.display()
            ))
        })?;
    let mut t = InlineTable::new();
    t.insert("system", target.system.as_str().into());
    t.insert("code", target.code.as_str().into());
    if let Some(d) = &target.display {
        t.insert("display", d.as_str().into());
    }
    let mut entry = Table::new();
    entry.insert("code", value(code));
    entry.insert("target", value(t));
    entry.insert("added_by", value(added_by));
    entry.insert("added_at", value(added_at));
    entries.push(entry);
    let text = doc.to_string();
    if let Err(errors) = v2fhir::Profile::from_toml(&text, &file.display().to_string()) {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(ApiError::unprocessable(format!(
            "the edited profile would not load: {}",
            lines.join("; ")
        )));
    }
    causeway_engine::drift::write_atomically(&file, text.as_bytes()).map_err(ApiError::internal)?;
    match causeway_engine::fhir::load_profiles(source) {
        Ok(profiles) => Ok((file, profiles)),
        Err(errors) => {
            // Put the file back as it was: the running set stays the one in effect.
            let _ = causeway_engine::drift::write_atomically(&file, old.as_bytes());
            Err(ApiError::unprocessable(format!(
                "the profile set would not load: {}",
                errors.join("; ")
            )))
        }
    }
}
