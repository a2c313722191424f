//! [`ConsoleStore`]: the operator console's sessions, and the grouped counts of its overview.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Dialect, SqlStore, sql};
use crate::console::{ConsoleSessionRecord, HealthCount, OperationBucket};
use crate::rows::{Columns, nanos, timestamp};
use crate::{ConsoleStore, StoreError};

/// The `console_sessions` columns [`session`] reads, in insert order, for `concat!`.
macro_rules! console_session_columns {
    () => {
        "id_hash, actor_id, actor_name, environment, bound, created_at, expires_at"
    };
}

#[async_trait::async_trait]
impl<D: Dialect> ConsoleStore for SqlStore<D> {
    async fn create_console_session(&self, s: &ConsoleSessionRecord) -> Result<(), StoreError> {
        let inserted = sql::<D>(concat!(
            "INSERT INTO console_sessions (",
            console_session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        ))
        .bind(&s.id_hash)
        .bind(&s.actor_id)
        .bind(&s.actor_name)
        .bind(&s.environment)
        .bind(&s.bound)
        .bind(nanos(s.created_at)?)
        .bind(nanos(s.expires_at)?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        if inserted == 0 {
            // The digest, not the id: the id is a credential.
            return Err(StoreError::Conflict { kind: "console session", id: s.id_hash.clone() });
        }
        Ok(())
    }

    async fn console_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        sql::<D>(concat!(
            "SELECT ",
            console_session_columns!(),
            " FROM console_sessions WHERE id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?
        .as_ref()
        .map(session)
        .transpose()
    }

    async fn set_console_session_environment(
        &self,
        id_hash: &str,
        environment: &str,
    ) -> Result<bool, StoreError> {
        let changed = sql::<D>("UPDATE console_sessions SET environment = $1 WHERE id_hash = $2")
            .bind(environment)
            .bind(id_hash)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(changed > 0)
    }

    async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sql::<D>("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn purge_console_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        sql::<D>("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(nanos(now)?)
            .execute(&mut *self.pool.acquire().await?)
            .await
    }

    async fn connection_health_counts(
        &self,
        environment: &str,
    ) -> Result<Vec<HealthCount>, StoreError> {
        sql::<D>(
            "SELECT integration, health_state, COUNT(*) AS n FROM connections
             WHERE environment = $1 GROUP BY integration, health_state
             ORDER BY integration, health_state",
        )
        .bind(environment)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?
        .iter()
        .map(|row| {
            Ok(HealthCount {
                integration: row.opt_text("integration")?,
                health: row.text("health_state")?,
                count: u64::try_from(row.int("n")?).unwrap_or(0),
            })
        })
        .collect()
    }

    async fn operation_buckets(
        &self,
        environment: &str,
        kind: &str,
        since: OffsetDateTime,
        bucket: Duration,
    ) -> Result<Vec<OperationBucket>, StoreError> {
        let width = i64::try_from(bucket.as_nanos()).unwrap_or(i64::MAX).max(1);
        // Integer division on both databases: each row's bucket number from `since`.
        sql::<D>(
            "SELECT (created_at - $1) / $2 AS bucket, outcome, COUNT(*) AS n FROM operations
             WHERE environment = $3 AND kind = $4 AND created_at >= $1
             GROUP BY (created_at - $1) / $2, outcome ORDER BY bucket, outcome",
        )
        .bind(nanos(since)?)
        .bind(width)
        .bind(environment)
        .bind(kind)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?
        .iter()
        .map(|row| {
            Ok(OperationBucket {
                bucket: u64::try_from(row.int("bucket")?).unwrap_or(0),
                outcome: row.text("outcome")?,
                count: u64::try_from(row.int("n")?).unwrap_or(0),
            })
        })
        .collect()
    }
}

/// A session from its row (see `console_session_columns!`).
fn session(row: &impl Columns) -> Result<ConsoleSessionRecord, StoreError> {
    Ok(ConsoleSessionRecord {
        id_hash: row.text("id_hash")?,
        actor_id: row.text("actor_id")?,
        actor_name: row.text("actor_name")?,
        environment: row.text("environment")?,
        bound: row.opt_text("bound")?,
        created_at: timestamp(row.int("created_at")?)?,
        expires_at: timestamp(row.int("expires_at")?)?,
    })
}
