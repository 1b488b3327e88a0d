//! Validation of a parsed message against the HL7 v2.1 to v2.8.2 definitions, optionally
//! overlaid with a user conformance [`Profile`].
//!
//! Map:
//! - [`validate`] / [`validate_with`]: the entry points; they return every [`Finding`],
//!   sorted by byte offset. A finding has a [`Position`], an HL7 table 0357 code ([`Err3`]),
//!   a [`Severity`] and a text.
//! - `definitions`: the embedded definition set (`data/definitions.json`, converted once
//!   from hl7-dictionary and hl7apy; see `data/PROVENANCE.md`), loaded on first use.
//! - `profile`: the profile format and its loader.
//! - `structure`: segment order, groups and cardinality (an automaton and an edit-distance
//!   alignment, so that one misplaced segment gives one finding, not a cascade).
//! - `primitive`: formats of NM, SI, DT, TM, DTM/TS.
//!
//! The checks, in order:
//! 1. Version (203): MSH-12.1 must name a version the set covers; otherwise the message is
//!    checked against [`DEFAULT_VERSION`]. A profile's `base_version` replaces MSH-12 (and
//!    this check).
//! 2. Message type (200) and trigger event (201), then the structure: MSH-9.3 when the
//!    version defines it, else the trigger-event map (`ADT^A04` -> `ADT_A01`). Without
//!    MSH-9.2 the event is read from EVN-1 (v2.1/v2.2 style). Z trigger events are accepted
//!    when MSH-9.3 names a known structure. An undefined MSH-9.3 with a resolvable event is
//!    a warning (200) and the event's structure is used.
//! 3. Segment sequence (100): unexpected, misplaced or surplus segments at their position;
//!    missing required segments at the place they were expected (segment index 0, the
//!    missing id in `segment_id`). Z segments are skipped unless the structure names them or
//!    the profile says `"z_segments": "declared"`.
//! 4. Fields of every segment the version (or profile) defines: required fields missing
//!    (101); more repetitions than allowed (102, chosen over 100 because the segment order is
//!    fine and the problem is the shape of one field's value); length over the maximum
//!    (104, a warning by default because lengths are advisory in practice and the data has
//!    few for v2.7+, an error with `"lengths": "error"`); primitive formats (102); ID values
//!    not in their HL7 table (103, error) and IS values not in a user-defined table's
//!    suggested values (103, warning); CE/CWE/CNE codes whose coding system names the
//!    field's HL7 table (`HL70001`) but are not in it (103). Composite values are checked
//!    component by component and subcomponent by subcomponent. OBX-5 is checked as the type
//!    OBX-2 names.
//!
//! Conventions: an explicit null (`""`) counts as a value; lengths count the characters of
//! one repetition as written (separators and escape sequences included, as the standard's
//! maximum lengths do); MSH-1/MSH-2 are left to the parser; MSH-9 and MSH-12 are not
//! checked against tables (steps 1 and 2 cover them).
//!
//! Invariants: validation never panics and never fails: a broken embedded set becomes one
//! 207 finding. Finding texts never quote field values (they may be PHI), except the message
//! type, trigger event, structure and version, which the logging rules allow.

mod definitions;
mod primitive;
mod profile;
mod structure;

use std::fmt;

use crate::error::Position;
use crate::message::{Level, Message, Node, Segment};

use definitions::{Defs, ElementDef, FieldDef, Usage};
pub use profile::{LengthCheck, MAX_PROFILE_FIELD, Profile, ProfileError, ZSegments};
pub use structure::{MAX_ALIGNMENT_CELLS, MAX_UNROLL};

/// The version used when MSH-12 is missing or names a version the set does not cover:
/// v2.5.1 is the most widely required version in the field (US public health and
/// certification) and the most common one in the test corpus.
pub const DEFAULT_VERSION: &str = "2.5.1";

/// Findings kept per message; past this one more finding (207, warning) says how many were
/// dropped. Bounds memory for a large message that is wrong everywhere (a 10 000-OBX
/// result with a bad value type).
pub const MAX_FINDINGS: usize = 1000;

