//! Two engines on one PostgreSQL database, as two `serve` instances behind a load balancer:
//! what one writes (a connection's credentials, its deletion, a key's revocation) holds on the
//! other through the store's change feed, long before the other's caches would expire (30 s
//! with a feed). Needs the PostgreSQL server `LATCHKEY_TEST_POSTGRES_URL` names (default
//! `postgres://postgres@127.0.0.1:5432/test`); each run works in a schema of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, Catalog, ConnectionId, Engine, NewApiKey, NewConnection, Origin,
};
use latchkey_store::{ConnectionStore, CredentialUpdate, PgStore, Scope, Store};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Long enough for a notification on a loaded machine; far shorter than the caches' 30 s.
const PATIENCE: Duration = Duration::from_secs(5);

struct Fleet {
    one: Arc<Engine>,
    two: Arc<Engine>,
    store_one: Arc<PgStore>,
    schema: common::PgSchema,
}

async fn fleet(upstream: &MockServer) -> Fleet {
    let schema = common::PgSchema::create("fleet").await;
    let store_one = schema.store().await;
    let store_two = schema.store().await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: api_key\n    apply: {{ in: header, name: X-Key }}\n",
        upstream.uri()
    );
    let engine = |store: Arc<PgStore>| {
        let yaml = yaml.clone();
        async move {
            let catalog = Catalog::default();
            catalog.add_source(&yaml, "prov.yaml", Origin::Custom).unwrap();
            let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
            let store: Arc<dyn Store> = store;
            Engine::builder(store, catalog, net).build().await.unwrap()
        }
    };
    let one = engine(store_one.clone()).await;
    let two = engine(store_two).await;
    // Without a feed the caches live a second, and these tests would pass without one.
    assert!(one.follows_changes() && two.follows_changes());
    Fleet { one, two, store_one, schema }
}

impl Fleet {
    async fn drop_schema(self) {
        drop((self.one, self.two, self.store_one));
        self.schema.drop_schema().await;
    }
}

/// Sends a request through `engine`, returning the status or the engine's error code.
async fn send(engine: &Engine, id: &ConnectionId) -> Result<u16, String> {
    let request = ApiRequest { path: "/me".into(), ..ApiRequest::default() };
    match engine.dispatch().request(id, request).await {
        Ok(response) => Ok(response.status.as_u16()),
        Err(error) => Err(error.code().to_string()),
    }
}

/// Polls `check` until it holds or [`PATIENCE`] runs out; returns how long it took.
async fn within<F, Fut>(mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_holds_on_the_other_at_once() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("X-Key", "old-key"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(header("X-Key", "new-key"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&upstream)
        .await;
    let fleet = fleet(&upstream).await;
    let id: ConnectionId = "c_fleet".parse().unwrap();
    fleet
        .one
        .connections()
        .create(NewConnection {
            id: Some(id.clone()),
            credentials: BTreeMap::from([("api_key".to_string(), Secret::new("old-key"))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    // The second instance reads the connection and keeps it.
    assert_eq!(send(&fleet.two, &id).await, Ok(200));

    // Another writer changes the credentials (as a refresh on the first instance would).
    let version = fleet.store_one.get_connection(id.as_str()).await.unwrap().unwrap().version;
    let update = CredentialUpdate {
        credentials: BTreeMap::from([("api_key".to_string(), Secret::new("new-key"))]),
        expires_at: None,
        config: BTreeMap::new(),
        status: None,
    };
    fleet.store_one.update_credentials(id.as_str(), version, &update).await.unwrap();
    let seen = within(|| async { send(&fleet.two, &id).await == Ok(201) }).await;
    assert!(seen.is_some(), "the second instance still sends the old key after {PATIENCE:?}");

    // A deletion through the first instance: the second stops sending at once.
    fleet.one.connections().delete(&id).await.unwrap();
    let seen =
        within(|| async { send(&fleet.two, &id).await == Err("connection_not_found".to_string()) })
            .await;
    assert!(seen.is_some(), "the second instance still uses a deleted connection");
    fleet.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_instance_stops_working_on_the_other() {
    let upstream = MockServer::start().await;
    let fleet = fleet(&upstream).await;
    let (record, key) = fleet
        .one
        .access()
        .create_key(NewApiKey {
            name: "backend".into(),
            environment: None,
            scopes: BTreeSet::from([Scope::Admin]),
            expires_in: None,
        })
        .await
        .unwrap();
    // The second instance finds the key and caches it.
    assert!(fleet.two.access().authenticate(&key).await.unwrap().is_some());
    fleet.one.access().revoke_key(&record.id).await.unwrap();
    let refused =
        within(|| async { fleet.two.access().authenticate(&key).await.unwrap().is_none() }).await;
    assert!(refused.is_some(), "the revoked key still works on the second instance");
    fleet.drop_schema().await;
}
