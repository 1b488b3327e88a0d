//! Outage test: the destination is down while 5,000 messages arrive, then comes up.
//!
//! Every message must still be answered AA (the store has it; the queue is durable, not a
//! buffer in front of the destination), the queue must drain in FIFO order once a
//! `causeway listen` answers on the destination port, nothing may be lost, and the server's
//! memory must stay flat while the backlog grows and drains: the backlog lives in SQLite.
//!
//! The messages are padded to about 8 KiB each, so the backlog (about 39 MiB of payload) is
//! large enough for the memory bound below to tell a durable queue from one held in memory.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use causeway_store::{DeliveryState, MessageState};
use support::{
    Ack, Listener, Mllp, Server, adt, control_id_of, free_port, out_records, report_path,
    rss_bytes, stored, toml_path, write_config,
};

/// Messages sent while the destination is down.
const MESSAGES: usize = 5_000;

/// Sender connections.
const CONNECTIONS: usize = 4;

/// Padding per message: with the header segments, about 8 KiB each.
///
/// Bigger messages would make the bound below even more telling, but a debug build spends
/// most of its time encrypting and hashing payloads (unoptimised ChaCha20-Poly1305 and
/// SHA-256 run at a few MB/s), so 8 KiB keeps the test around a minute.
const FILLER: usize = 8 * 1024 - 200;

/// Largest growth of the server's resident memory allowed over the run.
///
/// Why 64 MiB: what the server may legitimately add does not depend on how long the
/// outage lasts: SQLite's page cache of the writer connection (`cache_size` = 32 MiB in the
/// store; it fills as the ~40 MiB database grows), the cache of the read connection the
/// single FIFO worker uses (dropped whenever the database changes), the writer's pending
/// queue (4 senders with one ~8 KiB message each in flight) and allocator slack: about
/// 37 MiB measured here. A server that also kept the queued messages in memory would add the
/// backlog itself (~39 MiB) on top of the same caches, about 75 MiB, and fail.
const MAX_RSS_GROWTH: u64 = 64 * 1024 * 1024;

/// Longest wait for one ACK (a hang guard: commits take milliseconds).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Hang guard for the queue to drain once the destination is up (about 40 s here in a debug
/// build on a busy machine).
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

fn control_id(n: usize) -> String {
    format!("OUT-{n:05}")
}

/// Sends messages `n` with `n % CONNECTIONS == connection`, in order; every one must get AA.
fn sender(connection: usize, addr: SocketAddr) -> Vec<String> {
    let mut m = Mllp::connect(addr, ACK_WAIT).unwrap();
    let mut acked = Vec::new();
    for n in (connection..MESSAGES).step_by(CONNECTIONS) {
        let id = control_id(n);
        let reply = m
            .send(&adt(&id, "P", FILLER))
            .unwrap_or_else(|e| panic!("{id}: no ACK: {e}"));
        let ack = Ack::parse(&reply);
        assert_eq!(
            (ack.code.as_str(), ack.control_id.as_str()),
            ("AA", id.as_str()),
            "{ack:?}"
        );
        acked.push(id);
    }
    acked
}

#[test]
fn backlog_during_an_outage_is_kept_and_drained_in_order_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = dir.path().join("received.hl7");
    // Nothing listens here until the outage ends.
    let dest_port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
data_dir = {data}
log_format = "json"

[[channel]]
name = "outage"
source = {{ type = "mllp", listen = "127.0.0.1:0" }}

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "127.0.0.1:{dest_port}"
  connect_timeout = "1s"
  ack_timeout = "10s"
  retry = {{ initial = "100ms", max = "1s" }}
