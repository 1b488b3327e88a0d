//! The crate's one error type: a kind and a position.
//!
//! Positions count the way HL7 does: segments, fields, repetitions, components and
//! subcomponents are 1-based, and 0 means "not applicable". Byte offsets are 0-based
//! from the start of the buffer handed to the parser.

use std::fmt;

/// Where something is in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset from the start of the parsed buffer.
    pub byte: usize,
    /// 1-based index of the segment in the message (0: before any segment).
    pub segment_index: u32,
    /// Segment id, e.g. `*b"PID"` (zeros when unknown).
    pub segment_id: [u8; 3],
    /// 1-based field number (MSH-1 is the field separator).
    pub field: u16,
    pub repetition: u16,
    pub component: u16,
    pub subcomponent: u16,
}

impl Position {
    /// A position that only knows its byte offset.
    pub fn at_byte(byte: usize) -> Self {
        Position {
            byte,
            ..Position::default()
        }
    }

    /// The segment id as text (empty when unknown).
    pub fn segment_id_str(&self) -> &str {
        if self.segment_id == [0; 3] {
            ""
        } else {
            std::str::from_utf8(&self.segment_id).unwrap_or("???")
        }
    }

    /// HL7 location in path form, e.g. `PID-3(2).1.2`, or `PID` / `` when not within a field.
    pub fn path(&self) -> String {
        let mut out = String::new();
        if self.segment_index == 0 {
            return out;
        }
        out.push_str(self.segment_id_str());
        if self.field > 0 {
            out.push('-');
            out.push_str(&self.field.to_string());
            if self.repetition > 1 {
                out.push_str(&format!("({})", self.repetition));
            }
            if self.component > 0 {
                out.push_str(&format!(".{}", self.component));
                if self.subcomponent > 0 {
                    out.push_str(&format!(".{}", self.subcomponent));
                }
            }
        }
        out
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment_index > 0 {
            write!(f, "segment {}", self.segment_index)?;
            if self.segment_id != [0; 3] {
                write!(f, " ({})", self.segment_id_str())?;
            }
            if self.field > 0 {
                write!(f, ", field {}", self.field)?;
            }
            if self.repetition > 1 {
                write!(f, ", repetition {}", self.repetition)?;
            }
            if self.component > 0 {
                write!(f, ", component {}", self.component)?;
            }
            if self.subcomponent > 0 {
                write!(f, ", subcomponent {}", self.subcomponent)?;
            }
            write!(f, ", byte {}", self.byte)
        } else {
            write!(f, "byte {}", self.byte)
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input holds no segment at all.
    Empty,
    /// The first segment is not MSH (nor FHS/BHS for a batch header).
    MissingMsh { found: String },
    /// MSH is too short to carry its separators.
    TruncatedMsh,
    /// MSH-1 is a character that cannot be a separator.
    InvalidFieldSeparator { found: String },
    /// MSH-2 is not 3 to 5 usable encoding characters.
    InvalidEncodingCharacters { found: String, reason: &'static str },
    /// A segment id that is not three upper-case letters or digits.
    InvalidSegmentId { found: String },
    /// An escape sequence this parser does not know, e.g. `\Q\`.
    UnknownEscape { sequence: String },
    /// An escape character with no closing escape character.
    UnterminatedEscape,
    /// `\X..\` with an odd number of digits or a non-hex digit.
    InvalidHexEscape { sequence: String },
    /// Bytes that are not valid in the message's character set.
    InvalidText { charset: &'static str },
    /// MSH-18 names a character set this parser cannot decode.
    UnsupportedCharset { name: String },
    /// A path such as `PID-3(2).1` that does not parse.
    InvalidPath { path: String, reason: &'static str },
    /// A number in the input does not fit the parser's limits.
    TooLarge { what: &'static str, limit: usize },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => write!(f, "no segment found"),
            ErrorKind::MissingMsh { found } => {
                write!(f, "message does not start with MSH (found {found:?})")
            }
            ErrorKind::TruncatedMsh => write!(f, "MSH segment is too short for its separators"),
            ErrorKind::InvalidFieldSeparator { found } => {
                write!(f, "invalid field separator {found:?} in MSH-1")
            }
            ErrorKind::InvalidEncodingCharacters { found, reason } => {
                write!(
                    f,
                    "invalid encoding characters {found:?} in MSH-2: {reason}"
                )
            }
            ErrorKind::InvalidSegmentId { found } => write!(
                f,
                "invalid segment id {found:?}: expected 3 upper-case letters or digits"
            ),
            ErrorKind::UnknownEscape { sequence } => {
                write!(f, "unknown escape sequence {sequence}")
            }
            ErrorKind::UnterminatedEscape => write!(f, "unterminated escape sequence"),
            ErrorKind::InvalidHexEscape { sequence } => {
                write!(f, "invalid hexadecimal escape sequence {sequence}")
            }
            ErrorKind::InvalidText { charset } => write!(f, "invalid {charset} text"),
            ErrorKind::UnsupportedCharset { name } => {
                write!(f, "unsupported character set {name:?} in MSH-18")
            }
            ErrorKind::InvalidPath { path, reason } => {
                write!(f, "invalid path {path:?}: {reason}")
            }
            ErrorKind::TooLarge { what, limit } => {
                write!(f, "too many {what} (limit {limit})")
            }
        }
    }
}

/// An error with the position where the broken construct starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at {position}")]
pub struct Error {
    pub kind: ErrorKind,
    pub position: Position,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, position: Position) -> Self {
        Error { kind, position }
    }

    /// The HL7 table 0357 code an ACK should carry in ERR-3 for this error.
    pub fn err3_code(&self) -> u16 {
        match self.kind {
            ErrorKind::Empty
            | ErrorKind::MissingMsh { .. }
            | ErrorKind::TruncatedMsh
            | ErrorKind::InvalidSegmentId { .. } => 100,
            ErrorKind::InvalidFieldSeparator { .. }
            | ErrorKind::InvalidEncodingCharacters { .. }
            | ErrorKind::UnknownEscape { .. }
            | ErrorKind::UnterminatedEscape
            | ErrorKind::InvalidHexEscape { .. }
            | ErrorKind::InvalidText { .. }
            | ErrorKind::UnsupportedCharset { .. } => 102,
            ErrorKind::InvalidPath { .. } | ErrorKind::TooLarge { .. } => 207,
        }
    }
}
