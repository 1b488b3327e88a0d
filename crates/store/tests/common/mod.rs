//! The backend conformance suite: every function takes a [`Harness`] and exercises the
//! [`Store`] trait only, so the SQLite backend and a later PostgreSQL backend run the very same
//! checks (`conformance_tests!` in each backend's test file instantiates them).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{
    BoxFuture, Claim, ClaimMode, DeliveryState, ErrorKind, EventFilter, EventKind, Header,
    MessageId, MessageState, NewEvent, NewMessage, Outcome, RetentionConfig, RetentionPolicy,
    SearchFilter, Store, UnixMillis, spawn_retention,
};

/// Opens a backend. Every call opens the *same* storage, so close + open is a restart.
pub mod management;
pub mod resources;
pub use management::*;
pub use resources::*;

pub trait Harness: Send + Sync {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>>;
}

/// An ADT^A01 with a given control id and patient identifier, queued to `destinations`.
pub fn adt(channel: &str, control_id: &str, mrn: &str, destinations: &[&str]) -> NewMessage {
    let raw = format!(
        "MSH|^~\\&|LABAPP|NORTH|CAUSEWAY|HUB|20240101120000||ADT^A01|{control_id}|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||{mrn}^^^NORTH^MR||DOE^JANE||19800101|F\r\
         PV1|1|I|WARD^1^2\r"
    );
    NewMessage {
        channel: channel.to_owned(),
        peer: "127.0.0.1:40000".to_owned(),
        received_at: UnixMillis::now(),
        header: Header {
            sending_app: "LABAPP".to_owned(),
            sending_facility: "NORTH".to_owned(),
            message_type: "ADT^A01".to_owned(),
            control_id: control_id.to_owned(),
            version: "2.5.1".to_owned(),
        },
        patient_ids: vec![mrn.to_owned()],
        raw: raw.into_bytes(),
        destinations: destinations.iter().map(|d| (*d).to_owned()).collect(),
        state: MessageState::Accepted,
        ack: None,
        outbound: None,
        events: Vec::new(),
        pending_resource: None,
    }
}

pub fn ack_for(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|CAUSEWAY|HUB|LABAPP|NORTH|20240101120001||ACK^A01|A{control_id}|P|2.5.1\rMSA|AA|{control_id}\r")
        .into_bytes()
}

pub fn claim(worker: &str, lease: Duration, mode: ClaimMode) -> Claim {
    Claim {
        worker: worker.to_owned(),
        lease,
        mode,
        resume_own: false,
    }
}

const LONG: Duration = Duration::from_secs(600);

pub async fn insert_then_read_back(h: &dyn Harness) {
    let store = h.open().await;
    let mut msg = adt("adt", "C1", "MRN-1", &["lab", "fhir", "lab"]);
    msg.ack = Some(ack_for("C1"));
    let out = store.insert_inbound(msg.clone()).await.expect("insert");
    assert_eq!(out.duplicate_of, None);
    assert!(!out.control_id_reused);

    let stored = store.message(out.id).await.expect("read").expect("present");
    assert_eq!(stored.raw.as_deref(), Some(&msg.raw[..]));
    assert_eq!(stored.ack, Some(ack_for("C1")));
    let s = &stored.summary;
    assert_eq!(s.id, out.id);
    assert_eq!(s.channel, "adt");
    assert_eq!(s.peer, "127.0.0.1:40000");
    assert_eq!(s.received_at, msg.received_at);
    assert_eq!(s.header, msg.header);
    assert_eq!(s.state, MessageState::Accepted);
    assert_eq!(s.size, msg.raw.len() as u64);
    assert!(!s.flags.control_id_reused);
    assert!(!s.payload_purged);
    assert_eq!(s.duplicate_of, None);

    // The repeated destination is queued once, in the order given.
    let deliveries = store.deliveries(out.id).await.expect("deliveries");
    let names: Vec<&str> = deliveries.iter().map(|d| d.destination.as_str()).collect();
    assert_eq!(names, ["lab", "fhir"]);
    assert!(
        deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Queued && d.attempts == 0)
    );
    assert!(deliveries[0].seq < deliveries[1].seq);
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 1);
    assert_eq!(store.queue_depth("fhir").await.expect("depth"), 1);
    assert_eq!(store.queue_depth("nowhere").await.expect("depth"), 0);
    assert!(store.oldest_queued_age("lab").await.expect("age").is_some());
    assert_eq!(store.oldest_queued_age("nowhere").await.expect("age"), None);
    assert_eq!(
        store
            .message(MessageId(out.id.0 + 1000))
            .await
            .expect("read"),
        None
    );
    store.close().await.expect("close");
}

