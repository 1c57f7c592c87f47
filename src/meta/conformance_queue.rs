//! The work queue's part of the store contract (`meta/queue.rs`), on every engine as `conformance.rs` runs
//! it, once for each kind of work: a lease that ran out and was claimed again — under the same owner's
//! name, as two workers of one node have — can no longer renew, release or settle; its successor can; a
//! released item is due again; a held one cannot be claimed.

use super::conformance::{engines, enqueue_import, file, project};
use super::*;

const KINDS: [Queue; 3] = [Queue::Imports, Queue::Deliveries, Queue::BatchCollections];

/// Puts one piece of work of `queue` in the store, due now; returns its key.
async fn push(store: &dyn MetaStore, queue: Queue, now: Timestamp) -> String {
    let p = project("alpha");
    match queue {
        Queue::Imports => {
            let task = file(&p, "leased", FileState::Pending, 0, 3600);
            enqueue_import(store, &task).await;
            task.blob_key.to_string()
        }
        Queue::Deliveries => {
            let delivery = NewDelivery {
                id: "msg_1".into(),
                project: p,
                webhook_id: None,
                uri: Some("https://receiver.example/hook".into()),
                event_type: "file.active".into(),
                event: "{}".into(),
                created_at: now,
            };
            let mut tx = store.write().await.unwrap();
            tx.queue_deliveries(&[delivery]).await.unwrap();
            tx.commit().await.unwrap();
            "msg_1".into()
        }
        Queue::BatchCollections => {
            let batch = BatchRecord {
                id: "b1".into(),
                project: p,
                upstream_name: "batches/up-b1".into(),
                model: "models/gemini-test".into(),
                display_name: None,
                state: "BATCH_STATE_SUCCEEDED".into(),
                input_file: None,
                output_file: None,
                error: None,
                created_at: now,
                updated_at: now,
                end_time: None,
            };
            let unfinished = Unfinished { ended: &[], succeeded: "BATCH_STATE_SUCCEEDED" };
            assert!(store.put_batch(&batch, unfinished, 10).await.unwrap());
            "b1".into()
        }
    }
}

/// Claims due work of `queue` the way its workers do.
async fn pop(store: &dyn MetaStore, queue: Queue, owner: &str, now: Timestamp, until: Timestamp) -> Option<Lease> {
    match queue {
        Queue::Imports => store.claim_import(owner, now, until).await.unwrap().map(|task| task.lease),
        Queue::Deliveries => {
            let wanted = [(project("alpha"), 10)];
            store.claim_deliveries(owner, now, until, &wanted).await.unwrap().pop().map(|d| d.lease)
        }
        Queue::BatchCollections => store.claim_item(queue, "b1", owner, now, until).await.unwrap(),
    }
}

async fn holds(store: &dyn MetaStore, lease: &Lease) -> bool {
    let mut tx = store.write().await.unwrap();
    tx.holds(lease).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_that_ran_out_and_was_claimed_again_can_no_longer_renew_release_or_settle() {
    for engine in engines().await {
        for queue in KINDS {
            let store = engine.store.as_ref();
            let at = |micros: i64| Timestamp::from_micros(Timestamp::now().as_micros() + micros);
            let key = push(store, queue, at(0)).await;
            let t0 = at(0);
            let what = format!("{} {queue:?}", engine.name);

            let first = pop(store, queue, "node-a", t0, at(1)).await.unwrap_or_else(|| panic!("{what}: due"));
            assert_eq!(first.key, key, "{what}");
            assert_eq!(pop(store, queue, "node-b", t0, at(600_000_000)).await, None, "{what}: held, not handed out");
            assert_eq!(store.claim_item(queue, &key, "node-b", t0, at(600_000_000)).await.unwrap(), None, "{what}");

            // The lease ran out; the same node's other worker, under the same name, claims it again.
            let later = at(10);
            let second = pop(store, queue, "node-a", later, later.plus_seconds(600)).await.unwrap();
            assert_eq!((second.key.as_str(), second.fence), (key.as_str(), first.fence + 1), "{what}: a new fence");
            assert!(!store.renew(&first, later.plus_seconds(600)).await.unwrap(), "{what}: the stale holder renews");
            assert!(!store.release(&first, later, "stale", later).await.unwrap(), "{what}: the stale holder releases");
            assert!(!holds(store, &first).await, "{what}: the stale holder settles");
            assert!(holds(store, &second).await, "{what}");
            assert!(store.renew(&second, later.plus_seconds(900)).await.unwrap(), "{what}");
            assert_eq!(pop(store, queue, "node-b", later, later.plus_seconds(60)).await, None, "{what}: renewed");

            // Released, it is due again at once, for anyone.
            assert!(store.release(&second, later, "shutdown", later).await.unwrap(), "{what}");
            assert!(!holds(store, &second).await, "{what}: a released lease is gone");
            let third = pop(store, queue, "node-b", later, later.plus_seconds(60)).await;
            assert_eq!(third.map(|l| (l.owner, l.fence)), Some(("node-b".to_owned(), second.fence + 1)), "{what}");
        }
        engine.drop_database().await;
    }
}
