//! `GET /fhir/metadata`: a CapabilityStatement built from what the code serves, so it cannot
//! drift from the routes and the search parameter table.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::search::{self, ParamKind};
use serde_json::{Value, json};

use super::fhir_response;
use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiResult;

pub async fn metadata(State(state): State<AppState>, _who: Principal) -> ApiResult<Response> {
    Ok(fhir_response(
        StatusCode::OK,
        &capability_statement(&state.fhir_base),
    ))
}

fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Token => "token",
        ParamKind::String => "string",
        ParamKind::Date => "date",
        ParamKind::Reference => "reference",
        ParamKind::Quantity => "quantity",
        ParamKind::CodeQuantity => "composite",
    }
}

/// The `_revinclude` values worth offering on `target`: the reference parameters of every type
/// that point at it, by their declared target or, when they have none, by their name
/// (`Observation:encounter` for Encounter).
fn rev_includes(target: &str) -> Vec<String> {
    let mut name = target.to_owned();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    fhir::RESOURCE_TYPES
        .iter()
        .flat_map(|source| {
            search::params(source)
                .iter()
                .filter(|p| p.kind == ParamKind::Reference)
                .filter(|p| p.target.map_or(p.name == name, |t| t == target))
                .map(move |p| format!("{source}:{}", p.name))
        })
        .collect()
}

/// The statement for a server whose FHIR base is `base`.
pub fn capability_statement(base: &str) -> Value {
    let mut resources: Vec<Value> = fhir::RESOURCE_TYPES
        .iter()
        .filter(|t| !matches!(**t, "Bundle" | "OperationOutcome"))
        .map(|t| {
            let mut params: Vec<Value> = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            params.extend(
                search::params(t)
                    .iter()
                    .map(|p| json!({"name": p.name, "type": kind_name(p.kind)})),
            );
            let includes: Vec<String> = search::params(t)
                .iter()
                .filter(|p| p.kind == ParamKind::Reference)
                .map(|p| format!("{t}:{}", p.name))
                .collect();
            let mut r = json!({
                "type": t,
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "history-instance"},
                    {"code": "history-type"}, {"code": "search-type"}
                ],
                "versioning": "versioned",
                "readHistory": true,
                "searchParam": params,
            });
            if !includes.is_empty() {
                r["searchInclude"] = json!(includes);
            }
            let revincludes = rev_includes(t);
            if !revincludes.is_empty() {
                r["searchRevInclude"] = json!(revincludes);
            }
            if *t == "Observation" {
                r["operation"] = json!([{
                    "name": "lastn",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"
                }]);
            }
            if *t == "Patient" {
                r["operation"] = json!([
                    {
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                    },
                    {
                        "name": "match",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"
                    },
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
                    }
                ]);
            }
            r
        })
        .collect();
    // Groups are kept by the API itself (group.rs), as cohorts for Group/[id]/$export.
    resources.push(json!({
        "type": "Group",
        "interaction": [{"code": "read"}, {"code": "create"}, {"code": "update"}],
        "versioning": "versioned",
        "operation": [{
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
        }]
    }));
    let token_url = format!("{}/auth/token", base.trim_end_matches("/fhir"));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "Causeway", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Causeway FHIR API", "url": base},
        "fhirVersion": "4.0.1",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}]
                }]
            },
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "batch"}],
            // Bulk Data export (see export.rs); Group/[id]/$export reads Groups from the store.
            "operation": [
                {
                    "name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
                },
                {
                    "name": "group-export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
                }
            ]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_lists_every_search_parameter_the_table_has() {
        let cs = capability_statement("http://h/fhir");
        let resources = cs["rest"][0]["resource"].as_array().expect("resources");
        let obs = resources
            .iter()
            .find(|r| r["type"] == "Observation")
            .expect("Observation");
        let names: Vec<&str> = obs["searchParam"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for want in [
            "_id",
            "_lastUpdated",
            "code",
            "date",
            "patient",
            "status",
            "category",
        ] {
            assert!(names.contains(&want), "{want}");
        }
        let revincludes = |t: &str| -> Vec<String> {
            cs["rest"][0]["resource"]
                .as_array()
                .expect("resources")
                .iter()
                .find(|r| r["type"] == t)
                .and_then(|r| r["searchRevInclude"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            cs["rest"][0]["interaction"],
            json!([{"code": "history-system"}, {"code": "batch"}])
        );
        let on_patient = revincludes("Patient");
        assert!(
            on_patient.contains(&"Observation:patient".to_owned()),
            "{on_patient:?}"
        );
        assert!(
            !on_patient.contains(&"Observation:encounter".to_owned()),
            "{on_patient:?}"
        );
        let on_encounter = revincludes("Encounter");
        assert!(
            on_encounter.contains(&"Observation:encounter".to_owned()),
            "{on_encounter:?}"
        );
        assert!(
            !on_encounter.contains(&"Observation:patient".to_owned()),
            "{on_encounter:?}"
        );
        assert_eq!(
            cs["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
            "http://h/auth/token"
        );
    }
}
