//! Connect sessions, OAuth states and leases on every backend (bodies for `on_every_backend!`
//! in `tests.rs`): each single-use step has one winner, also across processes; a lease has one
//! holder until it expires, is renewed only by its holder, and is timed by the database's clock.

use time::OffsetDateTime;

use super::{Backend, oauth_state, secret_rows, session};
use crate::model::{SessionFailure, SessionStatus};

pub(crate) async fn oauth_states_are_single_use_and_keep_the_verifier_sealed(b: &impl Backend) {
    let store = b.store();
    store.put_oauth_state(&oauth_state("h1")).await.unwrap();
    // Looking does not spend it, nor open its verifier.
    let seen = store.peek_oauth_state("h1").await.unwrap().unwrap();
    assert_eq!((seen.browser_hash.as_deref(), seen.connect_session.as_str()), (Some("b"), "cs1"));
    assert!(seen.pkce_verifier.is_none());
    assert!(store.peek_oauth_state("nope").await.unwrap().is_none());
    let taken = store.take_oauth_state("h1").await.unwrap().unwrap();
    assert_eq!(taken.pkce_verifier.unwrap().expose(), "v".repeat(43));
    assert_eq!(taken.browser_hash.as_deref(), Some("b"));
    assert!(store.take_oauth_state("h1").await.unwrap().is_none(), "a state is taken once");
    assert!(store.peek_oauth_state("h1").await.unwrap().is_none());
    assert_eq!(secret_rows(b, "oauth_state", "h1").await, 0);

    // A session's new attempt cancels its earlier one (and only that session's).
    store.put_oauth_state(&oauth_state("first")).await.unwrap();
    let mut other = oauth_state("other-session");
    other.connect_session = "cs9".into();
    store.put_oauth_state(&other).await.unwrap();
    store.put_oauth_state(&oauth_state("second")).await.unwrap();
    assert!(store.peek_oauth_state("first").await.unwrap().is_none());
    assert_eq!(secret_rows(b, "oauth_state", "first").await, 0);
    assert!(store.peek_oauth_state("second").await.unwrap().is_some());
    assert!(store.take_oauth_state("other-session").await.unwrap().is_some());
    assert!(store.take_oauth_state("second").await.unwrap().is_some());

    // Expired states are swept when a new one arrives.
    let mut old = oauth_state("h-old");
    old.expires_at = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    store.put_oauth_state(&old).await.unwrap();
    store.put_oauth_state(&oauth_state("h2")).await.unwrap();
    assert!(store.take_oauth_state("h-old").await.unwrap().is_none());
    assert_eq!(secret_rows(b, "oauth_state", "h-old").await, 0);
}

/// A session may start attempts (after an abandoned or failed one) until it is done or
/// expired; a failure keeps its code and message until the next attempt; done is final.
pub(crate) async fn connect_sessions_keep_the_end_users_choice(b: &impl Backend) {
    let store = b.store();
    let mut picked = session("cs1", "th");
    picked.choices = vec!["i".into(), "j".into()];
    picked.lang = Some("fr".into());
    picked.return_url = Some("http://app/done".into());
    store.create_connect_session(&picked).await.unwrap();
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!(got.choices, ["i", "j"]);
    assert_eq!(
        (got.lang.as_deref(), got.return_url.as_deref()),
        (Some("fr"), Some("http://app/done"))
    );
    let config = std::collections::BTreeMap::from([("shop".to_string(), "beta".to_string())]);
    assert!(store.choose_for_connect_session("cs1", "j", &config).await.unwrap());
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!((got.integration.as_str(), got.config["shop"].as_str()), ("j", "beta"));
    assert!(
        store.finish_connect_session("cs1", SessionStatus::Done, Some("c1"), None).await.unwrap()
    );
    assert!(!store.choose_for_connect_session("cs1", "i", &config).await.unwrap(), "done is final");
    // A session naming one integration has no choices.
    store.create_connect_session(&session("cs2", "th2")).await.unwrap();
    assert!(store.get_connect_session("cs2").await.unwrap().unwrap().choices.is_empty());
}

