//! Live figures of every channel: what `/metrics`, the dashboard and the alert rules read.
//!
//! The counters themselves are atomics bumped on the hot paths ([`ChannelStats`] by ingest,
//! [`DestinationStats`] by the destination workers, latency into a [`LatencyHistogram`]): a
//! message pays a few relaxed increments, never a lock or an allocation. The [`Monitor`]
//! reads them: [`Monitor::snapshot`] at any time, and a sampler task once a second, which
//! also asks the store for the queue gauges (depth, age of the oldest queued message), keeps
//! an hour of samples for charts and alert windows, and broadcasts each one to live viewers.
//!
//! Nothing here carries PHI: names of channels and destinations, counts and durations.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use causeway_store::{GROUP_TIME_BOUNDS_MS, GROUP_TIME_BUCKETS, Store, UnixMillis};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::runtime::channel::{Channel, ChannelStats};
use crate::sources::SourceStats;

/// How often the sampler takes a snapshot.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How many samples are kept (an hour at one a second): enough for the dashboard's charts
/// and for alert windows up to an hour.
pub const HISTORY_SAMPLES: usize = 3600;

/// Upper bounds of the latency buckets, in milliseconds; one more bucket takes the rest.
/// From a sub-millisecond local commit to the 30 s an ACK timeout typically allows: the
/// store's transaction buckets, so time to ACK and the commit it waited for read side by side.
pub const LATENCY_BOUNDS_MS: [f64; 15] = GROUP_TIME_BOUNDS_MS;

/// A latency histogram updated with relaxed atomics (one increment per bucket hit, one for
/// the sum), read as a [`Histogram`].
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn read(&self) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Histogram {
            bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum_ms: self.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// A latency distribution at one moment: `counts[i]` observations fell in
/// `(bounds_ms[i-1], bounds_ms[i]]`, the last count above every bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub bounds_ms: Vec<f64>,
    /// Per bucket, not cumulative; one more than `bounds_ms` (the last is above them all).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_ms: f64,
}

impl Histogram {
    /// What was observed between `earlier` and `self` (of the same series): for a window.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Histogram {
            bounds_ms: self.bounds_ms.clone(),
            count: counts.iter().sum(),
            counts,
            sum_ms: (self.sum_ms - earlier.sum_ms).max(0.0),
        }
    }

    /// The `q` quantile (0..=1), as the upper bound of the bucket it falls in, interpolated
    /// linearly inside the bucket (what Prometheus' `histogram_quantile` does). `None`
    /// without observations; an observation above every bound reads as the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let Some(&upper) = self.bounds_ms.get(i) else {
                    return self.bounds_ms.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds_ms[i - 1] };
                let into = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * into);
            }
            seen += n;
        }
        self.bounds_ms.last().copied()
    }

    /// The store's committed transactions by duration (`WriteStats::group_time`), `total`
    /// being the time they took together (work and COMMIT).
    pub fn store_transactions(group_time: &[u64; GROUP_TIME_BUCKETS], total: Duration) -> Self {
        Histogram {
            bounds_ms: GROUP_TIME_BOUNDS_MS.to_vec(),
            counts: group_time.to_vec(),
            count: group_time.iter().sum(),
            sum_ms: total.as_secs_f64() * 1000.0,
        }
    }

    /// Mean observation in ms.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }
}

/// Counters of one destination, shared by its workers. No PHI.
#[derive(Debug, Default)]
pub struct DestinationStats {
    pub delivered: AtomicU64,
    /// Attempts that failed and will be tried again.
    pub retried: AtomicU64,
    /// Deliveries that failed for good (to the error queue).
    pub failed: AtomicU64,
    /// Attempts that did not succeed since the last success.
    pub consecutive_failures: AtomicU64,
    /// Unix ms of the last success and failure; 0 = never.
    pub last_success_ms: AtomicI64,
    pub last_failure_ms: AtomicI64,
    /// How long each attempt waited for the receiver's answer.
    pub ack: LatencyHistogram,
}

