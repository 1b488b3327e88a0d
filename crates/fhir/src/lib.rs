//! FHIR R4 (4.0.1) resources that Causeway emits and accepts, with strict JSON in and out.
//!
//! Map:
//! - `generated/`: one module per resource (the resource and its backbone elements, e.g. [`Observation`],
//!   [`ObservationReferenceRange`], [`ObservationValue`]), the data types they reach under
//!   `generated/datatypes/`, and the [`Resource`] enum. Generated once by `tools/generate.py` from HL7's R4
//!   JSON schema (CC0) and committed; nothing is generated at build time.
//! - [`Decimal`]: a FHIR decimal that keeps its text (`1.50` stays `1.50`).
//! - [`TypedResource`]: generic access by type (`resource.downcast_ref::<Patient>()`).
//! - [`Error`]: kind, JSON path, message, line and column.
//! - helpers: [`Reference::to`], [`CodeableConcept::coding`], [`Identifier::new`], [`Bundle::transaction`],
//!   [`Bundle::push_request`], [`Bundle::resources_of`], [`OperationOutcome::error`], ...
//! - [`search`]: the indexed search parameters per type and their extraction from JSON.
//! - [`from_str`], [`from_slice`], [`from_value`], [`to_string_pretty`], [`to_value`]: serde_json with this
//!   crate's error type. Plain `serde_json` works the same way.
//! - [`to_string`], [`to_vec`]: compact JSON by the crate's own writer ([`WriteJson`], generated with the
//!   types), the same bytes as serde_json writes, in about half the time.
//!
//! The supported resources are [`RESOURCE_TYPES`]. Pure: serde and serde_json only, no I/O.
//!
//! # The Rust shape of FHIR JSON
//! - An element `name` (JSON `camelCase`) is the field `name` (`snake_case`; `type` is `r#type`).
//! - 0..1 is `Option<T>`, 0..* is `Vec<T>` (empty = absent), and a complex element the R4 schema marks as
//!   required is `T` (e.g. [`Observation::code`]). The schema does not state minimum cardinalities of
//!   primitives and choice elements (a required primitive may be sent as `_name` with only an extension, as
//!   FHIR-Converter does for `MessageHeader.source.endpoint`), so those are `Option` and their presence is not
//!   checked.
//! - Primitives: `boolean` is `bool`; `integer` is `i32`; `unsignedInt` and `positiveInt` are `u32`; `decimal`
//!   is [`Decimal`]; every other primitive (string, code, uri, date, dateTime, instant, base64Binary, xhtml...)
//!   is `String`, unvalidated beyond JSON type (the R4 schema's regexes are not applied).
//! - A choice element `value[x]` is one field `value: Option<ObservationValue>`, an enum with one variant per
//!   allowed type, written as `valueQuantity`, `valueString`, ...
//! - Primitive extensions `_name` are `name_ext: Option<Box<Element>>` (`Vec<Option<Element>>` for arrays,
//!   with `null` where an item has none).
//! - Contained resources are `contained: Vec<Resource>`; `Bundle.entry.resource` is `Option<Resource>`.
//!   Serialising a resource struct alone writes its `resourceType` first.
//!
//! # Reading is strict
//! The FHIR API accepts resources from clients, and a field we silently dropped would be data lost while the
//! client was told "created". So reading refuses, with an [`Error`] naming the JSON path:
//! - unknown fields (with a hint when only the case differs: ``did you mean `birthDate`?``);
//! - a field given twice, two variants of one choice element, `null` (except inside `_name` arrays), empty
//!   arrays and empty objects (FHIR JSON forbids them; they would not survive a round trip);
//! - a code outside a required binding the schema enumerates (`Observation.status`, `Bundle.type`, ...);
//! - resource types outside [`RESOURCE_TYPES`] (``unsupported resource type `Person` ``);
//! - `_valueString`-style extensions on the typed value of a choice element (not supported).
//!
//! What is accepted is written back identically, modulo key order and whitespace: the tests round-trip every
//! supported resource of FHIR-Converter's expected bundles and validate the output against the R4 JSON schema.
//! Nesting depth is bounded by serde_json's recursion limit (128 levels), which also bounds `contained` and
//! `Extension` nesting; resources whose `resourceType` is not their first key are re-read from a buffer and
//! may nest [`MAX_REREAD_NESTING`] deep.
//!
//! # Not checked
//! FHIR invariants (FHIRPath constraints), value-set bindings other than the required ones above, primitive
//! formats (dates, ids, URIs), minimum cardinalities of primitives and choice elements, and the FHIR rule that
//! `positiveInt` is at least 1.
//!
//! # Example
//! ```
//! use fhir::{CodeableConcept, Observation, ObservationValue, Quantity, Reference, Resource};
//!
//! let json = r#"{"resourceType":"Observation","status":"final",
//!   "code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},
//!   "valueQuantity":{"value":13.50,"unit":"g/dL"}}"#;
//! let resource: Resource = fhir::from_str(json)?;
//! let obs = resource.downcast_ref::<Observation>().unwrap();
//! assert!(obs.code.has_coding("http://loinc.org", "718-7"));
//! let Some(ObservationValue::Quantity(q)) = &obs.value else { panic!() };
//! assert_eq!(q.value.as_ref().unwrap().as_str(), "13.50");
//!
//! let built = Observation {
//!     status: Some("final".into()),
//!     code: CodeableConcept::coding("http://loinc.org", "718-7", Some("Hemoglobin")),
//!     subject: Some(Reference::to("Patient", "p1")),
//!     ..Default::default()
//! };
//! assert!(fhir::to_string(&built).starts_with(r#"{"resourceType":"Observation","status":"final""#));
//!
//! let err = fhir::from_str::<Resource>(r#"{"resourceType":"Patient","birthdate":"1970"}"#).unwrap_err();
//! assert_eq!(err.to_string(), "unknown field `birthdate` in Patient, did you mean `birthDate`? at line 1 column 37");
//! # Ok::<(), fhir::Error>(())
//! ```