/// HL7 table 0357 (message error condition codes), as carried in ERR-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Err3 {
    /// 100: segments out of order, unexpected, repeated too often or missing.
    SegmentSequenceError,
    /// 101.
    RequiredFieldMissing,
    /// 102: a value not of its data type, or too many repetitions.
    DataTypeError,
    /// 103.
    TableValueNotFound,
    /// 104 (defined from v2.6, usable in any version's ACK).
    ValueTooLong,
    /// 200.
    UnsupportedMessageType,
    /// 201.
    UnsupportedEventCode,
    /// 203.
    UnsupportedVersionId,
    /// 207: the validator itself could not do its work.
    ApplicationInternalError,
}

impl Err3 {
    /// The numeric code for ERR-3.1.
    pub fn code(&self) -> u16 {
        match self {
            Err3::SegmentSequenceError => 100,
            Err3::RequiredFieldMissing => 101,
            Err3::DataTypeError => 102,
            Err3::TableValueNotFound => 103,
            Err3::ValueTooLong => 104,
            Err3::UnsupportedMessageType => 200,
            Err3::UnsupportedEventCode => 201,
            Err3::UnsupportedVersionId => 203,
            Err3::ApplicationInternalError => 207,
        }
    }

    /// The table's display text for ERR-3.2.
    pub fn description(&self) -> &'static str {
        crate::ack::err3_text(self.code())
    }
}

/// How serious a finding is: errors make a message non-conformant; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub position: Position,
    pub code: Err3,
    pub severity: Severity,
    /// Lowercase, no trailing period, no field values.
    pub text: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev} {}: {} at {}",
            self.code.code(),
            self.text,
            self.position
        )
    }
}

/// The versions the embedded definitions cover, oldest first (empty if they failed to load).
pub fn supported_versions() -> Vec<&'static str> {
    definitions::data()
        .map(|d| d.version_ids().collect())
        .unwrap_or_default()
}

/// Validates against the standard definitions of the version in MSH-12.
pub fn validate(msg: &Message<'_>) -> Vec<Finding> {
    run(msg, None)
}

/// Validates against a profile laid over the standard definitions.
pub fn validate_with(msg: &Message<'_>, profile: &Profile) -> Vec<Finding> {
    run(msg, Some(profile))
}

struct Findings {
    list: Vec<Finding>,
    dropped: usize,
}

impl Findings {
    fn push(&mut self, position: Position, code: Err3, severity: Severity, text: String) {
        if self.list.len() >= MAX_FINDINGS {
            self.dropped += 1;
            return;
        }
        self.list.push(Finding {
            position,
            code,
            severity,
            text,
        });
    }

    fn finish(mut self, end: Position) -> Vec<Finding> {
        self.list.sort_by_key(|f| (f.position.byte, f.code));
        if self.dropped > 0 {
            self.list.push(Finding {
                position: end,
                code: Err3::ApplicationInternalError,
                severity: Severity::Warning,
                text: format!(
                    "{} more findings not reported (limit {MAX_FINDINGS})",
                    self.dropped
                ),
            });
        }
        self.list
    }
}

fn segment_position(seg: &Segment<'_>) -> Position {
    let id = seg.id().as_bytes();
    Position {
        byte: seg.offset(),
        segment_index: seg.index() as u32,
        segment_id: [id[0], id[1], id[2]],
        ..Position::default()
    }
}

fn end_position(msg: &Message<'_>) -> Position {
    Position::at_byte(msg.raw().len())
}

/// Position of MSH-`field`.`component` (component 0: the field), falling back to the
/// field, then the segment.
fn header_position(msg: &Message<'_>, field: usize, component: usize) -> Position {
    let Some(msh) = msg.segment(1) else {
        return Position::default();
    };
    let Some(f) = msh.field(field) else {
        return segment_position(&msh);
    };
    if component > 0
        && let Some(c) = f.component(component)
    {
        return c.position();
    }
    f.position()
}

