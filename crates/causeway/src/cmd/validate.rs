//! `causeway validate FILE [--profile P]`: each finding on its own line, as
//! `FILE: message N: POSITION: ERR-3 CODE: TEXT`.
//!
//! Exit status: 0 when every message is valid (warnings allowed), 1 when any finding is an
//! error or a message does not parse, 2 when the file or profile cannot be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hl7v2::validate::{Finding, Profile, Severity};

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 file (`-` for standard input).
    file: String,
    /// A conformance profile (JSON) for a sender's variant: Z segments, relocated or extra
    /// fields, local tables.
    #[arg(long)]
    profile: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = match &args.profile {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read profile {}", path.display()))?;
            Some(
                Profile::from_json_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
        }
    };
    let input = Input::read_hl7(&args.file)?;
    let mut out = std::io::stdout().lock();
    let (mut messages, mut invalid) = (0usize, 0usize);
    for item in hl7v2::split_file(&input.data) {
        messages += 1;
        let raw = match item {
            Ok(raw) => raw,
            Err(e) => {
                invalid += 1;
                writeln!(out, "{}", input.describe(0, &e))?;
                continue;
            }
        };
        let msg = match hl7v2::parse(raw.bytes) {
            Ok(m) => m,
            Err(mut e) => {
                invalid += 1;
                let code = e.err3_code();
                e.position.byte += raw.offset;
                writeln!(
                    out,
                    "{}: message {}: {}: {code}: {}",
                    input.name, raw.number, e.position, e.kind
                )?;
                continue;
            }
        };
        let findings: Vec<Finding> = match &profile {
            Some(p) => hl7v2::validate::validate_with(&msg, p),
            None => hl7v2::validate::validate(&msg),
        };
        if findings.iter().any(Finding::is_error) {
            invalid += 1;
        }
        for f in &findings {
            let mut position = f.position;
            position.byte += raw.offset;
            let severity = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(
                out,
                "{}: message {}: {position}: {severity} {}: {}",
                input.name,
                raw.number,
                f.code.code(),
                f.text
            )?;
        }
    }
    eprintln!("{}: {messages} message(s), {invalid} invalid", input.name);
    Ok(if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
