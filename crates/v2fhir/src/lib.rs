//! HL7 v2 to FHIR R4 conversion (issue 4): one message -> one transaction bundle, read through the
//! sender's profile.
//!
//! Map:
//! - [`convert`] and [`Conversion`]: the entry point; [`message`] holds the supported types and structures.
//! - [`context::Ctx`]: one conversion's state; [`segments`]: one mapping per segment, grouped by area;
//!   [`entities`]: the resources v2 composite types name (XCN, XON, HD, PL).
//! - [`profile::Profile`]: what one sender means (default authority and zone, code maps); [`codemap`]
//!   applies the maps.
//! - [`ids`]: deterministic resource ids from business identifiers.
//! - The data type layer: [`dtm`], [`date`], [`xpn`], [`xad`], [`xtn`], [`cx`], [`cwe`], [`quantity`], and
//!   the vocabulary tables in `vocab`.
//! - [`Error`]: the crate's one error type, with a kind and a byte offset in the value.
//!
//! Invariants:
//! - Pure: no I/O, no logging (values here are patient data). [`context::Issue`]s name fields, not values.
//! - Empty and explicit-null input: every function returns `None` (or `Ok(None)`) for a value that is empty
//!   or is HL7's `""`. A component that is `""` is treated as empty.
//! - Text is decoded (escapes resolved) and otherwise kept as sent: no trimming or case change, so what the
//!   sender wrote is what FHIR carries.
//! - Deterministic: the same message and profile give the same bundle, byte for byte.

pub mod codemap;
pub mod context;
mod datatypes;
mod dtm;
pub mod entities;
mod error;
pub mod fhir_to_v2;
pub mod fixture;
pub mod ids;
pub mod message;
pub mod profile;
pub mod read;
pub mod segments;
mod vocab;

pub use context::{Coded, Ctx, Issue, IssueKind, Severity};
pub use datatypes::{cwe, cwe_string, cx, quantity, xad, xpn, xpn_called_by, xtn};
pub use dtm::{DateTime, MAX_FRACTION_DIGITS, Precision, date, dtm};
pub use error::{Error, ErrorKind};
pub use message::{Conversion, MESSAGE_CODES, convert};
pub use profile::Profile;
pub use vocab::{
    V2_0203_SYSTEM, address_type, address_use, coding_system_uri, contact_system_and_use,
    contact_use, name_use,
};
