//! The PostgreSQL backend under the shared store tests, and what only it has: several instances
//! starting on one database, and connection errors.
//!
//! Each test gets a schema of its own (`lk_<random>`, dropped afterwards) on the server at
//! `LATCHKEY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), so tests
//! run in parallel. Without a reachable server these tests fail: CI provides one.

use std::sync::Arc;

use latchkey_core::Secret;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{PgStore, is_postgres_url};
use crate::crypto::{Keyring, MasterKey, MasterKeys};
use crate::secret_rows::{record_binding, seal_credential};
use crate::tests::{Backend, connection};
use crate::{
    ConnectionStore, FlowStore, IntegrationStore, KeyAdmin, Keys, ScriptStorage, Store, StoreError,
};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub(crate) fn server_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

async fn admin() -> PgConnection {
    let url = server_url();
    let options: PgConnectOptions =
        url.parse().expect("LATCHKEY_TEST_POSTGRES_URL is not a PostgreSQL URL");
    PgConnection::connect_with(&options).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}). These tests need a server: start it \
             (`service postgresql start`) or point LATCHKEY_TEST_POSTGRES_URL at one."
        )
    })
}

/// A schema of its own on the test server, dropped (with everything in it) on drop.
pub(crate) struct Schema {
    name: String,
}

impl Schema {
    pub(crate) async fn create() -> Self {
        let name = format!("lk_{:016x}", rand::random::<u64>());
        let mut conn = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        Self { name }
    }

    /// Connection options whose `search_path` is this schema.
    pub(crate) fn options(&self) -> PgConnectOptions {
        server_url().parse::<PgConnectOptions>().unwrap().options([("search_path", &self.name)])
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be unwinding: a thread of its own.
        let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = admin().await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// A fresh schema and a store on it.
pub(crate) struct PgBackend {
    store: Arc<PgStore>,
    key: Secret,
    schema: Schema,
}

impl Backend for PgBackend {
    const NAME: &'static str = "PgStore";

    async fn start() -> Self {
        let schema = Schema::create().await;
        let key = MasterKey::generate();
        let encoded = key.to_base64();
        let store =
            Arc::new(PgStore::connect_with(schema.options(), Keyring::single(key)).await.unwrap());
        Self { store, key: encoded, schema }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn key(&self) -> MasterKey {
        MasterKey::from_base64(self.key.expose()).unwrap()
    }

    async fn reopen(&self, keys: impl Into<Keys>) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(PgStore::connect_with(self.schema.options(), keys).await?))
    }

    fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("'\\x{hex}'::bytea")
    }

    async fn has_secrets(&self) -> bool {
        PgStore::has_secrets_with(&self.schema.options()).await.unwrap()
    }

    async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.store.pool).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.store.pool).await.unwrap()
    }

    async fn dump(&self) -> Vec<u8> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&self.store.pool)
        .await
        .unwrap();
        assert!(tables.iter().any(|t| t == "secrets"), "dumping the wrong schema: {tables:?}");
        let mut out = Vec::new();
        for table in tables {
            // A row as text shows BYTEA as `\x…` hex, which the canary search covers.
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM \"{table}\" t"
            )))
            .fetch_all(&self.store.pool)
            .await
            .unwrap();
            for row in rows {
                out.extend_from_slice(row.as_bytes());
                out.push(b'\n');
            }
        }
        out
    }

    async fn finish(self) {
        self.store.close().await;
    }
}

#[tokio::test]
async fn a_fresh_schema_holds_no_secrets_until_a_store_opens_it() {
    let schema = Schema::create().await;
    assert!(!PgStore::has_secrets_with(&schema.options()).await.unwrap());
    let store = PgStore::connect_with(schema.options(), Keyring::single(MasterKey::generate()))
        .await
        .unwrap();
    assert!(PgStore::has_secrets_with(&schema.options()).await.unwrap());
    store.close().await;
}

