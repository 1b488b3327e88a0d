//! The learner: a feed's profile, built from parsed messages, and the findings of each message
//! measured against it. Pure and synchronous: no I/O, no clock (the caller passes the time).
//!
//! What is kept, per message type (MSH-9 `type^trigger`):
//! - the segments seen (Z segments included), in how many messages each, at most how often;
//! - per field (`SEG-n`): in how many baseline messages it was filled, a ring of the last
//!   `window` messages (one bit each), the longest and the total length of its values;
//! - for coded fields only (the version's data type is ID, IS, CE, CWE, CNE or CF): the code
//!   component's distinct values with counts, each value at most [`MAX_CODE_LEN`] characters.
//!   Nothing else of a message is kept: no free text, identifiers, names, dates or addresses.
//!
//! Invariants:
//! - a finding is raised once per new thing: a new segment, a new code and a new type are added
//!   to the profile as they are reported; a fill-rate change is reported once and re-armed only
//!   after the rate came back within half the threshold;
//! - nothing is compared while learning: the feed's baseline (messages and/or time, see
//!   [`DriftSettings`]) must be complete and the message type must have `min_samples` messages
//!   in it; until then the type keeps learning;
//! - memory is bounded: at most [`MAX_TYPES`] types, [`MAX_SEGMENTS`] segments and
//!   [`MAX_FIELDS`] fields per type, `max_values` values per coded field (past that the field
//!   is marked open-ended and its values are no longer tracked), field numbers up to
//!   [`MAX_FIELD_NUMBER`].

use std::collections::{BTreeMap, HashMap};

use hl7v2::Message;
use serde::{Deserialize, Serialize};

use super::DriftSettings;

/// Most message types tracked per feed; later ones are counted, not learned.
pub const MAX_TYPES: usize = 64;
/// Most distinct segment ids tracked per message type.
pub const MAX_SEGMENTS: usize = 128;
/// Most fields tracked per message type (a 30-segment message type with 40 fields each fits).
pub const MAX_FIELDS: usize = 2048;
/// Highest field number tracked; no standard segment comes near it.
pub const MAX_FIELD_NUMBER: usize = 200;
/// Longest code value recorded: codes are short; a longer value in a coded field is text.
pub const MAX_CODE_LEN: usize = 32;
/// Longest message type key kept (`ADT^A01` is 7).
const MAX_TYPE_LEN: usize = 16;

/// The file format number of a persisted profile.
pub const FORMAT: u32 = 1;

/// Data types whose values are codes.
pub fn is_coded_type(data_type: &str) -> bool {
    matches!(data_type, "ID" | "IS" | "CE" | "CWE" | "CNE" | "CF")
}

/// One change from the learned profile. Carries names, codes and rates only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    NewMessageType {
        message_type: String,
    },
    NewSegment {
        message_type: String,
        segment: String,
    },
    NewCode {
        message_type: String,
        field: String,
        code: String,
    },
    FillRate {
        message_type: String,
        field: String,
        baseline: f64,
        recent: f64,
        window: u32,
    },
}

impl Finding {
    /// The event text: names, codes and rates, never other values.
    pub fn detail(&self) -> String {
        match self {
            Finding::NewMessageType { message_type } => {
                format!("new message type {message_type}")
            }
            Finding::NewSegment {
                message_type,
                segment,
            } => {
                let z = if segment.starts_with('Z') {
                    "Z segment"
                } else {
                    "segment"
                };
                format!("{message_type}: new {z} {segment}")
            }
            Finding::NewCode {
                message_type,
                field,
                code,
            } => format!(
                "{message_type}: {} carries new code {code:?}",
                labelled(field)
            ),
            Finding::FillRate {
                message_type,
                field,
                baseline,
                recent,
                window,
            } => format!(
                "{message_type}: {} filled in {:.0}% of the last {window} messages, {:.0}% in the baseline",
                labelled(field),
                recent * 100.0,
                baseline * 100.0
            ),
        }
    }
}

/// `PID-8 (Administrative Sex)`, or just `ZPD-1`.
fn labelled(field: &str) -> String {
    let name = field
        .split_once('-')
        .and_then(|(seg, n)| Some((seg, n.parse::<usize>().ok()?)))
        .and_then(|(seg, n)| hl7v2::validate::field_name(hl7v2::validate::DEFAULT_VERSION, seg, n));
    match name {
        Some(n) => format!("{field} ({n})"),
        None => field.to_string(),
    }
}

