//! The standard definitions the crate ships (`data/definitions.json`) and the view that
//! overlays a user [`Profile`](super::Profile) on them.
//!
//! Map:
//! - [`FieldDef`], [`ElementDef`], [`Usage`]: the shapes shared by the data file and profiles
//!   (fields and components as `[name, type, usage, reps, len, table]` arrays or objects,
//!   structure elements as `"PID"`, `["PID", min, max]` or `["GROUP", min, max, [...]]`).
//! - [`Data`]: the whole file, parsed once on first use ([`data`], a `OnceLock`).
//! - [`Defs`]: what one validation run looks things up in: one version plus an optional
//!   profile, the profile winning.
//!
//! Invariants: the data is embedded at compile time, so loading can only fail if the file
//! was edited by hand; that failure is reported as a finding (207), never a panic. In the
//! data, `0` means "unbounded" for repetitions and structure maxima, and "not given" for
//! lengths and table numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::profile::Profile;

/// The embedded definition set (see `data/PROVENANCE.md`).
const DEFINITIONS_JSON: &str = include_str!("../../data/definitions.json");

/// Format number the loader understands; the converter writes it as `"format"`.
const DATA_FORMAT: u32 = 1;

/// Optionality of a field or component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `R`: must be valued.
    Required,
    /// `O` (and `RE`, "required but may be empty", which a receiver cannot enforce).
    Optional,
    /// `C`: conditional; the condition is prose in the standard, so it is not checked.
    Conditional,
    /// `B`: kept for backward compatibility.
    Backward,
    /// `W`: withdrawn.
    Withdrawn,
}

impl Usage {
    fn parse(text: &str) -> Option<Usage> {
        Some(match text {
            "R" => Usage::Required,
            "O" | "RE" => Usage::Optional,
            "C" | "CE" => Usage::Conditional,
            "B" => Usage::Backward,
            "W" => Usage::Withdrawn,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Usage::parse(&text).ok_or_else(|| {
            de::Error::invalid_value(de::Unexpected::Str(&text), &"one of R, RE, O, C, CE, B, W")
        })
    }
}

/// One field of a segment, or one component of a composite data type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    pub name: Box<str>,
    /// Data type code, e.g. `CX`, `ST`, `DTM`.
    pub data_type: Box<str>,
    pub usage: Usage,
    /// Maximum repetitions; 0 = unbounded.
    pub max_repetitions: u32,
    /// Maximum length in characters; 0 = not given.
    pub max_length: u32,
    /// HL7 table number; 0 = none.
    pub table: u32,
}

impl Default for FieldDef {
    fn default() -> Self {
        FieldDef {
            name: "".into(),
            data_type: "ST".into(),
            usage: Usage::Optional,
            max_repetitions: 1,
            max_length: 0,
            table: 0,
        }
    }
}

/// The keys of the object form of a field, also used for partial overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldPatch {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    pub usage: Option<Usage>,
    pub reps: Option<u32>,
    pub len: Option<u32>,
    pub table: Option<u32>,
}

impl FieldPatch {
    pub(crate) fn apply(&self, f: &mut FieldDef) {
        if let Some(v) = &self.name {
            f.name = v.as_str().into();
        }
        if let Some(v) = &self.data_type {
            f.data_type = v.as_str().into();
        }
        if let Some(v) = self.usage {
            f.usage = v;
        }
        if let Some(v) = self.reps {
            f.max_repetitions = v;
        }
        if let Some(v) = self.len {
            f.max_length = v;
        }
        if let Some(v) = self.table {
            f.table = v;
        }
    }
}

impl<'de> Deserialize<'de> for FieldDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field as [name, type, usage, reps, len, table] or {\"name\": .., \"type\": ..}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldDef, A::Error> {
                let missing = |i| {
                    de::Error::invalid_length(i, &"6 elements: name, type, usage, reps, len, table")
                };
                let name: String = seq.next_element()?.ok_or_else(|| missing(0))?;
                let data_type: String = seq.next_element()?.ok_or_else(|| missing(1))?;
                let usage: Usage = seq.next_element()?.ok_or_else(|| missing(2))?;
                let max_repetitions: u32 = seq.next_element()?.ok_or_else(|| missing(3))?;
                let max_length: u32 = seq.next_element()?.ok_or_else(|| missing(4))?;
                let table: u32 = seq.next_element()?.ok_or_else(|| missing(5))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(7, &"6 elements"));
                }
                Ok(FieldDef {
                    name: name.into(),
                    data_type: data_type.into(),
                    usage,
                    max_repetitions,
                    max_length,
                    table,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldDef, A::Error> {
                let patch = FieldPatch::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if patch.data_type.is_none() {
                    return Err(de::Error::missing_field("type"));
                }
                let mut f = FieldDef::default();
                patch.apply(&mut f);
                Ok(f)
            }
        }
        d.deserialize_any(V)
    }
}

