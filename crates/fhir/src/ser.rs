//! Writing FHIR JSON, shared by the generated types: absent and empty elements are left out, as FHIR JSON
//! requires (it has no `null` and no `[]` outside the `_name` arrays of primitive extensions).

use serde::Serialize;
use serde::ser::SerializeMap;

/// Writes a 0..1 element when present.
pub(crate) fn opt<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(value) => map.serialize_entry(key, value),
        None => Ok(()),
    }
}

/// Writes a 0..* element when it has items.
pub(crate) fn vec<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &[T],
) -> Result<(), M::Error> {
    if value.is_empty() {
        Ok(())
    } else {
        map.serialize_entry(key, value)
    }
}
