//! `causeway errors [--queue CHANNEL/DESTINATION] [--retry] [--config FILE]`: each destination's
//! error queue (deliveries that failed for good), and sending one again once its cause is fixed,
//! from the server's shell, without signing in to the API.
//!
//! Safe beside a running `serve` on the same data directory, as `reprocess` is: the store takes
//! one writer at a time and the server's workers pick up what is queued here. Prints message ids,
//! control ids, types and error texts: no PHI.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_engine::runtime::queue_name;
use causeway_store::error_queue::retry_error_queue;

use super::serve::open_existing_store;

/// Entries listed per queue unless `--limit` says otherwise.
const DEFAULT_LIMIT: u32 = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this queue (`channel/destination`); with --retry, the queue to send again.
    #[arg(long, value_name = "CHANNEL/DESTINATION")]
    queue: Option<String>,
    /// Send the queue's failed messages again, oldest first (needs --queue).
    #[arg(long, requires = "queue")]
    retry: bool,
    /// Entries listed per queue, newest first.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Configuration file (default: the built-in configuration).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(config) = super::check::load(args.config.as_ref()) else {
        return Ok(ExitCode::from(1));
    };
    let configured: Vec<String> = config
        .channels
        .iter()
        .flat_map(|c| c.destinations.iter().map(|d| queue_name(&c.name, &d.name)))
        .collect();
    let queues = match &args.queue {
        Some(q) => vec![q.clone()],
        None => configured.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = open_existing_store(&config).await?;
        let result = async {
            if let Some(q) = args.queue.as_ref().filter(|_| args.retry) {
                let done = match retry_error_queue(store.as_ref(), q, None).await? {
                    Ok(done) => done,
                    // Only a list of seqs can be refused; none is given here.
                    Err(refused) => anyhow::bail!("{q}: refused: {refused:?}"),
                };
                if done.total == 0 && !configured.contains(q) {
                    anyhow::bail!(
                        "no destination queue {q:?} in the configuration, and no error queue by that name (queues: {})",
                        configured.join(", ")
                    );
                }
                println!(
                    "{q}: {} queued again, {} skipped, {} left in the error queue",
                    done.requeued.len(),
                    done.skipped.len(),
                    done.remaining
                );
                for k in &done.skipped {
                    println!(
                        "  skipped message {} (delivery {}): {}",
                        k.message_id, k.seq, k.reason
                    );
                }
                return anyhow::Ok(ExitCode::SUCCESS);
            }
            for q in &queues {
                let page = store.error_queue(q, args.limit, 0).await?;
                println!("{q}: {} failed", page.total);
                for f in &page.entries {
                    let (d, m) = (&f.delivery, &f.message);
                    println!(
                        "  message {} (delivery {}) {} {} attempts {}: {}",
                        m.id.0,
                        d.seq.0,
                        m.header.control_id,
                        m.header.message_type,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("-")
                    );
                }
                if page.total > page.entries.len() as u64 {
                    println!("  ... the newest {} shown", page.entries.len());
                }
            }
            anyhow::Ok(ExitCode::SUCCESS)
        }
        .await;
        let _ = store.close().await;
        result
    })
}
