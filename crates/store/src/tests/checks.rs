//! The schedulers' queries on every backend (bodies for `on_every_backend!` in `tests.rs`): the
//! health checks that are due, soonest first, without `needs_reauth` connections; a check is
//! claimed once across instances; the refresher's window leaves out the connectors it has
//! enough of.

use std::time::Duration;

use super::{Backend, at, connection};
use crate::model::{ConnectionStatus, DueCheck};
use crate::{Health, HealthState, refresh_spread};

fn due_ids(found: &[DueCheck]) -> Vec<&str> {
    found.iter().map(|c| c.id.as_str()).collect()
}

pub(crate) async fn checks_due_are_listed_soonest_first_without_needs_reauth(b: &impl Backend) {
    let store = b.store();
    let now = at(1_900_000_000);
    let plan = [
        ("later", Some(at(1_900_000_100)), ConnectionStatus::Ok, "github"),
        ("due", Some(at(1_899_999_990)), ConnectionStatus::Ok, "github"),
        ("new", None, ConnectionStatus::Ok, "github"),
        ("erred", Some(at(1_899_999_995)), ConnectionStatus::Error, "github"),
        ("broken", Some(at(1_899_999_980)), ConnectionStatus::NeedsReauth, "github"),
        ("other", Some(at(1_899_999_999)), ConnectionStatus::Ok, "slack"),
        ("exact", Some(now), ConnectionStatus::Ok, "github"),
    ];
    for (id, due, status, connector) in plan {
        let mut c = connection(id, &[]);
        c.status = status;
        c.connector = connector.into();
        store.insert_connection(&c).await.unwrap();
        assert_eq!(store.check_due_at(id).await.unwrap(), None, "a new connection is unscheduled");
        if let Some(due) = due {
            store.schedule_checks(&[(id.to_string(), due)]).await.unwrap();
        }
    }
    let found = store.connections_due_for_check(now, 10, &[]).await.unwrap();
    assert_eq!(due_ids(&found), ["new", "due", "erred", "other", "exact"]);
    assert_eq!(found[0], DueCheck { id: "new".into(), connector: "github".into(), due_at: None });
    assert_eq!(found[1].due_at, Some(at(1_899_999_990)), "to the nanosecond");
    assert_eq!(found[3].connector, "slack");
    let limited = store.connections_due_for_check(now, 2, &[]).await.unwrap();
    assert_eq!(due_ids(&limited), ["new", "due"]);
    let skipped = store.connections_due_for_check(now, 10, &["github".into()]).await.unwrap();
    assert_eq!(due_ids(&skipped), ["other"]);
    let both = ["github".to_string(), "slack".to_string()];
    assert!(store.connections_due_for_check(now, 10, &both).await.unwrap().is_empty());

    // A check is claimed once: the second instance that read the same due time loses.
    let next = at(1_900_086_400);
    assert!(store.claim_check("due", Some(at(1_899_999_990)), next).await.unwrap());
    assert!(!store.claim_check("due", Some(at(1_899_999_990)), next).await.unwrap());
    assert_eq!(store.check_due_at("due").await.unwrap(), Some(next));
    assert!(store.claim_check("new", None, at(1_900_000_500)).await.unwrap());
    assert!(!store.claim_check("new", None, at(1_900_000_600)).await.unwrap());
    assert!(!store.claim_check("gone", None, next).await.unwrap());
    let found = store.connections_due_for_check(now, 10, &[]).await.unwrap();
    assert_eq!(due_ids(&found), ["erred", "other", "exact"]);

    // Scheduling touches neither the version nor the health; unknown ids are skipped.
    let before = store.get_connection("erred").await.unwrap().unwrap();
    store
        .schedule_checks(&[("erred".into(), at(1_900_000_050)), ("gone".into(), now)])
        .await
        .unwrap();
    let after = store.get_connection("erred").await.unwrap().unwrap();
    assert_eq!((after.version, after.health), (before.version, before.health));
    assert_eq!(store.check_due_at("gone").await.unwrap(), None);
    let found = store.connections_due_for_check(at(1_900_000_050), 10, &[]).await.unwrap();
    assert_eq!(due_ids(&found), ["other", "exact", "erred"]);

    // A connection that needs the user again leaves the list, and comes back once it is ok.
    store.set_connection_status("other", ConnectionStatus::NeedsReauth).await.unwrap();
    let found = store.connections_due_for_check(now, 10, &[]).await.unwrap();
    assert_eq!(due_ids(&found), ["exact"]);
    store.set_connection_status("broken", ConnectionStatus::Ok).await.unwrap();
    let found = store.connections_due_for_check(now, 10, &[]).await.unwrap();
    assert_eq!(due_ids(&found), ["broken", "exact"]);

    // The health record's failure count survives the round trip.
    let counted =
        Health { state: HealthState::Healthy, consecutive_failures: 2, ..Health::default() };
    store.set_connection_health("exact", &counted).await.unwrap();
    let read = store.get_connection("exact").await.unwrap().unwrap().health;
    assert_eq!(read.consecutive_failures, 2);
}

