//! `POST /fhir/Patient/$match`: which stored patients a patient record may be (R4's
//! [Patient-match](http://hl7.org/fhir/R4/patient-operation-match.html) operation), for an
//! app that must find the EHR's patient (its MRN) before it writes back, from what a form or
//! another system holds.
//!
//! # How candidates are graded
//!
//! Candidates are the patients sharing an identifier with the record, or its family name and
//! birth date, or a given name and its birth date (a family name may have changed). Each is
//! then compared, names without case or accents:
//!
//! | grade | score | when |
//! |---|---|---|
//! | `certain` | 1.0 | an identifier in common (same system, when the record gives one) and no conflicting birth date |
//! | `probable` | 0.9, 0.95 with the same gender | family name, a given name and birth date all the same |
//! | `possible` | 0.6 | family name and birth date the same, no given name in common |
//! | `possible` | 0.5 | a given name, birth date and gender the same, another family name; or an identifier in common with another birth date |
//!
//! Two birth dates that differ rule a candidate out unless an identifier is shared (then it is
//! `possible`: a typo, or an identifier reused), as do two known genders that differ.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use causeway_store::StoredResource;
use fhir::search::normalize_text;
use serde_json::{Value, json};

use super::{audited, fhir_response, query, render, search_entry};
use crate::AppState;
use crate::audit::AuditAction;
use crate::auth::{Access, PeerAddr, Principal};
use crate::error::{ApiError, ApiResult};

/// Matches returned when `count` is not given.
pub const DEFAULT_COUNT: u32 = 10;
/// Most matches `count` may ask for.
pub const MAX_COUNT: u32 = 100;
/// Candidates read per identifier or name search: a name shared by more people than this
/// needs the birth date or an identifier to tell them apart anyway.
const CANDIDATES_PER_SEARCH: u32 = 200;

const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

/// What of a patient record the grading compares.
#[derive(Debug, Default)]
struct Traits {
    /// `(system, value)`; a record's identifier without a system matches on the value.
    identifiers: Vec<(Option<String>, String)>,
    families: Vec<String>,
    givens: Vec<String>,
    birth_date: Option<String>,
    gender: Option<String>,
}

/// A string element's text, trimmed; `None` when absent or blank.
fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn traits(patient: &Value) -> Traits {
    let mut t = Traits::default();
    for i in patient["identifier"].as_array().into_iter().flatten() {
        if let Some(value) = text(&i["value"]) {
            t.identifiers
                .push((text(&i["system"]).map(str::to_owned), value.to_owned()));
        }
    }
    for n in patient["name"].as_array().into_iter().flatten() {
        if let Some(f) = text(&n["family"]) {
            t.families.push(normalize_text(f));
        }
        for g in n["given"].as_array().into_iter().flatten().filter_map(text) {
            t.givens.push(normalize_text(g));
        }
    }
    t.birth_date = text(&patient["birthDate"]).map(str::to_owned);
    t.gender = text(&patient["gender"])
        .filter(|g| *g != "unknown")
        .map(str::to_owned);
    t
}

fn shares(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.contains(x))
}

/// The grade and score of `candidate` for the record `probe`; `None` when it is ruled out.
fn grade(probe: &Traits, candidate: &Traits) -> Option<(&'static str, f64)> {
    let same_identifier = probe.identifiers.iter().any(|(system, value)| {
        candidate
            .identifiers
            .iter()
            .any(|(s, v)| v == value && (system.is_none() || system == s))
    });
    let birth = match (&probe.birth_date, &candidate.birth_date) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    let gender = match (&probe.gender, &candidate.gender) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    };
    if same_identifier {
        return Some(if birth == Some(false) {
            ("possible", 0.5)
        } else {
            ("certain", 1.0)
        });
    }
    if birth != Some(true) || gender == Some(false) {
        return None;
    }
    let family = shares(&probe.families, &candidate.families);
    let given = shares(&probe.givens, &candidate.givens);
    match (family, given) {
        (true, true) if gender == Some(true) => Some(("probable", 0.95)),
        (true, true) => Some(("probable", 0.9)),
        (true, false) => Some(("possible", 0.6)),
        (false, true) if gender == Some(true) => Some(("possible", 0.5)),
        _ => None,
    }
}

/// The operation's input: the record, `onlyCertainMatches` and `count`.
struct Request {
    patient: Value,
    only_certain: bool,
    count: u32,
}

fn request(body: &Bytes) -> ApiResult<Request> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if v["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request(
            "the body of Patient/$match must be a Parameters resource",
        ));
    }
    let mut patient = None;
    let mut only_certain = false;
    let mut count = DEFAULT_COUNT;
    for p in v["parameter"].as_array().into_iter().flatten() {
        match p["name"].as_str().unwrap_or_default() {
            "resource" => patient = Some(p["resource"].clone()),
            "onlyCertainMatches" => {
                only_certain = p["valueBoolean"].as_bool().ok_or_else(|| {
                    ApiError::bad_request("onlyCertainMatches needs a valueBoolean")
                })?;
            }
            "count" => {
                count = p["valueInteger"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "count needs a valueInteger from 1 to {MAX_COUNT}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Patient/$match parameter {other:?} is not supported (resource, onlyCertainMatches, count)"
                )));
            }
        }
    }
    let patient = patient.ok_or_else(|| {
        ApiError::bad_request("Patient/$match needs the parameter resource (a Patient)")
    })?;
    if patient["resourceType"] != "Patient" {
        return Err(ApiError::bad_request(
            "the resource parameter of Patient/$match must be a Patient",
        ));
    }
    Ok(Request {
        patient,
        only_certain,
        count,
    })
}