pub async fn duplicate_returns_stored_ack_and_queues_nothing(h: &dyn Harness) {
    let store = h.open().await;
    let mut first = adt("adt", "D1", "MRN-2", &["lab"]);
    first.ack = Some(ack_for("D1"));
    let original = store.insert_inbound(first.clone()).await.expect("insert");

    let mut again = first.clone();
    again.ack = Some(b"a different ack the caller built".to_vec());
    let dup = store.insert_inbound(again).await.expect("insert duplicate");
    assert_ne!(dup.id, original.id, "a duplicate gets its own row");
    let d = dup.duplicate_of.as_ref().expect("detected as duplicate");
    assert_eq!(d.original, original.id);
    assert_eq!(
        d.ack,
        Some(ack_for("D1")),
        "the stored ACK comes back unchanged"
    );
    assert!(!dup.control_id_reused);

    assert_eq!(
        store.queue_depth("lab").await.expect("depth"),
        1,
        "not routed again"
    );
    assert!(
        store
            .deliveries(dup.id)
            .await
            .expect("deliveries")
            .is_empty()
    );
    let stored = store.message(dup.id).await.expect("read").expect("present");
    assert_eq!(stored.summary.state, MessageState::Duplicate);
    assert_eq!(stored.summary.duplicate_of, Some(original.id));
    assert_eq!(
        stored.raw.as_deref(),
        Some(&first.raw[..]),
        "same bytes as the original"
    );
    let events = store
        .events(EventFilter {
            message_id: Some(dup.id),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Duplicate);
    assert!(
        events[0]
            .detail
            .contains(&format!("duplicate of message {}", original.id))
    );
    store.close().await.expect("close");
}

pub async fn duplicate_uses_ack_recorded_later_or_none(h: &dyn Harness) {
    let store = h.open().await;
    let msg = adt("adt", "R1", "MRN-3", &["lab"]);
    let original = store.insert_inbound(msg.clone()).await.expect("insert");

    // No ACK recorded (say the process died before sending it): duplicate without an ACK.
    let dup = store.insert_inbound(msg.clone()).await.expect("insert");
    let d = dup.duplicate_of.expect("duplicate");
    assert_eq!((d.original, d.ack), (original.id, None));

    store
        .record_ack(original.id, ack_for("R1"))
        .await
        .expect("record ack");
    let dup = store.insert_inbound(msg).await.expect("insert");
    assert_eq!(
        dup.duplicate_of.expect("duplicate").ack,
        Some(ack_for("R1"))
    );
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 1);

    let err = store
        .record_ack(MessageId(987_654), ack_for("X"))
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "message 987654 not found");
    store.close().await.expect("close");
}

pub async fn reused_control_id_is_stored_flagged_and_routed(h: &dyn Harness) {
    let store = h.open().await;
    let first = store
        .insert_inbound(adt("adt", "U1", "MRN-4", &["lab"]))
        .await
        .expect("insert");
    let other = adt("adt", "U1", "MRN-5", &["lab"]);
    let second = store.insert_inbound(other.clone()).await.expect("insert");
    assert_ne!(second.id, first.id);
    assert_eq!(second.duplicate_of, None);
    assert!(second.control_id_reused);
    let stored = store
        .message(second.id)
        .await
        .expect("read")
        .expect("present");
    assert!(stored.summary.flags.control_id_reused);
    assert_eq!(stored.summary.state, MessageState::Accepted);
    assert_eq!(stored.raw.as_deref(), Some(&other.raw[..]));
    assert_eq!(
        store.queue_depth("lab").await.expect("depth"),
        2,
        "never dropped"
    );
    let events = store
        .events(EventFilter {
            kind: Some(EventKind::ControlIdReused),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message_id, Some(second.id));
    assert!(
        !events[0].detail.contains("MRN"),
        "no PHI in events: {}",
        events[0].detail
    );
    store.close().await.expect("close");
}

pub async fn duplicate_scope_is_channel_sender_and_control_id(h: &dyn Harness) {
    let store = h.open().await;
    let base = adt("adt", "S1", "MRN-6", &["lab"]);
    store.insert_inbound(base.clone()).await.expect("insert");

    let mut other_channel = base.clone();
    other_channel.channel = "adt-2".into();
    let mut other_facility = base.clone();
    other_facility.header.sending_facility = "SOUTH".into();
    let mut other_app = base.clone();
    other_app.header.sending_app = "RADAPP".into();
    for m in [other_channel, other_facility, other_app] {
        let out = store.insert_inbound(m).await.expect("insert");
        assert_eq!(out.duplicate_of, None);
        assert!(!out.control_id_reused);
    }

    // Without a control id nothing identifies a retransmission: both are routed.
    let mut blank = adt("adt", "", "MRN-7", &["blank"]);
    blank.header.control_id.clear();
    for _ in 0..2 {
        let out = store.insert_inbound(blank.clone()).await.expect("insert");
        assert_eq!(out.duplicate_of, None);
    }
    assert_eq!(store.queue_depth("blank").await.expect("depth"), 2);
    store.close().await.expect("close");
}

pub async fn racing_copies_are_routed_exactly_once(h: &dyn Harness) {
    let store = h.open().await;
    let msg = adt("adt", "RACE", "MRN-8", &["lab"]);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let store = Arc::clone(&store);
        let msg = msg.clone();
        tasks.push(tokio::spawn(async move { store.insert_inbound(msg).await }));
    }
    let mut originals = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        let out = t.await.expect("task").expect("insert");
        match out.duplicate_of {
            None => originals.push(out.id),
            Some(d) => duplicates.push(d.original),
        }
    }
    assert_eq!(originals.len(), 1, "exactly one copy is the original");
    assert_eq!(duplicates.len(), 23);
    assert!(duplicates.iter().all(|d| *d == originals[0]));
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 1);
    store.close().await.expect("close");
}

pub async fn retransmission_after_error_is_processed_again(h: &dyn Harness) {
    let store = h.open().await;
    let msg = adt("adt", "E1", "MRN-9", &["lab"]);
    let first = store.insert_inbound(msg.clone()).await.expect("insert");
    store
        .set_state(first.id, MessageState::Error)
        .await
        .expect("set state");
    let again = store.insert_inbound(msg).await.expect("insert");
    assert_eq!(
        again.duplicate_of, None,
        "an errored original does not make a duplicate"
    );
    assert!(
        !again.control_id_reused,
        "same bytes is no control id reuse"
    );
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 2);
    store.close().await.expect("close");
}

