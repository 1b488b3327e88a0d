//! The crate's error: what was wrong and where in the value.

/// What was wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A date/time was not of the form `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`.
    DateTimeSyntax,
    /// A date/time part was out of range (month 13, minute 60, 30 February...).
    DateTimeRange,
    /// A caller-supplied default zone was not `+HHMM` / `-HHMM`.
    DefaultZone,
    /// A numeric (NM) value was not a number.
    Number,
    /// The message (type, or missing MSH) is not one this crate converts.
    Unsupported,
    /// A sender's code map with the `reject` policy met a code it does not map.
    Rejected,
    /// Write-back (FHIR -> v2): the resource lacks an element the message needs (the message names it,
    /// e.g. `Observation.code`).
    MissingElement,
    /// Write-back: an element's value is not what its FHIR type allows (a dateTime that is not one, a
    /// date that does not exist); the message names the element.
    InvalidElement,
    /// Write-back: a reference the message needs (e.g. `Observation.subject`) names no resource in the
    /// bundle or resolver.
    UnresolvedReference,
    /// Write-back: the v2 message could not be built (a path the writer formed was refused); a bug, not
    /// bad input.
    Build,
}

/// A value or message that could not be converted; `offset` is the byte offset inside the value (0 for
/// message-level errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
    pub message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: usize, message: impl Into<String>) -> Error {
        Error {
            kind,
            offset,
            message: message.into(),
        }
    }
}

/// Value errors name the byte in the value; message-level errors have no position.
impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match self.kind {
            ErrorKind::DateTimeSyntax
            | ErrorKind::DateTimeRange
            | ErrorKind::DefaultZone
            | ErrorKind::Number => write!(f, " at byte {}", self.offset),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Error {}
