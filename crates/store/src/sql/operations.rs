//! [`OperationStore`]: the operation log. Batches go in as multi-row `INSERT`s in one
//! transaction; lists are keyset pages, newest first; trimming removes rows past the retention
//! and beyond the row cap, oldest first.

use time::OffsetDateTime;

use super::pages::{PageQuery, placeholders};
use super::{Dialect, SqlStore, sql};
use crate::listing::{Cursor, Page, PageRequest};
use crate::operations::{Operation, OperationFilter};
use crate::rows::{Columns, nanos, timestamp};
use crate::{OperationStore, StoreError};

/// The `operations` columns [`operation`] reads, in insert order, as a literal for `concat!`.
macro_rules! operation_columns {
    () => {
        "id, environment, created_at, kind, outcome, connection_id, integration, connector, \
         upstream_status, latency_us, error_code, message, method, host, path"
    };
}

/// Values per row of an insert.
const COLUMNS: usize = 15;
/// Rows per `INSERT` statement (well under both backends' parameter limits).
const ROWS_PER_STATEMENT: usize = 100;

#[async_trait::async_trait]
impl<D: Dialect> OperationStore for SqlStore<D> {
    async fn insert_operations(&self, operations: &[Operation]) -> Result<(), StoreError> {
        if operations.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for chunk in operations.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| format!("({})", placeholders::<D>(r * COLUMNS + 1, COLUMNS)))
                .collect();
            // Literal text and placeholders only; every value is bound below, in order.
            let text = format!(
                concat!("INSERT INTO operations (", operation_columns!(), ") VALUES {}"),
                rows.join(", ")
            );
            let mut query = sql::<D>(sqlx::AssertSqlSafe(text));
            for op in chunk {
                query = query
                    .bind(op.id.as_str())
                    .bind(op.environment.as_str())
                    .bind(nanos(op.at)?)
                    .bind(op.kind.as_str())
                    .bind(op.outcome.as_str())
                    .bind(&op.connection)
                    .bind(&op.integration)
                    .bind(&op.connector)
                    .bind(op.upstream_status.map(i64::from))
                    .bind(i64::try_from(op.latency_us).unwrap_or(i64::MAX))
                    .bind(&op.error_code)
                    .bind(&op.message)
                    .bind(&op.method)
                    .bind(&op.host)
                    .bind(&op.path);
            }
            query.execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_operations(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, StoreError> {
        let mut found = PageQuery::operations(filter)?
            .page_newest_first::<D>(operation_columns!(), "operations", page)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        let more = found.len() > page.size() as usize;
        found.truncate(page.size() as usize);
        let items = found.iter().map(operation).collect::<Result<Vec<_>, _>>()?;
        let next = match items.last() {
            Some(last) if more => Some(
                Cursor::after(last.at, &last.id)
                    .map_err(|_| StoreError::Database("stored timestamp out of range".into()))?,
            ),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn trim_operations(
        &self,
        before: OffsetDateTime,
        max_rows: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut removed = sql::<D>("DELETE FROM operations WHERE created_at < $1")
            .bind(nanos(before)?)
            .execute(&mut conn)
            .await?;
        // Beyond the cap: the row after the newest `max_rows` and everything older.
        let offset = i64::try_from(max_rows).unwrap_or(i64::MAX);
        removed += sql::<D>(
            "DELETE FROM operations WHERE created_at <= (SELECT created_at FROM operations
                ORDER BY created_at DESC LIMIT 1 OFFSET $1)",
        )
        .bind(offset)
        .execute(&mut conn)
        .await?;
        Ok(removed)
    }
}

/// An operation from its row (see `operation_columns!`).
fn operation(row: &impl Columns) -> Result<Operation, StoreError> {
    let parse = |column: &str| -> Result<String, StoreError> { row.text(column) };
    Ok(Operation {
        id: row.text("id")?,
        environment: row.text("environment")?,
        at: timestamp(row.int("created_at")?)?,
        kind: parse("kind")?
            .parse()
            .map_err(|e| StoreError::Database(format!("column kind: {e}")))?,
        outcome: parse("outcome")?
            .parse()
            .map_err(|e| StoreError::Database(format!("column outcome: {e}")))?,
        connection: row.opt_text("connection_id")?,
        integration: row.opt_text("integration")?,
        connector: row.opt_text("connector")?,
        upstream_status: row.opt_int("upstream_status")?.and_then(|s| u16::try_from(s).ok()),
        latency_us: u64::try_from(row.int("latency_us")?).unwrap_or_default(),
        error_code: row.opt_text("error_code")?,
        message: row.opt_text("message")?,
        method: row.opt_text("method")?,
        host: row.opt_text("host")?,
        path: row.opt_text("path")?,
    })
}
