//! FHIR R4 -> HL7 v2 (write-back to an EHR): one resource, with the resources it refers to, -> one
//! message.
//!
//! Map:
//! - [`to_v2`] / [`to_v2_with`]: the entry points; [`WriteOptions`] is what the caller decides (MSH
//!   header values, control id, timestamp, version, trigger event).
//! - What is written: ServiceRequest -> ORM^O01 or OML^O21 ([`OrderStructure`]); DiagnosticReport (with
//!   its result Observations) and Observation -> ORU^R01; Patient -> ADT^A04 / A08 / A31; Appointment ->
//!   SIU^S12 / S14 / S15 / S17 / S26; Immunization -> VXU^V04. A Bundle is written as its main resource
//!   (see [`to_v2`]). The segments are in `segments`, the messages in `messages`.
//! - [`Resolve`]: how references are looked up (a [`fhir::Bundle`], a slice, or the caller's store).
//! - The data types (`types`: DTM, CX, EI, XPN, XAD, XTN, CWE, XCN, PL) and the reverse vocabulary
//!   (`vocab`: [`coding_system_name`] and the tables read backwards).
//!
//! References: the one a message cannot do without (the Patient of an Observation, ServiceRequest,
//! DiagnosticReport, Immunization or Appointment; a DiagnosticReport's results) must resolve, else
//! [`ErrorKind::UnresolvedReference`] naming the element (`Observation.subject`). A reference that is not
//! resolved but carries a logical `identifier` still gives that identifier (PID-3 for a patient, XCN.1
//! for a practitioner). Any other unresolved reference (encounter, requester, performer, location) leaves
//! its fields empty: the message is still right, only less complete.
//!
//! Invariants:
//! - Pure: no I/O, no clock (the caller passes MSH-7), no logging. Errors name FHIR elements, never values.
//! - Every text value is escaped ([`hl7v2::OwnedMessage::set`]); nothing a resource holds can add a
//!   field, component or segment.
//! - Empty FHIR elements are not written, and nothing is written as `""` (write-back does not clear
//!   what the EHR holds).
//! - Deterministic: the same resource, context and options give the same bytes.
//!
//! [`ErrorKind::UnresolvedReference`]: crate::ErrorKind::UnresolvedReference

mod messages;
mod resolve;
mod segments;
mod types;
mod vocab;
mod writer;

use fhir::{Bundle, Resource};
use hl7v2::OwnedMessage;

use crate::error::{Error, ErrorKind};
use crate::profile::Profile;

pub use resolve::{NoReferences, Resolve};
pub use types::{authority, dtm, tm};
pub use vocab::coding_system_name;

type Result<T> = std::result::Result<T, Error>;

/// A hierarchic designator (HD): an application or facility in MSH-3..6, or an assigning authority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hd {
    /// HD.1, e.g. `LAB`.
    pub namespace_id: Option<String>,
    /// HD.2, e.g. an OID.
    pub universal_id: Option<String>,
    /// HD.3, e.g. `ISO`.
    pub universal_id_type: Option<String>,
}

impl Hd {
    /// An HD with a namespace id only.
    pub fn named(namespace_id: impl Into<String>) -> Hd {
        Hd {
            namespace_id: Some(namespace_id.into()),
            ..Hd::default()
        }
    }
}

/// Which message a ServiceRequest is written as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderStructure {
    /// ORM^O01 (general order, up to v2.5; timing in ORC-7).
    #[default]
    Orm,
    /// OML^O21 (laboratory order, v2.5 on; timing in TQ1).
    Oml,
}