pub async fn fifo_head_blocks_its_destination(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = adt("adt", &format!("F{i}"), "MRN-10", &["lab", "other"]);
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let w = claim("w1", LONG, ClaimMode::Fifo);
    let head = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("head");
    assert_eq!(head.message_id, ids[0]);
    assert_eq!(head.state, DeliveryState::InFlight);
    assert_eq!(head.attempts, 1);
    assert_eq!(head.claimed_by.as_deref(), Some("w1"));
    assert!(head.lease_until.expect("lease") > UnixMillis::now());
    assert_eq!(
        store
            .claim_next("lab", &claim("w2", LONG, ClaimMode::Fifo))
            .await
            .expect("claim"),
        None,
        "head in flight blocks"
    );
    // Another destination is not blocked by lab's head.
    let o = store
        .claim_next("other", &w)
        .await
        .expect("claim")
        .expect("other head");
    assert_eq!(o.message_id, ids[0]);

    // A retry scheduled in the future keeps blocking.
    let later = UnixMillis::now().plus(LONG);
    store
        .complete(
            &head,
            Outcome::Retry {
                error: "connection refused".into(),
                next_attempt_at: later,
                ack: None,
            },
        )
        .await
        .expect("retry");
    assert_eq!(
        store.claim_next("lab", &w).await.expect("claim"),
        None,
        "waiting head blocks"
    );
    let d = &store.deliveries(ids[0]).await.expect("deliveries")[0];
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(d.last_error.as_deref(), Some("connection refused"));
    assert_eq!(d.next_attempt_at, Some(later));
    assert_eq!(d.claimed_by, None);
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 3);
    store.close().await.expect("close");
}

pub async fn fifo_advances_after_delivery_or_failure(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = adt("adt", &format!("G{i}"), "MRN-11", &["lab"]);
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let w = claim("w1", LONG, ClaimMode::Fifo);
    // A retry whose time has come is claimable again, as attempt 2.
    let head = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("head");
    let past = UnixMillis::now().minus(Duration::from_secs(1));
    store
        .complete(
            &head,
            Outcome::Retry {
                error: "timeout".into(),
                next_attempt_at: past,
                ack: None,
            },
        )
        .await
        .expect("retry");
    let again = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("head again");
    assert_eq!((again.seq, again.attempts), (head.seq, 2));
    assert_eq!(again.last_error.as_deref(), Some("timeout"));
    let ack = b"MSH|^~\\&|LAB\rMSA|AA|G0\r".to_vec();
    store
        .complete(
            &again,
            Outcome::Delivered {
                ack: Some(ack.clone()),
            },
        )
        .await
        .expect("delivered");
    let d = &store.deliveries(ids[0]).await.expect("deliveries")[0];
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.last_ack, Some(ack));

    let second = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("second");
    assert_eq!(second.message_id, ids[1]);
    store
        .complete(
            &second,
            Outcome::Failed {
                error: "AR: unknown patient class".into(),
                ack: None,
            },
        )
        .await
        .expect("failed");
    assert_eq!(
        store.deliveries(ids[1]).await.expect("d")[0].state,
        DeliveryState::Failed
    );

    let third = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("third");
    assert_eq!(
        third.message_id, ids[2],
        "a failed head leaves the queue for the error queue"
    );
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 1);

    let kinds: Vec<EventKind> = store
        .events(EventFilter {
            destination: Some("lab".into()),
            ..EventFilter::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Retrying, EventKind::Delivered, EventKind::Failed]
    );
    store.close().await.expect("close");
}