pub(crate) async fn brandings_belong_to_an_environment_or_an_integration(b: &impl Backend) {
    let store = b.store();
    let env = serde_json::json!({"display_name": "Acme", "theme": "dark"});
    let integration = serde_json::json!({"primary_color": "#0b5fff"});
    assert_eq!(store.get_branding("default", None).await.unwrap(), None);
    store.put_branding("default", None, Some(&env)).await.unwrap();
    store.put_branding("default", Some("i"), Some(&integration)).await.unwrap();
    assert_eq!(store.get_branding("default", None).await.unwrap(), Some(env.clone()));
    assert_eq!(store.get_branding("default", Some("i")).await.unwrap(), Some(integration));
    assert_eq!(store.get_branding("other", None).await.unwrap(), None);
    // Replaced, then removed.
    let newer = serde_json::json!({"display_name": "Acme 2"});
    store.put_branding("default", None, Some(&newer)).await.unwrap();
    assert_eq!(store.get_branding("default", None).await.unwrap(), Some(newer));
    store.put_branding("default", Some("i"), None).await.unwrap();
    assert_eq!(store.get_branding("default", Some("i")).await.unwrap(), None);
}

pub(crate) async fn connect_sessions_succeed_once(b: &impl Backend) {
    let store = b.store();
    store.create_connect_session(&session("cs1", "th")).await.unwrap();
    assert_eq!(store.find_connect_session("th").await.unwrap().unwrap().id, "cs1");
    assert_eq!(store.find_connect_session("other").await.unwrap(), None);
    assert!(store.start_connect_session("cs1").await.unwrap());
    assert!(store.start_connect_session("cs1").await.unwrap(), "an abandoned attempt");
    let denied =
        SessionFailure { code: "access_denied".into(), message: "Access was not granted.".into() };
    assert!(
        store
            .finish_connect_session("cs1", SessionStatus::Failed, None, Some(&denied))
            .await
            .unwrap()
    );
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!((got.status, got.error.as_ref()), (SessionStatus::Failed, Some(&denied)));
    assert!(store.start_connect_session("cs1").await.unwrap(), "a failed attempt is retried");
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!((got.status, got.error), (SessionStatus::Started, None));
    assert!(
        store.finish_connect_session("cs1", SessionStatus::Done, Some("c1"), None).await.unwrap()
    );
    assert!(!store.start_connect_session("cs1").await.unwrap(), "done is final");
    assert!(
        !store
            .finish_connect_session("cs1", SessionStatus::Failed, None, Some(&denied))
            .await
            .unwrap(),
        "a late failure does not overwrite the success"
    );
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!(got.status, SessionStatus::Done);
    assert_eq!(got.error, None);
    assert_eq!(got.result_connection.as_deref(), Some("c1"));
    assert_eq!(got.config["shop"], "acme");
    assert_eq!(got.auth_method.as_deref(), Some("api_key"));

    let mut expired = session("cs2", "th2");
    expired.expires_at = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.create_connect_session(&expired).await.unwrap();
    assert!(!store.start_connect_session("cs2").await.unwrap(), "an expired session is dead");
}

/// Two processes racing to finish the same connect session or take the same OAuth state: one
/// gets it.
pub(crate) async fn single_use_steps_have_one_winner_across_processes(b: &impl Backend) {
    let first = b.store();
    let second = b.reopen(b.keyring()).await.unwrap();
    for n in 0..10 {
        let id = format!("cs{n}");
        first.create_connect_session(&session(&id, &format!("th{n}"))).await.unwrap();
        assert!(first.start_connect_session(&id).await.unwrap());
        let (a, b) = tokio::join!(
            first.finish_connect_session(&id, SessionStatus::Done, Some("c1"), None),
            second.finish_connect_session(&id, SessionStatus::Done, Some("c2"), None)
        );
        assert!(a.unwrap() ^ b.unwrap(), "session {id} finished exactly once");

        let hash = format!("h{n}");
        first.put_oauth_state(&oauth_state(&hash)).await.unwrap();
        let (a, b) = tokio::join!(first.take_oauth_state(&hash), second.take_oauth_state(&hash));
        let taken = [a.unwrap(), b.unwrap()].into_iter().flatten().count();
        assert_eq!(taken, 1, "state {hash} taken exactly once");
    }
}

pub(crate) async fn leases_exclude_other_holders_until_they_expire(b: &impl Backend) {
    let store = b.store();
    let long = std::time::Duration::from_secs(30);
    assert!(store.try_lock("refresh:c1", "a", long).await.unwrap());
    assert!(!store.try_lock("refresh:c1", "b", long).await.unwrap());
    assert!(store.try_lock("refresh:c1", "a", long).await.unwrap(), "the holder may renew");
    store.unlock("refresh:c1", "b").await.unwrap();
    assert!(!store.try_lock("refresh:c1", "b", long).await.unwrap(), "only the holder unlocks");
    store.unlock("refresh:c1", "a").await.unwrap();
    assert!(store.try_lock("refresh:c1", "b", std::time::Duration::ZERO).await.unwrap());
    assert!(store.try_lock("refresh:c1", "c", long).await.unwrap(), "an expired lease is free");
}