"#,
            data = toml_path(&data_dir),
        ),
    );
    let server = Server::start(&config);
    let addr = server.addr("outage");
    let pid = server.pid();
    let baseline = rss_bytes(pid);
    let mut samples = vec![("start", baseline)];

    // The outage: every message is answered AA although nothing can be delivered.
    let started = Instant::now();
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|c| std::thread::spawn(move || sender(c, addr)))
        .collect();
    let mut peak_outage = baseline;
    while !senders.iter().all(|s| s.is_finished()) {
        peak_outage = peak_outage.max(rss_bytes(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked: HashSet<String> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert_eq!(acked.len(), MESSAGES);
    let outage_phase = started.elapsed();
    let after_outage = rss_bytes(pid);
    peak_outage = peak_outage.max(after_outage);
    samples.push(("peak during the outage", peak_outage));
    samples.push(("end of the outage", after_outage));

    // The destination comes up; the queue drains.
    let listener = Listener::start(dest_port, &out);
    let drain_started = Instant::now();
    let mut peak_drain = after_outage;
    let drained = loop {
        if listener.wait_for_all(&acked, Duration::from_millis(100)) {
            break true;
        }
        peak_drain = peak_drain.max(rss_bytes(pid));
        if drain_started.elapsed() > DRAIN_LIMIT {
            break false;
        }
    };
    let (received, distinct) = listener.received();
    assert!(
        drained,
        "{distinct} of {MESSAGES} delivered after {DRAIN_LIMIT:?}:\n{}",
        server.log()
    );
    let drain_phase = drain_started.elapsed();
    let after_drain = rss_bytes(pid);
    peak_drain = peak_drain.max(after_drain);
    samples.push(("peak while draining", peak_drain));
    samples.push(("after draining", after_drain));
    let (status, log) = server.stop();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    listener.stop();

    // Store order against what the destination received.
    let rows = stored(&data_dir, "outage");
    assert_eq!(rows.len(), MESSAGES, "one row per message");
    let mut queue: Vec<(i64, String)> = Vec::new();
    for row in &rows {
        assert_eq!(row.state, MessageState::Accepted, "{}", row.control_id);
        assert_eq!(row.deliveries.len(), 1, "{}", row.control_id);
        let (destination, seq, state) = &row.deliveries[0];
        assert_eq!(destination, "outage/ehr");
        assert_eq!(*state, DeliveryState::Delivered, "{}", row.control_id);
        queue.push((*seq, row.control_id.clone()));
    }
    queue.sort();
    let store_order: Vec<String> = queue.into_iter().map(|(_, id)| id).collect();
    let stored_ids: HashSet<&String> = store_order.iter().collect();
    let lost = acked.iter().filter(|id| !stored_ids.contains(id)).count();

    let records = out_records(&out);
    assert_eq!(records.len() as u64, received);
    let mut seen = HashSet::new();
    let first_copies: Vec<String> = records
        .iter()
        .map(|r| control_id_of(r))
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let duplicates = records.len() - first_copies.len();
    let not_delivered = acked.iter().filter(|id| !seen.contains(*id)).count();

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let peak = samples.iter().map(|(_, v)| *v).max().unwrap();
    let growth = peak.saturating_sub(baseline);
    let mut report = format!(
        "outage test: {MESSAGES} messages of ~{} KiB ({:.0} MiB) acknowledged in {:.1} s while the destination was down; drained in {:.1} s\n  lost {lost}, not delivered {not_delivered}, duplicates delivered {duplicates}, delivery order equals store order: {}\n  server RSS:",
        (FILLER + 200) / 1024,
        mib((MESSAGES * (FILLER + 200)) as u64),
        outage_phase.as_secs_f64(),
        drain_phase.as_secs_f64(),
        first_copies == store_order,
    );
    for (label, value) in &samples {
        report.push_str(&format!(" {label} {:.1} MiB;", mib(*value)));
    }
    report.push_str(&format!(
        " growth {:.1} MiB (bound {:.0} MiB)\n",
        mib(growth),
        mib(MAX_RSS_GROWTH)
    ));
    println!("{report}");
    std::fs::write(report_path("outage-report.txt"), &report).unwrap();

    assert_eq!(lost, 0);
    assert_eq!(not_delivered, 0);
    assert_eq!(
        first_copies, store_order,
        "delivery order is the queue order"
    );
    assert!(
        growth < MAX_RSS_GROWTH,
        "server RSS grew by {:.1} MiB",
        mib(growth)
    );
}