/// The searches that find the candidates of `t`: by each identifier, by family name and birth
/// date, by given name and birth date.
fn candidate_searches(t: &Traits) -> Vec<Vec<(String, String)>> {
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut out: Vec<Vec<(String, String)>> = t
        .identifiers
        .iter()
        .map(|(system, value)| {
            // Token syntax: `|` and `,` in a value are escaped.
            let value = value
                .replace('\\', "\\\\")
                .replace('|', "\\|")
                .replace(',', "\\,");
            let token = match system {
                Some(s) => format!("{s}|{value}"),
                None => value,
            };
            vec![pair("identifier", &token)]
        })
        .collect();
    if let Some(birth) = &t.birth_date {
        for f in &t.families {
            // Starts-with, without case or accents: the grading then wants the whole name.
            out.push(vec![pair("family", f), pair("birthdate", birth)]);
        }
        for g in &t.givens {
            out.push(vec![pair("given", g), pair("birthdate", birth)]);
        }
    }
    out
}

pub(super) async fn patient_match(
    State(state): State<AppState>,
    who: Principal,
    peer: PeerAddr,
    body: Bytes,
) -> ApiResult<Response> {
    who.require_fhir("Patient", Access::Read)?;
    let req = request(&body)?;
    let probe = traits(&req.patient);
    let usable = !probe.identifiers.is_empty()
        || (probe.birth_date.is_some() && !(probe.families.is_empty() && probe.givens.is_empty()));
    if !usable {
        return Err(ApiError::bad_request(
            "Patient/$match needs an identifier, or a birth date with a family or given name",
        ));
    }
    let searches = candidate_searches(&probe)
        .into_iter()
        .map(|pairs| {
            let mut search = query::parse("Patient", &pairs)?;
            search.query.count = CANDIDATES_PER_SEARCH;
            Ok(search.query)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    // The record is PHI: the audit names the operation, not what was asked.
    audited(
        &state,
        &who,
        AuditAction::Search,
        "Patient/$match".to_owned(),
        None,
        peer.text(),
        async {
            let mut candidates: BTreeMap<String, StoredResource> = BTreeMap::new();
            for q in searches {
                for r in state.store.search_resources(q).await?.resources {
                    candidates.entry(r.id.clone()).or_insert(r);
                }
            }
            let mut graded = Vec::new();
            for r in candidates.into_values() {
                let v: Value = serde_json::from_slice(&r.json).map_err(ApiError::internal)?;
                if let Some((grade, score)) = grade(&probe, &traits(&v)) {
                    graded.push((grade, score, r));
                }
            }
            // Best first; equal scores the most recently updated first.
            graded.sort_by(|a, b| {
                b.1.total_cmp(&a.1)
                    .then(b.2.last_updated.0.cmp(&a.2.last_updated.0))
            });
            if req.only_certain {
                // One certain match or none: two "certain" patients are a duplicate to resolve
                // by a person, not a match.
                graded.retain(|g| g.0 == "certain");
                if graded.len() > 1 {
                    graded.clear();
                }
            }
            graded.truncate(req.count as usize);
            let mut entries = Vec::with_capacity(graded.len());
            for (grade, score, r) in &graded {
                let mut e = search_entry(&state, "Patient", &r.id, render(r)?, "match");
                e["search"]["score"] = json!(score);
                e["search"]["extension"] = json!([{"url": MATCH_GRADE, "valueCode": grade}]);
                entries.push(e);
            }
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": entries.len(),
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

    fn record(v: Value) -> Traits {
        traits(&v)
    }

    #[test]
    fn grades_follow_the_table() {
        let probe = record(json!({
            "identifier": [{"system": "urn:mrn", "value": "123"}],
            "name": [{"family": "Müller", "given": ["Anna"]}],
            "birthDate": "1980-05-17", "gender": "female"
        }));
        let same_mrn = record(json!({"identifier": [{"system": "urn:mrn", "value": "123"}]}));
        assert_eq!(grade(&probe, &same_mrn), Some(("certain", 1.0)));
        let other_system = record(json!({"identifier": [{"system": "urn:ssn", "value": "123"}]}));
        assert_eq!(grade(&probe, &other_system), None);
        let mrn_other_birth = record(json!({
            "identifier": [{"system": "urn:mrn", "value": "123"}], "birthDate": "1980-05-18"
        }));
        assert_eq!(grade(&probe, &mrn_other_birth), Some(("possible", 0.5)));
        let demographics = record(json!({
            "name": [{"family": "MULLER", "given": ["anna", "Maria"]}],
            "birthDate": "1980-05-17", "gender": "female"
        }));
        assert_eq!(grade(&probe, &demographics), Some(("probable", 0.95)));
        let no_gender = record(json!({
            "name": [{"family": "Muller", "given": ["Anna"]}], "birthDate": "1980-05-17"
        }));
        assert_eq!(grade(&probe, &no_gender), Some(("probable", 0.9)));
        let family_only = record(json!({
            "name": [{"family": "Muller", "given": ["Lena"]}], "birthDate": "1980-05-17"
        }));
        assert_eq!(grade(&probe, &family_only), Some(("possible", 0.6)));
        let married = record(json!({
            "name": [{"family": "Schmidt", "given": ["Anna"]}],
            "birthDate": "1980-05-17", "gender": "female"
        }));
        assert_eq!(grade(&probe, &married), Some(("possible", 0.5)));
        let other_birth = record(json!({
            "name": [{"family": "Muller", "given": ["Anna"]}], "birthDate": "1981-05-17"
        }));
        assert_eq!(grade(&probe, &other_birth), None);
        let other_gender = record(json!({
            "name": [{"family": "Muller", "given": ["Anna"]}],
            "birthDate": "1980-05-17", "gender": "male"
        }));
        assert_eq!(grade(&probe, &other_gender), None);
    }
}
