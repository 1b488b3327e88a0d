//! An owned, editable message that encodes back to bytes.
//!
//! Each segment keeps its fields as raw (still escaped) bytes and the exact bytes that
//! followed it (its terminator and any blank lines), so an unmodified message encodes back
//! byte for byte: mixed CR/LF/CRLF endings, a BOM, trailing empty fields and all. A segment
//! read from a message stays one run of bytes until something edits it (most segments a
//! transform passes through are never touched); editing a value re-splits only the segment and
//! the field it touches.

use std::borrow::Cow;

use crate::charset::Charset;
use crate::error::{Error, ErrorKind, Position};
use crate::escape::{self, Leniency};
use crate::message::{Context, Level, Loc, Message, Node};
use crate::path::Path;
use crate::separators::Separators;

/// One segment: its id, its fields as written, and what followed it.
#[derive(Debug, Clone)]
pub struct OwnedSegment {
    id: [u8; 3],
    /// The raw fields after the id ("parts") as read, until something edits the segment.
    read: Option<ReadFields>,
    /// The parts once split (empty while `read` holds them). For header segments (MSH, FHS,
    /// BHS) part 0 is MSH-2, so MSH-n for n >= 2 is part `n - 2`; for others, field n is part
    /// `n - 1`.
    split: Vec<Vec<u8>>,
    terminator: Vec<u8>,
}

/// A segment's bytes after its id as read: each part preceded by `sep` (empty: no parts).
#[derive(Debug, Clone)]
struct ReadFields {
    bytes: Vec<u8>,
    sep: u8,
}

impl PartialEq for OwnedSegment {
    /// Equal when id, parts and terminator are, whether or not either was split.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.terminator == other.terminator && self.parts().eq(other.parts())
    }
}

impl Eq for OwnedSegment {}

impl OwnedSegment {
    /// A new segment with raw (already escaped) field values, ended by CR.
    pub fn new(id: &str, fields: Vec<Vec<u8>>) -> Result<Self, Error> {
        let b = id.as_bytes();
        if b.len() != 3
            || !b
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(Error::new(
                ErrorKind::InvalidSegmentId {
                    found: id.to_string(),
                },
                Position::default(),
            ));
        }
        Ok(OwnedSegment {
            id: [b[0], b[1], b[2]],
            read: None,
            split: fields,
            terminator: b"\r".to_vec(),
        })
    }

    /// The parts in order (`split` is empty while `read` holds them, so one side is empty).
    fn parts(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let read = self.read.iter().flat_map(ReadFields::parts);
        read.chain(self.split.iter().map(Vec::as_slice))
    }

    fn part(&self, index: usize) -> Option<&[u8]> {
        match &self.read {
            Some(read) => read.parts().nth(index),
            None => self.split.get(index).map(Vec::as_slice),
        }
    }

    fn part_count(&self) -> usize {
        match &self.read {
            Some(read) => read
                .bytes
                .get(1..)
                .map_or(0, |rest| 1 + memchr::memchr_iter(read.sep, rest).count()),
            None => self.split.len(),
        }
    }

    /// The parts, split first if still as read.
    fn parts_mut(&mut self) -> &mut Vec<Vec<u8>> {
        if let Some(read) = self.read.take() {
            self.split = read.parts().map(<[u8]>::to_vec).collect();
        }
        &mut self.split
    }

    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or("???")
    }

    fn is_header(&self) -> bool {
        matches!(&self.id, b"MSH" | b"FHS" | b"BHS")
    }

    /// Index into `parts` for a 1-based field number; `None` for MSH-1.
    fn part_index(&self, field: usize) -> Option<usize> {
        if self.is_header() {
            field.checked_sub(2)
        } else {
            field.checked_sub(1)
        }
    }

    /// Raw bytes of field `n`, if present.
    pub fn field_raw(&self, n: usize) -> Option<&[u8]> {
        self.part(self.part_index(n)?)
    }

    pub fn field_count(&self) -> usize {
        self.part_count() + usize::from(self.is_header())
    }
}

