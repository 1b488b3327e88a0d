//! The writer thread: group commit.
//!
//! # Map
//!
//! ```text
//! async callers ──Job──> std mpsc ──> writer thread (owns the write connection)
//!      ^                                 │ take 1 job (blocking), then drain up to max_batch
//!      │                                 │ (waiting at most max_wait for more)
//!      │                                 │ BEGIN IMMEDIATE
//!      │                                 │   run every job
//!      │                                 │   (one failed: ROLLBACK, BEGIN IMMEDIATE, and again
//!      │                                 │    per job: SAVEPOINT; run; RELEASE or ROLLBACK TO)
//!      │                                 │ COMMIT  (synchronous=FULL: the WAL is fsynced here)
//!      └──────── oneshot reply ──────────┘ only now is each caller released
//! ```
//!
//! # Invariants
//!
//! - A caller's future resolves `Ok` only after the COMMIT of the transaction holding its write
//!   returned, i.e. after the fsync. A failed COMMIT fails every job of the group.
//! - A job that fails is undone alone; the rest of the group still commits. Jobs run without
//!   savepoints first, since a savepoint copies every page a job touches and jobs rarely fail;
//!   when one does, the group starts over with a savepoint per job. So a job may run twice
//!   (`FnMut`), and must do nothing outside the transaction that a second run would repeat.
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
use super::ids::MessageIds;
use super::write::WriteCx;
use crate::crypto::Cipher;
use crate::{Error, GROUP_TIME_BUCKETS, Result, WriteStats};

