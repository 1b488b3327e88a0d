//! TEMPORARY stand-in for `crate::monitor`'s types (the shared contract), until the monitor
//! lands on main; removed at that merge.
#![allow(dead_code)]

use causeway_store::UnixMillis;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub at: UnixMillis,
    pub channels: Vec<ChannelSnapshot>,
}

#[derive(Debug, Clone, Default)]
pub struct ChannelSnapshot {
    pub name: String,
    pub running: bool,
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
    pub connections_open: u64,
    pub last_received: Option<UnixMillis>,
    pub ack: Histogram,
    pub destinations: Vec<DestinationSnapshot>,
}

#[derive(Debug, Clone, Default)]
pub struct DestinationSnapshot {
    pub name: String,
    pub queue: String,
    pub queue_depth: u64,
    pub oldest_age_ms: Option<u64>,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub consecutive_failures: u64,
    pub last_success: Option<UnixMillis>,
    pub last_failure: Option<UnixMillis>,
    pub ack: Histogram,
}

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub bounds_ms: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_ms: f64,
}

impl Histogram {
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            bounds_ms: self.bounds_ms.clone(),
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum_ms: (self.sum_ms - earlier.sum_ms).max(0.0),
        }
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen as f64 >= rank {
                return Some(
                    self.bounds_ms
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| self.bounds_ms.last().copied().unwrap_or(0.0)),
                );
            }
        }
        self.bounds_ms.last().copied()
    }
}
