//! `causeway check [--config FILE]`: the configuration's full validation, nothing started.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_engine::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (default: the built-in configuration `serve` runs without one).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Loads the configuration, or prints every problem and returns `None`.
pub fn load(config: Option<&PathBuf>) -> Option<Config> {
    match config {
        None => Some(Config::default_config()),
        Some(path) => match Config::load(path) {
            Ok(c) => Some(c),
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} problem(s)", path.display(), errors.len());
                None
            }
        },
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(config) = load(args.config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    let name = args
        .config
        .as_ref()
        .map_or("built-in configuration".to_string(), |p| {
            p.display().to_string()
        });
    let destinations: usize = config.channels.iter().map(|c| c.destinations.len()).sum();
    println!(
        "{name}: ok ({} channel(s), {destinations} destination(s))",
        config.channels.len()
    );
    Ok(ExitCode::SUCCESS)
}
