//! Alert rules (`[[alert]]`): evaluated against the monitor's counters every
//! `[alerts] evaluate_every`, each instance moved through a small state machine, notices sent
//! through the notifiers (`[[notifier]]`).
//!
//! Map:
//! - [`eval`]: what a rule reads from the snapshots (pure);
//! - [`state`]: Ok -> Pending -> Firing -> (reminders) -> resolved, per instance (pure);
//! - [`notify`]: webhook, e-mail and log notifiers, each its own task with bounded retries;
//! - this file: the [`Evaluator`] task that ties them together, and the [`AlertBoard`] the
//!   management API reads (`GET /api/alerts`).
//!
//! An instance is a rule on one channel, or on one destination of a channel for the kinds
//! about destinations; a rule without `channel` has one instance per channel. Every firing and
//! recovery is recorded as an `alert` event in the store (names, numbers, no PHI) and shown on
//! the board; state is kept in memory, so a restart (or a reload) evaluates afresh.

pub mod eval;
pub mod notify;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_store::{EventKind, NewEvent, Store, UnixMillis};
use tokio::sync::watch;

pub use crate::monitor::{ChannelSnapshot, DestinationSnapshot, Histogram, Snapshot};
use eval::Reading;
pub use eval::Target;
pub use notify::{Notice, Notifiers};
use state::{AlertState, Phase, Step, Timing};

use crate::config::alerts::{AlertRule, AlertsConfig};

/// Alerts kept in the board's `recent` list (firings and recoveries, newest first).
pub const RECENT_LEN: usize = 200;

/// One alert as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView {
    pub rule: String,
    pub kind: &'static str,
    pub severity: &'static str,
    pub channel: String,
    pub destination: Option<String>,
    /// `pending`, `firing` or `resolved`.
    pub state: &'static str,
    /// Pending since, or fired at.
    pub since: UnixMillis,
    pub resolved_at: Option<UnixMillis>,
    /// The last reading.
    pub value: f64,
    pub threshold: f64,
    pub unit: &'static str,
    pub summary: String,
    /// Notices sent for this alert so far (firing, reminders, recovery).
    pub notified: u32,
}

/// The alerts of a running engine: what is pending or firing now, and recent transitions.
#[derive(Debug, Default)]
pub struct AlertBoard {
    inner: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    active: BTreeMap<(String, Target), AlertView>,
    recent: VecDeque<AlertView>,
}

impl AlertBoard {
    /// Pending and firing alerts, by rule then target.
    pub fn active(&self) -> Vec<AlertView> {
        self.lock().active.values().cloned().collect()
    }

    /// The latest firings and recoveries, newest first.
    pub fn recent(&self) -> Vec<AlertView> {
        self.lock().recent.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_active(&self, key: (String, Target), view: Option<AlertView>) {
        let mut b = self.lock();
        match view {
            Some(v) => b.active.insert(key, v),
            None => b.active.remove(&key),
        };
    }

    fn push_recent(&self, view: AlertView) {
        let mut b = self.lock();
        b.recent.push_front(view);
        b.recent.truncate(RECENT_LEN);
    }
}

struct Instance {
    state: AlertState,
    notified: u32,
}

/// Evaluates the rules; one per engine.
pub struct Evaluator {
    rules: Vec<AlertRule>,
    every: Duration,
    instances: HashMap<(usize, Target), Instance>,
    history: VecDeque<Arc<Snapshot>>,
    /// How far back `history` must reach: the longest window of any rule.
    keep: Duration,
    started: UnixMillis,
    board: Arc<AlertBoard>,
    store: Arc<dyn Store>,
    notifiers: Notifiers,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("rules", &self.rules.len())
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    pub fn new(
        config: &AlertsConfig,
        store: Arc<dyn Store>,
        board: Arc<AlertBoard>,
        notifiers: Notifiers,
        started: UnixMillis,
    ) -> Evaluator {
        let keep = config
            .rules
            .iter()
            .map(|r| r.condition.window())
            .max()
            .unwrap_or_default();
        Evaluator {
            rules: config.rules.clone(),
            every: config.evaluate_every,
            instances: HashMap::new(),
            history: VecDeque::new(),
            keep,
            started,
            board,
            store,
            notifiers,
        }
    }

    /// Evaluates every `every` until `shutdown`, on snapshots from `source` (the monitor's
    /// `snapshot()`: the counters now).
    pub async fn run(
        mut self,
        source: impl Fn() -> Snapshot + Send,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let snapshot = source();
            self.evaluate(Arc::new(snapshot)).await;
        }
    }