fn run(msg: &Message<'_>, profile: Option<&Profile>) -> Vec<Finding> {
    let mut out = Findings {
        list: Vec::new(),
        dropped: 0,
    };
    let data = match definitions::data() {
        Ok(d) => d,
        Err(e) => {
            out.push(
                Position::default(),
                Err3::ApplicationInternalError,
                Severity::Error,
                format!("validation definitions could not be loaded: {e}"),
            );
            return out.finish(end_position(msg));
        }
    };

    // 1. Version.
    let declared = msg
        .version()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let base = profile.and_then(Profile::base_version);
    let version_id: &str = match (base, declared.as_deref()) {
        (Some(b), _) => b,
        (None, Some(v)) => match data.versions.get_key_value(v) {
            Some((k, _)) => k.as_str(),
            None => {
                out.push(
                    header_position(msg, 12, 1),
                    Err3::UnsupportedVersionId,
                    Severity::Error,
                    format!("unsupported version id {v:?}; checked against {DEFAULT_VERSION}"),
                );
                DEFAULT_VERSION
            }
        },
        (None, None) => DEFAULT_VERSION,
    };
    let Some(version) = data.versions.get(version_id) else {
        out.push(
            Position::default(),
            Err3::ApplicationInternalError,
            Severity::Error,
            format!("version {version_id} is missing from the validation definitions"),
        );
        return out.finish(end_position(msg));
    };
    let defs = Defs::new(version_id, version, profile);
    let lengths = profile.map_or(LengthCheck::Warning, Profile::lengths);

    // 2. Message type, event, structure. 3. Segment sequence.
    if let Some((name, elements)) = resolve_structure(msg, &defs, &mut out) {
        check_sequence(msg, name, elements, &defs, &mut out);
    }

    // 4. Fields.
    let mut ctx = FieldCheck {
        defs: &defs,
        out: &mut out,
        lengths,
    };
    for seg in msg.segments() {
        ctx.segment(&seg);
    }
    out.finish(end_position(msg))
}

fn resolve_structure<'d>(
    msg: &Message<'_>,
    defs: &Defs<'d>,
    out: &mut Findings,
) -> Option<(&'d str, &'d [ElementDef])> {
    let v = defs.version_id;
    // A missing MSH-9.1 is reported as 101 by the field check (MSH-9 is required).
    let code = msg.message_code()?.trim().to_owned();
    if !defs.knows_message_type(&code) {
        out.push(
            header_position(msg, 9, 1),
            Err3::UnsupportedMessageType,
            Severity::Error,
            format!("unsupported message type {code:?} in version {v}"),
        );
        return None;
    }
    let event = msg
        .trigger_event()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .or_else(|| {
            let evn = msg.find_segment("EVN", 1)?.field(1)?;
            let text = evn.decoded().trim().to_owned();
            (!text.is_empty()).then_some(text)
        });
    let from_event = match &event {
        Some(e) => defs
            .event(&format!("{code}^{e}"))
            .and_then(|s| defs.structure(s)),
        None => None,
    }
    // Types with one structure for every event (ACK).
    .or_else(|| defs.structure(&code));
    let declared = msg
        .message_structure()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let event_unknown = |out: &mut Findings| match &event {
        Some(e) => out.push(
            header_position(msg, 9, 2),
            Err3::UnsupportedEventCode,
            Severity::Error,
            format!("unsupported trigger event {e:?} for message type {code} in version {v}"),
        ),
        None => out.push(
            header_position(msg, 9, 2),
            Err3::UnsupportedEventCode,
            Severity::Error,
            format!("no trigger event for message type {code}"),
        ),
    };
    match declared {
        Some(d) => {
            match defs.structure(&d) {
                Some(found) => {
                    let local_event = event.as_deref().is_some_and(|e| e.starts_with('Z'));
                    if from_event.is_none() && !local_event {
                        event_unknown(out);
                    }
                    Some(found)
                }
                None => match from_event {
                    Some(found) => {
                        out.push(
                        header_position(msg, 9, 3),
                        Err3::UnsupportedMessageType,
                        Severity::Warning,
                        format!("message structure {d:?} is not defined in version {v}; checked as {}", found.0),
                    );
                        Some(found)
                    }
                    None => {
                        event_unknown(out);
                        None
                    }
                },
            }
        }
        None => {
            if from_event.is_none() {
                event_unknown(out);
            }
            from_event
        }
    }
}