mod de;
mod decimal;
mod error;
mod generated;
mod helpers;
mod resource;
pub mod search;
mod ser;
pub mod ucum;
mod write;

pub use decimal::Decimal;
pub use error::{Error, ErrorKind};
pub use generated::*;
pub use resource::{MAX_REREAD_NESTING, TypedResource};
pub use write::WriteJson;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads a FHIR type (a resource struct, [`Resource`], a data type...) from JSON text.
///
/// # Errors
/// [`ErrorKind::Syntax`] or [`ErrorKind::Eof`] for malformed JSON, [`ErrorKind::Data`] for JSON that is not
/// a valid `T` (see the crate docs for what is refused).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(Error::from)
}

/// Reads a FHIR type from JSON bytes (UTF-8).
///
/// # Errors
/// As [`from_str`]; invalid UTF-8 is a [`ErrorKind::Syntax`] error.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(Error::from)
}

/// Reads a FHIR type from a `serde_json::Value`.
///
/// A `Value` has already turned decimals into `f64` (unless serde_json's `arbitrary_precision` is on), so
/// `1.50` arrives as `1.5`: read from text when precision matters.
///
/// # Errors
/// As [`from_str`], without line and column.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(Error::from)
}

/// Writes a FHIR type as compact JSON: the same text as `serde_json::to_string`, written by the
/// crate's own writer ([`WriteJson`]).
pub fn to_string<T: WriteJson + ?Sized>(value: &T) -> String {
    String::from_utf8(to_vec(value))
        .expect("the writer copies UTF-8 text and writes ASCII around it")
}

/// Writes a FHIR type as indented JSON (through serde_json).
///
/// # Errors
/// Only if a `Serialize` implementation outside this crate fails; the crate's own types always
/// serialise.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(Error::from)
}

/// Writes a FHIR type as compact JSON bytes, as [`to_string`].
pub fn to_vec<T: WriteJson + ?Sized>(value: &T) -> Vec<u8> {
    // Sized from the last value this thread wrote, with room to spare: a stream of bundles (or of
    // one type of resource) is written without regrowing, and nothing is copied. A converted bundle
    // grown from a fixed 4 KiB start was copied three times over.
    thread_local! {
        static LAST_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    // One outsized value does not make every later one start with megabytes.
    const FLOOR: usize = 512;
    const CEILING: usize = 1 << 20;
    let last = LAST_LEN.get();
    let mut out = Vec::with_capacity((last + last / 8).clamp(FLOOR, CEILING));
    value.write_json(&mut out);
    LAST_LEN.set(out.len());
    out
}

/// Converts a FHIR type into a `serde_json::Value` (decimals become `f64` there, see [`from_value`]).
///
/// # Errors
/// As [`to_string_pretty`].
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(Error::from)
}