/// Instances starting at once on an empty schema take turns: with one key all start, and the
/// first key to arrive is the one every later instance is held to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_agree_on_the_key() {
    let schema = Schema::create().await;
    let key = MasterKey::generate().to_base64();
    let same = || Keyring::single(MasterKey::from_base64(key.expose()).unwrap());
    let (a, b, c) = tokio::join!(
        PgStore::connect_with(schema.options(), same()),
        PgStore::connect_with(schema.options(), same()),
        PgStore::connect_with(schema.options(), same()),
    );
    let stores = [a.unwrap(), b.unwrap(), c.unwrap()];
    stores[0].insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    assert!(stores[2].get_connection("c1").await.unwrap().is_some());
    for store in &stores {
        store.close().await;
    }

    let other = Schema::create().await;
    let (a, b) = tokio::join!(
        PgStore::connect_with(other.options(), Keyring::single(MasterKey::generate())),
        PgStore::connect_with(other.options(), Keyring::single(MasterKey::generate())),
    );
    let wrong = [&a, &b].iter().filter(|r| matches!(r, Err(StoreError::WrongKey))).count();
    assert_eq!(wrong, 1, "one instance starts, the other has the wrong key: {a:?} {b:?}");
}

/// A pooled connection is not pinged before each use, only after it sat idle: one the server
/// closed meanwhile is found dead by that ping and replaced, and the read goes through.
#[tokio::test]
async fn a_pooled_connection_closed_while_idle_is_replaced_before_use() {
    let schema = Schema::create().await;
    let name = format!("latchkey-idle-{:016x}", rand::random::<u64>());
    let options = schema.options().application_name(&name);
    let store =
        PgStore::connect_with(options, Keyring::single(MasterKey::generate())).await.unwrap();
    store.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    assert!(store.get_connection("c1").await.unwrap().is_some());
    let mut conn = admin().await;
    let closed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1) t",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert!(closed >= 1, "the store's pooled connection was closed by the server");
    tokio::time::sleep(super::PING_AFTER_IDLE + std::time::Duration::from_millis(200)).await;
    assert!(store.get_connection("c1").await.unwrap().is_some(), "read on a fresh connection");
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_server_names_itself_in_the_error() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://latchkey:hunter2-password@127.0.0.1:1/latchkey";
    let err = PgStore::connect(url, Keyring::single(MasterKey::generate())).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("cannot connect to PostgreSQL at 127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "the password stays out of errors: {message}");
    let err = PgStore::has_secrets(url).await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:1"));
    let err = PgStore::connect("postgres://[::1", Keyring::single(MasterKey::generate()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid PostgreSQL connection URL"), "{err}");
}

#[test]
fn postgres_urls_are_recognised_by_scheme() {
    assert!(is_postgres_url("postgres://u@h/db"));
    assert!(is_postgres_url("postgresql://u@h/db"));
    assert!(is_postgres_url("PostgreSQL://u@h/db"));
    assert!(!is_postgres_url("sqlite://latchkey.db"));
    assert!(!is_postgres_url("./latchkey-data/latchkey.db"));
    assert!(!is_postgres_url("postgres"));
}

/// A row another instance is changing while the rotation reads it: the rotation's
/// compare-and-swap waits for that writer's row lock, sees the row changed, and leaves the
/// newer value alone; a later pass re-seals the newer value, never the older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_never_overwrites_a_row_changed_under_it() {
    let schema = Schema::create().await;
    let old = MasterKey::generate().to_base64();
    let old_key = || MasterKey::from_base64(old.expose()).unwrap();
    let first = PgStore::connect_with(schema.options(), Keyring::single(old_key())).await.unwrap();
    first.insert_connection(&connection("c1", &[("api_key", "older")])).await.unwrap();
    let keys = MasterKeys::new(MasterKey::generate()).with_previous(old_key());
    let rotated = Arc::new(PgStore::connect_with(schema.options(), keys).await.unwrap());

    // Another instance (still on the old key) writes a newer value and holds its row lock.
    let binding = record_binding(&connection("c1", &[]));
    let newer = seal_credential(
        &Keyring::single(old_key()),
        "c1",
        "api_key",
        &binding,
        &Secret::new("newer"),
    );
    let mut writer = first.pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE secrets SET key_version = $1, nonce = $2, ciphertext = $3
         WHERE owner_kind = 'connection' AND owner_id = 'c1' AND field = 'api_key'",
    )
    .bind(i64::from(newer.key_version))
    .bind(newer.nonce.as_slice())
    .bind(newer.ciphertext)
    .execute(&mut *writer)
    .await
    .unwrap();
    let batch = tokio::spawn({
        let rotated = Arc::clone(&rotated);
        async move { rotated.reseal_batch(None, 10).await.unwrap() }
    });
    // Wait until the rotation's write is blocked on the writer's row lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE secrets SET key_version%'",
        )
        .fetch_one(&first.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the rotation never waited on the row");
        tokio::task::yield_now().await;
    }
    writer.commit().await.unwrap();
    let batch = batch.await.unwrap();
    assert_eq!((batch.resealed, batch.changed_concurrently), (0, 1));
    let read = rotated.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials["api_key"].expose(), "newer");

    let report = rotated.rotate_keys(10).await.unwrap();
    assert_eq!((report.resealed, report.rows_on_old_versions()), (1, 0));
    let read = rotated.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials["api_key"].expose(), "newer");
    first.close().await;
    rotated.close().await;
}