    /// One evaluation of every rule against `snapshot` (taken now).
    pub async fn evaluate(&mut self, snapshot: Arc<Snapshot>) {
        let now = snapshot.at;
        self.history.push_back(snapshot.clone());
        let horizon = UnixMillis(now.0.saturating_sub(self.keep.as_millis() as i64));
        // Keep one snapshot at or before the horizon: it is the base of the longest window.
        while self.history.len() >= 2 && self.history[1].at <= horizon {
            self.history.pop_front();
        }
        let mut seen = HashSet::new();
        let mut events = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let timing = Timing {
                pending_for: rule.pending_for,
                clear_for: rule.clear_for,
                renotify: rule.renotify,
            };
            for target in eval::targets(rule, &snapshot) {
                let Some(reading) =
                    eval::read(rule, &target, &snapshot, &self.history, self.started)
                else {
                    continue;
                };
                let key = (i, target.clone());
                seen.insert(key.clone());
                let inst = self.instances.entry(key).or_insert(Instance {
                    state: AlertState::default(),
                    notified: 0,
                });
                let step = inst.state.step(now, reading.seen, &timing);
                let board_key = (rule.name.clone(), target.clone());
                let view = |state: &'static str, since: UnixMillis, notified: u32| AlertView {
                    rule: rule.name.clone(),
                    kind: rule.condition.kind(),
                    severity: rule.severity.as_str(),
                    channel: target.channel.clone(),
                    destination: target.destination.clone(),
                    state,
                    since,
                    resolved_at: None,
                    value: reading.value,
                    threshold: reading.threshold,
                    unit: reading.unit,
                    summary: reading.summary.clone(),
                    notified,
                };
                match step {
                    Step::Quiet => {}
                    Step::Fire => inst.notified = 1,
                    Step::Renotify | Step::Resolve { .. } => inst.notified += 1,
                }
                match (step, inst.state.phase) {
                    (Step::Resolve { since }, _) => {
                        let mut v = view("resolved", since, inst.notified);
                        v.resolved_at = Some(now);
                        self.board.set_active(board_key, None);
                        self.board.push_recent(v);
                        let notice =
                            notice(rule, &target, &reading, "resolved", since, Some(now), false);
                        self.notifiers.send(&rule.notify, &Arc::new(notice));
                        events.push(event(rule, &target, "resolved", &reading));
                        inst.notified = 0;
                    }
                    (_, Phase::Ok) => self.board.set_active(board_key, None),
                    (_, Phase::Pending { since }) => {
                        self.board
                            .set_active(board_key, Some(view("pending", since, 0)));
                    }
                    (step, Phase::Firing { since, .. }) => {
                        let v = view("firing", since, inst.notified);
                        self.board.set_active(board_key, Some(v.clone()));
                        if matches!(step, Step::Fire | Step::Renotify) {
                            let reminder = step == Step::Renotify;
                            let notice =
                                notice(rule, &target, &reading, "firing", since, None, reminder);
                            self.notifiers.send(&rule.notify, &Arc::new(notice));
                        }
                        if step == Step::Fire {
                            self.board.push_recent(v);
                            events.push(event(rule, &target, "firing", &reading));
                        }
                    }
                }
            }
        }
        // Targets gone (a channel removed from the snapshot): forget them quietly.
        let gone: Vec<(usize, Target)> = self
            .instances
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.instances.remove(&k);
            if let Some(rule) = self.rules.get(k.0) {
                self.board.set_active((rule.name.clone(), k.1), None);
            }
        }
        for e in events {
            if let Err(err) = self.store.add_event(e).await {
                tracing::error!(error = %err, "cannot record an alert event");
            }
        }
    }
}

fn notice(
    rule: &AlertRule,
    target: &Target,
    reading: &Reading,
    status: &'static str,
    since: UnixMillis,
    resolved: Option<UnixMillis>,
    reminder: bool,
) -> Notice {
    Notice {
        status,
        rule: rule.name.clone(),
        kind: rule.condition.kind(),
        severity: rule.severity.as_str(),
        channel: target.channel.clone(),
        destination: target.destination.clone(),
        summary: reading.summary.clone(),
        value: reading.value,
        threshold: reading.threshold,
        unit: reading.unit,
        started_at: rfc3339(since),
        resolved_at: resolved.map(rfc3339),
        reminder,
    }
}

fn event(rule: &AlertRule, target: &Target, status: &str, reading: &Reading) -> NewEvent {
    NewEvent {
        channel: target.channel.clone(),
        destination: target
            .destination
            .as_ref()
            .map(|d| crate::runtime::queue_name(&target.channel, d)),
        message_id: None,
        kind: EventKind::Alert,
        detail: format!(
            "{status}: {} ({}, {}): {}",
            rule.name,
            rule.condition.kind(),
            rule.severity.as_str(),
            reading.summary
        ),
    }
}

/// RFC 3339, UTC, with milliseconds.
pub fn rfc3339(at: UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(at.0)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