impl ReadFields {
    fn parts(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let sep = self.sep;
        self.bytes
            .get(1..)
            .into_iter()
            .flat_map(move |rest| rest.split(move |&b| b == sep))
    }
}

/// An owned message: separators, charset and segments.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedMessage {
    /// Bytes before MSH (a BOM, blank lines), kept for byte-exact encoding.
    prefix: Vec<u8>,
    ctx: Context<'static>,
    segments: Vec<OwnedSegment>,
}

impl OwnedMessage {
    /// An empty message that will be written with these separators and charset.
    pub fn new(seps: Separators, charset: Charset) -> Self {
        OwnedMessage {
            prefix: Vec::new(),
            ctx: Context {
                seps,
                charset,
                leniency: Leniency::Lenient,
                text: None,
            },
            segments: Vec::new(),
        }
    }

    pub(crate) fn from_message(msg: &Message<'_>) -> Self {
        let raw = msg.raw();
        let seps = msg.separators();
        let segments = msg
            .spans()
            .map(|(id, start, end, next)| OwnedSegment {
                id,
                read: Some(ReadFields {
                    bytes: raw[start + 3..end].to_vec(),
                    sep: seps.field,
                }),
                split: Vec::new(),
                terminator: raw[end..next].to_vec(),
            })
            .collect();
        OwnedMessage {
            prefix: raw[..msg.body_start()].to_vec(),
            ctx: Context {
                seps,
                charset: msg.charset(),
                leniency: Leniency::Lenient,
                text: None,
            },
            segments,
        }
    }

    pub fn separators(&self) -> Separators {
        self.ctx.seps
    }

    pub fn charset(&self) -> Charset {
        self.ctx.charset
    }

    pub fn segments(&self) -> &[OwnedSegment] {
        &self.segments
    }

