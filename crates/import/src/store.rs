//! Loading the final resources into Causeway's resource store, so the FHIR API serves the
//! archive's history beside what live feeds send.
//!
//! Writes go in groups (one store transaction each). A resource the store already holds is
//! merged with the live version winning where both have an element: the archive is older than
//! what the feeds have sent since. Loading the same import again changes nothing (the store
//! makes no new version of equal content), which is what lets a killed load simply run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use causeway_engine::destinations::fhir_store::resource_put;
use causeway_store::{PutOutcome, ResourcePut, ResourceQuery, Store};
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::finish::{FinalResources, merge};
use crate::stage::Staged;

/// Resources per store transaction.
///
/// Each transaction writes every B-tree page its resources touch once, whatever the number of
/// resources on the page, so larger groups write fewer pages per resource (500 gave a third
/// less than 5,000 here); 2,000 keeps one transaction, and so the write lock a live `serve`
/// sharing the store waits for, around a tenth of a second.
pub const STORE_BATCH: usize = 2_000;

/// What a load did, per resource type.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadCounts {
    pub created: BTreeMap<String, u64>,
    pub updated: u64,
    pub unchanged: u64,
}

impl LoadCounts {
    fn add(&mut self, types: Vec<String>, outcomes: Vec<PutOutcome>) {
        for (t, o) in types.into_iter().zip(outcomes) {
            if o.created {
                *self.created.entry(t).or_default() += 1;
            } else if o.unchanged {
                self.unchanged += 1;
            } else {
                self.updated += 1;
            }
        }
    }
}

/// Store errors, named by the staging folder.
fn store_errors(staged: &Staged) -> impl Fn(String) -> Error + Copy + '_ {
    move |e| Error::new(&staged.dir, ErrorKind::Store(e))
}

/// One group's writes, running in the store while the next group is read and prepared.
type Writing = JoinHandle<std::result::Result<(Vec<String>, Vec<PutOutcome>), String>>;

/// Writes every final resource of `staged` into `store`.
///
/// The next group is read, merged with what the store holds and indexed while the store's
/// writer commits the previous one, so the writer (the bound on this load) does not wait for
/// it. Final resources are unique by type and id, so the two never touch the same resource.
/// A load that is large beside what the store holds lets the store build its search indexes
/// once at the end ([`Store::begin_bulk_load`]) instead of row by row.
///
/// # Errors
/// A staged resource cannot be read, or the store refuses a write.
pub async fn load(
    staged: &Staged,
    store: Arc<dyn Store>,
    progress: impl FnMut(u64),
) -> Result<LoadCounts> {
    let store_error = store_errors(staged);
    // What is stored already is brought to this build's search values first, so the store
    // records this build's generation and the resources loaded now are not extracted again.
    causeway_engine::search_index::bring_up_to_date(store.as_ref())
        .await
        .map_err(|e| store_error(e.to_string()))?;
    let suspended = store
        .begin_bulk_load(staged.index.len() as u64)
        .await
        .map_err(|e| store_error(e.to_string()))?;
    let loaded = load_groups(staged, Arc::clone(&store), progress).await;
    if suspended {
        // Also after a failed load: what was written is searchable again.
        let built = store.end_bulk_load().await;
        built.map_err(|e| store_error(e.to_string()))?;
    }
    loaded
}

async fn load_groups(
    staged: &Staged,
    store: Arc<dyn Store>,
    mut progress: impl FnMut(u64),
) -> Result<LoadCounts> {
    let mut resources = FinalResources::new(staged)?;
    let mut counts = LoadCounts::default();
    let mut written = 0u64;
    let store_error = store_errors(staged);
    let mut writing: Option<(Writing, u64)> = None;
    loop {
        let puts = next_group(&mut resources, store.as_ref(), staged).await?;
        if let Some((previous, len)) = writing.take() {
            let (types, outcomes) = previous
                .await
                .map_err(|e| store_error(format!("store write task: {e}")))?
                .map_err(store_error)?;
            counts.add(types, outcomes);
            written += len;
            progress(written);
        }
        if puts.is_empty() {
            break;
        }
        let len = puts.len() as u64;
        let types: Vec<String> = puts.iter().map(|p| p.resource_type.clone()).collect();
        let store = Arc::clone(&store);
        let task = tokio::spawn(async move {
            let outcomes = store.put_resources(puts).await.map_err(|e| e.to_string())?;
            Ok((types, outcomes))
        });
        writing = Some((task, len));
    }
    Ok(counts)
}

/// The next [`STORE_BATCH`] final resources as store writes, each merged with the version the
/// store already holds; empty at the end.
async fn next_group(
    resources: &mut FinalResources<'_>,
    store: &dyn Store,
    staged: &Staged,
) -> Result<Vec<ResourcePut>> {
    let store_error = store_errors(staged);
    let mut batch = Vec::with_capacity(STORE_BATCH);
    while batch.len() < STORE_BATCH {
        match resources.next_resource() {
            Some(r) => {
                let r = r?;
                batch.push((r.resource_type.to_owned(), r.id.to_owned(), r.json));
            }
            None => break,
        }
    }
    // What the store holds already, one search per type in the batch (a read per
    // resource made loading twenty times slower).
    let mut current: HashMap<(String, String), Vec<u8>> = HashMap::new();
    let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (t, id, _) in &batch {
        by_type.entry(t.as_str()).or_default().push(id.clone());
    }
    for (t, ids) in by_type {
        let page = store
            .search_resources(ResourceQuery {
                resource_type: t.to_owned(),
                count: ids.len() as u32,
                ids,
                ..Default::default()
            })
            .await
            .map_err(|e| store_error(e.to_string()))?;
        for r in page.resources {
            current.insert((r.resource_type, r.id), r.json);
        }
    }
    let mut puts = Vec::with_capacity(batch.len());
    for (resource_type, id, json) in batch {
        let json = match current.remove(&(resource_type.clone(), id.clone())) {
            // The live version's elements win over the archive's.
            Some(live) => merge(&[json, live]).map_err(store_error)?,
            None => json,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| store_error(e.to_string()))?;
        puts.push(resource_put(&resource_type, &id, value, None).map_err(store_error)?);
    }
    Ok(puts)
}
