//! Crash test: `causeway serve` is killed with SIGKILL over and over while senders stream
//! messages into it, and restarted each time on the same data dir and port.
//!
//! Set-up: a `causeway listen` plays the receiving EHR (it keeps every message in its `--out`
//! file); one channel forwards everything to it. Several sender threads (our own MLLP client,
//! one message in flight per connection, unique control ids in a known order) behave as a
//! real sender does: a message that got no ACK (connection refused, closed, reset) is sent
//! again on a new connection, so every message ends with an AA.
//!
//! What must hold afterwards (the ACK contract of docs/ARCHITECTURE.md):
//! - every control id that got AA is in the store, stored once as accepted (a resend of a
//!   committed message is recognised as a duplicate and not routed twice), and was received
//!   by the listener: lost = 0;
//! - each sender's messages are stored in the order it sent them;
//! - the listener received each message's first copy in the order of the destination queue
//!   (FIFO); later copies are allowed (at-least-once) and counted;
//! - every delivery ends `delivered`.
//!
//! Kill moments come from a seeded generator (the seed is printed; `CAUSEWAY_CRASH_SEED`
//! replays a run): each kill waits for a random number of acknowledged messages plus a
//! random few milliseconds, so kills land in the middle of group commits, deliveries and ACK
//! writes. The figures (lost, duplicates, recovery times) are printed and written to
//! `target/crash-report.txt`.

mod support;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_store::{DeliveryState, MessageState};
use support::{
    Ack, Listener, Mllp, Rng, Server, adt, control_id_of, free_port, out_records, quantile,
    report_path, stored, toml_path, write_config,
};

/// Messages sent in all.
const MESSAGES: u64 = 20_000;

/// Concurrent sender connections; 8 is where the store's group commit is well used here.
const CONNECTIONS: u64 = 8;

/// SIGKILLs during the run.
const KILLS: usize = 24;

/// Default seed of the kill schedule.
const DEFAULT_SEED: u64 = 0x00C0_FFEE_2026;

/// Longest wait for one ACK before the sender gives up on the connection and resends.
///
/// 10 s: far above a commit's few milliseconds even on a loaded machine; a killed server
/// closes its sockets at once, so this only matters if something hangs.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// Pause between connection attempts while the server is down, as a sender's reconnect
/// interval would be.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// Hang guard for the whole sending phase (about 25 s here in a debug build on a busy
/// machine).
const SEND_LIMIT: Duration = Duration::from_secs(300);

/// Hang guard for the destination to receive everything after the senders are done.
///
/// Covers the lease of a delivery the last kill left in flight (15 s with the timeouts of the
/// config below) plus the drain of the remaining queue, one message at a time (65 to 105 s
/// here in a debug build on a busy machine).
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// Start attempts after a kill before giving up (the port may take a moment to be free).
const RESTART_ATTEMPTS: u32 = 100;

struct Shared {
    acked: AtomicU64,
    resends: AtomicU64,
    deadline: Instant,
    /// Set at each restart, taken by the first AA after it.
    restarted_at: Mutex<Option<Instant>>,
    recoveries: Mutex<Vec<Duration>>,
    failed: AtomicBool,
}

impl Shared {
    fn record_aa(&self) {
        self.acked.fetch_add(1, Ordering::SeqCst);
        if let Some(t) = self.restarted_at.lock().unwrap().take() {
            self.recoveries.lock().unwrap().push(t.elapsed());
        }
    }
}

fn control_id(connection: u64, n: u64) -> String {
    format!("K{connection}-{n:05}")
}

