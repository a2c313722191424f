//! The SQLite backend: the embedded default. One file in WAL mode; every secret sealed into the
//! `secrets` table, one row per field, bound to its owner and field by associated data.

#[macro_use]
mod rows;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use latchkey_core::Secret;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{Connection as _, Row as _};
use time::OffsetDateTime;

use crate::crypto::{Keyring, aad};
use crate::model::{
    ConnectionRecord, ConnectionStatus, ConnectionSummary, CustomConnector, IntegrationRecord,
};
use crate::{Store, StoreError};
use rows::{SecretRow, nanos, timestamp};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const CONNECTION: &str = "connection";
const INTEGRATION: &str = "integration";
const CLIENT_SECRET: &str = "client_secret";
/// The plaintext sealed into `keyring_check` for each key version.
const KEY_CHECK: &[u8] = b"latchkey keyring check";

/// A [`Store`] on one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    keyring: Keyring,
}

impl SqliteStore {
    /// Opens (creating it if missing, with mode 0600 on Unix) the database at `path`, brings
    /// its schema up to date and checks that `keyring` opens it: [`StoreError::WrongKey`] if the
    /// database was encrypted with another key. The parent directory must exist.
    pub async fn open(path: &Path, keyring: Keyring) -> Result<Self, StoreError> {
        create_private_file(path).await?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Self::init(pool, keyring).await
    }