/// How often each value of a coded field came.
pub type CodeCounts = HashMap<String, u64, foldhash::fast::RandomState>;

/// `values` in code order, so that a saved profile reads (and diffs) the same every time.
fn sorted_counts<S: serde::Serializer>(values: &CodeCounts, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(sorted_values(values))
}

/// The values of a coded field in code order, with their counts.
pub fn sorted_values(values: &CodeCounts) -> Vec<(&String, &u64)> {
    let mut out: Vec<(&String, &u64)> = values.iter().collect();
    out.sort();
    out
}

/// A field of a segment, `PID-8`: compared as numbers (cheap on the per-message path), written as
/// text in the persisted JSON and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldKey {
    /// The segment id's bytes and the field number in one integer, ordered as the pair is:
    /// a profile's maps are searched for every field of every message, one comparison each.
    packed: u64,
    /// The segment id again, so that [`FieldKey::segment`] can lend it as text.
    segment: [u8; 3],
}

impl Ord for FieldKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.packed.cmp(&other.packed)
    }
}

impl PartialOrd for FieldKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FieldKey {
    fn new(segment: &str, field: usize) -> FieldKey {
        let b = segment.as_bytes();
        let mut id = [b'?'; 3];
        for (i, c) in b.iter().take(3).enumerate() {
            id[i] = *c;
        }
        let field = u16::try_from(field).unwrap_or(u16::MAX);
        let [x, y, z] = id;
        FieldKey {
            packed: (u64::from(x) << 32)
                | (u64::from(y) << 24)
                | (u64::from(z) << 16)
                | u64::from(field),
            segment: id,
        }
    }

    /// `PID-8` back into a key.
    pub fn parse(text: &str) -> Option<FieldKey> {
        let (seg, n) = text.split_once('-')?;
        let n: usize = n.parse().ok()?;
        (seg.len() == 3 && seg.is_ascii() && (1..=MAX_FIELD_NUMBER).contains(&n))
            .then(|| FieldKey::new(seg, n))
    }

    pub fn segment(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }

    pub fn field(&self) -> usize {
        (self.packed & 0xFFFF) as usize
    }
}

impl std::fmt::Display for FieldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.segment(), self.field())
    }
}

impl Serialize for FieldKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        FieldKey::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a field like PID-8")))
    }
}

/// A feed's learned profile (persisted as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FeedProfile {
    pub format: u32,
    /// Messages observed in all.
    pub messages: u64,
    /// When the first message was observed (Unix milliseconds), `None` before any.
    pub started_at: Option<i64>,
    /// The feed's baseline is complete (it stays so, even if settings change).
    pub baseline_complete: bool,
    /// Messages of types past [`MAX_TYPES`], observed but not learned.
    pub untracked_messages: u64,
    pub types: BTreeMap<String, TypeProfile>,
}

/// What one message type of a feed looks like.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TypeProfile {
    /// MSH-12 of its first message: the definitions its fields are typed with.
    pub version: String,
    pub messages: u64,
    /// Messages learned from (the type's baseline).
    pub baseline_messages: u64,
    /// Messages compared since the baseline ended (fill rates need a full window of them).
    pub compared: u64,
    pub segments: BTreeMap<String, SegmentStats>,
    pub fields: BTreeMap<FieldKey, FieldStats>,
    /// Segment ids past [`MAX_SEGMENTS`] or fields past [`MAX_FIELDS`] were met.
    pub truncated: bool,
    /// Per segment id, which field numbers are coded (from the definitions, looked up once).
    #[serde(skip)]
    coded: std::collections::HashMap<[u8; 3], Vec<bool>>,
}

/// One segment id in one message type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SegmentStats {
    /// Messages that carried it.
    pub messages: u64,
    /// Most occurrences in one message.
    pub max_occurs: u32,
    /// First seen after the baseline (it was reported as new).
    pub new: bool,
}

