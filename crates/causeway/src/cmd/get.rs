//! `causeway get FILE PATH`: the decoded value at PATH, one line per message (empty when
//! absent). Line breaks inside a value (from `\.br\`) are printed as `\n` so one message
//! stays one line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 file (`-` for standard input).
    file: String,
    /// A path such as `PID-3(2).1.2`, `OBX(3)-5` or `MSH-9.2`.
    path: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path =
        hl7v2::Path::parse(&args.path).with_context(|| format!("bad PATH {:?}", args.path))?;
    let input = Input::read_hl7(&args.file)?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for item in input.messages() {
        match item {
            Ok((_, msg)) => {
                let text = msg.get_path(&path).map(|n| n.decoded()).unwrap_or_default();
                writeln!(out, "{}", text.replace('\r', "\\r").replace('\n', "\\n"))?;
            }
            Err(e) => {
                failed = true;
                writeln!(out)?;
                eprintln!("{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
