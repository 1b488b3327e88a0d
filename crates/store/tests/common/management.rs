//! Conformance of the reads the management API needs: error queues.

use std::time::Duration;

use causeway_store::{ClaimMode, DeliveryState, Outcome, Store, UnixMillis};

use super::{Harness, adt, claim};

/// Claims the head of `destination` and settles it with `outcome`.
async fn settle_head(store: &dyn Store, destination: &str, outcome: Outcome) {
    let w = claim("w", Duration::from_secs(600), ClaimMode::Fifo);
    let d = store
        .claim_next(destination, &w)
        .await
        .expect("claim")
        .expect("a claimable delivery");
    store.complete(&d, outcome).await.expect("settle");
}

fn failed(error: &str) -> Outcome {
    Outcome::Failed {
        error: error.into(),
        ack: Some(b"MSA|AR|X".to_vec()),
    }
}

pub async fn error_queue_holds_failed_deliveries_until_sent_again(h: &dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for (cid, mrn) in [("E1", "MRN-E1"), ("E2", "MRN-E2"), ("E3", "MRN-E3")] {
        ids.push(
            store
                .insert_inbound(adt("adt", cid, mrn, &["adt/lab", "adt/billing"]))
                .await
                .expect("insert")
                .id,
        );
    }
    // lab: E1 refused, E2 delivered, E3 refused; billing: E1 retrying (not failed).
    settle_head(&*store, "adt/lab", failed("AR: unknown patient")).await;
    settle_head(&*store, "adt/lab", Outcome::Delivered { ack: None }).await;
    settle_head(&*store, "adt/lab", failed("AR: bad order")).await;
    settle_head(
        &*store,
        "adt/billing",
        Outcome::Retry {
            error: "timeout".into(),
            next_attempt_at: UnixMillis::now(),
            ack: None,
        },
    )
    .await;

    let queue = store.error_queue("adt/lab", 0, 0).await.expect("read");
    assert_eq!(queue.total, 2);
    let seen: Vec<_> = queue
        .entries
        .iter()
        .map(|e| (e.message.header.control_id.as_str(), e.delivery.state))
        .collect();
    assert_eq!(
        seen,
        [("E3", DeliveryState::Failed), ("E1", DeliveryState::Failed)],
        "most recently queued first"
    );
    let e3 = &queue.entries[0];
    assert_eq!(e3.delivery.last_error.as_deref(), Some("AR: bad order"));
    assert_eq!(e3.delivery.message_id, ids[2]);
    assert_eq!(e3.message.id, ids[2]);
    assert_eq!(e3.message.channel, "adt");
    assert_eq!(e3.delivery.attempts, 1);

    // Paging keeps the total.
    let page = store.error_queue("adt/lab", 1, 1).await.expect("page");
    assert_eq!(page.total, 2);
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].message.id, ids[0]);

    // Retrying is not failed; an unknown destination has an empty queue.
    let billing = store.error_queue("adt/billing", 0, 0).await.expect("read");
    assert_eq!((billing.total, billing.entries.len()), (0, 0));
    let none = store.error_queue("nowhere", 0, 0).await.expect("read");
    assert_eq!(none.total, 0);

    // A resend takes E1 out of the error queue at once (pending), and it stays out once
    // delivered; the failed attempt stays in its delivery history.
    store.requeue(ids[0], "adt/lab").await.expect("requeue");
    let queue = store.error_queue("adt/lab", 0, 0).await.expect("read");
    assert_eq!(queue.total, 1);
    assert_eq!(queue.entries[0].message.id, ids[2]);
    settle_head(&*store, "adt/lab", Outcome::Delivered { ack: None }).await;
    assert_eq!(
        store
            .error_queue("adt/lab", 0, 0)
            .await
            .expect("read")
            .total,
        1
    );
    let history: Vec<DeliveryState> = store
        .deliveries(ids[0])
        .await
        .expect("deliveries")
        .into_iter()
        .filter(|d| d.destination == "adt/lab")
        .map(|d| d.state)
        .collect();
    assert_eq!(history, [DeliveryState::Failed, DeliveryState::Delivered]);
    store.close().await.expect("close");
}
