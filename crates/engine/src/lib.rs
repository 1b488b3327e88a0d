//! Channels: sources, filters, transforms, destinations, routing, retries and
//! acknowledgements.
//!
//! Map:
//! - [`config`]: `causeway.toml`, parsed then validated (every error at once);
//! - [`filter`], [`transform`]: what a channel does to a message; [`fhir`]: the conversion to the
//!   unified model (FHIR R4) through sender profiles, at ingest and for `format = "fhir"` destinations;
//! - [`runtime`]: builds channels from the config and runs them; the ingest path that
//!   stores a message and only then acknowledges it lives in [`runtime::channel`];
//! - [`sources`]: MLLP listeners (plain or TLS), HTTP POST, directory watchers;
//! - [`destinations`]: MLLP, HTTP and file delivery, each fed by a durable FIFO queue;
//! - [`net`]: MLLP client and server plumbing, TLS configuration;
//! - [`drift`]: each feed's learned profile and the changes from it (drift findings);
//! - [`alerts`]: alert rules evaluated against the monitor, and their notifiers;
//! - [`search_index`]: stored FHIR search values brought up to date when their extraction
//!   changes.
//!
//! Components never write to the store themselves: the runtime's ingest path is the only
//! writer of inbound messages, which makes the ACK promise checkable in one place.

pub mod alerts;
pub mod config;
pub mod destinations;
pub mod drift;
pub mod fhir;
pub mod fhir_query;
pub mod filter;
pub mod monitor;
pub mod net;
pub mod runtime;
pub mod search_index;
pub mod sources;
pub mod subscriptions;
pub mod transform;
