//! Scheduled health checks against a small API whose answer the test switches (valid key,
//! refused key, provider down), on the engine's manual clock with the checker ticking fast: a
//! refused key makes the connection unhealthy and a valid one again recovers it, with the
//! events sent; a provider failing twice leaves it healthy and the third time makes it
//! unhealthy, the retries coming minutes apart; a connector without a test and a connection in
//! `needs_reauth` are never checked.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, Clock, ConnectionId, Engine, ManualClock, NewConnection, Origin, WebhookConfig,
};
use latchkey_store::{
    ConnectionStatus, HealthReason, HealthState, Keyring, MasterKey, SqliteStore, Store,
};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API: answers `/me` with the status the test sets, and counts calls per bearer token.
#[derive(Clone, Default)]
struct Api {
    status: Arc<Mutex<u16>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned();
        *self.calls.lock().unwrap().entry(token).or_default() += 1;
        ResponseTemplate::new(*self.status.lock().unwrap())
            .set_body_json(serde_json::json!({"name": "ada"}))
    }
}

impl Api {
    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    fn calls(&self, token: &str) -> usize {
        self.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }
}

struct Setup {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    api: Api,
    hook: MockServer,
    _upstream: MockServer,
}

async fn setup() -> Setup {
    let upstream = MockServer::start().await;
    let api = Api::default();
    api.answer(200);
    Mock::given(method("GET")).and(path("/me")).respond_with(api.clone()).mount(&upstream).await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let catalog = Catalog::default();
    for source in [
        format!(
            "id: keyed\nname: Keyed\nbase_url: {}\nauth: [{{type: bearer}}]\ntest: {{ path: /me }}\n",
            upstream.uri()
        ),
        format!(
            "id: untested\nname: Untested\nbase_url: {}\nauth: [{{type: bearer}}]\n",
            upstream.uri()
        ),
    ] {
        catalog.add_source(&source, "c.yaml", Origin::Custom).unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap(),
    );
    let clock = Arc::new(ManualClock::starting_now());
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(store.clone(), catalog, net)
        .clock(clock.clone())
        .webhook(WebhookConfig {
            url: format!("{}/hook", hook.uri()).parse().unwrap(),
            secret: Secret::new("whsec-checks-0123456789"),
        })
        .build()
        .await
        .unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(latchkey_engine::DeliveryOptions::default()));
    Setup { engine, store, clock, api, hook, _upstream: upstream }
}

async fn connect(setup: &Setup, id: &str, connector: &str, token: &str, run_test: bool) {
    setup
        .engine
        .connections()
        .create(NewConnection {
            id: Some(id.parse().unwrap()),
            credentials: [("token".to_string(), Secret::new(token))].into(),
            run_test,
            ..NewConnection::new(connector.parse().unwrap())
        })
        .await
        .unwrap();
}

