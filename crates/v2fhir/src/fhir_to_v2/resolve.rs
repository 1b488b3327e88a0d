//! Finding the resources a written resource refers to (its Patient, the requesting Practitioner...).

use fhir::{Bundle, Reference, Resource, TypedResource};

/// Where write-back looks up referenced resources.
///
/// [`Bundle`] implements it (by `fullUrl`, then by `Type/id`); a caller with a store implements it over
/// that. `&[Resource]` and `Vec<Resource>` look up by `Type/id` only.
pub trait Resolve {
    /// The resource `reference` (the text of `Reference.reference`) points to, if known.
    fn resolve(&self, reference: &str) -> Option<&Resource>;
}

/// `(type, id)` of a literal reference: `Type/id`, `Type/id/_history/v`, or an absolute URL ending in
/// one of those.
fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let absolute = reference.starts_with("http://") || reference.starts_with("https://");
    let parts: Vec<&str> = reference.split('/').collect();
    let n = parts.len();
    let history = n >= 4 && parts[n - 2] == "_history" && !parts[n - 1].is_empty();
    let (t, i) = match (history, n) {
        (true, _) if absolute || n == 4 => (parts[n - 4], parts[n - 3]),
        (false, 2) => (parts[0], parts[1]),
        (false, _) if absolute && n >= 2 => (parts[n - 2], parts[n - 1]),
        _ => return None,
    };
    let is_type = t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphanumeric());
    (is_type && !i.is_empty()).then_some((t, i))
}

fn find_by_type_and_id<'a>(
    resources: impl Iterator<Item = &'a Resource>,
    reference: &str,
) -> Option<&'a Resource> {
    let (t, i) = type_and_id(reference)?;
    resources
        .into_iter()
        .find(|r| r.resource_type() == t && r.id() == Some(i))
}

impl Resolve for Bundle {
    fn resolve(&self, reference: &str) -> Option<&Resource> {
        self.entry
            .iter()
            .find(|e| e.full_url.as_deref() == Some(reference))
            .and_then(|e| e.resource.as_ref())
            .or_else(|| find_by_type_and_id(self.resources(), reference))
    }
}

impl Resolve for [Resource] {
    fn resolve(&self, reference: &str) -> Option<&Resource> {
        find_by_type_and_id(self.iter(), reference)
    }
}

impl Resolve for Vec<Resource> {
    fn resolve(&self, reference: &str) -> Option<&Resource> {
        self.as_slice().resolve(reference)
    }
}

/// Looks in `first`, then in `then` (a Bundle written as its main resource, then the caller's resolver).
pub(crate) struct Chain<'a> {
    pub(crate) first: &'a dyn Resolve,
    pub(crate) then: &'a dyn Resolve,
}

impl Resolve for Chain<'_> {
    fn resolve(&self, reference: &str) -> Option<&Resource> {
        self.first
            .resolve(reference)
            .or_else(|| self.then.resolve(reference))
    }
}

/// Resolves nothing: every reference is unresolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReferences;

impl Resolve for NoReferences {
    fn resolve(&self, _reference: &str) -> Option<&Resource> {
        None
    }
}

/// The lookup one write uses: `#id` in the written resource's `contained`, else the resolver.
#[derive(Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub(crate) resolver: &'a dyn Resolve,
    pub(crate) contained: &'a [Resource],
}

impl<'a> Lookup<'a> {
    /// The resource `reference` points to.
    pub(crate) fn resource(&self, reference: &Reference) -> Option<&'a Resource> {
        let text = reference.reference.as_deref()?;
        if let Some(local) = text.strip_prefix('#') {
            return self.contained.iter().find(|r| r.id() == Some(local));
        }
        self.resolver.resolve(text)
    }

    /// The resource `reference` points to, when it is a `T`.
    pub(crate) fn get<T: TypedResource>(&self, reference: &Reference) -> Option<&'a T> {
        self.resource(reference).and_then(T::from_resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(type_and_id("Patient/1"), Some(("Patient", "1")));
        assert_eq!(type_and_id("Patient/1/_history/2"), Some(("Patient", "1")));
        assert_eq!(
            type_and_id("https://x.org/fhir/Patient/1"),
            Some(("Patient", "1"))
        );
        assert_eq!(
            type_and_id("https://x.org/fhir/Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(type_and_id("urn:uuid:1234"), None);
    }
}
