//! Conformance of the FHIR resource store: versions, preconditions, history and search
//! semantics every backend keeps.

use std::sync::Arc;

use causeway_store::{
    DatePrefix, DateTest, ErrorKind, HistoryQuery, IndexEntry, IndexTest, IndexValue, MessageId,
    QuantityTest, Reindex, ResourcePut, ResourceQuery, ResourceSort, SortBy, SortKey, Store,
    ValueTest,
};

use super::Harness;

fn put(t: &str, id: &str, json: &str, index: Vec<IndexEntry>) -> ResourcePut {
    ResourcePut {
        resource_type: t.into(),
        id: id.into(),
        json: json.as_bytes().to_vec(),
        index,
        if_match: None,
        source: Some(MessageId(1)),
        delete: false,
    }
}

fn token(param: &str, system: &str, code: &str) -> IndexEntry {
    IndexEntry {
        param: param.into(),
        value: IndexValue::Token {
            system: system.into(),
            code: code.into(),
        },
    }
}

const DAY_MS: i64 = 86_400_000;

/// An Observation with a LOINC code, a one-day date (`day` days after the epoch) and a
/// patient reference; its JSON names the code, so changing the code makes a new version.
fn observation(id: &str, code: &str, day: i64, patient: &str) -> ResourcePut {
    put(
        "Observation",
        id,
        &format!(r#"{{"code":"{code}"}}"#),
        vec![
            token("Observation.code", "http://loinc.org", code),
            IndexEntry {
                param: "Observation.date".into(),
                value: IndexValue::Date {
                    lo: day * DAY_MS,
                    hi: (day + 1) * DAY_MS - 1,
                },
            },
            IndexEntry {
                param: "Observation.patient".into(),
                value: IndexValue::Reference(format!("Patient/{patient}")),
            },
        ],
    )
}

fn test(param: &str, t: ValueTest) -> IndexTest {
    IndexTest {
        param: param.into(),
        test: t,
    }
}

async fn ids(store: &Arc<dyn Store>, q: ResourceQuery) -> (u64, Vec<String>) {
    let page = store.search_resources(q).await.expect("search");
    (
        page.total,
        page.resources.into_iter().map(|r| r.id).collect(),
    )
}

pub async fn resources_are_versioned_and_unchanged_writes_make_no_version(h: &impl Harness) {
    let store = h.open().await;
    let first = store
        .put_resources(vec![put("Patient", "p1", r#"{"gender":"male"}"#, vec![])])
        .await
        .expect("create");
    assert_eq!((first[0].version, first[0].created), (1, true));
    let same = store
        .put_resources(vec![put("Patient", "p1", r#"{"gender":"male"}"#, vec![])])
        .await
        .expect("same");
    assert_eq!((same[0].version, same[0].unchanged), (1, true));
    let second = store
        .put_resources(vec![put("Patient", "p1", r#"{"gender":"female"}"#, vec![])])
        .await
        .expect("update");
    assert_eq!((second[0].version, second[0].created), (2, false));

    let current = store
        .resource("Patient", "p1", None)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(current.version, 2);
    assert_eq!(current.json, br#"{"gender":"female"}"#);
    assert_eq!(current.source, Some(MessageId(1)));
    let old = store
        .resource("Patient", "p1", Some(1))
        .await
        .expect("vread")
        .expect("v1");
    assert_eq!(old.json, br#"{"gender":"male"}"#);
    assert!(
        store
            .resource("Patient", "p1", Some(3))
            .await
            .expect("vread")
            .is_none()
    );
    assert!(
        store
            .resource("Patient", "nope", None)
            .await
            .expect("read")
            .is_none()
    );

    let history = store
        .resource_history(HistoryQuery {
            resource_type: Some("Patient".into()),
            id: Some("p1".into()),
            count: 10,
            ..HistoryQuery::default()
        })
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    store.close().await.expect("close");
}

pub async fn if_match_guards_writes_and_a_batch_is_all_or_nothing(h: &impl Harness) {
    let store = h.open().await;
    store
        .put_resources(vec![put("Patient", "p1", "{}", vec![])])
        .await
        .expect("create");
    let mut stale = put("Patient", "p1", r#"{"a":1}"#, vec![]);
    stale.if_match = Some(5);
    let fresh = put("Patient", "p2", "{}", vec![]);
    let err = store
        .put_resources(vec![fresh, stale])
        .await
        .expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "Patient/p1 is at version 1, not the expected 5"
    );
    assert!(
        store
            .resource("Patient", "p2", None)
            .await
            .expect("read")
            .is_none(),
        "the batch's other write was rolled back"
    );
    let mut create_only = put("Patient", "p1", "{}", vec![]);
    create_only.if_match = Some(0);
    assert_eq!(
        store
            .put_resources(vec![create_only])
            .await
            .expect_err("exists")
            .kind(),
        ErrorKind::Conflict
    );
    let mut bad = put("Patient", "has space", "{}", vec![]);
    bad.if_match = None;
    assert_eq!(
        store
            .put_resources(vec![bad])
            .await
            .expect_err("bad id")
            .kind(),
        ErrorKind::InvalidInput
    );
    store.close().await.expect("close");
}

pub async fn deleted_resources_leave_search_but_keep_history(h: &impl Harness) {
    let store = h.open().await;
    store
        .put_resources(vec![put(
            "Observation",
            "o1",
            "{}",
            vec![token("Observation.status", "", "final")],
        )])
        .await
        .expect("create");
    let q = ResourceQuery {
        resource_type: "Observation".into(),
        clauses: vec![vec![test(
            "Observation.status",
            ValueTest::Code("final".into()),
        )]],
        count: 10,
        ..ResourceQuery::default()
    };
    assert_eq!(ids(&store, q.clone()).await.0, 1);
    let mut delete = put("Observation", "o1", "", vec![]);
    delete.delete = true;
    let out = store.put_resources(vec![delete]).await.expect("delete");
    assert_eq!(out[0].version, 2);
    assert_eq!(ids(&store, q).await.0, 0);
    let gone = store
        .resource("Observation", "o1", None)
        .await
        .expect("read")
        .expect("still known");
    assert!(gone.deleted);
    store.close().await.expect("close");
}

pub async fn search_matches_tokens_text_dates_and_references(h: &impl Harness) {
    let store = h.open().await;
    let day = DAY_MS;
    store
        .put_resources(vec![
            observation("a", "2345-7", 10, "p1"),
            observation("b", "718-7", 20, "p1"),
            observation("c", "2345-7", 30, "p2"),
            put(
                "Patient",
                "p1",
                "{}",
                vec![IndexEntry {
                    param: "Patient.family".into(),
                    value: IndexValue::Text("muller".into()),
                }],
            ),
        ])
        .await
        .expect("write");
    let q = |clauses: Vec<Vec<IndexTest>>| ResourceQuery {
        resource_type: "Observation".into(),
        clauses,
        count: 10,
        sort: ResourceSort::last_updated_asc(),
        ..ResourceQuery::default()
    };
    let code = |c: &str| test("Observation.code", ValueTest::Code(c.into()));
    let date = |prefix, d: i64| {
        test(
            "Observation.date",
            ValueTest::Date(DateTest {
                prefix,
                lo: d * day,
                hi: (d + 1) * day - 1,
            }),
        )
    };
    let (total, mut found) = ids(&store, q(vec![vec![code("2345-7")]])).await;
    found.sort();
    assert_eq!((total, found), (2, vec!["a".to_string(), "c".to_string()]));
    assert_eq!(
        ids(
            &store,
            q(vec![vec![test(
                "Observation.code",
                ValueTest::SystemCode {
                    system: "http://other".into(),
                    code: "2345-7".into()
                }
            )]])
        )
        .await
        .0,
        0,
        "the system must match when given"
    );
    // AND across clauses, OR within one.
    let (_, found) = ids(
        &store,
        q(vec![
            vec![code("2345-7"), code("718-7")],
            vec![test(
                "Observation.patient",
                ValueTest::Reference("Patient/p1".into()),
            )],
        ]),
    )
    .await;
    let mut found = found;
    found.sort();
    assert_eq!(found, vec!["a".to_string(), "b".to_string()]);
    for (prefix, d, want) in [
        (DatePrefix::Eq, 20, vec!["b"]),
        (DatePrefix::Gt, 20, vec!["c"]),
        (DatePrefix::Ge, 20, vec!["b", "c"]),
        (DatePrefix::Lt, 20, vec!["a"]),
        (DatePrefix::Le, 20, vec!["a", "b"]),
        (DatePrefix::Ne, 20, vec!["a", "c"]),
    ] {
        let (_, mut found) = ids(&store, q(vec![vec![date(prefix, d)]])).await;
        found.sort();
        assert_eq!(found, want, "{prefix:?} day {d}");
    }
    let missing = ids(
        &store,
        q(vec![vec![test(
            "Observation.status",
            ValueTest::Missing(true),
        )]]),
    )
    .await;
    assert_eq!(missing.0, 3);
    let text = |t| ResourceQuery {
        resource_type: "Patient".into(),
        clauses: vec![vec![test("Patient.family", t)]],
        count: 10,
        ..ResourceQuery::default()
    };
    assert_eq!(
        ids(&store, text(ValueTest::TextPrefix("mul".into())))
            .await
            .0,
        1
    );
    assert_eq!(
        ids(&store, text(ValueTest::TextPrefix("ull".into())))
            .await
            .0,
        0
    );
    assert_eq!(
        ids(&store, text(ValueTest::TextContains("ull".into())))
            .await
            .0,
        1
    );
    assert_eq!(
        ids(&store, text(ValueTest::TextExact("mul".into())))
            .await
            .0,
        0
    );

    // Paging: the total counts every match, the page only its slice.
    let mut paged = q(vec![]);
    paged.count = 2;
    paged.offset = 2;
    let (total, found) = ids(&store, paged).await;
    assert_eq!((total, found.len()), (3, 1));
    let mut by_id = q(vec![]);
    by_id.ids = vec!["a".into(), "c".into()];
    assert_eq!(ids(&store, by_id).await.0, 2);
    store.close().await.expect("close");
}

pub async fn search_sorts_by_dates_values_and_ids(h: &impl Harness) {
    let store = h.open().await;
    let period = |id: &str, lo_day: i64, hi_day: i64, code: Option<&str>| {
        let mut index = vec![IndexEntry {
            param: "Encounter.date".into(),
            value: IndexValue::Date {
                lo: lo_day * DAY_MS,
                hi: hi_day * DAY_MS,
            },
        }];
        if let Some(code) = code {
            index.push(token(
                "Encounter.class",
                "http://terminology.hl7.org/v3",
                code,
            ));
        }
        put("Encounter", id, "{}", index)
    };
    // `long` starts first but ends last; `none` has no date and no class; `two` has two
    // periods; written in an order that matches none of the sorts asked below.
    let mut two = period("two", 15, 16, Some("AMB"));
    two.index.push(IndexEntry {
        param: "Encounter.date".into(),
        value: IndexValue::Date {
            lo: 40 * DAY_MS,
            hi: 41 * DAY_MS,
        },
    });
    store
        .put_resources(vec![
            period("short", 20, 21, Some("IMP")),
            put("Encounter", "none", "{}", Vec::new()),
            period("long", 10, 50, Some("EMER")),
            two,
        ])
        .await
        .expect("write");
    let sorted = |keys: Vec<SortKey>, clauses: Vec<Vec<IndexTest>>| ResourceQuery {
        resource_type: "Encounter".into(),
        clauses,
        sort: ResourceSort(keys),
        count: 10,
        ..ResourceQuery::default()
    };
    let key = |by: SortBy, descending| SortKey { by, descending };
    let date = || SortBy::Date("Encounter.date".into());
    let class = || SortBy::Value("Encounter.class".into());
    // Ascending by the earliest start; descending by the latest end; no value last either way.
    let cases: Vec<(Vec<SortKey>, [&str; 4])> = vec![
        (vec![key(date(), false)], ["long", "two", "short", "none"]),
        (vec![key(date(), true)], ["long", "two", "short", "none"]),
        (vec![key(class(), false)], ["two", "long", "short", "none"]),
        (vec![key(class(), true)], ["short", "long", "two", "none"]),
        (
            vec![key(SortBy::Id, false)],
            ["long", "none", "short", "two"],
        ),
        (
            vec![key(SortBy::Id, true)],
            ["two", "short", "none", "long"],
        ),
    ];
    for (keys, want) in cases {
        let (total, found) = ids(&store, sorted(keys.clone(), Vec::new())).await;
        assert_eq!(
            (total, found),
            (4, want.map(String::from).to_vec()),
            "{keys:?}"
        );
    }
    // A later key breaks the ties of an earlier one; with a clause driving the search too.
    store
        .put_resources(vec![period("short-b", 20, 21, Some("AMB"))])
        .await
        .expect("write");
    let with_date = vec![vec![test(
        "Encounter.date",
        ValueTest::Date(DateTest {
            prefix: DatePrefix::Ge,
            lo: 0,
            hi: DAY_MS - 1,
        }),
    )]];
    let (total, found) = ids(
        &store,
        sorted(
            vec![key(date(), false), key(class(), false)],
            with_date.clone(),
        ),
    )
    .await;
    assert_eq!(
        (total, found),
        (
            4,
            ["long", "two", "short-b", "short"]
                .map(String::from)
                .to_vec()
        )
    );
    // `_sort=_lastUpdated` orders ties (one batch shares its time) the same whether the type's
    // time index serves it or a clause drives the search.
    let oldest_first = || vec![key(SortBy::LastUpdated, false)];
    let (_, by_index) = ids(&store, sorted(oldest_first(), Vec::new())).await;
    let (_, by_clause) = ids(&store, sorted(oldest_first(), with_date.clone())).await;
    let dated: Vec<String> = by_index.into_iter().filter(|id| id != "none").collect();
    assert_eq!(dated, by_clause);
    assert_eq!(by_clause.last().map(String::as_str), Some("short-b"));
    // Paging cuts the sorted list; a tie on every key puts the most recently updated first.
    let mut page = sorted(vec![key(class(), true)], with_date);
    page.count = 2;
    page.offset = 1;
    assert_eq!(
        ids(&store, page).await,
        (4, ["long", "short-b"].map(String::from).to_vec())
    );
    store.close().await.expect("close");
}

/// A clause ORing thousands of values (a `_revinclude` of a full page, a client naming many
/// patients) is answered, whether it drives the search or filters it.
pub async fn a_clause_of_thousands_of_values_is_answered(h: &impl Harness) {
    let store = h.open().await;
    store
        .put_resources(vec![
            observation("a", "2345-7", 10, "p1"),
            observation("b", "718-7", 20, "p2"),
            observation("c", "2345-7", 30, "p3"),
        ])
        .await
        .expect("write");
    let many = |n: usize, last: &str| -> Vec<IndexTest> {
        (0..n)
            .map(|i| {
                test(
                    "Observation.patient",
                    ValueTest::Reference(format!("Patient/absent-{i}")),
                )
            })
            .chain([test(
                "Observation.patient",
                ValueTest::Reference(format!("Patient/{last}")),
            )])
            .collect()
    };
    // Prefix tests are not merged into one IN list: the OR itself must stay shallow.
    let prefixes: Vec<IndexTest> = (0..1500)
        .map(|i| test("Observation.code", ValueTest::Code(format!("none-{i}"))))
        .chain((0..1500).map(|i| {
            test(
                "Observation.patient",
                ValueTest::System(format!("urn:absent:{i}")),
            )
        }))
        .chain([test("Observation.code", ValueTest::Code("2345-7".into()))])
        .collect();
    let q = |clauses| ResourceQuery {
        resource_type: "Observation".into(),
        clauses,
        count: 10,
        sort: ResourceSort::last_updated_asc(),
        ..ResourceQuery::default()
    };
    assert_eq!(
        ids(&store, q(vec![many(2000, "p2")])).await,
        (1, vec!["b".to_string()])
    );
    assert_eq!(
        ids(&store, q(vec![prefixes.clone(), many(2000, "p3")])).await,
        (1, vec!["c".to_string()]),
        "both clauses long: one drives, the other filters"
    );
    assert_eq!(
        ids(&store, q(vec![many(1, "p1"), prefixes])).await,
        (1, vec!["a".to_string()])
    );
    store.close().await.expect("close");
}

fn quantity(param: &str, value: f64, system: &str, code: &str) -> IndexEntry {
    IndexEntry {
        param: param.into(),
        value: IndexValue::Quantity {
            value,
            system: system.into(),
            code: code.into(),
        },
    }
}

/// The ids of the Observations that `t` on `param` finds, sorted.
async fn observations_found(store: &Arc<dyn Store>, param: &str, t: ValueTest) -> Vec<String> {
    let (_, mut found) = ids(
        store,
        ResourceQuery {
            resource_type: "Observation".into(),
            clauses: vec![vec![test(param, t)]],
            count: 10,
            ..ResourceQuery::default()
        },
    )
    .await;
    found.sort();
    found
}

/// A quantity test as the API builds it: `5.4` is 5.4 in `[5.35, 5.45)`, the range of its
/// precision (bounds written out, as the API parses them from decimal text).
fn quantity_test(
    prefix: DatePrefix,
    (value, lo, hi): (f64, f64, f64),
    unit: Option<(&str, &str)>,
) -> ValueTest {
    let (system, code) = match unit {
        Some((s, c)) => ((!s.is_empty()).then(|| s.to_owned()), Some(c.to_owned())),
        None => (None, None),
    };
    ValueTest::Quantity(QuantityTest {
        prefix,
        value,
        lo,
        hi,
        system,
        code,
    })
}

/// FHIR quantity semantics: prefixes against the number, the search value's precision for
/// `eq`/`ne`/`sa`/`eb`, a tenth for `ap`, the unit by system and code or code alone, and sorting
/// by number whatever the unit.
pub async fn search_matches_quantities_by_prefix_precision_and_unit(h: &impl Harness) {
    let store = h.open().await;
    let ucum = "http://unitsofmeasure.org";
    let param = "Observation.value-quantity";
    let obs = |id: &str, value: f64, system: &str, code: &str| {
        put(
            "Observation",
            id,
            &format!(r#"{{"v":{value}}}"#),
            vec![quantity(param, value, system, code)],
        )
    };
    store
        .put_resources(vec![
            obs("low", 5.35, ucum, "mg/dL"),
            obs("mid", 5.4, ucum, "mg/dL"),
            obs("high", 5.449, "", "mg/dL"),
            obs("ten", 10.0, ucum, "mmol/L"),
            obs("neg", -2.0, "", "Cel"),
            put("Observation", "none", "{}", vec![]),
        ])
        .await
        .expect("write");
    let found = |t: ValueTest| observations_found(&store, param, t);
    use DatePrefix::*;
    // 5.4 is [5.35, 5.45).
    assert_eq!(
        found(quantity_test(Eq, (5.4, 5.35, 5.45), None)).await,
        ["high", "low", "mid"]
    );
    assert_eq!(
        found(quantity_test(Eq, (5.4, 5.395, 5.405), None)).await,
        ["mid"]
    );
    assert_eq!(
        found(quantity_test(Ne, (5.4, 5.35, 5.45), None)).await,
        ["neg", "ten"]
    );
    assert_eq!(
        found(quantity_test(Gt, (5.4, 5.35, 5.45), None)).await,
        ["high", "ten"]
    );
    assert_eq!(
        found(quantity_test(Ge, (5.4, 5.35, 5.45), None)).await,
        ["high", "mid", "ten"]
    );
    assert_eq!(
        found(quantity_test(Lt, (5.4, 5.35, 5.45), None)).await,
        ["low", "neg"]
    );
    assert_eq!(
        found(quantity_test(Le, (5.4, 5.35, 5.45), None)).await,
        ["low", "mid", "neg"]
    );
    assert_eq!(
        found(quantity_test(Sa, (5.4, 5.35, 5.45), None)).await,
        ["ten"]
    );
    assert_eq!(
        found(quantity_test(Eb, (5.4, 5.35, 5.45), None)).await,
        ["neg"]
    );
    // Within a tenth of 10: [9, 11]; of 5: [4.5, 5.5].
    assert_eq!(
        found(quantity_test(Ap, (10.0, 9.5, 10.5), None)).await,
        ["ten"]
    );
    assert_eq!(
        found(quantity_test(Ap, (5.0, 4.5, 5.5), None)).await,
        ["high", "low", "mid"]
    );
    // Units: system and code, code alone, no system.
    assert_eq!(
        found(quantity_test(Eq, (5.4, 5.35, 5.45), Some((ucum, "mg/dL")))).await,
        ["low", "mid"]
    );
    assert_eq!(
        found(quantity_test(Ge, (0.0, -0.5, 0.5), Some(("", "mg/dL")))).await,
        ["high", "low", "mid"]
    );
    let no_system = ValueTest::Quantity(QuantityTest {
        system: Some(String::new()),
        ..match quantity_test(Ge, (0.0, -0.5, 0.5), Some(("", "mg/dL"))) {
            ValueTest::Quantity(q) => q,
            _ => unreachable!(),
        }
    });
    assert_eq!(found(no_system).await, ["high"]);
    assert!(
        found(quantity_test(Gt, (0.0, -0.5, 0.5), Some((ucum, "Cel"))))
            .await
            .is_empty()
    );
    // Combined with another clause, the quantity is checked per candidate.
    let (_, both) = ids(
        &store,
        ResourceQuery {
            resource_type: "Observation".into(),
            ids: vec!["mid".into(), "ten".into()],
            clauses: vec![
                vec![test(param, ValueTest::Missing(false))],
                vec![test(param, quantity_test(Gt, (6.0, 5.5, 6.5), None))],
            ],
            count: 10,
            ..ResourceQuery::default()
        },
    )
    .await;
    assert_eq!(both, ["ten"]);
    // Sorted by number (a whole number comes back from SQLite as an integer), missing last.
    let sorted = |descending: bool| ResourceQuery {
        resource_type: "Observation".into(),
        sort: ResourceSort(vec![SortKey {
            by: SortBy::Number(param.into()),
            descending,
        }]),
        count: 10,
        ..ResourceQuery::default()
    };
    assert_eq!(
        ids(&store, sorted(false)).await.1,
        ["neg", "low", "mid", "high", "ten", "none"]
    );
    assert_eq!(
        ids(&store, sorted(true)).await.1,
        ["ten", "high", "mid", "low", "neg", "none"]
    );
    store.close().await.expect("close");
}

/// A composite matches a code and a quantity of the same element: a blood pressure whose
/// systolic is 150 and diastolic 80 is not found by "systolic above 100 and below 90".
pub async fn composites_match_a_code_with_its_own_quantity(h: &impl Harness) {
    let store = h.open().await;
    let param = "Observation.component-code-value-quantity";
    let bp = |id: &str, systolic: f64, diastolic: f64| {
        let component = |code: &str, value: f64| IndexEntry {
            param: param.into(),
            value: IndexValue::CodeQuantity {
                system: "http://loinc.org".into(),
                code: code.into(),
                value,
                unit: "mm[Hg]".into(),
            },
        };
        put(
            "Observation",
            id,
            &format!(r#"{{"s":{systolic},"d":{diastolic}}}"#),
            vec![
                component("8480-6", systolic),
                component("8462-4", diastolic),
            ],
        )
    };
    store
        .put_resources(vec![bp("high", 150.0, 80.0), bp("normal", 118.0, 76.0)])
        .await
        .expect("write");
    let found = |t: ValueTest| observations_found(&store, param, t);
    let composite = |system: Option<&str>, code: &str, q: ValueTest| match q {
        ValueTest::Quantity(quantity) => ValueTest::CodeQuantity {
            system: system.map(str::to_owned),
            code: code.into(),
            quantity,
        },
        _ => unreachable!(),
    };
    use DatePrefix::*;
    let gt140 = || quantity_test(Gt, (140.0, 139.5, 140.5), None);
    assert_eq!(found(composite(None, "8480-6", gt140())).await, ["high"]);
    assert_eq!(
        found(composite(Some("http://loinc.org"), "8480-6", gt140())).await,
        ["high"]
    );
    assert!(
        found(composite(Some(""), "8480-6", gt140()))
            .await
            .is_empty()
    );
    // The diastolic of "high" is 80: no component is both 8462-4 and above 140.
    assert!(found(composite(None, "8462-4", gt140())).await.is_empty());
    assert_eq!(
        found(composite(
            None,
            "8462-4",
            quantity_test(Lt, (78.0, 77.5, 78.5), None)
        ))
        .await,
        ["normal"]
    );
    // The unit by its code.
    let with_unit = |unit: &str| quantity_test(Gt, (100.0, 99.5, 100.5), Some(("", unit)));
    assert_eq!(
        found(composite(None, "8480-6", with_unit("mm[Hg]"))).await,
        ["high", "normal"]
    );
    assert!(
        found(composite(None, "8480-6", with_unit("kPa")))
            .await
            .is_empty()
    );
    store.close().await.expect("close");
}

/// Reindexing replaces the search values of the current version only, makes no version, skips
/// what changed since it was read, and moves its cursor in the same write.
pub async fn reindexing_replaces_search_values_of_the_current_version(h: &impl Harness) {
    let store = h.open().await;
    store
        .put_resources(vec![
            put(
                "Observation",
                "a",
                "{}",
                vec![token("Observation.status", "", "final")],
            ),
            put("Observation", "b", "{}", vec![]),
        ])
        .await
        .expect("write");
    store
        .put_resources(vec![put("Observation", "b", r#"{"b":2}"#, vec![])])
        .await
        .expect("b v2");
    let q = |t: ValueTest| ResourceQuery {
        resource_type: "Observation".into(),
        clauses: vec![vec![test("Observation.value-quantity", t)]],
        count: 10,
        ..ResourceQuery::default()
    };
    let seven = || quantity_test(DatePrefix::Gt, (7.0, 6.5, 7.5), None);
    assert_eq!(ids(&store, q(seven())).await.0, 0);
    let values = || {
        vec![
            token("Observation.status", "", "final"),
            quantity("Observation.value-quantity", 8.0, "", "mg"),
        ]
    };
    let done = store
        .reindex_resources(
            vec![
                Reindex {
                    resource_type: "Observation".into(),
                    id: "a".into(),
                    version: 1,
                    index: values(),
                },
                // Read at version 1, written since: skipped.
                Reindex {
                    resource_type: "Observation".into(),
                    id: "b".into(),
                    version: 1,
                    index: values(),
                },
                Reindex {
                    resource_type: "Observation".into(),
                    id: "gone".into(),
                    version: 1,
                    index: values(),
                },
            ],
            Some(("search-index".into(), 3)),
        )
        .await
        .expect("reindex");
    assert_eq!(done, 1);
    assert_eq!(ids(&store, q(seven())).await.1, ["a"]);
    assert_eq!(
        ids(&store, q(ValueTest::Code("final".into()))).await.1,
        Vec::<String>::new(),
        "a quantity parameter's unit is not a token"
    );
    let status = ResourceQuery {
        resource_type: "Observation".into(),
        clauses: vec![vec![test(
            "Observation.status",
            ValueTest::Code("final".into()),
        )]],
        count: 10,
        ..ResourceQuery::default()
    };
    assert_eq!(ids(&store, status).await.1, ["a"]);
    let a = store
        .resource("Observation", "a", None)
        .await
        .expect("read")
        .expect("a");
    assert_eq!(a.version, 1, "no new version");
    assert_eq!(store.cursor("search-index").await.expect("cursor"), 3);
    // The cursor may also move back (a generation is a number, not a scan position).
    store
        .reindex_resources(Vec::new(), Some(("search-index".into(), 1)))
        .await
        .expect("move");
    assert_eq!(store.cursor("search-index").await.expect("cursor"), 1);
    store.close().await.expect("close");
}

/// A scan pages through the current, live resources of one type, each page after the last.
pub async fn a_scan_pages_through_the_live_resources_of_a_type(h: &impl Harness) {
    let store = h.open().await;
    let mut puts: Vec<ResourcePut> = (0..7)
        .map(|i| put("Observation", &format!("o{i}"), "{}", vec![]))
        .collect();
    puts.push(put("Patient", "p", "{}", vec![]));
    store.put_resources(puts).await.expect("write");
    store
        .put_resources(vec![
            put("Observation", "o2", r#"{"v":2}"#, vec![]),
            ResourcePut {
                delete: true,
                ..put("Observation", "o5", "{}", vec![])
            },
        ])
        .await
        .expect("update and delete");
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .scan_resources("Observation", after, 4)
            .await
            .expect("scan");
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        assert!(last.position > after);
        after = last.position;
        seen.extend(
            page.into_iter()
                .map(|c| (c.resource.id, c.resource.version, c.resource.json)),
        );
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["o0", "o1", "o2", "o3", "o4", "o6"]);
    assert_eq!(seen[2].1, 2, "the current version");
    assert_eq!(seen[2].2, br#"{"v":2}"#);
    store.close().await.expect("close");
}

pub async fn an_update_replaces_the_search_values(h: &impl Harness) {
    let store = h.open().await;
    let with_status = |s: &str| {
        put(
            "Observation",
            "o1",
            &format!(r#"{{"status":"{s}"}}"#),
            vec![token("Observation.status", "", s)],
        )
    };
    store
        .put_resources(vec![with_status("preliminary")])
        .await
        .expect("v1");
    store
        .put_resources(vec![with_status("final")])
        .await
        .expect("v2");
    let q = |s: &str| ResourceQuery {
        resource_type: "Observation".into(),
        clauses: vec![vec![test("Observation.status", ValueTest::Code(s.into()))]],
        count: 10,
        ..ResourceQuery::default()
    };
    assert_eq!(ids(&store, q("preliminary")).await.0, 0);
    assert_eq!(ids(&store, q("final")).await.0, 1);
    store.close().await.expect("close");
}

/// A bulk load (an archive import) may suspend search indexes; searches during it and after it
/// answer exactly as without one, for resources written before, during and updated by it.
pub async fn a_bulk_load_leaves_search_answers_unchanged(h: &impl Harness) {
    let store = h.open().await;
    let day = DAY_MS;
    store
        .put_resources(vec![observation("before", "2345-7", 10, "p1")])
        .await
        .expect("write");
    let q = |test: IndexTest| ResourceQuery {
        resource_type: "Observation".into(),
        clauses: vec![vec![test]],
        count: 10,
        sort: ResourceSort::last_updated_asc(),
        ..ResourceQuery::default()
    };
    let questions = || {
        vec![
            q(test("Observation.code", ValueTest::Code("2345-7".into()))),
            q(test("Observation.code", ValueTest::Code("718-7".into()))),
            q(test(
                "Observation.patient",
                ValueTest::Reference("Patient/p2".into()),
            )),
            q(test(
                "Observation.date",
                ValueTest::Date(DateTest {
                    prefix: DatePrefix::Ge,
                    lo: 20 * day,
                    hi: 21 * day - 1,
                }),
            )),
        ]
    };
    let answers = |store: Arc<dyn Store>| async move {
        let mut out = Vec::new();
        for question in questions() {
            let (total, mut found) = ids(&store, question).await;
            found.sort();
            out.push((total, found));
        }
        out
    };
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let expected = vec![
        (2, s(&["during", "other"])),
        (1, s(&["before"])),
        (2, s(&["before", "during"])),
        (2, s(&["before", "during"])),
    ];

    // A load of many resources beside the one stored.
    let suspended = store.begin_bulk_load(1_000).await.expect("begin");
    store
        .put_resources(vec![
            observation("during", "2345-7", 20, "p2"),
            observation("other", "2345-7", 5, "p3"),
            // "before" moves to another code, patient and day.
            observation("before", "718-7", 30, "p2"),
        ])
        .await
        .expect("write during the load");
    assert_eq!(
        answers(Arc::clone(&store)).await,
        expected,
        "during the load"
    );
    store.end_bulk_load().await.expect("end");
    assert_eq!(
        answers(Arc::clone(&store)).await,
        expected,
        "after the load"
    );
    // Ending twice, or a small load beside what is stored, changes nothing either.
    store.end_bulk_load().await.expect("end again");
    let small = store.begin_bulk_load(0).await.expect("small load");
    if small {
        store.end_bulk_load().await.expect("end small");
    }
    assert!(
        suspended || !small,
        "a small load suspended what a large one did not"
    );
    assert_eq!(answers(store).await, expected, "after a small load");
}
