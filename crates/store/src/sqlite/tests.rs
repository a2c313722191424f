//! The SQLite backend under the shared store tests (on a temporary file), and what only SQLite
//! has: the database file itself and the in-memory store.

use std::path::PathBuf;
use std::sync::Arc;

use latchkey_core::Secret;

use super::SqliteStore;
use crate::crypto::{Keyring, MasterKey};
use crate::tests::{Backend, assert_absent, connection, creds, integration, update};
use crate::{ConnectionStore, IntegrationStore, Keys, Store, StoreError};

/// A database file in a temporary directory.
pub(crate) struct SqliteBackend {
    store: Arc<SqliteStore>,
    key: Secret,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend for SqliteBackend {
    const NAME: &'static str = "SqliteStore";

    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.db");
        let key = MasterKey::generate();
        let encoded = key.to_base64();
        let store = Arc::new(SqliteStore::open(&path, Keyring::single(key)).await.unwrap());
        Self { store, key: encoded, path, _dir: dir }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn key(&self) -> MasterKey {
        MasterKey::from_base64(self.key.expose()).unwrap()
    }

    async fn reopen(&self, keys: impl Into<Keys>) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SqliteStore::open(&self.path, keys).await?))
    }

    async fn has_secrets(&self) -> bool {
        SqliteStore::has_secrets(&self.path).await.unwrap()
    }

    async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.store.pool).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.store.pool).await.unwrap()
    }

    async fn dump(&self) -> Vec<u8> {
        // While the store is open, recent writes sit in the write-ahead log.
        let mut bytes = std::fs::read(&self.path).unwrap();
        bytes.extend(std::fs::read(self.path.with_extension("db-wal")).unwrap_or_default());
        bytes
    }

    async fn finish(self) {
        self.store.close().await;
    }
}

#[tokio::test]
async fn has_secrets_is_false_for_a_missing_or_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    assert!(!SqliteStore::has_secrets(&path).await.unwrap());
    std::fs::write(&path, b"").unwrap();
    assert!(!SqliteStore::has_secrets(&path).await.unwrap());
}

#[tokio::test]
async fn the_closed_file_is_private_and_holds_no_secret() {
    let canaries = ["canary-api-key-5f3a9c2e71d4", "canary-client-secret-c0ffee42"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let store = SqliteStore::open(&path, Keyring::single(MasterKey::generate())).await.unwrap();
    store.insert_connection(&connection("c1", &[("api_key", canaries[0])])).await.unwrap();
    store.put_integration(&integration("i1", Some(canaries[1]))).await.unwrap();
    store.close().await;

    // Closing checkpoints the write-ahead log into the file.
    let bytes = std::fs::read(&path).unwrap();
    assert_absent(&bytes, &canaries, "the database file");
    assert!(bytes.windows(10).any(|w| w == b"client-123"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn the_in_memory_store_keeps_credentials() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    store.insert_connection(&connection("c1", &[("access_token", "at-1")])).await.unwrap();
    store
        .update_credentials("c1", 1, &update(&creds(&[("access_token", "at-2")]), None))
        .await
        .unwrap();
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!((read.version, read.credentials), (2, creds(&[("access_token", "at-2")])));
}

/// A task aborted mid-query closes the pool's one connection; the data must outlive it (the pool
/// reconnects to the same database), and two in-memory stores never share data.
#[tokio::test]
async fn the_in_memory_store_survives_its_connection_closing() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let other = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    store.insert_connection(&connection("c1", &[("access_token", "at-1")])).await.unwrap();
    store.pool.acquire().await.unwrap().close().await.unwrap();
    let read = store.get_connection("c1").await.unwrap().expect("the data outlived the connection");
    assert_eq!(read.credentials, creds(&[("access_token", "at-1")]));
    assert!(other.get_connection("c1").await.unwrap().is_none());
}