/// `pg_dump` of a schema holding canary secrets of every kind (credentials before and after a
/// refresh, a client secret, a script value, a PKCE verifier) holds none of them in plain,
/// base64 or hex form; the non-secret columns are there, so the search itself works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_of_a_store_holds_no_canary() {
    use crate::model::OAuthState;
    use crate::tests::{assert_absent, creds, integration, update};

    let canaries: Vec<String> =
        (0..40).map(|i| format!("canary-pgdump-{i:02}-7c3e91a5d0")).collect();
    let schema = Schema::create().await;
    let store = PgStore::connect_with(schema.options(), Keyring::single(MasterKey::generate()))
        .await
        .unwrap();
    for (n, pair) in canaries.chunks(4).take(8).enumerate() {
        let id = format!("c{n}");
        store
            .insert_connection(&connection(&id, &[("api_key", &pair[0]), ("password", &pair[1])]))
            .await
            .unwrap();
        store
            .update_credentials(&id, 1, &update(&creds(&[("access_token", &pair[2])]), None))
            .await
            .unwrap();
        store.put_script_value(&id, "session", &Secret::new(&pair[3])).await.unwrap();
    }
    for (n, canary) in canaries[32..36].iter().enumerate() {
        store.put_integration(&integration(&format!("i{n}"), Some(canary))).await.unwrap();
    }
    for (n, canary) in canaries[36..40].iter().enumerate() {
        let verifier = format!("{canary}-0123456789abcdef0123456789");
        store
            .put_oauth_state(&OAuthState {
                state_hash: format!("h{n}"),
                connect_session: "cs".into(),
                browser_hash: None,
                redirect_uri: "http://cb".into(),
                pkce_verifier: Some(Secret::new(&verifier)),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::minutes(10),
            })
            .await
            .unwrap();
    }
    store.close().await;

    let dump = std::process::Command::new("pg_dump")
        .args(["--schema", &schema.name, "--no-owner", &server_url()])
        .output()
        .expect("pg_dump is installed");
    assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let text = dump.stdout;
    assert!(text.windows(11).any(|w| w == b"github-main"), "the dump holds the tables' rows");
    assert!(text.windows(7).any(|w| w == b"secrets"));
    let canaries: Vec<&str> = canaries.iter().map(String::as_str).collect();
    assert_absent(&text, &canaries, "pg_dump");
}
