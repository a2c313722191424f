//! The webhook delivery log and webhook secret rotation: written once, run on every backend.

use std::collections::BTreeSet;

use latchkey_core::Secret;

use super::{Backend, assert_absent, at};
use crate::access::EnvironmentRecord;
use crate::listing::{Cursor, PageRequest};
use crate::webhooks::{AttemptOutcome, DeliveryFilter, DeliveryStatus, WebhookDelivery};

fn delivery(id: &str, environment: &str, event: &str, connection: &str, s: i64) -> WebhookDelivery {
    WebhookDelivery::pending(
        id,
        environment,
        event,
        Some(connection.to_owned()),
        "https://app.example/hook",
        format!(r#"{{"type":"{event}"}}"#),
        at(s),
    )
}

fn outcome(status: DeliveryStatus, s: i64) -> AttemptOutcome {
    AttemptOutcome {
        status,
        url: "https://app.example/hook2".into(),
        last_status: Some(503),
        last_error: Some("the endpoint answered 503".into()),
        next_attempt_at: Some(at(s + 30)),
        at: at(s),
    }
}

pub(crate) async fn deliveries_are_claimed_once_per_lease_and_fenced_by_attempt(b: &impl Backend) {
    let store = b.store();
    for (id, s) in [("msg_a", 10), ("msg_b", 11), ("msg_c", 12)] {
        store
            .insert_webhook_delivery(&delivery(id, "default", "connection.created", "c1", s))
            .await
            .unwrap();
    }
    let taken = store.insert_webhook_delivery(&delivery("msg_a", "default", "x", "c", 1)).await;
    assert!(matches!(taken, Err(crate::StoreError::Conflict { .. })), "{taken:?}");
    // Not due yet.
    assert!(store.claim_webhook_deliveries(at(9), at(100), 10).await.unwrap().is_empty());

    let first = store.claim_webhook_deliveries(at(20), at(80), 2).await.unwrap();
    let ids: Vec<_> = first.iter().map(|d| (d.id.as_str(), d.attempts)).collect();
    assert_eq!(ids, [("msg_a", 1), ("msg_b", 1)], "oldest due first, one attempt each");
    assert_eq!(first[0].next_attempt_at, Some(at(80)), "the lease");
    let rest = store.claim_webhook_deliveries(at(20), at(80), 10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["msg_c"]);
    assert!(store.claim_webhook_deliveries(at(79), at(140), 10).await.unwrap().is_empty());

    // msg_a fails and is due again at 50; msg_b's claim lapses and is taken again at 80.
    assert!(
        store
            .record_webhook_attempt("msg_a", 1, &outcome(DeliveryStatus::Pending, 20))
            .await
            .unwrap()
    );
    let again = store.claim_webhook_deliveries(at(80), at(200), 10).await.unwrap();
    let ids: Vec<_> = again.iter().map(|d| (d.id.as_str(), d.attempts)).collect();
    assert_eq!(ids, [("msg_a", 2), ("msg_b", 2), ("msg_c", 2)]);
    // The first claim of msg_b answers late: not recorded.
    assert!(
        !store
            .record_webhook_attempt("msg_b", 1, &outcome(DeliveryStatus::Delivered, 81))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_webhook_attempt("msg_b", 2, &outcome(DeliveryStatus::Delivered, 82))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_webhook_attempt("msg_c", 2, &outcome(DeliveryStatus::Failed, 83))
            .await
            .unwrap()
    );

    let b_row = store.get_webhook_delivery("msg_b").await.unwrap().unwrap();
    assert_eq!(b_row.status, DeliveryStatus::Delivered);
    assert_eq!((b_row.delivered_at, b_row.next_attempt_at), (Some(at(82)), None));
    assert_eq!(b_row.url, "https://app.example/hook2");
    assert_eq!(b_row.attempts, 2);
    let a_row = store.get_webhook_delivery("msg_a").await.unwrap().unwrap();
    assert_eq!(a_row.last_status, Some(503));
    assert_eq!(a_row.last_error.as_deref(), Some("the endpoint answered 503"));
    assert_eq!(a_row.body, r#"{"type":"connection.created"}"#);
    assert!(store.get_webhook_delivery("msg_zzz").await.unwrap().is_none());

    // Only a failed delivery is queued again, from zero attempts.
    assert!(!store.retry_webhook_delivery("msg_b", at(90)).await.unwrap());
    assert!(!store.retry_webhook_delivery("msg_zzz", at(90)).await.unwrap());
    assert!(store.retry_webhook_delivery("msg_c", at(90)).await.unwrap());
    let c_row = store.get_webhook_delivery("msg_c").await.unwrap().unwrap();
    assert_eq!((c_row.status, c_row.attempts), (DeliveryStatus::Pending, 0));
    assert_eq!(c_row.next_attempt_at, Some(at(90)));
    // A late answer from before the retry is not recorded either.
    assert!(
        !store
            .record_webhook_attempt("msg_c", 2, &outcome(DeliveryStatus::Delivered, 91))
            .await
            .unwrap()
    );

    // Trimming removes finished rows created before the cut, never pending ones.
    assert_eq!(store.trim_webhook_deliveries(at(1000)).await.unwrap(), 1, "msg_b");
    assert!(store.get_webhook_delivery("msg_b").await.unwrap().is_none());
    assert!(store.get_webhook_delivery("msg_a").await.unwrap().is_some());
}

/// Two processes claiming the same rows at once: each row is claimed by one of them.
pub(crate) async fn deliveries_are_claimed_once_across_processes(b: &impl Backend) {
    let store = b.store();
    let other = b.reopen(b.keyring()).await.unwrap();
    for n in 0..60 {
        let id = format!("msg_{n:03}");
        store.insert_webhook_delivery(&delivery(&id, "default", "e", "c", n)).await.unwrap();
    }
    let claim = |store: std::sync::Arc<dyn crate::Store>| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim_webhook_deliveries(at(100), at(500), 4).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|d| d.id));
            }
        })
    };
    let (one, two) = (claim(store.clone()), claim(other));
    let (one, two) = (one.await.unwrap(), two.await.unwrap());
    let all: BTreeSet<_> = one.iter().chain(&two).cloned().collect();
    assert_eq!(one.len() + two.len(), 60, "no row claimed twice");
    assert_eq!(all.len(), 60, "every row claimed");
}