fn contains_segment(elements: &[ElementDef], id: &str) -> bool {
    elements.iter().any(|e| match e {
        ElementDef::Segment { id: s, .. } => &**s == id,
        ElementDef::Group { children, .. } => contains_segment(children, id),
    })
}

/// Batch envelope segments: not part of any message structure.
fn is_envelope(id: &str) -> bool {
    matches!(id, "FHS" | "BHS" | "BTS" | "FTS")
}

fn check_sequence(
    msg: &Message<'_>,
    name: &str,
    elements: &[ElementDef],
    defs: &Defs<'_>,
    out: &mut Findings,
) {
    let declared_z = defs
        .profile()
        .is_some_and(|p| p.z_segments() == ZSegments::Declared);
    let mut ids = Vec::with_capacity(msg.segment_count());
    let mut segs = Vec::with_capacity(msg.segment_count());
    for seg in msg.segments() {
        let id = seg.id();
        if is_envelope(id) {
            continue;
        }
        if id.starts_with('Z') && !declared_z && !contains_segment(elements, id) {
            continue;
        }
        let b = id.as_bytes();
        ids.push([b[0], b[1], b[2]]);
        segs.push(segment_position(&seg));
    }
    let nfa = structure::Nfa::compile(elements);
    let edits = match structure::align(&nfa, &ids) {
        Ok(e) => e,
        Err(too_large) => {
            out.push(
                segs.first().copied().unwrap_or_default(),
                Err3::ApplicationInternalError,
                Severity::Warning,
                format!(
                    "segment order not checked: {} segments against {name} exceed the limit of {MAX_ALIGNMENT_CELLS} cells ({})",
                    ids.len(),
                    too_large.cells
                ),
            );
            return;
        }
    };
    let mut unexpected: Vec<usize> = Vec::new();
    let mut missing: Vec<(String, usize)> = Vec::new();
    for e in edits {
        match e {
            structure::Edit::Unexpected(i) => unexpected.push(i),
            structure::Edit::Missing { id, before } => missing.push((id, before)),
        }
    }
    // A segment both unexpected where it is and missing elsewhere is one misplaced segment.
    for i in unexpected {
        let pos = segs[i];
        let id = pos.segment_id_str().to_owned();
        if let Some(m) = missing.iter().position(|(mid, _)| *mid == id) {
            missing.remove(m);
            out.push(
                pos,
                Err3::SegmentSequenceError,
                Severity::Error,
                format!("segment {id} is out of order in {name}"),
            );
            continue;
        }
        let text = if contains_segment(elements, &id) {
            format!("segment {id} is not allowed here in {name}")
        } else if defs.has_segment(&id) || id.starts_with('Z') {
            format!("segment {id} is not part of {name}")
        } else {
            format!("segment {id} is not defined in version {}", defs.version_id)
        };
        out.push(pos, Err3::SegmentSequenceError, Severity::Error, text);
    }
    for (id, before) in missing {
        let (byte, where_) = match segs.get(before) {
            Some(p) => (
                p.byte,
                format!(
                    "before segment {} ({})",
                    p.segment_index,
                    p.segment_id_str()
                ),
            ),
            None => (msg.raw().len(), "at the end".to_owned()),
        };
        let b = id.as_bytes();
        let position = Position {
            byte,
            segment_id: [
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
                b.get(2).copied().unwrap_or(0),
            ],
            ..Position::default()
        };
        let what = if id == definitions::ANY_SEGMENT {
            "a required segment (any id)".to_owned()
        } else {
            format!("required segment {id}")
        };
        out.push(
            position,
            Err3::SegmentSequenceError,
            Severity::Error,
            format!("{what} is missing from {name} (expected {where_})"),
        );
    }
}

struct FieldCheck<'a, 'd> {
    defs: &'a Defs<'d>,
    out: &'a mut Findings,
    lengths: LengthCheck,
}

