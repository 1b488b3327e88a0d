//! Stopping and starting a channel (the management API's stop/start): a stopped channel answers
//! AE "channel stopped" and stores nothing, its destination workers claim nothing, and starting
//! it again resumes both. Real MLLP sockets, a real SQLite store, a real receiving peer.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use causeway_engine::runtime::queue_name;
use causeway_store::DeliveryState;
use support::{Harness, Receiver, ack_of, eventually, msg, send};

async fn harness(receiver: &Receiver) -> Harness {
    Harness::start(&format!(
        "[[channel]]\nname = \"adt\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n\
           [[channel.destination]]\n  name = \"lab\"\n  type = \"mllp\"\n  connect = \"{}\"\n\
           retry = {{ initial = \"20ms\", max = \"100ms\" }}\n",
        receiver.addr
    ))
    .await
}

#[tokio::test]
async fn a_stopped_channel_answers_ae_stores_nothing_and_resumes_when_started() {
    let receiver = Receiver::start().await;
    let h = harness(&receiver).await;
    let channel = h.engine().channel("adt").expect("channel").clone();
    assert_eq!(channel.source_kind, "mllp");
    assert!(channel.is_running());
    let mut client = h.client("adt").await;

    assert_eq!(
        ack_of(&send(&mut client, &msg("S1").build()).await).code,
        "AA"
    );
    let first = h.only("S1").await.summary.id;
    assert_eq!(h.settled(first).await[0].state, DeliveryState::Delivered);

    assert!(channel.stop(), "it was running");
    assert!(!channel.stop(), "already stopped");
    assert!(!channel.is_running());

    // The same connection stays open; the sender is told to retry, and nothing is stored.
    let ack = ack_of(&send(&mut client, &msg("S2").build()).await);
    assert_eq!(ack.code, "AE");
    assert_eq!(ack.control_id, "S2");
    assert_eq!(ack.err3, "207");
    assert_eq!(ack.text.as_deref(), Some("channel stopped"));
    let enhanced = ack_of(&send(&mut client, &msg("S3").accept_ack("AL").build()).await);
    assert_eq!(enhanced.code, "CE", "enhanced mode gets a commit error");
    let garbage = ack_of(&send(&mut client, b"not HL7 at all").await);
    assert_eq!(garbage.code, "AE", "even unparseable input is only refused");
    assert!(h.stored("S2").await.is_empty());
    assert!(h.stored("S3").await.is_empty());
    assert_eq!(h.in_channel("adt").await.len(), 1);
    let stats = &channel.stats;
    assert_eq!(stats.refused_stopped.load(Ordering::Relaxed), 3);
    assert_eq!(stats.received.load(Ordering::Relaxed), 1);

    // Workers claim nothing while stopped: a resend waits in the queue.
    let queue = queue_name("adt", "lab");
    h.store.requeue(first, &queue).await.expect("requeue");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 1, "nothing sent while stopped");
    let pending = h.deliveries(first).await;
    assert_eq!(pending.last().map(|d| d.state), Some(DeliveryState::Queued));
    assert_eq!(pending.last().map(|d| d.attempts), Some(0));

    // Started again: the waiting delivery goes out and the retried message is accepted.
    assert!(channel.start(), "it was stopped");
    assert!(!channel.start(), "already running");
    receiver.wait_received(2).await;
    eventually("the resend to be delivered", || async {
        let d = h.deliveries(first).await;
        (d.last().map(|d| d.state) == Some(DeliveryState::Delivered)).then_some(())
    })
    .await;
    assert_eq!(
        ack_of(&send(&mut client, &msg("S2").build()).await).code,
        "AA"
    );
    let second = h.only("S2").await.summary.id;
    assert_eq!(h.settled(second).await[0].state, DeliveryState::Delivered);
    assert_eq!(receiver.received_ids(), ["S1", "S1", "S2"]);
}
