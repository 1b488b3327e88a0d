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
}

/// A value or message that could not be converted; `offset` is the byte offset inside the value (0 for
/// message-level errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
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