/// A heartbeat extends only its own lease, even one that expired unnoticed; a lease taken
/// over or released cannot be renewed. Leases left behind are listed by prefix.
pub(crate) async fn leases_are_renewed_only_by_their_holder(b: &impl Backend) {
    let store = b.store();
    let long = std::time::Duration::from_secs(30);
    assert!(store.try_lock("refresh:c1", "a", std::time::Duration::ZERO).await.unwrap());
    assert!(store.renew_lock("refresh:c1", "a", long).await.unwrap(), "not yet taken over");
    assert!(!store.try_lock("refresh:c1", "b", long).await.unwrap(), "renewed, so held");
    assert!(!store.renew_lock("refresh:c1", "b", long).await.unwrap(), "not b's lease");
    assert!(store.try_lock("refresh:c2", "a", std::time::Duration::ZERO).await.unwrap());
    assert!(store.try_lock("refresh:c2", "b", long).await.unwrap(), "expired: taken over");
    assert!(!store.renew_lock("refresh:c2", "a", long).await.unwrap(), "a lost it");
    assert!(store.try_lock("other:c3", "a", long).await.unwrap());
    assert_eq!(store.locks_named("refresh:", false).await.unwrap(), ["refresh:c1", "refresh:c2"]);
    assert!(store.try_lock("refresh:c4", "a", std::time::Duration::ZERO).await.unwrap());
    assert_eq!(store.locks_named("refresh:", true).await.unwrap(), ["refresh:c4"], "expired");
    store.unlock("refresh:c4", "a").await.unwrap();
    store.unlock("refresh:c1", "a").await.unwrap();
    assert!(!store.renew_lock("refresh:c1", "a", long).await.unwrap(), "released");
    assert_eq!(store.locks_named("refresh:", false).await.unwrap(), ["refresh:c2"]);
    let none = Vec::<String>::new();
    assert_eq!(store.locks_named("refresh:%", false).await.unwrap(), none, "no pattern");
}

/// Two processes asking for the same free lease at once: exactly one holds it.
pub(crate) async fn leases_have_one_holder_across_processes(b: &impl Backend) {
    let first = b.store();
    let second = b.reopen(b.keyring()).await.unwrap();
    let long = std::time::Duration::from_secs(30);
    for n in 0..20 {
        let name = format!("refresh:c{n}");
        let (a, b) = tokio::join!(
            first.try_lock(&name, "proc-a", long),
            second.try_lock(&name, "proc-b", long)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "lease {name}: exactly one holder (a: {a}, b: {b})");
        let (holder, other) = if a { ("proc-a", "proc-b") } else { ("proc-b", "proc-a") };
        assert!(!second.try_lock(&name, other, long).await.unwrap());
        first.unlock(&name, holder).await.unwrap();
        assert!(second.try_lock(&name, other, long).await.unwrap(), "free once released");
    }
}

/// A lease's expiry is the database's clock plus its length, both in nanoseconds like every
/// stored timestamp: the dialect's clock expression must agree with the process clock (here,
/// one host) to well within a second.
pub(crate) async fn leases_are_timed_in_nanoseconds_by_the_database_clock(b: &impl Backend) {
    let store = b.store();
    let ttl = std::time::Duration::from_secs(30);
    let before = OffsetDateTime::now_utc() + ttl;
    assert!(store.try_lock("refresh:c1", "a", ttl).await.unwrap());
    let after = OffsetDateTime::now_utc() + ttl;
    let stored = b.count("SELECT expires_at FROM locks WHERE name = 'refresh:c1'").await;
    let stored = OffsetDateTime::from_unix_timestamp_nanos(i128::from(stored)).unwrap();
    let slack = time::Duration::milliseconds(500);
    assert!(
        before - slack <= stored && stored <= after + slack,
        "lease expiry {stored} not between {before} and {after}"
    );
    assert!(store.renew_lock("refresh:c1", "a", ttl * 2).await.unwrap());
    let renewed = b.count("SELECT expires_at FROM locks WHERE name = 'refresh:c1'").await;
    let renewed = OffsetDateTime::from_unix_timestamp_nanos(i128::from(renewed)).unwrap();
    assert!(renewed - stored > time::Duration::seconds(29), "renewed to {renewed}");
}
