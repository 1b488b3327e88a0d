//! The FHIR resource store's data types: what the API and the unified-model destination write,
//! and how searches are asked.
//!
//! The store knows nothing of FHIR beyond these shapes: callers give the JSON bytes and the
//! search values already extracted (see the `fhir` crate's search module), and ask searches
//! as clauses over those values. Type-qualified parameter names (`Observation.code`) keep one
//! index for every type.

use crate::{MessageId, UnixMillis};

/// Longest resource id FHIR allows.
pub const MAX_RESOURCE_ID_LEN: usize = 64;

/// Most resources returned by one search page.
///
/// FHIR servers commonly cap `_count` near a thousand; more would hold a read connection and
/// build a response of many megabytes.
pub const MAX_RESOURCE_PAGE: u32 = 1000;

/// One resource to write (create, update or delete).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePut {
    pub resource_type: String,
    pub id: String,
    /// The resource's JSON without `meta.versionId` / `meta.lastUpdated`, which the store owns
    /// and the reader puts back. Ignored for a deletion.
    pub json: Vec<u8>,
    /// The search values of this version (replacing the previous version's).
    pub index: Vec<IndexEntry>,
    /// Write only if the current version is this one (`If-Match`); `Some(0)`: only if the
    /// resource does not exist yet.
    pub if_match: Option<u64>,
    /// The inbound message this version came from.
    pub source: Option<MessageId>,
    pub delete: bool,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The current version after the write.
    pub version: u64,
    pub last_updated: UnixMillis,
    /// The resource did not exist (or was deleted) before.
    pub created: bool,
    /// The content equals the current version's: no new version was made.
    pub unchanged: bool,
}

/// One search value of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Type-qualified parameter: `Patient.identifier`.
    pub param: String,
    pub value: IndexValue,
}

/// The kinds of search value.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A coded value or identifier: `system` is empty when none was given.
    Token { system: String, code: String },
    /// Text already normalised by the caller (lowercase, accents removed).
    Text(String),
    /// A period, inclusive unix milliseconds.
    Date { lo: i64, hi: i64 },
    /// A reference, `Type/id`.
    Reference(String),
    /// A quantity: its number, and its unit's system (empty when none) and code.
    Quantity {
        value: f64,
        system: String,
        code: String,
    },
    /// A code (`system` empty when none) with a quantity of the same element, its unit by code.
    CodeQuantity {
        system: String,
        code: String,
        value: f64,
        unit: String,
    },
}

/// New search values for the current version of a resource (see [`Store::reindex_resources`]).
///
/// [`Store::reindex_resources`]: crate::Store::reindex_resources
#[derive(Debug, Clone, PartialEq)]
pub struct Reindex {
    pub resource_type: String,
    pub id: String,
    /// The version the values were extracted from: they replace the index only while it is
    /// still the current, live one.
    pub version: u64,
    pub index: Vec<IndexEntry>,
}

/// A stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated: UnixMillis,
    pub deleted: bool,
    /// The JSON as written (empty for a deletion).
    pub json: Vec<u8>,
    pub source: Option<MessageId>,
}

/// A search over current, live resources of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceQuery {
    pub resource_type: String,
    /// `_id`: any of these ids (empty: no constraint).
    pub ids: Vec<String>,
    /// `_lastUpdated`: every test holds.
    pub last_updated: Vec<DateTest>,
    /// Every clause holds; a clause holds when any of its tests does.
    pub clauses: Vec<Vec<IndexTest>>,
    pub sort: ResourceSort,
    /// Page size (capped at [`MAX_RESOURCE_PAGE`]; 0 returns only the total).
    pub count: u32,
    pub offset: u32,
}

/// Result order (`_sort`): keys by priority. Empty means most recently updated first; ties
/// on every key fall back to that order too, so paging is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSort(pub Vec<SortKey>);

impl ResourceSort {
    /// Least recently updated first (exports read in this order).
    pub fn last_updated_asc() -> Self {
        Self(vec![SortKey {
            by: SortBy::LastUpdated,
            descending: false,
        }])
    }

    /// True when only the update time orders the results (what the type's time index serves).
    pub fn is_by_last_updated(&self) -> bool {
        self.0.iter().all(|k| k.by == SortBy::LastUpdated)
    }

    /// The order of what every key leaves tied: the most recently updated (then the newest
    /// row) first, unless the first key asks for the least recently updated first.
    pub fn newest_first(&self) -> bool {
        !matches!(
            self.0.first(),
            Some(SortKey {
                by: SortBy::LastUpdated,
                descending: false
            })
        )
    }
}

/// One key of a [`ResourceSort`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub descending: bool,
}

