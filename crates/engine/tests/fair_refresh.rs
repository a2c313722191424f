//! The background refresher under one provider's outage: 150 connections whose token endpoint
//! fails come first in expiry order, 10 healthy ones after them, all within the refresh margin.
//! The failing ones back off (kept in the store, so they leave the scheduler's window) and the
//! healthy ones are refreshed ahead of expiry; the failing ones are retried with growing,
//! jittered delays, on the engine's manual clock.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{ManualClock, NewConnection};
use latchkey_store::{CredentialUpdate, RefreshBackoff, Store};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const FAILING: usize = 150;
const HEALTHY: usize = 10;

fn connector(server: &MockServer) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n",
        uri = server.uri()
    )
}

/// A token endpoint that refuses the refresh tokens `bad-*` (400, `invalid_request`: a broken
/// provider, not a revoked grant) and renews `good-*`, and logs each call with the engine's
/// time.
#[derive(Clone)]
struct TokenEndpoint {
    clock: Arc<ManualClock>,
    calls: Arc<Mutex<Vec<(String, OffsetDateTime)>>>,
}

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        self.calls.lock().unwrap().push((token.clone(), latchkey_engine::Clock::now(&*self.clock)));
        if token.starts_with("good-") {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": format!("new-{token}"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
        } else {
            ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": "invalid_request",
                "error_description": "the provider is down",
            }))
        }
    }
}

impl TokenEndpoint {
    fn calls_per_token(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (token, _) in self.calls.lock().unwrap().iter() {
            *counts.entry(token.clone()).or_default() += 1;
        }
        counts
    }
}

async fn connection(setup: &common::Setup, id: &str, refresh: &str, expires_at: OffsetDateTime) {
    let record = setup
        .engine
        .connections()
        .create(NewConnection {
            id: Some(id.parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("old-at")),
                ("refresh_token".to_string(), Secret::new(refresh)),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    setup
        .store
        .update_credentials(
            id,
            record.version,
            &CredentialUpdate { expires_at: Some(expires_at), ..Default::default() },
        )
        .await
        .unwrap();
}

async fn backoffs(store: &Arc<dyn Store>) -> Vec<RefreshBackoff> {
    let mut found = Vec::new();
    for i in 0..FAILING {
        found.push(store.refresh_backoff(&format!("failing-{i}")).await.unwrap().unwrap());
    }
    found
}

/// Polls `done` (every 20 ms, for at most 60 s) until it holds.
async fn until<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_does_not_hold_back_healthy_refreshes() {
    let server = MockServer::start().await;
    let setup = common::setup(&connector(&server)).await;
    let endpoint = TokenEndpoint { clock: setup.clock.clone(), calls: Arc::default() };
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;

    // The failing connections expire first: with the old scheduler they filled its window of
    // 100 and, once backing off, kept every other connection out of it.
    let start = latchkey_engine::Clock::now(&*setup.clock);
    let mut healthy_expiry = BTreeMap::new();
    for i in 0..FAILING {
        let at = start + time::Duration::seconds(200) + time::Duration::milliseconds(i as i64);
        connection(&setup, &format!("failing-{i}"), &format!("bad-{i}"), at).await;
    }
    for i in 0..HEALTHY {
        let at = start + time::Duration::seconds(240) + time::Duration::milliseconds(i as i64);
        connection(&setup, &format!("healthy-{i}"), &format!("good-{i}"), at).await;
        healthy_expiry.insert(format!("healthy-{i}"), at);
    }
    // Past half of every token's life, all within the 5-minute margin.
    setup.clock.advance(Duration::from_secs(150));
    let t0 = latchkey_engine::Clock::now(&*setup.clock);

    let scheduler = tokio::spawn(setup.engine.renewal().run_scheduler(Duration::from_millis(10)));

    // Every healthy connection is refreshed, before its token expires (the clock stands still).
    let store = setup.store.clone();
    until("every healthy connection is refreshed", || {
        let store = store.clone();
        async move {
            for i in 0..HEALTHY {
                let c = store.get_connection(&format!("healthy-{i}")).await.unwrap().unwrap();
                if c.credentials["access_token"].expose() != format!("new-good-{i}") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for (id, old_expiry) in &healthy_expiry {
        let c = setup.store.get_connection(id).await.unwrap().unwrap();
        assert!(t0 < *old_expiry, "{id} renewed ahead of expiry");
        assert_eq!(c.expires_at, Some(t0 + time::Duration::hours(1)), "{id}");
    }

    // Each failing connection was tried once and backs off 15..30 s, each by its own delay.
    until("every failing connection backs off once", || {
        let store = store.clone();
        async move { backoffs(&store).await.iter().all(|b| b.failures == 1) }
    })
    .await;
    let first: Vec<Duration> = backoffs(&setup.store)
        .await
        .iter()
        .map(|b| (b.retry_at.unwrap() - t0).try_into().unwrap())
        .collect();
    for delay in &first {
        assert!(
            (Duration::from_secs(15)..=Duration::from_secs(30)).contains(delay),
            "first delay {delay:?}"
        );
    }
    let distinct: BTreeSet<_> = first.iter().collect();
    assert!(distinct.len() > FAILING * 9 / 10, "jittered: {} distinct delays", distinct.len());

    // Ticks go by with the clock standing still: nobody is retried early, nobody twice.
    let ticks_later = std::time::Instant::now() + Duration::from_millis(200);
    until("some ticks went by", || async { std::time::Instant::now() > ticks_later }).await;
    let calls = endpoint.calls_per_token();
    for i in 0..FAILING {
        assert_eq!(calls[&format!("bad-{i}")], 1, "bad-{i} retried before its time");
    }
    for i in 0..HEALTHY {
        assert_eq!(calls[&format!("good-{i}")], 1, "good-{i} refreshed once");
    }

    // Once every delay has run out, each is retried once more, and now waits 30..60 s: longer.
    setup.clock.advance(Duration::from_secs(30));
    let t1 = latchkey_engine::Clock::now(&*setup.clock);
    until("every failing connection backs off twice", || {
        let store = store.clone();
        async move { backoffs(&store).await.iter().all(|b| b.failures == 2) }
    })
    .await;
    let second: Vec<Duration> = backoffs(&setup.store)
        .await
        .iter()
        .map(|b| (b.retry_at.unwrap() - t1).try_into().unwrap())
        .collect();
    for (i, (first, second)) in first.iter().zip(&second).enumerate() {
        assert!(
            (Duration::from_secs(30)..=Duration::from_secs(60)).contains(second),
            "second delay {second:?}"
        );
        assert!(second >= first, "failing-{i}: {second:?} after {first:?}");
    }
    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
    assert!(mean(&second) > mean(&first));
    let calls = endpoint.calls_per_token();
    for i in 0..FAILING {
        assert_eq!(calls[&format!("bad-{i}")], 2, "bad-{i}");
    }
    scheduler.abort();
}
