//! What a rule's condition reads from the monitor's snapshots: for each instance (a channel,
//! or a destination of a channel), whether it holds now, the value it measured and what it
//! was compared with. Pure: snapshots and times in, readings out.
//!
//! Counters are totals since the engine started; a rule over a `window` takes the difference
//! between now and the newest snapshot at or before `now - window`, or the totals themselves
//! while the engine is younger than the window (they started from zero with it).

use std::time::Duration;

use causeway_store::UnixMillis;

use super::state::Observation;
use crate::config::alerts::{AlertRule, Condition};
use crate::monitor::{ChannelSnapshot, DestinationSnapshot, Snapshot};

/// One instance of a rule: the channel, and the destination for the kinds about one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub channel: String,
    pub destination: Option<String>,
}

/// What one evaluation of one instance measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub seen: Observation,
    /// What was measured (a ratio, a count, milliseconds: see `unit`).
    pub value: f64,
    /// What it was compared with, in the same unit.
    pub threshold: f64,
    pub unit: &'static str,
    /// One line for people, no PHI: names, counts and times only.
    pub summary: String,
}

/// True for the kinds with one instance per destination.
pub fn per_destination(rule: &AlertRule) -> bool {
    match rule.condition {
        Condition::QueueDepth { .. }
        | Condition::OldestAge { .. }
        | Condition::DestinationDown { .. } => true,
        Condition::AckTime { .. } => rule.destination.is_some(),
        _ => false,
    }
}

/// The instances of `rule` in `snapshot`.
pub fn targets(rule: &AlertRule, snapshot: &Snapshot) -> Vec<Target> {
    let mut out = Vec::new();
    for ch in &snapshot.channels {
        if rule.channel.as_ref().is_some_and(|c| c != &ch.name) {
            continue;
        }
        if per_destination(rule) {
            for d in &ch.destinations {
                if rule.destination.as_ref().is_none_or(|n| n == &d.name) {
                    out.push(Target {
                        channel: ch.name.clone(),
                        destination: Some(d.name.clone()),
                    });
                }
            }
        } else {
            out.push(Target {
                channel: ch.name.clone(),
                destination: None,
            });
        }
    }
    out
}

/// Snapshots taken at each evaluation, oldest first, for window differences.
pub trait History {
    /// The newest snapshot taken at or before `t`; `None` when every one is younger.
    fn base(&self, t: UnixMillis) -> Option<&Snapshot>;
}

impl History for std::collections::VecDeque<std::sync::Arc<Snapshot>> {
    fn base(&self, t: UnixMillis) -> Option<&Snapshot> {
        self.iter().rev().find(|s| s.at <= t).map(|s| &**s)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_millis() as f64
}

fn before(now: UnixMillis, d: Duration) -> UnixMillis {
    UnixMillis(now.0.saturating_sub(d.as_millis() as i64))
}

fn channel<'a>(s: &'a Snapshot, name: &str) -> Option<&'a ChannelSnapshot> {
    s.channels.iter().find(|c| c.name == name)
}

fn destination<'a>(ch: &'a ChannelSnapshot, name: &str) -> Option<&'a DestinationSnapshot> {
    ch.destinations.iter().find(|d| d.name == name)
}

