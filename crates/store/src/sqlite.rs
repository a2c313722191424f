//! The SQLite backend: the embedded default. One file in WAL mode, opened here; the queries are
//! the shared ones in `sql/`, and [`Sqlite`] is what differs: a write transaction takes the
//! database-wide write lock at once (`BEGIN IMMEDIATE`), so the writer holds it before it reads
//! what it will change (no lock upgrade, hence no `SQLITE_BUSY` deadlock between two writers and
//! no lost version bump), and needs no row or table locks besides.

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};

use crate::sql::{Dialect, SqlStore, sealed};
use crate::{Keys, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite [`Dialect`].
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl sealed::Sealed for Sqlite {}

impl Dialect for Sqlite {
    const STORE_NAME: &'static str = "SqliteStore";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_READ: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const LOCK_KEY_CHECKS: &'static [&'static str] = &[];
    const LOCK_FOR_RETIREMENT: &'static [&'static str] = &[];
    const NUMBERED_PLACEHOLDERS: bool = false;
    const JOIN_TAG_FILTERS: bool = true;
    /// Millisecond precision: SQLite's clock has no finer one. The database's clock is the
    /// host's, which every process sharing the file reads.
    const NOW_NANOS: &'static str =
        "(CAST(round(unixepoch('subsec') * 1000) AS INTEGER) * 1000000)";

    sqlx_driver!(sqlx::Sqlite);
}

/// A [`Store`](crate::Store) on one SQLite database.
pub type SqliteStore = SqlStore<Sqlite>;

/// SQLite has no change feed: its processes share one file on one machine and rely on the
/// engine's short cache lifetimes.
#[async_trait::async_trait]
impl crate::ChangeFeedStore for SqlStore<Sqlite> {
    async fn change_feed(&self) -> Result<Option<crate::ChangeFeed>, StoreError> {
        Ok(None)
    }
}

impl SqlStore<Sqlite> {
    /// Opens (creating it if missing, with mode 0600 on Unix) the database at `path`, brings
    /// its schema up to date and checks that the keys open it: [`StoreError::WrongKey`] if the
    /// database was encrypted with another key. `keys` is a [`Keyring`](crate::Keyring) with
    /// versions, or [`MasterKeys`](crate::MasterKeys) whose versions the database's key checks
    /// decide. The parent directory must exist.
    pub async fn open(path: &Path, keys: impl Into<Keys>) -> Result<Self, StoreError> {
        create_private_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // No test of a connection before each use: a local file does not hang up, and the test
        // is one more trip to the connection's thread on every query, the reads on the proxy's
        // path included (sqlx still checks each connection when it comes back).
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Self::init(pool, keys.into()).await
    }

    /// A private in-memory database, for tests. The pool has one connection; a second, idle
    /// one lives as long as the store, so the database survives the pool's connection being
    /// closed (a task aborted mid-query closes it) and the pool reconnects to the same data.
    pub async fn open_in_memory(keys: impl Into<Keys>) -> Result<Self, StoreError> {
        // `:memory:` names a database of its own (`file:sqlx-in-memory-N`, shared cache), which
        // every connection opened with these options reaches.
        let options = ":memory:".parse::<SqliteConnectOptions>()?.foreign_keys(true);
        let keeper = SqliteConnection::connect_with(&options).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let mut store = Self::init(pool, keys.into()).await?;
        store.keep_alive = Some(std::sync::Arc::new(std::sync::Mutex::new(keeper)));
        Ok(store)
    }

    /// Whether a database exists at `path` and was initialised with a master key (it holds a
    /// key check or secrets). A caller that has no key should refuse to start with
    /// [`StoreError::MissingKey`] when this is `true`, and may generate a key only when it is
    /// `false` (and the data directory is otherwise empty). Does not create or change the file.
    pub async fn has_secrets(path: &Path) -> Result<bool, StoreError> {
        if !tokio::fs::try_exists(path)
            .await
            .map_err(|e| StoreError::Database(format!("cannot check the database file: {e}")))?
        {
            return Ok(false);
        }
        let options =
            SqliteConnectOptions::new().filename(path).busy_timeout(Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let initialised: bool = sqlx::query_scalar(
            "SELECT COUNT(*) = 2 FROM sqlite_master
             WHERE type = 'table' AND name IN ('keyring_check', 'secrets')",
        )
        .fetch_one(&mut conn)
        .await?;
        let found = initialised && Self::holds_secrets(&mut conn).await?;
        conn.close().await?;
        Ok(found)
    }

    async fn init(pool: SqlitePool, keys: Keys) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await?;
        let keyring = Self::open_keyring(&mut *pool.acquire().await?, keys).await?;
        tracing::debug!(key_version = keyring.current_version(), "sqlite store opened");
        Ok(Self { pool, keyring, keep_alive: None })
    }
}

/// Creates the database file readable by its owner only (SQLite gives the `-wal` and `-shm`
/// files the same mode). An existing file is left as it is.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!(
            "cannot create the database file {}: {e}",
            path.display()
        ))),
    }
}
