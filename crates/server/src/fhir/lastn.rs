//! `GET /fhir/Observation/$lastn`: a patient's most recent observations of each code (R4's
//! [Observation-lastn](http://hl7.org/fhir/R4/observation-operation-lastn.html) operation),
//! what a chart's "latest vitals" or "latest labs" panel asks for in one request.
//!
//! The search parameters of Observation choose the observations (the patient is required);
//! `max` says how many of each code come back, the most recent (by `effective[x]`) first.
//! Observations are grouped by their LOINC coding when they have one, else their first
//! coding, else their code's text.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use causeway_store::{ResourcePage, StoredResource};
use serde_json::{Value, json};

use super::{audited, fhir_response_shown, present, query, query_text, render, search_entry};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult};

/// Most observations of one code `max` may ask for.
pub const MAX_PER_CODE: u32 = 1000;

/// Observations read at most for one request (the most recent first): a patient with more
/// matching observations gets the groups these make, and a warning saying so.
pub const SCAN_LIMIT: u32 = 10_000;

/// Observations read from the store per page.
const PAGE: u32 = causeway_store::resources::MAX_RESOURCE_PAGE;

const LOINC: &str = "http://loinc.org";

/// What observations are grouped by: their LOINC coding, else their first coding, else the
/// code's text.
fn code_key(observation: &Value) -> String {
    let code = &observation["code"];
    let codings = code["coding"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let chosen = codings
        .iter()
        .find(|c| c["system"] == LOINC)
        .or_else(|| codings.first());
    match chosen {
        Some(c) => format!(
            "{}|{}",
            c["system"].as_str().unwrap_or_default(),
            c["code"].as_str().unwrap_or_default()
        ),
        None => format!("text:{}", code["text"].as_str().unwrap_or_default()),
    }
}

/// True when the parameters name the patient (`patient`, `subject`, or a chain through them).
fn names_patient(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, _)| {
        let name = k.split([':', '.']).next().unwrap_or_default();
        matches!(name, "patient" | "subject")
    })
}

pub(super) async fn lastn(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    who.require_fhir("Observation", Access::Read)?;
    let mut max = 1u32;
    let mut selection = Vec::new();
    for (k, v) in &pairs {
        let name = k.split(':').next().unwrap_or_default();
        match name {
            "max" => {
                max = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PER_CODE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "$lastn parameter max: expected a whole number from 1 to {MAX_PER_CODE}"
                        ))
                    })?;
            }
            "_sort" | "_count" | "_offset" | "_include" | "_revinclude" | "_summary" => {
                return Err(ApiError::bad_request(format!(
                    "$lastn parameter {k} is not supported: the operation orders and groups its answer itself"
                )));
            }
            _ => selection.push((k.clone(), v.clone())),
        }
    }
    if !names_patient(&selection) {
        return Err(ApiError::bad_request(
            "$lastn needs the patient: patient=[id] or subject=Patient/[id]",
        ));
    }
    // The most recent first; what a group takes is the first `max` it meets.
    selection.push(("_sort".into(), "-date".into()));
    let mut parsed = query::parse("Observation", &selection)?;
    parsed.query.count = PAGE;
    audited(
        &state,
        &who,
        AuditAction::Search,
        "Observation/$lastn".to_owned(),
        query_text(&pairs),
        peer.text(),
        async {
            let mut groups: Vec<Vec<StoredResource>> = Vec::new();
            let mut group_of: HashMap<String, usize> = HashMap::new();
            let mut scanned = 0u32;
            let mut cut = false;
            if query::resolve_chains(&*state.store, &who, &mut parsed).await? {
                let mut q = parsed.query.clone();
                loop {
                    let ResourcePage { resources, .. } =
                        state.store.search_resources(q.clone()).await?;
                    let read = resources.len() as u32;
                    for r in resources {
                        let v: Value =
                            serde_json::from_slice(&r.json).map_err(ApiError::internal)?;
                        let next = groups.len();
                        let g = *group_of.entry(code_key(&v)).or_insert(next);
                        if g == next {
                            groups.push(Vec::new());
                        }
                        if groups[g].len() < max as usize {
                            groups[g].push(r);
                        }
                    }
                    scanned += read;
                    if read < q.count {
                        break;
                    }
                    if scanned >= SCAN_LIMIT {
                        cut = true;
                        break;
                    }
                    q.offset += q.count;
                }
            }
            let mut entries = Vec::new();
            for r in groups.iter().flatten() {
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
            let total = entries.len();
            if cut {
                entries.push(super::cut_short_entry(&format!(
                    "only the {SCAN_LIMIT} most recent matching observations were read; \
                     older codes may be missing: narrow the search (code, category, date)"
                )));
            }
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "link": [{
                    "relation": "self",
                    "url": format!(
                        "{}/Observation/$lastn?{}",
                        state.fhir_base,
                        form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(&pairs)
                            .finish()
                    ),
                }],
                "entry": entries,
            });
            Ok(fhir_response_shown(
                StatusCode::OK,
                &bundle,
                parsed.presentation.pretty,
            ))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_group_by_loinc_then_first_coding_then_text() {
        let both = json!({"code": {"coding": [
            {"system": "urn:local", "code": "HR"},
            {"system": "http://loinc.org", "code": "8867-4"}
        ]}});
        assert_eq!(code_key(&both), "http://loinc.org|8867-4");
        let local = json!({"code": {"coding": [{"system": "urn:local", "code": "HR"}]}});
        assert_eq!(code_key(&local), "urn:local|HR");
        let text = json!({"code": {"text": "heart rate"}});
        assert_eq!(code_key(&text), "text:heart rate");
    }

    #[test]
    fn the_patient_may_be_named_directly_or_through_a_chain() {
        let p = |k: &str| vec![(k.to_owned(), "x".to_owned())];
        assert!(names_patient(&p("patient")));
        assert!(names_patient(&p("subject:Patient")));
        assert!(names_patient(&p("patient.identifier")));
        assert!(!names_patient(&p("category")));
    }
}
