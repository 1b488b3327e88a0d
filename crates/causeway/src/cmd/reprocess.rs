//! `causeway reprocess ID [--config FILE]`: run a stored message through its channel again.
//!
//! Safe beside a running `serve` on the same data directory: the store takes one writer at a
//! time and queue claims are leases in the database, so the server's workers pick up what is
//! queued here. Where the configuration's data directory holds no store, it says so and
//! creates none.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_engine::runtime::build_channel_only;
use causeway_store::MessageId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stored message's id (as shown by logs and the API).
    id: i64,
    /// Configuration file (default: the built-in configuration).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(config) = super::check::load(args.config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = super::serve::open_existing_store(&config).await?;
        let result = async {
            let id = MessageId(args.id);
            let stored = store.message(id).await?.ok_or_else(|| anyhow::anyhow!("message {id} is not stored"))?;
            let channel_name = stored.summary.channel.clone();
            let channel = build_channel_only(&config, &channel_name, &store)?
                .ok_or_else(|| anyhow::anyhow!("message {id} came through channel {channel_name:?}, which the configuration no longer has"))?;
            let done = channel.reprocess(id).await?;
            if done.queues.is_empty() {
                match &done.reason {
                    Some(why) => println!("message {id}: {} (not queued): {why}", done.state),
                    None => println!("message {id}: {} (not queued)", done.state),
                }
            } else {
                println!("message {id}: {}, queued to {}", done.state, done.queues.join(", "));
            }
            anyhow::Ok(ExitCode::SUCCESS)
        }
        .await;
        let _ = store.close().await;
        result
    })
}
