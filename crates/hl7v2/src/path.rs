//! Paths to values: `PID-3(2).1.2`, `OBX(3)-5`, `MSH-9.2`.
//!
//! Grammar: `SEG[(n)]-FIELD[(rep)][.COMPONENT[.SUBCOMPONENT]]`, numbers 1-based; `[n]` is
//! accepted for `(n)`. A bare `SEG` is not a value path. Omitted occurrence and repetition mean
//! the first; a path that names a component of a field reads the first repetition.

use std::fmt;

use crate::error::{Error, ErrorKind, Position};
use crate::message::{Level, Node};

/// A parsed path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    pub segment: [u8; 3],
    /// 1-based occurrence of the segment.
    pub segment_occurrence: usize,
    pub field: usize,
    /// 1-based repetition; `None` selects the whole field.
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

/// Numbers in paths above this are refused: no real message has 10,000 fields.
const MAX_INDEX: usize = 9_999;

impl Path {
    /// Parses `text`; an error's byte is where in `text` the path stops making sense.
    pub fn parse(text: &str) -> Result<Path, Error> {
        let lead = text.len() - text.trim_start().len();
        let b = text.trim().as_bytes();
        // `rest` is always a tail of `b`, so its length tells how far parsing got.
        let bad = |rest: &[u8], reason: &'static str| {
            Error::new(
                ErrorKind::InvalidPath {
                    path: text.to_string(),
                    reason,
                },
                Position::at_byte(lead + b.len() - rest.len()),
            )
        };
        if b.len() < 3
            || !b[..3]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(bad(b, "expected a 3-character segment id"));
        }
        let segment = [b[0], b[1], b[2]];
        let mut rest = &b[3..];
        let mut segment_occurrence = 1;
        if let Some((n, tail)) = bracketed(rest).map_err(|(at, why)| bad(at, why))? {
            segment_occurrence = n;
            rest = tail;
        }
        let Some((b'-', tail)) = rest.split_first() else {
            return Err(bad(
                rest,
                "expected '-' and a field number after the segment",
            ));
        };
        let (field, tail) = number(tail).ok_or_else(|| bad(tail, "expected a field number"))?;
        rest = tail;
        let mut repetition = None;
        if let Some((n, tail)) = bracketed(rest).map_err(|(at, why)| bad(at, why))? {
            repetition = Some(n);
            rest = tail;
        }
        let mut component = None;
        let mut subcomponent = None;
        if let Some((b'.', tail)) = rest.split_first() {
            let (n, tail) = number(tail).ok_or_else(|| bad(tail, "expected a component number"))?;
            component = Some(n);
            rest = tail;
            if let Some((b'.', tail)) = rest.split_first() {
                let (n, tail) =
                    number(tail).ok_or_else(|| bad(tail, "expected a subcomponent number"))?;
                subcomponent = Some(n);
                rest = tail;
            }
        }
        if !rest.is_empty() {
            return Err(bad(rest, "unexpected text after the path"));
        }
        Ok(Path {
            segment,
            segment_occurrence,
            field,
            repetition,
            component,
            subcomponent,
        })
    }

    pub fn segment_str(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }

    /// The level of the value this path names.
    pub fn level(&self) -> Level {
        match (self.repetition, self.component, self.subcomponent) {
            (_, _, Some(_)) => Level::Subcomponent,
            (_, Some(_), None) => Level::Component,
            (Some(_), None, None) => Level::Repetition,
            (None, None, None) => Level::Field,
        }
    }

    /// From a field node, the node this path names below it.
    pub fn select<'a>(&self, field: Node<'a>) -> Option<Node<'a>> {
        let mut node = field;
        if self.repetition.is_some() || self.component.is_some() {
            node = node.repetition(self.repetition.unwrap_or(1))?;
        }
        if let Some(c) = self.component {
            node = node.component(c)?;
        }
        if let Some(s) = self.subcomponent {
            node = node.subcomponent(s)?;
        }
        Some(node)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.segment_str())?;
        if self.segment_occurrence != 1 {
            write!(f, "({})", self.segment_occurrence)?;
        }
        write!(f, "-{}", self.field)?;
        if let Some(r) = self.repetition {
            write!(f, "({r})")?;
        }
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Path {
    type Err = Error;
    fn from_str(s: &str) -> Result<Path, Error> {
        Path::parse(s)
    }
}

fn number(b: &[u8]) -> Option<(usize, &[u8])> {
    let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if len == 0 || len > 4 {
        return None;
    }
    let n: usize = std::str::from_utf8(&b[..len]).ok()?.parse().ok()?;
    (1..=MAX_INDEX).contains(&n).then_some((n, &b[len..]))
}

/// The number and the rest of the text, or where and why a bracket is wrong.
type Bracketed<'a> = Result<Option<(usize, &'a [u8])>, (&'a [u8], &'static str)>;

/// `(n)` or `[n]` at the start of `b`; an error carries the text where it went wrong.
fn bracketed(b: &[u8]) -> Bracketed<'_> {
    let close = match b.first() {
        Some(b'(') => b')',
        Some(b'[') => b']',
        _ => return Ok(None),
    };
    let (n, tail) =
        number(&b[1..]).ok_or((&b[1..], "expected a number from 1 to 9999 in brackets"))?;
    match tail.split_first() {
        Some((c, tail)) if *c == close => Ok(Some((n, tail))),
        _ => Err((tail, "unclosed bracket")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, shown) in [
            ("PID-3(2).1.2", "PID-3(2).1.2"),
            ("OBX(3)-5", "OBX(3)-5"),
            ("MSH-9.2", "MSH-9.2"),
            ("PID[2]-3[1]", "PID(2)-3(1)"),
            ("ZP1-1", "ZP1-1"),
        ] {
            assert_eq!(Path::parse(text).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn errors_are_exact() {
        for (text, want) in [
            (
                "PI",
                "invalid path \"PI\": expected a 3-character segment id at byte 0",
            ),
            (
                "PID",
                "invalid path \"PID\": expected '-' and a field number after the segment at byte 3",
            ),
            (
                "PID-",
                "invalid path \"PID-\": expected a field number at byte 4",
            ),
            (
                "PID-0",
                "invalid path \"PID-0\": expected a field number at byte 4",
            ),
            (
                "PID-3(2",
                "invalid path \"PID-3(2\": unclosed bracket at byte 7",
            ),
            (
                "PID-3.x",
                "invalid path \"PID-3.x\": expected a component number at byte 6",
            ),
            (
                "PID-3.1.2.3",
                "invalid path \"PID-3.1.2.3\": unexpected text after the path at byte 9",
            ),
            (
                " PID-3(x)",
                "invalid path \" PID-3(x)\": expected a number from 1 to 9999 in brackets at byte 7",
            ),
            (
                "pid-3",
                "invalid path \"pid-3\": expected a 3-character segment id at byte 0",
            ),
        ] {
            assert_eq!(Path::parse(text).unwrap_err().to_string(), want);
        }
    }
}
