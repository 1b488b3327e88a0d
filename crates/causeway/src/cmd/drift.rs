//! `causeway drift export --channel NAME [--config FILE]`: a channel's learned drift profile
//! (`DATA_DIR/drift/NAME.json`, saved by `serve`) printed as a starting conformance profile, the
//! JSON `causeway validate --profile` reads. Reads the file only: safe beside a running server,
//! which saves the profile every few seconds and when it stops.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_engine::drift;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print a channel's learned profile as a conformance profile (JSON).
    Export {
        /// The channel's name.
        #[arg(long)]
        channel: String,
        /// Configuration file (default: the built-in configuration), for its data directory.
        #[arg(long, env = "CAUSEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Command::Export { channel, config } = args.command;
    let Some(config) = super::check::load(config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    if config.channel(&channel).is_none() {
        eprintln!("causeway: the configuration has no channel {channel:?}");
        return Ok(ExitCode::from(1));
    }
    let path = drift::profile_path(&config.server.data_dir, &channel);
    if !path.exists() {
        eprintln!(
            "causeway: channel {channel:?} has learned nothing yet ({} does not exist)",
            path.display()
        );
        return Ok(ExitCode::from(1));
    }
    let learned = drift::read_profile(&path).map_err(|e| anyhow::anyhow!(e))?;
    let profile = drift::export::conformance_profile(&channel, &learned);
    println!("{}", serde_json::to_string_pretty(&profile)?);
    Ok(ExitCode::SUCCESS)
}