    /// Encodes to bytes; an unmodified message gives back its input exactly.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + self.segments.len() * 80);
        out.extend_from_slice(&self.prefix);
        for seg in &self.segments {
            out.extend_from_slice(&seg.id);
            match &seg.read {
                // Copied as read, unless the segment came from a message with another field
                // separator (inserted from there): then part by part, with this message's.
                Some(read) if read.sep == self.ctx.seps.field => {
                    out.extend_from_slice(&read.bytes);
                }
                _ => {
                    for part in seg.parts() {
                        out.push(self.ctx.seps.field);
                        out.extend_from_slice(part);
                    }
                }
            }
            out.extend_from_slice(&seg.terminator);
        }
        out
    }

    fn segment_index(&self, id: [u8; 3], occurrence: usize) -> Option<usize> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.id == id)
            .nth(occurrence.checked_sub(1)?)
            .map(|(i, _)| i)
    }

    /// The value at a path, read like [`Message::get`].
    pub fn get(&self, path: &str) -> Result<Option<Node<'_>>, Error> {
        Ok(self.get_path(&Path::parse(path)?))
    }

    pub fn get_path(&self, path: &Path) -> Option<Node<'_>> {
        let i = self.segment_index(path.segment, path.segment_occurrence)?;
        let seg = &self.segments[i];
        let pos = Position {
            segment_index: i as u32 + 1,
            segment_id: seg.id,
            field: path.field.min(u16::MAX as usize) as u16,
            ..Position::default()
        };
        let loc = Loc::from_position(pos, Level::Field);
        if seg.is_header() && path.field <= 2 {
            // MSH-1 and MSH-2 hold the separators: never split, never unescaped.
            let raw: &[u8] = if path.field == 1 {
                std::slice::from_ref(&self.ctx.seps.field)
            } else {
                seg.part(0)?
            };
            return Some(Node::literal(raw, &self.ctx, loc));
        }
        let raw = seg.field_raw(path.field)?;
        path.select(Node::new(raw, &self.ctx, loc))
    }

    /// Decoded text at a path (`None` when absent).
    pub fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get(path).ok().flatten().map(|n| n.decoded())
    }

    /// Sets the value at `path` to `text`, escaping delimiters. Missing fields, repetitions
    /// and components are created empty; the segment must exist.
    pub fn set(&mut self, path: &str, text: &str) -> Result<(), Error> {
        let path = Path::parse(path)?;
        let raw = escape::encode(text, &self.ctx.seps, self.ctx.charset).into_owned();
        self.set_raw_path(&path, raw)
    }

    /// Sets the value at `path` to bytes written as is (no escaping): for copying raw values
    /// or writing formatting escapes on purpose.
    pub fn set_raw(&mut self, path: &str, raw: &[u8]) -> Result<(), Error> {
        let path = Path::parse(path)?;
        self.set_raw_path(&path, raw.to_vec())
    }

    /// Removes the value at `path` (a no-op when it is absent): it is emptied, and empty
    /// trailing elements at its level are dropped, so deleting `PID-3(2)` leaves no trailing
    /// `~` and deleting the last field leaves no trailing `|`.
    pub fn delete(&mut self, path: &str) -> Result<(), Error> {
        let path = Path::parse(path)?;
        if self.get_path(&path).is_none() {
            return Ok(());
        }
        self.set_raw_path(&path, Vec::new())?;
        self.trim_after_delete(&path);
        Ok(())
    }

    fn trim_after_delete(&mut self, path: &Path) {
        let seps = self.ctx.seps;
        let Some(i) = self.segment_index(path.segment, path.segment_occurrence) else {
            return;
        };
        let seg = &mut self.segments[i];
        let Some(part) = seg.part_index(path.field) else {
            return;
        };
        let min = usize::from(seg.is_header());
        let parts = seg.parts_mut();
        if let Some(field) = parts.get_mut(part) {
            // Innermost first: an emptied subcomponent can empty its component, and so on.
            if path.subcomponent.is_some() {
                let rep_i = path.repetition.unwrap_or(1) - 1;
                let comp_i = path.component.unwrap_or(1) - 1;
                if let Some(sub) = seps.subcomponent {
                    edit_element(field, seps.repetition, rep_i, |rep| {
                        edit_element(rep, seps.component, comp_i, |comp| trim_trailing(comp, sub))
                    });
                }
            }
            if path.component.is_some() {
                let rep_i = path.repetition.unwrap_or(1) - 1;
                edit_element(field, seps.repetition, rep_i, |rep| {
                    trim_trailing(rep, seps.component)
                });
            }
            if path.repetition.is_some() || path.component.is_some() {
                trim_trailing(field, seps.repetition);
            }
        }
        while parts.len() > min && parts.last().is_some_and(Vec::is_empty) {
            parts.pop();
        }
    }

    pub fn set_raw_path(&mut self, path: &Path, raw: Vec<u8>) -> Result<(), Error> {
        let not_settable = |reason: &'static str| {
            Error::new(
                ErrorKind::InvalidPath {
                    path: path.to_string(),
                    reason,
                },
                Position::default(),
            )
        };
        let seps = self.ctx.seps;
        let i = self
            .segment_index(path.segment, path.segment_occurrence)
            .ok_or_else(|| not_settable("the message has no such segment"))?;
        let seg = &mut self.segments[i];
        let part = seg
            .part_index(path.field)
            .filter(|_| !(seg.is_header() && path.field == 2))
            .ok_or_else(|| not_settable("MSH-1 and MSH-2 hold the separators and cannot be set"))?;
        let parts = seg.parts_mut();
        if parts.len() <= part {
            parts.resize(part + 1, Vec::new());
        }
        let field = &mut parts[part];
        if path.repetition.is_none() && path.component.is_none() {
            *field = raw;
            return Ok(());
        }
        let rep_index = path.repetition.unwrap_or(1) - 1;
        let mut reps = split_owned(field, Some(seps.repetition));
        ensure_len(&mut reps, rep_index + 1);
        let rep = &mut reps[rep_index];
        match (path.component, path.subcomponent) {
            (None, _) => *rep = raw,
            (Some(c), sub) => {
                let mut comps = split_owned(rep, Some(seps.component));
                ensure_len(&mut comps, c);
                let comp = &mut comps[c - 1];
                match sub {
                    None => *comp = raw,
                    Some(s) => {
                        let sub_sep = seps.subcomponent.ok_or_else(|| {
                            not_settable("the message has no subcomponent separator")
                        })?;
                        let mut subs = split_owned(comp, Some(sub_sep));
                        ensure_len(&mut subs, s);
                        subs[s - 1] = raw;
                        *comp = subs.join(&sub_sep);
                    }
                }
                *rep = comps.join(&seps.component);
            }
        }
        *field = reps.join(&seps.repetition);
        Ok(())
    }

    /// Inserts a segment at a 0-based position (clamped to the end). The new segment ends
    /// the way its neighbours do (CR, LF or CRLF); appended after a last segment that had no
    /// terminator, it gives that one a terminator and takes the end-of-message position.
    pub fn insert_segment(&mut self, index: usize, mut segment: OwnedSegment) {
        let index = index.min(self.segments.len());
        let ending = self
            .segments
            .iter()
            .map(|s| line_ending(&s.terminator))
            .find(|e| !e.is_empty())
            .unwrap_or(b"\r")
            .to_vec();
        let at_end = index == self.segments.len();
        match self.segments.last_mut() {
            Some(last) if at_end && last.terminator.is_empty() => {
                last.terminator = ending;
                segment.terminator = Vec::new();
            }
            _ => segment.terminator = ending,
        }
        self.segments.insert(index, segment);
    }

    pub fn push_segment(&mut self, segment: OwnedSegment) {
        self.insert_segment(self.segments.len(), segment);
    }

    /// Removes every segment with this id except MSH; returns how many were removed.
    pub fn remove_segments(&mut self, id: &str) -> usize {
        let before = self.segments.len();
        self.segments.retain(|s| s.id() != id || s.id() == "MSH");
        before - self.segments.len()
    }

    /// Renames every segment with id `from` (e.g. a vendor's `ZPI` to `PID`).
    pub fn rename_segments(&mut self, from: &str, to: &str) -> Result<usize, Error> {
        let template = OwnedSegment::new(to, Vec::new())?;
        let mut n = 0;
        for seg in self.segments.iter_mut().filter(|s| s.id() == from) {
            seg.id = template.id;
            n += 1;
        }
        Ok(n)
    }
}

