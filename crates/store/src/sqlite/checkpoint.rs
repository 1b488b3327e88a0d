//! The checkpointer thread: copies committed WAL frames into the database file.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, adding a
//! database-file fsync to that group's latency. The writer nudges this thread instead, which
//! runs PASSIVE checkpoints on its own connection: they never block the writer or readers, and
//! copy whatever frames no reader still needs.
//!
//! Under steady load that alone never lets the WAL start over: SQLite rewinds it only when a
//! write begins with every frame already copied, and the writer has always appended more by
//! the time a passive pass ends. The WAL then grows without end (700 MB in ten seconds at 2,000
//! msg/s), and every commit appends to new blocks of the file, which costs the kernel a block
//! allocation and the zeroing of fresh page-cache folios, and makes each fsync flush file
//! metadata too: up to a fifth of the writer's time, and slower fsyncs. So the writer keeps
//! SQLite's own automatic checkpoint as a fallback at [`WRITER_FALLBACK_FRAMES`]: by then this
//! thread has copied most frames, the writer copies the rest, and the next group rewrites the
//! WAL from its start, in blocks the file already has.
//!
//! Invariants: a checkpoint only copies frames of committed transactions, so a crash during
//! one leaves the database readable and the WAL still authoritative (SQLite redoes the copy at
//! the next checkpoint). The WAL restarts from its beginning once fully copied, and
//! `journal_size_limit` bounds the file kept on disk.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use rusqlite::Connection;

/// Checkpoint at least this often while the writer is quiet, so a burst's tail is copied too.
///
/// One second keeps the WAL (and recovery time after a crash) small without busy work.
pub(crate) const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The writer nudges the checkpointer after this many commits.
///
/// A group commit of ordinary messages writes tens of pages; 32 commits is around a thousand
/// pages, SQLite's own default threshold.
pub(crate) const NUDGE_EVERY_COMMITS: u64 = 32;

/// WAL frames (pages) at which the writer checkpoints itself: 16 MiB of 4 KiB pages, four
/// times what this thread is nudged to copy, so the writer's pass only finishes the tail.
pub(crate) const WRITER_FALLBACK_FRAMES: i64 = 4096;

/// Runs until the writer drops its nudge sender.
pub(crate) fn run(conn: Connection, nudges: Receiver<()>) {
    while let Ok(()) | Err(RecvTimeoutError::Timeout) = nudges.recv_timeout(IDLE_INTERVAL) {
        // Several nudges while a checkpoint ran need only one more checkpoint.
        loop {
            match nudges.try_recv() {
                Ok(()) => continue,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let result: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, "wal checkpoint failed; will retry");
        }
    }
}