/// Reads `rule` for `target` from `now` (the snapshot just taken), with `history` for windows
/// and `started` (when evaluation began) standing in for a `last_received` never set.
/// `None` when the target is gone from the snapshot.
pub fn read(
    rule: &AlertRule,
    target: &Target,
    now: &Snapshot,
    history: &impl History,
    started: UnixMillis,
) -> Option<Reading> {
    let ch = channel(now, &target.channel)?;
    let dest = match &target.destination {
        Some(d) => Some(destination(ch, d)?),
        None => None,
    };
    let base_channel = |window: Duration| {
        history
            .base(before(now.at, window))
            .and_then(|b| channel(b, &target.channel))
    };
    let holds = |b: bool| {
        if b {
            Observation::Holds
        } else {
            Observation::Clear
        }
    };
    let where_ = match &target.destination {
        Some(d) => format!("{}/{d}", target.channel),
        None => target.channel.clone(),
    };
    Some(match &rule.condition {
        Condition::ErrorRate {
            window,
            threshold,
            min_messages,
        } => {
            let (r0, bad0) =
                base_channel(*window).map_or((0, 0), |b| (b.received, b.rejected + b.errored));
            let received = ch.received.saturating_sub(r0);
            let bad = (ch.rejected + ch.errored).saturating_sub(bad0);
            let rate = if received == 0 {
                0.0
            } else {
                bad as f64 / received as f64
            };
            Reading {
                seen: holds(received >= *min_messages && rate > *threshold),
                value: rate,
                threshold: *threshold,
                unit: "ratio",
                summary: format!(
                    "{where_}: {bad} of {received} messages rejected or in error in the last {} ({:.1}%, threshold {:.1}%)",
                    crate::config::units::format_duration(*window),
                    rate * 100.0,
                    threshold * 100.0
                ),
            }
        }
        Condition::QueueDepth { max } => {
            let d = dest?;
            Reading {
                seen: holds(d.queue_depth > *max),
                value: d.queue_depth as f64,
                threshold: *max as f64,
                unit: "messages",
                summary: format!(
                    "{where_}: {} messages waiting (more than {max} fires)",
                    d.queue_depth
                ),
            }
        }
        Condition::OldestAge { max_age } => {
            let d = dest?;
            let age = d.oldest_age_ms.unwrap_or(0);
            Reading {
                seen: holds(d.oldest_age_ms.is_some() && age as f64 > ms(*max_age)),
                value: age as f64,
                threshold: ms(*max_age),
                unit: "ms",
                summary: format!(
                    "{where_}: the oldest waiting message is {} old (limit {})",
                    human(age),
                    crate::config::units::format_duration(*max_age)
                ),
            }
        }
        Condition::Silence { window, schedule } => {
            let last = ch.last_received.unwrap_or(started).max(started);
            let quiet = now.at.0.saturating_sub(last.0).max(0) as u64;
            let in_schedule = schedule.as_ref().is_none_or(|s| {
                jiff::Timestamp::from_millisecond(now.at.0).is_ok_and(|t| s.contains(t))
            });
            Reading {
                seen: if !ch.running || !in_schedule {
                    Observation::Skip
                } else {
                    holds(quiet as f64 >= ms(*window))
                },
                value: quiet as f64,
                threshold: ms(*window),
                unit: "ms",
                summary: match ch.last_received {
                    Some(_) => format!("{where_}: no message received for {}", human(quiet)),
                    None => format!(
                        "{where_}: no message received since the engine started, {} ago",
                        human(quiet)
                    ),
                },
            }
        }
        Condition::DestinationDown {
            failures,
            no_success_for,
        } => {
            let d = dest?;
            let failing = failures.is_some_and(|n| d.consecutive_failures >= n);
            // How long messages have waited without a success: no longer than the oldest
            // waiting message, so a quiet queue's old last success does not count.
            let waiting_ms = match (d.queue_depth, d.oldest_age_ms) {
                (0, _) | (_, None) => 0,
                (_, Some(age)) => {
                    let since_success = d
                        .last_success
                        .map_or(u64::MAX, |t| now.at.0.saturating_sub(t.0).max(0) as u64);
                    age.min(since_success)
                }
            };
            let stalled = no_success_for.is_some_and(|limit| waiting_ms as f64 >= ms(limit));
            let (value, threshold, unit) = match (failures, no_success_for) {
                (Some(n), _) if failing || no_success_for.is_none() => {
                    (d.consecutive_failures as f64, *n as f64, "failures")
                }
                (_, Some(limit)) => (waiting_ms as f64, ms(*limit), "ms"),
                _ => (d.consecutive_failures as f64, 0.0, "failures"),
            };
            Reading {
                seen: holds(failing || stalled),
                value,
                threshold,
                unit,
                summary: format!(
                    "{where_}: {} consecutive failed attempts, {} waiting, {}",
                    d.consecutive_failures,
                    d.queue_depth,
                    match d.last_success {
                        Some(t) => format!(
                            "last success {} ago",
                            human(now.at.0.saturating_sub(t.0).max(0) as u64)
                        ),
                        None => "no success since the engine started".to_string(),
                    }
                ),
            }
        }
        Condition::AckTime {
            window,
            quantile,
            objective,
            min_messages,
        } => {
            let base = base_channel(*window);
            let hist = match (dest, &target.destination) {
                (Some(d), Some(name)) => {
                    let earlier = base.and_then(|b| destination(b, name)).map(|b| &b.ack);
                    earlier.map_or_else(|| d.ack.clone(), |e| d.ack.since(e))
                }
                _ => base.map_or_else(|| ch.ack.clone(), |b| ch.ack.since(&b.ack)),
            };
            let q = hist.quantile(*quantile).unwrap_or(0.0);
            let what = if dest.is_some() {
                "wait for the destination's ACK"
            } else {
                "time to ACK"
            };
            Reading {
                seen: holds(hist.count >= *min_messages && q > ms(*objective)),
                value: q,
                threshold: ms(*objective),
                unit: "ms",
                summary: format!(
                    "{where_}: p{} {what} {} over {} messages in the last {} (objective {})",
                    (quantile * 100.0).round(),
                    human(q as u64),
                    hist.count,
                    crate::config::units::format_duration(*window),
                    crate::config::units::format_duration(*objective)
                ),
            }
        }
        Condition::UnmappedCode { window } => {
            let n = ch
                .unmapped_codes
                .saturating_sub(base_channel(*window).map_or(0, |b| b.unmapped_codes));
            Reading {
                seen: holds(n > 0),
                value: n as f64,
                threshold: 0.0,
                unit: "codes",
                summary: format!(
                    "{where_}: {n} unmapped code values in the last {}",
                    crate::config::units::format_duration(*window)
                ),
            }
        }
        Condition::Drift { window } => {
            let n = ch
                .drift_findings
                .saturating_sub(base_channel(*window).map_or(0, |b| b.drift_findings));
            Reading {
                seen: holds(n > 0),
                value: n as f64,
                threshold: 0.0,
                unit: "findings",
                summary: format!(
                    "{where_}: {n} drift findings in the last {}",
                    crate::config::units::format_duration(*window)
                ),
            }
        }
        Condition::BadInput { window } => {
            let base = base_channel(*window).map_or_else(Default::default, |b| b.source_counts);
            let counts = &ch.source_counts;
            let kinds = [
                (
                    counts.garbage_bytes.saturating_sub(base.garbage_bytes),
                    "bytes outside MLLP frames",
                ),
                (
                    counts
                        .oversized_frames
                        .saturating_sub(base.oversized_frames),
                    "oversized frames",
                ),
                (
                    counts.read_timeouts.saturating_sub(base.read_timeouts),
                    "frames left unfinished",
                ),
                (
                    counts.tls_failures.saturating_sub(base.tls_failures),
                    "failed TLS handshakes",
                ),
                (
                    counts.files_failed.saturating_sub(base.files_failed),
                    "files moved to error",
                ),
            ];
            // Each kind that occurred counts once: bytes and events do not add up.
            let seen: Vec<String> = kinds
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            Reading {
                seen: holds(!seen.is_empty()),
                value: seen.len() as f64,
                threshold: 0.0,
                unit: "kinds of bad input",
                summary: format!(
                    "{where_}: {} in the last {}",
                    if seen.is_empty() {
                        "no bad input".to_owned()
                    } else {
                        seen.join(", ")
                    },
                    crate::config::units::format_duration(*window)
                ),
            }
        }
    })
}

