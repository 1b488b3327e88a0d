//! The zero-copy message: one pass over the bytes, an index of segments and fields, and
//! values located on demand.
//!
//! Map:
//! - [`parse`] reads the separators from MSH-1/MSH-2, then indexes the buffer segment by
//!   segment: `memchr2` finds the line break, `memchr` every field separator before it.
//! - [`Message`] keeps the input slice and that index (`bounds`: the byte offset of every
//!   field separator and segment end). Repetitions, components and subcomponents are found
//!   on demand inside a field with `memchr`, so every value is reachable without a tree of
//!   allocations and without copying.
//! - [`Node`] is any value: a field, a repetition, a component or a subcomponent. Its text is
//!   decoded (escapes, charset) only when asked, borrowed unless an escape forces a copy.
//!
//! Invariants: the input is never modified and never copied; every segment's `bounds` start
//! with the separator right after its 3-character id (or its end, for a bare id); byte
//! offsets fit in `u32` (inputs over 4 GiB are refused).

use std::borrow::Cow;

use crate::charset::Charset;
use crate::error::{Error, ErrorKind, Position};
use crate::escape::{self, Leniency};
use crate::path::Path;
use crate::separators::Separators;

/// Inputs larger than this are refused: offsets are kept as `u32` to halve the index size.
pub const MAX_MESSAGE_LEN: usize = u32::MAX as usize;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Options for [`parse_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    pub leniency: Leniency,
    /// Overrides MSH-18 (and the UTF-8 default) for feeds that mislabel their text, e.g. a
    /// windows-1252 archive with no MSH-18.
    pub charset: Option<Charset>,
}

/// Something the parser accepted but a strict reader would not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub position: Position,
    pub text: String,
}

/// The decoding context every value carries: small and `Copy` so values need no borrow of
/// the message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context<'t> {
    pub seps: Separators,
    pub charset: Charset,
    pub leniency: Leniency,
    /// The whole input, once [`Message::with_text_checked`] found it valid UTF-8: a value
    /// already known to be ASCII is then sliced from it instead of checked again. `None` after
    /// a plain parse, and for an owned message (its values live in their own buffers).
    pub text: Option<&'t str>,
}

// By hand: a value's debug form must not print the whole message it came from.
impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("seps", &self.seps)
            .field("charset", &self.charset)
            .field("leniency", &self.leniency)
            .field("utf8", &self.text.is_some())
            .finish()
    }
}

impl<'t> Context<'t> {
    /// `bytes` as text, when they lie inside [`Context::text`].
    #[inline]
    fn text_of(&self, bytes: &[u8]) -> Option<&'t str> {
        let text = self.text?;
        let start = (bytes.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let s = text.get(start..start.checked_add(bytes.len())?)?;
        // The very same bytes, not the same offset into another buffer.
        std::ptr::eq(s.as_ptr(), bytes.as_ptr()).then_some(s)
    }
}

#[derive(Debug, Clone, Copy)]
struct SegmentSpan {
    id: [u8; 3],
    /// Offset of the first byte of the id.
    start: u32,
    /// Offset just past the segment's content (its terminator, or the end of input).
    end: u32,
    /// Offset of the next segment (past the terminator and any blank lines).
    next: u32,
    /// Range of this segment in `Message::bounds`.
    first_bound: u32,
    bound_count: u32,
}

/// A parsed message borrowing its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    body_start: usize,
    ctx: Context<'a>,
    segments: Vec<SegmentSpan>,
    bounds: Vec<u32>,
    warnings: Vec<Warning>,
}

/// Parses one message with the default (lenient) options.
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, Error> {
    parse_with(bytes, ParseOptions::default())
}

/// True for the segment ids whose field 1 is the field separator and field 2 the encoding
/// characters.
fn is_header_id(id: &[u8]) -> bool {
    id == b"MSH" || id == b"FHS" || id == b"BHS"
}

fn valid_id_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// Parses one message.
pub fn parse_with(bytes: &[u8], options: ParseOptions) -> Result<Message<'_>, Error> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(Error::new(
            ErrorKind::TooLarge {
                what: "bytes",
                limit: MAX_MESSAGE_LEN,
            },
            Position::default(),
        ));
    }
    let lenient = options.leniency == Leniency::Lenient;
    let mut warnings = Vec::new();
    let mut start = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
        start += 1;
    }
    if start >= bytes.len() {
        return Err(Error::new(ErrorKind::Empty, Position::at_byte(start)));
    }
    if !bytes[start..].starts_with(b"MSH") {
        let line_end =
            memchr::memchr2(b'\r', b'\n', &bytes[start..]).map_or(bytes.len(), |n| start + n);
        let found: String =
            String::from_utf8_lossy(&bytes[start..line_end.min(start + 3)]).into_owned();
        return Err(Error::new(
            ErrorKind::MissingMsh { found },
            Position::at_byte(start),
        ));
    }
    let first_end =
        memchr::memchr2(b'\r', b'\n', &bytes[start..]).map_or(bytes.len(), |n| start + n);
    let (seps, msh2_len) = Separators::from_header(&bytes[start..first_end], start, lenient)?;
    let msh2 = &bytes[start + 4..start + 4 + msh2_len];
    if msh2.len() != seps.encoding_characters_len() {
        warnings.push(Warning {
            position: Position {
                byte: start + 4,
                segment_index: 1,
                segment_id: *b"MSH",
                field: 2,
                ..Position::default()
            },
            text: format!(
                "repeated character in MSH-2 {:?} ignored",
                String::from_utf8_lossy(msh2)
            ),
        });
    }

    let mut msg = Message {
        raw: bytes,
        body_start: start,
        ctx: Context {
            seps,
            charset: Charset::Utf8,
            leniency: options.leniency,
            text: None,
        },
        // A typical segment holds ~60 bytes and ~12 fields; reserving by size avoids regrowth.
        segments: Vec::with_capacity(bytes.len() / 64 + 2),
        bounds: Vec::with_capacity(bytes.len() / 8 + 4),
        warnings,
    };
    msg.index(start)?;
    msg.resolve_charset(options)?;
    Ok(msg)
}

impl<'a> Message<'a> {
    /// The same message, its input checked as UTF-8 once, as a whole: values that are plain
    /// ASCII are then read as text by slicing it instead of being checked one by one. Worth it
    /// for a reader of many values (a conversion reads hundreds); a plain parse skips it.
    #[must_use]
    pub fn with_text_checked(mut self) -> Message<'a> {
        self.ctx.text = std::str::from_utf8(self.raw).ok();
        self
    }

    /// The single pass: records field separators and segment ends.
    fn index(&mut self, start: usize) -> Result<(), Error> {
        let raw = self.raw;
        let field = self.ctx.seps.field;
        // Segment by segment: find the line break, then every field separator before it. Two
        // searches over the bytes, but each match costs only a push, which is what counts
        // when a separator comes every few bytes.
        let mut seg_start = start;
        while seg_start < raw.len() {
            let rest = &raw[seg_start..];
            let end = memchr::memchr2(b'\r', b'\n', rest).map_or(raw.len(), |n| seg_start + n);
            let first_bound = self.bounds.len();
            self.bounds.extend(
                memchr::memchr_iter(field, &raw[seg_start..end]).map(|p| (seg_start + p) as u32),
            );
            let next = if end < raw.len() {
                self.skip_blank_lines(end)
            } else {
                end
            };
            self.close_segment(seg_start, end, next, first_bound)?;
            seg_start = next;
        }
        Ok(())
    }

    /// From a terminator at `pos`, the offset of the next segment: past CR/LF runs and lines
    /// holding only spaces or tabs.
    fn skip_blank_lines(&self, pos: usize) -> usize {
        let raw = self.raw;
        let mut next = pos;
        loop {
            while next < raw.len() && matches!(raw[next], b'\r' | b'\n') {
                next += 1;
            }
            let mut probe = next;
            while probe < raw.len() && matches!(raw[probe], b' ' | b'\t') {
                probe += 1;
            }
            if probe > next && (probe == raw.len() || matches!(raw[probe], b'\r' | b'\n')) {
                next = probe;
                if next == raw.len() {
                    return next;
                }
                continue;
            }
            return next;
        }
    }

    fn close_segment(
        &mut self,
        start: usize,
        end: usize,
        next: usize,
        first_bound: usize,
    ) -> Result<(), Error> {
        self.bounds.push(end as u32);
        let raw = self.raw;
        let index = self.segments.len() as u32 + 1;
        let id_ok = self.bounds[first_bound] as usize == start + 3
            && raw[start..start + 3].iter().all(|&b| valid_id_byte(b));
        if !id_ok {
            let id_end = self.bounds[first_bound] as usize;
            let found = String::from_utf8_lossy(&raw[start..id_end.min(start + 16)]).into_owned();
            return Err(Error::new(
                ErrorKind::InvalidSegmentId { found },
                Position {
                    byte: start,
                    segment_index: index,
                    ..Position::default()
                },
            ));
        }
        self.segments.push(SegmentSpan {
            id: [raw[start], raw[start + 1], raw[start + 2]],
            start: start as u32,
            end: end as u32,
            next: next as u32,
            first_bound: first_bound as u32,
            bound_count: (self.bounds.len() - first_bound) as u32,
        });
        Ok(())
    }

    /// Picks the charset (option, MSH-18, default) and checks the text is valid in it.
    fn resolve_charset(&mut self, options: ParseOptions) -> Result<(), Error> {
        let declared = self
            .segment(1)
            .and_then(|msh| msh.field(18))
            .map(|f| {
                f.repetition(1)
                    .map(|r| r.decoded().into_owned())
                    .unwrap_or_default()
            })
            .filter(|s| !s.trim().is_empty());
        let charset = match (options.charset, &declared) {
            (Some(c), _) => c,
            (None, Some(name)) => match Charset::from_msh18(name) {
                Some(c) => c,
                None if self.ctx.leniency == Leniency::Lenient => {
                    let position = self
                        .segment(1)
                        .and_then(|s| s.field(18))
                        .map(|f| f.position())
                        .unwrap_or_default();
                    self.warnings.push(Warning {
                        position,
                        text: format!(
                            "unsupported character set {name:?} in MSH-18, read as UTF-8"
                        ),
                    });
                    Charset::Utf8
                }
                None => {
                    let position = self
                        .segment(1)
                        .and_then(|s| s.field(18))
                        .map(|f| f.position())
                        .unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::UnsupportedCharset { name: name.clone() },
                        position,
                    ));
                }
            },
            (None, None) => Charset::Utf8,
        };
        self.ctx.charset = charset;
        let body = &self.raw[self.body_start..];
        if let Some(bad) = charset.first_invalid(body) {
            let position = self.position_of(self.body_start + bad);
            if self.ctx.leniency == Leniency::Strict {
                return Err(Error::new(
                    ErrorKind::InvalidText {
                        charset: charset.name(),
                    },
                    position,
                ));
            }
            if declared.is_none() && options.charset.is_none() && charset == Charset::Utf8 {
                self.ctx.charset = Charset::Legacy(encoding_rs::WINDOWS_1252);
                self.warnings.push(Warning {
                    position,
                    text: "text is not valid UTF-8 and no MSH-18 is given: read as windows-1252"
                        .into(),
                });
            } else {
                self.warnings.push(Warning {
                    position,
                    text: format!("invalid {} text replaced with U+FFFD", charset.name()),
                });
            }
        }
        Ok(())
    }

    /// The position (segment, field) that holds byte `byte`.
    pub fn position_of(&self, byte: usize) -> Position {
        let Some(seg_idx) = self.segments.iter().rposition(|s| s.start as usize <= byte) else {
            return Position::at_byte(byte);
        };
        let span = self.segments[seg_idx];
        let bounds = self.segment_bounds(&span);
        let split = bounds
            .iter()
            .position(|&b| byte <= b as usize)
            .unwrap_or(bounds.len());
        let field = if split == 0 {
            0
        } else if is_header_id(&span.id) {
            split + 1
        } else {
            split
        };
        Position {
            byte,
            segment_index: seg_idx as u32 + 1,
            segment_id: span.id,
            field: field.min(u16::MAX as usize) as u16,
            ..Position::default()
        }
    }

    #[inline]
    fn segment_bounds(&self, span: &SegmentSpan) -> &[u32] {
        &self.bounds[span.first_bound as usize..(span.first_bound + span.bound_count) as usize]
    }

    /// The whole input buffer, byte for byte (a leading BOM included).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Offset of `MSH` in [`Message::raw`] (past a BOM or leading blank lines).
    pub fn body_start(&self) -> usize {
        self.body_start
    }

    pub fn separators(&self) -> Separators {
        self.ctx.seps
    }

    pub fn charset(&self) -> Charset {
        self.ctx.charset
    }

    pub fn leniency(&self) -> Leniency {
        self.ctx.leniency
    }

    /// What was accepted leniently (charset fallbacks, repeated MSH-2 characters).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segment at a 1-based index.
    #[inline]
    pub fn segment(&self, index: usize) -> Option<Segment<'_>> {
        let span = *self.segments.get(index.checked_sub(1)?)?;
        Some(Segment {
            raw: self.raw,
            ctx: &self.ctx,
            span,
            bounds: self.segment_bounds(&span),
            index: index as u32,
        })
    }

    #[inline]
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        (1..=self.segments.len()).filter_map(move |i| self.segment(i))
    }

    /// The `occurrence`-th (1-based) segment with this id.
    pub fn find_segment(&self, id: &str, occurrence: usize) -> Option<Segment<'_>> {
        let (i, _) = self.find_span(id.as_bytes(), occurrence)?;
        self.segment(i + 1)
    }

    fn find_span(&self, id: &[u8], occurrence: usize) -> Option<(usize, SegmentSpan)> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.id == id)
            .nth(occurrence.checked_sub(1)?)
            .map(|(i, s)| (i, *s))
    }

    /// Field `n` of the segment at 0-based `i`.
    fn field_of(&self, i: usize, span: &SegmentSpan, n: usize) -> Option<Node<'_>> {
        field_node(
            self.raw,
            &self.ctx,
            span,
            self.segment_bounds(span),
            i as u32 + 1,
            n,
        )
    }

    /// The value at a path such as `PID-3(2).1.2`, `OBX(3)-5` or `MSH-9.2`; `Ok(None)` when
    /// the message has no such value.
    pub fn get(&self, path: &str) -> Result<Option<Node<'_>>, Error> {
        Ok(self.get_path(&Path::parse(path)?))
    }

    /// [`Message::get`] with a path parsed once.
    pub fn get_path(&self, path: &Path) -> Option<Node<'_>> {
        let (i, span) = self.find_span(&path.segment, path.segment_occurrence)?;
        path.select(self.field_of(i, &span, path.field)?)
    }

    /// Decoded text at a path, or `None` when absent or the path is malformed.
    pub fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get(path).ok().flatten().map(|n| n.decoded())
    }

    /// MSH-9.1, e.g. `ADT`.
    pub fn message_code(&self) -> Option<Cow<'_, str>> {
        self.header_component(9, 1)
    }

    /// MSH-9.2, e.g. `A01`.
    pub fn trigger_event(&self) -> Option<Cow<'_, str>> {
        self.header_component(9, 2)
    }

    /// MSH-9.3, e.g. `ADT_A01`.
    pub fn message_structure(&self) -> Option<Cow<'_, str>> {
        self.header_component(9, 3)
    }

    /// `code^trigger` from MSH-9, e.g. `ADT^A01` (just the code when there is no trigger).
    pub fn message_type(&self) -> String {
        let code = self.message_code().unwrap_or_default();
        match self.trigger_event() {
            Some(t) if !t.is_empty() => format!("{code}^{t}"),
            _ => code.into_owned(),
        }
    }

    /// MSH-10.
    pub fn control_id(&self) -> Option<Cow<'_, str>> {
        self.header_component(10, 1)
    }

    /// MSH-11.1, e.g. `P`.
    pub fn processing_id(&self) -> Option<Cow<'_, str>> {
        self.header_component(11, 1)
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> Option<Cow<'_, str>> {
        self.header_component(12, 1)
    }

    /// MSH-3.1 sending application namespace id.
    pub fn sending_application(&self) -> Option<Cow<'_, str>> {
        self.header_component(3, 1)
    }

    /// MSH-4.1 sending facility namespace id.
    pub fn sending_facility(&self) -> Option<Cow<'_, str>> {
        self.header_component(4, 1)
    }

    fn header_component(&self, field: usize, component: usize) -> Option<Cow<'_, str>> {
        let span = *self.segments.first()?;
        let node = self.field_of(0, &span, field)?.component(component)?;
        let text = node.decoded();
        (!text.is_empty()).then_some(text)
    }

    /// Heap bytes held by the index (the "tree" of this parser).
    pub fn heap_bytes(&self) -> usize {
        self.segments.capacity() * std::mem::size_of::<SegmentSpan>()
            + self.bounds.capacity() * std::mem::size_of::<u32>()
            + self.warnings.capacity() * std::mem::size_of::<Warning>()
    }

    /// An owned, editable copy.
    pub fn to_owned_message(&self) -> crate::OwnedMessage {
        crate::OwnedMessage::from_message(self)
    }

    /// (content start, content end, next segment start) of each segment, for the owned copy.
    pub(crate) fn spans(&self) -> impl Iterator<Item = ([u8; 3], usize, usize, usize)> + '_ {
        self.segments
            .iter()
            .map(|s| (s.id, s.start as usize, s.end as usize, s.next as usize))
    }
}

/// One segment of a [`Message`].
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    ctx: &'a Context<'a>,
    span: SegmentSpan,
    bounds: &'a [u32],
    index: u32,
}

impl<'a> Segment<'a> {
    pub fn id(&self) -> &'a str {
        let start = self.span.start as usize;
        let id = &self.raw[start..start + 3];
        // Ids were checked to be ASCII upper-case letters or digits.
        self.ctx
            .text_of(id)
            .or_else(|| std::str::from_utf8(id).ok())
            .unwrap_or("???")
    }

    /// 1-based index in the message.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// Byte offset of the segment id in the input.
    pub fn offset(&self) -> usize {
        self.span.start as usize
    }

    /// The segment's bytes without its terminator.
    pub fn raw(&self) -> &'a [u8] {
        &self.raw[self.span.start as usize..self.span.end as usize]
    }

    fn is_header(&self) -> bool {
        is_header_id(&self.span.id)
    }

    /// Number of fields present, counting MSH-1 for header segments.
    pub fn field_count(&self) -> usize {
        let split = self.bounds.len() - 1;
        if self.is_header() { split + 1 } else { split }
    }

    /// The field at a 1-based HL7 field number (`MSH-1` is the field separator).
    #[inline]
    pub fn field(&self, n: usize) -> Option<Node<'a>> {
        self.field_node(n)
    }

    #[inline]
    pub fn fields(&self) -> impl Iterator<Item = Node<'a>> + '_ {
        (1..=self.field_count()).filter_map(move |n| self.field_node(n))
    }

    #[inline]
    pub(crate) fn field_node(&self, n: usize) -> Option<Node<'a>> {
        field_node(self.raw, self.ctx, &self.span, self.bounds, self.index, n)
    }
}

/// Field `n` (1-based, HL7 numbering) of a segment.
#[inline]
fn field_node<'r>(
    raw: &'r [u8],
    ctx: &'r Context<'r>,
    span: &SegmentSpan,
    bounds: &[u32],
    index: u32,
    n: usize,
) -> Option<Node<'r>> {
    if n == 0 {
        return None;
    }
    let loc = |byte: usize| Loc {
        offset: byte as u32,
        segment_index: index,
        segment_id: span.id,
        level: Level::Field,
        literal: false,
        field: n.min(u16::MAX as usize) as u16,
        repetition: 0,
        component: 0,
        subcomponent: 0,
    };
    let (split, literal) = if is_header_id(&span.id) {
        match n {
            1 => {
                let at = span.start as usize + 3;
                return Some(Node::literal(&raw[at..at + 1], ctx, loc(at)));
            }
            2 => (1, true),
            _ => (n - 1, false),
        }
    } else {
        (n, false)
    };
    if split >= bounds.len() {
        return None;
    }
    let start = bounds[split - 1] as usize + 1;
    let end = bounds[split] as usize;
    let value = &raw[start..end];
    Some(if literal {
        Node::literal(value, ctx, loc(start))
    } else {
        Node::new(value, ctx, loc(start))
    })
}

/// How deep a [`Node`] sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Field,
    Repetition,
    Component,
    Subcomponent,
}

/// Where a node sits, packed small: a walk creates a node per value, hundreds per message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    offset: u32,
    segment_index: u32,
    segment_id: [u8; 3],
    level: Level,
    /// MSH-1 and MSH-2: never split, never unescaped.
    literal: bool,
    field: u16,
    repetition: u16,
    component: u16,
    subcomponent: u16,
}

impl Loc {
    /// Moves this node's own counter (repetition, component or subcomponent) on by `by`.
    fn count_children(&mut self, by: u16) {
        match self.level {
            Level::Repetition => self.repetition = self.repetition.saturating_add(by),
            Level::Component => self.component = self.component.saturating_add(by),
            Level::Subcomponent => self.subcomponent = self.subcomponent.saturating_add(by),
            Level::Field => {}
        }
    }

    pub(crate) fn from_position(p: Position, level: Level) -> Loc {
        Loc {
            offset: p.byte.min(u32::MAX as usize) as u32,
            segment_index: p.segment_index,
            segment_id: p.segment_id,
            level,
            literal: false,
            field: p.field,
            repetition: p.repetition,
            component: p.component,
            subcomponent: p.subcomponent,
        }
    }
}

/// A value at any depth: field, repetition, component or subcomponent.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    raw: &'a [u8],
    ctx: &'a Context<'a>,
    loc: Loc,
}

/// Finds `byte` in a value; values are mostly short, where a plain loop beats `memchr`'s
/// set-up cost.
#[inline]
pub(crate) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() < 32 {
        hay.iter().position(|&b| b == byte)
    } else {
        memchr::memchr(byte, hay)
    }
}

impl<'a> Node<'a> {
    pub(crate) fn new(raw: &'a [u8], ctx: &'a Context<'a>, loc: Loc) -> Self {
        Node { raw, ctx, loc }
    }

    pub(crate) fn literal(raw: &'a [u8], ctx: &'a Context<'a>, mut loc: Loc) -> Self {
        loc.literal = true;
        Node { raw, ctx, loc }
    }

    /// The value's bytes exactly as written (escapes not decoded).
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn level(&self) -> Level {
        self.loc.level
    }

    pub fn position(&self) -> Position {
        let l = &self.loc;
        Position {
            byte: l.offset as usize,
            segment_index: l.segment_index,
            segment_id: l.segment_id,
            field: l.field,
            repetition: l.repetition,
            component: l.component,
            subcomponent: l.subcomponent,
        }
    }

    /// True when the value is empty (absent in HL7 terms).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// True for HL7's explicit null `""` ("delete this value"), which is not the same as empty.
    pub fn is_null(&self) -> bool {
        self.raw == b"\"\""
    }

    /// Decoded text: escapes resolved, charset converted, borrowed unless a copy is needed.
    /// Never fails: sequences that cannot be read are kept verbatim (see [`crate::escape`]).
    pub fn decoded(&self) -> Cow<'a, str> {
        if self.loc.literal {
            return self.ctx.charset.decode(self.raw);
        }
        escape::decode(
            self.raw,
            &self.ctx.seps,
            self.ctx.charset,
            Leniency::Lenient,
            self.position(),
        )
        .unwrap_or_else(|_| self.ctx.charset.decode(self.raw))
    }

    /// The value as text when it needs no decoding: printable ASCII (space to `~`) without the
    /// escape character, the same in every charset a message may declare. `None` otherwise, when
    /// [`Node::decoded`] is the way to read it. One pass, no copy: most values take this path.
    #[inline]
    pub fn plain_text(&self) -> Option<&'a str> {
        let escape = if self.loc.literal {
            None
        } else {
            Some(self.ctx.seps.escape)
        };
        if self
            .raw
            .iter()
            .all(|&b| matches!(b, b' '..=b'~') && Some(b) != escape)
        {
            self.ctx
                .text_of(self.raw)
                .or_else(|| std::str::from_utf8(self.raw).ok())
        } else {
            None
        }
    }

    /// Decoded text, refusing unknown or broken escape sequences with their position.
    pub fn decoded_strict(&self) -> Result<Cow<'a, str>, Error> {
        if self.loc.literal {
            return Ok(self.ctx.charset.decode(self.raw));
        }
        escape::decode(
            self.raw,
            &self.ctx.seps,
            self.ctx.charset,
            Leniency::Strict,
            self.position(),
        )
    }

    /// Children split on `sep`, at `level`.
    #[inline]
    fn split(&self, sep: Option<u8>, level: Level) -> Children<'a> {
        let Some(sep) = sep.filter(|_| !self.loc.literal) else {
            return self.only_self();
        };
        let mut template = *self;
        template.loc.level = level;
        let l = &mut template.loc;
        match level {
            Level::Repetition => l.repetition = 0,
            Level::Component => {
                l.repetition = l.repetition.max(1);
                l.component = 0;
            }
            Level::Subcomponent => {
                l.repetition = l.repetition.max(1);
                l.component = l.component.max(1);
                l.subcomponent = 0;
            }
            Level::Field => {}
        }
        Children {
            rest: self.raw,
            sep,
            state: ChildState::Splitting,
            template,
        }
    }

    #[inline]
    fn only_self(&self) -> Children<'a> {
        Children {
            rest: self.raw,
            sep: 0,
            state: ChildState::Single,
            template: *self,
        }
    }

    /// Repetitions of a field (a non-field node yields itself).
    #[inline]
    pub fn repetitions(&self) -> Children<'a> {
        if self.loc.level != Level::Field {
            return self.only_self();
        }
        self.split(Some(self.ctx.seps.repetition), Level::Repetition)
    }

    /// Components of a repetition; for a field, those of its first repetition.
    #[inline]
    pub fn components(&self) -> Children<'a> {
        if self.loc.literal {
            return self.only_self();
        }
        match self.loc.level {
            Level::Field => match self.repetition(1) {
                Some(rep) => rep.components(),
                None => self.only_self(),
            },
            Level::Repetition => self.split(Some(self.ctx.seps.component), Level::Component),
            _ => self.only_self(),
        }
    }

    /// Subcomponents of a component; for a field or repetition, those of its first component.
    #[inline]
    pub fn subcomponents(&self) -> Children<'a> {
        if self.loc.literal {
            return self.only_self();
        }
        match self.loc.level {
            Level::Field | Level::Repetition => match self.component(1) {
                Some(c) => c.subcomponents(),
                None => self.only_self(),
            },
            Level::Component => self.split(self.ctx.seps.subcomponent, Level::Subcomponent),
            Level::Subcomponent => self.only_self(),
        }
    }

    /// The 1-based repetition `n`.
    #[inline]
    pub fn repetition(&self, n: usize) -> Option<Node<'a>> {
        self.repetitions().nth(n.checked_sub(1)?)
    }

    /// The 1-based component `n` (of the first repetition, for a field).
    #[inline]
    pub fn component(&self, n: usize) -> Option<Node<'a>> {
        self.components().nth(n.checked_sub(1)?)
    }

    /// The 1-based subcomponent `n` (of the first component, for a field or repetition).
    #[inline]
    pub fn subcomponent(&self, n: usize) -> Option<Node<'a>> {
        self.subcomponents().nth(n.checked_sub(1)?)
    }

    /// True when the value has repetitions, components or subcomponents below it.
    pub fn has_children(&self) -> bool {
        if self.loc.literal {
            return false;
        }
        let s = &self.ctx.seps;
        match self.loc.level {
            Level::Field => self
                .raw
                .iter()
                .any(|&b| b == s.repetition || b == s.component || Some(b) == s.subcomponent),
            Level::Repetition => self
                .raw
                .iter()
                .any(|&b| b == s.component || Some(b) == s.subcomponent),
            Level::Component => s.subcomponent.is_some_and(|sub| self.raw.contains(&sub)),
            Level::Subcomponent => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    Splitting,
    /// Yields the node itself once (no delimiter at this level).
    Single,
    Done,
}

/// Iterator over the children of a [`Node`], split on one delimiter.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    rest: &'a [u8],
    sep: u8,
    state: ChildState,
    /// The next child's context and location; only `raw` differs per child.
    template: Node<'a>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    #[inline]
    fn next(&mut self) -> Option<Node<'a>> {
        match self.state {
            ChildState::Done => None,
            ChildState::Single => {
                self.state = ChildState::Done;
                Some(self.template)
            }
            ChildState::Splitting => {
                let rest = self.rest;
                let (item, len) = match find_byte(self.sep, rest) {
                    Some(i) => {
                        self.rest = &rest[i + 1..];
                        (&rest[..i], i)
                    }
                    None => {
                        self.state = ChildState::Done;
                        (rest, rest.len())
                    }
                };
                self.template.loc.count_children(1);
                let mut node = self.template;
                node.raw = item;
                self.template.loc.offset = self.template.loc.offset.saturating_add(len as u32 + 1);
                Some(node)
            }
        }
    }

    /// Skips `n` children in one scan for their delimiters, building no node for them:
    /// `component(k)` is called for every component a mapping reads.
    #[inline]
    fn nth(&mut self, n: usize) -> Option<Node<'a>> {
        if n > 0 && self.state == ChildState::Splitting {
            let mut seen = 0;
            let mut skip = None;
            for (i, &b) in self.rest.iter().enumerate() {
                if b == self.sep {
                    seen += 1;
                    if seen == n {
                        skip = Some(i + 1);
                        break;
                    }
                }
            }
            let Some(skip) = skip else {
                self.state = ChildState::Done;
                return None;
            };
            self.rest = &self.rest[skip..];
            let l = &mut self.template.loc;
            l.count_children(u16::try_from(n).unwrap_or(u16::MAX));
            l.offset = l.offset.saturating_add(skip as u32);
        } else if n > 0 {
            self.state = ChildState::Done;
            return None;
        }
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240102030405||ADT^A01^ADT_A01|CTRL1|P|2.5.1\rEVN|A01|20240102\rPID|1||123^^^HOSP^MR~456^^^SSA^SS||DOE^JOHN^Q||19800101|M|||1 MAIN ST^^TOWN^ST^12345\rOBX|1|TX|NOTE||line\\.br\\two||\"\"\r";

    #[test]
    fn plain_text_is_the_decoded_text_of_values_that_need_no_decoding() {
        let parsed = parse(ADT).unwrap();
        assert!(
            parsed.ctx.text.is_none(),
            "a plain parse does not check the whole input"
        );
        assert_eq!(
            parsed.get("PID-5.1").unwrap().unwrap().plain_text(),
            Some("DOE")
        );
        let m = parsed.with_text_checked();
        assert!(m.ctx.text.is_some());
        let node = |path: &str| m.get(path).unwrap().unwrap();
        for path in ["PID-5.1", "PID-3", "MSH-9", "MSH-1", "MSH-2"] {
            assert_eq!(
                node(path).plain_text(),
                Some(&*node(path).decoded()),
                "{path}"
            );
        }
        // An escape sequence, or bytes outside printable ASCII, need decoding.
        assert_eq!(node("OBX-5").plain_text(), None);
        assert_eq!(node("OBX-5").decoded(), "line\ntwo");
        let latin = parse(b"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\rPID|1||1||Zo\xc3\xab\r").unwrap();
        let name = latin.get("PID-5").unwrap().unwrap();
        assert_eq!((name.plain_text(), &*name.decoded()), (None, "Zo\u{eb}"));
        // Input that is not UTF-8 as a whole (Latin-1 bytes): its ASCII values and segment ids
        // are still plain text.
        let latin1 =
            parse(b"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5|||||||8859/1\rPID|1||1||Zo\xeb^ANN\r")
                .unwrap()
                .with_text_checked();
        assert!(latin1.ctx.text.is_none());
        let given = latin1.get("PID-5.2").unwrap().unwrap();
        assert_eq!(given.plain_text(), Some("ANN"));
        assert_eq!(latin1.segment(2).unwrap().id(), "PID");
        assert_eq!(m.segment(3).unwrap().id(), "PID");
        // A value's debug form names its own bytes, not the rest of the message.
        let debug = format!("{:?}", node("PID-5.1"));
        assert!(
            debug.contains("utf8: true") && !debug.contains("19800101"),
            "{debug}"
        );
    }

    #[test]
    fn reads_header_and_values() {
        let m = parse(ADT).unwrap();
        assert_eq!(m.segment_count(), 4);
        assert_eq!(m.message_type(), "ADT^A01");
        assert_eq!(m.message_structure().unwrap(), "ADT_A01");
        assert_eq!(m.control_id().unwrap(), "CTRL1");
        assert_eq!(m.version().unwrap(), "2.5.1");
        assert_eq!(m.get("MSH-1").unwrap().unwrap().raw(), b"|");
        assert_eq!(m.get("MSH-2").unwrap().unwrap().raw(), b"^~\\&");
        assert_eq!(m.get("MSH-2").unwrap().unwrap().components().count(), 1);
        assert_eq!(m.text("PID-3(2).4").unwrap(), "SSA");
        assert_eq!(m.text("PID-5.2").unwrap(), "JOHN");
        assert_eq!(m.text("OBX-5").unwrap(), "line\ntwo");
        assert!(m.get("OBX-7").unwrap().unwrap().is_null());
        assert!(m.get("OBX-6").unwrap().unwrap().is_empty());
        assert!(m.get("OBX-99").unwrap().is_none());
        assert!(m.get("ZZZ-1").unwrap().is_none());
    }

    #[test]
    fn skipping_children_matches_walking_them() {
        let m = parse(b"MSH|^~\\&|A\rPID|1||a^b&c&&d^^e~f^g|x\r").unwrap();
        let pid = m.segment(2).unwrap();
        for field in [pid.field(3).unwrap(), pid.field(4).unwrap()] {
            let nodes = [Some(field), field.repetition(1), field.component(2)];
            for node in nodes.into_iter().flatten() {
                for children in [node.repetitions(), node.components(), node.subcomponents()] {
                    let walked: Vec<Node<'_>> = children.clone().collect();
                    for k in 0..walked.len() + 2 {
                        let skipped = children.clone().nth(k);
                        match (walked.get(k), skipped) {
                            (Some(w), Some(s)) => {
                                assert_eq!(w.raw(), s.raw());
                                assert_eq!(w.position(), s.position());
                                // The iterator goes on from there as a walk does.
                                let mut rest = children.clone();
                                rest.nth(k);
                                assert_eq!(
                                    rest.map(|n| n.position()).collect::<Vec<_>>(),
                                    walked[k + 1..]
                                        .iter()
                                        .map(|n| n.position())
                                        .collect::<Vec<_>>()
                                );
                            }
                            (None, None) => {}
                            (w, s) => panic!("child {k}: walked {w:?}, skipped {s:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn positions_count_like_hl7() {
        let m = parse(ADT).unwrap();
        let n = m.get("PID-3(2).4").unwrap().unwrap();
        let p = n.position();
        assert_eq!(
            (
                p.segment_index,
                p.segment_id_str(),
                p.field,
                p.repetition,
                p.component
            ),
            (3, "PID", 3, 2, 4)
        );
        assert_eq!(&ADT[p.byte..p.byte + 3], b"SSA");
        assert_eq!(p.path(), "PID-3(2).4");
    }

    #[test]
    fn terminators_and_bom() {
        for input in [
            &b"\xEF\xBB\xBFMSH|^~\\&|A\r\nPID|1\r\n"[..],
            b"MSH|^~\\&|A\nPID|1\n",
            b"MSH|^~\\&|A\r\rPID|1",
            b"MSH|^~\\&|A\r\n  \r\nPID|1\r",
        ] {
            let m = parse(input).unwrap();
            assert_eq!(m.segment_count(), 2, "{input:?}");
            assert_eq!(m.text("PID-1").unwrap(), "1");
            assert_eq!(m.text("MSH-3").unwrap(), "A");
        }
    }

    #[test]
    fn parse_errors_are_exact() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no segment found at byte 0"),
            (b"\r\n", "no segment found at byte 2"),
            (
                b"PID|1\r",
                "message does not start with MSH (found \"PID\") at byte 0",
            ),
            (
                b"MSH|^~\\&|A\rPIDX|1\r",
                "invalid segment id \"PIDX\": expected 3 upper-case letters or digits at segment 2, byte 11",
            ),
            (
                b"MSH|^~\\&|A\rPV|1\r",
                "invalid segment id \"PV\": expected 3 upper-case letters or digits at segment 2, byte 11",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap_err().to_string(), *want, "{input:?}");
        }
    }

    #[test]
    fn invalid_utf8_falls_back_or_fails() {
        let latin = b"MSH|^~\\&|A\rPID|1||||M\xfcller\r";
        let m = parse(latin).unwrap();
        assert_eq!(m.text("PID-5").unwrap(), "Müller");
        assert_eq!(m.warnings().len(), 1);
        let strict = ParseOptions {
            leniency: Leniency::Strict,
            charset: None,
        };
        assert_eq!(
            parse_with(latin, strict).unwrap_err().to_string(),
            "invalid UTF-8 text at segment 2 (PID), field 5, byte 21"
        );
        let declared = b"MSH|^~\\&|A|||||||||||||||8859/1\rPID|1||||M\xfcller\r";
        let m = parse_with(declared, strict).unwrap();
        assert_eq!(m.text("PID-5").unwrap(), "Müller");
    }
}
