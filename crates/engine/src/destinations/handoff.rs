//! The bytes a channel just stored, handed to its destination workers in memory.
//!
//! A destination that keeps up with its channel would otherwise read every message back from
//! the store moments after it was written: a query, a decryption and a decompression (about a
//! tenth of the engine's CPU under load). After a routed message is committed, the channel
//! leaves the bytes its destinations send here; each destination's worker takes them once, for
//! its first attempt. Everything else reads the store as before: a retry, a message queued
//! before a restart, one evicted from here or older than [`MAX_AGE`].
//!
//! The store stays the only record: an entry is made only after the commit that queued the
//! message, so it never holds anything the store does not. (A worker may claim the message
//! between that commit and the entry: it reads the store, and the entry waits for a retry or
//! its age.) Memory is bounded by [`BUDGET_BYTES`]; when a destination falls behind, the
//! oldest entries go first. An entry lives at most [`MAX_AGE`], so a message reprocessed
//! meanwhile (which may change the copy destinations send) is read from the store, and the
//! channel's own reprocess drops the entry at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_store::{Header, MessageId};

/// Most payload bytes held per channel (a few thousand typical messages).
pub const BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Entries older than this are not used: the store is read instead.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// What a destination sends: the copy destinations receive (transformed, else as received)
/// and the message's header.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub payload: Arc<[u8]>,
    pub header: Arc<Header>,
}

struct Entry {
    outgoing: Outgoing,
    /// One bit per queue (its index in the channel's list) that has not taken it yet.
    waiting: u64,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<MessageId, Entry>,
    /// Insertion order, for eviction; ids already taken by every queue are skipped.
    order: VecDeque<MessageId>,
    bytes: usize,
}

/// Per channel: messages just stored, waiting for their destinations' first attempt.
#[derive(Default)]
pub struct Handoff {
    inner: Mutex<Inner>,
}

impl Handoff {
    /// Leaves `outgoing` for the queues whose indexes are set in `queues` (bit `i` for the
    /// channel's queue `i`). Call only after the message and its deliveries are committed.
    pub fn put(&self, id: MessageId, outgoing: Outgoing, queues: u64) {
        self.put_at(id, outgoing, queues, Instant::now());
    }

    fn put_at(&self, id: MessageId, outgoing: Outgoing, queues: u64, now: Instant) {
        let len = outgoing.payload.len();
        // One message may not take more than a quarter of the budget.
        if queues == 0 || len > BUDGET_BYTES / 4 {
            return;
        }
        let mut inner = self.lock();
        inner.evict(now, len);
        if let Some(old) = inner.entries.insert(
            id,
            Entry {
                outgoing,
                waiting: queues,
                at: now,
            },
        ) {
            inner.bytes -= old.outgoing.payload.len();
        } else {
            inner.order.push_back(id);
        }
        inner.bytes += len;
    }

    /// The bytes of message `id` for queue `queue` (its index), once: a second call for the
    /// same queue, an evicted or an expired entry gives `None`, and the caller reads the store.
    pub fn take(&self, queue: usize, id: MessageId) -> Option<Outgoing> {
        self.take_at(queue, id, Instant::now())
    }

    fn take_at(&self, queue: usize, id: MessageId, now: Instant) -> Option<Outgoing> {
        let bit = 1u64.checked_shl(u32::try_from(queue).ok()?)?;
        let mut inner = self.lock();
        let entry = inner.entries.get_mut(&id)?;
        if entry.waiting & bit == 0 {
            return None;
        }
        entry.waiting &= !bit;
        let fresh = now.saturating_duration_since(entry.at) <= MAX_AGE;
        let outgoing = fresh.then(|| entry.outgoing.clone());
        if entry.waiting == 0 || !fresh {
            inner.remove(id);
        }
        outgoing
    }

    /// Drops what is held for `id` (its stored copy is about to change).
    pub fn forget(&self, id: MessageId) {
        self.lock().remove(id);
    }