/// The line ending a terminator starts with: CRLF, LF, CR, or nothing.
fn line_ending(terminator: &[u8]) -> &[u8] {
    if terminator.starts_with(b"\r\n") {
        b"\r\n"
    } else if terminator.starts_with(b"\n") {
        b"\n"
    } else if terminator.starts_with(b"\r") {
        b"\r"
    } else {
        b""
    }
}

/// Drops empty elements at the end of `raw` split on `sep` (`a^b^^` becomes `a^b`).
fn trim_trailing(raw: &mut Vec<u8>, sep: u8) {
    while raw.last() == Some(&sep) {
        raw.pop();
    }
}

/// Applies `f` to element `index` of `raw` split on `sep`, if present, and joins it back.
fn edit_element(raw: &mut Vec<u8>, sep: u8, index: usize, f: impl FnOnce(&mut Vec<u8>)) {
    let mut parts = split_owned(raw, Some(sep));
    if let Some(part) = parts.get_mut(index) {
        f(part);
        *raw = parts.join(&sep);
    }
}

fn split_owned(raw: &[u8], sep: Option<u8>) -> Vec<Vec<u8>> {
    match sep {
        Some(s) => raw.split(|&b| b == s).map(<[u8]>::to_vec).collect(),
        None => vec![raw.to_vec()],
    }
}

