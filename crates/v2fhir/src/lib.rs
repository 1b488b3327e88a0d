//! HL7 v2 to FHIR R4 conversion, the data type layer (issue 4).
//!
//! Map:
//! - [`dtm`], [`date`]: DTM/TS/DT text to FHIR `dateTime` / `date` text, precision kept.
//! - [`xpn`], [`xad`], [`xtn`], [`cx`], [`cwe`], [`quantity`]: one v2 value (a [`hl7v2::Node`] at field or
//!   repetition level) to one FHIR data type, following the HL7 v2-to-FHIR IG's datatype maps.
//! - `vocab`: the v2 tables those maps use (0200, 0190, 0201, 0202, 0203) and the coding-system name to URI
//!   table, each in one place.
//! - [`Error`]: the crate's one error type, with a kind and a byte offset in the value.
//!
//! Invariants:
//! - Pure: no I/O, no logging (values here are patient data).
//! - Empty and explicit-null input: every function returns `None` (or `Ok(None)`) for a value that is empty
//!   or is HL7's `""`. A component that is `""` is treated as empty. "Delete this value" semantics belong to
//!   the caller (an update that must clear a FHIR element), not to a data type mapping.
//! - Functions taking a field node read its first repetition; callers iterate `node.repetitions()` for
//!   repeating fields.
//! - Text is decoded (escapes resolved) and otherwise kept as sent: no trimming or case change, so what the
//!   sender wrote is what FHIR carries.

mod datatypes;
mod dtm;
mod error;
mod vocab;

pub use datatypes::{cwe, cx, quantity, xad, xpn, xtn};
pub use dtm::{DateTime, MAX_FRACTION_DIGITS, Precision, date, dtm};
pub use error::{Error, ErrorKind};
pub use vocab::{
    V2_0203_SYSTEM, address_type, address_use, coding_system_uri, contact_system_and_use,
    contact_use, name_use,
};
