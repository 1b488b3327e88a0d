//! Vendor profiles: what one sender means. Filled in by the profile module's loader; the converter only
//! reads these structures.

/// A sender's profile. `Profile::default()` is the plain HL7 reading with no site knowledge.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: String,
    /// Assigning authority (identifier system) for identifiers that carry none.
    pub default_authority: Option<String>,
    /// Zone for times sent without one (`+HHMM`, `-HHMM`, `Z`).
    pub time_zone: Option<String>,
}