/// One sender: its messages in order, each until it gets AA. Returns the control ids in the
/// order their AA arrived.
fn sender(connection: u64, count: u64, addr: SocketAddr, shared: Arc<Shared>) -> Vec<String> {
    let mut conn: Option<Mllp<std::net::TcpStream>> = None;
    let mut acked = Vec::with_capacity(count as usize);
    for n in 0..count {
        let id = control_id(connection, n);
        let message = adt(&id, "P", 0);
        loop {
            if shared.failed.load(Ordering::SeqCst) {
                return acked;
            }
            assert!(
                Instant::now() < shared.deadline,
                "sender {connection}: no AA for {id} within the send limit"
            );
            let m = match conn.as_mut() {
                Some(m) => m,
                None => match Mllp::connect(addr, ACK_WAIT) {
                    Ok(m) => conn.insert(m),
                    Err(_) => {
                        std::thread::sleep(RECONNECT_PAUSE);
                        continue;
                    }
                },
            };
            match m.send(&message) {
                Ok(reply) => {
                    let ack = Ack::parse(&reply);
                    match ack.code.as_str() {
                        "AA" => {
                            assert_eq!(ack.control_id, id, "AA for another message");
                            acked.push(id);
                            shared.record_aa();
                            break;
                        }
                        // Not stored: send again, as the contract says.
                        "AE" => {
                            shared.resends.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            shared.failed.store(true, Ordering::SeqCst);
                            panic!("sender {connection}: unexpected answer for {id}: {ack:?}");
                        }
                    }
                }
                Err(_) => {
                    // No ACK: the server died with the message in flight. Resend it.
                    conn = None;
                    shared.resends.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    acked
}

/// Starts the server after a kill; the port can still be held for a moment.
fn restart(config: &std::path::Path) -> Server {
    let mut last = String::new();
    for _ in 0..RESTART_ATTEMPTS {
        match Server::try_start(config) {
            Ok(server) => return server,
            Err(e) if e.stderr.contains("cannot listen on") => {
                last = e.stderr;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("restart failed ({}):\n{}", e.status, e.stderr),
        }
    }
    panic!("the server could not bind its port again after {RESTART_ATTEMPTS} attempts:\n{last}");
}

#[test]
fn sigkill_during_streaming_loses_no_acknowledged_message() {
    let seed = std::env::var("CAUSEWAY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = dir.path().join("received.hl7");
    let listener = Listener::start(0, &out);
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
data_dir = {data}
log_format = "json"

[[channel]]
name = "crash"
source = {{ type = "mllp", listen = "127.0.0.1:{port}" }}

  [[channel.destination]]
  name = "ehr"
  type = "mllp"
  connect = "{dest}"
  connect_timeout = "500ms"
  ack_timeout = "2s"
  retry = {{ initial = "100ms", max = "1s" }}
"#,
            data = toml_path(&data_dir),
            dest = listener.addr,
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = Server::start(&config);
    assert_eq!(server.addr("crash"), addr);

    let started = Instant::now();
    let shared = Arc::new(Shared {
        acked: AtomicU64::new(0),
        resends: AtomicU64::new(0),
        deadline: started + SEND_LIMIT,
        restarted_at: Mutex::new(None),
        recoveries: Mutex::new(Vec::new()),
        failed: AtomicBool::new(false),
    });
    let per_connection = MESSAGES / CONNECTIONS;
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let shared = shared.clone();
            std::thread::spawn(move || sender(c, per_connection, addr, shared))
        })
        .collect();

    // Kill moments: after a random count of AAs (spread over the run), plus a random delay.
    let total = per_connection * CONNECTIONS;
    let mut thresholds: Vec<u64> = (0..KILLS)
        .map(|_| rng.range(total / 50..total * 95 / 100))
        .collect();
    thresholds.sort_unstable();
    let mut kills = 0usize;
    let mut restart_to_ready = Vec::new();
    for threshold in thresholds {
        // At least one AA since the last restart, so each restart's recovery is measured.
        let since = shared.acked.load(Ordering::SeqCst);
        while shared.acked.load(Ordering::SeqCst) < threshold.max(since + 1) {
            assert!(
                !shared.failed.load(Ordering::SeqCst),
                "a sender failed; see its panic"
            );
            assert!(
                Instant::now() < shared.deadline,
                "no progress after restart {kills}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.range(0..40)));
        server.kill();
        kills += 1;
        let restarted = Instant::now();
        *shared.restarted_at.lock().unwrap() = Some(restarted);
        server = restart(&config);
        restart_to_ready.push(restarted.elapsed());
    }
    let acked: Vec<Vec<String>> = senders
        .into_iter()
        .map(|s| {
            s.join()
                .unwrap_or_else(|_| panic!("a sender failed; see its panic above"))
        })
        .collect();
    let send_phase = started.elapsed();
    let (_, delivered_while_sending) = listener.received();
    let all_acked: HashSet<String> = acked.iter().flatten().cloned().collect();
    assert_eq!(
        all_acked.len() as u64,
        total,
        "every message ends with an AA"
    );
    assert!(kills >= 20, "only {kills} kills happened");

    // Let the destination drain, then stop everything cleanly. A message that never arrives
    // shows up below as lost, with the other figures.
    let drained = listener.wait_for_all(&all_acked, DRAIN_LIMIT);
    let (received, _) = listener.received();
    let drain_phase = started.elapsed() - send_phase;
    let (status, log) = server.stop();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    listener.stop();

    // What the store holds: each message once as accepted, resends of committed messages as
    // duplicates, nothing else.
    let rows = stored(&data_dir, "crash");
    let duplicate_rows = rows
        .iter()
        .filter(|r| r.state == MessageState::Duplicate)
        .count();
    let other: Vec<_> = rows
        .iter()
        .filter(|r| !matches!(r.state, MessageState::Accepted | MessageState::Duplicate))
        .map(|r| (r.control_id.clone(), r.state))
        .collect();
    let mut stored_once: HashMap<&str, &support::StoredRow> = HashMap::new();
    let mut routed_twice = Vec::new();
    for row in rows.iter().filter(|r| r.state == MessageState::Accepted) {
        if stored_once.insert(row.control_id.as_str(), row).is_some() {
            routed_twice.push(row.control_id.clone());
        }
    }
    let lost_in_store: Vec<&String> = all_acked
        .iter()
        .filter(|id| !stored_once.contains_key(id.as_str()))
        .collect();

    // Each sender's messages were stored in the order it sent them.
    let mut sender_order_violations = 0;
    for ids in &acked {
        let positions: Vec<_> = ids
            .iter()
            .filter_map(|id| stored_once.get(id.as_str()).map(|r| r.id))
            .collect();
        sender_order_violations += positions.windows(2).filter(|w| w[0] >= w[1]).count();
    }

    // What the destination received, against the queue order.
    let records = out_records(&out);
    let received_ids: Vec<String> = records.iter().map(|r| control_id_of(r)).collect();
    let mut first_seen = HashSet::new();
    let mut first_order = Vec::new();
    for id in &received_ids {
        if first_seen.insert(id.clone()) {
            first_order.push(id.clone());
        }
    }
    let lost_at_destination: Vec<&String> = all_acked
        .iter()
        .filter(|id| !first_seen.contains(*id))
        .collect();
    // Queue position of each first copy; deliveries that did not end delivered.
    let mut seqs = Vec::with_capacity(first_order.len());
    let mut unknown = Vec::new();
    let mut unsettled = Vec::new();
    let mut misrouted = Vec::new();
    for id in &first_order {
        let Some(row) = stored_once.get(id.as_str()) else {
            unknown.push(id.clone());
            continue;
        };
        match row.deliveries.as_slice() {
            [(queue, seq, state)] if queue == "crash/ehr" => {
                if *state != DeliveryState::Delivered {
                    unsettled.push((id.clone(), *state));
                }
                seqs.push(*seq);
            }
            other => misrouted.push((id.clone(), other.to_vec())),
        }
    }
    // The queue position must grow. (Message ids need not: they are handed out when a message
    // is prepared, before the store's writer puts concurrent connections' messages in queue
    // order; each sender's own order is checked above.)
    let out_of_order = seqs.windows(2).filter(|w| w[0] >= w[1]).count();
    let duplicates_delivered = received_ids.len() - first_order.len();

    let mut recoveries = shared.recoveries.lock().unwrap().clone();
    recoveries.sort_unstable();
    restart_to_ready.sort_unstable();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut report = String::new();
    writeln!(report, "crash test (seed {seed})").unwrap();
    writeln!(
        report,
        "  messages sent and acknowledged (AA): {total} over {CONNECTIONS} connections"
    )
    .unwrap();
    writeln!(report, "  SIGKILLs: {kills}").unwrap();
    writeln!(
        report,
        "  lost (AA but not stored): {}",
        lost_in_store.len()
    )
    .unwrap();
    writeln!(
        report,
        "  lost (AA but never delivered): {}",
        lost_at_destination.len()
    )
    .unwrap();
    writeln!(
        report,
        "  resends by senders (no ACK or AE): {}",
        shared.resends.load(Ordering::SeqCst)
    )
    .unwrap();
    writeln!(
        report,
        "  resends recognised as duplicates by the store: {duplicate_rows}"
    )
    .unwrap();
    writeln!(
        report,
        "  duplicates delivered to the destination (at-least-once): {duplicates_delivered}"
    )
    .unwrap();
    writeln!(
        report,
        "  FIFO violations (first copies out of queue order): {out_of_order}"
    )
    .unwrap();
    writeln!(
        report,
        "  stored out of sender order: {sender_order_violations}; routed twice: {}",
        routed_twice.len()
    )
    .unwrap();
    writeln!(
        report,
        "  recovery, restart -> first AA: min {}, median {}, p90 {}, max {} ({} restarts)",
        ms(quantile(&recoveries, 0.0)),
        ms(quantile(&recoveries, 0.5)),
        ms(quantile(&recoveries, 0.9)),
        ms(quantile(&recoveries, 1.0)),
        recoveries.len()
    )
    .unwrap();
    writeln!(
        report,
        "  restart -> serving: median {}, max {}",
        ms(quantile(&restart_to_ready, 0.5)),
        ms(quantile(&restart_to_ready, 1.0))
    )
    .unwrap();
    writeln!(
        report,
        "  send phase {:.1} s ({delivered_while_sending} messages delivered during it), drain after it {:.1} s",
        send_phase.as_secs_f64(),
        drain_phase.as_secs_f64()
    )
    .unwrap();
    println!("{report}");
    std::fs::write(report_path("crash-report.txt"), &report).unwrap();

    assert!(lost_in_store.is_empty(), "lost in store: {lost_in_store:?}");
    assert!(
        drained && lost_at_destination.is_empty(),
        "never delivered: {lost_at_destination:?}"
    );
    assert!(other.is_empty(), "unexpected states: {other:?}");
    assert!(routed_twice.is_empty(), "routed twice: {routed_twice:?}");
    assert_eq!(
        stored_once.len() as u64,
        total,
        "one accepted row per message"
    );
    assert!(unknown.is_empty(), "received unknown messages: {unknown:?}");
    assert_eq!(sender_order_violations, 0, "stored out of sender order");
    assert_eq!(out_of_order, 0, "first deliveries out of FIFO order");
    assert!(
        unsettled.is_empty(),
        "deliveries not settled: {unsettled:?}"
    );
    assert_eq!(
        received_ids.len() as u64,
        received,
        "the out file holds every message the listener reported"
    );
    assert_eq!(recoveries.len(), kills, "a recovery for each restart");
}