pub async fn parallel_claims_take_several_in_order(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let m = adt("adt", &format!("P{i}"), "MRN-12", &["fhir"]);
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let p = claim("pw", LONG, ClaimMode::Parallel);
    let a = store
        .claim_next("fhir", &p)
        .await
        .expect("claim")
        .expect("a");
    let b = store
        .claim_next("fhir", &p)
        .await
        .expect("claim")
        .expect("b");
    assert_eq!((a.message_id, b.message_id), (ids[0], ids[1]));
    // A retry waiting for its time is skipped in parallel mode.
    store
        .complete(
            &a,
            Outcome::Retry {
                error: "503".into(),
                next_attempt_at: UnixMillis::now().plus(LONG),
                ack: None,
            },
        )
        .await
        .expect("retry");
    let c = store
        .claim_next("fhir", &p)
        .await
        .expect("claim")
        .expect("c");
    let d = store
        .claim_next("fhir", &p)
        .await
        .expect("claim")
        .expect("d");
    assert_eq!((c.message_id, d.message_id), (ids[2], ids[3]));
    assert_eq!(store.claim_next("fhir", &p).await.expect("claim"), None);
    // FIFO mode on the same queue is blocked by the waiting head.
    assert_eq!(
        store
            .claim_next("fhir", &claim("fw", LONG, ClaimMode::Fifo))
            .await
            .expect("claim"),
        None
    );
    store
        .complete(&c, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");
    assert_eq!(store.queue_depth("fhir").await.expect("depth"), 3);
    store.close().await.expect("close");
}

pub async fn expired_lease_is_taken_over_and_fenced(h: &dyn Harness) {
    let store = h.open().await;
    let id = store
        .insert_inbound(adt("adt", "L1", "MRN-13", &["lab"]))
        .await
        .expect("insert")
        .id;
    // A zero lease is expired as soon as it is granted: the worker "crashed".
    let stale = store
        .claim_next("lab", &claim("crashed", Duration::ZERO, ClaimMode::Fifo))
        .await
        .expect("claim")
        .expect("delivery");
    let taken = store
        .claim_next("lab", &claim("rescuer", LONG, ClaimMode::Fifo))
        .await
        .expect("claim")
        .expect("taken over");
    assert_eq!(taken.seq, stale.seq);
    assert_eq!(taken.message_id, id);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.claimed_by.as_deref(), Some("rescuer"));
    // The rescuer's lease is valid: nobody else gets it.
    assert_eq!(
        store
            .claim_next("lab", &claim("third", LONG, ClaimMode::Parallel))
            .await
            .expect("claim"),
        None
    );

    let err = store
        .complete(&stale, Outcome::Delivered { ack: None })
        .await
        .expect_err("fenced");
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    assert_eq!(
        err.to_string(),
        format!(
            "delivery {} to lab is no longer leased by crashed (attempt 1)",
            stale.seq
        )
    );
    let err = store.renew_lease(&stale, LONG).await.expect_err("fenced");
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    store
        .complete(&taken, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");
    assert_eq!(
        store.deliveries(id).await.expect("d")[0].state,
        DeliveryState::Delivered
    );
    let err = store
        .complete(&taken, Outcome::Delivered { ack: None })
        .await
        .expect_err("twice");
    assert_eq!(
        err.kind(),
        ErrorKind::LeaseLost,
        "a settled delivery cannot be settled again"
    );
    store.close().await.expect("close");
}

pub async fn a_restarted_worker_takes_over_its_own_lease_at_once(h: &dyn Harness) {
    let store = h.open().await;
    store
        .insert_inbound(adt("adt", "OWN1", "MRN-18", &["lab"]))
        .await
        .expect("insert");
    for mode in [ClaimMode::Fifo, ClaimMode::Parallel] {
        let first = Claim {
            resume_own: true,
            ..claim("node-a/lab#0", LONG, mode)
        };
        let d = store
            .claim_next("lab", &first)
            .await
            .expect("claim")
            .expect("d");
        // Someone else must wait for the lease, and so must the same identity without
        // `resume_own` (a worker that may hold several claims)...
        let other = claim("node-b/lab#0", LONG, mode);
        assert!(
            store
                .claim_next("lab", &claim("node-a/lab#0", LONG, mode))
                .await
                .expect("claim")
                .is_none()
        );
        assert!(
            store
                .claim_next("lab", &other)
                .await
                .expect("claim")
                .is_none()
        );
        // ...but the same identity after a crash takes it over, fencing the earlier claim.
        let again = store
            .claim_next("lab", &first)
            .await
            .expect("claim")
            .expect("again");
        assert_eq!((again.seq, again.attempts), (d.seq, d.attempts + 1));
        let err = store
            .complete(&d, Outcome::Delivered { ack: None })
            .await
            .expect_err("the earlier run's claim is fenced");
        assert_eq!(err.kind(), ErrorKind::LeaseLost);
        if mode == ClaimMode::Parallel {
            store
                .complete(&again, Outcome::Delivered { ack: None })
                .await
                .expect("delivered");
        } else {
            store
                .complete(
                    &again,
                    Outcome::Retry {
                        error: "again".into(),
                        next_attempt_at: UnixMillis(0),
                        ack: None,
                    },
                )
                .await
                .expect("retry");
        }
    }
    store.close().await.expect("close");
}

pub async fn batches_claim_in_order_and_release_what_was_not_attempted(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let m = adt("adt", &format!("B{n}"), "MRN-19", &["lab"]);
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let w = claim("w", LONG, ClaimMode::Fifo);
    let batch = store.claim_batch("lab", &w, 3).await.expect("claim");
    let got: Vec<MessageId> = batch.iter().map(|d| d.message_id).collect();
    assert_eq!(
        got,
        ids[..3].to_vec(),
        "the head and the entries right behind it"
    );
    // While the batch is out, FIFO has nothing more to give.
    assert!(
        store
            .claim_batch("lab", &claim("other", LONG, ClaimMode::Fifo), 3)
            .await
            .expect("claim")
            .is_empty()
    );

    // The first is delivered, the second fails and will be retried, the third was never tried.
    let results = store
        .complete_batch(vec![
            (batch[0].clone(), Outcome::Delivered { ack: None }),
            (
                batch[1].clone(),
                Outcome::Retry {
                    error: "AE".into(),
                    next_attempt_at: UnixMillis(0),
                    ack: None,
                },
            ),
            (batch[2].clone(), Outcome::Released),
        ])
        .await
        .expect("complete");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let third = store.deliveries(ids[2]).await.expect("deliveries");
    assert_eq!(
        (third[0].state, third[0].attempts),
        (DeliveryState::Queued, 0),
        "released as it was"
    );

    // The next batch starts again at the failed head, keeping order.
    let again = store.claim_batch("lab", &w, 10).await.expect("claim");
    let got: Vec<MessageId> = again.iter().map(|d| d.message_id).collect();
    assert_eq!(got, ids[1..].to_vec());
    assert_eq!(again[0].attempts, 2);
    // A stale settle of an earlier claim is refused for that delivery only.
    let results = store
        .complete_batch(vec![
            (batch[1].clone(), Outcome::Delivered { ack: None }),
            (again[0].clone(), Outcome::Delivered { ack: None }),
        ])
        .await
        .expect("complete");
    assert_eq!(
        results[0].as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::LeaseLost)
    );
    assert!(results[1].is_ok());
    store.close().await.expect("close");
}

