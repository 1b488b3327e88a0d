//! Destinations: each one drains its own durable FIFO queue in the store.
//!
//! A worker claims the head of its queue under a lease, sends the message, and settles the
//! claim with the outcome; the store records each transition as an event. A busy worker
//! settles a batch in the same store write that claims the next one. By default one
//! worker per destination and FIFO claims: a failing head blocks the queue (order is kept)
//! and is retried with exponential backoff. `parallel = N` runs N workers with parallel
//! claims (order no longer guaranteed).
//!
//! What a crash leaves behind: a delivery claimed but not settled stays `in_flight` until its
//! lease expires, then it is claimed again and re-sent. Delivery is at-least-once; receivers
//! de-duplicate by MSH-10, as HL7 receivers do.

pub mod fhir_store;
pub mod file;
pub mod handoff;
pub mod http;
pub mod mllp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_store::{
    Claim, ClaimMode, Delivery, DeliverySeq, Error as StoreError, Header, Outcome, Store,
    UnixMillis,
};
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
    FhirStore(fhir_store::FhirStoreSender),
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
            Sender::FhirStore(s) => s.deliver(payload, delivery).await,
        }
    }

    /// Longest one attempt can take, to size the lease.
    pub fn max_attempt_time(&self) -> Duration {
        match self {
            Sender::Mllp(s) => s.max_attempt_time(),
            Sender::Http(s) => s.max_attempt_time(),
            Sender::File(_) | Sender::FhirStore(_) => Duration::from_secs(30),
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
    /// `format = "fhir"`: the message's FHIR bundle (JSON) is delivered instead of the v2 message.
    pub fhir: Option<crate::fhir::SharedConversion>,
    /// The channel's stopped flag ([`crate::runtime::channel::Channel::stop`]): while it is set
    /// the worker claims nothing; starting the channel wakes it.
    pub paused: Arc<AtomicBool>,
    /// The destination's counters, shared by its workers and read by the monitor.
    pub stats: Arc<crate::monitor::DestinationStats>,
    /// The channel's messages just stored, for a first attempt without reading them back.
    pub handoff: Arc<handoff::Handoff>,
    /// This queue's index in the channel's queue list (its bit in the handoff).
    pub queue_slot: usize,
}

/// Most deliveries a FIFO worker claims at once: each batch costs one store write (settling
/// the previous batch and claiming this one) instead of two per message, which lets delivery
/// keep up with group-committed ingest, while a crash re-delivers at most this many messages.
pub const DELIVERY_BATCH: usize = 16;

/// The queue sequence numbers of a batch, kept to report on it once it is handed over.
fn seqs_of(settled: &[(Delivery, Outcome)]) -> Vec<DeliverySeq> {
    settled.iter().map(|(d, _)| d.seq).collect()
}

impl Worker {
    /// Drains the queue until `shutdown` turns true; a batch in progress is finished and
    /// settled first.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let lease = self.sender.max_attempt_time() * 2 + Duration::from_secs(10);
        let claim = Claim {
            worker: self.worker_id.clone(),
            lease,
            mode: self.mode,
            // Worker ids are stable across restarts and a worker holds one batch at a time:
            // after a crash, the restarted worker resumes its deliveries at once.
            resume_own: true,
        };
        // Parallel workers take one delivery each; several of them share the queue.
        let batch = match self.mode {
            ClaimMode::Fifo => DELIVERY_BATCH,
            ClaimMode::Parallel => 1,
        };
        // The last batch sent, not yet recorded: it is settled in the same store write that
        // claims the next batch (one commit per batch instead of two), or on its own before
        // the worker idles or stops.
        let mut unsettled: Vec<(Delivery, Outcome)> = Vec::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Register interest before looking, so a wake between the look and the wait is
            // not lost.
            let wake = self.wake.clone();
            let woken = wake.notified();
            if self.paused.load(Ordering::SeqCst) {
                self.settle(std::mem::take(&mut unsettled)).await;
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let claimed = if unsettled.is_empty() {
                self.store.claim_batch(&self.queue, &claim, batch).await
            } else {
                let settled = std::mem::take(&mut unsettled);
                let seqs = seqs_of(&settled);
                let written = self
                    .store
                    .settle_and_claim(settled, &self.queue, &claim, batch)
                    .await;
                match written {
                    Ok(done) => {
                        self.report_settled(&seqs, done.settled);
                        Ok(done.claimed)
                    }
                    Err(e) => {
                        // Nothing was settled: the leases expire (or this worker resumes them)
                        // and the batch is sent again: at-least-once.
                        tracing::error!(queue = %self.queue, error = %e, "settling a batch failed");
                        Err(e)
                    }
                }
            };
            match claimed {
                Ok(deliveries) if !deliveries.is_empty() => {
                    unsettled = self.attempt_batch(deliveries, lease).await;
                }
                Ok(_) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %self.queue, error = %e, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        self.settle(unsettled).await;
    }

    /// Sends a claimed batch in order and returns each delivery with its outcome, to be
    /// settled. In FIFO mode the first delivery that does not succeed ends the batch: the ones
    /// behind it are released untried, so order is kept. A batch also ends once half its
    /// lease is spent, so the lease never runs out under it.
    async fn attempt_batch(
        &mut self,
        batch: Vec<Delivery>,
        lease: Duration,
    ) -> Vec<(Delivery, Outcome)> {
        let started = tokio::time::Instant::now();
        let mut settled = Vec::with_capacity(batch.len());
        let mut stopped = false;
        for delivery in batch {
            // A channel stopped mid-batch releases what it has not tried yet.
            if stopped || started.elapsed() > lease / 2 || self.paused.load(Ordering::SeqCst) {
                settled.push((delivery, Outcome::Released));
                continue;
            }
            let outcome = self.attempt(&delivery).await;
            stopped = self.mode == ClaimMode::Fifo && !matches!(outcome, Outcome::Delivered { .. });
            settled.push((delivery, outcome));
        }
        settled
    }

    /// Records a sent batch on its own (before idling or stopping).
    async fn settle(&mut self, settled: Vec<(Delivery, Outcome)>) {
        if settled.is_empty() {
            return;
        }
        let seqs = seqs_of(&settled);
        match self.store.complete_batch(settled).await {
            Ok(results) => self.report_settled(&seqs, results),
            // Nothing was settled: the leases expire (or this worker resumes them) and the
            // batch is sent again: at-least-once.
            Err(e) => tracing::error!(queue = %self.queue, error = %e, "settling a batch failed"),
        }
    }

    /// Logs the deliveries (by queue sequence number) whose settling was refused.
    fn report_settled(&self, seqs: &[DeliverySeq], results: Vec<Result<(), StoreError>>) {
        for (seq, result) in seqs.iter().zip(results) {
            if let Err(e) = result {
                // Another worker took it over after our lease ran out: its result wins.
                tracing::warn!(queue = %self.queue, %seq, error = %e, "settling a delivery failed");
            }
        }
    }

    async fn attempt(&mut self, delivery: &Delivery) -> Outcome {
        // A first attempt right after the message was stored takes its bytes from memory;
        // anything else reads them from the store.
        let handed = self.handoff.take(self.queue_slot, delivery.message_id);
        let stored;
        let (payload, header): (&[u8], &Header) = match &handed {
            Some(o) => (&o.payload, &o.header),
            None => {
                stored = match self.store.outgoing(delivery.message_id).await {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        return Outcome::Failed {
                            error: "message no longer stored".into(),
                            ack: None,
                        };
                    }
                    Err(e) => {
                        tracing::error!(queue = %self.queue, seq = %delivery.seq, error = %e, "loading a queued message failed");
                        return Outcome::Retry {
                            error: format!("store: {e}"),
                            next_attempt_at: UnixMillis::now()
                                .plus(self.retry.delay(delivery.attempts)),
                            ack: None,
                        };
                    }
                };
                let Some(payload) = stored.outbound.as_ref().or(stored.raw.as_ref()) else {
                    return Outcome::Failed {
                        error: "payload purged by retention".into(),
                        ack: None,
                    };
                };
                (payload, &stored.summary.header)
            }
        };
        let control_id = header.control_id.clone();
        let bundle;
        let fhir = self.fhir.as_ref().and_then(|f| f.get());
        let payload = match fhir {
            None => payload,
            Some(fhir) => match fhir.bundle_json(payload) {
                Ok(json) => {
                    bundle = json;
                    &bundle
                }
                Err(error) => return Outcome::Failed { error, ack: None },
            },
        };
        let sent = std::time::Instant::now();
        let attempt = self.sender.deliver(payload, header, delivery).await;
        let finished = match &attempt {
            Attempt::Delivered { .. } => Some(true),
            Attempt::Retry { .. } if self.retry.exhausted(delivery.attempts) => Some(false),
            Attempt::Retry { .. } => None,
            Attempt::Fail { .. } => Some(false),
        };
        self.stats.record(finished, sent.elapsed());
        // The claim already counted this attempt (`attempts` is the store's fencing token).
        let attempts = delivery.attempts;
        match attempt {
            Attempt::Delivered { ack } => {
                tracing::debug!(queue = %self.queue, seq = %delivery.seq, control_id, "delivered");
                Outcome::Delivered { ack }
            }
            Attempt::Retry { error, ack } if self.retry.exhausted(attempts) => {
                tracing::warn!(queue = %self.queue, seq = %delivery.seq, control_id, attempts, error, "giving up after the last attempt");
                Outcome::Failed {
                    error: format!("{error} (after {attempts} attempts)"),
                    ack,
                }
            }
            Attempt::Retry { error, ack } => {
                let delay = self.retry.delay(attempts);
                tracing::info!(queue = %self.queue, seq = %delivery.seq, control_id, attempts, retry_in_ms = delay.as_millis() as u64, error, "delivery failed; will retry");
                Outcome::Retry {
                    error,
                    next_attempt_at: UnixMillis::now().plus(delay),
                    ack,
                }
            }
            Attempt::Fail { error, ack } => {
                tracing::warn!(queue = %self.queue, seq = %delivery.seq, control_id, error, "delivery refused; moved to the error queue");
                Outcome::Failed { error, ack }
            }
        }
    }
}
