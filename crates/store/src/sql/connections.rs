//! [`ConnectionStore`]: connections and their sealed credentials. A write of several statements
//! runs in a [`Dialect::BEGIN_WRITE`] transaction and locks the row it changes before it reads
//! it — by the upsert itself, or by `SELECT … FOR UPDATE` where the dialect needs the row lock
//! — so a concurrent writer waits and then sees the committed result: the version fence in
//! `update_credentials` is never checked against a stale row.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::pages::{PageQuery, placeholders};
use super::secrets::delete_secrets;
use super::{Dialect, Sql, SqlStore, assembled, sql};
use crate::crypto::connection_binding;
use crate::health::Health;
use crate::listing::{ConnectionFilter, Cursor, Page, PageRequest};
use crate::model::{
    ConnectionDetails, ConnectionRecord, ConnectionStatus, ConnectionSummary, CredentialUpdate,
    DueCheck, ExpiringConnection, RefreshBackoff, Tags, refresh_spread_ppm,
};
use crate::rows::{self, Columns as _, nanos, parse_json, timestamp, to_json};
use crate::secret_rows::{CONNECTION, SCRIPT_STORAGE, SecretRow, record_binding};
use crate::{ConnectionStore, StoreError};

/// `check_due_at` of a connection whose check was never scheduled (the column's default).
const UNSCHEDULED: i64 = 0;

/// ` AND connector NOT IN ($first, …)` for `n` connectors to leave out; empty for none.
fn skip_connectors(n: usize, first: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!(" AND connector NOT IN ({})", list.join(", "))
}

