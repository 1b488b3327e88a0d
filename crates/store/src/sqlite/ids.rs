//! Message ids handed out before a write reaches the writer thread.
//!
//! A payload is sealed with its message id as associated data, so the id must exist before the
//! payload can be sealed. Handing ids out on the callers' threads lets them seal there, in
//! parallel, instead of on the single writer (where sealing was a tenth of its CPU).
//!
//! Ids must never be reused (they outlive purged rows in events and in sealed data), and
//! another process may write to the same database file (a second engine on the same data
//! directory). So the writer checks, once per transaction and while holding SQLite's write
//! lock, whether `sqlite_sequence` moved past the highest id this process wrote: if it did,
//! every id handed out up to that point is treated as possibly taken, and a job holding one
//! gets a fresh id and seals again on the writer (the rare path). The messages table's primary
//! key is the last guard: a collision fails that one job, it cannot overwrite a row.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::MessageId;

#[derive(Debug)]
pub(crate) struct MessageIds {
    /// The next id to hand out.
    next: AtomicI64,
    /// The highest id this process has inserted (or found at open).
    written: AtomicI64,
    /// Ids at or below this may belong to another process.
    floor: AtomicI64,
}

impl MessageIds {
    /// Starts after `last`, the highest id the database has ever given out.
    pub(crate) fn after(last: i64) -> MessageIds {
        MessageIds {
            next: AtomicI64::new(last + 1),
            written: AtomicI64::new(last),
            floor: AtomicI64::new(last),
        }
    }

    pub(crate) fn issue(&self) -> MessageId {
        MessageId(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Takes note of the database's `sqlite_sequence` value for messages, read inside the
    /// writer's transaction.
    pub(crate) fn sync(&self, sequence: i64) {
        if sequence > self.written.load(Ordering::Relaxed) {
            self.floor.fetch_max(sequence, Ordering::Relaxed);
            self.next.fetch_max(sequence + 1, Ordering::Relaxed);
            self.written.fetch_max(sequence, Ordering::Relaxed);
        }
    }

    /// Whether `id`, handed out by [`issue`](Self::issue), is still this process's own.
    pub(crate) fn usable(&self, id: MessageId) -> bool {
        id.0 > self.floor.load(Ordering::Relaxed)
    }

    /// Records that `id` was inserted.
    pub(crate) fn wrote(&self, id: MessageId) {
        self.written.fetch_max(id.0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_from_the_last_one() {
        let ids = MessageIds::after(41);
        assert_eq!(ids.issue(), MessageId(42));
        assert_eq!(ids.issue(), MessageId(43));
    }

    #[test]
    fn own_writes_keep_handed_out_ids_usable() {
        let ids = MessageIds::after(10);
        let (a, b) = (ids.issue(), ids.issue());
        // b reached the writer first.
        ids.sync(10);
        ids.wrote(b);
        ids.sync(12);
        assert!(ids.usable(a), "the sequence moved only by our own insert");
        ids.wrote(a);
        assert_eq!(ids.issue(), MessageId(13));
    }

    #[test]
    fn another_writer_invalidates_the_ids_it_may_have_taken() {
        let ids = MessageIds::after(10);
        let (a, b) = (ids.issue(), ids.issue());
        // Another process inserted 11 to 15 meanwhile.
        ids.sync(15);
        assert!(!ids.usable(a) && !ids.usable(b));
        let fresh = ids.issue();
        assert_eq!(fresh, MessageId(16));
        assert!(ids.usable(fresh));
    }
}