    /// Payload bytes held now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (every change is
        // completed before anything can panic), so the map is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Makes room for `incoming` more bytes, dropping expired entries on the way.
    fn evict(&mut self, now: Instant, incoming: usize) {
        while let Some(&oldest) = self.order.front() {
            let Some(entry) = self.entries.get(&oldest) else {
                // Already taken by every queue or forgotten.
                self.order.pop_front();
                continue;
            };
            let expired = now.saturating_duration_since(entry.at) > MAX_AGE;
            if !expired && self.bytes + incoming <= BUDGET_BYTES {
                break;
            }
            self.order.pop_front();
            self.remove(oldest);
        }
        // Taken entries leave their ids behind; keep the queue from growing without bound
        // when the front entry is long-lived.
        if self.order.len() > 4 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order.retain(|id| entries.contains_key(id));
        }
    }

    fn remove(&mut self, id: MessageId) {
        if let Some(entry) = self.entries.remove(&id) {
            self.bytes -= entry.outgoing.payload.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(text: &str) -> Outgoing {
        Outgoing {
            payload: Arc::from(text.as_bytes()),
            header: Arc::new(Header {
                control_id: format!("c-{text}"),
                ..Header::default()
            }),
        }
    }

    #[test]
    fn each_queue_takes_an_entry_once() {
        let h = Handoff::default();
        h.put(MessageId(1), outgoing("one"), 0b101);
        assert!(h.take(1, MessageId(1)).is_none(), "queue 1 was not routed");
        let first = h.take(0, MessageId(1)).expect("queue 0");
        assert_eq!(&*first.payload, b"one");
        assert_eq!(first.header.control_id, "c-one");
        assert!(h.take(0, MessageId(1)).is_none(), "taken once");
        assert_eq!(h.bytes(), 3, "queue 2 has not taken it yet");
        assert_eq!(&*h.take(2, MessageId(1)).expect("queue 2").payload, b"one");
        assert_eq!(h.bytes(), 0, "gone once every queue took it");
        assert!(h.take(0, MessageId(2)).is_none(), "never put");
        assert!(h.take(64, MessageId(1)).is_none(), "no such queue bit");
    }

    #[test]
    fn the_oldest_entries_leave_first_when_the_budget_is_spent() {
        let h = Handoff::default();
        let big = "x".repeat(BUDGET_BYTES / 4);
        for id in 1..=4 {
            h.put(MessageId(id), outgoing(&big), 1);
        }
        assert_eq!(h.bytes(), BUDGET_BYTES);
        h.put(MessageId(5), outgoing(&big), 1);
        assert_eq!(h.bytes(), BUDGET_BYTES);
        assert!(h.take(0, MessageId(1)).is_none(), "evicted");
        for id in 2..=5 {
            assert!(h.take(0, MessageId(id)).is_some(), "message {id} kept");
        }
        assert_eq!(h.bytes(), 0);
        // Larger than a quarter of the budget: never held.
        h.put(MessageId(6), outgoing(&format!("{big}y")), 1);
        assert!(h.take(0, MessageId(6)).is_none());
    }

    #[test]
    fn a_forgotten_or_replaced_entry_is_not_handed_out_stale() {
        let h = Handoff::default();
        h.put(MessageId(1), outgoing("old"), 1);
        h.forget(MessageId(1));
        assert!(h.take(0, MessageId(1)).is_none());
        assert_eq!(h.bytes(), 0);
        h.put(MessageId(2), outgoing("first"), 1);
        h.put(MessageId(2), outgoing("second!"), 1);
        assert_eq!(h.bytes(), 7);
        assert_eq!(&*h.take(0, MessageId(2)).expect("kept").payload, b"second!");
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn an_entry_past_its_age_is_not_used_and_makes_room() {
        let h = Handoff::default();
        let start = Instant::now();
        let later = start + MAX_AGE + Duration::from_secs(1);
        h.put_at(MessageId(1), outgoing("one"), 0b11, start);
        assert!(h.take_at(0, MessageId(1), later).is_none(), "too old");
        assert_eq!(h.bytes(), 0, "dropped for every queue once too old");
        h.put_at(MessageId(2), outgoing("two"), 1, start);
        h.put_at(MessageId(3), outgoing("three"), 1, later);
        assert!(
            h.take_at(0, MessageId(2), later).is_none(),
            "expired on the way"
        );
        assert_eq!(h.bytes(), 5);
        assert!(h.take_at(0, MessageId(3), later).is_some());
    }

    #[test]
    fn taken_ids_do_not_pile_up_behind_a_waiting_entry() {
        let h = Handoff::default();
        // Queue 1 never takes message 0: it stays at the front.
        h.put(MessageId(0), outgoing("slow"), 0b10);
        for id in 1..20_000 {
            h.put(MessageId(id), outgoing("m"), 1);
            assert!(h.take(0, MessageId(id)).is_some());
        }
        let inner = h.lock();
        assert!(inner.order.len() <= 4 * inner.entries.len() + 1025);
        assert_eq!(inner.entries.len(), 1);
    }
}
