//! The message being written: an [`OwnedMessage`] plus the segment the next values go into.
//!
//! Every value goes through [`OwnedMessage::set`], which escapes the separators (`|` `^` `~` `\` `&`) and
//! line breaks in text, so FHIR text never changes the message's structure. Empty values are not
//! written (no `""` nulls: write-back sends what it knows, it does not clear what the EHR has).

use hl7v2::{Charset, OwnedMessage, OwnedSegment, Separators};

use super::Hd;
use crate::error::{Error, ErrorKind};

/// A message under construction; values are written into the last segment begun.
pub(crate) struct Writer {
    msg: OwnedMessage,
    /// How many segments of each id have been begun (for `OBX(3)` paths).
    counts: Vec<(String, usize)>,
    /// The current segment as a path prefix, e.g. `OBX(2)`.
    current: String,
    /// The version is 2.7 or later (fields that exist only from 2.7 on are written).
    pub(crate) v27: bool,
}

fn build_error(e: &hl7v2::Error) -> Error {
    Error::new(ErrorKind::Build, 0, format!("building the v2 message: {e}"))
}

impl Writer {
    /// A message with only `MSH|^~\&` in it; the caller fills MSH with [`Writer::put`].
    pub(crate) fn new(version: &str) -> Result<Writer, Error> {
        let mut msg = OwnedMessage::new(Separators::default(), Charset::Utf8);
        let seps = Separators::default();
        let msh = OwnedSegment::new("MSH", vec![seps.encoding_characters()])
            .map_err(|e| build_error(&e))?;
        msg.push_segment(msh);
        Ok(Writer {
            msg,
            counts: vec![("MSH".into(), 1)],
            current: "MSH(1)".into(),
            v27: version_at_least(version, 2, 7),
        })
    }

    /// Begins a new segment `id`; the following [`Writer::put`]s go into it.
    pub(crate) fn segment(&mut self, id: &str) -> Result<(), Error> {
        let seg = OwnedSegment::new(id, Vec::new()).map_err(|e| build_error(&e))?;
        self.msg.push_segment(seg);
        let n = match self.counts.iter_mut().find(|(s, _)| s == id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.counts.push((id.to_owned(), 1));
                1
            }
        };
        self.current = format!("{id}({n})");
        Ok(())
    }

    /// How many `id` segments have been begun so far.
    pub(crate) fn count(&self, id: &str) -> usize {
        self.counts
            .iter()
            .find(|(s, _)| s == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Writes `text` at `path` in the current segment (`5`, `3(2).4.2`), escaped; empty text is skipped.
    pub(crate) fn put(&mut self, path: &str, text: &str) -> Result<(), Error> {
        if text.is_empty() {
            return Ok(());
        }
        let full = format!("{}-{path}", self.current);
        self.msg.set(&full, text).map_err(|e| build_error(&e))
    }

    /// True when field `field` of the current segment already holds a value.
    pub(crate) fn has_value(&self, field: &str) -> bool {
        self.msg
            .text(&format!("{}-{field}", self.current))
            .is_some_and(|t| !t.is_empty())
    }

    /// [`Writer::put`] for an optional value.
    pub(crate) fn put_opt(&mut self, path: &str, text: Option<&str>) -> Result<(), Error> {
        match text {
            Some(t) => self.put(path, t),
            None => Ok(()),
        }
    }

    /// Writes an HD into `path` (a field: parts are components) or, with `sub`, into a component (parts
    /// are subcomponents).
    pub(crate) fn put_hd(&mut self, path: &str, hd: &Hd) -> Result<(), Error> {
        self.put_opt(&format!("{path}.1"), hd.namespace_id.as_deref())?;
        self.put_opt(&format!("{path}.2"), hd.universal_id.as_deref())?;
        self.put_opt(&format!("{path}.3"), hd.universal_id_type.as_deref())
    }

    /// The finished message; MSH-18 names UTF-8 when some text is outside ASCII (ASCII is the default
    /// character set, so an all-ASCII message leaves MSH-18 empty).
    pub(crate) fn finish(mut self) -> Result<OwnedMessage, Error> {
        if !self.msg.encode().is_ascii() {
            self.msg
                .set("MSH-18", "UNICODE UTF-8")
                .map_err(|e| build_error(&e))?;
        }
        Ok(self.msg)
    }
}

/// True when `version` (`2.5.1`, `2.8`) is at least `major.minor`; unreadable versions count as old.
pub(crate) fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        (Some(a), None) => a > major,
        _ => false,
    }
}
