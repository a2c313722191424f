//! Latchkey's persistence: the [`Store`] trait that the engine and server use, its two
//! backends, and envelope encryption of every secret with a versioned keyring.
//!
//! - [`SqliteStore`]: the embedded default, one file in the data directory.
//! - [`PgStore`]: PostgreSQL, for several instances sharing one database.
//!
//! Both keep the same schema (migrations per backend in `migrations/sqlite` and
//! `migrations/postgres`), decode rows with the same code and pass the same tests
//! (`src/tests.rs`). Across processes, a connection's `version` fences credential writes (a
//! transaction holding the write lock on SQLite, a `SELECT … FOR UPDATE` row lock on
//! PostgreSQL), leases ([`Store::try_lock`]) make a refresh happen once, and OAuth states and
//! connect sessions are single-use through one conditional statement each.
//!
//! Secrets never reach the database in plain text: each credential field, client secret, PKCE
//! verifier and script-stored value is sealed on its own with AES-256-GCM, bound to its owner
//! and field by associated data ([`crypto::aad`]), and opened again only when a record is read.
//! A key-check row per key version makes a wrong or missing key stop start-up
//! ([`StoreError::WrongKey`], [`StoreError::MissingKey`]); keys given without versions
//! ([`MasterKeys`]) find theirs through those checks, and [`rotation`] re-seals every row under
//! a new key ([`Store::rotate_keys`]) so old versions can be retired.

// First, so the column-list macros it defines are in scope in the backends.
#[macro_use]
mod rows;

pub mod crypto;
pub mod model;
pub mod postgres;
pub mod rotation;
mod secret_rows;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;

use time::OffsetDateTime;

pub use crypto::{CryptoError, KeyError, Keyring, MasterKey, MasterKeys, Sealed};
pub use model::{
    ConnectSession, ConnectionRecord, ConnectionStatus, ConnectionSummary, CredentialUpdate,
    CustomConnector, IntegrationRecord, OAuthState, SessionStatus,
};
pub use postgres::PgStore;
pub use rotation::{KeyVersion, ResealBatch, RotationReport, SecretRowKey};
pub use secret_rows::Keys;
pub use sqlite::SqliteStore;

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

