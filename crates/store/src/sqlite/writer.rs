//! The writer thread: group commit.
//!
//! # Map
//!
//! ```text
//! async callers ──Job──> std mpsc ──> writer thread (owns the write connection)
//!      ^                                 │ take 1 job (blocking), then drain up to max_batch
//!      │                                 │ (waiting at most max_wait for more)
//!      │                                 │ BEGIN IMMEDIATE
//!      │                                 │   per job: SAVEPOINT; run; RELEASE or ROLLBACK TO
//!      │                                 │ COMMIT  (synchronous=FULL: the WAL is fsynced here)
//!      └──────── oneshot reply ──────────┘ only now is each caller released
//! ```
//!
//! # Invariants
//!
//! - A caller's future resolves `Ok` only after the COMMIT of the transaction holding its write
//!   returned, i.e. after the fsync. A failed COMMIT fails every job of the group.
//! - A job that fails is rolled back to its savepoint; the rest of the group still commits.
//! - Jobs run in arrival order, so the duplicate check of a message sees every message that
//!   arrived before it, committed or still in the same group.
//! - Back-pressure: callers hold semaphore permits (weighted by payload size) from submission
//!   until their job is finished, which bounds the memory queued in front of the writer.
//! - A caller that stops waiting (its future dropped) does not cancel the write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::checkpoint;
use super::write::WriteCx;
use crate::crypto::Cipher;
use crate::{Error, Result, WriteStats};

/// One unit of work for the writer.
pub(crate) trait Job: Send {
    /// Runs inside the group's transaction (already inside this job's savepoint).
    fn run(&mut self, cx: &mut WriteCx<'_>);
    /// Whether `run` failed, so its savepoint must be rolled back.
    fn failed(&self) -> bool;
    /// Inbound messages this job stored (for the commits-per-message figure).
    fn messages(&self) -> u64;
    /// Answers the caller; `commit` is the group's commit error, if any.
    fn finish(self: Box<Self>, commit: Option<&Error>);
}

/// What the writer's channel carries.
pub(crate) enum Msg {
    Job(Box<dyn Job>),
    /// Finish what came before, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A job built from a closure; the common shape of every write.
pub(crate) struct Op<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    inbound: bool,
    _permit: OwnedSemaphorePermit,
}

impl<T, F> Op<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut WriteCx<'_>) -> Result<T> + Send + 'static,
{
    pub(crate) fn job(
        f: F,
        inbound: bool,
        permit: OwnedSemaphorePermit,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (reply, rx) = oneshot::channel();
        let op = Self {
            f: Some(f),
            out: None,
            reply,
            inbound,
            _permit: permit,
        };
        (Box::new(op), rx)
    }
}

impl<T, F> Job for Op<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut WriteCx<'_>) -> Result<T> + Send + 'static,
{
    fn run(&mut self, cx: &mut WriteCx<'_>) {
        if let Some(f) = self.f.take() {
            self.out = Some(f(cx));
        }
    }

    fn failed(&self) -> bool {
        matches!(self.out, Some(Err(_)))
    }

    fn messages(&self) -> u64 {
        u64::from(self.inbound && matches!(self.out, Some(Ok(_))))
    }