/// One unit of work for the writer.
pub(crate) trait Job: Send {
    /// Runs inside the group's transaction. Runs again (from the start, in a new transaction)
    /// when the group starts over because a job failed.
    fn run(&mut self, cx: &mut WriteCx<'_>);
    /// Whether `run` failed, so its writes must be undone.
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
    f: F,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    inbound: bool,
    _permit: OwnedSemaphorePermit,
}

impl<T, F> Op<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut WriteCx<'_>) -> Result<T> + Send + 'static,
{
    pub(crate) fn job(
        f: F,
        inbound: bool,
        permit: OwnedSemaphorePermit,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (reply, rx) = oneshot::channel();
        let op = Self {
            f,
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
    F: FnMut(&mut WriteCx<'_>) -> Result<T> + Send + 'static,
{
    fn run(&mut self, cx: &mut WriteCx<'_>) {
        self.out = Some((self.f)(cx));
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
    group_time: [AtomicU64; GROUP_TIME_BUCKETS],
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
            group_time: std::array::from_fn(|i| self.group_time[i].load(Ordering::Relaxed)),
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
    ids: Arc<MessageIds>,
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
        commit_group(&conn, &cipher, &ids, &stats, &mut batch);
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
/// `run_group` says whether there was anything to commit.
fn commit_group(
    conn: &Connection,
    cipher: &Cipher,
    ids: &MessageIds,
    stats: &Stats,
    batch: &mut Vec<Box<dyn Job>>,
) {
    let outcome = run_group(conn, cipher, ids, stats, batch);
    match &outcome {
        Ok(committed) => {
            let messages: u64 = batch.iter().map(|j| j.messages()).sum();
            stats
                .commits
                .fetch_add(u64::from(*committed), Ordering::Relaxed);
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
    ids: &MessageIds,
    stats: &Stats,
    batch: &mut [Box<dyn Job>],
) -> Result<bool> {
    let started = Instant::now();
    exec(conn, "BEGIN IMMEDIATE", "begin group")?;
    let mut cx = WriteCx::new(conn, cipher, ids);
    let mut failed = false;
    for job in batch.iter_mut() {
        job.run(&mut cx);
        if job.failed() {
            failed = true;
            break;
        }
    }
    if failed {
        // SQLite may already have ended the transaction (I/O error, disk full).
        if !conn.is_autocommit() {
            exec(conn, "ROLLBACK", "roll back group")?;
        }
        if batch.len() == 1 {
            // Nothing else to keep: the job's own error is its answer, and nothing is committed.
            return Ok(false);
        }
        exec(conn, "BEGIN IMMEDIATE", "begin group")?;
        let mut cx = WriteCx::new(conn, cipher, ids);
        for job in batch.iter_mut() {
            exec(conn, "SAVEPOINT job", "savepoint")?;
            job.run(&mut cx);
            if job.failed() {
                // If the failure already ended the transaction, this fails too and the whole
                // group is reported failed.
                exec(conn, "ROLLBACK TO job", "rollback job")?;
            }
            exec(conn, "RELEASE job", "release savepoint")?;
        }
    }
    let committing = Instant::now();
    let committed = exec(conn, "COMMIT", "commit");
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    stats
        .work_nanos
        .fetch_add(nanos(committing - started), Ordering::Relaxed);
    let ended = Instant::now();
    stats
        .commit_nanos
        .fetch_add(nanos(ended - committing), Ordering::Relaxed);
    if committed.is_ok() {
        stats.group_time[WriteStats::group_time_bucket(ended - started)]
            .fetch_add(1, Ordering::Relaxed);
    }
    committed.map(|()| true)
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

    /// What one group of jobs left behind.
    struct GroupRun {
        /// Each job's answer, in order.
        answers: Vec<Result<()>>,
        /// How many times each job ran.
        runs: Vec<usize>,
        /// Event details committed, in order.
        committed: Vec<String>,
        stats: super::super::WriteStats,
        permits_left: usize,
    }

    /// Runs jobs that each write one event (`Some(detail)`) or write one and then fail
    /// (`None`), all queued before the writer starts so that they share one group.
    fn run_one_group(jobs: &[Option<&str>]) -> GroupRun {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let mut conn =
            super::super::open_connection(&path, Duration::from_secs(1), false).expect("open");
        super::super::migrations::migrate(&mut conn, &path).expect("migrate");
        let key = MasterKey::generate(&path).expect("key");
        let cipher = Arc::new(Cipher::new(&key));
        let stats = Arc::new(Stats::default());
        let permits = Arc::new(Semaphore::new(8));
        let runs: Vec<Arc<AtomicU64>> = jobs.iter().map(|_| Arc::default()).collect();

        let (tx, rx) = mpsc::channel();
        let mut replies = Vec::new();
        for (job, count) in jobs.iter().zip(&runs) {
            let detail = job.map(str::to_owned);
            let count = Arc::clone(count);
            let permit = Arc::clone(&permits).try_acquire_owned().expect("permit");
            let (op, reply) = Op::job(
                move |cx: &mut WriteCx<'_>| {
                    count.fetch_add(1, Ordering::Relaxed);
                    match &detail {
                        Some(d) => cx.add_event(&event(d)),
                        None => {
                            cx.add_event(&event("written then rolled back"))?;
                            Err(Error::invalid("test", "boom"))
                        }
                    }
                },
                false,
                permit,
            );
            tx.send(Msg::Job(op)).expect("send");
            replies.push(reply);
        }
        let (close, closed) = oneshot::channel();
        tx.send(Msg::Close(close)).expect("send");
        let batching = Batching {
            max_batch: 16,
            max_wait: Duration::ZERO,
            checkpoint: None,
        };
        let thread = {
            let (cipher, stats) = (Arc::clone(&cipher), Arc::clone(&stats));
            let ids = Arc::new(MessageIds::after(0));
            std::thread::spawn(move || run(conn, rx, cipher, ids, stats, batching))
        };
        closed.blocking_recv().expect("closed");
        thread.join().expect("writer thread");

        let answers = replies
            .into_iter()
            .map(|r| r.blocking_recv().expect("reply"))
            .collect();
        let conn = Connection::open(&path).expect("reopen");
        let committed: Vec<String> = conn
            .prepare("SELECT detail FROM events ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("events");
        GroupRun {
            answers,
            runs: runs
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as usize)
                .collect(),
            committed,
            stats: stats.snapshot(),
            permits_left: permits.available_permits(),
        }
    }

    #[test]
    fn a_group_without_failures_runs_each_job_once() {
        let g = run_one_group(&[Some("a"), Some("b"), Some("c")]);
        assert!(g.answers.iter().all(Result::is_ok));
        assert_eq!(g.runs, [1, 1, 1]);
        assert_eq!(g.committed, ["a", "b", "c"]);
        assert_eq!((g.stats.commits, g.stats.operations), (1, 3));
        assert_eq!(
            g.stats.group_time.iter().sum::<u64>(),
            1,
            "the group is timed"
        );
        assert_eq!(g.permits_left, 8, "permits return when jobs finish");
    }

    #[test]
    fn a_failed_job_is_rolled_back_alone_and_the_group_commits() {
        let g = run_one_group(&[Some("before"), None, Some("after")]);
        let err = g.answers[1].as_ref().expect_err("bad job fails");
        assert_eq!(err.to_string(), "invalid test: boom");
        assert!(g.answers[0].is_ok() && g.answers[2].is_ok());
        // The group started over with savepoints: the jobs up to the failure ran twice.
        assert_eq!(g.runs, [2, 2, 1]);
        assert_eq!(g.committed, ["before", "after"]);
        let s = g.stats;
        assert_eq!((s.commits, s.operations, s.failed_commits), (1, 2, 0));
        assert_eq!(s.group_time.iter().sum::<u64>(), 1, "timed once, both runs");
        assert_eq!(g.permits_left, 8, "permits return when jobs finish");
    }

    #[test]
    fn a_lone_failed_job_leaves_nothing() {
        let g = run_one_group(&[None]);
        assert!(g.answers[0].is_err());
        assert_eq!(g.runs, [1]);
        assert!(g.committed.is_empty(), "{:?}", g.committed);
        assert_eq!((g.stats.commits, g.stats.failed_commits), (0, 0));
        assert_eq!(
            g.stats.group_time,
            [0; crate::GROUP_TIME_BUCKETS],
            "nothing committed"
        );
    }
}
