//! The life of one alert instance (a rule on one channel or destination), as a pure function
//! of what each evaluation observed and when.
//!
//! ```text
//!            holds                  held for `for`              clear for `clear_for`
//!   Ok ───────────────> Pending ───────────────────> Firing ─────────────────────────> Ok
//!    ^                    │ clear                      │ └─ still holds after `renotify`:
//!    └────────────────────┘ (nothing sent)             │    one reminder
//!                                                      └─ clear, then holds again before
//!                                                         `clear_for`: still the same alert
//! ```
//!
//! One sustained outage gives one `Fire` and one `Resolve`: a condition flapping at its
//! threshold keeps a firing alert firing (the clear spells are shorter than `clear_for`), and
//! one flapping below `for` never fires. Outside a rule's schedule (`Skip`) nothing is sent:
//! a pending alert goes back to Ok, a firing one waits.

use std::time::Duration;

use causeway_store::UnixMillis;

/// When an instance moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long the condition must hold before firing.
    pub pending_for: Duration,
    /// How long it must stay clear before resolving.
    pub clear_for: Duration,
    /// Reminder interval while firing; `None`: never.
    pub renotify: Option<Duration>,
}

/// What one evaluation saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The condition holds.
    Holds,
    /// It does not.
    Clear,
    /// The rule does not apply now (outside its schedule, a stopped channel).
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Ok,
    /// Holding since `since`, not yet for `pending_for`.
    Pending { since: UnixMillis },
    /// Fired at `since`; last notice at `notified_at`; clear since `clear_since`, if it is.
    Firing {
        since: UnixMillis,
        notified_at: UnixMillis,
        clear_since: Option<UnixMillis>,
    },
}

/// What the caller must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send.
    Quiet,
    /// The alert fires: notify, record.
    Fire,
    /// Still firing after `renotify`: remind.
    Renotify,
    /// The alert is over: send the one recovery notice; it had fired at `since`.
    Resolve { since: UnixMillis },
}

/// The state of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertState {
    pub phase: Phase,
}

fn elapsed(from: UnixMillis, to: UnixMillis) -> Duration {
    Duration::from_millis(to.0.saturating_sub(from.0).max(0) as u64)
}

impl AlertState {
    /// Moves on with what was observed at `now`.
    pub fn step(&mut self, now: UnixMillis, seen: Observation, t: &Timing) -> Step {
        use Observation::*;
        match (self.phase, seen) {
            (Phase::Ok, Holds) => {
                self.phase = Phase::Pending { since: now };
                self.fire_if_due(now, t)
            }
            (Phase::Ok, _) => Step::Quiet,
            (Phase::Pending { .. }, Holds) => self.fire_if_due(now, t),
            (Phase::Pending { .. }, Clear | Skip) => {
                self.phase = Phase::Ok;
                Step::Quiet
            }
            (
                Phase::Firing {
                    since, notified_at, ..
                },
                Holds,
            ) => {
                let due = t
                    .renotify
                    .is_some_and(|every| elapsed(notified_at, now) >= every);
                self.phase = Phase::Firing {
                    since,
                    notified_at: if due { now } else { notified_at },
                    clear_since: None,
                };
                if due { Step::Renotify } else { Step::Quiet }
            }
            (
                Phase::Firing {
                    since,
                    notified_at,
                    clear_since,
                },
                Clear,
            ) => {
                let clear_since = clear_since.unwrap_or(now);
                if elapsed(clear_since, now) >= t.clear_for {
                    self.phase = Phase::Ok;
                    Step::Resolve { since }
                } else {
                    self.phase = Phase::Firing {
                        since,
                        notified_at,
                        clear_since: Some(clear_since),
                    };
                    Step::Quiet
                }
            }
            (Phase::Firing { .. }, Skip) => Step::Quiet,
        }
    }

    fn fire_if_due(&mut self, now: UnixMillis, t: &Timing) -> Step {
        let Phase::Pending { since } = self.phase else {
            return Step::Quiet;
        };
        if elapsed(since, now) >= t.pending_for {
            self.phase = Phase::Firing {
                since: now,
                notified_at: now,
                clear_since: None,
            };
            Step::Fire
        } else {
            Step::Quiet
        }
    }

