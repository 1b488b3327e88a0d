//! Resources stored by a build that extracted fewer search values are found by the new
//! parameters once the engine has started: a real SQLite store, written the way an older build
//! wrote it, then the engine's start.

use std::sync::Arc;

use causeway_engine::config::Config;
use causeway_engine::destinations::fhir_store::index_entries;
use causeway_engine::fhir_query;
use causeway_engine::runtime::Engine;
use causeway_engine::search_index::{self, CURSOR, GENERATION};
use causeway_store::{IndexValue, ResourcePut, SqliteOptions, SqliteStore, Store};
use serde_json::json;

fn observation(id: &str, value: f64) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "valueQuantity": {"value": value, "unit": "mmol/L",
                          "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    })
}

/// What a build before quantity search stored: every value but the quantities.
fn as_an_older_build_wrote_it(resource: &serde_json::Value) -> ResourcePut {
    let index = index_entries("Observation", resource)
        .into_iter()
        .filter(|e| !matches!(e.value, IndexValue::Quantity { .. }))
        .collect();
    ResourcePut {
        resource_type: "Observation".into(),
        id: resource["id"].as_str().expect("id").into(),
        json: serde_json::to_vec(resource).expect("json"),
        index,
        if_match: None,
        source: None,
        delete: false,
    }
}

async fn found(store: &Arc<dyn Store>, query: &str) -> u64 {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let search = fhir_query::parse("Observation", &pairs).expect("a valid search");
    store
        .search_resources(search.query)
        .await
        .expect("search")
        .total
}

#[tokio::test]
async fn the_engine_reindexes_what_an_older_build_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path(), SqliteOptions::default())
            .await
            .expect("open"),
    );
    store
        .put_resources(vec![
            as_an_older_build_wrote_it(&observation("glucose-1", 5.4)),
            as_an_older_build_wrote_it(&observation("glucose-2", 7.9)),
        ])
        .await
        .expect("write");
    // A store an older build wrote: no generation recorded, and no quantity values.
    assert_eq!(store.cursor(CURSOR).await.expect("cursor"), 0);
    assert_eq!(found(&store, "value-quantity=gt7").await, 0);
    assert_eq!(found(&store, "code=2345-7").await, 2);

    let config = Config::from_str("", dir.path()).expect("an empty config is valid");
    let engine = Engine::start(&config, Arc::clone(&store))
        .await
        .expect("engine starts");
    assert_eq!(store.cursor(CURSOR).await.expect("cursor"), GENERATION);
    assert_eq!(found(&store, "value-quantity=gt7").await, 1);
    assert_eq!(found(&store, "value-quantity=5.4||mmol/L").await, 1);
    assert_eq!(found(&store, "code-value-quantity=2345-7$gt7").await, 1);
    assert_eq!(found(&store, "code=2345-7").await, 2, "other values kept");
    let version = store
        .resource("Observation", "glucose-1", None)
        .await
        .expect("read")
        .expect("exists")
        .version;
    assert_eq!(version, 1, "reindexing makes no version");
    engine.shutdown().await;

    // Once done, the next start reads the generation and does nothing more.
    drop(store);
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path(), SqliteOptions::default())
            .await
            .expect("open again"),
    );
    let again = search_index::bring_up_to_date(store.as_ref())
        .await
        .expect("up to date");
    assert_eq!((again.from, again.resources), (GENERATION, 0));
    assert_eq!(found(&store, "value-quantity=gt7").await, 1);
    store.close().await.expect("close");
}
