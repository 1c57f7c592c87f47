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
        secrets: SigningSecrets::new(format!("whsec_{id}")),
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
        assert!(store.insert_webhook(&webhook(&alpha, "w1", now), 20).await.unwrap());
        store.put_project_signing_secrets(&alpha, &SigningSecrets::new("whsec_p".into()), now).await.unwrap();

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
                        let wanted = [(ProjectId::parse("alpha").unwrap(), 7)];
                        let batch = store
                            .claim_deliveries(&format!("node-{i}"), Timestamp::now(), until, &wanted)
                            .await
                            .unwrap();
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
        let settled =
            |d: &Delivery, outcome| Settled { lease: d.lease.clone(), webhook_id: d.webhook_id.clone(), outcome };
        let forged = Lease { owner: other.to_owned(), ..registered.lease.clone() };
        let done = [Settled { lease: forged, ..settled(registered, DeliveryOutcome::Delivered) }];
        assert_eq!(store.settle_deliveries(&done, now).await.unwrap(), 0, "only the holder settles");
        let retry = DeliveryOutcome::Retry { next_attempt_at: now, error: "HTTP 500".into(), failed: true };
        let mine: Vec<Settled> = claimed
            .iter()
            .filter(|(o, d)| o == owner && d.id != registered.id && d.webhook_id.is_none())
            .map(|(_, d)| settled(d, DeliveryOutcome::Delivered))
            .chain([settled(registered, retry)])
            .collect();
        assert_eq!(store.settle_deliveries(&mine, now).await.unwrap(), mine.len(), "{}", engine.name);
        let again = store.claim_deliveries("node-9", Timestamp::now(), until, &[(alpha.clone(), 500)]).await.unwrap();
        assert_eq!(again.len(), 1, "{}: a released delivery is due again, the others still leased", engine.name);
        assert_eq!((again[0].id.as_str(), again[0].attempts), (registered.id.as_str(), 1));

        let gone = [settled(&again[0], DeliveryOutcome::Abandoned)];
        assert_eq!(store.settle_deliveries(&gone, now).await.unwrap(), 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_never_pass_the_limit_and_every_live_secret_is_kept() {
    for engine in engines().await {
        let store = engine.store.clone();
        let alpha = ProjectId::parse("alpha").unwrap();
        let now = Timestamp::now();
        let racers: Vec<_> = (0..40)
            .map(|i| {
                let (store, alpha) = (store.clone(), alpha.clone());
                tokio::spawn(async move { store.insert_webhook(&webhook(&alpha, &format!("w{i:02}"), now), 20).await })
            })
            .collect();
        let mut kept = 0;
        for racer in racers {
            kept += usize::from(racer.await.unwrap().unwrap());
        }
        let listed = store.webhooks(&alpha, None, 100).await.unwrap();
        assert_eq!((kept, listed.len()), (20, 20), "{}: 40 racing registrations, a limit of 20", engine.name);

        // Three replaced secrets, each signing until its own end: both tables keep them all.
        let secrets = SigningSecrets {
            current: "whsec_new".into(),
            previous: (1..=3).map(|i| (format!("whsec_old{i}"), now.plus_seconds(3600 * i))).collect(),
        };
        let mut hook = listed[0].clone();
        hook.secrets = secrets.clone();
        assert!(store.update_webhook(&hook).await.unwrap());
        assert_eq!(store.webhook(&alpha, &hook.id).await.unwrap().unwrap().secrets, secrets, "{}", engine.name);
        store.put_project_signing_secrets(&alpha, &secrets, now).await.unwrap();
        assert_eq!(store.project_signing_secrets(&alpha).await.unwrap(), Some(secrets.clone()), "{}", engine.name);
        let mut tx = store.write().await.unwrap();
        tx.queue_deliveries(&[delivery(&alpha, Some(&hook.id), 1, now), delivery(&alpha, None, 2, now)]).await.unwrap();
        tx.commit().await.unwrap();
        let claimed = store.claim_deliveries("node", now, now.plus_seconds(60), &[(alpha.clone(), 10)]).await.unwrap();
        assert_eq!(claimed.len(), 2);
        for delivery in &claimed {
            assert_eq!(delivery.secrets.as_ref(), Some(&secrets), "{}: a delivery signs with all of them", engine.name);
            assert_eq!(delivery.secrets.as_ref().unwrap().live(now.plus_seconds(3600 * 2)).len(), 2);
        }
        engine.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_project_with_due_deliveries_is_found_and_claimed_apart_from_the_others() {
    for engine in engines().await {
        let store = engine.store.clone();
        let now = Timestamp::now();
        let [a, b, c, d] = ["a-big", "b-one", "c-later", "d-one"].map(|p| ProjectId::parse(p).unwrap());
        let mut queued: Vec<NewDelivery> =
            (0..300).map(|n| delivery(&a, None, n, Timestamp::from_micros(now.as_micros() + n as i64))).collect();
        queued.push(delivery(&b, None, 1000, now.plus_seconds(1)));
        let mut later = delivery(&c, None, 1001, now);
        later.created_at = now.plus_seconds(3600); // due in an hour (its next attempt is its creation)
        queued.push(later);
        queued.push(delivery(&d, None, 1002, now.plus_seconds(2)));
        let mut tx = store.write().await.unwrap();
        tx.queue_deliveries(&queued).await.unwrap();
        tx.commit().await.unwrap();

        let at = now.plus_seconds(10);
        let due = store.projects_with_due_deliveries(at, None, 10).await.unwrap();
        assert_eq!(due, [a.clone(), b.clone(), d.clone()], "{}: not c, whose delivery is not due", engine.name);
        assert_eq!(store.projects_with_due_deliveries(at, Some(&a), 1).await.unwrap(), std::slice::from_ref(&b));
        assert_eq!(store.projects_with_due_deliveries(at, Some(&d), 10).await.unwrap(), []);

        // Two of a's 300 and b's and d's one each: a's backlog takes nothing from the others.
        let until = at.plus_seconds(60);
        let wanted = [(a.clone(), 2), (b.clone(), 5), (d.clone(), 1)];
        let claimed = store.claim_deliveries("node", at, until, &wanted).await.unwrap();
        let mut per_project: Vec<(String, usize)> = Vec::new();
        for delivery in &claimed {
            match per_project.iter_mut().find(|(p, _)| p == delivery.project.as_str()) {
                Some((_, n)) => *n += 1,
                None => per_project.push((delivery.project.to_string(), 1)),
            }
        }
        per_project.sort();
        let expected = [("a-big".to_owned(), 2), ("b-one".to_owned(), 1), ("d-one".to_owned(), 1)];
        assert_eq!(per_project, expected, "{}", engine.name);
        let oldest_of_a: Vec<&str> =
            claimed.iter().filter(|d| d.project == a).map(|d| d.id.as_str()).collect::<Vec<_>>();
        assert_eq!(oldest_of_a, ["msg_00000", "msg_00001"], "{}: a project's most overdue first", engine.name);
        let due = store.projects_with_due_deliveries(at, None, 10).await.unwrap();
        assert_eq!(due, std::slice::from_ref(&a), "{}: leased deliveries are not due", engine.name);
        engine.drop_database().await;
    }
}
