//! Write access to the database alone cannot send a credential elsewhere: a connection whose
//! `connector` column or templated-`base_url` config is edited with SQL fails closed with
//! `credentials_unreadable`, and nothing reaches the new host. On SQLite and PostgreSQL (the
//! server at `LATCHKEY_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`,
//! a schema of its own per test).

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Catalog, Engine, EngineError, NewConnection, Origin};
use latchkey_store::{Keyring, MasterKey, PgStore, SqliteStore, Store, StoreError};
use sqlx::Connection as _;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANARY: &str = "canary-db-edit-token-7d1e";

/// A database both backends can open again and edit behind the store's back.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

fn pg_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

impl Db {
    async fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Self {
        let schema = format!("lk_dbedit_{:016x}", rand_id());
        Self::run_pg(&pg_url(), &format!("CREATE SCHEMA {schema}")).await;
        Self::Postgres(schema)
    }

    fn pg_options(schema: &str) -> sqlx::postgres::PgConnectOptions {
        pg_url()
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap()
            .options([("search_path", schema)])
    }

    async fn run_pg(url: &str, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL is reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn open(&self, key: &MasterKey) -> Arc<dyn Store> {
        let ring = Keyring::single(MasterKey::from_base64(key.to_base64().expose()).unwrap());
        match self {
            Self::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("l.db"), ring).await.unwrap())
            }
            Self::Postgres(schema) => {
                Arc::new(PgStore::connect_with(Self::pg_options(schema), ring).await.unwrap())
            }
        }
    }

    async fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("l.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
            Self::Postgres(schema) => {
                let mut conn =
                    sqlx::PgConnection::connect_with(&Self::pg_options(schema)).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    async fn finish(self) {
        if let Self::Postgres(schema) = self {
            Self::run_pg(&pg_url(), &format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

async fn engine(store: Arc<dyn Store>, home: &MockServer, evil: &MockServer) -> Arc<Engine> {
    let catalog = Catalog::default();
    for yaml in [
        format!("id: home\nname: Home\nbase_url: {}/api\nauth:\n  - type: bearer\n", home.uri()),
        format!("id: evil\nname: Evil\nbase_url: {}/api\nauth:\n  - type: bearer\n", evil.uri()),
        "id: tmpl\nname: Templated\nbase_url: \"http://127.0.0.1:{{ config.port }}/api\"\n\
         allowed_hosts: [127.0.0.1]\n\
         config:\n  - { key: port, label: Port }\nauth:\n  - type: bearer\n"
            .to_owned(),
    ] {
        catalog.add_source(&yaml, "test.yaml", Origin::Custom).unwrap();
    }
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    Engine::builder(store, catalog, net).build().await.unwrap()
}

async fn mock(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(server)
        .await;
}

fn get() -> ApiRequest {
    ApiRequest { path: "/me".into(), ..ApiRequest::default() }
}

async fn edits_fail_closed(db: Db) {
    let (home, evil) = (MockServer::start().await, MockServer::start().await);
    mock(&home).await;
    mock(&evil).await;
    let key = MasterKey::generate();
    let first = engine(db.open(&key).await, &home, &evil).await;
    for (id, connector, config) in [
        ("c-connector", "home", BTreeMap::new()),
        (
            "c-config",
            "tmpl",
            BTreeMap::from([("port".to_owned(), home.address().port().to_string())]),
        ),
    ] {
        first
            .connections()
            .create(NewConnection {
                id: Some(id.parse().unwrap()),
                credentials: BTreeMap::from([("token".to_owned(), Secret::new(CANARY))]),
                config,
                ..NewConnection::new(connector.parse().unwrap())
            })
            .await
            .unwrap();
        first.dispatch().request(&id.parse().unwrap(), get()).await.unwrap();
    }
    assert_eq!(home.received_requests().await.unwrap().len(), 2);

    db.execute("UPDATE connections SET connector = 'evil' WHERE id = 'c-connector'").await;
    db.execute(&format!(
        "UPDATE connections SET config = '{{\"port\":\"{}\"}}' WHERE id = 'c-config'",
        evil.address().port()
    ))
    .await;

    // Another instance (or this one after a restart) reads the edited rows.
    let second = engine(db.open(&key).await, &home, &evil).await;
    for id in ["c-connector", "c-config"] {
        let result = second.dispatch().request(&id.parse().unwrap(), get()).await;
        match &result {
            Err(EngineError::Store(StoreError::CredentialsUnreadable { connection, .. })) => {
                assert_eq!(connection, id);
            }
            other => panic!("{id}: expected credentials_unreadable, got {other:?}"),
        }
        let message = result.unwrap_err().to_string();
        assert!(message.contains(id) && !message.contains(CANARY), "{message}");
    }
    assert_eq!(evil.received_requests().await.unwrap().len(), 0, "nothing reached the new host");
    assert_eq!(home.received_requests().await.unwrap().len(), 2);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connector_or_config_edit_fails_closed() {
    edits_fail_closed(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connector_or_config_edit_fails_closed() {
    edits_fail_closed(Db::postgres().await).await;
}
