//! A learned feed profile as a starting conformance profile (the JSON that
//! `causeway validate --profile` reads, see `hl7v2::validate::Profile`):
//! - `base_version`: the version every message of the feed names, when there is one and the
//!   definitions know it;
//! - every Z segment seen, declared with one field per field number seen (`ST`, optional; named
//!   `ZPD-1` and so on, to be renamed by whoever knows what the sender means);
//! - each coded field's learned values as its HL7 table with `"extend": true` (the standard's
//!   values stay valid, the sender's local ones are added), when the field has a table number;
//! - `"lengths": "warning"`, and Z segments allowed anywhere, as the validator's defaults.
//!
//! It is a start, reviewed by a person before use: it describes what the feed did, right or wrong.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::learner::FeedProfile;

/// The conformance profile JSON for a channel's learned profile.
pub fn conformance_profile(channel: &str, profile: &FeedProfile) -> Value {
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut z_fields: BTreeMap<String, usize> = BTreeMap::new();
    let mut tables: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for t in profile.types.values() {
        *versions.entry(t.version.as_str()).or_insert(0) += t.messages;
        for id in t.segments.keys().filter(|id| id.starts_with('Z')) {
            z_fields.entry(id.clone()).or_insert(0);
        }
        for (name, f) in &t.fields {
            let (seg, n) = (name.segment(), name.field());
            if seg.starts_with('Z') {
                let most = z_fields.entry(seg.to_string()).or_insert(0);
                *most = (*most).max(n);
            }
            if f.is_coded() && f.table != 0 && !f.open_ended && !f.values.is_empty() {
                tables
                    .entry(f.table)
                    .or_default()
                    .extend(f.values.keys().cloned());
            }
        }
    }
    // One version across the feed: its definitions are the base. Several: each message is
    // checked against its own MSH-12, as without a base.
    let known = hl7v2::validate::supported_versions();
    let base_version = match versions.keys().collect::<Vec<_>>().as_slice() {
        [only] if known.contains(only) => Some(only.to_string()),
        _ => None,
    };
    let segments: serde_json::Map<String, Value> = z_fields
        .into_iter()
        .map(|(id, most)| {
            let fields: Vec<Value> = (1..=most)
                .map(|n| json!({"name": format!("{id}-{n}"), "type": "ST", "usage": "O"}))
                .collect();
            (id, json!({ "fields": fields }))
        })
        .collect();
    let tables: serde_json::Map<String, Value> = tables
        .into_iter()
        .map(|(n, values)| {
            (
                n.to_string(),
                json!({"values": values.into_iter().collect::<Vec<_>>(), "extend": true}),
            )
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("name".into(), json!(format!("{channel}-learned")));
    if let Some(v) = base_version {
        out.insert("base_version".into(), json!(v));
    }
    out.insert("z_segments".into(), json!("anywhere"));
    out.insert("lengths".into(), json!("warning"));
    out.insert("segments".into(), Value::Object(segments));
    out.insert("tables".into(), Value::Object(tables));
    Value::Object(out)
}
