//! Webhook deliveries against a receiver that verifies them with the `standardwebhooks` library
//! from PyPI (`tests/peers/standard_webhooks_receiver.py`): `whsec_` and plain secrets, a
//! secret rotation's overlap, retries under one id, a restart that resumes pending deliveries,
//! and two deliverers on one database (SQLite and PostgreSQL) sending each attempt once.
//!
//! Needs the test Python with `standardwebhooks` (`LATCHKEY_TEST_PYTHON`; `scripts/test
//! --prepare` installs it) and, for the PostgreSQL test, the server `LATCHKEY_TEST_POSTGRES_URL`
//! names (default `postgres://postgres@127.0.0.1:5432/test`).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, Clock, DeliveryFilter, DeliveryOptions, DeliveryStatus, Engine, EnvironmentId,
    ManualClock, NewConnection, NewEnvironment, Origin, PageRequest, RetrySchedule, Store,
    WebhookConfig, WebhookDelivery,
};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use serde_json::Value;

const CONNECTOR: &str =
    "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n";

/// The receiver, killed on drop.
struct Receiver {
    child: Child,
    base: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts the receiver with these holders (`name`, secret; `raw:` for a plain secret).
    fn start(holders: &[(&str, &str)]) -> Self {
        let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/standard_webhooks_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(holders.iter().map(|(name, secret)| format!("{name}={secret}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the test Python");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the receiver did not start; does the test Python have `standardwebhooks`? (run \
                 scripts/test --prepare, which installs it into .venv-test/)"
            )
        });
        Self { base: format!("http://127.0.0.1:{port}"), child }
    }

    fn url(&self, path: &str) -> url::Url {
        format!("{}{path}", self.base).parse().unwrap()
    }

    /// What the receiver saw, in order.
    async fn log(&self) -> Vec<Value> {
        let body = reqwest::get(format!("{}/log", self.base)).await.unwrap().text().await.unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// The log once it has `n` entries.
    async fn log_of(&self, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let log = self.log().await;
            if log.len() >= n {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the receiver saw fewer than {n} deliveries: {:?}", self.log().await);
    }
}

/// A deliverer that retries at once and looks often.
fn fast() -> DeliveryOptions {
    DeliveryOptions {
        schedule: RetrySchedule { delays: vec![Duration::ZERO; 5], jitter: 0.0 },
        poll: Duration::from_millis(20),
        ..DeliveryOptions::default()
    }
}

async fn engine_over(
    store: Arc<dyn Store>,
    webhook: Option<WebhookConfig>,
    clock: Arc<dyn Clock>,
) -> Arc<Engine> {
    let catalog = Catalog::default();
    catalog.add_source(CONNECTOR, "p.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let mut builder = Engine::builder(store, catalog, net).clock(clock);
    if let Some(webhook) = webhook {
        builder = builder.webhook(webhook);
    }
    builder.build().await.unwrap()
}

async fn memory_store() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap())
}

async fn connect(engine: &Engine, environment: &EnvironmentId, id: &str) {
    engine
        .connections()
        .create(NewConnection {
            environment: environment.clone(),
            id: Some(id.parse().unwrap()),
            credentials: [("token".to_string(), Secret::new("tok-canary"))].into(),
            ..NewConnection::new("plain".parse().unwrap())
        })
        .await
        .unwrap();
}

