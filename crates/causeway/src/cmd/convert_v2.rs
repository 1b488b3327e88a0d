//! `causeway convert --to v2`: FHIR -> HL7 v2 (write-back); wired to `v2fhir::fhir_to_v2`.

use std::process::ExitCode;

pub fn run(_file: &str, _profile: Option<&v2fhir::Profile>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("FHIR -> v2 conversion is not wired into the CLI yet")
}
