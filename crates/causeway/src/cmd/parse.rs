//! `causeway parse FILE [--format json|tree]`.

use std::io::Write;
use std::process::ExitCode;

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// HL7 v2 file (`-` for standard input).
    file: String,
    /// `json`: one JSON object per message and line; `tree`: a labelled view for people.
    #[arg(long, default_value = "json")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Tree,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input = Input::read_hl7(&args.file)?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for item in input.messages() {
        match item {
            Ok((raw, msg)) => match args.format {
                Format::Json => {
                    let mut value = hl7v2::json::to_json(&msg);
                    value["message"] = raw.number.into();
                    value["offset"] = raw.offset.into();
                    writeln!(out, "{value}")?;
                }
                Format::Tree => write_tree(&mut out, raw.number, &msg)?,
            },
            Err(e) => {
                failed = true;
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

fn write_tree(
    out: &mut impl Write,
    number: usize,
    msg: &hl7v2::Message<'_>,
) -> std::io::Result<()> {
    let version = msg.version().map(|v| v.into_owned()).unwrap_or_default();
    writeln!(
        out,
        "message {number}: {} version {version}",
        msg.message_type()
    )?;
    for seg in msg.segments() {
        writeln!(out, "{}", seg.id())?;
        for (n, field) in seg.fields().enumerate().map(|(i, f)| (i + 1, f)) {
            if field.is_empty() {
                continue;
            }
            let name = hl7v2::validate::field_name(&version, seg.id(), n).unwrap_or_default();
            writeln!(out, "  {}-{n:<3} {name:<34} {}", seg.id(), field.decoded())?;
            if !field.has_children() {
                continue;
            }
            for (r, rep) in field.repetitions().enumerate().map(|(i, r)| (i + 1, r)) {
                for (c, comp) in rep.components().enumerate().map(|(i, c)| (i + 1, c)) {
                    if comp.is_empty() {
                        continue;
                    }
                    let subs: Vec<_> = comp.subcomponents().collect();
                    if subs.len() > 1 {
                        for (s, sub) in subs.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
                            writeln!(
                                out,
                                "    {}-{n}({r}).{c}.{} {}",
                                seg.id(),
                                s + 1,
                                sub.decoded()
                            )?;
                        }
                    } else {
                        writeln!(out, "    {}-{n}({r}).{c} {}", seg.id(), comp.decoded())?;
                    }
                }
            }
        }
    }
    Ok(())
}