impl DestinationStats {
    /// Records one attempt's outcome: `Some(true)` delivered, `Some(false)` failed for good,
    /// `None` will be retried.
    pub fn record(&self, outcome: Option<bool>, elapsed: Duration) {
        self.ack.record(elapsed);
        let now = UnixMillis::now().0;
        match outcome {
            Some(true) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.last_success_ms.store(now, Ordering::Relaxed);
            }
            Some(false) | None => {
                let counter = if outcome.is_some() {
                    &self.failed
                } else {
                    &self.retried
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                self.last_failure_ms.store(now, Ordering::Relaxed);
            }
        }
    }
}

/// One destination of a channel as the monitor sees it.
#[derive(Debug, Clone)]
pub struct DestinationHandle {
    pub name: String,
    /// Its queue in the store (`channel/destination`).
    pub queue: String,
    pub stats: Arc<DestinationStats>,
}

/// Every channel's figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Unix milliseconds.
    #[serde(serialize_with = "millis")]
    pub at: UnixMillis,
    pub channels: Vec<ChannelSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelSnapshot {
    pub name: String,
    pub running: bool,
    /// The source's kind: `mllp`, `http`, `directory` or `fhir-api`.
    pub source: &'static str,
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub filtered: u64,
    pub errored: u64,
    pub duplicates: u64,
    pub store_failures: u64,
    pub unmapped_codes: u64,
    pub script_errors: u64,
    pub drift_findings: u64,
    /// Open connections of an MLLP source (0 for other sources).
    pub connections_open: u64,
    /// What the source saw besides messages (skipped bytes, refused frames, files moved).
    pub source_counts: SourceCounts,
    /// When the last message came in (Unix ms).
    #[serde(serialize_with = "optional_millis")]
    pub last_received: Option<UnixMillis>,
    /// From a message's arrival to its acknowledgement, ms.
    pub ack: Histogram,
    pub destinations: Vec<DestinationSnapshot>,
}

/// A [`SourceStats`] read at one moment; zero for what the source kind does not do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounts {
    pub connections_total: u64,
    pub garbage_bytes: u64,
    pub oversized_frames: u64,
    pub idle_timeouts: u64,
    pub read_timeouts: u64,
    pub tls_failures: u64,
    pub files_done: u64,
    pub files_failed: u64,
}

