//! The engine as a black box: a configuration from TOML, a real SQLite store in a temporary
//! directory, `Engine::start`, then real sockets (MLLP and HTTP), real files and real peers
//! standing in for destinations. Every test checks what the sender was answered *and* what
//! the store holds.
//!
//! Map: the ACK contract (accept, refusals, unparseable input, duplicates, enhanced mode);
//! channel processing (filters, transforms, scripts); destinations (MLLP, HTTP, file,
//! retries, FIFO order); the HTTP and directory sources; reprocessing; shutdown.

mod support;

use std::time::Duration;

use causeway_engine::destinations::http::HL7_MEDIA_TYPE;
use causeway_engine::runtime::channel::{ReprocessError, Reprocessed};
use causeway_store::{
    DeliveryState, ErrorKind, EventFilter, EventKind, MessageId, MessageState, SearchFilter,
};
use hl7v2::AckCode;
use support::{
    Answer, Harness, RawConnection, Receiver, Webhook, ack_of, control_id_of, drop_file,
    eventually, field, free_addr, msg, send,
};

fn mllp_channel(name: &str) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n"
    )
}

/// An MLLP destination with quick retries, for tests that go through a few of them.
fn mllp_destination(name: &str, connect: &str) -> String {
    format!(
        "  [[channel.destination]]\n  name = \"{name}\"\n  type = \"mllp\"\n  connect = \"{connect}\"\n  connect_timeout = \"2s\"\n  ack_timeout = \"5s\"\n  retry = {{ initial = \"20ms\", max = \"100ms\" }}\n"
    )
}

