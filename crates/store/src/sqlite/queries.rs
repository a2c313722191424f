//! The [`Store`] operations on SQLite. A write of several statements runs in a `BEGIN IMMEDIATE`
//! transaction, so the writer holds the write lock before it reads what it will change (no lock
//! upgrade, hence no `SQLITE_BUSY` deadlock between two writers and no lost version bump).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use super::secrets::{
    self, delete_secrets, read_credentials, read_secrets, write_credential, write_secret,
};
use super::{SqliteStore, flows};
use crate::crypto::Keyring;
use crate::crypto::connection_binding;
use crate::model::{
    ConnectSession, ConnectionRecord, ConnectionStatus, ConnectionSummary, CredentialUpdate,
    CustomConnector, IntegrationRecord, OAuthState, SessionStatus,
};
use crate::rotation::{KeyVersion, ResealBatch, SecretRowKey};
use crate::rows::{self, SessionKey, nanos, parse_json, to_json};
use crate::secret_rows::{
    CLIENT_SECRET, CONNECTION, INTEGRATION, SCRIPT_STORAGE, SecretRow, record_binding,
};
use crate::{Store, StoreError};

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_integration(&self, i: &IntegrationRecord) -> Result<(), StoreError> {
        let scopes = to_json(&i.scopes, "integration scopes")?;
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
            write_secret(&mut tx, INTEGRATION, &i.id, CLIENT_SECRET, secret, &self.keyring).await?;
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
        let mut secrets = read_secrets(&mut tx, INTEGRATION, Some(id), &self.keyring).await?;
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
        let mut secrets = read_secrets(&mut tx, INTEGRATION, None, &self.keyring).await?;
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
        write_connection(&mut tx, &self.keyring, c, 1).await?;
        tx.commit().await?;
        Ok(1)
    }

    async fn put_connection(&self, c: &ConnectionRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version = stored_version(&mut tx, &c.id).await?.map_or(1, |v| v + 1);
        write_connection(&mut tx, &self.keyring, c, version).await?;
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
        let credentials = read_credentials(&mut tx, id, &self.keyring).await?;
        tx.commit().await?;
        let summary = rows::connection(&row, Vec::new())?;
        Ok(Some(rows::with_credentials(summary, credentials)))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done =
            sqlx::query("DELETE FROM connections WHERE id = ?").bind(id).execute(&mut *tx).await?;
        delete_secrets(&mut tx, CONNECTION, id).await?;
        delete_secrets(&mut tx, SCRIPT_STORAGE, id).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
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
        update: &CredentialUpdate,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "SELECT version, connector, integration, auth_method, config, status
             FROM connections WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: CONNECTION, id: id.to_owned() })?;
        let found: i64 = row.try_get("version")?;
        if found != expected_version {
            return Err(StoreError::VersionConflict {
                id: id.to_owned(),
                expected: expected_version,
                found,
            });
        }
        let old_config: BTreeMap<String, String> =
            parse_json(row.try_get::<&str, _>("config")?, "config")?;
        let mut config = old_config.clone();
        config.extend(update.config.clone());
        let binding = connection_binding(
            row.try_get("connector")?,
            row.try_get("integration")?,
            row.try_get("auth_method")?,
            &config,
        );
        // Credentials are bound to the config: when it changes, the ones kept are re-sealed
        // with the new binding in this transaction (and must open under the old one first).
        let mut credentials = if config == old_config {
            BTreeMap::new()
        } else {
            read_credentials(&mut tx, id, &self.keyring).await?
        };
        credentials.extend(update.credentials.clone());
        for (field, value) in &credentials {
            write_credential(&mut tx, id, field, value, &binding, &self.keyring).await?;
        }
        let status: String = match update.status {
            Some(status) => status.as_str().to_owned(),
            None => row.try_get("status")?,
        };
        let version = found + 1;
        sqlx::query(
            "UPDATE connections SET expires_at = ?, config = ?, status = ?, version = ?,
                updated_at = ? WHERE id = ?",
        )
        .bind(update.expires_at.map(nanos).transpose()?)
        .bind(to_json(&config, "config")?)
        .bind(status)
        .bind(version)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn connections_expiring(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM connections WHERE status = 'ok' AND expires_at IS NOT NULL
                AND expires_at < ? ORDER BY expires_at LIMIT ?",
        )
        .bind(nanos(before)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError> {
        flows::create_connect_session(&self.pool, session).await
    }

    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        flows::connect_session(&self.pool, SessionKey::Id, id).await
    }

    async fn find_connect_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError> {
        flows::connect_session(&self.pool, SessionKey::TokenHash, token_hash).await
    }

    async fn start_connect_session(&self, id: &str) -> Result<bool, StoreError> {
        flows::start_connect_session(&self.pool, id).await
    }

    async fn finish_connect_session(
        &self,
        id: &str,
        status: SessionStatus,
        connection: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        flows::finish_connect_session(&self.pool, id, status, connection, error).await
    }

    async fn put_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError> {
        flows::put_oauth_state(&self.pool, state, &self.keyring).await
    }

    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError> {
        flows::take_oauth_state(&self.pool, state_hash, &self.keyring).await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        flows::try_lock(&self.pool, name, holder, ttl).await
    }

    async fn renew_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        flows::renew_lock(&self.pool, name, holder, ttl).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        flows::unlock(&self.pool, name, holder).await
    }

    async fn locks_named(
        &self,
        prefix: &str,
        expired_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        flows::locks_named(&self.pool, prefix, expired_only).await
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
            .map(rows::custom_connector)
            .collect()
    }

    async fn delete_custom_connector(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM custom_connectors WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn script_value(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<Secret>, StoreError> {
        let row = sqlx::query(concat!(
            secret_select!(),
            "WHERE owner_kind = ? AND owner_id = ? AND field = ?"
        ))
        .bind(SCRIPT_STORAGE)
        .bind(connection)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| SecretRow::from_row(&row)?.open(&self.keyring)).transpose()
    }

    async fn put_script_value(
        &self,
        connection: &str,
        key: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write_secret(&mut conn, SCRIPT_STORAGE, connection, key, value, &self.keyring).await
    }

    async fn delete_script_value(&self, connection: &str, key: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM secrets WHERE owner_kind = ? AND owner_id = ? AND field = ?")
                .bind(SCRIPT_STORAGE)
                .bind(connection)
                .bind(key)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn script_keys(&self, connection: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT field FROM secrets WHERE owner_kind = ? AND owner_id = ? ORDER BY field",
        )
        .bind(SCRIPT_STORAGE)
        .bind(connection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("field")?)).collect()
    }

    async fn key_versions(&self) -> Result<Vec<KeyVersion>, StoreError> {
        secrets::key_versions(&self.pool, &self.keyring).await
    }

    async fn reseal_batch(
        &self,
        after: Option<&SecretRowKey>,
        limit: u32,
    ) -> Result<ResealBatch, StoreError> {
        secrets::reseal_batch(&self.pool, &self.keyring, after, limit).await
    }

    async fn retire_old_keys(&self) -> Result<Vec<u32>, StoreError> {
        secrets::retire_old_keys(&self.pool, &self.keyring).await
    }
}

/// Inserts or replaces a connection row (not its secrets) at `version`.
async fn write_connection_row(
    conn: &mut SqliteConnection,
    c: &ConnectionRecord,
    version: i64,
) -> Result<(), StoreError> {
    let config = to_json(&c.config, "connection config")?;
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
    conn: &mut SqliteConnection,
    keyring: &Keyring,
    c: &ConnectionRecord,
    version: i64,
) -> Result<(), StoreError> {
    write_connection_row(conn, c, version).await?;
    delete_secrets(conn, CONNECTION, &c.id).await?;
    let binding = record_binding(c);
    for (field, value) in &c.credentials {
        write_credential(conn, &c.id, field, value, &binding, keyring).await?;
    }
    Ok(())
}

/// The connection's current version, if it exists.
async fn stored_version(conn: &mut SqliteConnection, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT version FROM connections WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await?)
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
