//! Every query of the store, written once for both backends. [`SqlStore`] is generic over a
//! [`Dialect`], which names the sqlx driver and holds the few things the two databases really do
//! differently: how a read or a write transaction begins, the row lock a fenced write takes
//! (`FOR UPDATE`), the table locks around key changes, and the clock leases are timed by.
//! Everything else (SQL text with `$N` placeholders, which sqlx's SQLite driver reads too, row
//! decoding, sealing) is shared.
//!
//! The role traits are implemented one file each: [`integrations`], [`connections`],
//! [`flows`], [`scripts`], [`keys`], [`access`], [`audit`], [`webhooks`] and [`console`]; [`secrets`] holds the `secrets`
//! and `keyring_check` tables they all write through.

mod access;
mod audit;
mod connections;
mod console;
mod flows;
mod integrations;
mod keys;
mod operations;
mod pages;
mod scripts;
mod secrets;
mod webhooks;

use std::borrow::Cow;
use std::fmt;

use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use crate::crypto::Keyring;
use crate::rows::Columns;
use crate::{Keys, StoreError};

/// The sqlx query type of a dialect's driver.
pub type DialectQuery<D> =
    sqlx::query::Query<'static, <D as Dialect>::Db, <D as Dialect>::Arguments>;

/// What sets one SQL database apart for the store: its sqlx driver and the few statements
/// that differ. Implemented by [`Sqlite`](crate::Sqlite) and [`Postgres`](crate::Postgres)
/// only.
///
/// The associated types restate the driver's own (`Db::Connection`, `Db::Row`, …) so that the
/// bounds the shared code needs hold wherever a `D: Dialect` is in scope: Rust does not carry
/// a trait's `where` clauses on other types (such as `&mut Connection: Executor`) to its users,
/// but it does carry bounds on associated types.
pub trait Dialect: sealed::Sealed + fmt::Debug + Send + Sync + Sized + 'static {
    /// The name a store on this database shows in `Debug` (`SqliteStore`, `PgStore`).
    const STORE_NAME: &'static str;

    /// Begins a transaction that writes: it holds the locks a write needs before it reads what
    /// it will change (SQLite: `BEGIN IMMEDIATE`, the database-wide write lock).
    const BEGIN_WRITE: &'static str;

    /// Begins a read of several statements that must see one state (PostgreSQL: a repeatable
    /// read snapshot).
    const BEGIN_READ: &'static str;

    /// Appended to the `SELECT` of a fenced write, to lock the row read until commit (empty
    /// where [`Dialect::BEGIN_WRITE`] already excludes other writers).
    const FOR_UPDATE: &'static str;

    /// Appended to the `SELECT` that picks rows for a claim (webhook deliveries): lock them,
    /// skipping rows another claim has locked (empty where [`Dialect::BEGIN_WRITE`] already
    /// excludes other writers).
    const SKIP_LOCKED: &'static str;

    /// Run first in the transaction that checks or adds key checks at start-up, so instances
    /// starting at once take turns.
    const LOCK_KEY_CHECKS: &'static [&'static str];

    /// Run first in the transaction that retires old key versions, so no writer can seal with
    /// a version between the check that none uses it and the drop of its key check.
    const LOCK_FOR_RETIREMENT: &'static [&'static str];

    /// Whether a list filtered on several tags finds them with one subquery joining
    /// `connection_tags` with itself (SQLite, whose planner then starts from the most selective
    /// tag) rather than one `id IN (…)` per tag (PostgreSQL, which hashes each set; the join
    /// made it 10-100x slower). BENCHMARKS.md has the figures.
    const JOIN_TAG_FILTERS: bool;

    /// Whether a statement with many values numbers its placeholders (`$1, $2, …`: PostgreSQL)
    /// or uses bare `?`s bound in order (SQLite). Binding a numbered placeholder makes SQLite
    /// look its name up in a list as long as the statement's placeholders, so a 1,500-value
    /// insert spent most of its time there (16 % of the proxy's CPU, with the operation log on).
    const NUMBERED_PLACEHOLDERS: bool;

    /// An SQL expression for the database's clock as unix nanoseconds. Leases are timed by it
    /// alone, so processes whose clocks disagree still agree on when a lease expires.
    const NOW_NANOS: &'static str;

    /// The sqlx driver.
    type Db: Database<
            Connection = Self::Connection,
            Row = Self::Row,
            Arguments = Self::Arguments,
            QueryResult = Self::QueryResult,
        >;
    /// The driver's connection.
    type Connection: sqlx::Connection<Database = Self::Db>;
    /// The driver's row, read through the decoders both backends share.
    type Row: Columns;
    /// The driver's bound arguments.
    type Arguments: IntoArguments<Self::Db>;
    /// What a statement reports.
    type QueryResult: Send;
    /// A borrowed connection, as a statement runs on it.
    type Executor<'c>: Executor<'c, Database = Self::Db>;

    /// `conn` as an executor (the identity: the bound is what it adds).
    fn executor(conn: &mut Self::Connection) -> Self::Executor<'_>;

    /// Binds the next parameter (the same function on every driver).
    fn bind(query: DialectQuery<Self>, value: Value<'_>) -> DialectQuery<Self>;

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// The part of a [`Dialect`] impl that only restates its sqlx driver `$db`: the associated
/// types, the executor, binding and the count of changed rows.
macro_rules! sqlx_driver {
    ($db:ty) => {
        type Db = $db;
        type Connection = <$db as sqlx::Database>::Connection;
        type Row = <$db as sqlx::Database>::Row;
        type Arguments = <$db as sqlx::Database>::Arguments;
        type QueryResult = <$db as sqlx::Database>::QueryResult;
        type Executor<'c> = &'c mut Self::Connection;

        fn executor(conn: &mut Self::Connection) -> Self::Executor<'_> {
            conn
        }

        fn bind(
            query: $crate::sql::DialectQuery<Self>,
            value: $crate::sql::Value<'_>,
        ) -> $crate::sql::DialectQuery<Self> {
            $crate::sql::bind_value(query, value)
        }

        fn rows_affected(result: &Self::QueryResult) -> u64 {
            result.rows_affected()
        }
    };
}

