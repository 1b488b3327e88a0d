//! `causeway audit verify [--config FILE]`: recompute the audit log's hash chain.
//!
//! Safe beside a running `serve` on the same data directory: it only reads (a snapshot of the
//! log as committed when it starts). Exit codes: 0 intact, 1 broken (the first broken record is
//! named), 2 the store could not be opened or read.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Recompute every record's hash; exit 1 naming the first record that does not verify.
    Verify {
        /// Configuration file (default: the built-in configuration).
        #[arg(long, env = "CAUSEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify { config } = args.command;
    let Some(config) = super::check::load(config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Not created when missing: a mistyped data_dir must not read as "intact: empty".
        let store = super::serve::open_existing_store(&config).await?;
        let result = store.verify_audit().await;
        let _ = store.close().await;
        let v = result.map_err(|e| anyhow::anyhow!("cannot read the audit log: {e}"))?;
        match v.broken {
            None => {
                match v.head {
                    Some(head) => println!(
                        "audit log intact: {} records, head {}",
                        v.records,
                        hex(&head)
                    ),
                    None => println!("audit log intact: empty"),
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(b) => {
                eprintln!(
                    "audit log broken at record {}: {} (the {} record(s) before it verify)",
                    b.id, b.reason, v.records
                );
                Ok(ExitCode::from(1))
            }
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