/// What a [`SortKey`] compares.
///
/// A resource with several values of a parameter sorts by its lowest value ascending and its
/// highest descending (a date's period start ascending, end descending); a resource with none
/// sorts after every resource that has one, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    LastUpdated,
    Id,
    /// A date parameter, type-qualified (`Observation.date`).
    Date(String),
    /// A token, text or reference parameter, type-qualified: compared by its indexed value
    /// (a token's code, normalised text, a reference's `Type/id`).
    Value(String),
    /// A quantity parameter, type-qualified: compared by its number, whatever the unit.
    Number(String),
}

/// One test of a clause, against the values of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexTest {
    /// Type-qualified parameter, as in [`IndexEntry::param`].
    pub param: String,
    pub test: ValueTest,
}

/// How a value is compared.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueTest {
    /// `code`: any system.
    Code(String),
    /// `system|code`.
    SystemCode { system: String, code: String },
    /// `|code`: no system.
    NoSystemCode(String),
    /// `system|`: any code of the system.
    System(String),
    /// Text starting with this (normalised) value.
    TextPrefix(String),
    /// Text equal to this value (`:exact`, compared as stored).
    TextExact(String),
    /// Text containing this (normalised) value (`:contains`).
    TextContains(String),
    /// A reference equal to `Type/id`.
    Reference(String),
    /// A date or period.
    Date(DateTest),
    /// A quantity's number, and its unit when the search names one.
    Quantity(QuantityTest),
    /// A code and a quantity of the same element. The quantity's unit, when given, is
    /// matched by its code (`quantity.code`); its system is not kept for composites.
    CodeQuantity {
        /// The code's system (`None`: any; `Some("")`: none).
        system: Option<String>,
        code: String,
        quantity: QuantityTest,
    },
    /// `:missing=true` (no value) or `false` (some value).
    Missing(bool),
}

/// A FHIR date comparison: the prefix, and the search value's own period (inclusive ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTest {
    pub prefix: DatePrefix,
    pub lo: i64,
    pub hi: i64,
}

/// A FHIR quantity comparison: the prefix, the number searched for, and the range its
/// precision implies (`5.4` is `[5.35, 5.45)`), which `eq`, `ne`, `sa` and `eb` compare with.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityTest {
    pub prefix: DatePrefix,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    /// The unit's system (`None`: any; `Some("")`: none given).
    pub system: Option<String>,
    /// The unit's code, or its text (`None`: any unit).
    pub code: Option<String>,
}

/// FHIR search prefixes (dates and quantities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePrefix {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Sa,
    Eb,
    Ap,
}

/// One page of search results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcePage {
    /// Every match, not only this page.
    pub total: u64,
    pub resources: Vec<StoredResource>,
}

/// A history request: one resource, one type, or everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    pub resource_type: Option<String>,
    /// Only with a type.
    pub id: Option<String>,
    /// Versions made at or after this time (`_since`).
    pub since: Option<UnixMillis>,
    pub count: u32,
    pub offset: u32,
}

/// Where an API write waiting for the EHR stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingState {
    /// Queued or being delivered.
    Pending,
    /// The EHR accepted it; the resource was written.
    Applied,
    /// The EHR refused it (or delivery failed for good); nothing was written.
    Rejected,
}

impl PendingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "applied" => Self::Applied,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// An API write and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    pub message: MessageId,
    pub resource_type: String,
    pub id: String,
    pub state: PendingState,
    /// The version written, once applied.
    pub version: Option<u64>,
    pub updated_at: UnixMillis,
}