pub async fn settling_and_claiming_share_one_commit_and_keep_fifo(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let m = adt("adt", &format!("SC{n}"), "MRN-20", &["lab"]);
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let w = claim("w", LONG, ClaimMode::Fifo);
    let first = store.claim_batch("lab", &w, 2).await.expect("claim");
    let commits = store.stats().commits;
    let settled = first
        .iter()
        .map(|d| (d.clone(), Outcome::Delivered { ack: None }))
        .collect();
    let done = store
        .settle_and_claim(settled, "lab", &w, 2)
        .await
        .expect("settle and claim");
    let (results, second) = (done.settled, done.claimed);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(store.stats().commits, commits + 1, "one commit for both");
    for id in &ids[..2] {
        let d = store.deliveries(*id).await.expect("deliveries");
        assert_eq!(d[0].state, DeliveryState::Delivered);
    }
    let got: Vec<MessageId> = second.iter().map(|d| d.message_id).collect();
    assert_eq!(got, ids[2..4].to_vec(), "the claim sees the batch settled");

    // A failed head is claimed again first: order is kept across the combined writes.
    let settled = vec![
        (
            second[0].clone(),
            Outcome::Retry {
                error: "AE".into(),
                next_attempt_at: UnixMillis(0),
                ack: None,
            },
        ),
        (second[1].clone(), Outcome::Released),
    ];
    let done = store
        .settle_and_claim(settled, "lab", &w, 10)
        .await
        .expect("settle and claim");
    let (results, third) = (done.settled, done.claimed);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let got: Vec<MessageId> = third.iter().map(|d| d.message_id).collect();
    assert_eq!(got, ids[2..].to_vec());
    assert_eq!(third[0].attempts, 2);
    // A stale entry is refused for itself only; the claim still happens.
    let done = store
        .settle_and_claim(
            vec![(second[0].clone(), Outcome::Delivered { ack: None })],
            "lab",
            &w,
            10,
        )
        .await
        .expect("settle and claim");
    let (results, fourth) = (done.settled, done.claimed);
    assert_eq!(
        results[0].as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::LeaseLost)
    );
    assert!(fourth.is_empty(), "the batch is still out: {fourth:?}");
    store.close().await.expect("close");
}

pub async fn renewed_lease_keeps_the_claim(h: &dyn Harness) {
    let store = h.open().await;
    store
        .insert_inbound(adt("adt", "N1", "MRN-14", &["lab"]))
        .await
        .expect("insert");
    let d = store
        .claim_next("lab", &claim("w", Duration::ZERO, ClaimMode::Fifo))
        .await
        .expect("claim")
        .expect("delivery");
    let until = store.renew_lease(&d, LONG).await.expect("renew");
    assert!(until > UnixMillis::now().plus(Duration::from_secs(500)));
    assert_eq!(
        store
            .claim_next("lab", &claim("x", LONG, ClaimMode::Fifo))
            .await
            .expect("claim"),
        None
    );
    store
        .complete(&d, Outcome::Delivered { ack: None })
        .await
        .expect("complete after renew");
    store.close().await.expect("close");
}

pub async fn in_flight_after_restart_is_delivered_again(h: &dyn Harness) {
    let store = h.open().await;
    let id = store
        .insert_inbound(adt("adt", "K1", "MRN-15", &["lab"]))
        .await
        .expect("insert")
        .id;
    let held = store
        .claim_next(
            "lab",
            &claim("before-restart", Duration::ZERO, ClaimMode::Fifo),
        )
        .await
        .expect("claim")
        .expect("delivery");
    store.close().await.expect("close");

    let store = h.open().await;
    let d = store.deliveries(id).await.expect("deliveries");
    assert_eq!(
        d[0].state,
        DeliveryState::InFlight,
        "the claim survives the restart"
    );
    let again = store
        .claim_next("lab", &claim("after-restart", LONG, ClaimMode::Fifo))
        .await
        .expect("claim")
        .expect("claimable again once the lease has expired");
    assert_eq!((again.seq, again.attempts), (held.seq, 2));
    store.close().await.expect("close");
}