// ---------------------------------------------------------------------------------------
// The ACK contract
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_accepted_message_is_stored_with_its_ack_before_the_ack_arrives() {
    let h = Harness::start(&mllp_channel("adt")).await;
    let mut client = h.client("adt").await;
    for cid in ["C1", "C2", "C3"] {
        let raw = msg(cid).build();
        let ack = send(&mut client, &raw).await;
        let a = ack_of(&ack);
        assert_eq!((a.code.as_str(), a.control_id.as_str()), ("AA", cid));

        // No waiting: the ACK is the promise that the message is already committed.
        let stored = h.only(cid).await;
        let s = &stored.summary;
        assert_eq!(s.state, MessageState::Accepted);
        assert_eq!(s.channel, "adt");
        assert_eq!(s.header.sending_app, "EHR");
        assert_eq!(s.header.sending_facility, "CLINIC");
        assert_eq!(s.header.message_type, "ADT^A01");
        assert_eq!(s.header.control_id, cid);
        assert_eq!(s.header.version, "2.5.1");
        assert_eq!(s.size, raw.len() as u64);
        assert!(s.peer.starts_with("127.0.0.1:"), "peer {:?}", s.peer);
        assert!(!s.flags.control_id_reused);
        assert_eq!(stored.raw.as_deref(), Some(&raw[..]));
        assert_eq!(
            stored.ack.as_deref(),
            Some(&ack[..]),
            "the stored ACK is the one sent"
        );
        assert_eq!(stored.outbound, None, "no transform: raw is delivered");
    }
    // The patient identifier is searchable as id^authority.
    let by_patient = h
        .store
        .search(SearchFilter {
            patient_id: Some("12345^HOSP".into()),
            ..SearchFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_patient.len(), 3);
    let stats = &h.engine().channel("adt").unwrap().stats;
    assert_eq!(stats.accepted.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn accept_rules_refuse_with_ar_and_the_err3_code_and_keep_the_message() {
    let h = Harness::start(&format!(
        "{}accept = {{ types = [\"ADT^A01\", \"ORU^*\"], processing_ids = [\"P\"], versions = [\"2.5*\"] }}\n",
        mllp_channel("strict")
    ))
    .await;
    let cases = [
        ("R200", msg("R200").kind("SIU^S12^SIU_S12"), "200"),
        ("R201", msg("R201").kind("ADT^A08^ADT_A01"), "201"),
        ("R202", msg("R202").processing_id("T"), "202"),
        ("R203", msg("R203").version("2.3"), "203"),
    ];
    let mut client = h.client("strict").await;
    for (cid, m, err3) in cases {
        let raw = m.build();
        let ack = send(&mut client, &raw).await;
        let a = ack_of(&ack);
        assert_eq!(a.code, "AR", "{cid}");
        assert_eq!(a.control_id, cid);
        assert_eq!(a.err3, err3, "{cid}: {:?}", String::from_utf8_lossy(&ack));
        let stored = h.only(cid).await;
        assert_eq!(stored.summary.state, MessageState::Rejected, "{cid}");
        assert_eq!(stored.raw.as_deref(), Some(&raw[..]), "{cid}: nothing lost");
        assert_eq!(stored.ack.as_deref(), Some(&ack[..]));
        assert!(h.deliveries(stored.summary.id).await.is_empty());
    }
    // What the rules allow still goes through on the same connection.
    let ok = send(&mut client, &msg("OK1").kind("ORU^R01^ORU_R01").build()).await;
    assert_eq!(ack_of(&ok).code, "AA");
}

#[tokio::test]
async fn unparseable_input_is_refused_with_ar_and_stored_as_rejected() {
    let h = Harness::start(&mllp_channel("raw")).await;
    let cases: [(&[u8], &str, &str); 4] = [
        (b"PID|1||12345^^^HOSP^MR||DOE^JANE\r", "100", ""),
        (
            b"MSH|^^|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01|BAD-MSH2|P|2.5.1\rPID|1\r",
            "102",
            "BAD-MSH2",
        ),
        (
            b"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01|BAD-SEG|P|2.5.1\rPIDX|1\r",
            "100",
            "BAD-SEG",
        ),
        // A batch file in one frame: refused, with what to do instead.
        (
            b"BHS|^~\\&|EHR|CLINIC\rMSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01|IN-BATCH|P|2.5.1\rPID|1\rBTS|1\r",
            "100",
            "",
        ),
    ];
    let mut client = h.client("raw").await;
    for (raw, err3, echoed) in cases {
        let ack = send(&mut client, raw).await;
        let a = ack_of(&ack);
        let shown = String::from_utf8_lossy(&ack).into_owned();
        assert_eq!(a.code, "AR", "{shown}");
        assert_eq!(a.err3, err3, "{shown}");
        assert_eq!(a.control_id, echoed, "MSA-2 echoes MSH-10 when readable");
        assert!(a.text.is_some(), "the NAK says why: {shown}");
        assert_eq!(
            raw.starts_with(b"BHS"),
            a.text.as_deref().is_some_and(
                |t| t.contains("this is an HL7 batch: send each message in its own frame")
            ),
            "{shown}"
        );
    }
    // All four stored as rejected, byte for byte, with the NAK each got.
    let rows = h.in_channel("raw").await;
    assert_eq!(rows.len(), 4);
    for (row, (raw, _, _)) in rows.iter().zip(cases) {
        assert_eq!(row.state, MessageState::Rejected);
        let stored = h.message(row.id).await;
        assert_eq!(stored.raw.as_deref(), Some(raw));
        assert!(stored.ack.is_some());
    }
    let stats = &h.engine().channel("raw").unwrap().stats;
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_message_without_type_or_control_id_is_refused_with_ar_101_even_with_no_rules() {
    // No accept rules: the channel takes any message, but not one it could neither route nor
    // acknowledge (the CDC's PHLIP_FLU_2.5.1_NO_MSH9 and _NO_MSH10 test messages are such).
    let h = Harness::start(&mllp_channel("open")).await;
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||^A01|NO-TYPE|P|2.5.1\rPID|1\r",
            "NO-TYPE",
            "MSH^1^9^1",
        ),
        (
            b"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01||P|2.5.1\rPID|1\r",
            "",
            "MSH^1^10^1",
        ),
        // A header cut short: neither field is there at all.
        (b"MSH|^~\\&|EHR|CLINIC\rPID|1\r", "", "MSH^1^9^1"),
    ];
    let mut client = h.client("open").await;
    for (raw, echoed, location) in cases {
        let ack = send(&mut client, raw).await;
        let a = ack_of(&ack);
        let shown = String::from_utf8_lossy(&ack).into_owned();
        assert_eq!(a.code, "AR", "{shown}");
        assert_eq!(a.err3, "101", "{shown}");
        assert_eq!(a.control_id, echoed);
        assert_eq!(field(&ack, "ERR-2"), location, "{shown}");
        assert!(
            a.text
                .as_deref()
                .is_some_and(|t| t.starts_with("required field MSH-")),
            "{shown}"
        );
    }
    let rows = h.in_channel("open").await;
    assert_eq!(rows.len(), 3, "every refused message is kept");
    assert!(rows.iter().all(|r| r.state == MessageState::Rejected));
    let ok = send(&mut client, &msg("OK1").build()).await;
    assert_eq!(ack_of(&ok).code, "AA");
}

#[tokio::test]
async fn a_resent_message_gets_the_same_ack_and_is_not_routed_again() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("dup"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    let raw = msg("D1").build();
    let first = h.send("dup", &raw).await;
    // A new connection, as a sender that lost the first ACK would open.
    let second = h.send("dup", &raw).await;
    assert_eq!(first, second, "byte-identical ACK for the copy");
    assert_eq!(ack_of(&second).code, "AA");

    let rows = h.stored("D1").await;
    assert_eq!(rows.len(), 2, "the copy is stored too: {rows:?}");
    assert_eq!(rows[0].state, MessageState::Accepted);
    assert_eq!(rows[1].state, MessageState::Duplicate);
    assert_eq!(rows[1].duplicate_of, Some(rows[0].id));
    assert!(h.deliveries(rows[1].id).await.is_empty());
    assert_eq!(h.deliveries(rows[0].id).await.len(), 1);
    let events = h
        .store
        .events(EventFilter {
            message_id: Some(rows[1].id),
            kind: Some(EventKind::Duplicate),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);

    // The queue is FIFO: once a later message is delivered, anything queued for the copy
    // would have been delivered before it.
    h.send("dup", &msg("D2").build()).await;
    receiver.wait_received(2).await;
    assert_eq!(receiver.received_ids(), ["D1", "D2"]);
    assert_eq!(
        h.engine()
            .channel("dup")
            .unwrap()
            .stats
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_reused_control_id_with_other_bytes_is_stored_flagged_and_routed() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("reuse"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    let one = msg("U1").build();
    let two = msg("U1").family("SMITH").build();
    let a1 = h.send("reuse", &one).await;
    let a2 = h.send("reuse", &two).await;
    assert_eq!(ack_of(&a1).code, "AA");
    assert_eq!(ack_of(&a2).code, "AA");
    assert_ne!(a1, a2, "a fresh ACK, not the first one's");

    let rows = h.stored("U1").await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.state == MessageState::Accepted));
    assert!(!rows[0].flags.control_id_reused);
    assert!(rows[1].flags.control_id_reused);
    let events = h
        .store
        .events(EventFilter {
            message_id: Some(rows[1].id),
            kind: Some(EventKind::ControlIdReused),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let got = receiver.wait_received(2).await;
    assert_eq!(got, [one, two], "both routed, in order");
}

#[tokio::test]
async fn enhanced_mode_sends_commit_acks_only_when_asked() {
    let h = Harness::start(&format!(
        "{}accept = {{ types = [\"ADT^A01\"] }}\n",
        mllp_channel("enh")
    ))
    .await;

    // MSH-15 = AL: a commit ACK.
    let ack = h.send("enh", &msg("E1").accept_ack("AL").build()).await;
    let a = ack_of(&ack);
    assert_eq!((a.code.as_str(), a.control_id.as_str()), ("CA", "E1"));

    // MSH-15 = NE: no ACK at all. Replies come in order on a connection, so the first frame
    // back answering the next (original-mode) message shows none was sent for E2.
    let mut conn = RawConnection::open(h.mllp_addr("enh")).await;
    conn.write_frame(&msg("E2").accept_ack("NE").app_ack("AL").build())
        .await;
    conn.write_frame(&msg("E3").build()).await;
    let a = ack_of(&conn.read_frame().await);
    assert_eq!((a.code.as_str(), a.control_id.as_str()), ("AA", "E3"));

    // MSH-15 = ER: nothing on success...
    conn.write_frame(&msg("E4").accept_ack("ER").build()).await;
    conn.write_frame(&msg("E5").build()).await;
    let a = ack_of(&conn.read_frame().await);
    assert_eq!((a.code.as_str(), a.control_id.as_str()), ("AA", "E5"));
    // ...and a commit reject on refusal.
    conn.write_frame(&msg("E6").accept_ack("ER").kind("SIU^S12^SIU_S12").build())
        .await;
    let a = ack_of(&conn.read_frame().await);
    assert_eq!(
        (a.code.as_str(), a.control_id.as_str(), a.err3.as_str()),
        ("CR", "E6", "200")
    );
    assert_eq!(conn.pending(), 0, "no stray frame");

    for (cid, state) in [
        ("E1", MessageState::Accepted),
        ("E2", MessageState::Accepted),
        ("E3", MessageState::Accepted),
        ("E4", MessageState::Accepted),
        ("E5", MessageState::Accepted),
        ("E6", MessageState::Rejected),
    ] {
        assert_eq!(h.only(cid).await.summary.state, state, "{cid}");
    }
}

#[tokio::test]
async fn pipelined_frames_are_answered_and_routed_in_order() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("pipe"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    // Twenty frames in one write, the fifth sent twice: a sender that does not wait for
    // each ACK before the next.
    let ids: Vec<String> = (1..=20).map(|i| format!("PIPE{i:02}")).collect();
    let mut frames = Vec::new();
    let mut sent = Vec::new();
    for (i, cid) in ids.iter().enumerate() {
        let raw = msg(cid).build();
        frames.extend(mllp::frame(&raw).unwrap());
        sent.push(raw.clone());
        if i == 4 {
            frames.extend(mllp::frame(&raw).unwrap());
            sent.push(raw);
        }
    }
    let mut conn = RawConnection::open(h.mllp_addr("pipe")).await;
    conn.write_raw(&frames).await;
    let mut acks = Vec::new();
    for _ in 0..sent.len() {
        acks.push(conn.read_frame().await);
    }
    let answered: Vec<String> = acks.iter().map(|a| ack_of(a).control_id).collect();
    let expected: Vec<String> = sent.iter().map(|m| control_id_of(m)).collect();
    assert_eq!(answered, expected, "one ACK per frame, in frame order");
    assert!(acks.iter().all(|a| ack_of(a).code == "AA"));
    assert_eq!(acks[4], acks[5], "the copy gets the first one's ACK");

    let rows = h.stored("PIPE05").await;
    assert_eq!(
        rows.iter().map(|r| r.state).collect::<Vec<_>>(),
        [MessageState::Accepted, MessageState::Duplicate]
    );
    receiver.wait_received(20).await;
    assert_eq!(
        receiver.received_ids(),
        ids,
        "delivered once each, in order"
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_the_connection_closed() {
    let h = Harness::start(
        "\n[[channel]]\nname = \"small\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\", max_frame = \"1KiB\" }\n",
    )
    .await;
    let mut raw = msg("BIG1").build();
    raw.extend(format!("NTE|1||{}\r", "x".repeat(2048)).into_bytes());
    let mut conn = RawConnection::open(h.mllp_addr("small")).await;
    conn.write_frame(&raw).await;
    let a = ack_of(&conn.read_frame().await);
    assert_eq!(
        (a.code.as_str(), a.control_id.as_str(), a.err3.as_str()),
        ("AR", "BIG1", "207")
    );
    assert!(conn.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        h.engine()
            .source_stats("small")
            .unwrap()
            .oversized_frames
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The listener goes on.
    let ok = h.send("small", &msg("SMALL1").build()).await;
    assert_eq!(ack_of(&ok).code, "AA");
}

#[tokio::test]
async fn a_message_that_cannot_be_stored_is_answered_ae() {
    let h = Harness::start(&mllp_channel("fail")).await;
    let mut client = h.client("fail").await;
    assert_eq!(
        ack_of(&send(&mut client, &msg("OK").build()).await).code,
        "AA"
    );
    // The store goes away under the running engine (as a full or failed disk would).
    h.store.close().await.unwrap();
    let a = ack_of(&send(&mut client, &msg("LOST1").build()).await);
    assert_eq!(
        (a.code.as_str(), a.control_id.as_str(), a.err3.as_str()),
        ("AE", "LOST1", "207")
    );
    let a = ack_of(&send(&mut client, &msg("LOST2").accept_ack("AL").build()).await);
    assert_eq!(a.code, "CE", "enhanced mode: a commit error");
    let a = ack_of(&send(&mut client, b"not hl7 at all").await);
    assert_eq!(
        a.code, "AE",
        "even unparseable input is not refused while unstored"
    );
    assert_eq!(
        h.engine()
            .channel("fail")
            .unwrap()
            .stats
            .store_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn start_fails_cleanly_when_a_port_is_taken() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\ndata_dir = \"data\"\n\n{}\n[[channel]]\nname = \"clash\"\nsource = {{ type = \"mllp\", listen = \"{}\" }}\n",
        mllp_channel("first"),
        taken.local_addr().unwrap()
    );
    let config = causeway_engine::config::Config::from_str(&text, dir.path()).unwrap();
    let store: std::sync::Arc<dyn causeway_store::Store> = std::sync::Arc::new(
        causeway_store::SqliteStore::open(
            &config.server.data_dir,
            causeway_store::SqliteOptions::default(),
        )
        .await
        .unwrap(),
    );
    let err = causeway_engine::runtime::Engine::start(&config, store.clone())
        .await
        .expect_err("the port is taken");
    assert!(
        matches!(&err, causeway_engine::runtime::StartError::Bind { channel, .. } if channel == "clash"),
        "{err}"
    );
    // The reason is said once, also where the error chain is printed (`causeway: {e:#}`).
    let mut chained = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(e) = cause {
        chained = format!("{chained}: {e}");
        cause = e.source();
    }
    assert_eq!(chained.matches("in use").count(), 1, "{chained}");
    // Nothing was started; the store is still the caller's to use and close.
    assert!(
        store
            .search(SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let h = Harness::start(
        "\n[[channel]]\nname = \"idle\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\", idle_timeout = \"100ms\" }\n",
    )
    .await;
    let mut conn = RawConnection::open(h.mllp_addr("idle")).await;
    conn.write_frame(&msg("I1").build()).await;
    assert_eq!(ack_of(&conn.read_frame().await).code, "AA");
    assert!(conn.closed_within(Duration::from_secs(5)).await);
    let stats = h.engine().source_stats("idle").unwrap();
    eventually("the timeout to be counted", || async {
        (stats
            .idle_timeouts
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1)
            .then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Filters, transforms, scripts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn filtered_messages_are_acked_stored_and_not_delivered() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}  [[channel.filter]]\n  when = \"PID-8 == 'F'\"\n{}",
        mllp_channel("flt"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    let male = h.send("flt", &msg("F1").sex("M").build()).await;
    assert_eq!(ack_of(&male).code, "AA", "the sender did nothing wrong");
    let stored = h.only("F1").await;
    assert_eq!(stored.summary.state, MessageState::Filtered);
    assert!(h.deliveries(stored.summary.id).await.is_empty());

    let female = h.send("flt", &msg("F2").sex("F").build()).await;
    assert_eq!(ack_of(&female).code, "AA");
    assert_eq!(h.only("F2").await.summary.state, MessageState::Accepted);
    receiver.wait_received(1).await;
    assert_eq!(receiver.received_ids(), ["F2"]);
    assert_eq!(
        h.engine()
            .channel("flt")
            .unwrap()
            .stats
            .filtered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

const SCRIPT: &str = r#"
let family = msg.get("PID-5.1");
if family == "REJECTME" {
    reject("test patients are not taken here");
}
if family == "FILTERME" {
    filter();
}
if family == "LOOPME" {
    let n = 0;
    loop { n += 1; }
}
msg.set("PID-5.2", "SCRIPTED");
"#;

#[tokio::test]
async fn transforms_change_what_is_delivered_and_scripts_decide() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.rhai"), SCRIPT).unwrap();
    let h = Harness::start_in(
        dir,
        &format!(
            "{}  [[channel.transform]]\n  set = {{ path = \"PV1-3.4\", value = \"MAIN\" }}\n\n  [[channel.transform]]\n  script = \"t.rhai\"\n{}",
            mllp_channel("tx"),
            mllp_destination("lab", &receiver.addr.to_string())
        ),
    )
    .await;
    let stats = h.engine().channel("tx").unwrap().stats.clone();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);

    // Transformed on the way out; the store keeps the message as received.
    let raw = msg("T1").build();
    assert_eq!(ack_of(&h.send("tx", &raw).await).code, "AA");
    let got = receiver.wait_received(1).await;
    assert_eq!(field(&got[0], "PV1-3.4"), "MAIN");
    assert_eq!(field(&got[0], "PID-5.2"), "SCRIPTED");
    assert_eq!(field(&got[0], "PID-5.1"), "DOE");
    let stored = h.only("T1").await;
    assert_eq!(stored.raw.as_deref(), Some(&raw[..]));
    assert_eq!(stored.outbound.as_deref(), Some(&got[0][..]));
    assert_eq!(field(stored.raw.as_deref().unwrap(), "PV1-3.4"), "HOSP_A");

    // reject("...") in a script: AR, ERR-3 207, the script's text.
    let ack = h.send("tx", &msg("T2").family("REJECTME").build()).await;
    let a = ack_of(&ack);
    assert_eq!((a.code.as_str(), a.err3.as_str()), ("AR", "207"));
    assert_eq!(a.text.as_deref(), Some("test patients are not taken here"));
    assert_eq!(h.only("T2").await.summary.state, MessageState::Rejected);

    // filter(): AA, filtered.
    let ack = h.send("tx", &msg("T3").family("FILTERME").build()).await;
    assert_eq!(ack_of(&ack).code, "AA");
    assert_eq!(h.only("T3").await.summary.state, MessageState::Filtered);

    // A runaway script is stopped: the message is kept in error, the sender gets AA.
    assert_eq!(load(&stats.script_errors), 0);
    let ack = h.send("tx", &msg("T4").family("LOOPME").build()).await;
    assert_eq!(ack_of(&ack).code, "AA");
    let stored = h.only("T4").await;
    assert_eq!(stored.summary.state, MessageState::Error);
    assert!(h.deliveries(stored.summary.id).await.is_empty());
    assert_eq!(load(&stats.script_errors), 1);
    assert_eq!(load(&stats.errored), 1);

    // Only T1 and a later message reached the destination.
    h.send("tx", &msg("T5").build()).await;
    receiver.wait_received(2).await;
    assert_eq!(receiver.received_ids(), ["T1", "T5"]);
}

// ---------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn mllp_destination_delivers_and_retries_after_ae() {
    let receiver = Receiver::start().await;
    receiver.script("M2", &[Answer::Code(AckCode::AE)]);
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("m"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    let m1 = msg("M1").build();
    let m2 = msg("M2").build();
    h.send("m", &m1).await;
    h.send("m", &m2).await;

    let id1 = h.only("M1").await.summary.id;
    let d1 = h.settled(id1).await;
    assert_eq!(d1.len(), 1);
    assert_eq!(d1[0].state, DeliveryState::Delivered);
    assert_eq!(d1[0].attempts, 1);
    assert_eq!(d1[0].destination, "m/lab");
    let last_ack = d1[0]
        .last_ack
        .as_deref()
        .expect("the receiver's ACK is kept");
    assert_eq!(ack_of(last_ack).control_id, "M1");

    let id2 = h.only("M2").await.summary.id;
    let d2 = h.settled(id2).await;
    assert_eq!(d2[0].state, DeliveryState::Delivered);
    assert_eq!(d2[0].attempts, 2, "AE, then AA on the retry");
    assert!(
        d2[0].last_error.as_deref().unwrap_or("").starts_with("AE"),
        "{:?}",
        d2[0].last_error
    );
    // The receiver's code and nothing of its free text (which can quote patient data).
    let error = d2[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("ERR-3 207") && !error.contains("scripted"),
        "{error}"
    );
    let kinds: Vec<EventKind> = h
        .store
        .events(EventFilter {
            message_id: Some(id2),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| matches!(k, EventKind::Retrying | EventKind::Delivered))
        .collect();
    assert_eq!(kinds, [EventKind::Retrying, EventKind::Delivered]);
    assert_eq!(receiver.received(), [m1, m2.clone(), m2]);
    assert_eq!(h.store.queue_depth("m/lab").await.unwrap(), 0);
}

#[tokio::test]
async fn an_ar_goes_to_the_error_queue_and_does_not_block_the_next() {
    let receiver = Receiver::start().await;
    receiver.script("AR1", &[Answer::Code(AckCode::AR)]);
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("ar"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    h.send("ar", &msg("AR1").build()).await;
    h.send("ar", &msg("N2").build()).await;

    let d = h.settled(h.only("AR1").await.summary.id).await;
    assert_eq!(d[0].state, DeliveryState::Failed);
    assert_eq!(d[0].attempts, 1, "an AR is not retried");
    assert_eq!(
        ack_of(d[0].last_ack.as_deref().expect("the receiver's AR is kept")).code,
        "AR"
    );
    assert!(
        d[0].last_error.as_deref().unwrap_or("").starts_with("AR"),
        "{:?}",
        d[0].last_error
    );
    // The receiver's code and nothing of its free text (which can quote patient data).
    let error = d[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("ERR-3 207") && !error.contains("scripted"),
        "{error}"
    );
    let d = h.settled(h.only("N2").await.summary.id).await;
    assert_eq!(d[0].state, DeliveryState::Delivered);
    assert_eq!(receiver.received_ids(), ["AR1", "N2"]);
}

/// The outbound message's own MSH-15 is honoured, as a compliant receiver honours it: NE and ER
/// are not waited for beyond what they ask, so the queue behind them does not stall; SU with no
/// answer is retried.
#[tokio::test]
async fn mllp_destination_honours_the_messages_msh15() {
    let receiver = Receiver::start().await;
    receiver.script("NE1", &[Answer::Nothing]);
    receiver.script("ER1", &[Answer::Nothing]);
    receiver.script("SU1", &[Answer::Nothing]);
    // ER and SU wait the ACK timeout for their silence: a short one keeps the test short.
    let destination = mllp_destination("lab", &receiver.addr.to_string())
        .replace("ack_timeout = \"5s\"", "ack_timeout = \"1s\"");
    assert!(destination.contains("\"1s\""));
    let h = Harness::start(&format!("{}{destination}", mllp_channel("enh"))).await;
    // Sent without ACKs of their own (MSH-15 asks for none or only on error), followed by an
    // original-mode message whose AA shows the engine took them in order.
    let mut conn = RawConnection::open(h.mllp_addr("enh")).await;
    conn.write_frame(&msg("NE1").accept_ack("NE").build()).await;
    conn.write_frame(&msg("ER1").accept_ack("ER").build()).await;
    conn.write_frame(&msg("AFTER").build()).await;
    assert_eq!(ack_of(&conn.read_frame().await).control_id, "AFTER");
    assert_eq!(
        ack_of(&h.send("enh", &msg("SU1").accept_ack("SU").build()).await).code,
        "CA"
    );

    for cid in ["NE1", "ER1", "AFTER"] {
        let d = h.settled(h.only(cid).await.summary.id).await;
        assert_eq!(d[0].state, DeliveryState::Delivered, "{cid}");
        assert_eq!(d[0].attempts, 1, "{cid}");
        assert!(d[0].last_error.is_none(), "{cid}: {:?}", d[0].last_error);
    }
    // Delivered on its first attempt, with no ACK to keep.
    let after_ne = h.deliveries(h.only("NE1").await.summary.id).await;
    assert!(after_ne[0].last_ack.is_none());
    // SU without an answer is not accepted: retried, then AA on the second attempt.
    let d = h.settled(h.only("SU1").await.summary.id).await;
    assert_eq!(d[0].state, DeliveryState::Delivered);
    assert_eq!(d[0].attempts, 2, "silence under SU, then an ACK");
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap_or("")
            .contains("MSH-15 SU"),
        "{:?}",
        d[0].last_error
    );
    assert_eq!(
        receiver.received_ids(),
        ["NE1", "ER1", "AFTER", "SU1", "SU1"]
    );
}

/// `wait_for_ack = "always"`: for a receiver that answers every message, an NE message waits
/// for its ACK like any other, which is then kept.
#[tokio::test]
async fn wait_for_ack_always_waits_whatever_msh15_says() {
    let receiver = Receiver::start().await;
    let destination = format!(
        "{}  wait_for_ack = \"always\"\n",
        mllp_destination("lab", &receiver.addr.to_string())
    );
    let h = Harness::start(&format!("{}{destination}", mllp_channel("all"))).await;
    let mut conn = RawConnection::open(h.mllp_addr("all")).await;
    conn.write_frame(&msg("NE2").accept_ack("NE").build()).await;
    conn.write_frame(&msg("NEXT").build()).await;
    assert_eq!(ack_of(&conn.read_frame().await).control_id, "NEXT");
    for cid in ["NE2", "NEXT"] {
        let d = h.settled(h.only(cid).await.summary.id).await;
        assert_eq!(d[0].state, DeliveryState::Delivered, "{cid}");
        assert_eq!(d[0].attempts, 1, "{cid}");
        let kept = d[0]
            .last_ack
            .as_deref()
            .expect("the receiver's ACK is kept");
        assert_eq!(ack_of(kept).control_id, cid);
    }
}

#[tokio::test]
async fn an_ack_for_another_control_id_is_retried() {
    let receiver = Receiver::start().await;
    receiver.script("W1", &[Answer::WrongControlId]);
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("w"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    h.send("w", &msg("W1").build()).await;
    let d = h.settled(h.only("W1").await.summary.id).await;
    assert_eq!(d[0].state, DeliveryState::Delivered);
    assert_eq!(d[0].attempts, 2);
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap_or("")
            .contains("does not answer the control id"),
        "{:?}",
        d[0].last_error
    );
    assert_eq!(receiver.received_ids(), ["W1", "W1"]);
}

#[tokio::test]
async fn messages_wait_for_a_destination_that_is_down_and_go_in_order() {
    let addr = free_addr().await;
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("down"),
        mllp_destination("lab", &addr.to_string())
    ))
    .await;
    let ids = ["Q1", "Q2", "Q3", "Q4"];
    for cid in ids {
        // Accepted while the destination is down: the queue is durable.
        assert_eq!(ack_of(&h.send("down", &msg(cid).build()).await).code, "AA");
    }
    assert_eq!(h.store.queue_depth("down/lab").await.unwrap(), 4);
    // The head is being retried; the rest wait behind it.
    let head = h.only("Q1").await.summary.id;
    eventually("the head of the queue to fail an attempt", || async {
        let d = h.deliveries(head).await;
        (d[0].state == DeliveryState::Retrying && d[0].attempts >= 1).then_some(())
    })
    .await;
    for cid in &ids[1..] {
        let d = h.deliveries(h.only(cid).await.summary.id).await;
        assert_eq!(d[0].state, DeliveryState::Queued, "{cid} waits behind Q1");
        assert_eq!(d[0].attempts, 0);
    }

    // The destination comes up on the address it was configured with.
    let listener = eventually("to bind the destination's port again", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let receiver = Receiver::on(listener).await;
    receiver.wait_received(4).await;
    assert_eq!(receiver.received_ids(), ids);
    for cid in ids {
        let d = h.settled(h.only(cid).await.summary.id).await;
        assert_eq!(d[0].state, DeliveryState::Delivered, "{cid}");
    }
    assert_eq!(h.store.queue_depth("down/lab").await.unwrap(), 0);
}

#[tokio::test]
async fn http_destination_posts_the_message_and_retries_5xx_but_not_4xx() {
    let hook = Webhook::start().await;
    hook.script("H2", &[500]);
    hook.script("H3", &[400]);
    let h = Harness::start(&format!(
        "{}  [[channel.destination]]\n  name = \"hook\"\n  type = \"http\"\n  url = \"{}\"\n  timeout = \"5s\"\n  retry = {{ initial = \"20ms\", max = \"100ms\" }}\n",
        mllp_channel("web"),
        hook.url()
    ))
    .await;
    let h1 = msg("H1").build();
    for cid in ["H1", "H2", "H3"] {
        assert_eq!(ack_of(&h.send("web", &msg(cid).build()).await).code, "AA");
    }
    let d1 = h.settled(h.only("H1").await.summary.id).await;
    let d2 = h.settled(h.only("H2").await.summary.id).await;
    let d3 = h.settled(h.only("H3").await.summary.id).await;
    assert_eq!((d1[0].state, d1[0].attempts), (DeliveryState::Delivered, 1));
    assert_eq!(d1[0].last_ack.as_deref(), Some(&b"scripted"[..]));
    assert_eq!((d2[0].state, d2[0].attempts), (DeliveryState::Delivered, 2));
    assert_eq!((d3[0].state, d3[0].attempts), (DeliveryState::Failed, 1));
    assert!(
        d3[0].last_error.as_deref().unwrap_or("").contains("400"),
        "{:?}",
        d3[0].last_error
    );

    let posted = hook.posted();
    let ids: Vec<String> = posted.iter().map(|p| control_id_of(&p.body)).collect();
    assert_eq!(ids, ["H1", "H2", "H2", "H3"]);
    assert_eq!(posted[0].body, h1);
    for p in &posted {
        assert_eq!(p.content_type, HL7_MEDIA_TYPE);
        assert_eq!(p.control_id_header, control_id_of(&p.body));
    }
}

#[tokio::test]
async fn file_destination_writes_the_message() {
    let h = Harness::start(&format!(
        "{}  [[channel.destination]]\n  name = \"files\"\n  type = \"file\"\n  dir = \"out\"\n  filename = \"{{channel}}-{{control_id}}-{{id}}.hl7\"\n",
        mllp_channel("fd")
    ))
    .await;
    let raw = msg("FILE-1").build();
    h.send("fd", &raw).await;
    let id = h.only("FILE-1").await.summary.id;
    let path = h.path(&format!("out/fd-FILE-1-{id}.hl7"));
    let written = eventually("the file to be written", || async {
        std::fs::read(&path).ok()
    })
    .await;
    assert_eq!(written, raw);
    let d = h.settled(id).await;
    assert_eq!(d[0].state, DeliveryState::Delivered);
    let names: Vec<String> = std::fs::read_dir(h.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("fd-FILE-1-{id}.hl7")], "no temporary left");
}

// ---------------------------------------------------------------------------------------
// Other sources
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_source_answers_with_the_acks() {
    let h = Harness::start(
        "http = \"127.0.0.1:0\"\n\n[[channel]]\nname = \"posted\"\nsource = { type = \"http\", path = \"/hl7/in\", max_body = \"2KiB\" }\n",
    )
    .await;
    let url = format!("http://{}/hl7/in", h.engine().http_addr().unwrap());
    let client = support::http_client();

    let raw = msg("P1").build();
    let r = client.post(&url).body(raw.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").unwrap().to_str().unwrap(),
        HL7_MEDIA_TYPE
    );
    let body = r.bytes().await.unwrap();
    let a = ack_of(&body);
    assert_eq!((a.code.as_str(), a.control_id.as_str()), ("AA", "P1"));
    let stored = h.only("P1").await;
    assert_eq!(stored.summary.state, MessageState::Accepted);
    assert_eq!(stored.ack.as_deref(), Some(&body[..]));
    assert!(stored.summary.peer.starts_with("http:127.0.0.1:"));

    let r = client
        .post(&url)
        .body("this is not hl7\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let a = ack_of(&r.bytes().await.unwrap());
    assert_eq!((a.code.as_str(), a.err3.as_str()), ("AR", "100"));

    // A batch: one ACK per message, in order.
    let mut batch = b"BHS|^~\\&|EHR|CLINIC\r".to_vec();
    batch.extend(msg("P2").build());
    batch.extend(msg("P3").build());
    batch.extend(b"BTS|2\r");
    let r = client.post(&url).body(batch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let acks: Vec<String> = hl7v2::split_file(&body)
        .map(|m| {
            let m = m.expect("each ACK reads");
            let a = ack_of(m.bytes);
            assert_eq!(a.code, "AA");
            a.control_id
        })
        .collect();
    assert_eq!(acks, ["P2", "P3"]);
    assert_eq!(h.only("P2").await.summary.state, MessageState::Accepted);
    assert_eq!(h.only("P3").await.summary.state, MessageState::Accepted);

    // An empty body holds no message.
    let r = client.post(&url).body("  \n").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Over max_body: refused unread.
    let mut big = msg("P4").build();
    big.extend(format!("NTE|1||{}\r", "x".repeat(4096)).into_bytes());
    let r = client.post(&url).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.text().await.unwrap(),
        "the body is larger than this source's max_body (2048 bytes); nothing was stored\n"
    );
    assert!(h.stored("P4").await.is_empty());
    assert_eq!(h.in_channel("posted").await.len(), 4);
}

#[tokio::test]
async fn directory_source_stores_files_and_sorts_them_into_done_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let h = Harness::start_in(
        dir,
        "\n[[channel]]\nname = \"files\"\nsource = { type = \"directory\", path = \"inbox\", poll = \"50ms\", max_file = \"4KiB\" }\n",
    )
    .await;

    // Not matching the pattern: left alone (checked once later files have been handled).
    std::fs::write(inbox.join("notes.txt"), "not for us").unwrap();
    let mut good = msg("DIR1").build();
    good.extend(msg("DIR2").build());
    drop_file(&inbox, "good.hl7", &good);
    let done = inbox.join("done/good.hl7");
    eventually("good.hl7 to move to done/", || async {
        done.exists().then_some(())
    })
    .await;
    assert!(!inbox.join("good.hl7").exists());
    assert_eq!(std::fs::read(&done).unwrap(), good, "moved, not rewritten");
    for cid in ["DIR1", "DIR2"] {
        let s = h.only(cid).await.summary;
        assert_eq!(s.state, MessageState::Accepted);
        assert_eq!(s.peer, "file:good.hl7");
    }

    let first = msg("DIR3").build();
    let mut bad = first.clone();
    let offset = bad.len();
    bad.extend(b"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01|DIR4|P|2.5.1\rPIDX|1\r");
    drop_file(&inbox, "bad.hl7", &bad);
    let error = inbox.join("error/bad.hl7");
    eventually("bad.hl7 to move to error/", || async {
        error.exists().then_some(())
    })
    .await;
    assert!(!inbox.join("bad.hl7").exists());
    let report = std::fs::read_to_string(inbox.join("error/bad.hl7.errors.txt")).unwrap();
    assert!(
        report.starts_with(&format!("message 2 at byte {offset}: rejected: ")),
        "{report}"
    );
    assert_eq!(report.lines().count(), 1, "{report}");
    assert_eq!(h.only("DIR3").await.summary.state, MessageState::Accepted);
    let rows = h.in_channel("files").await;
    assert_eq!(rows.len(), 4, "the bad message is stored too");
    assert_eq!(rows[3].state, MessageState::Rejected);

    // Over max_file: moved to error/ unread, with a report saying why.
    let mut big = msg("DIR5").build();
    big.extend(format!("NTE|1||{}\r", "x".repeat(8192)).into_bytes());
    drop_file(&inbox, "big.hl7", &big);
    let error = inbox.join("error/big.hl7");
    eventually("big.hl7 to move to error/", || async {
        error.exists().then_some(())
    })
    .await;
    let report = std::fs::read_to_string(inbox.join("error/big.hl7.errors.txt")).unwrap();
    assert!(report.contains("larger than"), "{report}");
    assert!(h.stored("DIR5").await.is_empty(), "not read");

    // A file with no message at all.
    drop_file(&inbox, "empty.hl7", b"");
    let error = inbox.join("error/empty.hl7");
    eventually("empty.hl7 to move to error/", || async {
        error.exists().then_some(())
    })
    .await;
    let report = std::fs::read_to_string(inbox.join("error/empty.hl7.errors.txt")).unwrap();
    assert_eq!(report, "no HL7 v2 message in the file\n");

    // Text that is no HL7 at all: nothing stored, the file in error/ with the line named.
    drop_file(
        &inbox,
        "letter.hl7",
        b"Dear colleague,\nplease find enclosed\n",
    );
    let error = inbox.join("error/letter.hl7");
    eventually("letter.hl7 to move to error/", || async {
        error.exists().then_some(())
    })
    .await;
    let report = std::fs::read_to_string(inbox.join("error/letter.hl7.errors.txt")).unwrap();
    assert!(report.starts_with("line outside a message: "), "{report}");
    assert_eq!(h.in_channel("files").await.len(), 4);
    assert!(inbox.join("notes.txt").exists());

    // None of those four became a message the channel counted; the source counts the files.
    let stats = h.engine().source_stats("files").expect("directory stats");
    eventually("the files to be counted", || async {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        (load(&stats.files_done) == 1 && load(&stats.files_failed) == 4).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Reprocessing and shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn reprocess_queues_a_second_delivery() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}{}{}",
        mllp_channel("rp"),
        mllp_destination("lab", &receiver.addr.to_string()),
        mllp_channel("other")
    ))
    .await;
    let raw = msg("RP1").build();
    h.send("rp", &raw).await;
    let id = h.only("RP1").await.summary.id;
    assert_eq!(h.settled(id).await.len(), 1);

    let channel = h.engine().channel("rp").unwrap();
    let outcome = channel.reprocess(id).await.unwrap();
    assert_eq!(
        outcome,
        Reprocessed {
            state: MessageState::Accepted,
            queues: vec!["rp/lab".into()],
            reason: None,
        }
    );
    eventually("the second delivery to settle", || async {
        let d = h.deliveries(id).await;
        (d.len() == 2 && d.iter().all(|d| d.state == DeliveryState::Delivered)).then_some(())
    })
    .await;
    assert_eq!(receiver.received(), [raw.clone(), raw]);

    assert!(matches!(
        channel.reprocess(MessageId(id.0 + 1000)).await,
        Err(ReprocessError::NotFound(_))
    ));
    assert!(matches!(
        h.engine().channel("other").unwrap().reprocess(id).await,
        Err(ReprocessError::OtherChannel(..))
    ));

    // Not routed again: the outcome says why.
    h.send(
        "rp",
        b"MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240101120000||ADT^A01||P|2.5.1\rPID|1\r",
    )
    .await;
    let refused = h
        .in_channel("rp")
        .await
        .into_iter()
        .find(|m| m.state == MessageState::Rejected)
        .expect("the message without MSH-10 is stored as rejected");
    let outcome = channel.reprocess(refused.id).await.unwrap();
    assert_eq!(outcome.state, MessageState::Rejected);
    assert!(outcome.queues.is_empty());
    assert_eq!(
        outcome.reason.as_deref(),
        Some("required field MSH-10 (message control id) is empty")
    );
}

#[tokio::test]
async fn reprocess_does_not_queue_again_while_a_delivery_is_pending() {
    let down = free_addr().await;
    let h = Harness::start(&format!(
        "{}{}",
        mllp_channel("rpq"),
        mllp_destination("lab", &down.to_string())
    ))
    .await;
    h.send("rpq", &msg("RQ1").build()).await;
    let id = h.only("RQ1").await.summary.id;
    let outcome = h
        .engine()
        .channel("rpq")
        .unwrap()
        .reprocess(id)
        .await
        .unwrap();
    assert_eq!(
        h.deliveries(id).await.len(),
        1,
        "still the one pending delivery"
    );
    assert_eq!(
        outcome,
        Reprocessed {
            state: MessageState::Accepted,
            queues: Vec::new(),
            reason: None,
        },
        "nothing was appended, so no queue is reported"
    );
}

#[tokio::test]
async fn a_destination_gives_up_after_max_attempts() {
    let receiver = Receiver::start().await;
    receiver.script("G1", &[Answer::Code(AckCode::AE); 5]);
    let h = Harness::start(&format!(
        "{}  [[channel.destination]]\n  name = \"lab\"\n  type = \"mllp\"\n  connect = \"{}\"\n  retry = {{ initial = \"20ms\", max = \"40ms\", max_attempts = 2 }}\n",
        mllp_channel("giveup"),
        receiver.addr
    ))
    .await;
    h.send("giveup", &msg("G1").build()).await;
    h.send("giveup", &msg("G2").build()).await;
    let d = h.settled(h.only("G1").await.summary.id).await;
    assert_eq!((d[0].state, d[0].attempts), (DeliveryState::Failed, 2));
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap_or("")
            .ends_with("(after 2 attempts)"),
        "{:?}",
        d[0].last_error
    );
    let d = h.settled(h.only("G2").await.summary.id).await;
    assert_eq!(d[0].state, DeliveryState::Delivered);
    assert_eq!(receiver.received_ids(), ["G1", "G1", "G2"]);
}

#[tokio::test]
async fn parallel_workers_deliver_everything_once() {
    let receiver = Receiver::start().await;
    let h = Harness::start(&format!(
        "{}{}  parallel = 4\n",
        mllp_channel("par"),
        mllp_destination("lab", &receiver.addr.to_string())
    ))
    .await;
    let mut client = h.client("par").await;
    let ids: Vec<String> = (1..=12).map(|i| format!("PAR{i:02}")).collect();
    for cid in &ids {
        send(&mut client, &msg(cid).build()).await;
    }
    receiver.wait_received(12).await;
    let mut got = receiver.received_ids();
    got.sort();
    assert_eq!(got, ids, "each delivered exactly once");
    for cid in &ids {
        let d = h.settled(h.only(cid).await.summary.id).await;
        assert_eq!((d[0].state, d[0].attempts), (DeliveryState::Delivered, 1));
    }
}

#[tokio::test]
async fn shutdown_is_prompt_with_idle_connections_and_closes_the_store() {
    let down = free_addr().await;
    let mut h = Harness::start(&format!(
        "http = \"127.0.0.1:0\"\n\n{}{}\n[[channel]]\nname = \"web\"\nsource = {{ type = \"http\", path = \"/in\" }}\n",
        mllp_channel("sd"),
        mllp_destination("lab", &down.to_string()),
    ))
    .await;
    let addr = h.mllp_addr("sd");
    // One idle connection after a message, one that never sent anything, and an idle HTTP
    // keep-alive connection; a delivery keeps failing in the background.
    let mut used = h.client("sd").await;
    assert_eq!(
        ack_of(&send(&mut used, &msg("S1").build()).await).code,
        "AA"
    );
    let mut silent = RawConnection::open(addr).await;
    let http = support::http_client();
    let r = http
        .post(format!("http://{}/in", h.engine().http_addr().unwrap()))
        .body(msg("S2").build())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = h.store.clone();

    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .expect("shutdown returns promptly with idle connections open");

    assert!(
        silent.closed_within(Duration::from_secs(5)).await,
        "idle connections are closed"
    );
    let err = store
        .search(SearchFilter::default())
        .await
        .expect_err("the store is closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is gone"
    );
    drop(used);
}
