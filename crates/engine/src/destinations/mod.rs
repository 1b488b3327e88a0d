//! Destinations: each one drains its own durable FIFO queue in the store.
//!
//! A worker claims the head of its queue under a lease, sends the message, and settles the
//! claim with the outcome; the store records each transition as an event. By default one
//! worker per destination and FIFO claims: a failing head blocks the queue (order is kept)
//! and is retried with exponential backoff. `parallel = N` runs N workers with parallel
//! claims (order no longer guaranteed).
//!
//! What a crash leaves behind: a delivery claimed but not settled stays `in_flight` until its
//! lease expires, then it is claimed again and re-sent. Delivery is at-least-once; receivers
//! de-duplicate by MSH-10, as HL7 receivers do.

pub mod file;
pub mod http;
pub mod mllp;

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{Claim, ClaimMode, Delivery, Header, Outcome, Store, UnixMillis};
use tokio::sync::{Notify, watch};

pub use crate::config::RetryPolicy;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted it; `ack` is its answer when it gave one.
    Delivered { ack: Option<Vec<u8>> },
    /// A failure a later try may fix (AE, timeout, connection refused, HTTP 5xx).
    Retry { error: String, ack: Option<Vec<u8>> },
    /// A permanent refusal (AR, HTTP 4xx): the message goes to the error queue.
    Fail { error: String, ack: Option<Vec<u8>> },
}

/// How a destination sends one message.
pub enum Sender {
    Mllp(mllp::MllpSender),
    Http(http::HttpSender),
    File(file::FileSender),
}

impl Sender {
    pub async fn deliver(
        &mut self,
        payload: &[u8],
        header: &Header,
        delivery: &Delivery,
    ) -> Attempt {
        match self {
            Sender::Mllp(s) => s.deliver(payload, &header.control_id).await,
            Sender::Http(s) => s.deliver(payload, &header.control_id).await,
            Sender::File(s) => s.deliver(payload, header, delivery).await,
        }
    }

    /// Longest one attempt can take, to size the lease.
    pub fn max_attempt_time(&self) -> Duration {
        match self {
            Sender::Mllp(s) => s.max_attempt_time(),
            Sender::Http(s) => s.max_attempt_time(),
            Sender::File(_) => Duration::from_secs(30),
        }
    }
}

/// Idle workers look at their queue at least this often (a retry coming due, a message
/// queued by another process); inserts by this process wake them at once.
pub const IDLE_POLL: Duration = Duration::from_millis(200);

/// One worker of one destination.
pub struct Worker {
    pub queue: String,
    pub worker_id: String,
    pub sender: Sender,
    pub retry: RetryPolicy,
    pub mode: ClaimMode,
    pub store: Arc<dyn Store>,
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Drains the queue until `shutdown` turns true; an attempt in progress is finished and
    /// settled first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let claim = Claim {
            worker: self.worker_id.clone(),
            lease: self.sender.max_attempt_time() * 2 + Duration::from_secs(10),
            mode: self.mode,
            // Worker ids are stable across restarts and each worker holds one claim at a
            // time: after a crash, the restarted worker resumes its delivery at once.
            resume_own: true,
        };
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Register interest before looking, so a wake between the look and the wait is
            // not lost.
            let wake = self.wake.clone();
            let woken = wake.notified();
            match self.store.claim_next(&self.queue, &claim).await {
                Ok(Some(delivery)) => self.attempt(delivery).await,
                Ok(None) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %self.queue, error = %e, "claiming a delivery failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    async fn attempt(&mut self, delivery: Delivery) {
        let stored = match self.store.message(delivery.message_id).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.settle(
                    &delivery,
                    Outcome::Failed {
                        error: "message no longer stored".into(),
                    },
                )
                .await;
                return;
            }
            Err(e) => {
                tracing::error!(queue = %self.queue, seq = %delivery.seq, error = %e, "loading a queued message failed");
                let next = UnixMillis::now().plus(self.retry.delay(delivery.attempts));
                self.settle(
                    &delivery,
                    Outcome::Retry {
                        error: format!("store: {e}"),
                        next_attempt_at: next,
                    },
                )
                .await;
                return;
            }
        };
        let Some(payload) = stored.outbound.as_ref().or(stored.raw.as_ref()) else {
            self.settle(
                &delivery,
                Outcome::Failed {
                    error: "payload purged by retention".into(),
                },
            )
            .await;
            return;
        };
        let header = &stored.summary.header;
        let control_id = header.control_id.clone();
        let attempt = self.sender.deliver(payload, header, &delivery).await;
        // The claim already counted this attempt (`attempts` is the store's fencing token).
        let attempts = delivery.attempts;
        let outcome = match attempt {
            Attempt::Delivered { ack } => {
                tracing::debug!(queue = %self.queue, seq = %delivery.seq, control_id, "delivered");
                Outcome::Delivered { ack }
            }
            Attempt::Retry { error, .. }
                if self.retry.max_attempts > 0 && attempts >= self.retry.max_attempts =>
            {
                tracing::warn!(queue = %self.queue, seq = %delivery.seq, control_id, attempts, error, "giving up after the last attempt");
                Outcome::Failed {
                    error: format!("{error} (after {attempts} attempts)"),
                }
            }
            Attempt::Retry { error, .. } => {
                let delay = self.retry.delay(attempts);
                tracing::info!(queue = %self.queue, seq = %delivery.seq, control_id, attempts, retry_in_ms = delay.as_millis() as u64, error, "delivery failed; will retry");
                Outcome::Retry {
                    error,
                    next_attempt_at: UnixMillis::now().plus(delay),
                }
            }
            Attempt::Fail { error, .. } => {
                tracing::warn!(queue = %self.queue, seq = %delivery.seq, control_id, error, "delivery refused; moved to the error queue");
                Outcome::Failed { error }
            }
        };
        self.settle(&delivery, outcome).await;
    }

    /// Takes `&mut self` so the future needs `Worker: Send` only (its connection is not
    /// `Sync`).
    async fn settle(&mut self, delivery: &Delivery, outcome: Outcome) {
        if let Err(e) = self.store.complete(delivery, outcome).await {
            // The lease will expire and the delivery will be retried: at-least-once.
            tracing::error!(queue = %self.queue, seq = %delivery.seq, error = %e, "settling a delivery failed");
        }
    }
}
