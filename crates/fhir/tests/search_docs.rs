//! The search parameter table of `docs/fhir-api.md` names exactly the parameters each listed
//! type has, so the user docs cannot drift from what the server indexes.

use fhir::search;

#[test]
fn the_api_docs_list_each_types_search_parameters() {
    let docs = include_str!("../../../docs/fhir-api.md");
    let mut rows = 0;
    for line in docs.lines() {
        let Some(rest) = line.strip_prefix("| ") else {
            continue;
        };
        let Some((resource_type, params)) = rest.split_once(" | ") else {
            continue;
        };
        if search::params(resource_type).is_empty() {
            continue;
        }
        let documented: Vec<&str> = params
            .trim_end_matches(" |")
            .split(", ")
            .map(|p| p.trim_matches('`'))
            .collect();
        let indexed: Vec<&str> = search::params(resource_type)
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented, indexed, "docs/fhir-api.md, row {resource_type}");
        rows += 1;
    }
    assert!(rows >= 10, "only {rows} rows of the table were found");
}
