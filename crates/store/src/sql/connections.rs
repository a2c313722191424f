//! [`ConnectionStore`]: connections and their sealed credentials. A write of several statements
//! runs in a [`Dialect::BEGIN_WRITE`] transaction and locks the row it changes before it reads
//! it — by the upsert itself, or by `SELECT … FOR UPDATE` where the dialect needs the row lock
//! — so a concurrent writer waits and then sees the committed result: the version fence in
//! `update_credentials` is never checked against a stale row.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::secrets::delete_secrets;
use super::{Dialect, Sql, SqlStore, assembled, sql};
use crate::crypto::connection_binding;
use crate::model::{ConnectionRecord, ConnectionStatus, ConnectionSummary, CredentialUpdate};
use crate::rows::{self, Columns as _, nanos, parse_json, to_json};
use crate::secret_rows::{CONNECTION, SCRIPT_STORAGE, record_binding};
use crate::{ConnectionStore, StoreError};

/// The `connections` upsert; `$10` is the version a new row gets, and `on_conflict` what
/// happens to an existing row.
macro_rules! upsert_connection {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO connections (id, connector, integration, auth_method, config, status,
                label, end_user_id, expires_at, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO ",
            $on_conflict
        )
    };
}

#[async_trait::async_trait]
impl<D: Dialect> ConnectionStore for SqlStore<D> {
    async fn insert_connection(&self, c: &ConnectionRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let inserted = bind_connection(sql::<D>(upsert_connection!("NOTHING")), c, 1)?
            .execute(&mut tx)
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: CONNECTION, id: c.id.clone() });
        }
        self.write_credentials(&mut tx, c).await?;
        tx.commit().await?;
        Ok(1)
    }

    async fn insert_connections(
        &self,
        connections: &[ConnectionRecord],
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let mut inserted = Vec::with_capacity(connections.len());
        for c in connections {
            let rows = bind_connection(sql::<D>(upsert_connection!("NOTHING")), c, 1)?
                .execute(&mut tx)
                .await?;
            if rows > 0 {
                self.write_credentials(&mut tx, c).await?;
            }
            inserted.push(rows > 0);
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn put_connection(&self, c: &ConnectionRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let version = bind_connection(
            sql::<D>(upsert_connection!(
                "UPDATE SET
                    connector = excluded.connector, integration = excluded.integration,
                    auth_method = excluded.auth_method, config = excluded.config,
                    status = excluded.status, label = excluded.label,
                    end_user_id = excluded.end_user_id, expires_at = excluded.expires_at,
                    version = connections.version + 1, created_at = excluded.created_at,
                    updated_at = excluded.updated_at
                 RETURNING version"
            )),
            c,
            1,
        )?
        .fetch_one(&mut tx)
        .await?
        .int("version")?;
        self.write_credentials(&mut tx, c).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn get_connection(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let row =
            sql::<D>(concat!("SELECT ", connection_columns!(), " FROM connections WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut tx)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let credentials = self.read_credentials(&mut tx, id).await?;
        tx.commit().await?;
        let summary = rows::connection(&row, Vec::new())?;
        Ok(Some(rows::with_credentials(summary, credentials)))
    }

    async fn list_connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let found = sql::<D>(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections ORDER BY created_at, id"
        ))
        .fetch_all(&mut tx)
        .await?;
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sql::<D>(
            "SELECT owner_id, field FROM secrets WHERE owner_kind = $1 ORDER BY owner_id, field",
        )
        .bind(CONNECTION)
        .fetch_all(&mut tx)
        .await?
        {
            fields.entry(row.text("owner_id")?).or_default().push(row.text("field")?);
        }
        tx.commit().await?;
        found
            .iter()
            .map(|row| rows::connection(row, fields.remove(&row.text("id")?).unwrap_or_default()))
            .collect()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let deleted =
            sql::<D>("DELETE FROM connections WHERE id = $1").bind(id).execute(&mut tx).await?;
        delete_secrets::<D>(&mut tx, CONNECTION, id).await?;
        delete_secrets::<D>(&mut tx, SCRIPT_STORAGE, id).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError> {
        let changed = sql::<D>(
            "UPDATE connections SET status = $1, version = version + 1, updated_at = $2
             WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(changed > 0)
    }

    async fn update_credentials(
        &self,
        id: &str,
        expected_version: i64,
        update: &CredentialUpdate,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // The lock is held to commit: a second refresher waits here, then reads the version
        // the first one wrote.
        let row = sql::<D>(assembled(&[
            "SELECT version, connector, integration, auth_method, config, status
             FROM connections WHERE id = $1",
            D::FOR_UPDATE,
        ]))
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: CONNECTION, id: id.to_owned() })?;
        let found = row.int("version")?;
        if found != expected_version {
            return Err(StoreError::VersionConflict {
                id: id.to_owned(),
                expected: expected_version,
                found,
            });
        }
        let old_config: BTreeMap<String, String> = parse_json(&row.text("config")?, "config")?;
        let mut config = old_config.clone();
        config.extend(update.config.clone());
        let binding = connection_binding(
            &row.text("connector")?,
            row.opt_text("integration")?.as_deref(),
            &row.text("auth_method")?,
            &config,
        );
        // Credentials are bound to the config: when it changes, the ones kept are re-sealed
        // with the new binding in this transaction (and must open under the old one first).
        let mut credentials = if config == old_config {
            BTreeMap::new()
        } else {
            self.read_credentials(&mut tx, id).await?
        };
        credentials.extend(update.credentials.clone());
        for (field, value) in &credentials {
            self.write_credential(&mut tx, id, field, value, &binding).await?;
        }
        let status = match update.status {
            Some(status) => status.as_str().to_owned(),
            None => row.text("status")?,
        };
        let version = found + 1;
        sql::<D>(
            "UPDATE connections SET expires_at = $1, config = $2, status = $3, version = $4,
                updated_at = $5 WHERE id = $6",
        )
        .bind(update.expires_at.map(nanos).transpose()?)
        .bind(to_json(&config, "config")?)
        .bind(status)
        .bind(version)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn connections_expiring(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        sql::<D>(
            "SELECT id FROM connections WHERE status = 'ok' AND expires_at IS NOT NULL
                AND expires_at < $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(nanos(before)?)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?
        .iter()
        .map(|row| row.text("id"))
        .collect()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Replaces all of a connection's credentials; the caller holds its row locked.
    async fn write_credentials(
        &self,
        conn: &mut D::Connection,
        c: &ConnectionRecord,
    ) -> Result<(), StoreError> {
        delete_secrets::<D>(conn, CONNECTION, &c.id).await?;
        let binding = record_binding(c);
        for (field, value) in &c.credentials {
            self.write_credential(conn, &c.id, field, value, &binding).await?;
        }
        Ok(())
    }
}

/// Binds a connection's columns to `upsert_connection!`, with `version` for a new row.
fn bind_connection<D: Dialect>(
    query: Sql<D>,
    c: &ConnectionRecord,
    version: i64,
) -> Result<Sql<D>, StoreError> {
    Ok(query
        .bind(&c.id)
        .bind(&c.connector)
        .bind(&c.integration)
        .bind(&c.auth_method)
        .bind(to_json(&c.config, "connection config")?)
        .bind(c.status.as_str())
        .bind(&c.label)
        .bind(&c.end_user_id)
        .bind(c.expires_at.map(nanos).transpose()?)
        .bind(version)
        .bind(nanos(c.created_at)?)
        .bind(nanos(c.updated_at)?))
}