/// The structure element that matches any one segment (the standard's "any HL7 segment"
/// in query and master-file structures).
pub const ANY_SEGMENT: &str = "*";

/// One element of a message structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementDef {
    Segment {
        id: Box<str>,
        min: u32,
        max: u32,
    },
    Group {
        name: Box<str>,
        min: u32,
        max: u32,
        children: Vec<ElementDef>,
    },
}

impl ElementDef {
    pub fn min(&self) -> u32 {
        match self {
            ElementDef::Segment { min, .. } | ElementDef::Group { min, .. } => *min,
        }
    }

    pub fn max(&self) -> u32 {
        match self {
            ElementDef::Segment { max, .. } | ElementDef::Group { max, .. } => *max,
        }
    }
}

impl<'de> Deserialize<'de> for ElementDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ElementDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a segment id, [id, min, max] or [group name, min, max, [elements]]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ElementDef, E> {
                check_segment_id(v)?;
                Ok(ElementDef::Segment {
                    id: v.into(),
                    min: 1,
                    max: 1,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ElementDef, A::Error> {
                let missing = |i| {
                    de::Error::invalid_length(i, &"[id, min, max] or [group, min, max, [elements]]")
                };
                let name: String = seq.next_element()?.ok_or_else(|| missing(0))?;
                let min: u32 = seq.next_element()?.ok_or_else(|| missing(1))?;
                let max: u32 = seq.next_element()?.ok_or_else(|| missing(2))?;
                if max != 0 && max < min {
                    return Err(de::Error::custom(format!(
                        "maximum {max} is below minimum {min} for {name}"
                    )));
                }
                match seq.next_element::<Vec<ElementDef>>()? {
                    Some(children) => {
                        if seq.next_element::<de::IgnoredAny>()?.is_some() {
                            return Err(de::Error::invalid_length(5, &"at most 4 elements"));
                        }
                        if children.is_empty() {
                            return Err(de::Error::custom(format!("group {name} has no elements")));
                        }
                        Ok(ElementDef::Group {
                            name: name.into(),
                            min,
                            max,
                            children,
                        })
                    }
                    None => {
                        check_segment_id(&name)?;
                        Ok(ElementDef::Segment {
                            id: name.into(),
                            min,
                            max,
                        })
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn check_segment_id<E: de::Error>(id: &str) -> Result<(), E> {
    let ok = id == ANY_SEGMENT
        || id.len() == 3
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(de::Error::invalid_value(
            de::Unexpected::Str(id),
            &"a segment id of 3 upper-case letters or digits, or *",
        ))
    }
}

#[derive(Debug, Deserialize)]
struct Pool {
    segments: HashMap<String, Vec<Vec<FieldDef>>>,
    datatypes: HashMap<String, Vec<Vec<FieldDef>>>,
    tables: HashMap<String, Vec<Vec<String>>>,
    structures: HashMap<String, Vec<Vec<ElementDef>>>,
}

#[derive(Debug, Deserialize)]
struct RawVersion {
    segments: HashMap<String, usize>,
    datatypes: HashMap<String, usize>,
    tables: HashMap<String, usize>,
    structures: HashMap<String, usize>,
    events: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawData {
    format: u32,
    pool: Pool,
    versions: BTreeMap<String, RawVersion>,
}

/// One version's definitions, resolved out of the shared pool.
#[derive(Debug)]
pub struct VersionDefs {
    pub segments: HashMap<Box<str>, Vec<FieldDef>>,
    pub datatypes: HashMap<Box<str>, Vec<FieldDef>>,
    /// Sorted values per table number.
    pub tables: HashMap<u32, Vec<Box<str>>>,
    pub structures: HashMap<Box<str>, Vec<ElementDef>>,
    /// `ADT^A04` -> `ADT_A01`.
    pub events: HashMap<Box<str>, Box<str>>,
    /// Message types (`ADT`) with at least one structure or event.
    pub message_types: HashSet<Box<str>>,
}

/// The whole embedded set.
#[derive(Debug)]
pub struct Data {
    pub versions: BTreeMap<String, VersionDefs>,
}

impl Data {
    /// The versions the set covers, oldest first.
    pub fn version_ids(&self) -> impl Iterator<Item = &str> {
        self.versions.keys().map(String::as_str)
    }
}

fn resolve<T: Clone>(
    pool: &HashMap<String, Vec<T>>,
    name: &str,
    index: usize,
) -> Result<T, String> {
    pool.get(name)
        .and_then(|v| v.get(index))
        .cloned()
        .ok_or_else(|| format!("definition {name} variant {index} is missing from the pool"))
}

fn load() -> Result<Data, String> {
    let raw: RawData =
        serde_json::from_str(DEFINITIONS_JSON).map_err(|e| format!("embedded definitions: {e}"))?;
    if raw.format != DATA_FORMAT {
        return Err(format!(
            "embedded definitions have format {}, expected {DATA_FORMAT}",
            raw.format
        ));
    }
    let mut versions = BTreeMap::new();
    for (id, v) in raw.versions {
        let mut out = VersionDefs {
            segments: HashMap::with_capacity(v.segments.len()),
            datatypes: HashMap::with_capacity(v.datatypes.len()),
            tables: HashMap::with_capacity(v.tables.len()),
            structures: HashMap::with_capacity(v.structures.len()),
            events: v
                .events
                .into_iter()
                .map(|(k, s)| (k.into(), s.into()))
                .collect(),
            message_types: HashSet::new(),
        };
        for (name, i) in v.segments {
            let def = resolve(&raw.pool.segments, &name, i)?;
            out.segments.insert(name.into(), def);
        }
        for (name, i) in v.datatypes {
            let def = resolve(&raw.pool.datatypes, &name, i)?;
            out.datatypes.insert(name.into(), def);
        }
        for (name, i) in v.tables {
            let mut values: Vec<Box<str>> = resolve(&raw.pool.tables, &name, i)?
                .into_iter()
                .map(Into::into)
                .collect();
            values.sort();
            let n: u32 = name
                .parse()
                .map_err(|_| format!("table number {name:?} is not a number"))?;
            out.tables.insert(n, values);
        }
        for (name, i) in v.structures {
            let def = resolve(&raw.pool.structures, &name, i)?;
            out.structures.insert(name.into(), def);
        }
        let types: HashSet<Box<str>> = out
            .structures
            .keys()
            .chain(out.events.keys())
            .filter_map(|k| k.get(..3))
            .map(Into::into)
            .collect();
        out.message_types = types;
        versions.insert(id, out);
    }
    Ok(Data { versions })
}

/// The embedded definitions, parsed on first use.
pub fn data() -> Result<&'static Data, &'static str> {
    static DATA: OnceLock<Result<Data, String>> = OnceLock::new();
    DATA.get_or_init(load).as_ref().map_err(String::as_str)
}

/// A table's values as a lookup: the standard's, a profile's, or both.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'d> {
    base: Option<&'d [Box<str>]>,
    extra: Option<&'d [String]>,
}

impl TableView<'_> {
    pub fn contains(&self, value: &str) -> bool {
        self.base
            .is_some_and(|b| b.binary_search_by(|v| (**v).cmp(value)).is_ok())
            || self.extra.is_some_and(|e| e.iter().any(|v| v == value))
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_none_or(|b| b.is_empty()) && self.extra.is_none_or(|e| e.is_empty())
    }
}

/// Lookups for one validation run: a version's definitions with a profile over them.
#[derive(Debug)]
pub struct Defs<'d> {
    pub version_id: &'d str,
    version: &'d VersionDefs,
    profile: Option<&'d Profile>,
    /// Segments with field overrides, merged once per run.
    merged: HashMap<String, Vec<FieldDef>>,
}

impl<'d> Defs<'d> {
    pub fn new(
        version_id: &'d str,
        version: &'d VersionDefs,
        profile: Option<&'d Profile>,
    ) -> Self {
        let mut merged = HashMap::new();
        for (id, p) in profile.map(|p| &p.segments).into_iter().flatten() {
            if p.fields.is_some() || p.overrides.is_empty() {
                continue;
            }
            let mut fields = version
                .segments
                .get(id.as_str())
                .cloned()
                .unwrap_or_default();
            for (n, patch) in &p.overrides {
                let i = *n as usize - 1;
                if fields.len() <= i {
                    fields.resize(i + 1, FieldDef::default());
                }
                patch.apply(&mut fields[i]);
            }
            merged.insert(id.clone(), fields);
        }
        Defs {
            version_id,
            version,
            profile,
            merged,
        }
    }

    pub fn profile(&self) -> Option<&'d Profile> {
        self.profile
    }

    pub fn segment(&self, id: &str) -> Option<&[FieldDef]> {
        if let Some(fields) = self
            .profile
            .and_then(|p| p.segments.get(id))
            .and_then(|p| p.fields.as_ref())
        {
            return Some(fields.as_slice());
        }
        if let Some(fields) = self.merged.get(id) {
            return Some(fields.as_slice());
        }
        self.version.segments.get(id).map(Vec::as_slice)
    }

    pub fn has_segment(&self, id: &str) -> bool {
        self.profile.is_some_and(|p| p.segments.contains_key(id))
            || self.version.segments.contains_key(id)
    }

    pub fn datatype(&self, name: &str) -> Option<&'d [FieldDef]> {
        if let Some(d) = self.profile.and_then(|p| p.datatypes.get(name)) {
            return Some(d.as_slice());
        }
        self.version.datatypes.get(name).map(Vec::as_slice)
    }

    pub fn table(&self, n: u32) -> TableView<'d> {
        let over = self.profile.and_then(|p| p.tables.get(&n));
        let base = match over {
            Some(t) if !t.extend => None,
            _ => self.version.tables.get(&n).map(Vec::as_slice),
        };
        TableView {
            base,
            extra: over.map(|t| t.values.as_slice()),
        }
    }

