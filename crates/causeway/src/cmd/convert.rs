//! `causeway convert FILE [--profile P] [--to fhir|v2]`: HL7 v2 messages to FHIR R4 transaction bundles
//! (one JSON bundle per message and line), through the sender's profile. Issues go to standard error,
//! naming the message, the field and the problem (never a value).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use v2fhir::Profile;

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 file (`-` for standard input); with `--to v2`, a FHIR JSON resource or bundle.
    file: String,
    /// A profile file (TOML), or a folder of them: each message is read with the most specific profile
    /// matching its MSH-3/MSH-4.
    #[arg(long)]
    profile: Option<String>,
    /// `fhir`: v2 in, FHIR out; `v2`: FHIR in, v2 out (write-back).
    #[arg(long, default_value = "fhir")]
    to: Target,
    /// Indented JSON instead of one bundle per line.
    #[arg(long)]
    pretty: bool,
    #[command(flatten)]
    v2: crate::cmd::convert_v2::V2Options,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Target {
    Fhir,
    V2,
}

/// Reads a profile file, or every `*.toml` of a folder; every problem is reported.
pub fn load_profiles(path: &str) -> anyhow::Result<Vec<Profile>> {
    causeway_engine::fhir::load_profiles(Path::new(path))
        .map_err(|errors| anyhow::anyhow!("invalid profile:\n  {}", errors.join("\n  ")))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profiles = match &args.profile {
        Some(p) => load_profiles(p)?,
        None => Vec::new(),
    };
    match args.to {
        Target::Fhir => to_fhir(&args, &profiles),
        Target::V2 => crate::cmd::convert_v2::run(&args.file, profiles.first(), &args.v2),
    }
}

fn to_fhir(args: &Args, profiles: &[Profile]) -> anyhow::Result<ExitCode> {
    let input = Input::read_hl7(&args.file)?;
    let fallback = Profile::default();
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for item in input.messages() {
        let (raw, message) = match item {
            Ok(m) => m,
            Err(e) => {
                failed = true;
                eprintln!("{e}");
                continue;
            }
        };
        let profile = v2fhir::profile::select(profiles, &message).unwrap_or(&fallback);
        match v2fhir::convert(&message, profile) {
            Ok(c) => {
                for issue in &c.issues {
                    eprintln!(
                        "{}: message {}: {:?} at {}: {}",
                        input.name, raw.number, issue.severity, issue.at, issue.message
                    );
                }
                if c.held {
                    eprintln!(
                        "{}: message {}: held for review (a code map's `hold` policy)",
                        input.name, raw.number
                    );
                }
                let json = if args.pretty {
                    fhir::to_string_pretty(&c.bundle)?
                } else {
                    fhir::to_string(&c.bundle)
                };
                writeln!(out, "{json}")?;
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: message {}: {e}", input.name, raw.number);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