/// Every delivery of `environment`, once none is pending (or after 10 s).
async fn settled(engine: &Engine, environment: &str) -> Vec<WebhookDelivery> {
    let filter = DeliveryFilter::in_environment(environment);
    for _ in 0..400 {
        let page = engine.webhooks().list(&filter, &PageRequest::first(1000)).await.unwrap();
        if !page.items.is_empty() && page.items.iter().all(|d| d.status != DeliveryStatus::Pending)
        {
            return page.items;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deliveries of {environment} still pending");
}

fn accepted(entry: &Value) -> Vec<&str> {
    entry["accepted"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_standardwebhooks_library_verifies_whsec_and_plain_secrets() {
    let whsec = latchkey_engine::webhooks::generate_secret();
    let plain = "plain-secret-for-prod-0123";
    let receiver =
        Receiver::start(&[("whsec", whsec.expose()), ("plain", &format!("raw:{plain}"))]);
    let engine = engine_over(
        memory_store().await,
        Some(WebhookConfig { url: receiver.url("/server"), secret: whsec.clone() }),
        Arc::new(latchkey_engine::SystemClock),
    )
    .await;
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let prod: EnvironmentId = "prod".parse().unwrap();
    engine
        .access()
        .create_environment(NewEnvironment {
            id: prod.clone(),
            webhook: Some(WebhookConfig { url: receiver.url("/prod"), secret: Secret::new(plain) }),
        })
        .await
        .unwrap();
    connect(&engine, &EnvironmentId::default_environment(), "in-default").await;
    connect(&engine, &prod, "in-prod").await;

    let log = receiver.log_of(2).await;
    let by_path = |p: &str| log.iter().find(|e| e["path"] == p).unwrap().clone();
    assert_eq!(accepted(&by_path("/server")), ["whsec"], "{log:?}");
    assert_eq!(accepted(&by_path("/prod")), ["plain"], "{log:?}");
    assert_eq!(by_path("/prod")["type"], "connection.created");
    for environment in ["default", "prod"] {
        let rows = settled(&engine, environment).await;
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Delivered, 1));
        assert!(!rows[0].body.contains("tok-canary"));
    }
}

#[tokio::test]
async fn during_a_rotation_overlap_old_and_new_secrets_verify_then_only_the_new() {
    let clock = Arc::new(ManualClock::starting_now());
    let receiver = Receiver::start(&[]);
    let engine = engine_over(memory_store().await, None, clock.clone()).await;
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let prod: EnvironmentId = "prod".parse().unwrap();
    engine.access().create_environment(NewEnvironment::new(prod.clone())).await.unwrap();
    let (_, old) = engine.access().set_webhook_url(&prod, receiver.url("/hook")).await.unwrap();
    let old = old.expect("a secret is generated");
    assert!(old.expose().starts_with("whsec_"));
    // Rotating keeps the old secret signing for a minute.
    let (record, new) =
        engine.access().rotate_webhook_secret(&prod, None, Duration::from_secs(60)).await.unwrap();
    assert_ne!(new, old);
    assert!(record.webhook_previous_expires_at.is_some());
    let holders = serde_json::json!({ "old": old.expose(), "new": new.expose() });
    reqwest::Client::new()
        .put(format!("{}/holders", receiver.base))
        .json(&holders)
        .send()
        .await
        .unwrap();
    connect(&engine, &prod, "during").await;
    let log = receiver.log_of(1).await;
    assert_eq!(accepted(&log[0]), ["new", "old"], "both verify during the overlap");
    assert_eq!(log[0]["signatures"], 2);

    // Past the overlap (still within the receiver's 5-minute timestamp tolerance): new only.
    clock.advance(Duration::from_secs(61));
    connect(&engine, &prod, "after").await;
    let log = receiver.log_of(2).await;
    assert_eq!(accepted(&log[1]), ["new"], "only the new secret signs after the overlap");
    assert_eq!(log[1]["signatures"], 1);
}

#[tokio::test]
async fn a_receiver_that_fails_twice_then_accepts_gets_three_attempts_under_one_id() {
    let secret = latchkey_engine::webhooks::generate_secret();
    let receiver = Receiver::start(&[("app", secret.expose())]);
    let engine = engine_over(
        memory_store().await,
        Some(WebhookConfig { url: receiver.url("/fail-2"), secret }),
        Arc::new(latchkey_engine::SystemClock),
    )
    .await;
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    connect(&engine, &EnvironmentId::default_environment(), "c1").await;

    let rows = settled(&engine, "default").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, DeliveryStatus::Delivered);
    assert_eq!((rows[0].attempts, rows[0].last_status), (3, Some(204)));
    let log = receiver.log_of(3).await;
    assert_eq!(log.len(), 3);
    for entry in &log {
        assert_eq!(entry["id"], rows[0].id.as_str(), "one id on every attempt");
        assert_eq!(accepted(entry), ["app"], "every attempt verifies");
    }
}

#[tokio::test]
async fn gone_fails_at_once_and_a_retry_queues_it_again() {
    let secret = latchkey_engine::webhooks::generate_secret();
    let receiver = Receiver::start(&[("app", secret.expose())]);
    let prod: EnvironmentId = "prod".parse().unwrap();
    let engine =
        engine_over(memory_store().await, None, Arc::new(latchkey_engine::SystemClock)).await;
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let gone = WebhookConfig { url: receiver.url("/gone"), secret: secret.clone() };
    engine
        .access()
        .create_environment(NewEnvironment { id: prod.clone(), webhook: Some(gone) })
        .await
        .unwrap();
    connect(&engine, &prod, "c1").await;
    let rows = settled(&engine, "prod").await;
    assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Failed, 1), "no retry");
    assert_eq!(rows[0].last_status, Some(410));
    assert!(rows[0].last_error.as_deref().unwrap().contains("410"));

    // Only the environment the delivery belongs to sees it.
    let other = engine.webhooks().get(&EnvironmentId::default_environment(), &rows[0].id).await;
    assert_eq!(other.unwrap_err().code(), "webhook_delivery_not_found");

    // The app fixes its endpoint; the failed delivery is queued again and goes through.
    engine.access().set_webhook_url(&prod, receiver.url("/ok")).await.unwrap();
    let queued = engine.webhooks().retry(&prod, &rows[0].id).await.unwrap();
    assert_eq!((queued.status, queued.attempts), (DeliveryStatus::Pending, 0));
    let rows = settled(&engine, "prod").await;
    assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!(rows[0].url, receiver.url("/ok").as_str());
    let again = engine.webhooks().retry(&prod, &rows[0].id).await.unwrap_err();
    assert_eq!(again.code(), "conflict", "a delivered one is not retried");
}