/// One field (`SEG-n`) in one message type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FieldStats {
    /// Baseline messages in which it was filled (any occurrence, any repetition).
    pub baseline_filled: u64,
    /// Messages in which it was filled, in all.
    pub filled: u64,
    /// Longest value (one field occurrence as written, in characters).
    pub max_len: u32,
    /// Total length of the filled values, for the typical (mean) length.
    pub total_len: u64,
    /// Data type from the definitions (`None` for Z segments and undefined fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// HL7 table number (0: none).
    #[serde(default)]
    pub table: u32,
    /// Values of the code component and how often each came (coded fields only). Hashed, as
    /// every coded value of every message looks its code up; written sorted.
    #[serde(
        default,
        skip_serializing_if = "CodeCounts::is_empty",
        serialize_with = "sorted_counts"
    )]
    pub values: CodeCounts,
    /// More distinct values than tracked: not a closed code set; no new-code findings.
    #[serde(default)]
    pub open_ended: bool,
    /// Filled or not in each of the last `window` messages of the type, one bit each.
    #[serde(default)]
    pub recent: Vec<u64>,
    /// A fill-rate finding is standing (re-armed when the rate comes back).
    #[serde(default)]
    pub fill_alerted: bool,
    /// The type's message number it was last filled in (this message's, while observing).
    #[serde(skip)]
    seen_in: u64,
}

impl FieldStats {
    pub fn is_coded(&self) -> bool {
        self.data_type.as_deref().is_some_and(is_coded_type)
    }

    /// Mean length of its filled values.
    pub fn typical_len(&self) -> u32 {
        self.total_len
            .checked_div(self.filled)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn set_bit(&mut self, slot: usize, words: usize, filled: bool) {
        if self.recent.len() != words {
            self.recent.resize(words, 0);
        }
        let (w, b) = (slot / 64, slot % 64);
        if filled {
            self.recent[w] |= 1 << b;
        } else {
            self.recent[w] &= !(1 << b);
        }
    }

    fn recent_count(&self) -> u32 {
        self.recent.iter().map(|w| w.count_ones()).sum()
    }
}

impl FeedProfile {
    pub fn new() -> FeedProfile {
        FeedProfile {
            format: FORMAT,
            ..FeedProfile::default()
        }
    }

    /// Learns from one message, or compares it; returns what is new about it. `now` is Unix
    /// milliseconds (for a baseline measured in time).
    pub fn observe(
        &mut self,
        msg: &Message<'_>,
        settings: &DriftSettings,
        now: i64,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.messages += 1;
        let started = *self.started_at.get_or_insert(now);
        if !self.baseline_complete {
            let enough_messages = self.messages > settings.baseline_messages;
            let enough_time = settings
                .baseline_duration
                .is_none_or(|d| now.saturating_sub(started) >= d.as_millis() as i64);
            self.baseline_complete = enough_messages && enough_time;
        }
        let feed_learned = self.baseline_complete;
        let key = type_key(msg);
        if !self.types.contains_key(&key) {
            if self.types.len() >= MAX_TYPES {
                self.untracked_messages += 1;
                return findings;
            }
            if feed_learned {
                findings.push(Finding::NewMessageType {
                    message_type: key.clone(),
                });
            }
            let version = msg
                .version()
                .map(|v| v.chars().take(MAX_TYPE_LEN).collect())
                .unwrap_or_default();
            self.types.insert(
                key.clone(),
                TypeProfile {
                    version,
                    ..TypeProfile::default()
                },
            );
        }
        let Some(t) = self.types.get_mut(&key) else {
            return findings;
        };
        let comparing = feed_learned && t.baseline_messages >= settings.min_samples;
        t.messages += 1;
        if comparing {
            t.compared += 1;
        } else {
            t.baseline_messages += 1;
        }

        // One pass over the message: segments counted, fields updated in place. A field's
        // `seen_in` marks the message it was last filled in, so it counts once per message.
        let msg_no = t.messages;
        let mut occurs: BTreeMap<&str, u32> = BTreeMap::new();
        for seg in msg.segments() {
            let id = seg.id();
            if settings.ignores_segment(id) {
                continue;
            }
            *occurs.entry(id).or_insert(0) += 1;
            let header = id == "MSH";
            let seg_key = FieldKey::new(id, 0).segment;
            let coded_row: &[bool] = t
                .coded
                .entry(seg_key)
                .or_insert_with(|| coded_fields(&t.version, id));
            for n in 1..=seg.field_count().min(MAX_FIELD_NUMBER) {
                // MSH-1 and MSH-2 are the delimiters, not data.
                if header && n <= 2 {
                    continue;
                }
                let Some(node) = seg.field(n) else { continue };
                if node.is_empty() || settings.ignores_field(id, n) {
                    continue;
                }
                let name = FieldKey::new(id, n);
                let tracked = t.fields.len();
                let f = match t.fields.entry(name) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(_) if tracked >= MAX_FIELDS => {
                        t.truncated = true;
                        continue;
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let ft = hl7v2::validate::field_type(&t.version, id, n);
                        e.insert(FieldStats {
                            data_type: ft.map(|f| f.data_type.to_string()),
                            table: ft.map_or(0, |f| f.table),
                            ..FieldStats::default()
                        })
                    }
                };
                let len = char_len(node.raw());
                f.max_len = f.max_len.max(len);
                if f.seen_in != msg_no {
                    f.seen_in = msg_no;
                    f.filled += 1;
                    f.total_len += u64::from(len);
                    if !comparing {
                        f.baseline_filled += 1;
                    }
                }
                let coded = coded_row.get(n - 1).copied().unwrap_or(false);
                if !coded || f.open_ended {
                    continue;
                }
                for rep in node.repetitions() {
                    let Some(first) = rep.component(1) else {
                        continue;
                    };
                    let text = first.decoded();
                    let code = text.trim();
                    if code.is_empty()
                        || code.len() > MAX_CODE_LEN * 4
                        || code.chars().count() > MAX_CODE_LEN
                        || code.chars().any(char::is_control)
                    {
                        continue;
                    }
                    if let Some(c) = f.values.get_mut(code) {
                        *c += 1;
                    } else if f.values.len() >= settings.max_values {
                        // Not a closed code set after all: stop tracking (and reporting) values.
                        f.open_ended = true;
                        f.values.clear();
                        break;
                    } else {
                        if comparing {
                            findings.push(Finding::NewCode {
                                message_type: key.clone(),
                                field: name.to_string(),
                                code: code.to_string(),
                            });
                        }
                        f.values.insert(code.to_string(), 1);
                    }
                }
            }
        }

