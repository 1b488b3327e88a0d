//! Conformance against an independent converter: every case of FHIR-Converter's functional tests
//! (`shared/corpus/fhir-converter/test-cases.tsv`) is converted by us and compared with FHIR-Converter's
//! expected bundle, leaf by leaf.
//!
//! How the comparison works (the rules are ours; FHIR-Converter's own test is an exact JSON comparison):
//! - A resource is flattened to its leaves: `(path, value)` with array positions dropped (`name.given`),
//!   so the order of repeated elements does not matter, but each value counts as often as it occurs.
//! - Ids and `fullUrl`s are not compared (theirs are hashes of template text, ours of business identifiers);
//!   a reference is compared by the type of what it points to (`Organization/…` and our `urn:uuid:` of an
//!   Organization are equal). Provenance `text.div` is skipped (it holds a generation time).
//! - A dateTime with an offset is compared as the instant it names: FHIR-Converter rewrites every time
//!   into the zone of the machine it ran on (`+05:30` in its expected files), we keep the sender's zone;
//!   `1989-08-18T14:41:00+05:30` and `1989-08-18T11:26:00+02:15` are one instant and agree.
//! - Resources are paired within each type, greedily by the number of leaves they share.
//! - An expected leaf *agrees* when our paired resource has the same path and value; else it is
//!   *documented* when a row of the deviation table in `docs/conformance.md` covers it (type, path, value
//!   pattern), else *missing*. Leaves we write that they do not are counted as extra, not judged.
//! - Copies: FHIR-Converter writes one thing several times where we write it once (a Location chain per
//!   PL field, so a hospital named in PV1-3 and PV1-6 is two Locations). An expected resource is a copy
//!   when its leaves (apart from those a deviation row covers) equal an earlier expected resource's of
//!   the same type; when we hold that content in fewer resources than they do (but in at least one),
//!   the surplus copies are set aside before pairing and their leaves count as documented (the
//!   "Duplicate resources" paragraph of `docs/conformance.md`), shown as `copies`.
//!
//! Output: per case and per resource type; `CONFORMANCE_TYPE=Patient` limits the detail to one type,
//! `CONFORMANCE_MISSING=1` lists the missing leaves. The test fails if the agreement falls below the
//! floor recorded here (raised as the mapping grows; the target, 95%, is reached).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

/// The lowest accepted share of expected leaves that agree or are documented deviations, in percent:
/// just under the figure reached (95.8%), so a change that loses agreement fails here. The issue's
/// target is 95%.
const FLOOR_PERCENT: f64 = 95.5;

#[derive(Default, Clone, Copy)]
struct Tally {
    expected: usize,
    agree: usize,
    documented: usize,
    extra: usize,
    /// Leaves of FHIR-Converter's surplus copies of one resource (also counted in `documented`).
    copies: usize,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.expected += o.expected;
        self.agree += o.agree;
        self.documented += o.documented;
        self.extra += o.extra;
        self.copies += o.copies;
    }
    fn percent(&self) -> f64 {
        if self.expected == 0 {
            100.0
        } else {
            100.0 * (self.agree + self.documented) as f64 / self.expected as f64
        }
    }
}

/// One row of the deviation table.
struct Deviation {
    resource_type: String,
    path: String,
    value: regex::Regex,
}

/// Reads the `| type | path | expected value | reason |` rows under "## Deviations" in docs/conformance.md.
fn deviations() -> Vec<Deviation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/conformance.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = text
        .split("\n## Deviations")
        .nth(1)
        .unwrap_or_else(|| panic!("{}: no `## Deviations` section", path.display()));
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut out = Vec::new();
    for (n, line) in section.lines().enumerate() {
        let cells = table_cells(line);
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        if !line.trim_start().starts_with('|') || cells.len() < 4 || cells[0] == "type" {
            continue;
        }
        if cells[0].starts_with("---") {
            continue;
        }
        let unquote = |s: &str| s.trim_matches('`').to_owned();
        let pattern = unquote(cells[2]);
        let value = regex::Regex::new(&format!("^(?:{pattern})$"))
            .unwrap_or_else(|e| panic!("docs/conformance.md deviations line {n}: {e}"));
        assert!(
            !cells[3].is_empty(),
            "docs/conformance.md deviations line {n}: no reason"
        );
        out.push(Deviation {
            resource_type: unquote(cells[0]),
            path: unquote(cells[1]),
            value,
        });
    }
    out
}

/// The cells of a Markdown table row; `\\|` is a pipe inside a cell (regex alternatives).
fn table_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().expect("one cell").push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("one cell").push(c),
        }
    }
    cells.iter().map(|c| c.trim().to_owned()).collect()
}

fn covered(deviations: &[Deviation], resource_type: &str, path: &str, value: &str) -> bool {
    deviations.iter().any(|d| {
        (d.resource_type == "*" || d.resource_type == resource_type)
            && (d.path == "*"
                || d.path == path
                || d.path
                    .strip_suffix(".*")
                    .is_some_and(|p| path.starts_with(&format!("{p}."))))
            && d.value.is_match(value)
    })
}