fn char_len(raw: &[u8]) -> usize {
    match std::str::from_utf8(raw) {
        Ok(s) => s.chars().count(),
        Err(_) => raw.len(),
    }
}

/// The first leaf below a node: a primitive written with extra components keeps its first.
/// Stops where a level cannot be split (no subcomponent separator, MSH-1/MSH-2), where the
/// parser hands back the node itself.
fn first_leaf<'a>(node: Node<'a>) -> Node<'a> {
    let mut n = node;
    loop {
        let child = match n.level() {
            Level::Field => n.repetition(1),
            Level::Repetition => n.component(1),
            Level::Component => n.subcomponent(1),
            Level::Subcomponent => return n,
        };
        match child {
            Some(c) if c.level() > n.level() => n = c,
            _ => return n,
        }
    }
}

/// The table number a coding-system name like `HL70001` refers to.
fn hl7_table_number(coding_system: &str) -> Option<u32> {
    let t = coding_system.trim();
    let digits = t
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("HL7"))
        .map(|_| &t[3..])?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// HL7 table 0396, the names of coding systems. Implementation guides add names to it all
/// the time (CDC's PHIN value sets, national code systems), so an unknown name is a warning,
/// not an error; and the table itself admits `99zzz` local names and `HL7nnnn` for any HL7
/// table, which are accepted by pattern.
const CODING_SYSTEMS: u32 = 396;

fn is_local_coding_system(name: &str) -> bool {
    let local =
        name.len() > 2 && name.starts_with("99") && name.bytes().all(|b| b.is_ascii_alphanumeric());
    local || hl7_table_number(name).is_some()
}

fn is_coded(data_type: &str) -> bool {
    matches!(data_type, "CE" | "CWE" | "CNE" | "CF")
}

impl FieldCheck<'_, '_> {
    fn segment(&mut self, seg: &Segment<'_>) {
        let id = seg.id();
        let Some(fields) = self.defs.segment(id) else {
            return;
        };
        let header = id == "MSH";
        for (i, f) in fields.iter().enumerate() {
            let n = i + 1;
            if header && n <= 2 {
                continue;
            }
            let node = seg.field(n);
            let present = node.is_some_and(|x| !x.is_empty());
            if !present {
                if f.usage == Usage::Required {
                    let position = node.map(|x| x.position()).unwrap_or_else(|| Position {
                        byte: seg.offset() + seg.raw().len(),
                        field: n.min(u16::MAX as usize) as u16,
                        ..segment_position(seg)
                    });
                    self.out.push(
                        position,
                        Err3::RequiredFieldMissing,
                        Severity::Error,
                        format!("required field {id}-{n} ({}) is missing", f.name),
                    );
                }
                continue;
            }
            let Some(node) = node else { continue };
            if node.is_null() || f.usage == Usage::Withdrawn {
                continue;
            }
            let tables = !(header && (n == 9 || n == 12));
            // OBX-5 takes the type OBX-2 names; a name the version does not know leaves it
            // unchecked (OBX-2's own table check reports the name).
            let obx_type: String;
            let data_type: &str = if id == "OBX" && n == 5 {
                obx_type = seg
                    .field(2)
                    .map(|t| first_leaf(t).decoded().trim().to_owned())
                    .unwrap_or_default();
                if self.defs.datatype(&obx_type).is_some() {
                    &obx_type
                } else {
                    ""
                }
            } else {
                &f.data_type
            };
            self.field(node, f, data_type, tables);
        }
    }