        for (id, count) in &occurs {
            let full = t.segments.len() >= MAX_SEGMENTS;
            match t.segments.get_mut(*id) {
                Some(s) => {
                    s.messages += 1;
                    s.max_occurs = s.max_occurs.max(*count);
                }
                None if full => t.truncated = true,
                None => {
                    if comparing {
                        findings.push(Finding::NewSegment {
                            message_type: key.clone(),
                            segment: id.to_string(),
                        });
                    }
                    t.segments.insert(
                        id.to_string(),
                        SegmentStats {
                            messages: 1,
                            max_occurs: *count,
                            new: comparing,
                        },
                    );
                }
            }
        }

        // The fill-rate window: one bit per field for this message.
        let window = settings.window.max(1);
        let words = window.div_ceil(64);
        let slot = ((t.messages - 1) % window as u64) as usize;
        let window_full = t.compared >= window as u64;
        let threshold = settings.fill_rate_change;
        for (name, f) in t.fields.iter_mut() {
            f.set_bit(slot, words, f.seen_in == msg_no);
            if !window_full || t.baseline_messages == 0 {
                continue;
            }
            let baseline = f.baseline_filled as f64 / t.baseline_messages as f64;
            let recent = f64::from(f.recent_count()) / window as f64;
            let change = (recent - baseline).abs();
            if f.fill_alerted {
                if change < threshold / 2.0 {
                    f.fill_alerted = false;
                }
                continue;
            }
            if change < threshold {
                continue;
            }
            // Fields of a segment reported as new are covered by that finding.
            let segment_is_new = t.segments.get(name.segment()).is_some_and(|s| s.new);
            if segment_is_new {
                continue;
            }
            f.fill_alerted = true;
            findings.push(Finding::FillRate {
                message_type: key.clone(),
                field: name.to_string(),
                baseline,
                recent,
                window: window as u32,
            });
        }
        findings
    }
}

/// Which fields of segment `id` are coded in `version` (index = field number - 1).
fn coded_fields(version: &str, id: &str) -> Vec<bool> {
    let mut out = Vec::new();
    while let Some(ft) = hl7v2::validate::field_type(version, id, out.len() + 1) {
        out.push(is_coded_type(ft.data_type));
        if out.len() >= MAX_FIELD_NUMBER {
            break;
        }
    }
    out
}

/// MSH-9 as `type^trigger`, reduced to letters, digits, `^` and `_`, and cut short.
fn type_key(msg: &Message<'_>) -> String {
    let t: String = msg
        .message_type()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '^' | '_'))
        .take(MAX_TYPE_LEN)
        .collect();
    if t.is_empty() { "?".to_string() } else { t }
}