/// `850ms`, `12s`, `5m 3s`, `2h 5m`: a duration for people.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use super::*;
    use crate::config::alerts::Severity;
    use crate::monitor::Histogram;

    fn rule(condition: Condition) -> AlertRule {
        AlertRule {
            name: "r".into(),
            condition,
            channel: None,
            destination: None,
            pending_for: Duration::ZERO,
            clear_for: Duration::ZERO,
            notify: Vec::new(),
            renotify: None,
            severity: Severity::Warning,
        }
    }

    fn histogram() -> Histogram {
        Histogram {
            bounds_ms: vec![10.0, 100.0, 1000.0],
            counts: vec![0; 4],
            count: 0,
            sum_ms: 0.0,
        }
    }

    fn dest(name: &str) -> DestinationSnapshot {
        DestinationSnapshot {
            name: name.into(),
            queue: format!("adt/{name}"),
            queue_depth: 0,
            oldest_age_ms: None,
            delivered: 0,
            retried: 0,
            failed: 0,
            consecutive_failures: 0,
            last_success: None,
            last_failure: None,
            ack: histogram(),
        }
    }

    fn snap(at: i64, f: impl FnOnce(&mut ChannelSnapshot)) -> Snapshot {
        let mut ch = ChannelSnapshot {
            name: "adt".into(),
            running: true,
            source: "mllp",
            received: 0,
            accepted: 0,
            rejected: 0,
            filtered: 0,
            errored: 0,
            duplicates: 0,
            store_failures: 0,
            unmapped_codes: 0,
            script_errors: 0,
            drift_findings: 0,
            connections_open: 0,
            source_counts: Default::default(),
            last_received: None,
            ack: histogram(),
            destinations: vec![dest("lab")],
        };
        f(&mut ch);
        Snapshot {
            at: UnixMillis(at),
            channels: vec![ch],
        }
    }

    fn history(snaps: Vec<Snapshot>) -> VecDeque<Arc<Snapshot>> {
        snaps.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn error_rate_counts_the_window_only() {
        let r = rule(Condition::ErrorRate {
            window: Duration::from_secs(60),
            threshold: 0.1,
            min_messages: 5,
        });
        let t = &targets(&r, &snap(0, |_| {}))[0];
        let h = history(vec![
            snap(0, |c| c.received = 0),
            snap(60_000, |c| {
                c.received = 100;
                c.rejected = 50;
            }),
        ]);
        // 60 s later: 10 more received, 1 more rejected: 10%, not above.
        let now = snap(120_000, |c| {
            c.received = 110;
            c.rejected = 51;
        });
        let got = read(&r, t, &now, &h, UnixMillis(0)).unwrap();
        assert_eq!((got.seen, got.value), (Observation::Clear, 0.1));
        let now = snap(120_000, |c| {
            c.received = 110;
            c.rejected = 51;
            c.errored = 1;
        });
        let got = read(&r, t, &now, &h, UnixMillis(0)).unwrap();
        assert_eq!(got.seen, Observation::Holds);
        assert_eq!(got.value, 0.2);
        // Under min_messages: never.
        let now = snap(120_000, |c| {
            c.received = 104;
            c.rejected = 54;
        });
        assert_eq!(
            read(&r, t, &now, &h, UnixMillis(0)).unwrap().seen,
            Observation::Clear
        );
    }

    #[test]
    fn destination_kinds_have_one_instance_per_destination() {
        let r = rule(Condition::QueueDepth { max: 3 });
        let s = snap(0, |c| {
            c.destinations.push(DestinationSnapshot {
                queue_depth: 4,
                ..dest("ris")
            })
        });
        let ts = targets(&r, &s);
        assert_eq!(ts.len(), 2);
        let h = history(vec![]);
        let seen: Vec<Observation> = ts
            .iter()
            .map(|t| read(&r, t, &s, &h, UnixMillis(0)).unwrap().seen)
            .collect();
        assert_eq!(seen, [Observation::Clear, Observation::Holds]);
    }

    #[test]
    fn silence_counts_from_start_and_skips_stopped_channels() {
        let r = rule(Condition::Silence {
            window: Duration::from_secs(10),
            schedule: None,
        });
        let h = history(vec![]);
        let t = &targets(&r, &snap(0, |_| {}))[0];
        let read_at = |at: i64, last: Option<i64>, running: bool| {
            let s = snap(at, |c| {
                c.last_received = last.map(UnixMillis);
                c.running = running;
            });
            read(&r, t, &s, &h, UnixMillis(1_000)).unwrap().seen
        };
        assert_eq!(read_at(5_000, None, true), Observation::Clear);
        assert_eq!(read_at(11_000, None, true), Observation::Holds);
        assert_eq!(read_at(11_000, Some(9_000), true), Observation::Clear);
        assert_eq!(read_at(20_000, Some(9_000), true), Observation::Holds);
        assert_eq!(read_at(20_000, Some(9_000), false), Observation::Skip);
    }

    #[test]
    fn destination_down_by_failures_or_stall() {
        let r = rule(Condition::DestinationDown {
            failures: Some(3),
            no_success_for: Some(Duration::from_secs(30)),
        });
        let h = history(vec![]);
        let t = Target {
            channel: "adt".into(),
            destination: Some("lab".into()),
        };
        let at = |f: &dyn Fn(&mut DestinationSnapshot)| {
            let s = snap(100_000, |c| f(&mut c.destinations[0]));
            read(&r, &t, &s, &h, UnixMillis(0)).unwrap().seen
        };
        assert_eq!(at(&|d| d.consecutive_failures = 2), Observation::Clear);
        assert_eq!(at(&|d| d.consecutive_failures = 3), Observation::Holds);
        // A message waiting 40 s, the last success long ago: stalled.
        assert_eq!(
            at(&|d| {
                d.queue_depth = 1;
                d.oldest_age_ms = Some(40_000);
                d.last_success = Some(UnixMillis(0));
            }),
            Observation::Holds
        );
        // The last success long ago but the waiting message is fresh: not yet.
        assert_eq!(
            at(&|d| {
                d.queue_depth = 1;
                d.oldest_age_ms = Some(1_000);
                d.last_success = Some(UnixMillis(0));
            }),
            Observation::Clear
        );
    }

    #[test]
    fn ack_time_takes_the_quantile_of_the_window() {
        let r = rule(Condition::AckTime {
            window: Duration::from_secs(60),
            quantile: 0.95,
            objective: Duration::from_millis(100),
            min_messages: 1,
        });
        let hist = |fast: u64, slow: u64| Histogram {
            bounds_ms: vec![10.0, 100.0, 1000.0],
            counts: vec![fast, 0, slow, 0],
            count: fast + slow,
            sum_ms: (fast * 5 + slow * 500) as f64,
        };
        let h = history(vec![snap(0, |c| c.ack = hist(0, 50))]);
        let t = &targets(&r, &snap(0, |_| {}))[0];
        // 50 slow ones are older than the window's start: only the 100 fast ones count.
        let now = snap(61_000, |c| c.ack = hist(100, 50));
        let got = read(&r, t, &now, &h, UnixMillis(0)).unwrap();
        assert_eq!(got.seen, Observation::Clear, "{got:?}");
        let now = snap(61_000, |c| c.ack = hist(100, 60));
        let got = read(&r, t, &now, &h, UnixMillis(0)).unwrap();
        assert_eq!(got.seen, Observation::Holds, "{got:?}");
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(850), "850ms");
        assert_eq!(human(12_000), "12s");
        assert_eq!(human(303_000), "5m 3s");
        assert_eq!(human(7_500_000), "2h 5m");
    }
}
