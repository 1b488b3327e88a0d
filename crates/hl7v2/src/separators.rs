//! Delimiters read from MSH-1 and MSH-2 (or FHS/BHS-1 and -2).
//!
//! HL7 lets every message choose its own delimiters. MSH-1 is the field separator and MSH-2
//! lists, in order, the component separator, the repetition separator, the escape character,
//! the subcomponent separator and (v2.7+) the truncation character. Real feeds send 3, 4 or
//! 5 of them; a 3-character MSH-2 has no subcomponent separator.

use crate::error::{Error, ErrorKind, Position};

/// The delimiters of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Separators {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: u8,
    pub subcomponent: Option<u8>,
    pub truncation: Option<u8>,
}

impl Default for Separators {
    /// The standard `|^~\&`.
    fn default() -> Self {
        Separators {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: Some(b'&'),
            truncation: None,
        }
    }
}

/// True for bytes that can never be a delimiter: segment terminators and, for readability of
/// errors, letters and digits (which would make segment ids ambiguous).
fn unusable(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n' || byte.is_ascii_alphanumeric() || byte == b' '
}

impl Separators {
    /// Reads the separators of a header segment (`MSH`, `FHS` or `BHS`) whose bytes start at
    /// `segment`, where `offset` is that segment's byte offset in the whole buffer.
    ///
    /// Returns the separators and the length of MSH-2 as written (so callers can find MSH-3).
    /// With `lenient`, a character repeated in MSH-2 (a real copy/paste artefact: `^~\\&`) is
    /// dropped rather than rejected.
    pub fn from_header(
        segment: &[u8],
        offset: usize,
        lenient: bool,
    ) -> Result<(Self, usize), Error> {
        let pos = |byte: usize, field: u16| Position {
            byte: offset + byte,
            segment_index: 1,
            segment_id: [segment[0], segment[1], segment[2]],
            field,
            ..Position::default()
        };
        if segment.len() < 4 {
            return Err(Error::new(
                ErrorKind::TruncatedMsh,
                Position::at_byte(offset),
            ));
        }
        let field = segment[3];
        if unusable(field) {
            return Err(Error::new(
                ErrorKind::InvalidFieldSeparator {
                    found: char::from(field).to_string(),
                },
                pos(3, 1),
            ));
        }
        let rest = &segment[4..];
        let msh2_len = memchr::memchr(field, rest).unwrap_or(rest.len());
        let msh2 = &rest[..msh2_len];
        let bad = |reason: &'static str| {
            Error::new(
                ErrorKind::InvalidEncodingCharacters {
                    found: String::from_utf8_lossy(msh2).into_owned(),
                    reason,
                },
                pos(4, 2),
            )
        };
        // At most 5 distinct characters are kept; a sixth is an error below. A fixed array:
        // this runs once per message, and parsing allocates nothing it can avoid.
        let mut chars = [0u8; 6];
        let mut len = 0usize;
        let mut repeated = false;
        for &c in msh2 {
            if unusable(c) {
                return Err(bad(
                    "letters, digits, spaces and line breaks cannot be delimiters",
                ));
            }
            if c == field {
                return Err(bad("an encoding character repeats the field separator"));
            }
            if chars[..len].contains(&c) {
                repeated = true;
                if lenient {
                    continue;
                }
                return Err(bad("encoding characters must be distinct"));
            }
            if len == 5 {
                return Err(bad("expected 3 to 5 encoding characters"));
            }
            chars[len] = c;
            len += 1;
        }
        if len < 3 {
            return Err(bad(if repeated {
                "encoding characters must be distinct"
            } else {
                "expected 3 to 5 encoding characters"
            }));
        }
        Ok((
            Separators {
                field,
                component: chars[0],
                repetition: chars[1],
                escape: chars[2],
                subcomponent: (len > 3).then_some(chars[3]),
                truncation: (len > 4).then_some(chars[4]),
            },
            msh2_len,
        ))
    }

    /// How many characters MSH-2 needs for these separators (3 to 5).
    pub fn encoding_characters_len(&self) -> usize {
        3 + usize::from(self.subcomponent.is_some() || self.truncation.is_some())
            + usize::from(self.truncation.is_some())
    }

    /// MSH-2 as these separators would write it.
    pub fn encoding_characters(&self) -> Vec<u8> {
        let mut out = vec![self.component, self.repetition, self.escape];
        out.extend(self.subcomponent);
        if let Some(t) = self.truncation {
            if self.subcomponent.is_none() {
                out.push(b'&');
            }
            out.push(t);
        }
        out
    }

    /// True when `byte` is any delimiter (not counting segment terminators).
    #[inline]
    pub fn is_delimiter(&self, byte: u8) -> bool {
        byte == self.field
            || byte == self.component
            || byte == self.repetition
            || byte == self.escape
            || Some(byte) == self.subcomponent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str, lenient: bool) -> Result<Separators, String> {
        Separators::from_header(s.as_bytes(), 0, lenient)
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn standard_and_odd_delimiters() {
        assert_eq!(read("MSH|^~\\&|A", false).unwrap(), Separators::default());
        let s = read("MSH#!@%*#X", false).unwrap();
        assert_eq!(
            (s.field, s.component, s.repetition, s.escape, s.subcomponent),
            (b'#', b'!', b'@', b'%', Some(b'*'))
        );
        let s = read("MSH^~|\\&^X", false).unwrap();
        assert_eq!((s.field, s.component, s.repetition), (b'^', b'~', b'|'));
        let s = read("MSH|^~}|X", false).unwrap();
        assert_eq!((s.escape, s.subcomponent), (b'}', None));
        let s = read("MSH|^~\\&#|X", false).unwrap();
        assert_eq!(s.truncation, Some(b'#'));
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "MSH",
                "MSH segment is too short for its separators at byte 0",
            ),
            (
                "MSHA^~\\&",
                "invalid field separator \"A\" in MSH-1 at segment 1 (MSH), field 1, byte 3",
            ),
            (
                "MSH|^~|",
                "invalid encoding characters \"^~\" in MSH-2: expected 3 to 5 encoding characters at segment 1 (MSH), field 2, byte 4",
            ),
            (
                "MSH|&&&&|",
                "invalid encoding characters \"&&&&\" in MSH-2: encoding characters must be distinct at segment 1 (MSH), field 2, byte 4",
            ),
            (
                "MSH|^~\\\\&|",
                "invalid encoding characters \"^~\\\\\\\\&\" in MSH-2: encoding characters must be distinct at segment 1 (MSH), field 2, byte 4",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(read(input, false).unwrap_err(), want, "{input}");
        }
        // Lenient mode drops the duplicated escape character of a pasted `^~\\&`...
        assert_eq!(read("MSH|^~\\\\&|", true).unwrap(), Separators::default());
        // ...but never accepts a header whose characters collapse below three.
        assert!(read("MSH|&&&&|", true).is_err());
    }
}