pub(crate) async fn delivery_lists_filter_page_newest_first_and_keep_to_one_environment(
    b: &impl Backend,
) {
    let store = b.store();
    for (id, env, event, conn, s) in [
        ("msg_1", "default", "connection.created", "c1", 1),
        ("msg_2", "default", "connection.deleted", "c1", 2),
        ("msg_3", "default", "connection.created", "c2", 3),
        ("msg_4", "prod", "connection.created", "c1", 4),
        ("msg_5", "default", "connection.created", "c1", 5),
    ] {
        store.insert_webhook_delivery(&delivery(id, env, event, conn, s)).await.unwrap();
    }
    let claimed = store.claim_webhook_deliveries(at(10), at(20), 1).await.unwrap();
    store
        .record_webhook_attempt(&claimed[0].id, 1, &outcome(DeliveryStatus::Failed, 10))
        .await
        .unwrap();
    let walk = |filter: DeliveryFilter, limit: u32| {
        let store = store.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(limit);
            loop {
                let got = store.list_webhook_deliveries(&filter, &page).await.unwrap();
                ids.extend(got.items.into_iter().map(|d| d.id));
                match got.next {
                    Some(next) => page.after = Some(Cursor::parse(&next.token()).unwrap()),
                    None => return ids,
                }
            }
        }
    };
    let default = DeliveryFilter::in_environment("default");
    assert_eq!(walk(default.clone(), 2).await, ["msg_5", "msg_3", "msg_2", "msg_1"]);
    assert_eq!(walk(DeliveryFilter::in_environment("prod"), 1).await, ["msg_4"]);
    assert!(walk(DeliveryFilter::in_environment("dev"), 1).await.is_empty());
    let created = DeliveryFilter { event: Some("connection.created".into()), ..default.clone() };
    assert_eq!(walk(created, 10).await, ["msg_5", "msg_3", "msg_1"]);
    let c2 = DeliveryFilter { connection: Some("c2".into()), ..default.clone() };
    assert_eq!(walk(c2, 10).await, ["msg_3"]);
    let failed = DeliveryFilter { status: Some(DeliveryStatus::Failed), ..default.clone() };
    assert_eq!(walk(failed, 10).await, ["msg_1"]);
    let pending = DeliveryFilter { status: Some(DeliveryStatus::Pending), ..default };
    assert_eq!(walk(pending, 10).await, ["msg_5", "msg_3", "msg_2"]);
}

