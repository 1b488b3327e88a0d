//! The crate's one error type: a kind and the byte offset where the broken construct starts.

use std::fmt;

/// What went wrong with the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The payload grew past the limit without an end block.
    FrameTooLarge { max: usize },
    /// The stream ended inside a frame, `payload_len` bytes after its VT.
    UnexpectedEof { payload_len: usize },
    /// A payload handed to the encoder contains VT or FS, so its frame would not decode back.
    DelimiterInPayload { byte: u8 },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::FrameTooLarge { max } => {
                write!(f, "frame too large: more than {max} bytes")
            }
            ErrorKind::UnexpectedEof { payload_len } => write!(
                f,
                "stream ended inside a frame after {payload_len} payload bytes"
            ),
            ErrorKind::DelimiterInPayload { byte } => {
                let name = if *byte == crate::VT {
                    "start-block"
                } else {
                    "end-block"
                };
                write!(f, "payload contains the {name} byte 0x{byte:02x}")
            }
        }
    }
}

/// An MLLP error.
///
/// Offsets are 0-based byte positions: for decoding, of the VT that started the broken frame,
/// counted from the start of the slice ([`decode`](crate::decode)) or of the stream
/// ([`Decoder`](crate::Decoder)); for encoding, of the bad byte within the payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed framing or a limit hit.
    #[error("{kind} at byte {offset}")]
    Frame { kind: ErrorKind, offset: u64 },
    /// Reading or writing the socket failed (the codec traits require this variant).
    #[cfg(feature = "tokio")]
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn frame(kind: ErrorKind, offset: u64) -> Self {
        Error::Frame { kind, offset }
    }

    /// The framing problem, or `None` for an I/O error.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            Error::Frame { kind, .. } => Some(kind),
            #[cfg(feature = "tokio")]
            Error::Io(_) => None,
        }
    }

    /// Where the problem starts, or `None` for an I/O error.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Frame { offset, .. } => Some(*offset),
            #[cfg(feature = "tokio")]
            Error::Io(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_positioned() {
        let cases = [
            (
                ErrorKind::FrameTooLarge { max: 16_777_216 },
                0,
                "frame too large: more than 16777216 bytes at byte 0",
            ),
            (
                ErrorKind::UnexpectedEof { payload_len: 3 },
                9,
                "stream ended inside a frame after 3 payload bytes at byte 9",
            ),
            (
                ErrorKind::DelimiterInPayload { byte: crate::VT },
                4,
                "payload contains the start-block byte 0x0b at byte 4",
            ),
            (
                ErrorKind::DelimiterInPayload { byte: crate::FS },
                5,
                "payload contains the end-block byte 0x1c at byte 5",
            ),
        ];
        for (kind, offset, text) in cases {
            let err = Error::frame(kind.clone(), offset);
            assert_eq!(err.to_string(), text);
            assert_eq!(err.kind(), Some(&kind));
            assert_eq!(err.offset(), Some(offset));
        }
    }
}