    fn field(&mut self, node: Node<'_>, f: &FieldDef, data_type: &str, tables: bool) {
        let count = node.repetitions().count();
        let max = f.max_repetitions as usize;
        if max > 0 && count > max {
            let position = node
                .repetition(max + 1)
                .map_or(node.position(), |r| r.position());
            self.out.push(
                position,
                Err3::DataTypeError,
                Severity::Error,
                format!(
                    "{} ({}) has {count} repetitions, at most {max} allowed",
                    node.position().path(),
                    f.name
                ),
            );
        }
        for rep in node.repetitions() {
            if rep.is_empty() || rep.is_null() {
                continue;
            }
            if f.max_length > 0 && self.lengths != LengthCheck::Off {
                let len = char_len(rep.raw());
                if len > f.max_length as usize {
                    let severity = if self.lengths == LengthCheck::Error {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    self.out.push(
                        rep.position(),
                        Err3::ValueTooLong,
                        severity,
                        format!(
                            "{} ({}) is {len} characters long, at most {} allowed",
                            rep.position().path(),
                            f.name,
                            f.max_length
                        ),
                    );
                }
            }
            if !data_type.is_empty() {
                self.value(rep, &f.name, data_type, f.table, tables);
            }
        }
    }

    /// A repetition or component of type `data_type`.
    fn value(&mut self, node: Node<'_>, name: &str, data_type: &str, table: u32, tables: bool) {
        let parts = self.defs.datatype(data_type).filter(|c| !c.is_empty());
        let Some(parts) = parts else {
            self.leaf(
                first_leaf(node),
                node.position(),
                name,
                data_type,
                table,
                tables,
            );
            return;
        };
        if node.level() == Level::Subcomponent {
            return;
        }
        let children: Vec<Node<'_>> = match node.level() {
            Level::Field | Level::Repetition => node.components().collect(),
            _ => node.subcomponents().collect(),
        };
        for (child, def) in children.iter().zip(parts) {
            if child.is_empty() || child.is_null() {
                continue;
            }
            if node.level() == Level::Component {
                // Below a component only primitives remain: a composite component of a
                // composite component cannot be split further.
                self.leaf(
                    first_leaf(*child),
                    child.position(),
                    &def.name,
                    &def.data_type,
                    def.table,
                    tables,
                );
            } else {
                self.value(*child, &def.name, &def.data_type, def.table, tables);
            }
        }
        if tables && table != 0 && is_coded(data_type) {
            let system = children.get(2).map(|c| c.decoded()).unwrap_or_default();
            if hl7_table_number(&system) == Some(table)
                && let Some(code) = children.first().filter(|c| !c.is_empty())
            {
                let view = self.defs.table(table);
                let text = code.decoded();
                if !view.is_empty() && !view.contains(text.trim()) {
                    self.out.push(
                        code.position(),
                        Err3::TableValueNotFound,
                        Severity::Error,
                        format!(
                            "{} ({name}) is not a value of HL7 table {table:04}",
                            code.position().path()
                        ),
                    );
                }
            }
        }
    }

    /// A primitive value; `at` is where its definition applies (the leaf may sit deeper when
    /// a primitive was written with extra components).
    fn leaf(
        &mut self,
        node: Node<'_>,
        at: Position,
        name: &str,
        data_type: &str,
        table: u32,
        tables: bool,
    ) {
        if node.is_empty() || node.is_null() {
            return;
        }
        let checks_table = tables && table != 0 && matches!(data_type, "ID" | "IS");
        if !primitive::has_format(data_type) && !checks_table {
            return;
        }
        let text = node.decoded();
        if let Err(reason) = primitive::check(data_type, &text) {
            self.out.push(
                at,
                Err3::DataTypeError,
                Severity::Error,
                format!(
                    "{} ({name}) is not a valid {data_type}: {reason}, expected {}",
                    at.path(),
                    primitive::format_hint(data_type)
                ),
            );
        }
        if checks_table {
            let view = self.defs.table(table);
            let accepted = view.is_empty()
                || view.contains(&text)
                || (table == CODING_SYSTEMS && is_local_coding_system(&text));
            if !accepted {
                let (severity, kind) = if data_type == "IS" {
                    (
                        Severity::Warning,
                        "the suggested values of user-defined table",
                    )
                } else if table == CODING_SYSTEMS {
                    (Severity::Warning, "HL7 table")
                } else {
                    (Severity::Error, "HL7 table")
                };
                self.out.push(
                    at,
                    Err3::TableValueNotFound,
                    severity,
                    format!("{} ({name}) is not a value of {kind} {table:04}", at.path()),
                );
            }
        }
    }
}

