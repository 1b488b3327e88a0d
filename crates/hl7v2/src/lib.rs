//! Zero-copy HL7 v2 (ER7) for Causeway: parsing, escapes, character sets, paths, files and
//! batches, an editable owned form, ACK building and validation. Pure: no I/O, no async.
//!
//! ```
//! let msg = hl7v2::parse(b"MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101||ORU^R01|C1|P|2.5.1\rPID|1||123^^^HOSP^MR||DOE^JANE\r")?;
//! assert_eq!(msg.message_type(), "ORU^R01");
//! let family = msg.get("PID-5.1")?.map(|n| n.decoded());
//! assert_eq!(family.as_deref(), Some("DOE"));
//! # Ok::<(), hl7v2::Error>(())
//! ```
//!
//! Map:
//! - [`message`]: [`parse`], [`Message`], [`Segment`], [`Node`] (the borrowed, indexed form);
//! - [`separators`], [`charset`], [`escape`]: delimiters, MSH-18, escape sequences;
//! - [`path`]: `PID-3(2).1.2` paths; [`owned`]: [`OwnedMessage`] for edits and encoding;
//! - [`batch`]: files, batches and comments to messages with offsets;
//! - [`ack`]: ACK/NAK building; [`validate`]: checks against the standard and profiles;
//! - [`json`]: the JSON view printed by `causeway parse`.

#![forbid(unsafe_code)]

pub mod ack;
pub mod batch;
pub mod charset;
pub mod error;
pub mod escape;
pub mod json;
pub mod message;
pub mod owned;
pub mod path;
pub mod separators;
pub mod validate;

pub use ack::{
    AckCode, AckCondition, AckError, AckHeader, AckMode, RawHeader, build_ack, build_nak_for_bytes,
    read_raw_header,
};
pub use batch::{RawMessage, split_file};
pub use charset::Charset;
pub use error::{Error, ErrorKind, Position};
pub use escape::Leniency;
pub use message::{Level, Message, Node, ParseOptions, Segment, Warning, parse, parse_with};
pub use owned::{OwnedMessage, OwnedSegment};
pub use path::Path;
pub use separators::Separators;