pub async fn requeue_appends_at_the_tail(h: &dyn Harness) {
    let store = h.open().await;
    let first = store
        .insert_inbound(adt("adt", "Q1", "MRN-16", &["lab"]))
        .await
        .expect("insert")
        .id;
    let w = claim("w", LONG, ClaimMode::Fifo);
    let d = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("d");
    store
        .complete(
            &d,
            Outcome::Failed {
                error: "AR".into(),
                ack: None,
            },
        )
        .await
        .expect("failed");
    let second = store
        .insert_inbound(adt("adt", "Q2", "MRN-16", &["lab"]))
        .await
        .expect("insert")
        .id;

    let seq = store.requeue(first, "lab").await.expect("requeue");
    assert!(seq > d.seq);
    let err = store
        .requeue(first, "lab")
        .await
        .expect_err("already pending");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = store
        .requeue(MessageId(424_242), "lab")
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Several at once, in one commit: each its own outcome, a refusal leaves the others.
    let third = store
        .insert_inbound(adt("adt", "Q3", "MRN-16", &["other"]))
        .await
        .expect("insert")
        .id;
    let outcomes = store
        .requeue_many(vec![first, MessageId(424_242), third], "lab")
        .await
        .expect("requeue many");
    assert_eq!(outcomes.len(), 3);
    assert_eq!(
        outcomes[0].as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::InvalidInput),
        "already pending"
    );
    assert_eq!(
        outcomes[1].as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::NotFound)
    );
    let third_seq = *outcomes[2].as_ref().expect("queued");
    assert!(third_seq > seq);

    // Resent message goes behind the one already waiting.
    let next = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("next");
    assert_eq!(next.message_id, second);
    store
        .complete(&next, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");
    let resent = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("resent");
    assert_eq!(
        (resent.message_id, resent.seq, resent.attempts),
        (first, seq, 1)
    );
    store
        .complete(&resent, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");
    let last = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("the one queued with others");
    assert_eq!((last.message_id, last.seq), (third, third_seq));
    let history = store.deliveries(first).await.expect("deliveries");
    assert_eq!(history.len(), 2, "the failed attempt stays on record");
    assert_eq!(history[0].state, DeliveryState::Failed);
    let events = store
        .events(EventFilter {
            kind: Some(EventKind::Requeued),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    let mut requeued: Vec<Option<MessageId>> = events.iter().map(|e| e.message_id).collect();
    requeued.sort();
    assert_eq!(
        requeued,
        [Some(first), Some(third)],
        "one per message queued again"
    );
    store.close().await.expect("close");
}

pub async fn outbound_bytes_are_kept_and_reprocess_requeues(h: &dyn Harness) {
    let store = h.open().await;
    let mut m = adt("adt", "OB1", "MRN-17", &["lab"]);
    m.outbound = Some(b"MSH|^~\\&|TRANSFORMED\r".to_vec());
    let id = store.insert_inbound(m).await.expect("insert").id;
    let stored = store.message(id).await.expect("read").expect("row");
    assert_eq!(
        stored.outbound.as_deref(),
        Some(&b"MSH|^~\\&|TRANSFORMED\r"[..])
    );
    assert!(
        stored
            .raw
            .as_deref()
            .is_some_and(|r| r.starts_with(b"MSH|^~\\&|LABAPP"))
    );

    // While the first delivery is pending, reprocess changes the bytes but queues nothing new.
    let created = store
        .reprocess(
            id,
            MessageState::Accepted,
            Some(b"MSH|^~\\&|AGAIN\r".to_vec()),
            vec!["lab".into()],
        )
        .await
        .expect("reprocess");
    assert!(created.is_empty(), "a pending delivery is not duplicated");
    let w = claim("w", LONG, ClaimMode::Fifo);
    let d = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("d");
    store
        .complete(&d, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");

    // Once delivered, reprocess appends a new delivery and records the new state.
    let created = store
        .reprocess(id, MessageState::Accepted, None, vec!["lab".into()])
        .await
        .expect("reprocess");
    assert_eq!(created.len(), 1);
    let stored = store.message(id).await.expect("read").expect("row");
    assert_eq!(
        stored.outbound, None,
        "no transforms now: the raw bytes are delivered"
    );
    let again = store
        .claim_next("lab", &w)
        .await
        .expect("claim")
        .expect("again");
    assert_eq!((again.message_id, again.seq), (id, created[0]));
    let err = store
        .reprocess(MessageId(909_090), MessageState::Accepted, None, Vec::new())
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    store.close().await.expect("close");
}

pub async fn search_filters_combine(h: &dyn Harness) {
    let store = h.open().await;
    let t0 = UnixMillis(1_700_000_000_000);
    let mut ids = Vec::new();
    for i in 0..6i64 {
        let mut m = adt(
            if i % 2 == 0 { "even" } else { "odd" },
            &format!("S{i}"),
            &format!("MRN-S{}", i % 3),
            &[],
        );
        m.received_at = UnixMillis(t0.0 + i * 1000);
        match i {
            1 => m.header.sending_facility = "SOUTH".into(),
            2 => m.header.sending_app = "RADAPP".into(),
            3 => m.header.message_type = "ADT^A08".into(),
            // Sorts between `ADT` and `ADT^`: must not be taken for an ADT event.
            4 => m.header.message_type = "ADTX^A01".into(),
            5 => {
                m.header.message_type = "ORU^R01".into();
                m.state = MessageState::Rejected;
            }
            _ => {}
        }
        ids.push(store.insert_inbound(m).await.expect("insert").id);
    }
    let find = |f: SearchFilter| {
        let store = Arc::clone(&store);
        async move {
            store
                .search(f)
                .await
                .expect("search")
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find(SearchFilter::default()).await,
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        find(SearchFilter {
            channel: Some("even".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[4], ids[2], ids[0]]
    );
    assert_eq!(
        find(SearchFilter {
            message_type: Some("ORU^R01".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[5]]
    );
    // A message code alone, or with `^*`, finds every event of it.
    for code in ["ADT", "ADT^*"] {
        assert_eq!(
            find(SearchFilter {
                message_type: Some(code.into()),
                ..SearchFilter::default()
            })
            .await,
            [ids[3], ids[2], ids[1], ids[0]],
            "{code}"
        );
    }
    assert_eq!(
        find(SearchFilter {
            message_type: Some("ADT^A08".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[3]]
    );
    assert_eq!(
        find(SearchFilter {
            sending_application: Some("RADAPP".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[2]]
    );
    assert_eq!(
        find(SearchFilter {
            sending_facility: Some("SOUTH".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[1]]
    );
    assert_eq!(
        find(SearchFilter {
            channel: Some("even".into()),
            sending_application: Some("LABAPP".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[4], ids[0]]
    );
    assert_eq!(
        find(SearchFilter {
            state: Some(MessageState::Rejected),
            ..SearchFilter::default()
        })
        .await,
        [ids[5]]
    );
    assert_eq!(
        find(SearchFilter {
            control_id: Some("S3".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[3]]
    );
    assert_eq!(
        find(SearchFilter {
            patient_id: Some("MRN-S1".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[4], ids[1]]
    );
    assert_eq!(
        find(SearchFilter {
            patient_id: Some("MRN-S".into()),
            ..SearchFilter::default()
        })
        .await,
        []
    );
    assert_eq!(
        find(SearchFilter {
            received_from: Some(UnixMillis(t0.0 + 1000)),
            received_before: Some(UnixMillis(t0.0 + 3000)),
            ..SearchFilter::default()
        })
        .await,
        [ids[2], ids[1]]
    );
    assert_eq!(
        find(SearchFilter {
            channel: Some("odd".into()),
            patient_id: Some("MRN-S0".into()),
            ..SearchFilter::default()
        })
        .await,
        [ids[3]]
    );
    assert_eq!(
        find(SearchFilter {
            limit: 2,
            offset: 1,
            ..SearchFilter::default()
        })
        .await,
        [ids[4], ids[3]]
    );
    store.close().await.expect("close");
}

pub async fn state_changes_and_events(h: &dyn Harness) {
    let store = h.open().await;
    let mut m = adt("adt", "T1", "MRN-17", &[]);
    m.state = MessageState::Received;
    let id = store.insert_inbound(m).await.expect("insert").id;
    store
        .set_state(id, MessageState::Filtered)
        .await
        .expect("set");
    let s = store
        .message(id)
        .await
        .expect("read")
        .expect("present")
        .summary;
    assert_eq!(s.state, MessageState::Filtered);
    let err = store
        .set_state(MessageId(777_777), MessageState::Accepted)
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound);

    store
        .add_event(NewEvent {
            channel: "adt".into(),
            destination: Some("lab".into()),
            message_id: None,
            kind: EventKind::Connection,
            detail: "connected to 127.0.0.1:2575".into(),
        })
        .await
        .expect("event");
    let all = store
        .events(EventFilter {
            channel: Some("adt".into()),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].kind, EventKind::StateChanged);
    assert_eq!(all[0].detail, "received -> filtered");
    assert_eq!(all[0].message_id, Some(id));
    assert_eq!(all[1].kind, EventKind::Connection);
    assert_eq!(all[1].destination.as_deref(), Some("lab"));
    assert!(all[0].id < all[1].id);
    let tail = store
        .events(EventFilter {
            after: Some(all[0].id),
            ..EventFilter::default()
        })
        .await
        .expect("tail");
    assert_eq!(tail, all[1..]);
    let newest = store
        .events(EventFilter {
            newest_first: true,
            limit: 1,
            ..EventFilter::default()
        })
        .await
        .expect("newest");
    assert_eq!(newest, all[1..]);
    store.close().await.expect("close");
}

pub async fn invalid_input_is_refused_with_its_field(h: &dyn Harness) {
    let store = h.open().await;
    let mut cases = Vec::new();
    let mut m = adt("", "I1", "MRN", &[]);
    m.channel.clear();
    cases.push((m, "invalid channel: empty"));
    let mut m = adt("adt", "I2", "MRN", &[]);
    m.header.control_id = "9".repeat(2000);
    cases.push((m, "invalid header.control_id: longer than 1024 bytes"));
    let mut m = adt("adt", "I3", "MRN", &[]);
    m.raw.clear();
    cases.push((m, "invalid raw: empty message"));
    let m = adt("adt", "I4", "MRN", &["lab", ""]);
    cases.push((m, "invalid destinations: entry 2 is empty or too long"));
    for (m, text) in cases {
        let err = store.insert_inbound(m).await.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), text);
    }
    assert!(
        store
            .search(SearchFilter::default())
            .await
            .expect("search")
            .is_empty(),
        "nothing stored"
    );
    store.close().await.expect("close");
}

pub async fn large_payload_round_trips_and_oversize_is_refused(h: &dyn Harness) {
    let store = h.open().await;
    let mut m = adt("adt", "BIG1", "MRN-BIG", &["lab"]);
    // An ORU-sized message with an embedded document.
    let pdf: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|i| b'A' + (i % 26) as u8)
        .collect();
    m.raw
        .extend_from_slice(b"OBX|1|ED|PDF^Report||^application^pdf^Base64^");
    m.raw.extend_from_slice(&pdf);
    m.raw.push(b'\r');
    let id = store.insert_inbound(m.clone()).await.expect("insert").id;
    let stored = store.message(id).await.expect("read").expect("present");
    assert_eq!(stored.raw.as_deref(), Some(&m.raw[..]));
    assert_eq!(stored.summary.size, m.raw.len() as u64);

    let mut huge = adt("adt", "BIG2", "MRN-BIG", &["lab"]);
    huge.raw = vec![b'x'; causeway_store::MAX_PAYLOAD_LEN + 1];
    let err = store
        .insert_inbound(huge)
        .await
        .expect_err("over the limit");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        format!(
            "invalid raw: {} bytes exceed the limit of {}",
            causeway_store::MAX_PAYLOAD_LEN + 1,
            causeway_store::MAX_PAYLOAD_LEN
        )
    );
    store.close().await.expect("close");
}

pub async fn everything_survives_close_and_reopen(h: &dyn Harness) {
    let store = h.open().await;
    let mut sent = Vec::new();
    for i in 0..20 {
        let mut m = adt("adt", &format!("DUR{i}"), &format!("MRN-D{i}"), &["lab"]);
        m.ack = Some(ack_for(&format!("DUR{i}")));
        let id = store.insert_inbound(m.clone()).await.expect("insert").id;
        sent.push((id, m));
    }
    store.close().await.expect("close");
    let err = store.message(sent[0].0).await.expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    let err = store
        .insert_inbound(sent[0].1.clone())
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);

    let store = h.open().await;
    for (id, m) in &sent {
        let stored = store
            .message(*id)
            .await
            .expect("read")
            .expect("present after reopen");
        assert_eq!(stored.raw.as_deref(), Some(&m.raw[..]));
        assert_eq!(stored.ack, m.ack);
    }
    assert_eq!(store.queue_depth("lab").await.expect("depth"), 20);
    // Duplicate detection works across the restart.
    let dup = store
        .insert_inbound(sent[3].1.clone())
        .await
        .expect("insert");
    assert_eq!(dup.duplicate_of.expect("duplicate").original, sent[3].0);
    let fresh = store
        .insert_inbound(adt("adt", "NEW", "MRN-NEW", &[]))
        .await
        .expect("insert");
    assert!(
        fresh.id > dup.id && dup.id > sent[19].0,
        "ids keep increasing"
    );
    store.close().await.expect("close");
}

pub async fn purge_respects_cutoffs_and_pending_deliveries(h: &dyn Harness) {
    let store = h.open().await;
    let old = UnixMillis::now().minus(Duration::from_secs(10 * 86_400));
    let mid = UnixMillis::now().minus(Duration::from_secs(3 * 86_400));
    let insert =
        |control: String, at: UnixMillis, dest: &'static [&'static str], channel: &'static str| {
            let store = Arc::clone(&store);
            async move {
                let mut m = adt(channel, &control, "MRN-P", dest);
                m.received_at = at;
                store.insert_inbound(m).await.expect("insert").id
            }
        };
    let old_done = insert("O1".into(), old, &[], "adt").await;
    let old_pending = insert("O2".into(), old, &["lab"], "adt").await;
    let mid_done = insert("M1".into(), mid, &[], "adt").await;
    let new_done = insert("N1".into(), UnixMillis::now(), &[], "adt").await;
    let other_channel = insert("X1".into(), old, &[], "other").await;

    // Payloads older than 2 days go; the pending one keeps its payload.
    let cut = UnixMillis::now().minus(Duration::from_secs(2 * 86_400));
    let r = store.purge("adt", Some(cut), None).await.expect("purge");
    assert_eq!((r.payloads_cleared, r.messages_deleted), (2, 0));
    for (id, purged) in [
        (old_done, true),
        (old_pending, false),
        (mid_done, true),
        (new_done, false),
        (other_channel, false),
    ] {
        let m = store.message(id).await.expect("read").expect("present");
        assert_eq!(m.summary.payload_purged, purged, "message {id}");
        assert_eq!(m.raw.is_none(), purged, "message {id}");
    }
    let err = store
        .requeue(old_done, "lab")
        .await
        .expect_err("no payload left");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // Metadata older than 5 days goes, except the message still waiting for delivery.
    let cut = UnixMillis::now().minus(Duration::from_secs(5 * 86_400));
    let r = store.purge("adt", None, Some(cut)).await.expect("purge");
    assert_eq!(r.messages_deleted, 1);
    assert_eq!(store.message(old_done).await.expect("read"), None);
    assert!(store.message(old_pending).await.expect("read").is_some());
    assert!(store.message(mid_done).await.expect("read").is_some());
    assert!(
        store.message(other_channel).await.expect("read").is_some(),
        "other channel untouched"
    );
    let hits = store
        .search(SearchFilter {
            patient_id: Some("MRN-P".into()),
            ..SearchFilter::default()
        })
        .await
        .expect("search");
    assert_eq!(hits.len(), 4);
    let purged = store
        .events(EventFilter {
            kind: Some(EventKind::Purged),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    assert_eq!(purged.len(), 2);
    assert_eq!(
        purged[1].detail,
        "retention removed 0 payloads, 1 messages, 0 events"
    );

    // Once delivered, the old message can go too.
    let d = store
        .claim_next("lab", &claim("w", LONG, ClaimMode::Fifo))
        .await
        .expect("claim")
        .expect("d");
    store
        .complete(&d, Outcome::Delivered { ack: None })
        .await
        .expect("delivered");
    let r = store
        .purge("adt", Some(UnixMillis::now()), Some(cut))
        .await
        .expect("purge");
    assert_eq!(r.messages_deleted, 1);
    assert!(
        r.events_deleted == 0,
        "events are newer than the metadata cutoff"
    );
    assert_eq!(store.message(old_pending).await.expect("read"), None);
    assert!(
        store
            .deliveries(old_pending)
            .await
            .expect("deliveries")
            .is_empty()
    );
    store.close().await.expect("close");
}

pub async fn purge_works_through_many_chunks(h: &dyn Harness) {
    let store = h.open().await;
    let old = UnixMillis::now().minus(Duration::from_secs(86_400));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let mut m = adt("bulk", &format!("B{t}-{i}"), "MRN-B", &[]);
                m.received_at = old;
                store.insert_inbound(m).await.expect("insert");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let r = store
        .purge("bulk", None, Some(UnixMillis::now()))
        .await
        .expect("purge");
    assert_eq!(r.messages_deleted, 1200);
    let left = store
        .search(SearchFilter {
            channel: Some("bulk".into()),
            ..SearchFilter::default()
        })
        .await
        .expect("search");
    assert!(left.is_empty());
    store.close().await.expect("close");
}

pub async fn retention_task_runs_passes_until_shutdown(h: &dyn Harness) {
    let store = h.open().await;
    let mut m = adt("ret", "RT1", "MRN-R", &[]);
    m.received_at = UnixMillis::now().minus(Duration::from_secs(40 * 86_400));
    let old = store.insert_inbound(m).await.expect("insert").id;
    let keep = store
        .insert_inbound(adt("ret", "RT2", "MRN-R", &[]))
        .await
        .expect("insert")
        .id;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RetentionConfig {
        interval: Duration::from_secs(3600),
        policies: vec![
            RetentionPolicy {
                channel: "ret".into(),
                payload_after: Some(Duration::from_secs(7 * 86_400)),
                metadata_after: Some(Duration::from_secs(30 * 86_400)),
            },
            RetentionPolicy {
                channel: "kept-forever".into(),
                payload_after: None,
                metadata_after: None,
            },
        ],
    };
    let mut handle = spawn_retention(Arc::clone(&store), config, async move {
        let _ = stopped.await;
    });
    handle.passes.changed().await.expect("first pass");
    let pass = *handle.passes.borrow();
    assert_eq!(pass.number, 1);
    assert_eq!(pass.failed_channels, 0);
    assert_eq!(pass.removed.messages_deleted, 1);
    assert_eq!(store.message(old).await.expect("read"), None);
    assert!(
        store
            .message(keep)
            .await
            .expect("read")
            .expect("kept")
            .raw
            .is_some()
    );
    stop.send(()).expect("stop");
    handle.task.await.expect("task ends on shutdown");
    store.close().await.expect("close");
}

/// Declares one `#[tokio::test]` per conformance function, each with a fresh harness from
/// `$make` (an expression evaluated per test).
macro_rules! conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                common::$name(&harness).await;
            }
        )*
    };
}