pub(crate) async fn webhook_secret_rotation_keeps_the_previous_secret_sealed_until_then(
    b: &impl Backend,
) {
    let store = b.store();
    let (first, second, third) =
        ("whsec-canary-first-0001", "whsec-canary-second-002", "whsec-canary-third-0003");
    store
        .create_environment(&EnvironmentRecord {
            id: "prod".into(),
            webhook_url: Some("https://app.example/hook".into()),
            webhook_secret: Some(Secret::new(first)),
            webhook_previous_secret: None,
            webhook_previous_expires_at: None,
            created_at: at(1),
        })
        .await
        .unwrap();
    store
        .rotate_environment_webhook_secret("prod", &Secret::new(second), Some(at(50)))
        .await
        .unwrap();
    let env = store.get_environment("prod").await.unwrap().unwrap();
    assert_eq!(env.webhook_secret, Some(Secret::new(second)));
    assert_eq!(env.webhook_previous_secret, Some(Secret::new(first)));
    assert_eq!(env.webhook_previous_expires_at, Some(at(50)));
    assert_absent(&b.dump().await, &[first, second], "the database during a rotation");

    // A URL change alone keeps both secrets and the overlap.
    store.set_environment_webhook("prod", Some("https://app.example/new"), None).await.unwrap();
    let listed = store.list_environments().await.unwrap();
    let env = listed.iter().find(|e| e.id == "prod").unwrap();
    assert_eq!(env.webhook_url.as_deref(), Some("https://app.example/new"));
    assert_eq!(env.webhook_secret, Some(Secret::new(second)));
    assert_eq!(env.webhook_previous_secret, Some(Secret::new(first)));

    // A rotation without overlap keeps no previous secret.
    store.rotate_environment_webhook_secret("prod", &Secret::new(third), None).await.unwrap();
    let env = store.get_environment("prod").await.unwrap().unwrap();
    assert_eq!(env.webhook_secret, Some(Secret::new(third)));
    assert_eq!((env.webhook_previous_secret, env.webhook_previous_expires_at), (None, None));

    // A new secret set outright ends an overlap.
    store
        .rotate_environment_webhook_secret("prod", &Secret::new(first), Some(at(60)))
        .await
        .unwrap();
    store
        .set_environment_webhook("prod", Some("https://app.example/x"), Some(&Secret::new(second)))
        .await
        .unwrap();
    let env = store.get_environment("prod").await.unwrap().unwrap();
    assert_eq!(env.webhook_secret, Some(Secret::new(second)));
    assert_eq!((env.webhook_previous_secret, env.webhook_previous_expires_at), (None, None));

    let missing = store.rotate_environment_webhook_secret("nope", &Secret::new(first), None).await;
    assert!(matches!(missing, Err(crate::StoreError::NotFound { .. })), "{missing:?}");
}
