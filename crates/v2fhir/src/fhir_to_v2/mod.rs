//! FHIR R4 -> HL7 v2 (write-back): being written.
