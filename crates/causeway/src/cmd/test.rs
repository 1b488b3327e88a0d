//! `causeway test DIR [--bless]`: interfaces tested like code. Each folder under DIR (and DIR itself)
//! holding an `input.hl7` is a case: the messages are converted with `profile.toml` when present and the
//! result is compared, field by field, with `expected.json` (an array: per message, the bundle, whether it
//! was held and its issues, or the error that refused it). Differences are printed with their JSON path;
//! the exit status is 1 when any case differs. `--bless` writes `expected.json` from the current result
//! (review the change in git before committing it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use crate::input::Input;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder of fixture folders (each with input.hl7, optional profile.toml, expected.json).
    dir: String,
    /// Write expected.json from the current result instead of comparing.
    #[arg(long)]
    bless: bool,
}

/// The most differences printed per case.
const MAX_SHOWN: usize = 40;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = Path::new(&args.dir);
    let cases = cases(root)?;
    if cases.is_empty() {
        anyhow::bail!(
            "{}: no fixture folder (a folder with input.hl7)",
            root.display()
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let name = case
            .strip_prefix(root)
            .unwrap_or(case)
            .display()
            .to_string();
        let name = if name.is_empty() {
            ".".to_owned()
        } else {
            name
        };
        // A broken case (a profile that does not load, an expected.json that is not JSON) is
        // one failure: the other cases still run, as a test runner does.
        match check_case(case, args.bless) {
            Ok(Outcome::Blessed) => {
                println!("blessed {name}");
                passed += 1;
            }
            Ok(Outcome::Same) => {
                println!("ok   {name}");
                passed += 1;
            }
            Ok(Outcome::Differs(differences)) => {
                println!("FAIL {name}: {} difference(s)", differences.len());
                for d in differences.iter().take(MAX_SHOWN) {
                    println!("    {d}");
                }
                if differences.len() > MAX_SHOWN {
                    println!("    … {} more", differences.len() - MAX_SHOWN);
                }
                failed += 1;
            }
            Err(e) => {
                println!("FAIL {name}: {e:#}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What one case came to.
enum Outcome {
    Blessed,
    Same,
    Differs(Vec<v2fhir::fixture::Difference>),
}

/// Runs one case and compares it with its `expected.json` (or writes that, with `bless`).
fn check_case(case: &Path, bless: bool) -> anyhow::Result<Outcome> {
    let actual = run_case(case)?;
    let expected_path = case.join("expected.json");
    if bless {
        let text = serde_json::to_string_pretty(&actual)? + "\n";
        std::fs::write(&expected_path, text)
            .with_context(|| format!("cannot write {}", expected_path.display()))?;
        return Ok(Outcome::Blessed);
    }
    let bytes = std::fs::read(&expected_path)
        .with_context(|| format!("cannot read {}", expected_path.display()))?;
    let expected: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not JSON", expected_path.display()))?;
    let differences = v2fhir::fixture::diff(&expected, &actual);
    Ok(if differences.is_empty() {
        Outcome::Same
    } else {
        Outcome::Differs(differences)
    })
}

/// DIR itself when it holds input.hl7, and every folder below that does, sorted.
fn cases(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("input.hl7").is_file() {
            out.push(dir.clone());
        }
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn run_case(case: &Path) -> anyhow::Result<Value> {
    let profile_path = case.join("profile.toml");
    let profile = if profile_path.is_file() {
        let mut profiles = crate::cmd::convert::load_profiles(&profile_path.display().to_string())?;
        profiles.pop().unwrap_or_default()
    } else {
        v2fhir::Profile::default()
    };
    let input = Input::read(&case.join("input.hl7").display().to_string())?;
    let mut results = Vec::new();
    for item in input.messages() {
        match item {
            Ok((_, message)) => results.push(v2fhir::fixture::result_json(&v2fhir::convert(
                &message, &profile,
            ))),
            Err(e) => results.push(serde_json::json!({ "error": e })),
        }
    }
    Ok(Value::Array(results))
}