/// The leaves of a resource; references become `->Type` through `type_of` (id -> resource type).
fn leaves(
    value: &Value,
    path: &str,
    type_of: &HashMap<String, String>,
    out: &mut Vec<(String, String)>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && (k == "id" || k == "resourceType") {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k == "reference"
                    && let Value::String(r) = v
                {
                    out.push((p, normalise_reference(r, type_of)));
                    continue;
                }
                leaves(v, &p, type_of, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                leaves(item, path, type_of, out);
            }
        }
        Value::String(s) => out.push((path.to_owned(), instant(s).unwrap_or_else(|| s.clone()))),
        other => out.push((path.to_owned(), other.to_string())),
    }
}

/// A dateTime with a time and an offset, as the UTC instant it names.
fn instant(value: &str) -> Option<String> {
    let b = value.as_bytes();
    let shaped = b.len() >= 20
        && b[4] == b'-'
        && b[10] == b'T'
        && (value.ends_with('Z') || matches!(b[b.len() - 6], b'+' | b'-'));
    if !shaped {
        return None;
    }
    value
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| format!("instant {t}"))
}

fn normalise_reference(reference: &str, type_of: &HashMap<String, String>) -> String {
    if let Some(id) = reference.strip_prefix("urn:uuid:") {
        return format!("->{}", type_of.get(id).map_or("?", String::as_str));
    }
    match reference.split_once('/') {
        Some((t, _)) => format!("->{t}"),
        None => "->?".into(),
    }
}

/// Resources of a bundle as (type, leaves).
fn resources(bundle: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut type_of = HashMap::new();
    for e in &entries {
        let r = &e["resource"];
        if let (Some(id), Some(t)) = (r["id"].as_str(), r["resourceType"].as_str()) {
            type_of.insert(id.to_owned(), t.to_owned());
        }
    }
    entries
        .iter()
        .filter_map(|e| {
            let r = &e["resource"];
            let t = r["resourceType"].as_str()?.to_owned();
            let mut r = r.clone();
            if t == "Provenance"
                && let Some(text) = r.get_mut("text").and_then(Value::as_object_mut)
            {
                text.remove("div");
            }
            let mut out = Vec::new();
            leaves(&r, "", &type_of, &mut out);
            Some((t, out))
        })
        .collect()
}

/// Whether every leaf of `part` occurs in `whole`, as often as in `part`.
fn contains_all(whole: &[(String, String)], part: &[(String, String)]) -> bool {
    shared(part, whole) == part.len()
}

/// The expected resources of one type that are surplus copies of another: same leaves apart from those
/// a deviation row covers, more copies in theirs than resources of ours holding all those leaves, and
/// at least one of ours holding them (else nothing of it is ours and the leaves stay missing).
fn surplus_copies(
    exp: &[(String, Vec<(String, String)>)],
    our: &[(String, Vec<(String, String)>)],
    e_idx: &[usize],
    o_idx: &[usize],
    deviations: &[Deviation],
) -> std::collections::HashSet<usize> {
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<usize>> = BTreeMap::new();
    for &e in e_idx {
        let (t, leaves) = &exp[e];
        let mut key: Vec<(String, String)> = leaves
            .iter()
            .filter(|(p, v)| !covered(deviations, t, p, v))
            .cloned()
            .collect();
        key.sort();
        if !key.is_empty() {
            groups.entry(key).or_default().push(e);
        }
    }
    let mut out = std::collections::HashSet::new();
    for (key, copies) in groups {
        if copies.len() < 2 {
            continue;
        }
        let ours = o_idx
            .iter()
            .filter(|&&o| contains_all(&our[o].1, &key))
            .count();
        if ours >= 1 && ours < copies.len() {
            out.extend(copies.into_iter().skip(ours));
        }
    }
    out
}

/// Size of the multiset intersection of two leaf lists.
fn shared(a: &[(String, String)], b: &[(String, String)]) -> usize {
    let mut counts: HashMap<&(String, String), isize> = HashMap::new();
    for l in b {
        *counts.entry(l).or_default() += 1;
    }
    let mut n = 0;
    for l in a {
        if let Some(c) = counts.get_mut(l)
            && *c > 0
        {
            *c -= 1;
            n += 1;
        }
    }
    n
}

struct CaseResult {
    by_type: BTreeMap<String, Tally>,
    missing: Vec<(String, String, String)>,
}

