//! Latchkey's persistence: the store traits that the engine and server use, the one SQL store
//! behind them, and envelope encryption of every secret with a versioned keyring.
//!
//! A caller names the role it needs: [`IntegrationStore`] (integrations and custom
//! connectors), [`ConnectionStore`] (connections and their credentials), [`FlowStore`] (connect
//! sessions, OAuth states, leases), [`ScriptStorage`] (connector scripts' values),
//! [`KeyAdmin`] (key versions, re-sealing, retirement), [`AccessStore`] (environments, API
//! keys), [`AuditStore`] (the hash-chained audit log, see [`audit`]), [`WebhookStore`] (the
//! webhook delivery log, see [`webhooks`]) and [`ConsoleStore`] (the operator console's sessions
//! and counts). [`Store`] is all of
//! them, shared as
//! `Arc<dyn Store>`, which upcasts to any one role.
//!
//! One implementation serves both databases: [`SqlStore`], whose queries (in `src/sql/`) are
//! written once, generic over a [`Dialect`] that holds what really differs — how a write or a
//! snapshot read begins, the `FOR UPDATE` row lock, the table locks around key changes, and the
//! clock leases are timed by.
//!
//! - [`SqliteStore`] (`SqlStore<Sqlite>`): the embedded default, one file in the data directory.
//! - [`PgStore`] (`SqlStore<Postgres>`): PostgreSQL, for several instances sharing one database.
//!
//! Both keep the same schema (migrations per backend in `migrations/sqlite` and
//! `migrations/postgres`), decode rows with the same code and pass the same tests
//! (`src/tests.rs`). Across processes, a connection's `version` fences credential writes (a
//! transaction holding the write lock on SQLite, a `SELECT … FOR UPDATE` row lock on
//! PostgreSQL), leases ([`FlowStore::try_lock`]) make a refresh happen once, and OAuth states
//! and connect sessions are single-use through one conditional statement each.
//!
//! Secrets never reach the database in plain text: each credential field, client secret, PKCE
//! verifier and script-stored value is sealed on its own with AES-256-GCM, bound to its owner
//! and field by associated data ([`crypto::aad`]), and opened again only when a record is read.
//! A key-check row per key version makes a wrong or missing key stop start-up
//! ([`StoreError::WrongKey`], [`StoreError::MissingKey`]); keys given without versions
//! ([`MasterKeys`]) find theirs through those checks, and [`rotation`] re-seals every row under
//! a new key ([`KeyAdmin::rotate_keys`]) so old versions can be retired.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

// First, so the column-list macros it defines are in scope in the queries.
#[macro_use]
mod rows;
// Before the backends, so `sqlx_driver!` is in scope in their dialects.
#[macro_use]
mod sql;

pub mod access;
pub mod agent_tokens;
pub mod audit;
pub mod changes;
pub mod console;
pub mod crypto;
pub mod health;
pub mod listing;
pub mod model;
pub mod operations;
pub mod postgres;
mod roles;
pub mod rotation;
mod secret_rows;
pub mod sqlite;
#[cfg(test)]
mod tests;
pub mod webhooks;

pub use access::{ApiKeyRecord, EnvironmentRecord, Scope, UnknownScope};
pub use agent_tokens::{AgentTokenRecord, AgentTokenUse};
pub use audit::{
    AuditBreak, AuditEntry, AuditFilter, AuditObject, AuditOutcome, AuditPage, AuditProblem,
    AuditRecord, AuditTrim, AuditVerdict,
};
pub use changes::{Change, ChangeFeed};
pub use console::{ConsoleSessionRecord, HealthCount, OperationBucket};
pub use crypto::{CryptoError, KeyError, Keyring, MasterKey, MasterKeys, Sealed};
pub use health::{Health, HealthError, HealthReason, HealthState, UnknownHealth};
pub use listing::{
    ConnectionFilter, Cursor, DEFAULT_PAGE_SIZE, IntegrationFilter, InvalidCursor, MAX_PAGE_SIZE,
    Page, PageRequest,
};
pub use model::{
    ConnectSession, ConnectionDetails, ConnectionRecord, ConnectionStatus, ConnectionSummary,
    CredentialUpdate, CustomConnector, DueCheck, EndUser, ExpiringConnection, IntegrationRecord,
    Metadata, Misconfiguration, OAuthState, RefreshBackoff, SessionFailure, SessionStatus, Tags,
    refresh_spread,
};
pub use operations::{
    Operation, OperationFilter, OperationKind, OperationOutcome, UnknownOperationValue,
};
pub use postgres::{PgStore, Postgres};
pub use roles::{
    AccessStore, AuditStore, ChangeFeedStore, ConnectionStore, ConsoleStore, FlowStore,
    IntegrationStore, KeyAdmin, OperationStore, ScriptStorage, Store, WebhookStore,
};
pub use rotation::{KeyVersion, ResealBatch, RotationReport, SecretRowKey};
pub use secret_rows::Keys;
pub use sql::{Dialect, SqlStore};
pub use sqlite::{Sqlite, SqliteStore};
pub use webhooks::{
    AttemptOutcome, DeliveryFilter, DeliveryStatus, UnknownDeliveryStatus, WebhookDelivery,
};

/// What can go wrong in the store. No message contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `connection`, `integration` or `custom connector`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A record with this id already exists.
    #[error("{kind} {id:?} already exists")]
    Conflict {
        /// `connection`, `integration` or `custom connector`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The connection changed since it was read (optimistic fencing): re-read and retry.
    #[error("connection {id:?} changed concurrently: expected version {expected}, found {found}")]
    VersionConflict {
        /// The connection id.
        id: String,
        /// The version the caller read.
        expected: i64,
        /// The version stored now.
        found: i64,
    },
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A connection's stored credential does not open: it was sealed for another connector,
    /// integration, auth method or config than the connection row now names (a database edit),
    /// or it was altered, moved, or sealed with a key this process does not hold. Nothing is
    /// sent with it; re-authorising the connection writes new credentials.
    #[error(
        "the credentials of connection {connection:?} cannot be read (field {field:?}): {reason}"
    )]
    CredentialsUnreadable {
        /// The connection id.
        connection: String,
        /// The credential field that did not open.
        field: String,
        /// Why.
        reason: CryptoError,
    },
    /// The database failed, or holds a value this code cannot read.
    #[error("database error: {0}")]
    Database(String),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The key given does not open the database's key check.
    #[error("the master key does not match the one this database was encrypted with")]
    WrongKey,
    /// The database holds encrypted data but no master key was given.
    #[error("this database holds encrypted secrets but no master key was given")]
    MissingKey,
    /// The key version this process seals with was retired from the database (its key check
    /// dropped), so what it would write could not be opened by anyone: nothing was written.
    #[error(
        "master key version {version} was retired from this database; restart with the current \
         master key"
    )]
    KeyRetired {
        /// The retired version.
        version: u32,
    },
    /// Old key versions cannot be retired while secret rows are still sealed with them.
    #[error(
        "{rows} secret rows still use master key version {version}: run `latchkey keys rotate` \
         (with that key given as a previous key) before retiring it"
    )]
    KeyInUse {
        /// The version still in use.
        version: u32,
        /// How many rows use it.
        rows: u64,
    },
}

impl From<sqlx::Error> for StoreError {
    /// sqlx messages name tables, columns and constraints, never bound values.
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(error.to_string())
    }
}
