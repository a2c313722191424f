//! [`WebhookStore`]: the webhook delivery log. A claim is one statement (in a write transaction)
//! that counts an attempt and moves the row's due time on as a lease; on PostgreSQL the rows it
//! picks are locked with `SKIP LOCKED`, so concurrent claims take different rows instead of
//! waiting for each other, and a row another claim has just moved on no longer matches.

use time::OffsetDateTime;

use super::pages::PageQuery;
use super::{Dialect, SqlStore, assembled, sql};
use crate::listing::{Cursor, Page, PageRequest};
use crate::rows::{Columns, nanos, timestamp};
use crate::webhooks::{AttemptOutcome, DeliveryFilter, DeliveryStatus, WebhookDelivery};
use crate::{StoreError, WebhookStore};

/// The `webhook_deliveries` columns [`delivery`] reads, as a literal for `concat!`.
macro_rules! delivery_columns {
    () => {
        "id, environment, event, connection_id, url, body, status, attempts, last_status, \
         last_error, created_at, next_attempt_at, delivered_at, updated_at"
    };
}

#[async_trait::async_trait]
impl<D: Dialect> WebhookStore for SqlStore<D> {
    async fn insert_webhook_delivery(&self, d: &WebhookDelivery) -> Result<(), StoreError> {
        let inserted = sql::<D>(concat!(
            "INSERT INTO webhook_deliveries (",
            delivery_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&d.id)
        .bind(&d.environment)
        .bind(&d.event)
        .bind(&d.connection_id)
        .bind(&d.url)
        .bind(&d.body)
        .bind(d.status.as_str())
        .bind(i64::from(d.attempts))
        .bind(d.last_status.map(i64::from))
        .bind(&d.last_error)
        .bind(nanos(d.created_at)?)
        .bind(d.next_attempt_at.map(nanos).transpose()?)
        .bind(d.delivered_at.map(nanos).transpose()?)
        .bind(nanos(d.updated_at)?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: "webhook delivery", id: d.id.clone() });
        }
        Ok(())
    }

    async fn claim_webhook_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // The outer conditions are checked again on the row as it is when the update reaches
        // it: a row another claim moved on meanwhile is left alone.
        let claimed = sql::<D>(assembled(&[
            // Materialized: the rows are picked once (PostgreSQL could otherwise run a
            // `LIMIT` subquery again per row it updates, and claim more than the limit).
            "WITH picked AS MATERIALIZED (
                SELECT id FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= $2
                ORDER BY next_attempt_at, id LIMIT $3",
            D::SKIP_LOCKED,
            ")
             UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1,
                updated_at = $2
             WHERE status = 'pending' AND next_attempt_at <= $2
                AND id IN (SELECT id FROM picked)
             RETURNING ",
            delivery_columns!(),
        ]))
        .bind(nanos(lease_until)?)
        .bind(nanos(now)?)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        let mut found = claimed.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn record_webhook_attempt(
        &self,
        id: &str,
        attempt: u32,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError> {
        let delivered_at = (outcome.status == DeliveryStatus::Delivered).then_some(outcome.at);
        let next = match outcome.status {
            DeliveryStatus::Pending => outcome.next_attempt_at.map(nanos).transpose()?,
            DeliveryStatus::Delivered | DeliveryStatus::Failed => None,
        };
        let recorded = sql::<D>(
            "UPDATE webhook_deliveries SET status = $1, url = $2, last_status = $3,
                last_error = $4, next_attempt_at = $5, delivered_at = $6, updated_at = $7
             WHERE id = $8 AND attempts = $9 AND status = 'pending'",
        )
        .bind(outcome.status.as_str())
        .bind(&outcome.url)
        .bind(outcome.last_status.map(i64::from))
        .bind(&outcome.last_error)
        .bind(next)
        .bind(delivered_at.map(nanos).transpose()?)
        .bind(nanos(outcome.at)?)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(recorded > 0)
    }

    async fn get_webhook_delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        sql::<D>(concat!("SELECT ", delivery_columns!(), " FROM webhook_deliveries WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?
            .as_ref()
            .map(delivery)
            .transpose()
    }

    async fn list_webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let mut found = PageQuery::deliveries(filter)
            .page_newest_first::<D>(delivery_columns!(), "webhook_deliveries", page)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        let more = found.len() > page.size() as usize;
        found.truncate(page.size() as usize);
        let items = found.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        let next = match items.last() {
            Some(last) if more => Some(
                Cursor::after(last.created_at, &last.id)
                    .map_err(|_| StoreError::Database("stored timestamp out of range".into()))?,
            ),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn retry_webhook_delivery(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let changed = sql::<D>(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1,
                delivered_at = NULL, updated_at = $1
             WHERE id = $2 AND status = 'failed'",
        )
        .bind(nanos(at)?)
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(changed > 0)
    }

    async fn trim_webhook_deliveries(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        sql::<D>(
            "DELETE FROM webhook_deliveries
             WHERE status IN ('delivered', 'failed') AND created_at < $1",
        )
        .bind(nanos(before)?)
        .execute(&mut *self.pool.acquire().await?)
        .await
    }
}

/// A delivery from its row (see `delivery_columns!`).
fn delivery(row: &impl Columns) -> Result<WebhookDelivery, StoreError> {
    let at = |column: &str| row.opt_int(column)?.map(timestamp).transpose();
    let status = row.text("status")?;
    Ok(WebhookDelivery {
        id: row.text("id")?,
        environment: row.text("environment")?,
        event: row.text("event")?,
        connection_id: row.opt_text("connection_id")?,
        url: row.text("url")?,
        body: row.text("body")?,
        status: status.parse().map_err(|e| StoreError::Database(format!("column status: {e}")))?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        last_status: row.opt_int("last_status")?.and_then(|s| u16::try_from(s).ok()),
        last_error: row.opt_text("last_error")?,
        created_at: timestamp(row.int("created_at")?)?,
        next_attempt_at: at("next_attempt_at")?,
        delivered_at: at("delivered_at")?,
        updated_at: timestamp(row.int("updated_at")?)?,
    })
}