fn compare(expected: &Value, ours: &Value, deviations: &[Deviation]) -> CaseResult {
    let exp = resources(expected);
    let our = resources(ours);
    let mut by_type: BTreeMap<String, Tally> = BTreeMap::new();
    let mut missing = Vec::new();
    let types: std::collections::BTreeSet<&String> = exp.iter().map(|(t, _)| t).collect();
    for t in types {
        let e_idx: Vec<usize> = (0..exp.len()).filter(|&i| &exp[i].0 == t).collect();
        let o_idx: Vec<usize> = (0..our.len()).filter(|&i| &our[i].0 == t).collect();
        let copies = surplus_copies(&exp, &our, &e_idx, &o_idx, deviations);
        let e_idx: Vec<usize> = e_idx.into_iter().filter(|e| !copies.contains(e)).collect();
        let tally = by_type.entry(t.clone()).or_default();
        for &e in &copies {
            let n = exp[e].1.len();
            tally.expected += n;
            tally.documented += n;
            tally.copies += n;
        }
        let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
        for &e in &e_idx {
            for &o in &o_idx {
                pairs.push((shared(&exp[e].1, &our[o].1), e, o));
            }
        }
        pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut partner: HashMap<usize, usize> = HashMap::new();
        let mut taken = std::collections::HashSet::new();
        for (score, e, o) in pairs {
            if score == 0 || partner.contains_key(&e) || taken.contains(&o) {
                continue;
            }
            partner.insert(e, o);
            taken.insert(o);
        }
        for &e in &e_idx {
            let empty = Vec::new();
            let ours_leaves = partner.get(&e).map_or(&empty, |&o| &our[o].1);
            let mut counts: HashMap<&(String, String), isize> = HashMap::new();
            for l in ours_leaves {
                *counts.entry(l).or_default() += 1;
            }
            for leaf in &exp[e].1 {
                tally.expected += 1;
                match counts.get_mut(leaf) {
                    Some(c) if *c > 0 => {
                        *c -= 1;
                        tally.agree += 1;
                    }
                    _ if covered(deviations, t, &leaf.0, &leaf.1) => tally.documented += 1,
                    _ => missing.push((t.clone(), leaf.0.clone(), leaf.1.clone())),
                }
            }
            tally.extra += counts.values().map(|&c| c.max(0) as usize).sum::<usize>();
        }
    }
    CaseResult { by_type, missing }
}

#[test]
fn agreement_with_fhir_converter() {
    let root = support::corpus_dir().join("fhir-converter");
    let cases = std::fs::read_to_string(root.join("test-cases.tsv")).expect("test-cases.tsv");
    let deviations = deviations();
    println!(
        "{} documented deviations in docs/conformance.md",
        deviations.len()
    );
    let focus = std::env::var("CONFORMANCE_TYPE").ok();
    let list_missing = std::env::var("CONFORMANCE_MISSING").is_ok();
    let mut total: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut case_count = 0;
    for line in cases.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [template, input, expected] = cols[..] else {
            continue;
        };
        if !input.ends_with(".hl7") || !expected.ends_with(".json") {
            continue;
        }
        case_count += 1;
        let bytes = std::fs::read(root.join(input)).expect("input");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(root.join(expected)).expect("expected"))
                .expect("json");
        let ours = match support::convert(&bytes) {
            Ok(c) => fhir::to_value(&c.bundle).expect("bundle"),
            Err(e) => {
                failures.push(format!("{input}: {e}"));
                serde_json::json!({"resourceType": "Bundle", "entry": []})
            }
        };
        let result = compare(&expected, &ours, &deviations);
        let mut case = Tally::default();
        for (t, tally) in &result.by_type {
            case.add(*tally);
            total.entry(t.clone()).or_default().add(*tally);
        }
        println!(
            "{template:8} {input:45} {:6.1}% of {} leaves",
            case.percent(),
            case.expected
        );
        if list_missing {
            for (t, path, value) in &result.missing {
                if focus.as_deref().is_none_or(|f| f == t) {
                    let shown: String = value.chars().take(60).collect();
                    println!("    missing {t}.{path} = {shown}");
                }
            }
        }
    }
    println!(
        "\n{:20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "type", "expected", "agree", "document", "copies", "extra", "ok%"
    );
    let mut all = Tally::default();
    for (t, tally) in &total {
        all.add(*tally);
        if focus.as_deref().is_none_or(|f| f == t) {
            println!(
                "{t:20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6.1}%",
                tally.expected,
                tally.agree,
                tally.documented,
                tally.copies,
                tally.extra,
                tally.percent()
            );
        }
    }
    println!(
        "{:20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6.1}%\n{case_count} cases; agree {:.1}%, documented deviations {:.1}% (of which surplus copies {:.1}%)",
        "all",
        all.expected,
        all.agree,
        all.documented,
        all.copies,
        all.extra,
        all.percent(),
        100.0 * all.agree as f64 / all.expected as f64,
        100.0 * all.documented as f64 / all.expected as f64,
        100.0 * all.copies as f64 / all.expected as f64,
    );
    assert!(
        failures.is_empty(),
        "cases that did not convert:\n{}",
        failures.join("\n")
    );
    assert!(
        all.percent() >= FLOOR_PERCENT,
        "agreement {:.1}% fell below the floor {FLOOR_PERCENT}%",
        all.percent()
    );
}
