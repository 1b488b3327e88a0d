//! `causeway ack FILE [--code AA|AE|AR]`: the acknowledgement for each message, or a NAK
//! (AR with an ERR segment) for a message that does not parse.

use std::io::Write;
use std::process::ExitCode;

use hl7v2::{AckCode, AckError, AckHeader};

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 file (`-` for standard input).
    file: String,
    /// MSA-1 for messages that parse: AA, AE or AR (CA, CE, CR for enhanced-mode commits).
    #[arg(long, default_value = "AA", value_parser = parse_code)]
    code: AckCode,
    /// Keep CR segment terminators instead of printing one segment per line.
    #[arg(long)]
    raw: bool,
}

fn parse_code(s: &str) -> Result<AckCode, String> {
    AckCode::parse(s).ok_or_else(|| {
        format!("unknown acknowledgement code {s:?} (expected AA, AE, AR, CA, CE or CR)")
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = Input::read_hl7(&args.file)?;
    let mut out = std::io::stdout().lock();
    let timestamp = causeway_engine::runtime::channel::hl7_timestamp();
    let mut failed = false;
    for item in hl7v2::split_file(&input.data) {
        let (number, bytes, offset) = match item {
            Ok(raw) => (raw.number, raw.bytes, raw.offset),
            Err(e) => {
                failed = true;
                eprintln!("{}", input.describe(0, &e));
                continue;
            }
        };
        let control_id = format!("ACK{number:05}");
        let header = AckHeader {
            control_id: &control_id,
            timestamp: &timestamp,
        };
        let ack = match hl7v2::parse(bytes) {
            Ok(msg) => {
                let errors = if args.code.is_accept() {
                    Vec::new()
                } else {
                    vec![AckError::new(207, "rejected on request")]
                };
                hl7v2::build_ack(&msg, args.code, &errors, header)
            }
            Err(e) => {
                failed = true;
                let mut in_file = e.clone();
                in_file.position.byte += offset;
                eprintln!("{}", input.describe(number, &in_file));
                hl7v2::build_nak_for_bytes(bytes, AckCode::AR, &AckError::from_error(&e), header)
            }
        };
        if args.raw {
            out.write_all(&ack)?;
        } else {
            out.write_all(
                &ack.iter()
                    .map(|&b| if b == b'\r' { b'\n' } else { b })
                    .collect::<Vec<u8>>(),
            )?;
        }
        writeln!(out)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
