//! The outbox's part of the store contract (`meta/webhooks.rs`), on every engine as `conformance.rs` runs
//! it: deliveries queued in a transaction exist only once it commits, racing claimers never share one, and
//! only a lease's holder records an outcome.

use std::collections::HashSet;

use super::conformance::engines;
use super::*;

fn delivery(project: &ProjectId, webhook: Option<&str>, n: usize, now: Timestamp) -> NewDelivery {
    NewDelivery {
        id: format!("msg_{n:05}"),
        project: project.clone(),
        webhook_id: webhook.map(str::to_owned),
        uri: webhook.is_none().then(|| "https://receiver.example/hook".to_owned()),
        event_type: "file.active".into(),
        event: "{}".into(),
        created_at: now,
    }
}

fn webhook(project: &ProjectId, id: &str, now: Timestamp) -> Webhook {
    Webhook {
        id: id.into(),
        project: project.clone(),
        uri: format!("https://receiver.example/{id}"),
        events: vec!["file.active".into()],
        state: WebhookState::Enabled,
        secrets: SigningSecrets { current: format!("whsec_{id}"), previous: None },
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_appear_with_their_commit_and_racing_claimers_never_share_one() {
    for engine in engines().await {
        let store = engine.store.clone();
        let alpha = ProjectId::parse("alpha").unwrap();
        let now = Timestamp::now();
        store.insert_webhook(&webhook(&alpha, "w1", now)).await.unwrap();
        store
            .put_project_signing_secrets(&alpha, &SigningSecrets { current: "whsec_p".into(), previous: None }, now)
            .await
            .unwrap();

        let mut tx = store.write().await.unwrap();
        let subscribers = tx.webhook_subscribers(&alpha).await.unwrap();
        assert_eq!(subscribers, [Subscriber { webhook_id: "w1".into(), events: vec!["file.active".into()] }]);
        let queued: Vec<NewDelivery> =
            (0..200).map(|n| delivery(&alpha, (n % 2 == 0).then_some("w1"), n, now)).collect();
        tx.queue_deliveries(&queued).await.unwrap();
        drop(tx);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            store.delivery_backlog().await.unwrap().pending,
            0,
            "{}: a dropped transaction queues nothing",
            engine.name
        );

        let mut tx = store.write().await.unwrap();
        tx.queue_deliveries(&queued).await.unwrap();
        tx.commit().await.unwrap();
        let backlog = store.delivery_backlog().await.unwrap();
        assert_eq!((backlog.pending, backlog.oldest), (200, Some(now)), "{}", engine.name);

        let until = now.plus_seconds(60);
        let claimers: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let batch =
                            store.claim_deliveries(&format!("node-{i}"), Timestamp::now(), until, 7).await.unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|d| (format!("node-{i}"), d)));
                    }
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for claimer in claimers {
            claimed.extend(claimer.await.unwrap());
        }
        let ids: HashSet<&str> = claimed.iter().map(|(_, d)| d.id.as_str()).collect();
        assert_eq!((claimed.len(), ids.len()), (200, 200), "{}: each delivery leased once", engine.name);
        let (owner, registered) = claimed.iter().find(|(_, d)| d.webhook_id.is_some()).unwrap();
        assert_eq!(registered.uri, "https://receiver.example/w1", "a registered webhook's URI as it is now");
        assert_eq!(registered.secrets.as_ref().unwrap().current, "whsec_w1");
        let (_, own) = claimed.iter().find(|(_, d)| d.webhook_id.is_none()).unwrap();
        assert_eq!(own.secrets.as_ref().unwrap().current, "whsec_p", "a per-request one: the project's secret");

        let other = if owner == "node-0" { "node-1" } else { "node-0" };
        let settled = |d: &Delivery, outcome| Settled { id: d.id.clone(), webhook_id: d.webhook_id.clone(), outcome };
        let done = [settled(registered, DeliveryOutcome::Delivered)];
        assert_eq!(store.settle_deliveries(other, &done, now).await.unwrap(), 0, "only the holder settles");
        let retry = DeliveryOutcome::Retry { next_attempt_at: now, error: "HTTP 500".into(), failed: true };
        let mine: Vec<Settled> = claimed
            .iter()
            .filter(|(o, d)| o == owner && d.id != registered.id && d.webhook_id.is_none())
            .map(|(_, d)| settled(d, DeliveryOutcome::Delivered))
            .chain([settled(registered, retry)])
            .collect();
        assert_eq!(store.settle_deliveries(owner, &mine, now).await.unwrap(), mine.len(), "{}", engine.name);
        let again = store.claim_deliveries("node-9", Timestamp::now(), until, 500).await.unwrap();
        assert_eq!(again.len(), 1, "{}: a released delivery is due again, the others still leased", engine.name);
        assert_eq!((again[0].id.as_str(), again[0].attempts), (registered.id.as_str(), 1));

        let gone = [settled(&again[0], DeliveryOutcome::Abandoned)];
        assert_eq!(store.settle_deliveries("node-9", &gone, now).await.unwrap(), 1);
        let disabled = store.webhook(&alpha, "w1").await.unwrap().unwrap();
        assert_eq!(disabled.state, WebhookState::DisabledDueToFailedDeliveries, "{}", engine.name);
        let left = 100 - (mine.len() as u64 - 1);
        assert_eq!(store.delivery_backlog().await.unwrap().pending, left, "its other deliveries went with it");
        let mut tx = store.write().await.unwrap();
        assert!(tx.webhook_subscribers(&alpha).await.unwrap().is_empty(), "a disabled webhook hears nothing");
        drop(tx);
        assert!(store.webhook(&ProjectId::parse("beta").unwrap(), "w1").await.unwrap().is_none());
        engine.drop_database().await;
    }
}