    fn finish(self: Box<Self>, commit: Option<&Error>) {
        let answer = match (self.out, commit) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(e.clone()),
            (Some(Ok(v)), None) => Ok(v),
            // The group was abandoned before this job ran.
            (None, None) => Err(Error::Closed),
        };
        // The caller may have gone away; the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// Counters shared with the store handle.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    failed_commits: AtomicU64,
    messages: AtomicU64,
    operations: AtomicU64,
    work_nanos: AtomicU64,
    commit_nanos: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            commits: self.commits.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            operations: self.operations.load(Ordering::Relaxed),
            work_time: Duration::from_nanos(self.work_nanos.load(Ordering::Relaxed)),
            commit_time: Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Group-commit limits, and the checkpointer to nudge (and join at the end).
#[derive(Debug)]
pub(crate) struct Batching {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
    pub(crate) checkpoint: Option<(SyncSender<()>, JoinHandle<()>)>,
}

/// The writer thread's body. Returns when the channel closes or a `Close` arrives.
pub(crate) fn run(
    conn: Connection,
    rx: Receiver<Msg>,
    cipher: Arc<Cipher>,
    stats: Arc<Stats>,
    batching: Batching,
) {
    let max_batch = batching.max_batch.max(1);
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut closing = None;
    let mut commits_since_nudge = 0;
    while closing.is_none() {
        let first = match rx.recv() {
            Ok(msg) => msg,
            Err(_) => break,
        };
        match first {
            Msg::Job(job) => batch.push(job),
            Msg::Close(reply) => {
                closing = Some(reply);
                break;
            }
        }
        let deadline = Instant::now() + batching.max_wait;
        while batch.len() < max_batch {
            let next = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match next {
                Msg::Job(job) => batch.push(job),
                Msg::Close(reply) => {
                    closing = Some(reply);
                    break;
                }
            }
        }
        commit_group(&conn, &cipher, &stats, &mut batch);
        commits_since_nudge += 1;
        if commits_since_nudge >= checkpoint::NUDGE_EVERY_COMMITS {
            commits_since_nudge = 0;
            if let Some((nudge, _)) = &batching.checkpoint {
                // Full means a nudge is already pending: nothing to add.
                let _ = nudge.try_send(());
            }
        }
    }
    if let Some((nudge, thread)) = batching.checkpoint {
        drop(nudge);
        let _ = thread.join();
    }
    // Closing the last connection checkpoints the WAL and removes it.
    drop(conn);
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

/// Runs every job of `batch` in one transaction, commits, then answers all of them.
fn commit_group(conn: &Connection, cipher: &Cipher, stats: &Stats, batch: &mut Vec<Box<dyn Job>>) {
    let outcome = run_group(conn, cipher, stats, batch);
    match &outcome {
        Ok(()) => {
            let messages: u64 = batch.iter().map(|j| j.messages()).sum();
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.messages.fetch_add(messages, Ordering::Relaxed);
            let ops = batch.iter().filter(|j| !j.failed()).count() as u64;
            stats.operations.fetch_add(ops, Ordering::Relaxed);
        }
        Err(e) => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(jobs = batch.len(), error = %e, "group commit failed");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    let commit_error = outcome.err();
    for job in batch.drain(..) {
        job.finish(commit_error.as_ref());
    }
}

fn run_group(
    conn: &Connection,
    cipher: &Cipher,
    stats: &Stats,
    batch: &mut [Box<dyn Job>],
) -> Result<()> {
    let started = Instant::now();
    exec(conn, "BEGIN IMMEDIATE", "begin group")?;
    let mut cx = WriteCx::new(conn, cipher);
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT job", "savepoint")?;
        job.run(&mut cx);
        if job.failed() {
            // If the failure already ended the transaction (I/O error, disk full), this fails
            // too and the whole group is reported failed.
            exec(conn, "ROLLBACK TO job", "rollback job")?;
            cx.forget_allocations();
        }
        exec(conn, "RELEASE job", "release savepoint")?;
    }
    let committing = Instant::now();
    let committed = exec(conn, "COMMIT", "commit");
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    stats
        .work_nanos
        .fetch_add(nanos(committing - started), Ordering::Relaxed);
    stats
        .commit_nanos
        .fetch_add(nanos(committing.elapsed()), Ordering::Relaxed);
    committed
}

fn exec(conn: &Connection, sql: &str, op: &'static str) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| Error::db(op, e))?;
    stmt.execute([]).map(|_| ()).map_err(|e| Error::db(op, e))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::{EventKind, NewEvent};

    fn event(detail: &str) -> NewEvent {
        NewEvent {
            channel: "c".into(),
            destination: None,
            message_id: None,
            kind: EventKind::Note,
            detail: detail.into(),
        }
    }

    #[test]
    fn a_failed_job_is_rolled_back_alone_and_the_group_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let mut conn =
            super::super::open_connection(&path, Duration::from_secs(1), false).expect("open");
        super::super::migrations::migrate(&mut conn, &path).expect("migrate");
        let key = MasterKey::generate(&path).expect("key");
        let cipher = Arc::new(Cipher::new(&key));
        let stats = Arc::new(Stats::default());
        let permits = Arc::new(Semaphore::new(8));
        let permit = || Arc::clone(&permits).try_acquire_owned().expect("permit");

        let (tx, rx) = mpsc::channel();
        let (bad, bad_reply) = Op::job(
            |cx: &mut WriteCx<'_>| {
                cx.add_event(&event("written then rolled back"))?;
                Err::<(), _>(Error::invalid("test", "boom"))
            },
            false,
            permit(),
        );
        let (good, good_reply) = Op::job(
            |cx: &mut WriteCx<'_>| cx.add_event(&event("kept")),
            false,
            permit(),
        );
        let (close, closed) = oneshot::channel();
        tx.send(Msg::Job(bad)).expect("send");
        tx.send(Msg::Job(good)).expect("send");
        tx.send(Msg::Close(close)).expect("send");
        // Everything is queued before the writer starts, so both jobs share one group.
        let batching = Batching {
            max_batch: 16,
            max_wait: Duration::ZERO,
            checkpoint: None,
        };
        let thread = {
            let (cipher, stats) = (Arc::clone(&cipher), Arc::clone(&stats));
            std::thread::spawn(move || run(conn, rx, cipher, stats, batching))
        };
        closed.blocking_recv().expect("closed");
        thread.join().expect("writer thread");

        let err = bad_reply
            .blocking_recv()
            .expect("reply")
            .expect_err("bad job fails");
        assert_eq!(err.to_string(), "invalid test: boom");
        good_reply
            .blocking_recv()
            .expect("reply")
            .expect("good job commits");
        let conn = Connection::open(&path).expect("reopen");
        let details: Vec<String> = conn
            .prepare("SELECT detail FROM events ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("events");
        assert_eq!(details, ["kept"]);
        let s = stats.snapshot();
        assert_eq!((s.commits, s.operations, s.failed_commits), (1, 1, 0));
        assert_eq!(
            permits.available_permits(),
            8,
            "permits return when jobs finish"
        );
    }
}