impl SourceCounts {
    fn read(stats: &SourceStats) -> Self {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SourceCounts {
            connections_total: load(&stats.connections_total),
            garbage_bytes: load(&stats.garbage_bytes),
            oversized_frames: load(&stats.oversized_frames),
            idle_timeouts: load(&stats.idle_timeouts),
            read_timeouts: load(&stats.read_timeouts),
            tls_failures: load(&stats.tls_failures),
            files_done: load(&stats.files_done),
            files_failed: load(&stats.files_failed),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationSnapshot {
    pub name: String,
    pub queue: String,
    /// Deliveries waiting (queued or being sent), as of the last sample.
    pub queue_depth: u64,
    /// Age of the oldest of them, ms, as of the last sample.
    pub oldest_age_ms: Option<u64>,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub consecutive_failures: u64,
    #[serde(serialize_with = "optional_millis")]
    pub last_success: Option<UnixMillis>,
    #[serde(serialize_with = "optional_millis")]
    pub last_failure: Option<UnixMillis>,
    /// Time each attempt waited for the receiver's answer, ms.
    pub ack: Histogram,
}

impl ChannelSnapshot {
    /// Messages refused or failed in processing (what an error rate counts).
    pub fn errors(&self) -> u64 {
        self.rejected + self.errored + self.store_failures
    }
}

impl Snapshot {
    pub fn channel(&self, name: &str) -> Option<&ChannelSnapshot> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// Times are Unix milliseconds in JSON.
fn millis<S: serde::Serializer>(t: &UnixMillis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.0)
}

fn optional_millis<S: serde::Serializer>(t: &Option<UnixMillis>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_i64(t.0),
        None => s.serialize_none(),
    }
}

/// The queue gauges of the last sample.
#[derive(Debug, Clone, Copy, Default)]
struct QueueGauge {
    depth: u64,
    oldest_age_ms: Option<u64>,
}

/// Reads the engine's counters; samples them once a second while [`Monitor::run`] runs.
pub struct Monitor {
    channels: Vec<Arc<Channel>>,
    sources: BTreeMap<String, Arc<SourceStats>>,
    store: Arc<dyn Store>,
    gauges: Mutex<BTreeMap<String, QueueGauge>>,
    history: Mutex<VecDeque<Arc<Snapshot>>>,
    /// Taken when sampling stops, which ends every subscriber's stream (an open event
    /// stream must not hold a shutdown up).
    samples: Mutex<Option<broadcast::Sender<Arc<Snapshot>>>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    pub fn new(
        channels: Vec<Arc<Channel>>,
        sources: BTreeMap<String, Arc<SourceStats>>,
        store: Arc<dyn Store>,
    ) -> Self {
        let (samples, _) = broadcast::channel(16);
        Monitor {
            channels,
            sources,
            store,
            gauges: Mutex::new(BTreeMap::new()),
            history: Mutex::new(VecDeque::new()),
            samples: Mutex::new(Some(samples)),
        }
    }

    /// The counters now, with the queue gauges of the last sample.
    pub fn snapshot(&self) -> Snapshot {
        let gauges = self
            .gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Snapshot {
            at: UnixMillis::now(),
            channels: self
                .channels
                .iter()
                .map(|c| self.channel_snapshot(c, &gauges))
                .collect(),
        }
    }

    fn channel_snapshot(
        &self,
        channel: &Channel,
        gauges: &BTreeMap<String, QueueGauge>,
    ) -> ChannelSnapshot {
        let s: &ChannelStats = &channel.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let millis = |c: &AtomicI64| {
            let v = c.load(Ordering::Relaxed);
            (v > 0).then_some(UnixMillis(v))
        };
        ChannelSnapshot {
            name: channel.name.clone(),
            running: channel.is_running(),
            source: channel.source_kind,
            received: load(&s.received),
            accepted: load(&s.accepted),
            rejected: load(&s.rejected),
            filtered: load(&s.filtered),
            errored: load(&s.errored),
            duplicates: load(&s.duplicates),
            store_failures: load(&s.store_failures),
            unmapped_codes: load(&s.unmapped_codes),
            script_errors: load(&s.script_errors),
            drift_findings: load(&s.drift_findings),
            connections_open: self
                .sources
                .get(&channel.name)
                .map_or(0, |src| load(&src.connections_open)),
            source_counts: self
                .sources
                .get(&channel.name)
                .map_or_else(SourceCounts::default, |src| SourceCounts::read(src)),
            last_received: millis(&s.last_received_ms),
            ack: s.ack_time.read(),
            destinations: channel
                .destinations
                .iter()
                .map(|d| {
                    let g = gauges.get(&d.queue).copied().unwrap_or_default();
                    DestinationSnapshot {
                        name: d.name.clone(),
                        queue: d.queue.clone(),
                        queue_depth: g.depth,
                        oldest_age_ms: g.oldest_age_ms,
                        delivered: load(&d.stats.delivered),
                        retried: load(&d.stats.retried),
                        failed: load(&d.stats.failed),
                        consecutive_failures: load(&d.stats.consecutive_failures),
                        last_success: millis(&d.stats.last_success_ms),
                        last_failure: millis(&d.stats.last_failure_ms),
                        ack: d.stats.ack.read(),
                    }
                })
                .collect(),
        }
    }

    /// The samples of the last `span`, oldest first.
    pub fn history(&self, span: Duration) -> Vec<Arc<Snapshot>> {
        let from = UnixMillis::now().minus(span);
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.at >= from)
            .cloned()
            .collect()
    }

    /// The newest sample taken at or before `t`: the start of a window ending now.
    pub fn at_or_before(&self, t: UnixMillis) -> Option<Arc<Snapshot>> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|s| s.at <= t)
            .cloned()
    }

    /// The oldest sample kept.
    pub fn oldest(&self) -> Option<Arc<Snapshot>> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .front()
            .cloned()
    }

    /// Every sample from now on, as it is taken; closed once sampling has stopped.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        match &*self.samples.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Takes one sample now: refreshes the queue gauges from the store, records and
    /// broadcasts the snapshot. [`Monitor::run`] calls it every [`SAMPLE_EVERY`]; tests call
    /// it to avoid waiting.
    pub async fn sample(&self) -> Arc<Snapshot> {
        let mut gauges = BTreeMap::new();
        for channel in &self.channels {
            for d in &channel.destinations {
                let depth = match self.store.queue_depth(&d.queue).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(queue = %d.queue, error = %e, "reading a queue depth failed");
                        continue;
                    }
                };
                let oldest_age_ms = if depth == 0 {
                    None
                } else {
                    match self.store.oldest_queued_age(&d.queue).await {
                        Ok(age) => age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                        Err(e) => {
                            tracing::warn!(queue = %d.queue, error = %e, "reading a queue age failed");
                            None
                        }
                    }
                };
                gauges.insert(
                    d.queue.clone(),
                    QueueGauge {
                        depth,
                        oldest_age_ms,
                    },
                );
            }
        }
        *self.gauges.lock().unwrap_or_else(PoisonError::into_inner) = gauges;
        let snapshot = Arc::new(self.snapshot());
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if history.len() == HISTORY_SAMPLES {
                history.pop_front();
            }
            history.push_back(snapshot.clone());
        }
        if let Some(tx) = &*self.samples.lock().unwrap_or_else(PoisonError::into_inner) {
            // No receiver is fine: nobody is watching.
            let _ = tx.send(snapshot.clone());
        }
        snapshot
    }

    /// Samples every [`SAMPLE_EVERY`] until `shutdown` turns true, then closes every
    /// subscription.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tick.tick() => {
                    self.sample().await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(observations_ms: &[f64]) -> Histogram {
        let h = LatencyHistogram::default();
        for ms in observations_ms {
            h.record(Duration::from_secs_f64(ms / 1000.0));
        }
        h.read()
    }

    #[test]
    fn observations_land_in_their_buckets() {
        let h = histogram(&[0.2, 0.5, 0.7, 3.0, 40_000.0]);
        assert_eq!(h.count, 5);
        assert_eq!(h.counts[0], 2, "0.2 and 0.5 are <= 0.5");
        assert_eq!(h.counts[1], 1, "0.7 is in (0.5, 1]");
        assert_eq!(h.counts[3], 1, "3 is in (2.5, 5]");
        assert_eq!(h.counts[LATENCY_BOUNDS_MS.len()], 1, "above every bound");
        assert!((h.sum_ms - 40_004.4).abs() < 0.01, "{}", h.sum_ms);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        // 100 observations in (5, 10]: the median is halfway through that bucket.
        let h = histogram(&[7.0; 100]);
        assert_eq!(h.quantile(0.5), Some(7.5));
        assert_eq!(h.quantile(1.0), Some(10.0));
        // 90 fast and 10 slow: p95 is among the slow ones.
        let mut mixed = vec![0.3; 90];
        mixed.extend([800.0; 10]);
        let h = histogram(&mixed);
        let p95 = h.quantile(0.95).expect("observations");
        assert!(p95 > 500.0 && p95 <= 1000.0, "{p95}");
        assert!(h.quantile(0.5).expect("observations") <= 0.5);
        assert_eq!(histogram(&[]).quantile(0.5), None);
        assert_eq!(histogram(&[60_000.0]).quantile(0.99), Some(30_000.0));
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let live = LatencyHistogram::default();
        live.record(Duration::from_millis(2));
        let before = live.read();
        live.record(Duration::from_millis(700));
        live.record(Duration::from_millis(700));
        let window = live.read().since(&before);
        assert_eq!(window.count, 2);
        assert_eq!(window.quantile(0.5).map(|q| q > 500.0), Some(true));
        assert!((window.sum_ms - 1400.0).abs() < 0.01);
    }

    #[test]
    fn destination_outcomes_count_and_reset_the_failure_streak() {
        let d = DestinationStats::default();
        d.record(None, Duration::from_millis(1));
        d.record(None, Duration::from_millis(1));
        d.record(Some(false), Duration::from_millis(1));
        assert_eq!(d.consecutive_failures.load(Ordering::Relaxed), 3);
        assert_eq!(d.retried.load(Ordering::Relaxed), 2);
        assert_eq!(d.failed.load(Ordering::Relaxed), 1);
        assert!(d.last_failure_ms.load(Ordering::Relaxed) > 0);
        d.record(Some(true), Duration::from_millis(1));
        assert_eq!(d.consecutive_failures.load(Ordering::Relaxed), 0);
        assert_eq!(d.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(d.ack.read().count, 4);
    }
}