/// Polls `done` (every 10 ms, for at most 30 s) until it holds.
async fn until<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The events the webhook received for `connection`, by type.
async fn events(hook: &MockServer, connection: &str) -> HashMap<String, usize> {
    let mut kinds = HashMap::new();
    for request in hook.received_requests().await.unwrap_or_default() {
        let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        if event["connection_id"] == connection {
            *kinds.entry(event["type"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    kinds
}

async fn health(store: &Arc<dyn Store>, id: &str) -> latchkey_store::Health {
    store.get_connection(id).await.unwrap().unwrap().health
}

fn between(at: OffsetDateTime, from: OffsetDateTime, wait: (u64, u64)) -> bool {
    let (low, high) =
        (time::Duration::seconds(wait.0 as i64), time::Duration::seconds(wait.1 as i64));
    at >= from + low && at <= from + high
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_checks_follow_the_key_and_count_transient_failures() {
    let setup = setup().await;
    let store = setup.store.clone();
    connect(&setup, "k1", "keyed", "tok-k1", true).await;
    connect(&setup, "plain", "untested", "tok-plain", false).await;
    connect(&setup, "stuck", "keyed", "tok-stuck", true).await;
    store.set_connection_status("stuck", ConnectionStatus::NeedsReauth).await.unwrap();
    assert_eq!(health(&store, "k1").await.state, HealthState::Healthy);
    let start = setup.clock.now();

    let scheduler =
        tokio::spawn(setup.engine.connections().run_check_scheduler(Duration::from_millis(10)));

    // New connections get a first check time within one interval, and are not checked now.
    until("both checkable connections are scheduled", || {
        let store = store.clone();
        async move {
            store.check_due_at("k1").await.unwrap().is_some()
                && store.check_due_at("plain").await.unwrap().is_some()
        }
    })
    .await;
    for id in ["k1", "plain"] {
        let due = store.check_due_at(id).await.unwrap().unwrap();
        assert!(between(due, start, (0, DAY.as_secs())), "{id}: first check at {due}");
    }
    assert_eq!(store.check_due_at("stuck").await.unwrap(), None, "needs_reauth: never scheduled");
    assert_eq!(setup.api.calls("tok-k1"), 1, "only the test on creation");

    // The key is refused: unhealthy at once, the status left alone, the next check a day on.
    setup.api.answer(401);
    setup.clock.advance(DAY);
    let checked_at = setup.clock.now();
    until("k1 is unhealthy", || {
        let store = store.clone();
        async move { health(&store, "k1").await.state == HealthState::Unhealthy }
    })
    .await;
    let sick = health(&store, "k1").await;
    assert_eq!(sick.reason, Some(HealthReason::InvalidCredentials));
    assert_eq!(setup.api.calls("tok-k1"), 2);
    let k1 = store.get_connection("k1").await.unwrap().unwrap();
    assert_eq!(k1.status, ConnectionStatus::Ok, "a check records the health only");
    let plain_due = store.check_due_at("plain").await.unwrap().unwrap();
    assert!(plain_due > checked_at, "no test: moved one interval on, without a call");
    until("k1's next check is scheduled", || {
        let store = store.clone();
        async move {
            let due = store.check_due_at("k1").await.unwrap().unwrap();
            between(due, checked_at, (DAY.as_secs() * 8 / 10, DAY.as_secs()))
        }
    })
    .await;

    // The key works again: recovered on the next check.
    setup.api.answer(200);
    setup.clock.advance(DAY);
    until("k1 recovered", || {
        let store = store.clone();
        async move { health(&store, "k1").await.state == HealthState::Healthy }
    })
    .await;

    // The provider fails: twice is not enough, and each retry comes minutes later.
    setup.api.answer(503);
    setup.clock.advance(DAY);
    let mut checked_at = setup.clock.now();
    for (failures, retry) in [(1, (240, 300)), (2, (480, 600))] {
        until("a transient failure is counted", || {
            let store = store.clone();
            async move { health(&store, "k1").await.consecutive_failures == failures }
        })
        .await;
        let seen = health(&store, "k1").await;
        assert_eq!(seen.state, HealthState::Healthy, "{failures} failure(s) are not enough");
        assert_eq!(seen.last_error.unwrap().at, checked_at, "but on record");
        until("the retry is scheduled minutes later", || {
            let store = store.clone();
            async move {
                let due = store.check_due_at("k1").await.unwrap().unwrap();
                between(due, checked_at, retry)
            }
        })
        .await;
        setup.clock.advance(Duration::from_secs(retry.1));
        checked_at = setup.clock.now();
    }
    until("the third failure in a row makes k1 unhealthy", || {
        let store = store.clone();
        async move { health(&store, "k1").await.state == HealthState::Unhealthy }
    })
    .await;
    let down = health(&store, "k1").await;
    assert_eq!(
        (down.reason, down.consecutive_failures),
        (Some(HealthReason::ProviderUnavailable), 3)
    );
    assert_eq!(setup.api.calls("tok-k1"), 6, "creation, refused, recovered, three failures");

    // Events: unhealthy twice (refused key, provider down) and recovered once.
    let hook = &setup.hook;
    until("the events arrived", || async {
        let seen = events(hook, "k1").await;
        seen.get("connection.unhealthy") == Some(&2) && seen.get("connection.recovered") == Some(&1)
    })
    .await;
    scheduler.abort();
    assert_eq!(setup.api.calls("tok-stuck"), 1, "needs_reauth: only the test on creation");
    assert_eq!(setup.api.calls("tok-plain"), 0, "no test: never called");
    assert_eq!(store.check_due_at("stuck").await.unwrap(), None);
}

/// A check asked for on demand counts like a scheduled one: a 503 is answered as a counted
/// failure on a connection that stays healthy, and brings the next scheduled check forward.
#[tokio::test]
async fn an_on_demand_check_counts_like_a_scheduled_one() {
    let setup = setup().await;
    connect(&setup, "k1", "keyed", "tok-k1", true).await;
    let id: ConnectionId = "k1".parse().unwrap();
    setup.api.answer(503);
    let now = setup.clock.now();
    let answered = setup.engine.connections().check(&id).await.unwrap();
    assert_eq!((answered.state, answered.consecutive_failures), (HealthState::Healthy, 1));
    let error = answered.last_error.as_ref().unwrap();
    assert_eq!(error.at, now, "the failure is in the answer");
    assert!(error.message.contains("503"), "{}", error.message);
    let due = setup.store.check_due_at("k1").await.unwrap().unwrap();
    assert!(between(due, now, (240, 300)), "next scheduled check within minutes: {due}");

    setup.api.answer(200);
    let healthy = setup.engine.connections().check(&id).await.unwrap();
    assert_eq!((healthy.state, healthy.consecutive_failures), (HealthState::Healthy, 0));
    let due = setup.store.check_due_at("k1").await.unwrap().unwrap();
    assert!(between(due, now, (DAY.as_secs() * 8 / 10, DAY.as_secs())), "{due}");
}

/// With checks `off`, nothing is scheduled and nothing is called.
#[tokio::test]
async fn checks_off_schedule_nothing() {
    let setup = setup().await;
    connect(&setup, "k1", "keyed", "tok-k1", false).await;
    let catalog = Catalog::default();
    catalog
        .add_source(
            "id: keyed\nname: Keyed\nbase_url: https://keyed.example\nauth: [{type: bearer}]\ntest: { path: /me }\n",
            "k.yaml",
            Origin::Custom,
        )
        .unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let off = Engine::builder(setup.store.clone(), catalog, net)
        .check_interval(latchkey_core::Interval::OFF)
        .build()
        .await
        .unwrap();
    // The future ends at once: there is no schedule to run.
    off.connections().run_check_scheduler(Duration::from_millis(1)).await;
    assert_eq!(setup.store.check_due_at("k1").await.unwrap(), None);
    assert_eq!(setup.api.calls("tok-k1"), 0);
}

/// A scheduled check that meets an OAuth2 token about to expire leaves the refresh to the
/// refresher (paced, backing off) and comes back later without calling anyone; a check on
/// demand renews the token first, as a proxied request would.
#[tokio::test]
async fn a_scheduled_check_leaves_an_expiring_token_to_the_refresher() {
    let server = MockServer::start().await;
    let api = Api::default();
    api.answer(200);
    Mock::given(method("GET")).and(path("/api/me")).respond_with(api.clone()).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "renewed", "token_type": "Bearer", "expires_in": 3600,
        })))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\ntest: {{ path: /me }}\n",
        uri = server.uri()
    );
    let setup = common::setup(&yaml).await;
    let record = setup
        .engine
        .connections()
        .create(NewConnection {
            id: Some("o1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: [
                ("access_token".to_string(), Secret::new("old")),
                ("refresh_token".to_string(), Secret::new("rt")),
            ]
            .into(),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    // An hour's token, three minutes before it expires: within the refresh margin.
    let hour = latchkey_store::CredentialUpdate {
        expires_at: Some(setup.clock.now() + time::Duration::hours(1)),
        ..Default::default()
    };
    setup.store.update_credentials("o1", record.version, &hour).await.unwrap();
    setup.clock.advance(Duration::from_secs(57 * 60));
    let now = setup.clock.now();
    setup.store.schedule_checks(&[("o1".into(), now)]).await.unwrap();

    let scheduler =
        tokio::spawn(setup.engine.connections().run_check_scheduler(Duration::from_millis(10)));
    let store = setup.store.clone();
    // Claimed first (a day on), then put off to within the hour.
    until("the check is put off to within the hour", || {
        let store = store.clone();
        async move {
            let due = store.check_due_at("o1").await.unwrap().unwrap();
            between(due, now, (48 * 60, 60 * 60))
        }
    })
    .await;
    scheduler.abort();
    assert_eq!(api.calls("old") + api.calls("renewed"), 0, "nothing sent");
    assert_eq!(token_calls(&server).await, 0, "the refresher's to renew");

    let checked = setup.engine.connections().check(&"o1".parse().unwrap()).await.unwrap();
    assert_eq!(checked.state, HealthState::Healthy);
    assert_eq!(token_calls(&server).await, 1, "renewed on demand");
    assert_eq!(api.calls("renewed"), 1, "and tested with the new token");
}

async fn token_calls(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests.iter().filter(|r| r.url.path() == "/token").count()
}

/// Checks are API requests: they take their turn under the connector's `rate_limit` like a
/// proxied request. Past the limit a check is refused before anything is sent, and that says
/// nothing of the connection's health.
#[tokio::test]
async fn checks_keep_to_the_connectors_rate_limit() {
    let upstream = MockServer::start().await;
    let api = Api::default();
    api.answer(200);
    Mock::given(method("GET")).and(path("/me")).respond_with(api.clone()).mount(&upstream).await;
    let catalog = Catalog::default();
    let yaml = format!(
        "id: limited\nname: Limited\nbase_url: {}\nauth: [{{type: bearer}}]\ntest: {{ path: /me }}\nrate_limit: {{ requests: 1, per: minute, scope: connector, max_wait_ms: 0 }}\n",
        upstream.uri()
    );
    catalog.add_source(&yaml, "l.yaml", Origin::Custom).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap(),
    );
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(store.clone(), catalog, net).build().await.unwrap();
    for id in ["l1", "l2"] {
        engine
            .connections()
            .create(NewConnection {
                id: Some(id.parse().unwrap()),
                credentials: [("token".to_string(), Secret::new(format!("tok-{id}")))].into(),
                ..NewConnection::new("limited".parse().unwrap())
            })
            .await
            .unwrap();
    }
    let first = engine.connections().check(&"l1".parse().unwrap()).await.unwrap();
    assert_eq!(first.state, HealthState::Healthy);
    let refused = engine.connections().check(&"l2".parse().unwrap()).await.unwrap_err();
    assert_eq!(refused.code(), "rate_limited", "{refused}");
    assert_eq!((api.calls("tok-l1"), api.calls("tok-l2")), (1, 0), "the second was not sent");
    let untouched = store.get_connection("l2").await.unwrap().unwrap().health;
    assert_eq!((untouched.state, untouched.consecutive_failures), (HealthState::Unknown, 0));
}
