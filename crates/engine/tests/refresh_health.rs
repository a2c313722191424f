//! Refresh failures move a connection's health, on the engine's manual clock with the
//! background refresher running: a token endpoint that keeps failing makes the connection
//! `refresh_exhausted` once the failures have lasted longer than `refresh_exhausted_after` (one
//! `connection.unhealthy`), and a renewal heals it (`connection.recovered`); a client the
//! provider refuses (`invalid_client`) flags the integration with one
//! `integration.misconfigured` event for all its connections, no per-connection event, and
//! holds their refreshes back.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{Catalog, Clock, Engine, ManualClock, NewConnection, Origin, WebhookConfig};
use latchkey_store::{
    CredentialUpdate, HealthReason, HealthState, Keyring, MasterKey, SqliteStore, Store,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A token endpoint that fails (with `failure`) until `healthy` is set, and counts its calls.
#[derive(Clone)]
struct TokenEndpoint {
    healthy: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    failure: (u16, &'static str),
}

impl Respond for TokenEndpoint {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.healthy.load(Ordering::SeqCst) {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "renewed", "token_type": "Bearer", "expires_in": 3600,
            }))
        } else {
            let (status, code) = self.failure;
            ResponseTemplate::new(status).set_body_json(serde_json::json!({ "error": code }))
        }
    }
}

struct World {
    server: MockServer,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    endpoint: TokenEndpoint,
}

/// An engine on a manual clock with `connections` OAuth2 connections of integration `app`
/// expiring in 200 s, a token endpoint failing with `failure`, events sent to `/hook`.
async fn world(connections: usize, failure: (u16, &'static str)) -> World {
    let server = MockServer::start().await;
    let endpoint = TokenEndpoint { healthy: Arc::default(), calls: Arc::default(), failure };
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n",
        uri = server.uri()
    );
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap(),
    );
    let catalog = Catalog::default();
    catalog.add_source(&yaml, "test.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder(store.clone(), catalog, net)
        .clock(clock.clone())
        .refresh_exhausted_after(Duration::from_secs(3600))
        .webhook(WebhookConfig {
            url: format!("{}/hook", server.uri()).parse().unwrap(),
            secret: Secret::new("whsec-for-tests"),
        })
        .build()
        .await
        .unwrap();
    common::add_app(&engine).await;
    tokio::spawn(engine.webhooks().run_deliverer(latchkey_engine::DeliveryOptions::default()));
    let expires = clock.now() + time::Duration::seconds(200);
    for i in 0..connections {
        let id = format!("c{i}");
        let record = engine
            .connections()
            .create(NewConnection {
                id: Some(id.parse().unwrap()),
                integration: Some("app".parse().unwrap()),
                credentials: BTreeMap::from([
                    ("access_token".to_string(), Secret::new("old")),
                    ("refresh_token".to_string(), Secret::new(format!("rt-{i}"))),
                ]),
                ..NewConnection::new("prov".parse().unwrap())
            })
            .await
            .unwrap();
        let update = CredentialUpdate { expires_at: Some(expires), ..Default::default() };
        store.update_credentials(&id, record.version, &update).await.unwrap();
    }
    // Within the refresh margin, past half of every token's life.
    clock.advance(Duration::from_secs(150));
    World { server, engine, store, clock, endpoint }
}

