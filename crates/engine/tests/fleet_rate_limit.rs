//! A connector's `rate_limit` across a fleet: three engines (three `serve` instances) sharing
//! one Redis hold the limit together, where alone each would let the whole limit through; when
//! Redis cannot be reached, each falls back to its share. Needs the Redis server
//! `LATCHKEY_TEST_REDIS_URL` names (default `redis://127.0.0.1:6379`).
//!
//! Nothing here asserts speed: counts of requests the upstream saw in any window of one period,
//! and the least spacing between them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Catalog, Engine, NewConnection, Origin};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use tokio::net::TcpListener;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn redis_url() -> String {
    std::env::var("LATCHKEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Answers 200 and notes when each request arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

impl Respond for Arrivals {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(Instant::now());
        ResponseTemplate::new(200)
    }
}

impl Arrivals {
    /// The most requests that arrived within any `window`.
    fn most_within(&self, window: Duration) -> usize {
        let mut times = self.0.lock().unwrap().clone();
        times.sort();
        (0..times.len())
            .map(|i| times[i..].iter().take_while(|t| t.duration_since(times[i]) < window).count())
            .max()
            .unwrap_or(0)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// An engine with one connection `c1` to `connector` (10 requests/s, burst 1, one limit for
/// the whole connector), sharing limits through `redis` when given.
async fn instance(upstream: &MockServer, connector: &str, redis: Option<&str>) -> Arc<Engine> {
    let yaml = format!(
        "id: {connector}\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\nrate_limit: {{requests: 10, per: second, burst: 1, scope: connector, max_wait_ms: 60000}}\n",
        upstream.uri()
    );
    let catalog = Catalog::default();
    catalog.add_source(&yaml, "prov.yaml", Origin::Custom).unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let mut builder = Engine::builder(Arc::new(store), catalog, net);
    if let Some(url) = redis {
        builder = builder.redis_url(url);
    }
    let engine = builder.build().await.unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([("token".to_string(), Secret::new("tok"))]),
            ..NewConnection::new(connector.parse().unwrap())
        })
        .await
        .unwrap();
    engine
}

/// `per_instance` requests through each engine at once; all must succeed.
async fn burst(engines: &[Arc<Engine>], per_instance: usize) {
    let mut tasks = Vec::new();
    for engine in engines {
        for _ in 0..per_instance {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let request = ApiRequest { path: "/x".into(), ..ApiRequest::default() };
                engine.dispatch().request(&"c1".parse().unwrap(), request).await.map(|r| r.status)
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().as_u16(), 200);
    }
}

/// A connector id of this run's own, so runs sharing the Redis do not share limits.
fn connector_id() -> String {
    format!("prov_{}", latchkey_engine::random_token(8).to_lowercase().replace('-', "_"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_redis_hold_one_limit() {
    let upstream = MockServer::start().await;
    let arrivals = Arrivals::default();
    Mock::given(wiremock::matchers::any()).respond_with(arrivals.clone()).mount(&upstream).await;

    // Without Redis each instance holds the limit alone: together they exceed it.
    let connector = connector_id();
    let mut alone = Vec::new();
    for _ in 0..3 {
        alone.push(instance(&upstream, &connector, None).await);
    }
    burst(&alone, 12).await;
    let unshared = arrivals.most_within(Duration::from_secs(1));
    assert!(unshared > 11, "three instances alone sent only {unshared} in one second");
    arrivals.clear();

    // Sharing one Redis: no second holds more than the limit and the burst.
    let connector = connector_id();
    let url = redis_url();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(instance(&upstream, &connector, Some(&url)).await);
    }
    burst(&fleet, 12).await;
    assert_eq!(arrivals.count(), 36);
    let shared = arrivals.most_within(Duration::from_secs(1));
    assert!(shared <= 11, "{shared} requests in one second through a shared limit of 10/s");
}

/// Forwards TCP to `target` until dropped; dropping it cuts every forwarded connection too,
/// as a Redis going away would.
struct Forwarder {
    port: u16,
    _tasks: tokio::task::JoinSet<()>,
}

impl Forwarder {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut tasks = tokio::task::JoinSet::new();
        let connections = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        tasks.spawn(async move {
            // Held by the accept loop: aborting it drops (and aborts) every connection.
            let connections = connections;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, _tasks: tasks }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_instance_takes_its_share() {
    let upstream = MockServer::start().await;
    let arrivals = Arrivals::default();
    Mock::given(wiremock::matchers::any()).respond_with(arrivals.clone()).mount(&upstream).await;
    let target = redis_url();
    let target = target.trim_start_matches("redis://").trim_end_matches('/').to_string();
    let forwarder = Forwarder::start(target).await;
    let url = format!("redis://127.0.0.1:{}", forwarder.port);
    let connector = connector_id();
    let one = instance(&upstream, &connector, Some(&url)).await;
    let _two = instance(&upstream, &connector, Some(&url)).await;
    // Both have announced themselves, and each has counted the other (at its next
    // announcement); a request went through Redis.
    tokio::time::sleep(latchkey_engine::ANNOUNCE_EVERY + Duration::from_millis(500)).await;
    burst(std::slice::from_ref(&one), 2).await;
    arrivals.clear();

    // Redis goes away: the instance falls back to half the limit (5/s: 200 ms apart).
    drop(forwarder);
    burst(std::slice::from_ref(&one), 8).await;
    let mut times = arrivals.0.lock().unwrap().clone();
    times.sort();
    let closest = times.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(closest >= Duration::from_millis(190), "requests {closest:?} apart on a share of 5/s");
}
