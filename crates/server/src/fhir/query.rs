//! The FHIR search grammar lives in the engine ([`causeway_engine::fhir_query`]), shared with
//! subscriptions' criteria; here its refusals become 400 answers.

pub use causeway_engine::fhir_query::{DEFAULT_COUNT, Presentation, Search};

use crate::error::{ApiError, ApiResult};

/// [`causeway_engine::fhir_query::parse`], refusals as 400 with an OperationOutcome.
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> ApiResult<Search> {
    causeway_engine::fhir_query::parse(resource_type, pairs).map_err(|e| ApiError::bad_request(e.0))
}

/// [`causeway_engine::fhir_query::parse_read`], refusals as 400 with an OperationOutcome.
pub fn parse_read(pairs: &[(String, String)]) -> ApiResult<Presentation> {
    causeway_engine::fhir_query::parse_read(pairs).map_err(|e| ApiError::bad_request(e.0))
}
