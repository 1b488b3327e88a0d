//! Keeps the stored search values in step with what [`fhir::search`] extracts.
//!
//! Search values are extracted when a resource is written. When a release extracts more (a new
//! parameter such as `value-quantity`), resources written before it have none of the new
//! values, and a search would silently miss them. Each such change is a generation here,
//! naming the types whose extraction changed; before the engine opens any listener or the API
//! (and before an import writes), [`bring_up_to_date`] extracts the values of those types'
//! current versions again and records the generation reached, so it runs once per change.

use std::collections::BTreeSet;

use causeway_store::resources::MAX_RESOURCE_PAGE;
use causeway_store::{Reindex, Store};

use crate::destinations::fhir_store::index_entries;

/// The store cursor holding the generation the stored search values were extracted at.
pub const CURSOR: &str = "search-index";

/// The generations in order: entry `i` brings the index to generation `i + 1` and names the
/// types whose search values it changed.
const GENERATIONS: &[&[&str]] = &[
    // 1: Observation `value-quantity`, `value-date`, `component-code`,
    // `component-value-quantity`, `combo-code`, `combo-value-quantity` and the composites
    // `code-value-quantity`, `component-code-value-quantity`, `combo-code-value-quantity`.
    &["Observation"],
    // 2: Observation quantities with a UCUM unit also in canonical form
    // (`value-quantity:canonical`, `component-value-quantity:canonical`).
    &["Observation"],
];

/// The generation this build extracts.
pub const GENERATION: i64 = GENERATIONS.len() as i64;

/// What [`bring_up_to_date`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReindexReport {
    /// The generation found.
    pub from: i64,
    /// Resources whose search values were extracted again.
    pub resources: u64,
    /// Stored resources whose JSON could not be read (kept with their old values).
    pub unreadable: u64,
}

/// Re-extracts the search values of every current resource of a type changed since the
/// generation the store records, then records [`GENERATION`]. Nothing to do (one read) when
/// the store is current; a store newer than this build is left alone.
///
/// Resources are read a page at a time in storage order (each page costs the same however far
/// the scan is) and each page is rewritten in one transaction; a version written meanwhile keeps
/// the values its own write gave it. Interrupted, it starts over at the next start, as the
/// generation moves only at the end.
///
/// # Errors
/// The store fails to read or write.
pub async fn bring_up_to_date(store: &dyn Store) -> causeway_store::Result<ReindexReport> {
    let from = store.cursor(CURSOR).await?;
    let mut report = ReindexReport {
        from,
        ..ReindexReport::default()
    };
    if from >= GENERATION {
        return Ok(report);
    }
    let types: BTreeSet<&str> = GENERATIONS[usize::try_from(from).unwrap_or(0)..]
        .iter()
        .flat_map(|types| types.iter().copied())
        .collect();
    // Said before the work, which can take a while on a large store while nothing listens yet.
    tracing::info!(
        from,
        to = GENERATION,
        types = ?types,
        "extracting search values again for this release before listening"
    );
    for resource_type in types {
        let mut after = 0;
        loop {
            let page = store
                .scan_resources(resource_type, after, MAX_RESOURCE_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            let mut items = Vec::with_capacity(page.len());
            for stored in page.into_iter().map(|change| change.resource) {
                let Ok(json) = serde_json::from_slice::<serde_json::Value>(&stored.json) else {
                    report.unreadable += 1;
                    continue;
                };
                items.push(Reindex {
                    index: index_entries(&stored.resource_type, &json),
                    resource_type: stored.resource_type,
                    id: stored.id,
                    version: stored.version,
                });
            }
            report.resources += store.reindex_resources(items, None).await?;
        }
    }
    store
        .reindex_resources(Vec::new(), Some((CURSOR.to_owned(), GENERATION)))
        .await?;
    tracing::info!(
        from,
        to = GENERATION,
        resources = report.resources,
        unreadable = report.unreadable,
        "search values extracted again for this release"
    );
    Ok(report)
}
