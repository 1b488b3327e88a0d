//! Sending an error queue again ([`retry_error_queue`]): shared by the management API
//! (`POST /api/errors/retry`) and the CLI (`causeway errors --retry`), so both take the same
//! entries in the same order.
//!
//! The store pages an error queue newest first ([`Store::error_queue`]); a retry appends a new
//! delivery of each message with [`Store::requeue_many`], oldest failure first (the order the
//! receiver was meant to get them in), a few hundred per commit. The failed deliveries stay as
//! history.

use std::collections::HashSet;

use crate::{FailedDelivery, MAX_PAGE_LEN, Result, Store};

/// Most entries one retry sends again; the rest wait for the next (see [`Retried::remaining`]).
/// This bounds what one call reads and answers.
pub const MAX_RETRY: usize = 10_000;

/// Messages queued again per store commit.
const REQUEUE_BATCH: usize = 500;

/// What [`retry_error_queue`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retried {
    /// Entries in the error queue when the retry began (0: no such queue, or nothing failed).
    pub total: u64,
    /// The messages queued again, in the order they were queued.
    pub requeued: Vec<Requeued>,
    /// Entries that could not be queued again (still pending there, payload purged).
    pub skipped: Vec<Skipped>,
    /// Entries past [`MAX_RETRY`] left in the error queue.
    pub remaining: u64,
}

/// One message queued again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub message_id: i64,
    /// The failed delivery it replaces.
    pub failed_seq: i64,
    /// The new delivery.
    pub seq: i64,
}

/// An entry left in the error queue, and why (the store's error: no PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub message_id: i64,
    pub seq: i64,
    pub reason: String,
}

/// Why [`retry_error_queue`] did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRefused {
    /// `seqs` named a delivery that is not in the error queue.
    NotInQueue(i64),
    /// More than [`MAX_RETRY`] seqs.
    TooMany,
}

/// Sends the error queue of `queue` again: every entry (the oldest [`MAX_RETRY`]) or only those
/// whose delivery seq is in `seqs`.
///
/// # Errors
/// A store failure while reading or queueing (entries queued before it stay queued).
pub async fn retry_error_queue(
    store: &dyn Store,
    queue: &str,
    seqs: Option<&[i64]>,
) -> Result<std::result::Result<Retried, RetryRefused>> {
    let total = store.error_queue(queue, 1, 0).await?.total;
    let mut entries: Vec<FailedDelivery> = Vec::new();
    let mut remaining = 0;
    match seqs {
        None => {
            // The oldest MAX_RETRY: the end of the newest-first order.
            let from = total.saturating_sub(MAX_RETRY as u64);
            remaining = from;
            while from + (entries.len() as u64) < total {
                let page = store
                    .error_queue(queue, MAX_PAGE_LEN, from + entries.len() as u64)
                    .await?;
                if page.entries.is_empty() {
                    break;
                }
                entries.extend(page.entries);
            }
        }
        Some(wanted) => {
            if wanted.len() > MAX_RETRY {
                return Ok(Err(RetryRefused::TooMany));
            }
            let wanted_set: HashSet<i64> = wanted.iter().copied().collect();
            let mut offset = 0;
            while offset < total && entries.len() < wanted_set.len() {
                let page = store.error_queue(queue, MAX_PAGE_LEN, offset).await?;
                if page.entries.is_empty() {
                    break;
                }
                offset += page.entries.len() as u64;
                entries.extend(
                    page.entries
                        .into_iter()
                        .filter(|e| wanted_set.contains(&e.delivery.seq.0)),
                );
            }
            let found: HashSet<i64> = entries.iter().map(|e| e.delivery.seq.0).collect();
            if let Some(missing) = wanted.iter().find(|seq| !found.contains(seq)) {
                return Ok(Err(RetryRefused::NotInQueue(*missing)));
            }
        }
    }
    entries.reverse();
    let mut done = Retried {
        total,
        remaining,
        ..Retried::default()
    };
    // A few hundred per commit: one fsync for many messages, while the writer stays free for
    // the senders between batches.
    for batch in entries.chunks(REQUEUE_BATCH) {
        let ids = batch.iter().map(|e| e.message.id).collect();
        let outcomes = store.requeue_many(ids, queue).await?;
        for (entry, outcome) in batch.iter().zip(outcomes) {
            let (id, failed) = (entry.message.id, entry.delivery.seq.0);
            match outcome {
                Ok(seq) => done.requeued.push(Requeued {
                    message_id: id.0,
                    failed_seq: failed,
                    seq: seq.0,
                }),
                Err(e) => done.skipped.push(Skipped {
                    message_id: id.0,
                    seq: failed,
                    reason: e.to_string(),
                }),
            }
        }
    }
    Ok(Ok(done))
}
