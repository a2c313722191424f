//! The console's store on every backend (bodies for `on_every_backend!` in `tests.rs`):
//! sessions by digest, switched, ended and purged; health counts per integration; operations
//! counted in time buckets by outcome.

use std::time::Duration;

use super::{Backend, at, connection, op};
use crate::console::{ConsoleSessionRecord, OperationBucket};
use crate::operations::OperationKind;
use crate::{Health, StoreError};

fn session(hash: &str, expires: i64) -> ConsoleSessionRecord {
    ConsoleSessionRecord {
        id_hash: hash.into(),
        actor_id: "key_abc".into(),
        actor_name: "ops".into(),
        environment: "default".into(),
        bound: None,
        created_at: at(1_800_000_000),
        expires_at: at(expires),
    }
}

pub(crate) async fn console_sessions_are_found_by_digest_switched_ended_and_purged(
    b: &impl Backend,
) {
    let store = b.store();
    let live = session("h-live", 1_800_003_600);
    store.create_console_session(&live).await.unwrap();
    store.create_console_session(&session("h-old", 1_800_000_010)).await.unwrap();
    assert!(matches!(
        store.create_console_session(&live).await,
        Err(StoreError::Conflict { kind: "console session", .. })
    ));
    assert_eq!(store.console_session("h-live").await.unwrap(), Some(live.clone()));
    assert_eq!(store.console_session("nope").await.unwrap(), None);

    assert!(store.set_console_session_environment("h-live", "prod").await.unwrap());
    assert!(!store.set_console_session_environment("nope", "prod").await.unwrap());
    assert_eq!(store.console_session("h-live").await.unwrap().unwrap().environment, "prod");

    assert_eq!(store.purge_console_sessions(at(1_800_000_100)).await.unwrap(), 1);
    assert_eq!(store.console_session("h-old").await.unwrap(), None);
    assert!(store.console_session("h-live").await.unwrap().is_some());
    store.delete_console_session("h-live").await.unwrap();
    store.delete_console_session("h-live").await.unwrap();
    assert_eq!(store.console_session("h-live").await.unwrap(), None);
}

pub(crate) async fn console_counts_group_health_and_operations(b: &impl Backend) {
    let store = b.store();
    let mut records = Vec::new();
    for (n, (integration, healthy, environment)) in [
        (Some("a"), true, "default"),
        (Some("a"), true, "default"),
        (Some("a"), false, "default"),
        (None, false, "default"),
        (Some("a"), true, "prod"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut record = connection(&format!("c{n}"), &[("api_key", "k")]);
        record.integration = integration.map(Into::into);
        record.environment = environment.into();
        if healthy {
            record.health = Health::default().passed(at(1_800_000_000));
        }
        records.push(record);
    }
    for record in &records {
        store.insert_connection(record).await.unwrap();
    }
    let counts = store.connection_health_counts("default").await.unwrap();
    let count = |integration: Option<&str>, health: &str| {
        counts
            .iter()
            .find(|c| c.integration.as_deref() == integration && c.health == health)
            .map(|c| c.count)
    };
    assert_eq!(count(Some("a"), "healthy"), Some(2), "{counts:?}");
    assert_eq!(count(Some("a"), "unknown"), Some(1), "{counts:?}");
    assert_eq!(count(None, "unknown"), Some(1), "{counts:?}");
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 4, "the other environment's apart");

    // Operations at +0..+9 s: 200s and 503s, and a refresh; buckets of 5 seconds from +0.
    let ops: Vec<_> = (0..10)
        .map(|n| {
            let kind = if n == 9 { OperationKind::Refresh } else { OperationKind::Request };
            op(n, "default", kind, Some(if n % 3 == 0 { 503 } else { 200 }))
        })
        .collect();
    store.insert_operations(&ops).await.unwrap();
    let buckets = store
        .operation_buckets("default", "request", at(1_800_000_000), Duration::from_secs(5))
        .await
        .unwrap();
    let expect = |bucket: u64, outcome: &str, count: u64| OperationBucket {
        bucket,
        outcome: outcome.into(),
        count,
    };
    // Bucket 0: +0 (503), +1, +2, +3 (503), +4; bucket 1: +5, +6 (503), +7, +8.
    assert_eq!(
        buckets,
        vec![
            expect(0, "failure", 2),
            expect(0, "success", 3),
            expect(1, "failure", 1),
            expect(1, "success", 3)
        ]
    );
    let later = store
        .operation_buckets("default", "request", at(1_800_000_005), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(later.iter().map(|b| b.count).sum::<u64>(), 4, "{later:?}");
}
