//! The PostgreSQL backend, for several Latchkey instances sharing one database, connected
//! here; the queries are the shared ones in `sql/`, and [`Postgres`] is what differs: instead of
//! SQLite's database-wide write lock, a fenced write locks its row (`SELECT … FOR UPDATE`), key
//! changes lock their tables, reads of several statements share one snapshot, and leases are
//! timed by the server's clock.

#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::sql::{Dialect, SqlStore, sealed};
use crate::{Keys, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A pooled connection idle this long is pinged before it is used; one used more recently is
/// not (it answered the ping every connection gets as it returns to the pool).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The PostgreSQL [`Dialect`].
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

impl sealed::Sealed for Postgres {}

impl Dialect for Postgres {
    const STORE_NAME: &'static str = "PgStore";
    /// READ COMMITTED: a statement that waited for a row lock re-checks the newest row version.
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// One snapshot for all the statements, so a reader never pairs a row with secrets from
    /// before or after a concurrent write.
    const BEGIN_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCK_KEY_CHECKS: &'static [&'static str] =
        &["LOCK TABLE keyring_check IN SHARE ROW EXCLUSIVE MODE"];
    const LOCK_FOR_RETIREMENT: &'static [&'static str] = &[
        "LOCK TABLE keyring_check IN SHARE ROW EXCLUSIVE MODE",
        "LOCK TABLE secrets IN SHARE MODE",
    ];
    const NUMBERED_PLACEHOLDERS: bool = true;
    const JOIN_TAG_FILTERS: bool = false;
    /// Microsecond precision, from the server's clock as it runs (not the transaction's start).
    const NOW_NANOS: &'static str =
        "(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000)";

    sqlx_driver!(sqlx::Postgres);
}

/// A [`Store`](crate::Store) on one PostgreSQL database (in the schema the connection's
/// `search_path` names first, `public` by default).
pub type PgStore = SqlStore<Postgres>;

/// `LISTEN`s on [`CHANNEL`](crate::changes::CHANNEL) on a connection of its own, for this
/// schema's changes.
#[async_trait::async_trait]
impl crate::ChangeFeedStore for SqlStore<Postgres> {
    async fn change_feed(&self) -> Result<Option<crate::ChangeFeed>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        // On the listener's own connection: asking the pool would open a second one before the
        // server is ready (a connection costs a TLS handshake or more).
        let schema: String =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut listener).await?;
        listener.listen(crate::changes::CHANNEL).await?;
        Ok(Some(crate::ChangeFeed::new(listener, schema)))
    }
}

impl SqlStore<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database?…`; a
    /// schema can be chosen with `options=-c search_path=NAME`), brings its schema up to date
    /// and checks that the keys open it (a [`Keyring`](crate::Keyring) with versions, or
    /// [`MasterKeys`](crate::MasterKeys) whose versions the database's key checks decide):
    /// [`StoreError::WrongKey`] if the database was
    /// encrypted with another key. Several instances may start at once: migrations and the key
    /// check each run under a lock.
    pub async fn connect(url: &str, keys: impl Into<Keys>) -> Result<Self, StoreError> {
        Self::connect_with(parse_url(url)?, keys).await
    }

    /// [`PgStore::connect`] with options built in code.
    pub async fn connect_with(
        options: PgConnectOptions,
        keys: impl Into<Keys>,
    ) -> Result<Self, StoreError> {
        // One connection first, so an unreachable server fails at once with its cause rather
        // than as a pool timeout.
        let mut conn = connect_once(&options).await?;
        MIGRATOR.run(&mut conn).await?;
        let keyring = Self::open_keyring(&mut conn, keys.into()).await?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection as it comes back to the pool and drops one that does
            // not answer; a ping before each use as well would be one more round trip on every
            // query. Only a connection idle for a while is pinged again (the server or a
            // network device may have closed it meanwhile).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        tracing::debug!(key_version = keyring.current_version(), "postgres store opened");
        Ok(Self { pool, keyring, keep_alive: None })
    }

    /// Whether the database at `url` was initialised with a master key (its schema holds a key
    /// check or secrets). A caller that has no key should refuse to start with
    /// [`StoreError::MissingKey`] when this is `true`, and may generate a key only when it is
    /// `false`. Creates and changes nothing.
    pub async fn has_secrets(url: &str) -> Result<bool, StoreError> {
        Self::has_secrets_with(&parse_url(url)?).await
    }

    /// [`PgStore::has_secrets`] with options built in code.
    pub async fn has_secrets_with(options: &PgConnectOptions) -> Result<bool, StoreError> {
        let mut conn = connect_once(options).await?;
        // `to_regclass` resolves through the search path, as the store's own queries do.
        let initialised: bool = sqlx::query_scalar(
            "SELECT to_regclass('keyring_check') IS NOT NULL AND to_regclass('secrets') IS NOT NULL",
        )
        .fetch_one(&mut conn)
        .await?;
        let found = initialised && Self::holds_secrets(&mut conn).await?;
        conn.close().await?;
        Ok(found)
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// Parses a connection URL. The message never repeats the URL, which may hold a password.
fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    url.parse().map_err(|e| StoreError::Database(format!("invalid PostgreSQL connection URL: {e}")))
}

/// One connection outside the pool, with the server's address in the error.
async fn connect_once(options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    PgConnection::connect_with(options).await.map_err(|e| {
        StoreError::Database(format!(
            "cannot connect to PostgreSQL at {}:{}: {e}",
            options.get_host(),
            options.get_port()
        ))
    })
}