    /// A private in-memory database on a single connection, for tests.
    pub async fn open_in_memory(keyring: Keyring) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::init(pool, keyring).await
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
        let found = if initialised {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM keyring_check) OR EXISTS (SELECT 1 FROM secrets)",
            )
            .fetch_one(&mut conn)
            .await?
        } else {
            false
        };
        conn.close().await?;
        Ok(found)
    }

    /// Closes the pool, waiting for connections to finish (which checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn init(pool: SqlitePool, keyring: Keyring) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await?;
        let store = Self { pool, keyring };
        store.check_keyring().await?;
        tracing::debug!(key_version = store.keyring.current_version(), "sqlite store opened");
        Ok(store)
    }

    /// Verifies the key check of every version the keyring holds, falling back to one stored
    /// secret when there is no check row; then records a check for the current version.
    async fn check_keyring(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let checks: Vec<SecretRow> = sqlx::query(
            "SELECT 'keyring' AS owner_kind, 'check' AS owner_id, CAST(key_version AS TEXT) AS field,
                    key_version, nonce, ciphertext
             FROM keyring_check",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(SecretRow::from_row)
        .collect::<Result<_, _>>()?;
        // Without a check row (a database from before the check existed, or one edited by
        // hand), one stored secret serves as the check.
        let evidence = if checks.is_empty() {
            sqlx::query(
                "SELECT owner_kind, owner_id, field, key_version, nonce, ciphertext
                 FROM secrets LIMIT 1",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(SecretRow::from_row)
            .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let mut verified = false;
        for row in checks.iter().chain(&evidence) {
            let sealed = row.sealed()?;
            if !self.keyring.has_version(sealed.key_version) {
                continue;
            }
            let plain = self.keyring.open(&sealed, &row.aad()).map_err(|_| StoreError::WrongKey)?;
            if row.owner_kind == "keyring" && plain.as_slice() != KEY_CHECK {
                return Err(StoreError::WrongKey);
            }
            verified = true;
        }
        let anything_to_verify = !checks.is_empty() || !evidence.is_empty();
        if anything_to_verify && !verified {
            // None of the ring's key versions was ever used here.
            return Err(StoreError::WrongKey);
        }
        let current = self.keyring.current_version();
        if !checks.iter().any(|row| row.key_version == i64::from(current)) {
            let sealed = self.keyring.seal(KEY_CHECK, &check_aad(current));
            sqlx::query(
                "INSERT INTO keyring_check (key_version, nonce, ciphertext) VALUES (?, ?, ?)",
            )
            .bind(i64::from(current))
            .bind(sealed.nonce.as_slice())
            .bind(sealed.ciphertext)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Seals `value` for (kind, id, field) and inserts or replaces its row.
    async fn write_secret(
        &self,
        conn: &mut SqliteConnection,
        kind: &str,
        id: &str,
        field: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        let sealed = self.keyring.seal(value.expose().as_bytes(), &aad(kind, id, field));
        sqlx::query(
            "INSERT INTO secrets (owner_kind, owner_id, field, key_version, nonce, ciphertext)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (owner_kind, owner_id, field) DO UPDATE SET
                key_version = excluded.key_version,
                nonce = excluded.nonce,
                ciphertext = excluded.ciphertext",
        )
        .bind(kind)
        .bind(id)
        .bind(field)
        .bind(i64::from(sealed.key_version))
        .bind(sealed.nonce.as_slice())
        .bind(sealed.ciphertext)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Reads and opens every secret of `kind`, or only those of one owner.
    async fn read_secrets(
        &self,
        conn: &mut SqliteConnection,
        kind: &str,
        id: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Secret>>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner_kind, owner_id, field, key_version, nonce, ciphertext FROM secrets
             WHERE owner_kind = ?1 AND (?2 IS NULL OR owner_id = ?2)",
        )
        .bind(kind)
        .bind(id)
        .fetch_all(conn)
        .await?;
        let mut out: BTreeMap<String, BTreeMap<String, Secret>> = BTreeMap::new();
        for row in &rows {
            let row = SecretRow::from_row(row)?;
            let secret = row.open(&self.keyring)?;
            out.entry(row.owner_id).or_default().insert(row.field, secret);
        }
        Ok(out)
    }

    async fn write_connection_row(
        conn: &mut SqliteConnection,
        c: &ConnectionRecord,
        version: i64,
    ) -> Result<(), StoreError> {
        let config = serde_json::to_string(&c.config)
            .map_err(|_| StoreError::Database("cannot encode connection config".into()))?;
        sqlx::query(
            "INSERT INTO connections (id, connector, integration, auth_method, config, status,
                label, end_user_id, expires_at, version, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                connector = excluded.connector, integration = excluded.integration,
                auth_method = excluded.auth_method, config = excluded.config,
                status = excluded.status, label = excluded.label,
                end_user_id = excluded.end_user_id, expires_at = excluded.expires_at,
                version = excluded.version, created_at = excluded.created_at,
                updated_at = excluded.updated_at",
        )
        .bind(&c.id)
        .bind(&c.connector)
        .bind(&c.integration)
        .bind(&c.auth_method)
        .bind(config)
        .bind(c.status.as_str())
        .bind(&c.label)
        .bind(&c.end_user_id)
        .bind(c.expires_at.map(nanos).transpose()?)
        .bind(version)
        .bind(nanos(c.created_at)?)
        .bind(nanos(c.updated_at)?)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Writes a connection row and replaces all its secrets; the caller holds a transaction.
    async fn write_connection(
        &self,
        conn: &mut SqliteConnection,
        c: &ConnectionRecord,
        version: i64,
    ) -> Result<(), StoreError> {
        Self::write_connection_row(conn, c, version).await?;
        delete_secrets(conn, CONNECTION, &c.id).await?;
        for (field, value) in &c.credentials {
            self.write_secret(conn, CONNECTION, &c.id, field, value).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_integration(&self, i: &IntegrationRecord) -> Result<(), StoreError> {
        let scopes = serde_json::to_string(&i.scopes)
            .map_err(|_| StoreError::Database("cannot encode integration scopes".into()))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO integrations (id, connector, client_id, scopes, settings, created_at,
                updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                connector = excluded.connector, client_id = excluded.client_id,
                scopes = excluded.scopes, settings = excluded.settings,
                created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(&i.id)
        .bind(&i.connector)
        .bind(&i.client_id)
        .bind(scopes)
        .bind(i.settings.to_string())
        .bind(nanos(i.created_at)?)
        .bind(nanos(i.updated_at)?)
        .execute(&mut *tx)
        .await?;
        delete_secrets(&mut tx, INTEGRATION, &i.id).await?;
        if let Some(secret) = &i.client_secret {
            self.write_secret(&mut tx, INTEGRATION, &i.id, CLIENT_SECRET, secret).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_integration(&self, id: &str) -> Result<Option<IntegrationRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut secrets = self.read_secrets(&mut tx, INTEGRATION, Some(id)).await?;
        tx.commit().await?;
        let own = secrets.remove(id).unwrap_or_default();
        rows::integration(&row, own).map(Some)
    }

    async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut secrets = self.read_secrets(&mut tx, INTEGRATION, None).await?;
        tx.commit().await?;
        found
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                rows::integration(row, secrets.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError> {
        delete_owner(&self.pool, "DELETE FROM integrations WHERE id = ?", INTEGRATION, id).await
    }

    async fn insert_connection(&self, c: &ConnectionRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if stored_version(&mut tx, &c.id).await?.is_some() {
            return Err(StoreError::Conflict { kind: CONNECTION, id: c.id.clone() });
        }
        self.write_connection(&mut tx, c, 1).await?;
        tx.commit().await?;
        Ok(1)
    }

    async fn put_connection(&self, c: &ConnectionRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version = stored_version(&mut tx, &c.id).await?.map_or(1, |v| v + 1);
        self.write_connection(&mut tx, c, version).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn get_connection(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut secrets = self.read_secrets(&mut tx, CONNECTION, Some(id)).await?;
        tx.commit().await?;
        let summary = rows::connection(&row, Vec::new())?;
        Ok(Some(rows::with_credentials(summary, secrets.remove(id).unwrap_or_default())))
    }

    async fn list_connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections ORDER BY created_at, id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT owner_id, field FROM secrets WHERE owner_kind = ? ORDER BY owner_id, field",
        )
        .bind(CONNECTION)
        .fetch_all(&mut *tx)
        .await?
        {
            fields.entry(row.try_get("owner_id")?).or_default().push(row.try_get("field")?);
        }
        tx.commit().await?;
        found
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                rows::connection(row, fields.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        delete_owner(&self.pool, "DELETE FROM connections WHERE id = ?", CONNECTION, id).await
    }

    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE connections SET status = ?, version = version + 1, updated_at = ?
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_credentials(
        &self,
        id: &str,
        expected_version: i64,
        credentials: &BTreeMap<String, Secret>,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let found = stored_version(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound { kind: CONNECTION, id: id.to_owned() })?;
        if found != expected_version {
            return Err(StoreError::VersionConflict {
                id: id.to_owned(),
                expected: expected_version,
                found,
            });
        }
        for (field, value) in credentials {
            self.write_secret(&mut tx, CONNECTION, id, field, value).await?;
        }
        let version = found + 1;
        sqlx::query(
            "UPDATE connections SET expires_at = ?, version = ?, updated_at = ? WHERE id = ?",
        )
        .bind(expires_at.map(nanos).transpose()?)
        .bind(version)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn put_custom_connector(&self, id: &str, source: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO custom_connectors (id, source, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET source = excluded.source,
                updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(source)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_custom_connectors(&self) -> Result<Vec<CustomConnector>, StoreError> {
        sqlx::query("SELECT id, source, updated_at FROM custom_connectors ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(CustomConnector {
                    id: row.try_get("id")?,
                    source: row.try_get("source")?,
                    updated_at: timestamp(row.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    async fn delete_custom_connector(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM custom_connectors WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Associated data of the key check for one key version.
fn check_aad(version: u32) -> Vec<u8> {
    aad("keyring", "check", &version.to_string())
}

async fn stored_version(conn: &mut SqliteConnection, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT version FROM connections WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

async fn delete_secrets(
    conn: &mut SqliteConnection,
    kind: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM secrets WHERE owner_kind = ? AND owner_id = ?")
        .bind(kind)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes an owner's row with `sql` and all its secrets in one transaction.
async fn delete_owner(
    pool: &SqlitePool,
    sql: &'static str,
    kind: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    delete_secrets(&mut tx, kind, id).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
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