/// The events delivered so far, by type.
async fn events(server: &MockServer) -> Vec<serde_json::Value> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.url.path() == "/hook")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
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
async fn failing_refreshes_exhaust_the_connection_and_a_renewal_heals_it() {
    let w = world(1, (503, "temporarily_unavailable")).await;
    let scheduler = tokio::spawn(w.engine.renewal().run_scheduler(Duration::from_millis(10)));
    let store = w.store.clone();
    let failures = |n: u32| {
        let store = store.clone();
        async move { store.refresh_backoff("c0").await.unwrap().unwrap().failures >= n }
    };
    until("a first failure is recorded", || failures(1)).await;
    let health = w.store.get_connection("c0").await.unwrap().unwrap().health;
    assert_eq!(health.state, HealthState::Unknown, "one failure says nothing yet");

    // Still failing more than an hour later: exhausted, once.
    w.clock.advance(Duration::from_secs(2 * 3600));
    until("a failure past the period", || failures(2)).await;
    let store2 = store.clone();
    until("the connection is exhausted", || {
        let store = store2.clone();
        async move {
            let health = store.get_connection("c0").await.unwrap().unwrap().health;
            health.reason == Some(HealthReason::RefreshExhausted)
        }
    })
    .await;
    let health = w.store.get_connection("c0").await.unwrap().unwrap().health;
    assert_eq!(health.state, HealthState::Unhealthy);
    assert_eq!(health.last_error.unwrap().code, "refresh_exhausted");
    w.clock.advance(Duration::from_secs(2 * 3600));
    until("another failure", || failures(3)).await;

    // The provider is back: the next try renews the token and heals the connection.
    w.endpoint.healthy.store(true, Ordering::SeqCst);
    w.clock.advance(Duration::from_secs(2 * 3600));
    let store3 = store.clone();
    until("the connection is renewed and healthy", || {
        let store = store3.clone();
        async move {
            let c = store.get_connection("c0").await.unwrap().unwrap();
            c.health.state == HealthState::Healthy
                && c.credentials["access_token"].expose() == "renewed"
        }
    })
    .await;
    scheduler.abort();
    let server = &w.server;
    until("the events are delivered", || async {
        !of_type(&events(server).await, "connection.recovered").is_empty()
    })
    .await;
    let all = events(server).await;
    let unhealthy = of_type(&all, "connection.unhealthy");
    assert_eq!(unhealthy.len(), 1, "one event for the run of failures: {all:?}");
    assert_eq!(unhealthy[0]["reason"], "refresh_exhausted");
    assert_eq!(unhealthy[0]["integration"], "app");
    assert_eq!(of_type(&all, "connection.recovered").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_flags_the_integration_once_and_holds_refreshes_back() {
    const CONNECTIONS: usize = 40;
    let w = world(CONNECTIONS, (401, "invalid_client")).await;
    let scheduler = tokio::spawn(w.engine.renewal().run_scheduler(Duration::from_millis(10)));
    let store = w.store.clone();
    until("every connection has failed once", || {
        let store = store.clone();
        async move {
            for i in 0..CONNECTIONS {
                let backoff = store.refresh_backoff(&format!("c{i}")).await.unwrap().unwrap();
                if backoff.failures == 0 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let calls = w.endpoint.calls.load(Ordering::SeqCst);
    assert!(calls < CONNECTIONS / 2, "refreshes held back once flagged: {calls} token calls");
    let integration = w.store.get_integration("default", "app").await.unwrap().unwrap();
    let flag = integration.misconfigured.expect("the integration is flagged");
    assert!(flag.message.contains("invalid_client"), "{}", flag.message);
    assert!(!flag.message.contains("csecret"), "{}", flag.message);
    for i in 0..CONNECTIONS {
        let c = w.store.get_connection(&format!("c{i}")).await.unwrap().unwrap();
        assert_eq!(
            c.status,
            latchkey_store::ConnectionStatus::Ok,
            "c{i}: the user's grant is fine"
        );
        assert_eq!(c.health.reason, Some(HealthReason::IntegrationMisconfigured), "c{i}");
    }

    // Fixed at the provider: the next probe (after 5 minutes) passes, the flag is cleared and
    // the connections are renewed and healthy.
    w.endpoint.healthy.store(true, Ordering::SeqCst);
    w.clock.advance(latchkey_engine::PROBE_EVERY + Duration::from_secs(3600));
    let store2 = store.clone();
    until("every connection is renewed", || {
        let store = store2.clone();
        async move {
            for i in 0..CONNECTIONS {
                let c = store.get_connection(&format!("c{i}")).await.unwrap().unwrap();
                if c.health.state != HealthState::Healthy {
                    return false;
                }
            }
            true
        }
    })
    .await;
    scheduler.abort();
    let integration = w.store.get_integration("default", "app").await.unwrap().unwrap();
    assert_eq!(integration.misconfigured, None);

    let server = &w.server;
    until("the integration event is delivered", || async {
        !of_type(&events(server).await, "integration.misconfigured").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = events(server).await;
    let flagged = of_type(&all, "integration.misconfigured");
    assert_eq!(flagged.len(), 1, "one event for the integration");
    assert_eq!(flagged[0]["integration"], "app");
    assert_eq!(flagged[0]["reason"], "integration_misconfigured");
    assert!(flagged[0].get("connection_id").is_none(), "{}", flagged[0]);
    assert!(of_type(&all, "connection.refresh_failed").is_empty(), "no per-connection event");
    assert!(of_type(&all, "connection.unhealthy").is_empty(), "no per-connection event");
}