fn ensure_len(v: &mut Vec<Vec<u8>>, len: usize) {
    if v.len() < len {
        v.resize(len, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use crate::parse;

    #[test]
    fn unmodified_round_trip_is_byte_exact() {
        for input in [
            &b"\xEF\xBB\xBFMSH|^~\\&|A|||\r\nPID|1||||\r\n\r\n"[..],
            b"MSH|^~\\&|A\nPID\nPV1|",
            b"MSH|^~\\&|A\r\nOBX|1\rOBX|2\r\n",
        ] {
            let m = parse(input).unwrap();
            assert_eq!(m.to_owned_message().encode(), input);
        }
    }

    #[test]
    fn edits() {
        let m = parse(b"MSH|^~\\&|A|B\rPID|1||123^^^H^MR||DOE^JOHN\r").unwrap();
        let mut o = m.to_owned_message();
        o.set("PID-5.1", "O'NEIL|SMITH").unwrap();
        o.set("PID-3(2).1", "999").unwrap();
        o.set("PID-3(2).4.2", "X").unwrap();
        o.set("PID-8", "M").unwrap();
        o.set("MSH-3", "NEWAPP").unwrap();
        assert_eq!(
            String::from_utf8(o.encode()).unwrap(),
            "MSH|^~\\&|NEWAPP|B\rPID|1||123^^^H^MR~999^^^&X||O'NEIL\\F\\SMITH^JOHN|||M\r"
        );
        assert_eq!(o.text("PID-5.1").unwrap(), "O'NEIL|SMITH");
        o.delete("PID-8").unwrap();
        assert_eq!(o.field_count_of("PID"), 5);
        assert!(o.set("MSH-2", "x").is_err());
        assert!(o.set("ZZZ-1", "x").is_err());
    }

    #[test]
    fn deletes_leave_no_trailing_separators_and_inserts_follow_line_endings() {
        let m = parse(b"MSH|^~\\&|A\nPID|1||123^^^H^MR~456^^^S^SS||DOE^JOHN^Q\n").unwrap();
        let mut o = m.to_owned_message();
        o.delete("PID-3(2)").unwrap();
        o.delete("PID-5.3").unwrap();
        o.delete("PID-5.2").unwrap();
        o.insert_segment(
            1,
            crate::OwnedSegment::new("EVN", vec![b"A01".to_vec()]).unwrap(),
        );
        o.push_segment(crate::OwnedSegment::new("ZZ1", vec![]).unwrap());
        assert_eq!(
            String::from_utf8(o.encode()).unwrap(),
            "MSH|^~\\&|A\nEVN|A01\nPID|1||123^^^H^MR||DOE\nZZ1\n"
        );
    }

    #[test]
    fn segments_as_read_and_as_split_agree() {
        let input = b"MSH|^~\\&|A|B|||\rPID|1||123^^^H^MR||DOE^JOHN||\rZZ1\rNTE|\r";
        let read = parse(input).unwrap().to_owned_message();
        let mut split = read.clone();
        for seg in &mut split.segments {
            seg.parts_mut();
        }
        assert_eq!(read, split);
        for (r, s) in read.segments().iter().zip(split.segments()) {
            assert!(r.read.is_some() && s.read.is_none());
            assert_eq!(r.field_count(), s.field_count(), "{}", r.id());
            for n in 0..=r.field_count() + 1 {
                assert_eq!(r.field_raw(n), s.field_raw(n), "{}-{n}", r.id());
            }
        }
        assert_eq!(split.encode(), input);
        assert_eq!(read.encode(), input);
    }

    #[test]
    fn a_segment_read_from_another_message_takes_this_messages_field_separator() {
        let pipes = parse(b"MSH|^~\\&|A|B\rNTE|1||note\r")
            .unwrap()
            .to_owned_message();
        let mut hashes = parse(b"MSH#^~\\&#A#B\r").unwrap().to_owned_message();
        hashes.push_segment(pipes.segments()[1].clone());
        assert_eq!(hashes.encode(), b"MSH#^~\\&#A#B\rNTE#1##note\r");
    }

    impl super::OwnedMessage {
        fn field_count_of(&self, id: &str) -> usize {
            self.segments
                .iter()
                .find(|s| s.id() == id)
                .map_or(0, |s| s.field_count())
        }
    }
}