fn char_len(raw: &[u8]) -> u32 {
    let n = raw.iter().filter(|b| (**b & 0xC0) != 0x80).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> FieldKey {
        FieldKey::parse(text).unwrap()
    }

    #[test]
    fn field_keys_order_by_segment_then_field_number() {
        let texts = [
            "ZPD-1", "PID-10", "PID-2", "OBX-5", "MSH-9", "PV1-2", "PID-8", "OBR-10",
        ];
        let mut keys: Vec<FieldKey> = texts.iter().map(|t| key(t)).collect();
        keys.sort();
        let mut by_parts: Vec<(String, usize)> = texts
            .iter()
            .map(|t| {
                let (s, n) = t.split_once('-').unwrap();
                (s.to_owned(), n.parse().unwrap())
            })
            .collect();
        by_parts.sort();
        let shown: Vec<(String, usize)> = keys
            .iter()
            .map(|k| (k.segment().to_owned(), k.field()))
            .collect();
        assert_eq!(shown, by_parts);
    }

    fn settings(baseline: u64) -> DriftSettings {
        DriftSettings {
            baseline_messages: baseline,
            min_samples: 5,
            window: 10,
            ..DriftSettings::default()
        }
    }

    /// An ADT^A01 with PID-8 `sex`, PV1-2 `class`, PID-5 filled or not, and extra segments.
    fn adt(i: usize, sex: &str, class: &str, name: bool, extra: &str) -> Vec<u8> {
        let family = if name { "DOE^JANE" } else { "" };
        format!(
            "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|C{i}|P|2.5.1\r\
             EVN|A01|20240101120000\r\
             PID|1||{i}^^^HOSP^MR||{family}||19800101|{sex}\r\
             PV1|1|{class}|WARD^101^1\r{extra}"
        )
        .into_bytes()
    }

    fn feed(
        p: &mut FeedProfile,
        s: &DriftSettings,
        msgs: impl Iterator<Item = Vec<u8>>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for (i, raw) in msgs.enumerate() {
            let m = hl7v2::parse(&raw).unwrap();
            out.extend(p.observe(&m, s, i as i64));
        }
        out
    }

    fn baseline(p: &mut FeedProfile, s: &DriftSettings) {
        let sexes = ["F", "M"];
        let classes = ["I", "O", "E"];
        let found = feed(
            p,
            s,
            (0..20).map(|i| adt(i, sexes[i % 2], classes[i % 3], true, "")),
        );
        assert_eq!(found, [], "nothing is reported while learning");
        assert!(p.baseline_complete || s.baseline_messages >= 20);
    }

    #[test]
    fn a_steady_feed_raises_nothing() {
        let s = settings(20);
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let sexes = ["M", "F"];
        let classes = ["E", "I", "O"];
        let found = feed(
            &mut p,
            &s,
            (100..400).map(|i| adt(i, sexes[i % 2], classes[i % 3], true, "")),
        );
        assert_eq!(found, []);
        let t = &p.types["ADT^A01"];
        assert_eq!(t.messages, 320);
        assert_eq!(t.baseline_messages, 20);
        let sex = &t.fields[&key("PID-8")];
        assert_eq!(sex.data_type.as_deref(), Some("IS"));
        assert_eq!(sex.table, 1);
        let codes: Vec<&String> = sorted_values(&sex.values)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(codes, ["F", "M"]);
        // Identifiers, names and dates are never kept as values.
        for f in ["PID-3", "PID-5", "PID-7", "MSH-10", "MSH-7"] {
            assert!(t.fields[&key(f)].values.is_empty(), "{f}");
        }
        assert_eq!(t.fields[&key("PV1-2")].values.len(), 3);
    }

    #[test]
    fn a_new_z_segment_is_reported_once() {
        let s = settings(20);
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let found = feed(
            &mut p,
            &s,
            (100..200).map(|i| adt(i, "F", "I", true, "ZPD|1|VIP^Very important\r")),
        );
        assert_eq!(
            found,
            [Finding::NewSegment {
                message_type: "ADT^A01".into(),
                segment: "ZPD".into()
            }]
        );
        assert_eq!(found[0].detail(), "ADT^A01: new Z segment ZPD");
        assert!(p.types["ADT^A01"].segments["ZPD"].new);
    }

    #[test]
    fn a_new_code_is_reported_once_and_free_text_never() {
        let s = settings(20);
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let found = feed(&mut p, &s, (100..150).map(|i| adt(i, "X", "I", true, "")));
        assert_eq!(
            found,
            [Finding::NewCode {
                message_type: "ADT^A01".into(),
                field: "PID-8".into(),
                code: "X".into()
            }]
        );
        assert_eq!(
            found[0].detail(),
            "ADT^A01: PID-8 (Administrative Sex) carries new code \"X\""
        );
        // A new patient name is not a finding: names are not coded fields.
        let found = feed(&mut p, &s, (200..210).map(|i| adt(i, "F", "I", true, "")));
        assert_eq!(found, []);
    }

    #[test]
    fn a_field_no_longer_filled_is_reported_once_after_a_full_window() {
        let s = settings(20);
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let mut found = Vec::new();
        for i in 100..140 {
            let m = adt(i, "F", "I", false, "");
            let m = hl7v2::parse(&m).unwrap();
            let f = p.observe(&m, &s, 0);
            if !f.is_empty() {
                found.push((i, f));
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let (at, f) = &found[0];
        assert_eq!(*at, 109, "reported when the window of 10 is full");
        assert_eq!(
            f[0].detail(),
            "ADT^A01: PID-5 (Patient Name) filled in 0% of the last 10 messages, 100% in the baseline"
        );
        // Filled again: re-armed, silently; a second drop is reported again.
        let back = feed(&mut p, &s, (200..220).map(|i| adt(i, "F", "I", true, "")));
        assert_eq!(back, []);
        let again = feed(&mut p, &s, (300..320).map(|i| adt(i, "F", "I", false, "")));
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn a_new_message_type_is_reported_once_then_learned() {
        let s = settings(20);
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let a08 = |i: usize, sex: &str| {
            String::from_utf8(adt(i, sex, "I", true, ""))
                .unwrap()
                .replace("ADT^A01^ADT_A01", "ADT^A08^ADT_A01")
                .into_bytes()
        };
        let found = feed(&mut p, &s, (100..110).map(|i| a08(i, "F")));
        assert_eq!(
            found,
            [Finding::NewMessageType {
                message_type: "ADT^A08".into()
            }]
        );
        // Its own baseline (min_samples 5) is over: codes new to it are reported.
        let found = feed(&mut p, &s, (110..112).map(|i| a08(i, "M")));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn memory_is_bounded() {
        let s = DriftSettings {
            max_values: 4,
            ..settings(5)
        };
        let mut p = FeedProfile::new();
        let found = feed(
            &mut p,
            &s,
            (0..50).map(|i| adt(i, &format!("S{i}"), "I", true, "")),
        );
        let sex = &p.types["ADT^A01"].fields[&key("PID-8")];
        assert!(sex.open_ended && sex.values.is_empty());
        assert!(
            found.iter().all(|f| !matches!(f, Finding::NewCode { .. })),
            "{found:?}"
        );
        let mut p = FeedProfile::new();
        let types = (0..MAX_TYPES + 10).map(|i| {
            String::from_utf8(adt(i, "F", "I", true, ""))
                .unwrap()
                .replace("ADT^A01^ADT_A01", &format!("ADT^Z{i:02}"))
                .into_bytes()
        });
        feed(&mut p, &s, types);
        assert_eq!(p.types.len(), MAX_TYPES);
        assert_eq!(p.untracked_messages, 10);
    }

    #[test]
    fn ignored_fields_and_segments_are_not_learned() {
        let s = DriftSettings {
            ignore: ["PID-8".to_string(), "ZPD".to_string()].into(),
            ..settings(20)
        };
        let mut p = FeedProfile::new();
        baseline(&mut p, &s);
        let found = feed(
            &mut p,
            &s,
            (100..130).map(|i| adt(i, "X", "I", true, "ZPD|1\r")),
        );
        assert_eq!(found, []);
        assert!(!p.types["ADT^A01"].fields.contains_key(&key("PID-8")));
    }

    #[test]
    fn a_baseline_in_time_waits_for_the_time_too() {
        let s = DriftSettings {
            baseline_duration: Some(std::time::Duration::from_secs(60)),
            ..settings(5)
        };
        let mut p = FeedProfile::new();
        for (i, at) in [
            (0, 0),
            (1, 10_000),
            (2, 20_000),
            (3, 30_000),
            (4, 40_000),
            (5, 50_000),
            (6, 59_000),
        ] {
            let raw = adt(i, "F", "I", true, "");
            p.observe(&hl7v2::parse(&raw).unwrap(), &s, at);
        }
        assert!(!p.baseline_complete);
        let raw = adt(7, "F", "I", true, "");
        p.observe(&hl7v2::parse(&raw).unwrap(), &s, 60_000);
        assert!(p.baseline_complete);
    }
}