/// The `connections` upsert; `$14` is the version a new row gets, and `on_conflict` what
/// happens to an existing row.
macro_rules! upsert_connection {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO connections (id, connector, integration, auth_method, config, status,
                label, end_user_id, end_user_email, end_user_display_name, tags, metadata,
                expires_at, version, created_at, updated_at, environment, health, health_state,
                refresh_spread)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20)
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
                    end_user_id = excluded.end_user_id,
                    end_user_email = excluded.end_user_email,
                    end_user_display_name = excluded.end_user_display_name,
                    tags = excluded.tags, metadata = excluded.metadata,
                    expires_at = excluded.expires_at,
                    version = connections.version + 1, created_at = excluded.created_at,
                    updated_at = excluded.updated_at, refresh_failures = 0,
                    refresh_retry_at = NULL, refresh_failing_since = NULL
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
        // One statement (one snapshot, one trip to the database): the connection's row once per
        // credential, joined the way `secret_select!` binds them. A read of a connection not in
        // a recent cache is on the proxy's path; four statements in a transaction made it cost
        // 2x the cached request.
        let rows = sql::<D>(concat!(
            "SELECT c.*, s.owner_kind, s.owner_id, s.field, s.key_version, s.aad_version, \
                    s.nonce, s.ciphertext, c.connector AS bound_connector, \
                    c.integration AS bound_integration, c.auth_method AS bound_auth_method, \
                    c.config AS bound_config \
             FROM (SELECT ",
            connection_columns!(),
            " FROM connections WHERE id = $1) c \
             LEFT JOIN secrets s ON s.owner_kind = 'connection' AND s.owner_id = c.id"
        ))
        .bind(id)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let mut credentials = BTreeMap::new();
        for row in &rows {
            if row.opt_text("field")?.is_none() {
                continue; // the connection has no credentials: its one row joined nothing
            }
            let secret = SecretRow::from_row(row)?;
            credentials.insert(secret.field.clone(), secret.open_credential(&self.keyring)?);
        }
        let summary = rows::connection(first, Vec::new())?;
        Ok(Some(rows::with_credentials(summary, credentials)))
    }

    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> Result<Page<ConnectionSummary>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let mut found = PageQuery::connections::<D>(filter)
            .page::<D>(connection_columns!(), "connections", page)
            .fetch_all(&mut tx)
            .await?;
        let more = found.len() > page.size() as usize;
        found.truncate(page.size() as usize);
        let ids = found.iter().map(|row| row.text("id")).collect::<Result<Vec<_>, _>>()?;
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !ids.is_empty() {
            let text = format!(
                "SELECT owner_id, field FROM secrets WHERE owner_kind = 'connection'
                 AND owner_id IN ({}) ORDER BY owner_id, field",
                placeholders::<D>(1, ids.len())
            );
            // Literal text and placeholders only.
            let mut query = sql::<D>(sqlx::AssertSqlSafe(text));
            for id in &ids {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut tx).await? {
                fields.entry(row.text("owner_id")?).or_default().push(row.text("field")?);
            }
        }
        tx.commit().await?;
        let items = found
            .iter()
            .zip(&ids)
            .map(|(row, id)| rows::connection(row, fields.remove(id).unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match items.last() {
            Some(last) if more => Some(
                Cursor::after(last.created_at, &last.id)
                    .map_err(|_| StoreError::Database("stored timestamp out of range".into()))?,
            ),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn update_connection_details(
        &self,
        id: &str,
        details: &ConnectionDetails,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row = sql::<D>(assembled(&[
            "SELECT version, end_user_id, end_user_email, end_user_display_name, tags, metadata,
                label FROM connections WHERE id = $1",
            D::FOR_UPDATE,
        ]))
        .bind(id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: CONNECTION, id: id.to_owned() })?;
        let version = row.int("version")? + 1;
        let tags = match &details.tags {
            Some(tags) => {
                write_tags::<D>(&mut tx, id, tags).await?;
                to_json(tags, "connection tags")?
            }
            None => row.text("tags")?,
        };
        let metadata = match &details.metadata {
            Some(metadata) => to_json(metadata, "connection metadata")?,
            None => row.text("metadata")?,
        };
        let (user_id, email, display_name) = match &details.end_user {
            Some(user) => (
                user.as_ref().map(|u| u.id.clone()),
                user.as_ref().and_then(|u| u.email.clone()),
                user.as_ref().and_then(|u| u.display_name.clone()),
            ),
            None => (
                row.opt_text("end_user_id")?,
                row.opt_text("end_user_email")?,
                row.opt_text("end_user_display_name")?,
            ),
        };
        let label = match &details.label {
            Some(label) => label.clone(),
            None => row.opt_text("label")?,
        };
        sql::<D>(
            "UPDATE connections SET tags = $1, metadata = $2, end_user_id = $3,
                end_user_email = $4, end_user_display_name = $5, label = $6, version = $7,
                updated_at = $8 WHERE id = $9",
        )
        .bind(tags)
        .bind(metadata)
        .bind(&user_id)
        .bind(&email)
        .bind(&display_name)
        .bind(&label)
        .bind(version)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn set_connection_health(&self, id: &str, health: &Health) -> Result<(), StoreError> {
        let updated =
            sql::<D>("UPDATE connections SET health = $1, health_state = $2 WHERE id = $3")
                .bind(to_json(health, "connection health")?)
                .bind(health.state.as_str())
                .bind(id)
                .execute(&mut *self.pool.acquire().await?)
                .await?;
        if updated == 0 {
            return Err(StoreError::NotFound { kind: CONNECTION, id: id.to_owned() });
        }
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sql::<D>("DELETE FROM connection_tags WHERE connection_id = $1")
            .bind(id)
            .execute(&mut tx)
            .await?;
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
                updated_at = $5, refresh_failures = 0, refresh_retry_at = NULL,
                refresh_failing_since = NULL WHERE id = $6",
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
        spread: std::time::Duration,
        now: OffsetDateTime,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ExpiringConnection>, StoreError> {
        // A connection is due `refresh_spread` millionths of `spread` before `before`: its due
        // time is `expires_at - refresh_spread * per_ppm`, all in integer nanoseconds.
        let per_ppm = i64::try_from(spread.as_nanos() / 1_000_000).unwrap_or(i64::MAX / 1_000_000);
        let widest = before + spread;
        let text = format!(
            "SELECT id, connector, expires_at, refresh_spread FROM connections
             WHERE status = 'ok' AND expires_at IS NOT NULL AND expires_at < $1
                AND expires_at - refresh_spread * $4 < $5
                AND (refresh_retry_at IS NULL OR refresh_retry_at <= $2){}
             ORDER BY expires_at - refresh_spread * $4, id LIMIT $3",
            skip_connectors(skip.len(), 6)
        );
        // Literal text and placeholders only.
        let mut query = sql::<D>(sqlx::AssertSqlSafe(text))
            .bind(nanos(widest)?)
            .bind(nanos(now)?)
            .bind(i64::from(limit))
            .bind(per_ppm)
            .bind(nanos(before)?);
        for connector in skip {
            query = query.bind(connector);
        }
        query
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(|row| {
                Ok(ExpiringConnection {
                    id: row.text("id")?,
                    connector: row.text("connector")?,
                    expires_at: row.opt_int("expires_at")?.map(timestamp).transpose()?,
                    spread: row.int("refresh_spread")? as f64 / 1_000_000.0,
                })
            })
            .collect()
    }

    async fn connections_due_for_check(
        &self,
        now: OffsetDateTime,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<DueCheck>, StoreError> {
        // `status <> 'needs_reauth'` as the partial index `connections_check_due` says it, so
        // both planners read the query from that index.
        let text = format!(
            "SELECT id, connector, check_due_at FROM connections
             WHERE status <> 'needs_reauth' AND check_due_at <= $1{}
             ORDER BY check_due_at LIMIT $2",
            skip_connectors(skip.len(), 3)
        );
        // Literal text and placeholders only.
        let mut query =
            sql::<D>(sqlx::AssertSqlSafe(text)).bind(nanos(now)?).bind(i64::from(limit));
        for connector in skip {
            query = query.bind(connector);
        }
        query
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(|row| {
                let due = row.int("check_due_at")?;
                Ok(DueCheck {
                    id: row.text("id")?,
                    connector: row.text("connector")?,
                    due_at: (due != UNSCHEDULED).then(|| timestamp(due)).transpose()?,
                })
            })
            .collect()
    }

    async fn claim_check(
        &self,
        id: &str,
        seen: Option<OffsetDateTime>,
        next: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let claimed = sql::<D>(
            "UPDATE connections SET check_due_at = $1 WHERE id = $2 AND check_due_at = $3",
        )
        .bind(nanos(next)?)
        .bind(id)
        .bind(seen.map(nanos).transpose()?.unwrap_or(UNSCHEDULED))
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(claimed > 0)
    }

    async fn schedule_checks(&self, due: &[(String, OffsetDateTime)]) -> Result<(), StoreError> {
        if due.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for (id, at) in due {
            sql::<D>("UPDATE connections SET check_due_at = $1 WHERE id = $2")
                .bind(nanos(*at)?)
                .bind(id)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn check_due_at(&self, id: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let row = sql::<D>("SELECT check_due_at FROM connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?;
        match row {
            Some(row) => {
                let due = row.int("check_due_at")?;
                (due != UNSCHEDULED).then(|| timestamp(due)).transpose()
            }
            None => Ok(None),
        }
    }

    async fn record_refresh_failure(
        &self,
        id: &str,
        now: OffsetDateTime,
        retry_at: &(dyn Fn(u32) -> OffsetDateTime + Send + Sync),
    ) -> Result<Option<RefreshBackoff>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row = sql::<D>(assembled(&[
            "SELECT refresh_failures, refresh_failing_since FROM connections WHERE id = $1",
            D::FOR_UPDATE,
        ]))
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let failures = u32::try_from(row.int("refresh_failures")?).unwrap_or(u32::MAX);
        let failures = failures.saturating_add(1);
        let retry_at = retry_at(failures);
        let failing_since = match row.opt_int("refresh_failing_since")? {
            Some(since) => timestamp(since)?,
            None => now,
        };
        sql::<D>(
            "UPDATE connections SET refresh_failures = $1, refresh_retry_at = $2,
                refresh_failing_since = $3 WHERE id = $4",
        )
        .bind(i64::from(failures))
        .bind(nanos(retry_at)?)
        .bind(nanos(failing_since)?)
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(Some(RefreshBackoff {
            failures,
            retry_at: Some(retry_at),
            failing_since: Some(failing_since),
        }))
    }

    async fn refresh_backoff(&self, id: &str) -> Result<Option<RefreshBackoff>, StoreError> {
        let row = sql::<D>(
            "SELECT refresh_failures, refresh_retry_at, refresh_failing_since FROM connections
                 WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RefreshBackoff {
            failures: u32::try_from(row.int("refresh_failures")?).unwrap_or(u32::MAX),
            retry_at: row.opt_int("refresh_retry_at")?.map(timestamp).transpose()?,
            failing_since: row.opt_int("refresh_failing_since")?.map(timestamp).transpose()?,
        }))
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Replaces all of a connection's credentials and tag rows; the caller holds its row locked.
    async fn write_credentials(
        &self,
        conn: &mut D::Connection,
        c: &ConnectionRecord,
    ) -> Result<(), StoreError> {
        write_tags::<D>(conn, &c.id, &c.tags).await?;
        delete_secrets::<D>(conn, CONNECTION, &c.id).await?;
        let binding = record_binding(c);
        for (field, value) in &c.credentials {
            self.write_credential(conn, &c.id, field, value, &binding).await?;
        }
        Ok(())
    }
}

/// Replaces a connection's rows in `connection_tags` (what tag filters search) with `tags`.
async fn write_tags<D: Dialect>(
    conn: &mut D::Connection,
    id: &str,
    tags: &Tags,
) -> Result<(), StoreError> {
    sql::<D>("DELETE FROM connection_tags WHERE connection_id = $1").bind(id).execute(conn).await?;
    for (key, value) in tags {
        sql::<D>("INSERT INTO connection_tags (connection_id, key, value) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(key)
            .bind(value)
            .execute(conn)
            .await?;
    }
    Ok(())
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
        .bind(c.end_user.as_ref().map(|u| u.id.as_str()))
        .bind(c.end_user.as_ref().and_then(|u| u.email.as_deref()))
        .bind(c.end_user.as_ref().and_then(|u| u.display_name.as_deref()))
        .bind(to_json(&c.tags, "connection tags")?)
        .bind(to_json(&c.metadata, "connection metadata")?)
        .bind(c.expires_at.map(nanos).transpose()?)
        .bind(version)
        .bind(nanos(c.created_at)?)
        .bind(nanos(c.updated_at)?)
        .bind(&c.environment)
        .bind(to_json(&c.health, "connection health")?)
        .bind(c.health.state.as_str())
        .bind(refresh_spread_ppm(&c.id)))
}
