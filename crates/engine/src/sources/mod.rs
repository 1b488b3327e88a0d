//! Sources: where messages come in. Each hands every message to its channel's ingest path
//! and answers with what ingest returned; none writes to the store itself.

pub mod directory;
pub mod http;
pub mod mllp;

use std::sync::atomic::AtomicU64;

/// Counters of one source: what it saw before (or instead of) handing messages to ingest,
/// which the channel's message counters cannot show. No PHI.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// MLLP: open connections.
    pub connections_open: AtomicU64,
    /// MLLP: connections accepted since the start.
    pub connections_total: AtomicU64,
    /// MLLP: bytes outside any frame, skipped (CR and LF between frames not counted).
    pub garbage_bytes: AtomicU64,
    /// MLLP: frames over `max_frame`, refused (the connection is closed after the NAK).
    pub oversized_frames: AtomicU64,
    /// MLLP: connections closed after `idle_timeout` without a byte (normal for a quiet feed).
    pub idle_timeouts: AtomicU64,
    /// MLLP: connections closed because a started frame did not finish within `read_timeout`.
    pub read_timeouts: AtomicU64,
    /// MLLP: TLS handshakes that failed.
    pub tls_failures: AtomicU64,
    /// Directory: files whose every message was accepted, moved to `done`.
    pub files_done: AtomicU64,
    /// Directory: files moved to `error` (a refused message, no message at all, over
    /// `max_file`), each with its report.
    pub files_failed: AtomicU64,
}