pub(crate) mod sealed {
    /// Keeps [`Dialect`](super::Dialect) to this crate's two backends.
    pub trait Sealed {}
}

/// A store on one SQL database; [`SqliteStore`](crate::SqliteStore) and
/// [`PgStore`](crate::PgStore) name its two kinds and carry their constructors.
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D::Db>,
    pub(crate) keyring: Keyring,
    /// What keeps the database itself alive apart from the pool, for as long as the store is:
    /// an in-memory SQLite database's idle second connection (see
    /// [`SqliteStore::open_in_memory`](crate::SqliteStore::open_in_memory)). `None` otherwise.
    pub(crate) keep_alive: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(D::STORE_NAME)
            .field("pool", &self.pool)
            .field("keyring", &self.keyring)
            .finish()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Closes the pool, waiting for connections to finish (on SQLite, this checkpoints the
    /// write-ahead log).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Settles the keyring on a freshly migrated database (see `secrets::check_keyring`) and
    /// binds credentials sealed before binding existed; `conn` is outside any transaction.
    pub(crate) async fn open_keyring(
        conn: &mut D::Connection,
        keys: Keys,
    ) -> Result<Keyring, StoreError> {
        let keyring = secrets::check_keyring::<D>(conn, keys).await?;
        secrets::bind_credentials::<D>(conn, &keyring).await?;
        Ok(keyring)
    }

    /// Whether a migrated database holds a key check or a secret.
    pub(crate) async fn holds_secrets(conn: &mut D::Connection) -> Result<bool, StoreError> {
        sql::<D>(
            "SELECT EXISTS (SELECT 1 FROM keyring_check) OR EXISTS (SELECT 1 FROM secrets) AS found",
        )
        .fetch_one(conn)
        .await?
        .flag("found")
    }
}

/// One parameter value, in the few column types the schema uses on both backends.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    /// `TEXT`, or NULL.
    Text(Option<Cow<'a, str>>),
    /// A 64-bit integer (`INTEGER` / `BIGINT`), or NULL.
    Int(Option<i64>),
    /// `BLOB` / `BYTEA`.
    Bytes(Cow<'a, [u8]>),
    /// A boolean (an integer on SQLite).
    Bool(bool),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}
impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
}
impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v.map(Cow::Borrowed))
    }
}
impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Self::Text(v.as_deref().map(Cow::Borrowed))
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(Cow::Borrowed(v))
    }
}
impl From<Vec<u8>> for Value<'_> {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(Cow::Owned(v))
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// Binds `value` on any driver that encodes the schema's column types; each [`Dialect`]'s
/// `bind` is this, checked there against its concrete driver.
pub(crate) fn bind_value<DB>(
    query: sqlx::query::Query<'static, DB, DB::Arguments>,
    value: Value<'_>,
) -> sqlx::query::Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    match value {
        Value::Text(text) => query.bind(text.as_deref()),
        Value::Int(int) => query.bind(int),
        Value::Bytes(bytes) => query.bind(bytes.as_ref()),
        Value::Bool(flag) => query.bind(flag),
    }
}

/// One statement of the shared SQL with its parameters, run on a connection of dialect `D`.
///
/// A thin layer over `sqlx::query`, written here because sqlx's generic bounds (`Executor` on
/// `&mut Connection`, `Encode` per value type) would otherwise be restated on every function.
pub(crate) struct Sql<D: Dialect> {
    query: DialectQuery<D>,
}

/// A statement: `text` is SQL literal text, or [`assembled`] from literal pieces.
pub(crate) fn sql<D: Dialect>(text: impl sqlx::SqlSafeStr) -> Sql<D> {
    Sql { query: sqlx::query(text) }
}

/// SQL put together from literal pieces only (shared text and a dialect's fragments), so no
/// value can end up in it.
pub(crate) fn assembled(pieces: &[&'static str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(pieces.concat())
}

impl<D: Dialect> Sql<D> {
    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(crate) fn bind<'v>(self, value: impl Into<Value<'v>>) -> Self {
        Self { query: D::bind(self.query, value.into()) }
    }

    /// Runs the statement; returns how many rows it changed.
    pub(crate) async fn execute(self, conn: &mut D::Connection) -> Result<u64, StoreError> {
        let done = self.query.execute(D::executor(conn)).await?;
        Ok(D::rows_affected(&done))
    }

    /// The one row the statement returns.
    pub(crate) async fn fetch_one(self, conn: &mut D::Connection) -> Result<D::Row, StoreError> {
        Ok(self.query.fetch_one(D::executor(conn)).await?)
    }

    /// The row the statement returns, if any.
    pub(crate) async fn fetch_optional(
        self,
        conn: &mut D::Connection,
    ) -> Result<Option<D::Row>, StoreError> {
        Ok(self.query.fetch_optional(D::executor(conn)).await?)
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all(
        self,
        conn: &mut D::Connection,
    ) -> Result<Vec<D::Row>, StoreError> {
        Ok(self.query.fetch_all(D::executor(conn)).await?)
    }
}
