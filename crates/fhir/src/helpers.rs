//! Small constructors and accessors for the types mapping code builds most often.

use crate::{
    Bundle, BundleEntry, BundleRequest, CodeableConcept, Coding, Extension, ExtensionValue,
    Identifier, OperationOutcome, OperationOutcomeIssue, Reference, Resource, TypedResource,
};

impl Reference {
    /// A relative literal reference `resource_type/id`, e.g. `Reference::to("Patient", "123")`.
    pub fn to(resource_type: &str, id: &str) -> Reference {
        Reference {
            reference: Some(format!("{resource_type}/{id}")),
            ..Default::default()
        }
    }

    /// The same reference with a `display` text.
    #[must_use]
    pub fn with_display(mut self, display: impl Into<String>) -> Reference {
        self.display = Some(display.into());
        self
    }

    /// `(type, id)` of a relative literal reference `Type/id` (also `Type/id/_history/version`); `None` for
    /// absolute URLs, `urn:uuid:`, fragments (`#x`) and references without `reference`.
    pub fn target(&self) -> Option<(&str, &str)> {
        let reference = self.reference.as_deref()?;
        let mut parts = reference.split('/');
        let resource_type = parts.next()?;
        let id = parts.next()?;
        let well_formed = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => true,
            (Some("_history"), Some(version), None) => !version.is_empty(),
            _ => false,
        };
        let is_type = resource_type
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && resource_type.chars().all(|c| c.is_ascii_alphanumeric());
        (well_formed && is_type && !id.is_empty()).then_some((resource_type, id))
    }
}

impl Coding {
    /// A coding with a system, a code and optionally a display text.
    pub fn new(
        system: impl Into<String>,
        code: impl Into<String>,
        display: Option<&str>,
    ) -> Coding {
        Coding {
            system: Some(system.into()),
            code: Some(code.into()),
            display: display.map(str::to_owned),
            ..Default::default()
        }
    }
}

impl CodeableConcept {
    /// A concept with one coding, e.g. `CodeableConcept::coding("http://loinc.org", "718-7", Some("Hemoglobin"))`.
    pub fn coding(
        system: impl Into<String>,
        code: impl Into<String>,
        display: Option<&str>,
    ) -> CodeableConcept {
        CodeableConcept {
            coding: vec![Coding::new(system, code, display)],
            ..Default::default()
        }
    }

    /// A concept with text only (no coding).
    pub fn text(text: impl Into<String>) -> CodeableConcept {
        CodeableConcept {
            text: Some(text.into()),
            ..Default::default()
        }
    }

    /// The code of the first coding from `system`.
    pub fn code_in(&self, system: &str) -> Option<&str> {
        self.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(system))
            .and_then(|c| c.code.as_deref())
    }

    /// True when a coding has this system and code.
    pub fn has_coding(&self, system: &str, code: &str) -> bool {
        self.coding
            .iter()
            .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
    }
}

