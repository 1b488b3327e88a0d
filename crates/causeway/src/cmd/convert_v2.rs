//! `causeway convert --to v2 FILE`: FHIR R4 -> HL7 v2 (write-back). FILE holds one resource or a Bundle
//! (its main resource is written, the bundle resolving references); the message is printed with CR
//! segment separators and a final newline. MSH-3..6, MSH-7 and MSH-10 come from the options, because the
//! conversion itself reads no clock and invents no ids.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use v2fhir::fhir_to_v2::{Hd, OrderStructure, WriteOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct V2Options {
    /// MSH-3 (sending application) of a write-back message.
    #[arg(long, default_value = "CAUSEWAY")]
    pub sending_application: String,
    /// MSH-4 (sending facility).
    #[arg(long, default_value = "CAUSEWAY")]
    pub sending_facility: String,
    /// MSH-5 (receiving application).
    #[arg(long)]
    pub receiving_application: Option<String>,
    /// MSH-6 (receiving facility).
    #[arg(long)]
    pub receiving_facility: Option<String>,
    /// MSH-10; default: `CW` and the current time in milliseconds.
    #[arg(long)]
    pub control_id: Option<String>,
    /// MSH-9.2 when not the resource's default (e.g. A04 for a new Patient, S14 for a modified Appointment).
    #[arg(long)]
    pub event: Option<String>,
    /// Write a ServiceRequest as OML^O21 instead of ORM^O01.
    #[arg(long)]
    pub oml: bool,
}

pub fn run(
    file: &str,
    profile: Option<&v2fhir::Profile>,
    options: &V2Options,
) -> anyhow::Result<ExitCode> {
    let input = crate::input::Input::read(file)?;
    let start = input
        .data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&input.data[..0], |i| &input.data[i..]);
    if start.starts_with(b"MSH") || start.starts_with(b"FHS") || start.starts_with(b"BHS") {
        anyhow::bail!(
            "{}: this is HL7 v2, and --to v2 reads a FHIR resource (JSON); convert HL7 v2 to FHIR without --to, or with --to fhir",
            input.name
        );
    }
    let resource: fhir::Resource = fhir::from_slice(&input.data)
        .with_context(|| format!("{}: not a FHIR R4 resource we accept", input.name))?;
    let now = jiff::ZonedDateTime::now();
    let write = WriteOptions {
        sending_application: Hd::named(&options.sending_application),
        sending_facility: Hd::named(&options.sending_facility),
        receiving_application: options
            .receiving_application
            .as_deref()
            .map(Hd::named)
            .unwrap_or_default(),
        receiving_facility: options
            .receiving_facility
            .as_deref()
            .map(Hd::named)
            .unwrap_or_default(),
        control_id: options
            .control_id
            .clone()
            .unwrap_or_else(|| format!("CW{}", now.timestamp().as_millisecond())),
        timestamp: now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        event: options.event.clone(),
        order_structure: if options.oml {
            OrderStructure::Oml
        } else {
            OrderStructure::Orm
        },
        ..WriteOptions::default()
    };
    let fallback = v2fhir::Profile::default();
    match v2fhir::fhir_to_v2::to_v2(&resource, None, &write, profile.unwrap_or(&fallback)) {
        Ok(message) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&message.encode())?;
            out.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", input.name);
            Ok(ExitCode::from(1))
        }
    }
}