/// Persistence for integrations, connections and custom connectors. Shared as `Arc<dyn Store>`.
///
/// Reads return secrets decrypted; writes seal them. Every write to a connection bumps its
/// `version`, which [`Store::update_credentials`] uses as a fence so two refreshes cannot
/// overwrite each other.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Inserts or replaces an integration, including its client secret (removed if `None`).
    async fn put_integration(&self, integration: &IntegrationRecord) -> Result<(), StoreError>;

    /// The integration with this id, if any.
    async fn get_integration(&self, id: &str) -> Result<Option<IntegrationRecord>, StoreError>;

    /// All integrations, by id.
    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError>;

    /// Deletes an integration and its secrets; `false` if it did not exist.
    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError>;

    /// Inserts a new connection at version 1 (its `version` field is ignored) and returns that
    /// version. [`StoreError::Conflict`] if the id exists.
    async fn insert_connection(&self, connection: &ConnectionRecord) -> Result<i64, StoreError>;

    /// Inserts or replaces a connection and all its credentials, and returns the new version:
    /// the old version + 1, or 1 for a new connection (its `version` field is ignored).
    async fn put_connection(&self, connection: &ConnectionRecord) -> Result<i64, StoreError>;

    /// The connection with this id and its decrypted credentials, if any.
    async fn get_connection(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError>;

    /// All connections without their credentials, oldest first.
    async fn list_connections(&self) -> Result<Vec<ConnectionSummary>, StoreError>;

    /// Deletes a connection and its secrets; `false` if it did not exist.
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;

    /// Sets a connection's status (bumping its version); `false` if it does not exist.
    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError>;

    /// Replaces the given credential fields (others are kept), sets `expires_at` (`None` clears
    /// it) and bumps the version, in one transaction, only if the stored version is still
    /// `expected_version`. Returns the new version; [`StoreError::VersionConflict`] (with nothing
    /// changed) if another writer came first, [`StoreError::NotFound`] if the connection is gone.
    async fn update_credentials(
        &self,
        id: &str,
        expected_version: i64,
        update: &CredentialUpdate,
    ) -> Result<i64, StoreError>;

    /// Ids of `ok` connections whose access token expires before `before`, soonest first.
    async fn connections_expiring(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores a new connect session.
    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError>;

    /// The connect session with this id.
    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError>;

    /// The connect session whose token hashes to `token_hash`.
    async fn find_connect_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError>;

    /// Moves a session from `pending` to `started`; `false` if it was not pending (single use).
    async fn start_connect_session(&self, id: &str) -> Result<bool, StoreError>;

    /// Records a session's outcome.
    async fn finish_connect_session(
        &self,
        id: &str,
        status: SessionStatus,
        connection: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Stores an authorization request in flight (its PKCE verifier sealed).
    async fn put_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError>;

    /// Removes and returns the state with this hash: a state can be taken once.
    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError>;

    /// Takes the lease `name` for `ttl` if it is free or expired; `true` when `holder` has it.
    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Extends the lease to `ttl` from now if `holder` still has it (even if it has just
    /// expired, as long as nobody took it over); `false` when another holder has it or it is
    /// gone. Measured by the same clock as [`Store::try_lock`].
    async fn renew_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Releases the lease if `holder` still has it.
    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// The names of the leases that start with `prefix` and were not released (only the
    /// expired ones with `expired_only`): after a crash, or a holder cancelled mid-work, the work
    /// they guarded was interrupted.
    async fn locks_named(
        &self,
        prefix: &str,
        expired_only: bool,
    ) -> Result<Vec<String>, StoreError>;

    /// Inserts or replaces a custom connector's YAML source.
    async fn put_custom_connector(&self, id: &str, source: &str) -> Result<(), StoreError>;

    /// All custom connectors, by id.
    async fn list_custom_connectors(&self) -> Result<Vec<CustomConnector>, StoreError>;

    /// Deletes a custom connector; `false` if it did not exist.
    async fn delete_custom_connector(&self, id: &str) -> Result<bool, StoreError>;

    /// A value a connector script stored for a connection (`cyclr_storage_get`); encrypted at
    /// rest like every secret, deleted with the connection.
    async fn script_value(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<latchkey_core::Secret>, StoreError>;

    /// Stores a script value (`cyclr_storage_set`).
    async fn put_script_value(
        &self,
        connection: &str,
        key: &str,
        value: &latchkey_core::Secret,
    ) -> Result<(), StoreError>;

    /// Deletes a script value; `false` if there was none.
    async fn delete_script_value(&self, connection: &str, key: &str) -> Result<bool, StoreError>;

    /// The keys of a connection's script values, sorted.
    async fn script_keys(&self, connection: &str) -> Result<Vec<String>, StoreError>;

    /// Every master-key version the database or this process knows: its key check, whether
    /// this process holds its key, and how many secret rows are sealed with it.
    async fn key_versions(&self) -> Result<Vec<KeyVersion>, StoreError>;

    /// Re-seals under the current key version, in one transaction, the secret rows (every
    /// sealed value: credentials, client secrets, script values, PKCE verifiers) that come after
    /// `after` in key order, at most `limit` of them, that are sealed with another version. A
    /// row is written back only if it still holds the value that was read (compare-and-swap
    /// on its key version and nonce), so a concurrent write is never lost or sealed twice.
    async fn reseal_batch(
        &self,
        after: Option<&SecretRowKey>,
        limit: u32,
    ) -> Result<ResealBatch, StoreError>;

    /// Drops the key checks of every version older than the current one, after which their
    /// keys are no longer needed (nor accepted: a key matching no check stops start-up). Newer
    /// versions, which a process already on a newer key uses, are left alone. Refuses with
    /// [`StoreError::KeyInUse`] while any secret row is sealed with an older version, and with
    /// [`StoreError::KeyRetired`] if the current version itself was retired meanwhile.
    /// Returns the versions retired.
    async fn retire_old_keys(&self) -> Result<Vec<u32>, StoreError>;

    /// Re-seals every secret row under the current key version, batch by batch
    /// ([`Store::reseal_batch`]), safe to run while other instances serve and to run again
    /// after an interruption. When rows were changed concurrently it goes through the table
    /// again (at most a few times), since a writer holding an old key may have sealed them with
    /// it. The report says what is left on older versions.
    async fn rotate_keys(&self, batch_size: u32) -> Result<RotationReport, StoreError> {
        let mut report = RotationReport::default();
        for _ in 0..rotation::MAX_PASSES {
            let (mut after, mut changed, mut without_key, mut unreadable) = (None, 0, 0, vec![]);
            loop {
                let batch = self.reseal_batch(after.as_ref(), batch_size.max(1)).await?;
                report.resealed += batch.resealed;
                changed += batch.changed_concurrently;
                without_key += batch.without_key;
                unreadable.extend(batch.unreadable);
                match batch.last {
                    Some(last) => after = Some(last),
                    None => break,
                }
                tracing::debug!(resealed = report.resealed, "re-sealing secrets");
            }
            report.changed_concurrently += changed;
            report.without_key = without_key;
            report.unreadable = unreadable;
            if changed == 0 {
                break;
            }
        }
        report.versions = self.key_versions().await?;
        report.current_version =
            report.versions.iter().find(|v| v.current).map_or(0, |v| v.version);
        Ok(report)
    }
}