impl Identifier {
    /// An identifier with a system and a value.
    pub fn new(system: impl Into<String>, value: impl Into<String>) -> Identifier {
        Identifier {
            system: Some(system.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

impl Extension {
    /// An extension with a URL and a value.
    pub fn new(url: impl Into<String>, value: ExtensionValue) -> Extension {
        Extension {
            url: Some(url.into()),
            value: Some(value),
            ..Default::default()
        }
    }
}

impl BundleRequest {
    /// A request for a transaction or batch entry, e.g. `BundleRequest::new("PUT", "Patient/123")`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> BundleRequest {
        BundleRequest {
            method: Some(method.into()),
            url: Some(url.into()),
            ..Default::default()
        }
    }
}

impl Bundle {
    /// An empty bundle of the given `type` (`transaction`, `batch`, `collection`, `message`, `searchset`, ...).
    pub fn of_type(bundle_type: &str) -> Bundle {
        Bundle {
            r#type: Some(bundle_type.to_owned()),
            ..Default::default()
        }
    }

    /// An empty `transaction` bundle.
    pub fn transaction() -> Bundle {
        Bundle::of_type("transaction")
    }

    /// An empty `batch` bundle.
    pub fn batch() -> Bundle {
        Bundle::of_type("batch")
    }

    /// An empty `collection` bundle.
    pub fn collection() -> Bundle {
        Bundle::of_type("collection")
    }

    /// An empty `message` bundle (its first entry must be the `MessageHeader`).
    pub fn message() -> Bundle {
        Bundle::of_type("message")
    }

    /// Appends an entry holding `resource`, with an optional `fullUrl`, and returns it so that the caller can
    /// add a `request`.
    pub fn push(
        &mut self,
        resource: impl Into<Resource>,
        full_url: Option<String>,
    ) -> &mut BundleEntry {
        self.entry.push(BundleEntry {
            full_url,
            resource: Some(resource.into()),
            ..Default::default()
        });
        let last = self.entry.len() - 1;
        &mut self.entry[last]
    }

    /// Appends a transaction/batch entry: `resource` with `fullUrl` and a request `method url`.
    pub fn push_request(
        &mut self,
        resource: impl Into<Resource>,
        full_url: Option<String>,
        method: &str,
        url: &str,
    ) -> &mut BundleEntry {
        let entry = self.push(resource, full_url);
        entry.request = Some(BundleRequest::new(method, url));
        entry
    }

    /// The resources of the entries, in order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entry.iter().filter_map(|e| e.resource.as_ref())
    }

    /// The resources of type `T`, in order: `bundle.resources_of::<Observation>()`.
    pub fn resources_of<T: TypedResource>(&self) -> impl Iterator<Item = &T> {
        self.resources().filter_map(T::from_resource)
    }
}

impl OperationOutcome {
    /// An outcome with one `error` issue: an issue-type `code` (e.g. `invalid`, `not-supported`), a
    /// human-readable `diagnostics`, and optionally the FHIRPath `expression` of the element concerned.
    pub fn error(
        code: &str,
        diagnostics: impl Into<String>,
        expression: Option<&str>,
    ) -> OperationOutcome {
        OperationOutcome {
            issue: vec![OperationOutcomeIssue {
                severity: Some("error".to_owned()),
                code: Some(code.to_owned()),
                diagnostics: Some(diagnostics.into()),
                expression: expression.map(str::to_owned).into_iter().collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patient;

    #[test]
    fn reference_target_reads_relative_references_only() {
        assert_eq!(
            Reference::to("Patient", "p1").target(),
            Some(("Patient", "p1"))
        );
        let versioned = Reference {
            reference: Some("Observation/o/_history/2".into()),
            ..Default::default()
        };
        assert_eq!(versioned.target(), Some(("Observation", "o")));
        for other in [
            "urn:uuid:1234",
            "#contained",
            "http://x/Patient/1",
            "Patient/",
            "patient/1",
            "Patient/1/x",
        ] {
            let r = Reference {
                reference: Some(other.into()),
                ..Default::default()
            };
            assert_eq!(r.target(), None, "{other}");
        }
    }

    #[test]
    fn bundle_builders_fill_entries_and_requests() {
        let mut bundle = Bundle::transaction();
        let patient = Patient {
            id: Some("p1".into()),
            ..Default::default()
        };
        bundle.push_request(patient, Some("urn:uuid:1".into()), "PUT", "Patient/p1");
        assert_eq!(bundle.r#type.as_deref(), Some("transaction"));
        assert_eq!(bundle.resources_of::<Patient>().count(), 1);
        let request = bundle.entry[0].request.as_ref().unwrap();
        assert_eq!(
            (request.method.as_deref(), request.url.as_deref()),
            (Some("PUT"), Some("Patient/p1"))
        );
        assert_eq!(
            bundle.resources().next().unwrap().reference(),
            Some(Reference::to("Patient", "p1"))
        );
    }

    #[test]
    fn codeable_concept_lookups() {
        let cc = CodeableConcept::coding("http://loinc.org", "718-7", Some("Hemoglobin"));
        assert_eq!(cc.code_in("http://loinc.org"), Some("718-7"));
        assert!(cc.has_coding("http://loinc.org", "718-7"));
        assert!(!cc.has_coding("http://loinc.org", "718-8"));
        assert_eq!(cc.code_in("http://snomed.info/sct"), None);
    }
}
