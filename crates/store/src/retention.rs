//! Retention: a background task that purges old payloads and metadata per channel.
//!
//! # Map
//!
//! [`spawn_retention`] runs [`run_retention_once`] at start and then every
//! [`RetentionConfig::interval`] until its shutdown future completes. Each pass calls
//! [`Store::purge`] for every policy, which works in bounded chunks through the normal write
//! path, so inbound traffic keeps flowing during a large purge.
//!
//! # Invariants
//!
//! - Messages with a pending delivery are never purged (the store enforces it).
//! - A failed purge of one channel is logged and counted; the other channels still run, and the
//!   next pass tries again. The task never stops on an error, only on shutdown.
//! - Logs carry channel names and counts only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::{PurgeReport, Store, UnixMillis};

/// Default time between retention passes.
///
/// Hourly keeps each pass small on a busy store without letting expired PHI linger long.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How long one channel keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The channel.
    pub channel: String,
    /// Payloads older than this are removed (metadata stays searchable). `None` keeps them.
    pub payload_after: Option<Duration>,
    /// Messages and events older than this are removed entirely. `None` keeps them.
    pub metadata_after: Option<Duration>,
}

/// What the retention task does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Time between passes (the first pass runs at once).
    pub interval: Duration,
    /// One policy per channel.
    pub policies: Vec<RetentionPolicy>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_RETENTION_INTERVAL,
            policies: Vec::new(),
        }
    }
}

/// The result of one retention pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPass {
    /// Passes completed since the task started (1 after the first).
    pub number: u64,
    /// When this pass started.
    pub started_at: UnixMillis,
    /// What it removed.
    pub removed: PurgeReport,
    /// Channels whose purge failed in this pass.
    pub failed_channels: u32,
}

/// Handle on a running retention task.
#[derive(Debug)]
pub struct RetentionHandle {
    /// The task; it ends after the shutdown future completes.
    pub task: JoinHandle<()>,
    /// The latest pass (`number == 0` before the first completes), for metrics and tests.
    pub passes: watch::Receiver<RetentionPass>,
}

/// Runs every policy once against `now`. Returns what was removed and how many channels failed.
pub async fn run_retention_once(
    store: &dyn Store,
    policies: &[RetentionPolicy],
    now: UnixMillis,
) -> (PurgeReport, u32) {
    let mut total = PurgeReport::default();
    let mut failed = 0;
    for policy in policies {
        if policy.payload_after.is_none() && policy.metadata_after.is_none() {
            continue;
        }
        let payload_before = policy.payload_after.map(|d| now.minus(d));
        let metadata_before = policy.metadata_after.map(|d| now.minus(d));
        match store
            .purge(&policy.channel, payload_before, metadata_before)
            .await
        {
            Ok(report) => {
                if report != PurgeReport::default() {
                    tracing::info!(
                        channel = %policy.channel,
                        payloads = report.payloads_cleared,
                        messages = report.messages_deleted,
                        events = report.events_deleted,
                        "retention purged"
                    );
                }
                total.add(report);
            }
            Err(e) => {
                failed += 1;
                tracing::error!(channel = %policy.channel, error = %e, "retention purge failed");
            }
        }
    }
    (total, failed)
}

/// Starts the retention task on the current tokio runtime.
pub fn spawn_retention(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> RetentionHandle {
    let (tx, rx) = watch::channel(RetentionPass::default());
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut number = 0;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            let started_at = UnixMillis::now();
            let pass = run_retention_once(store.as_ref(), &config.policies, started_at);
            let (removed, failed_channels) = tokio::select! {
                () = &mut shutdown => break,
                r = pass => r,
            };
            number += 1;
            tx.send_replace(RetentionPass {
                number,
                started_at,
                removed,
                failed_channels,
            });
        }
    });
    RetentionHandle { task, passes: rx }
}