/// The sealed form of a pending write: the JSON, then one line per search value.
///
/// Lines are `param \t kind \t system \t value \t lo \t hi`, tabs and newlines in values
/// escaped; a private format read back only by [`decode_pending`].
pub(crate) fn encode_pending(p: &ResourcePut) -> Vec<u8> {
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    }
    let mut out = Vec::with_capacity(p.json.len() + 64 * p.index.len() + 16);
    out.extend_from_slice(format!("{}\n", p.json.len()).as_bytes());
    out.extend_from_slice(&p.json);
    for e in &p.index {
        let line = match &e.value {
            IndexValue::Token { system, code } => {
                format!("{}\tt\t{}\t{}\t\t", esc(&e.param), esc(system), esc(code))
            }
            IndexValue::Text(t) => format!("{}\ts\t\t{}\t\t", esc(&e.param), esc(t)),
            IndexValue::Reference(r) => format!("{}\tr\t\t{}\t\t", esc(&e.param), esc(r)),
            IndexValue::Date { lo, hi } => format!("{}\td\t\t\t{lo}\t{hi}", esc(&e.param)),
            // `f64`'s Display is the shortest text that parses back to the same number.
            IndexValue::Quantity {
                value,
                system,
                code,
            } => format!(
                "{}\tq\t{}\t{}\t{value}\t",
                esc(&e.param),
                esc(system),
                esc(code)
            ),
            IndexValue::CodeQuantity {
                system,
                code,
                value,
                unit,
            } => format!(
                "{}\tc\t{}\t{}\t{value}\t{}",
                esc(&e.param),
                esc(system),
                esc(code),
                esc(unit)
            ),
        };
        out.push(b'\n');
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The JSON and search values of [`encode_pending`]'s output; `None` when malformed.
pub(crate) fn decode_pending(bytes: &[u8]) -> Option<(Vec<u8>, Vec<IndexEntry>)> {
    fn unesc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    }
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let len: usize = std::str::from_utf8(&bytes[..nl]).ok()?.parse().ok()?;
    let json = bytes.get(nl + 1..nl + 1 + len)?.to_vec();
    let rest = std::str::from_utf8(bytes.get(nl + 1 + len..)?).ok()?;
    let mut index = Vec::new();
    for line in rest.split('\n').filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let [param, kind, system, value, lo, hi] = f.as_slice() else {
            return None;
        };
        let value = match *kind {
            "t" => IndexValue::Token {
                system: unesc(system),
                code: unesc(value),
            },
            "s" => IndexValue::Text(unesc(value)),
            "r" => IndexValue::Reference(unesc(value)),
            "d" => IndexValue::Date {
                lo: lo.parse().ok()?,
                hi: hi.parse().ok()?,
            },
            "q" => IndexValue::Quantity {
                value: lo.parse().ok().filter(|v: &f64| v.is_finite())?,
                system: unesc(system),
                code: unesc(value),
            },
            "c" => IndexValue::CodeQuantity {
                system: unesc(system),
                code: unesc(value),
                value: lo.parse().ok().filter(|v: &f64| v.is_finite())?,
                unit: unesc(hi),
            },
            _ => return None,
        };
        index.push(IndexEntry {
            param: unesc(param),
            value,
        });
    }
    Some((json, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_round_trip_with_awkward_values() {
        let put = ResourcePut {
            resource_type: "Patient".into(),
            id: "p".into(),
            json: b"{\"a\":\"x\ny\"}".to_vec(),
            index: vec![
                IndexEntry {
                    param: "Patient.name".into(),
                    value: IndexValue::Text("tab\there\\n".into()),
                },
                IndexEntry {
                    param: "Patient.identifier".into(),
                    value: IndexValue::Token {
                        system: "urn:x".into(),
                        code: "1\n2".into(),
                    },
                },
                IndexEntry {
                    param: "Patient.birthdate".into(),
                    value: IndexValue::Date { lo: -5, hi: 7 },
                },
                IndexEntry {
                    param: "Observation.value-quantity".into(),
                    value: IndexValue::Quantity {
                        value: 0.1 + 0.2,
                        system: "http://unitsofmeasure.org".into(),
                        code: "mm[Hg]".into(),
                    },
                },
                IndexEntry {
                    param: "Observation.component-code-value-quantity".into(),
                    value: IndexValue::CodeQuantity {
                        system: "http://loinc.org".into(),
                        code: "8480-6".into(),
                        value: 140.5,
                        unit: "mm\t[Hg]".into(),
                    },
                },
                IndexEntry {
                    param: "Observation.value-quantity".into(),
                    value: IndexValue::Quantity {
                        value: -1.5e-300,
                        system: String::new(),
                        code: "tab\tunit".into(),
                    },
                },
            ],
            if_match: None,
            source: None,
            delete: false,
        };
        let (json, index) = decode_pending(&encode_pending(&put)).expect("decodes");
        assert_eq!(json, put.json);
        assert_eq!(index, put.index);
        assert!(decode_pending(b"zz\n").is_none());
    }
}

/// A version written to the resource store, with its position in the store's write order.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    /// Increases with every version written; a scanner keeps the last one it handled.
    pub position: i64,
    pub resource: StoredResource,
}

/// A subscription notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The Subscription resource's id.
    pub subscription: String,
    pub resource_type: String,
    pub resource_id: String,
    pub version: u64,
}

/// A claimed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub seq: i64,
    pub subscription: String,
    pub resource_type: String,
    pub resource_id: String,
    pub version: u64,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub claimed_by: String,
}

/// How a notification attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    Delivered,
    Retry {
        error: String,
        next_attempt_at: UnixMillis,
    },
    Failed {
        error: String,
    },
}
