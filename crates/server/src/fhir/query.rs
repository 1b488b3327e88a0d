//! The FHIR search grammar lives in the engine ([`causeway_engine::fhir_query`]), shared with
//! subscriptions' criteria; here its refusals become 400 answers, and chained parameters are
//! answered against the store.

use std::collections::BTreeSet;

use causeway_engine::fhir_query::ChainKind;
pub use causeway_engine::fhir_query::{DEFAULT_COUNT, Presentation, Search};
use causeway_store::{IndexTest, ResourceQuery, ResourceSort, Store, ValueTest};

use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult};

/// [`causeway_engine::fhir_query::parse`], refusals as 400 with an OperationOutcome.
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> ApiResult<Search> {
    causeway_engine::fhir_query::parse(resource_type, pairs).map_err(|e| ApiError::bad_request(e.0))
}

/// [`causeway_engine::fhir_query::parse_read`], refusals as 400 with an OperationOutcome.
pub fn parse_read(pairs: &[(String, String)]) -> ApiResult<Presentation> {
    causeway_engine::fhir_query::parse_read(pairs).map_err(|e| ApiError::bad_request(e.0))
}

/// Most resources a chained parameter's own search may match: their ids become one clause of
/// the search, which must stay a reasonable query.
pub const CHAIN_LIMIT: u32 = causeway_store::resources::MAX_RESOURCE_PAGE;

/// Runs the searches of `search`'s chained parameters and `_has` and puts what they found
/// into its query. `false` when one of them found nothing: the search then matches nothing.
///
/// # Errors
/// 403 when the caller may not read a type a chain searches; 400 when a chain matches more
/// than [`CHAIN_LIMIT`] resources.
pub async fn resolve_chains(
    store: &dyn Store,
    who: &Principal,
    search: &mut Search,
) -> ApiResult<bool> {
    // A chain tells which resources of the type it searches match.
    for chain in &search.chains {
        who.require_fhir(&chain.query.resource_type, Access::Read)?;
    }
    for chain in std::mem::take(&mut search.chains) {
        let found = store
            .search_resources(ResourceQuery {
                count: CHAIN_LIMIT,
                offset: 0,
                sort: ResourceSort::default(),
                ..chain.query.clone()
            })
            .await?;
        if found.total > u64::from(CHAIN_LIMIT) {
            return Err(ApiError::bad_request(format!(
                "search parameter {}: matches {} {} resources, more than the {CHAIN_LIMIT} a chain may; narrow it",
                chain.key, found.total, chain.query.resource_type
            )));
        }
        match chain.kind {
            ChainKind::Forward { param, target } => {
                if found.resources.is_empty() {
                    return Ok(false);
                }
                search.query.clauses.push(
                    found
                        .resources
                        .iter()
                        .map(|r| IndexTest {
                            param: param.clone(),
                            test: ValueTest::Reference(format!("{target}/{}", r.id)),
                        })
                        .collect(),
                );
            }
            ChainKind::Reverse { param } => {
                // The searched resources these matches refer to through `param`.
                let prefix = format!("{}/", search.query.resource_type);
                let mut ids = BTreeSet::new();
                for r in &found.resources {
                    let v: serde_json::Value =
                        serde_json::from_slice(&r.json).map_err(ApiError::internal)?;
                    for (name, value) in fhir::search::extract(&r.resource_type, &v) {
                        if let fhir::search::SearchValue::Reference(target) = value
                            && name == param.name
                            && let Some(id) = target.strip_prefix(&prefix)
                        {
                            ids.insert(id.to_owned());
                        }
                    }
                }
                // With `_id` (or another `_has`) only the ids both name.
                if !search.query.ids.is_empty() {
                    ids.retain(|id| search.query.ids.contains(id));
                }
                if ids.is_empty() {
                    return Ok(false);
                }
                search.query.ids = ids.into_iter().collect();
            }
        }
    }
    Ok(true)
}