    /// `pending`, `firing`, or `ok`.
    pub fn name(&self) -> &'static str {
        match self.phase {
            Phase::Ok => "ok",
            Phase::Pending { .. } => "pending",
            Phase::Firing { .. } => "firing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Observation::*;
    use super::*;

    const S: i64 = 1000;

    fn timing(pending_for: u64, clear_for: u64, renotify: Option<u64>) -> Timing {
        Timing {
            pending_for: Duration::from_secs(pending_for),
            clear_for: Duration::from_secs(clear_for),
            renotify: renotify.map(Duration::from_secs),
        }
    }

    /// Steps through `(second, observation)` and returns every step that is not Quiet.
    fn run(t: &Timing, seen: &[(i64, Observation)]) -> Vec<(i64, Step)> {
        let mut s = AlertState::default();
        seen.iter()
            .filter_map(|&(at, o)| {
                let step = s.step(UnixMillis(at * S), o, t);
                (step != Step::Quiet).then_some((at, step))
            })
            .collect()
    }

    #[test]
    fn a_sustained_condition_fires_once_and_resolves_once() {
        let t = timing(0, 10, None);
        let mut seen: Vec<(i64, Observation)> = (0..100).map(|s| (s, Holds)).collect();
        seen.extend((100..200).map(|s| (s, Clear)));
        assert_eq!(
            run(&t, &seen),
            [
                (0, Step::Fire),
                (
                    110,
                    Step::Resolve {
                        since: UnixMillis(0)
                    }
                )
            ]
        );
    }

    #[test]
    fn for_delays_firing_and_a_short_blip_never_fires() {
        let t = timing(30, 0, None);
        // 20 s of trouble, then clear: under `for`, nothing at all.
        let mut seen: Vec<(i64, Observation)> = (0..20).map(|s| (s, Holds)).collect();
        seen.extend((20..40).map(|s| (s, Clear)));
        assert_eq!(run(&t, &seen), []);
        // 40 s of trouble: fires at 30 s, resolves at the first clear evaluation.
        let mut seen: Vec<(i64, Observation)> = (0..40).map(|s| (s, Holds)).collect();
        seen.push((40, Clear));
        assert_eq!(
            run(&t, &seen),
            [
                (30, Step::Fire),
                (
                    40,
                    Step::Resolve {
                        since: UnixMillis(30 * S)
                    }
                )
            ]
        );
    }

    #[test]
    fn flapping_at_the_threshold_does_not_storm() {
        // Holds and clears on alternate evaluations for ten minutes, then settles clear.
        let t = timing(0, 10, Some(3600));
        let mut seen: Vec<(i64, Observation)> = (0..600)
            .step_by(5)
            .map(|s| (s, if s % 10 == 0 { Holds } else { Clear }))
            .collect();
        seen.extend((600..700).step_by(5).map(|s| (s, Clear)));
        assert_eq!(
            run(&t, &seen),
            [
                (0, Step::Fire),
                (
                    605,
                    Step::Resolve {
                        since: UnixMillis(0)
                    }
                )
            ],
            "one alert, one all-clear"
        );
        // Flapping below `for` never fires at all.
        let t = timing(20, 10, None);
        let seen: Vec<(i64, Observation)> = (0..600)
            .step_by(5)
            .map(|s| (s, if s % 15 == 0 { Clear } else { Holds }))
            .collect();
        assert_eq!(run(&t, &seen), []);
    }

    #[test]
    fn renotify_after_the_interval_only() {
        let t = timing(0, 0, Some(60));
        let mut seen: Vec<(i64, Observation)> = (0..=150).step_by(10).map(|s| (s, Holds)).collect();
        seen.push((160, Clear));
        assert_eq!(
            run(&t, &seen),
            [
                (0, Step::Fire),
                (60, Step::Renotify),
                (120, Step::Renotify),
                (
                    160,
                    Step::Resolve {
                        since: UnixMillis(0)
                    }
                )
            ]
        );
        // Off: never.
        let t = timing(0, 0, None);
        let seen: Vec<(i64, Observation)> = (0..=1000).step_by(10).map(|s| (s, Holds)).collect();
        assert_eq!(run(&t, &seen), [(0, Step::Fire)]);
    }

    #[test]
    fn outside_the_schedule_nothing_is_sent() {
        let t = timing(10, 0, Some(60));
        // Pending, then out of schedule: back to Ok, so `for` starts again afterwards.
        assert_eq!(run(&t, &[(0, Holds), (5, Skip), (12, Holds)]), []);
        // Firing, then out of schedule for hours: no reminder, no recovery.
        let seen = [
            (0, Holds),
            (10, Holds),
            (20, Skip),
            (5000, Skip),
            (6000, Clear),
        ];
        assert_eq!(
            run(&t, &seen),
            [
                (10, Step::Fire),
                (
                    6000,
                    Step::Resolve {
                        since: UnixMillis(10 * S)
                    }
                )
            ]
        );
    }

    #[test]
    fn a_recovery_is_sent_once() {
        let t = timing(0, 0, None);
        let seen = [(0, Holds), (1, Clear), (2, Clear), (3, Clear)];
        assert_eq!(
            run(&t, &seen),
            [
                (0, Step::Fire),
                (
                    1,
                    Step::Resolve {
                        since: UnixMillis(0)
                    }
                )
            ]
        );
    }
}