    /// The structure and its name as stored (so the name outlives the caller's string).
    pub fn structure(&self, name: &str) -> Option<(&'d str, &'d [ElementDef])> {
        if let Some((k, s)) = self.profile.and_then(|p| p.structures.get_key_value(name)) {
            return Some((k.as_str(), s.as_slice()));
        }
        self.version
            .structures
            .get_key_value(name)
            .map(|(k, s)| (&**k, s.as_slice()))
    }

    pub fn event(&self, key: &str) -> Option<&'d str> {
        if let Some(s) = self.profile.and_then(|p| p.events.get(key)) {
            return Some(s.as_str());
        }
        self.version.events.get(key).map(|s| &**s)
    }

    pub fn knows_message_type(&self, code: &str) -> bool {
        self.version.message_types.contains(code)
            || self.profile.is_some_and(|p| {
                p.events.keys().any(|k| k.split('^').next() == Some(code))
                    || p.structures
                        .keys()
                        .any(|k| k.split('_').next() == Some(code))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_loads_with_every_version() {
        let d = data().unwrap();
        let ids: Vec<&str> = d.version_ids().collect();
        assert_eq!(
            ids,
            [
                "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8",
                "2.8.1", "2.8.2"
            ]
        );
        let v = &d.versions["2.5.1"];
        assert_eq!(&*v.events["ADT^A04"], "ADT_A01");
        let pid = &v.segments["PID"];
        assert_eq!(&*pid[2].name, "Patient Identifier List");
        assert_eq!(pid[2].usage, Usage::Required);
        assert_eq!(pid[2].max_repetitions, 0);
        assert!(v.tables[&1].iter().any(|x| &**x == "F"));
    }

    #[test]
    fn every_structure_segment_and_field_type_is_defined() {
        // The data would be useless if structures named segments the version does not
        // define: each would report a sequence error on valid messages' field checks.
        let d = data().unwrap();
        for (id, v) in &d.versions {
            fn walk(e: &[ElementDef], v: &VersionDefs, id: &str, missing: &mut Vec<String>) {
                for el in e {
                    match el {
                        ElementDef::Segment { id: s, .. } => {
                            if !v.segments.contains_key(s) {
                                missing.push(format!("{id} {s}"));
                            }
                        }
                        ElementDef::Group { children, .. } => walk(children, v, id, missing),
                    }
                }
            }
            let mut missing = Vec::new();
            for s in v.structures.values() {
                walk(s, v, id, &mut missing);
            }
            missing.sort();
            missing.dedup();
            assert!(
                missing.len() <= 3,
                "{id}: segments without definition: {missing:?}"
            );
        }
    }

    #[test]
    fn field_object_form_needs_a_type() {
        let f: FieldDef =
            serde_json::from_str(r#"{"name": "Flag", "type": "ID", "usage": "R", "table": 136}"#)
                .unwrap();
        assert_eq!(f.usage, Usage::Required);
        assert_eq!(f.max_repetitions, 1);
        let e = serde_json::from_str::<FieldDef>(r#"{"name": "Flag"}"#).unwrap_err();
        assert_eq!(e.to_string(), "missing field `type` at line 1 column 16");
        let e = serde_json::from_str::<FieldDef>(r#"["a", "ST", "Q", 1, 0, 0]"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value: string \"Q\", expected one of R, RE, O, C, CE, B, W"),
            "{e}"
        );
    }

    #[test]
    fn element_forms() {
        let e: Vec<ElementDef> =
            serde_json::from_str(r#"["MSH", ["ZPD", 0, 1], ["G", 0, 0, ["PID"]]]"#).unwrap();
        assert_eq!(
            e[0],
            ElementDef::Segment {
                id: "MSH".into(),
                min: 1,
                max: 1
            }
        );
        assert_eq!(e[1].max(), 1);
        assert!(matches!(&e[2], ElementDef::Group { children, .. } if children.len() == 1));
        let err = serde_json::from_str::<Vec<ElementDef>>(r#"["pid"]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("a segment id of 3 upper-case letters or digits, or *"),
            "{err}"
        );
        let err = serde_json::from_str::<Vec<ElementDef>>(r#"[["PID", 2, 1]]"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("maximum 1 is below minimum 2 for PID"),
            "{err}"
        );
    }
}
