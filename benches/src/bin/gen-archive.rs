//! `gen-archive DIR [options]`: writes a synthetic legacy HL7 v2 archive under DIR and its
//! manifest (ground truth) beside it, then prints the manifest's summary.
//!
//! See `causeway_bench::archive` for the layout, the broken kinds and the counting rules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use causeway_bench::archive::{ArchiveSpec, write_archive};

const USAGE: &str = "usage: gen-archive DIR [options]

Writes a synthetic HL7 v2 archive under DIR and its manifest to DIR.manifest.json
(outside DIR, so an import of DIR never reads it).

options (defaults: the shape of issue 7, scaled by --messages):
  --messages N            distinct valid messages            [1000000]
  --patients N            patients                           [messages / 20]
  --seed N                seed (decimal or 0x hex)           [0xca05e3a11]
  --years N               years covered                      [5]
  --start-year Y          first year                         [2019]
  --messages-per-file N   messages per file, about           [1000]
  --gzip F                fraction of files gzip-compressed  [0.85]
  --latin1-msh18 F        fraction of files ISO-8859-1 with MSH-18 8859/1      [0.05]
  --latin1-bare F         fraction of files ISO-8859-1 declaring nothing       [0.05]
  --broken F              broken messages, fraction of messages                [0.002]
  --duplicates F          messages written twice, fraction of messages         [0.01]
  --batch F               fraction of files wrapped as FHS/BHS batches         [0.1]
  --out-of-order F        fraction of messages moved to backfill files         [0.02]
  --accented F            fraction of patients with Latin-1 letters            [0.1]
  --sample-patients N     patients whose final state the manifest records      [100]
  --manifest PATH         where to write the manifest        [DIR.manifest.json]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-archive: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut manifest: Option<PathBuf> = None;
    let mut patients: Option<usize> = None;
    let mut spec = ArchiveSpec::default();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        if !arg.starts_with("--") {
            if dir.replace(PathBuf::from(&arg)).is_some() {
                return Err(format!("one DIR only (second: {arg:?})\n{USAGE}"));
            }
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        let int = |v: &str| -> Result<u64, String> {
            let t = v.trim();
            match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.replace('_', "").parse(),
            }
            .map_err(|_| format!("{arg} {v:?} is not a number"))
        };
        let frac = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| format!("{arg} {v:?} is not a fraction in 0..=1"))
        };
        match arg.as_str() {
            "--messages" => spec.messages = int(&value)? as usize,
            "--patients" => patients = Some(int(&value)? as usize),
            "--seed" => spec.seed = int(&value)?,
            "--years" => spec.years = int(&value)?.max(1) as u32,
            "--start-year" => spec.start_year = int(&value)? as i32,
            "--messages-per-file" => spec.messages_per_file = int(&value)?.max(1) as usize,
            "--gzip" => spec.gzip_fraction = frac(&value)?,
            "--latin1-msh18" => spec.latin1_with_msh18_fraction = frac(&value)?,
            "--latin1-bare" => spec.latin1_without_msh18_fraction = frac(&value)?,
            "--broken" => spec.broken_fraction = frac(&value)?,
            "--duplicates" => spec.duplicate_fraction = frac(&value)?,
            "--batch" => spec.batch_fraction = frac(&value)?,
            "--out-of-order" => spec.out_of_order_fraction = frac(&value)?,
            "--accented" => spec.accented_fraction = frac(&value)?,
            "--sample-patients" => spec.sample_patients = int(&value)? as usize,
            "--manifest" => manifest = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {arg}\n{USAGE}")),
        }
    }
    let dir = dir.ok_or_else(|| format!("DIR is missing\n{USAGE}"))?;
    spec.patients = patients.unwrap_or((spec.messages / 20).max(1));
    let manifest_path = manifest.unwrap_or_else(|| {
        let mut name = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "archive".into());
        name.push(".manifest.json");
        dir.with_file_name(name)
    });
    let started = Instant::now();
    let m = write_archive(&dir, &spec).map_err(|e| format!("{}: {e}", dir.display()))?;
    let took = started.elapsed();
    m.write_json(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    print!("{}", m.summary());
    println!(
        "wrote {} in {:.1} s ({:.0} messages/s); manifest {}",
        dir.display(),
        took.as_secs_f64(),
        m.messages_written as f64 / took.as_secs_f64().max(1e-9),
        manifest_path.display()
    );
    Ok(())
}
