//! Notifiers: where firing, reminder and recovery notices go (`[[notifier]]`).
//!
//! Each notifier has its own task fed by a bounded queue, so the evaluator only queues a
//! notice and moves on: a slow or unreachable receiver never delays evaluation, and the other
//! notifiers are not held up. A task sends its notices in order; a failed send is logged and
//! tried again after a delay doubling from [`RETRY_INITIAL`] up to [`RETRY_MAX`], at most the
//! notifier's `retries` times, then given up (logged). Notices still queued at shutdown are
//! dropped (counted in the log): alert state lives in memory and a restarted engine evaluates
//! afresh.
//!
//! A notice carries rule and target names, numbers and times: never a message or a patient
//! field.

mod email;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::alerts::{NotifierConfig, NotifierKind};

/// First delay before sending a notice again.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);

/// Longest delay between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Notices waiting per notifier: far more than an outage produces (one per alert and
/// transition); past it new notices are dropped with an error in the log rather than memory
/// growing while a receiver is down.
pub const QUEUE_LEN: usize = 1024;

/// What a notifier is told: the JSON a webhook receives, and what an e-mail or log line says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// `firing` (also for reminders) or `resolved`.
    pub status: &'static str,
    pub rule: String,
    /// The rule's type, e.g. `queue_depth`.
    pub kind: &'static str,
    pub severity: &'static str,
    pub channel: String,
    pub destination: Option<String>,
    /// One line for people (names, counts, times; no PHI).
    pub summary: String,
    /// The last measured value and the rule's threshold, in `unit`.
    pub value: f64,
    pub threshold: f64,
    /// `ratio`, `messages`, `ms`, `failures`, `codes` or `findings`.
    pub unit: &'static str,
    /// When it fired (RFC 3339, UTC).
    pub started_at: String,
    /// When it was resolved; `null` while firing.
    pub resolved_at: Option<String>,
    /// True for a reminder of an alert already notified.
    pub reminder: bool,
}

impl Notice {
    /// `FIRING` or `RESOLVED`, and where: the start of a subject or log line.
    pub fn headline(&self) -> String {
        let what = match (self.status, self.reminder) {
            ("resolved", _) => "RESOLVED",
            (_, true) => "STILL FIRING",
            _ => "FIRING",
        };
        let at = match &self.destination {
            Some(d) => format!("{}/{d}", self.channel),
            None => self.channel.clone(),
        };
        format!(
            "{what}: {} ({}, {}) on {at}",
            self.rule, self.kind, self.severity
        )
    }
}

/// One way of sending a notice.
enum Sender {
    Webhook(webhook::WebhookSender),
    Email(Box<email::EmailSender>),
    Log,
}

impl Sender {
    async fn send(&self, notice: &Notice) -> Result<(), String> {
        match self {
            Sender::Webhook(w) => w.send(notice).await,
            Sender::Email(e) => e.send(notice).await,
            Sender::Log => {
                if notice.status == "resolved" {
                    tracing::info!(
                        rule = %notice.rule,
                        kind = notice.kind,
                        channel = %notice.channel,
                        destination = notice.destination.as_deref().unwrap_or(""),
                        "alert resolved: {}",
                        notice.summary
                    );
                } else {
                    tracing::warn!(
                        rule = %notice.rule,
                        kind = notice.kind,
                        severity = notice.severity,
                        channel = %notice.channel,
                        destination = notice.destination.as_deref().unwrap_or(""),
                        value = notice.value,
                        threshold = notice.threshold,
                        reminder = notice.reminder,
                        "alert firing: {}",
                        notice.summary
                    );
                }
                Ok(())
            }
        }
    }
}

/// The running notifiers, by name.
#[derive(Debug, Clone, Default)]
pub struct Notifiers {
    queues: BTreeMap<String, mpsc::Sender<Arc<Notice>>>,
}

/// A notifier that could not be built (an HTTP client, an SMTP transport).
#[derive(Debug, thiserror::Error)]
#[error("notifier {name}: {message}")]
pub struct NotifierError {
    pub name: String,
    pub message: String,
}

/// Notifiers built but not yet running (see [`Notifiers::build`]).
pub struct BuiltNotifiers(Vec<(String, Sender, u32)>);

impl std::fmt::Debug for BuiltNotifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _, _)| n))
            .finish()
    }
}

impl BuiltNotifiers {
    /// Spawns one task per notifier on `tasks`; each ends on `shutdown`.
    pub fn start(self, tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) -> Notifiers {
        let mut queues = BTreeMap::new();
        for (name, sender, retries) in self.0 {
            let (tx, rx) = mpsc::channel(QUEUE_LEN);
            queues.insert(name.clone(), tx);
            tasks.spawn(deliver(name, sender, retries, rx, shutdown.clone()));
        }
        Notifiers { queues }
    }
}

impl Notifiers {
    /// Builds every notifier (HTTP clients, SMTP transports) without starting any, so that a
    /// failure leaves nothing running.
    pub fn build(configs: &[NotifierConfig]) -> Result<BuiltNotifiers, NotifierError> {
        let mut built = Vec::new();
        for c in configs {
            let fail = |message: String| NotifierError {
                name: c.name.clone(),
                message,
            };
            let (sender, retries) = match &c.kind {
                NotifierKind::Webhook(w) => (
                    Sender::Webhook(webhook::WebhookSender::new(w).map_err(fail)?),
                    w.retries,
                ),
                NotifierKind::Email(e) => (
                    Sender::Email(Box::new(email::EmailSender::new(e).map_err(fail)?)),
                    e.retries,
                ),
                NotifierKind::Log => (Sender::Log, 0),
            };
            built.push((c.name.clone(), sender, retries));
        }
        Ok(BuiltNotifiers(built))
    }

    /// Queues `notice` for each of `names` without waiting.
    pub fn send(&self, names: &[String], notice: &Arc<Notice>) {
        for name in names {
            let Some(q) = self.queues.get(name) else {
                continue;
            };
            if q.try_send(notice.clone()).is_err() {
                tracing::error!(
                    notifier = %name,
                    rule = %notice.rule,
                    status = notice.status,
                    "notifier queue full or closed; notice dropped"
                );
            }
        }
    }
}

/// One notifier's task: sends queued notices in order, each with bounded retries.
async fn deliver(
    name: String,
    sender: Sender,
    retries: u32,
    mut rx: mpsc::Receiver<Arc<Notice>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let notice = tokio::select! {
            n = rx.recv() => match n {
                Some(n) => n,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let mut attempt = 0u32;
        loop {
            match sender.send(&notice).await {
                Ok(()) => {
                    tracing::debug!(notifier = %name, rule = %notice.rule, status = notice.status, "notice sent");
                    break;
                }
                Err(e) if attempt < retries => {
                    let delay = RETRY_INITIAL
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(RETRY_MAX);
                    attempt += 1;
                    tracing::warn!(
                        notifier = %name, rule = %notice.rule, status = notice.status,
                        attempt, retry_in_ms = delay.as_millis() as u64, error = %e,
                        "sending an alert notice failed; will retry"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => {
                            tracing::warn!(notifier = %name, rule = %notice.rule, "shutting down; notice not sent");
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(
                        notifier = %name, rule = %notice.rule, status = notice.status,
                        attempts = attempt + 1, error = %e,
                        "sending an alert notice failed; giving up"
                    );
                    break;
                }
            }
        }
    }
    let left = rx.len();
    if left > 0 {
        tracing::warn!(notifier = %name, notices = left, "shutting down; queued notices not sent");
    }
}