pub(crate) async fn the_refresh_window_leaves_out_skipped_connectors(b: &impl Backend) {
    let store = b.store();
    for (id, connector, expires) in
        [("a1", "a", 1_900_000_010), ("a2", "a", 1_900_000_020), ("b1", "b", 1_900_000_030)]
    {
        let mut c = connection(id, &[]);
        c.connector = connector.into();
        c.expires_at = Some(at(expires));
        store.insert_connection(&c).await.unwrap();
    }
    let (before, now) = (at(1_900_001_000), at(1_900_000_000));
    let window = |skip: Vec<String>| {
        let store = store.clone();
        async move {
            let found =
                store.connections_expiring(before, Duration::ZERO, now, 2, &skip).await.unwrap();
            found.into_iter().map(|c| (c.id, c.expires_at)).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        window(vec![]).await,
        [("a1".into(), Some(at(1_900_000_010))), ("a2".into(), Some(at(1_900_000_020)))]
    );
    assert_eq!(window(vec!["a".into()]).await, [("b1".into(), Some(at(1_900_000_030)))]);
    assert!(window(vec!["a".into(), "b".into()]).await.is_empty());
}

/// Connections whose tokens expire together are due spread over the stretch before the margin,
/// each by its own share fixed by its id, the one with the largest share first.
pub(crate) async fn the_refresh_window_spreads_connections_expiring_together(b: &impl Backend) {
    let store = b.store();
    let expiry = at(1_900_001_000);
    let ids: Vec<String> = (0..40).map(|i| format!("together-{i}")).collect();
    for id in &ids {
        let mut c = connection(id, &[]);
        c.expires_at = Some(expiry);
        store.insert_connection(&c).await.unwrap();
    }
    let spread = Duration::from_secs(1000);
    let now = at(1_900_000_000);
    // 500 s before the margin's edge: due are those whose share of 1000 s is over 500 s.
    let before = expiry - time::Duration::seconds(500);
    let found = store.connections_expiring(before, spread, now, 100, &[]).await.unwrap();
    let mut expected: Vec<(&String, f64)> = ids
        .iter()
        .map(|id| (id, refresh_spread(id)))
        .filter(|(_, s)| *s * 1000.0 > 500.0)
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<&String> = found.iter().map(|c| &c.id).collect();
    assert_eq!(listed, expected.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    assert!((10..30).contains(&found.len()), "about half: {}", found.len());
    for c in &found {
        assert!((c.spread - refresh_spread(&c.id)).abs() < 1e-5, "{} {}", c.spread, c.id);
        assert_eq!(c.expires_at, Some(expiry));
    }
    // At the margin's edge all are due; without a spread, the window is the expiry alone.
    let all = store.connections_expiring(expiry + time::Duration::SECOND, spread, now, 100, &[]);
    assert_eq!(all.await.unwrap().len(), 40);
    let none = store.connections_expiring(before, Duration::ZERO, now, 100, &[]).await.unwrap();
    assert!(none.is_empty());
}
