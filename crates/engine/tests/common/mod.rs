//! The engine the integration tests run: one connector (`prov`) from YAML, over a store, with an
//! integration `app` (client `cid`, secret `csecret`).

#![allow(dead_code)]

use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_engine::{Catalog, Clock, Engine, ManualClock, NewIntegration, Origin};
use latchkey_store::{Keyring, MasterKey, SqliteStore, Store};

/// An engine, the store under it (for what a test must set up around the engine) and the
/// manual clock it reads the time from.
pub struct Setup {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
}

/// An engine over `store` on a manual clock.
pub async fn setup_over(store: SqliteStore, connector_yaml: &str) -> Setup {
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = Arc::new(ManualClock::starting_now());
    let engine = build(store.clone(), connector_yaml, clock.clone()).await;
    Setup { engine, store, clock }
}

/// The same over an in-memory store.
pub async fn setup(connector_yaml: &str) -> Setup {
    setup_over(memory_store().await, connector_yaml).await
}

/// An engine over `store` on the system clock.
pub async fn engine_over(store: SqliteStore, connector_yaml: &str) -> Arc<Engine> {
    build(Arc::new(store), connector_yaml, Arc::new(latchkey_engine::SystemClock)).await
}

/// The same over an in-memory store.
pub async fn engine(connector_yaml: &str) -> Arc<Engine> {
    engine_over(memory_store().await, connector_yaml).await
}

async fn memory_store() -> SqliteStore {
    SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap()
}

async fn build(store: Arc<dyn Store>, connector_yaml: &str, clock: Arc<dyn Clock>) -> Arc<Engine> {
    let catalog = Catalog::default();
    catalog.add_source(connector_yaml, "test.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(store, catalog, net).clock(clock).build().await.unwrap();
    add_app(&engine).await;
    engine
}

/// Adds the integration `app` of connector `prov` (client `cid`, secret `csecret`).
pub async fn add_app(engine: &Engine) {
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "prov".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("csecret")),
            scopes: vec![],
        })
        .await
        .unwrap();
}

/// Starts a loopback authorization flow for the integration `app` and answers it with the code
/// `c0de` and the `extra` parameters (e.g. `iss`), re-authorising `reconnect` when given.
pub async fn answer_local_flow(
    engine: &Engine,
    extra: &[(&str, &str)],
    reconnect: Option<latchkey_engine::ConnectionId>,
) -> Result<latchkey_store::ConnectionRecord, latchkey_engine::EngineError> {
    let (url, flow) = engine
        .connect()
        .begin_local_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
            None,
            "http://127.0.0.1:9/cb",
            std::collections::BTreeMap::new(),
        )
        .await
        .unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let mut pairs = vec![("state".to_owned(), state), ("code".to_owned(), "c0de".to_owned())];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    engine
        .connect()
        .complete_local_authorization(
            flow,
            latchkey_engine::CallbackParams::from_pairs(pairs),
            reconnect,
        )
        .await
}

/// A schema of its own on the test PostgreSQL server (`LATCHKEY_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`), for stores that share one database; dropped by
/// [`PgSchema::drop_schema`] once the stores are gone.
pub struct PgSchema {
    admin: sqlx::PgConnection,
    name: String,
    /// Connect options with the schema as the search path.
    pub options: sqlx::postgres::PgConnectOptions,
    key: Secret,
}

impl PgSchema {
    /// A new schema, its name starting with `lk_{prefix}_`.
    pub async fn create(prefix: &str) -> Self {
        let server = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!(
            "lk_{prefix}_{}",
            latchkey_engine::random_token(6).to_lowercase().replace('-', "_")
        );
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {server}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let options = server
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .options([("search_path", name.as_str())]);
        let key = MasterKey::generate().to_base64();
        Self { admin, name, options, key }
    }

    /// A store on the schema; every store of one schema has the same master key.
    pub async fn store(&self) -> Arc<latchkey_store::PgStore> {
        let keys = Keyring::single(MasterKey::from_base64(self.key.expose()).unwrap());
        Arc::new(latchkey_store::PgStore::connect_with(self.options.clone(), keys).await.unwrap())
    }

    /// Drops the schema and its tables.
    pub async fn drop_schema(mut self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.name)))
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}