/// What the caller decides about the message (the resource decides the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// MSH-3.
    pub sending_application: Hd,
    /// MSH-4.
    pub sending_facility: Hd,
    /// MSH-5.
    pub receiving_application: Hd,
    /// MSH-6.
    pub receiving_facility: Hd,
    /// MSH-10, required.
    pub control_id: String,
    /// MSH-7 (and EVN-2), a FHIR dateTime or instant (`2024-05-01T10:00:00+02:00`), required: the crate
    /// does not read the clock.
    pub timestamp: String,
    /// MSH-11: `P` (production, the default), `T` (training), `D` (debugging).
    pub processing_id: String,
    /// MSH-12, default `2.5.1`. From 2.7 on, CWE.10-12 and XTN.18 are written too.
    pub version: String,
    /// The trigger event (MSH-9.2) when the caller wants a specific one; `None` takes the resource's
    /// default: `O01`/`O21`, `R01`, `A08` for a Patient (pass `A04` for a new patient, `A31` for person
    /// information only), `V04`, and for an Appointment the event its status implies (`S15` cancelled,
    /// `S26` noshow, `S17` entered-in-error, else `S12`; pass `S14` for a modification).
    pub event: Option<String>,
    /// ORM^O01 or OML^O21 for a ServiceRequest.
    pub order_structure: OrderStructure,
    /// ORC-1 for a ServiceRequest when the caller wants a specific order control code; `None` derives
    /// it from `ServiceRequest.status` (`NW` new, `CA` revoked, `HD` on-hold, `SC` completed).
    pub order_control: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            sending_application: Hd::default(),
            sending_facility: Hd::default(),
            receiving_application: Hd::default(),
            receiving_facility: Hd::default(),
            control_id: String::new(),
            timestamp: String::new(),
            processing_id: "P".to_owned(),
            version: "2.5.1".to_owned(),
            event: None,
            order_structure: OrderStructure::Orm,
            order_control: None,
        }
    }
}

/// Writes `resource` as a v2 message, looking referenced resources up in `bundle_context` (by
/// `fullUrl`, then `Type/id`) and in the resource's `contained` (`#id`).
///
/// A [`Resource::Bundle`] is written as its main resource, the bundle serving as context (before
/// `bundle_context`): the first DiagnosticReport, else ServiceRequest, Immunization, Appointment,
/// Observation, Patient.
///
/// # Errors
/// [`ErrorKind::Unsupported`] for a resource type (or event) not written back, or a value v2 cannot
/// carry (e.g. `Observation.valueSampledData`); [`ErrorKind::MissingElement`] when the resource lacks
/// what the message needs (`Observation.code`, `WriteOptions.control_id`...);
/// [`ErrorKind::UnresolvedReference`] for a required reference not found;
/// [`ErrorKind::InvalidElement`] for a date the resource holds that is not a FHIR dateTime or does not exist.
pub fn to_v2(
    resource: &Resource,
    bundle_context: Option<&Bundle>,
    options: &WriteOptions,
    profile: &Profile,
) -> Result<OwnedMessage> {
    match bundle_context {
        Some(b) => to_v2_with(resource, b, options, profile),
        None => to_v2_with(resource, &NoReferences, options, profile),
    }
}

/// [`to_v2`] with the caller's own [`Resolve`] (e.g. over its FHIR store).
///
/// # Errors
/// As [`to_v2`].
pub fn to_v2_with(
    resource: &Resource,
    resolver: &dyn Resolve,
    options: &WriteOptions,
    profile: &Profile,
) -> Result<OwnedMessage> {
    if let Resource::Bundle(bundle) = resource {
        let main = main_resource(bundle).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                0,
                "Bundle.entry holds no resource that is written back",
            )
        })?;
        let chain = resolve::Chain {
            first: &**bundle,
            then: resolver,
        };
        return messages::write(main, &chain, options, profile);
    }
    messages::write(resource, resolver, options, profile)
}

/// The resource types written back, in the order a Bundle's main resource is chosen.
pub const WRITTEN_TYPES: [&str; 6] = [
    "DiagnosticReport",
    "ServiceRequest",
    "Immunization",
    "Appointment",
    "Observation",
    "Patient",
];

fn main_resource(bundle: &Bundle) -> Option<&Resource> {
    WRITTEN_TYPES
        .iter()
        .find_map(|t| bundle.resources().find(|r| r.resource_type() == *t))
}