/// The standard name of a field, e.g. `("2.5.1", "PID", 5)` -> `Patient Name`, for views
/// that label raw segments. Falls back to the newest version when `version` is unknown;
/// `None` for Z segments and fields past the definition.
pub fn field_name(version: &str, segment: &str, field: usize) -> Option<String> {
    let data = definitions::data().ok()?;
    let defs = data
        .versions
        .get(version)
        .or_else(|| data.versions.values().next_back())?;
    let def = defs.segments.get(segment)?.get(field.checked_sub(1)?)?;
    (!def.name.is_empty()).then(|| def.name.to_string())
}

/// What the definitions say of one field, for tools that treat coded fields apart from text
/// (drift detection learns value sets of coded fields only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldType {
    /// Data type code, e.g. `ID`, `CWE`, `XPN`.
    pub data_type: &'static str,
    /// HL7 table number; 0 = none.
    pub table: u32,
    /// Maximum length in characters; 0 = not given.
    pub max_length: u32,
}

/// The standard type of a field, e.g. `("2.5.1", "PID", 8)` -> `IS`, table 1. Same fallback as
/// [`field_name`]: the newest version when `version` is unknown; `None` for Z segments and
/// fields past the definition.
pub fn field_type(version: &str, segment: &str, field: usize) -> Option<FieldType> {
    let data = definitions::data().ok()?;
    let defs = data
        .versions
        .get(version)
        .or_else(|| data.versions.values().next_back())?;
    let def = defs.segments.get(segment)?.get(field.checked_sub(1)?)?;
    Some(FieldType {
        data_type: &def.data_type,
        table: def.table,
        max_length: def.max_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_system_names() {
        assert_eq!(hl7_table_number("HL70001"), Some(1));
        assert_eq!(hl7_table_number("hl70396"), Some(396));
        assert_eq!(hl7_table_number("HL7"), None);
        assert_eq!(hl7_table_number("HL7V2"), None);
        assert_eq!(hl7_table_number("LN"), None);
        assert!(is_local_coding_system("99ZZZ"));
        assert!(is_local_coding_system("HL70078"));
        assert!(!is_local_coding_system("99"));
        assert!(!is_local_coding_system("SCT"));
    }

    #[test]
    fn err3_codes_match_table_0357() {
        let all = [
            (Err3::SegmentSequenceError, 100),
            (Err3::RequiredFieldMissing, 101),
            (Err3::DataTypeError, 102),
            (Err3::TableValueNotFound, 103),
            (Err3::ValueTooLong, 104),
            (Err3::UnsupportedMessageType, 200),
            (Err3::UnsupportedEventCode, 201),
            (Err3::UnsupportedVersionId, 203),
            (Err3::ApplicationInternalError, 207),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn findings_are_capped() {
        let mut out = Findings {
            list: Vec::new(),
            dropped: 0,
        };
        for i in 0..MAX_FINDINGS + 5 {
            out.push(
                Position::at_byte(i),
                Err3::DataTypeError,
                Severity::Error,
                "x".into(),
            );
        }
        let list = out.finish(Position::at_byte(9));
        assert_eq!(list.len(), MAX_FINDINGS + 1);
        let last = list.last().unwrap();
        assert_eq!(last.code, Err3::ApplicationInternalError);
        assert_eq!(
            last.text,
            format!("5 more findings not reported (limit {MAX_FINDINGS})")
        );
    }

    #[test]
    fn field_types_come_from_the_definitions() {
        let sex = field_type("2.5.1", "PID", 8).unwrap();
        assert_eq!((sex.data_type, sex.table), ("IS", 1));
        assert_eq!(field_type("2.5.1", "PID", 3).unwrap().data_type, "CX");
        assert_eq!(field_type("2.5.1", "ZPD", 1), None);
        assert_eq!(field_type("9.9", "PID", 8), field_type("2.8.2", "PID", 8));
    }

    #[test]
    fn supported_versions_are_listed() {
        let v = supported_versions();
        assert_eq!(v.first(), Some(&"2.1"));
        assert_eq!(v.last(), Some(&"2.8.2"));
        assert!(v.contains(&DEFAULT_VERSION));
    }
}