#[tokio::test]
async fn a_pending_delivery_survives_a_restart_and_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let key = MasterKey::generate().to_base64();
    let open = || async {
        let keys = Keyring::single(MasterKey::from_base64(key.expose()).unwrap());
        Arc::new(SqliteStore::open(&path, keys).await.unwrap())
    };
    let secret = latchkey_engine::webhooks::generate_secret();
    let receiver = Receiver::start(&[("app", secret.expose())]);
    let webhook = WebhookConfig { url: receiver.url("/hook"), secret };

    // The first process records the event but runs no deliverer (a CLI command, or a crash).
    let first = open().await;
    let engine =
        engine_over(first.clone(), Some(webhook.clone()), Arc::new(latchkey_engine::SystemClock))
            .await;
    connect(&engine, &EnvironmentId::default_environment(), "c1").await;
    engine.webhooks().settle().await;
    let page = engine
        .webhooks()
        .list(&DeliveryFilter::in_environment("default"), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].status, DeliveryStatus::Pending);
    drop(engine);
    first.close().await;

    let second = open().await;
    let engine = engine_over(second, Some(webhook), Arc::new(latchkey_engine::SystemClock)).await;
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let rows = settled(&engine, "default").await;
    assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Delivered, 1));
    assert_eq!(receiver.log_of(1).await[0]["id"], page.items[0].id.as_str());
}

/// Two processes' engines on one database, each with a deliverer: every event is sent once.
async fn two_deliverers_send_each_attempt_once(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let secret = latchkey_engine::webhooks::generate_secret();
    let receiver = Receiver::start(&[("app", secret.expose())]);
    let webhook = WebhookConfig { url: receiver.url("/hook"), secret };
    let clock: Arc<dyn Clock> = Arc::new(latchkey_engine::SystemClock);
    let first = engine_over(one, Some(webhook.clone()), clock.clone()).await;
    let second = engine_over(two, Some(webhook), clock).await;
    let small = DeliveryOptions { batch: 3, ..fast() };
    tokio::spawn(first.webhooks().run_deliverer(small.clone()));
    tokio::spawn(second.webhooks().run_deliverer(small));
    for n in 0..30 {
        let engine = if n % 2 == 0 { &first } else { &second };
        connect(engine, &EnvironmentId::default_environment(), &format!("c{n}")).await;
    }
    first.webhooks().settle().await;
    second.webhooks().settle().await;
    let rows = settled(&first, "default").await;
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 1));
    let log = receiver.log_of(30).await;
    // A little longer, in case a duplicate is on its way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = if receiver.log().await.len() > log.len() { receiver.log().await } else { log };
    let ids: BTreeSet<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!((log.len(), ids.len()), (30, 30), "each event sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliverers_on_one_sqlite_file_send_each_attempt_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let key = MasterKey::generate().to_base64();
    let keys = || Keyring::single(MasterKey::from_base64(key.expose()).unwrap());
    let one = Arc::new(SqliteStore::open(&path, keys()).await.unwrap());
    let two = Arc::new(SqliteStore::open(&path, keys()).await.unwrap());
    two_deliverers_send_each_attempt_once(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliverers_on_one_postgres_database_send_each_attempt_once() {
    let schema = common::PgSchema::create("webhooks").await;
    let one = schema.store().await;
    let two = schema.store().await;
    two_deliverers_send_each_attempt_once(one.clone(), two.clone()).await;
    one.close().await;
    two.close().await;
    schema.drop_schema().await;
}
