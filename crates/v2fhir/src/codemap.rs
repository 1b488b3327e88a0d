//! Applying a sender's code maps to one coded value (see [`crate::profile`] for the maps themselves).

use fhir::CodeableConcept;

use crate::context::{Coded, Ctx};

/// Runs `concept`, read at `at` (`AL1-3`), through the profile's maps for that field.
pub(crate) fn apply(_ctx: &mut Ctx<'_>, concept: CodeableConcept, _at: &str) -> Coded {
    Coded::Concept(concept)
}
