//! `GET /metrics`: the engine's figures in the Prometheus text exposition format (0.0.4).
//!
//! Everything comes from the [`Monitor`]'s live snapshot (counters are read at the scrape,
//! queue gauges as of its last one-second sample) and the store's write statistics. Labels
//! are channel and destination names only: no PHI. Open to anyone unless `[server.metrics]
//! token_env` names a bearer token, which scrapers then send as `Authorization: Bearer`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_engine::monitor::{Histogram, Snapshot};
use causeway_store::WriteStats;
use sha2::{Digest, Sha256};

use crate::AppState;

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Digests compared, so the comparison's time says nothing about the token.
        if Sha256::digest(given.trim().as_bytes()) != Sha256::digest(expected.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "a bearer token is needed for /metrics\n",
            )
                .into_response();
        }
    }
    let snapshot = state.monitor.as_ref().map(|m| m.snapshot());
    let text = render(snapshot.as_ref(), &state.store.stats());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// One metric family being written: its `# HELP`/`# TYPE` lines come first, then samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample_named(self.name, labels, value);
    }

    fn sample_named(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram of milliseconds, exposed in seconds as Prometheus prefers.
    fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{}_bucket", self.name);
        let mut cumulative = 0u64;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = match h.bounds_ms.get(i) {
                Some(ms) => number(ms / 1000.0),
                None => "+Inf".to_string(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample_named(&bucket, &with_le, cumulative as f64);
        }
        self.sample_named(&format!("{}_sum", self.name), labels, h.sum_ms / 1000.0);
        self.sample_named(&format!("{}_count", self.name), labels, h.count as f64);
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The whole exposition.
pub fn render(snapshot: Option<&Snapshot>, store: &WriteStats) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let mut f = Family::new(
        &mut out,
        "causeway_build_info",
        "gauge",
        "The running version of Causeway.",
    );
    f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    store_families(&mut out, store);
    if let Some(s) = snapshot {
        channel_families(&mut out, s);
        destination_families(&mut out, s);
    }
    out
}

fn store_families(out: &mut String, s: &WriteStats) {
    let counters: [(&'static str, &str, u64); 4] = [
        (
            "causeway_store_commits_total",
            "Store transactions committed (one fsync each).",
            s.commits,
        ),
        (
            "causeway_store_failed_commits_total",
            "Store transactions that failed.",
            s.failed_commits,
        ),
        (
            "causeway_store_messages_total",
            "Inbound messages committed to the store.",
            s.messages,
        ),
        (
            "causeway_store_operations_total",
            "Store write operations committed, of every kind.",
            s.operations,
        ),
    ];
    for (name, help, value) in counters {
        Family::new(out, name, "counter", help).sample(&[], value as f64);
    }
    Family::new(
        out,
        "causeway_store_commit_seconds_total",
        "counter",
        "Time the store's writer spent committing (mostly fsync).",
    )
    .sample(&[], s.commit_time.as_secs_f64());
    // Every write (and so every ACK) waits for one of these; a slow or stalling disk shows
    // here first.
    let groups = Histogram::store_transactions(&s.group_time, s.work_time + s.commit_time);
    Family::new(
        out,
        "causeway_store_transaction_seconds",
        "histogram",
        "Committed store transactions (group commits) by time from BEGIN to the end of COMMIT.",
    )
    .histogram(&[], &groups);
}

type ChannelValue = fn(&causeway_engine::monitor::ChannelSnapshot) -> f64;

fn channel_families(out: &mut String, s: &Snapshot) {
    // The message counters, then what a source saw besides messages: bad input that never
    // became a message (and so is in no message counter), connections, files it moved.
    let counters: [(&'static str, &str, ChannelValue); 18] = [
        (
            "causeway_messages_received_total",
            "Messages received by a channel.",
            |c| c.received as f64,
        ),
        (
            "causeway_messages_accepted_total",
            "Messages accepted and routed.",
            |c| c.accepted as f64,
        ),
        (
            "causeway_messages_rejected_total",
            "Messages refused (AR/AE) and stored as rejected.",
            |c| c.rejected as f64,
        ),
        (
            "causeway_messages_filtered_total",
            "Messages accepted and dropped by a filter.",
            |c| c.filtered as f64,
        ),
        (
            "causeway_messages_errored_total",
            "Messages kept in state error or held for review.",
            |c| c.errored as f64,
        ),
        (
            "causeway_messages_duplicate_total",
            "Messages that repeated an earlier one and were not routed again.",
            |c| c.duplicates as f64,
        ),
        (
            "causeway_store_failures_total",
            "Messages that could not be stored (answered AE).",
            |c| c.store_failures as f64,
        ),
        (
            "causeway_unmapped_codes_total",
            "Coded values no code map of the sender knew.",
            |c| c.unmapped_codes as f64,
        ),
        (
            "causeway_script_errors_total",
            "Script transform failures.",
            |c| c.script_errors as f64,
        ),
        (
            "causeway_drift_findings_total",
            "Drift findings of a feed against its learned profile.",
            |c| c.drift_findings as f64,
        ),
        (
            "causeway_source_connections_total",
            "Connections an MLLP source accepted.",
            |c| c.source_counts.connections_total as f64,
        ),
        (
            "causeway_source_garbage_bytes_total",
            "Bytes outside any MLLP frame, skipped.",
            |c| c.source_counts.garbage_bytes as f64,
        ),
        (
            "causeway_source_oversized_frames_total",
            "MLLP frames over max_frame, refused with a NAK.",
            |c| c.source_counts.oversized_frames as f64,
        ),
        (
            "causeway_source_idle_timeouts_total",
            "MLLP connections closed after idle_timeout without a byte.",
            |c| c.source_counts.idle_timeouts as f64,
        ),
        (
            "causeway_source_read_timeouts_total",
            "MLLP connections closed because a started frame did not finish within read_timeout.",
            |c| c.source_counts.read_timeouts as f64,
        ),
        (
            "causeway_source_tls_failures_total",
            "TLS handshakes that failed on an MLLP source.",
            |c| c.source_counts.tls_failures as f64,
        ),
        (
            "causeway_source_files_done_total",
            "Files a directory source moved to its done folder (every message accepted).",
            |c| c.source_counts.files_done as f64,
        ),
        (
            "causeway_source_files_failed_total",
            "Files a directory source moved to its error folder, each with a report.",
            |c| c.source_counts.files_failed as f64,
        ),
    ];
    for (name, help, value) in counters {
        let mut f = Family::new(out, name, "counter", help);
        for c in &s.channels {
            f.sample(&[("channel", &c.name), ("source", c.source)], value(c));
        }
    }
    let gauges: [(&'static str, &str, ChannelValue); 3] = [
        (
            "causeway_channel_running",
            "1 while the channel takes messages, 0 while it is stopped.",
            |c| f64::from(u8::from(c.running)),
        ),
        (
            "causeway_source_connections_open",
            "Open connections of an MLLP source.",
            |c| c.connections_open as f64,
        ),
        (
            "causeway_last_received_timestamp_seconds",
            "When the channel last received a message (Unix time; 0: never).",
            |c| c.last_received.map_or(0.0, |t| t.0 as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in gauges {
        let mut f = Family::new(out, name, "gauge", help);
        for c in &s.channels {
            f.sample(&[("channel", &c.name)], value(c));
        }
    }
    let mut f = Family::new(
        out,
        "causeway_ack_seconds",
        "histogram",
        "Time from a message's arrival to its acknowledgement.",
    );
    for c in &s.channels {
        f.histogram(&[("channel", &c.name)], &c.ack);
    }
}

type DestinationValue = fn(&causeway_engine::monitor::DestinationSnapshot) -> f64;

fn destination_families(out: &mut String, s: &Snapshot) {
    let families: [(&'static str, &str, &str, DestinationValue); 7] = [
        (
            "causeway_destination_delivered_total",
            "counter",
            "Deliveries the receiver accepted.",
            |d| d.delivered as f64,
        ),
        (
            "causeway_destination_retries_total",
            "counter",
            "Delivery attempts that failed and will be retried.",
            |d| d.retried as f64,
        ),
        (
            "causeway_destination_failed_total",
            "counter",
            "Deliveries that failed for good (moved to the error queue).",
            |d| d.failed as f64,
        ),
        (
            "causeway_destination_queue_depth",
            "gauge",
            "Deliveries waiting in the destination's queue.",
            |d| d.queue_depth as f64,
        ),
        (
            "causeway_destination_oldest_age_seconds",
            "gauge",
            "Age of the oldest waiting delivery (0: queue empty).",
            |d| d.oldest_age_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        ),
        (
            "causeway_destination_consecutive_failures",
            "gauge",
            "Attempts that failed since the last success.",
            |d| d.consecutive_failures as f64,
        ),
        (
            "causeway_destination_last_success_timestamp_seconds",
            "gauge",
            "When a delivery last succeeded (Unix time; 0: never).",
            |d| d.last_success.map_or(0.0, |t| t.0 as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, value) in families {
        let mut f = Family::new(out, name, kind, help);
        for c in &s.channels {
            for d in &c.destinations {
                f.sample(&[("channel", &c.name), ("destination", &d.name)], value(d));
            }
        }
    }
    let mut f = Family::new(
        out,
        "causeway_destination_ack_seconds",
        "histogram",
        "Time a delivery attempt waited for the receiver's answer.",
    );
    for c in &s.channels {
        for d in &c.destinations {
            f.histogram(&[("channel", &c.name), ("destination", &d.name)], &d.ack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn numbers_use_the_format_s_spelling() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn store_transactions_are_a_cumulative_histogram_in_seconds() {
        let mut group_time = [0; causeway_store::GROUP_TIME_BUCKETS];
        group_time[0] = 3; // <= 0.5 ms
        group_time[2] = 2; // (1, 2.5] ms
        group_time[11] = 1; // (1, 2.5] s
        let stats = WriteStats {
            commits: 6,
            work_time: std::time::Duration::from_millis(1500),
            commit_time: std::time::Duration::from_millis(500),
            group_time,
            ..WriteStats::default()
        };
        // The same buckets as the engine's latency histograms, as the docs say.
        assert_eq!(
            causeway_store::GROUP_TIME_BOUNDS_MS,
            causeway_engine::monitor::LATENCY_BOUNDS_MS
        );
        let text = render(None, &stats);
        assert!(text.contains("# TYPE causeway_store_transaction_seconds histogram"));
        for line in [
            "causeway_store_transaction_seconds_bucket{le=\"0.0005\"} 3",
            "causeway_store_transaction_seconds_bucket{le=\"0.001\"} 3",
            "causeway_store_transaction_seconds_bucket{le=\"0.0025\"} 5",
            "causeway_store_transaction_seconds_bucket{le=\"1\"} 5",
            "causeway_store_transaction_seconds_bucket{le=\"2.5\"} 6",
            "causeway_store_transaction_seconds_bucket{le=\"+Inf\"} 6",
            "causeway_store_transaction_seconds_sum 2",
            "causeway_store_transaction_seconds_count 6",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn without_an_engine_only_the_process_families_are_written() {
        let text = render(None, &WriteStats::default());
        assert!(text.contains("# TYPE causeway_build_info gauge"));
        assert!(text.contains("causeway_store_commits_total 0"));
        assert!(!text.contains("causeway_messages_received_total"));
    }
}
