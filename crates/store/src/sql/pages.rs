//! Filtered keyset pages: the `SELECT … WHERE … ORDER BY created_at, id LIMIT n` of the list
//! methods, assembled from the conditions a filter holds. Only conditions that are given are
//! written, so each combination is a plain conjunction the planner matches to an index (a
//! catch-all `($1 IS NULL OR col = $1)` would keep it from using any).

use std::borrow::Cow;

use super::{Dialect, Sql, Value, sql};
use crate::StoreError;
use crate::listing::{ConnectionFilter, Cursor, PageRequest};
use crate::operations::OperationFilter;
use crate::rows::nanos;
use crate::webhooks::DeliveryFilter;

/// A `SELECT` whose conditions and parameters are added one by one. Its text holds only
/// literal pieces and `$N` placeholders that this builder numbers; every value is bound.
pub(crate) struct PageQuery<'v> {
    conditions: Vec<String>,
    values: Vec<Value<'v>>,
}

impl<'v> PageQuery<'v> {
    /// The rows of one environment (every list is of one).
    pub(crate) fn environment(environment: &'v str) -> Self {
        let mut query = Self { conditions: Vec::new(), values: Vec::new() };
        let p = query.param(environment);
        query.conditions.push(format!("environment = {p}"));
        query
    }

    /// The placeholder for `value`, which is bound in its turn.
    fn param(&mut self, value: impl Into<Value<'v>>) -> String {
        self.values.push(value.into());
        format!("${}", self.values.len())
    }

    /// The conditions of a connection filter, on `connections` columns.
    pub(crate) fn connections<D: Dialect>(filter: &'v ConnectionFilter) -> Self {
        let mut query = Self::environment(&filter.environment);
        if let Some(integration) = &filter.integration {
            let p = query.param(integration.as_str());
            query.conditions.push(format!("integration = {p}"));
        }
        if let Some(status) = filter.status {
            let p = query.param(status.as_str());
            query.conditions.push(format!("status = {p}"));
        }
        if let Some(health) = filter.health {
            let p = query.param(health.as_str());
            query.conditions.push(format!("health_state = {p}"));
        }
        if let Some(end_user) = &filter.end_user {
            let p = query.param(end_user.as_str());
            query.conditions.push(format!("end_user_id = {p}"));
        }
        if !D::JOIN_TAG_FILTERS {
            for (key, value) in &filter.tags {
                let (k, v) = (query.param(key.as_str()), query.param(value.as_str()));
                query.conditions.push(format!(
                    "id IN (SELECT connection_id FROM connection_tags \
                     WHERE key = {k} AND value = {v})"
                ));
            }
            return query;
        }
        // All tags in one subquery, a join of `connection_tags` with itself per further tag:
        // SQLite's planner starts from the most selective (key, value) and probes the others by
        // (key, value, connection_id). (One `id IN (…)` per tag made it build every tag's whole
        // set, 100x slower for a common value; see BENCHMARKS.md.)
        let mut tags = filter.tags.iter().enumerate();
        if let Some((_, (key, value))) = tags.next() {
            let (k, v) = (query.param(key.as_str()), query.param(value.as_str()));
            let mut joins = String::new();
            for (n, (key, value)) in tags {
                let (kn, vn) = (query.param(key.as_str()), query.param(value.as_str()));
                joins.push_str(&format!(
                    " JOIN connection_tags t{n} ON t{n}.connection_id = t0.connection_id \
                     AND t{n}.key = {kn} AND t{n}.value = {vn}"
                ));
            }
            query.conditions.push(format!(
                "id IN (SELECT t0.connection_id FROM connection_tags t0{joins} \
                 WHERE t0.key = {k} AND t0.value = {v})"
            ));
        }
        query
    }

    /// The conditions of a webhook delivery filter, on `webhook_deliveries` columns.
    pub(crate) fn deliveries(filter: &'v DeliveryFilter) -> Self {
        let mut query = Self::environment(&filter.environment);
        if let Some(status) = filter.status {
            let p = query.param(status.as_str());
            query.conditions.push(format!("status = {p}"));
        }
        if let Some(event) = &filter.event {
            let p = query.param(event.as_str());
            query.conditions.push(format!("event = {p}"));
        }
        if let Some(connection) = &filter.connection {
            let p = query.param(connection.as_str());
            query.conditions.push(format!("connection_id = {p}"));
        }
        query
    }

    /// The conditions of an operation filter, on `operations` columns.
    pub(crate) fn operations(filter: &'v OperationFilter) -> Result<Self, StoreError> {
        let mut query = Self::environment(&filter.environment);
        if let Some(connection) = &filter.connection {
            let p = query.param(connection.as_str());
            query.conditions.push(format!("connection_id = {p}"));
        }
        if let Some(integration) = &filter.integration {
            let p = query.param(integration.as_str());
            query.conditions.push(format!("integration = {p}"));
        }
        if let Some(kind) = filter.kind {
            let p = query.param(kind.as_str());
            query.conditions.push(format!("kind = {p}"));
        }
        if let Some(outcome) = filter.outcome {
            let p = query.param(outcome.as_str());
            query.conditions.push(format!("outcome = {p}"));
        }
        if let Some(class) = filter.status_class {
            let low = query.param(i64::from(class) * 100);
            let high = query.param(i64::from(class) * 100 + 100);
            query.conditions.push(format!("upstream_status >= {low} AND upstream_status < {high}"));
        }
        if let Some(since) = filter.since {
            let p = query.param(nanos(since)?);
            query.conditions.push(format!("created_at >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = query.param(nanos(until)?);
            query.conditions.push(format!("created_at < {p}"));
        }
        Ok(query)
    }

    /// [`PageQuery::page`], newest first: `(created_at, id)` descending, before the cursor.
    pub(crate) fn page_newest_first<D: Dialect>(
        self,
        columns: &'static str,
        table: &'static str,
        page: &'v PageRequest,
    ) -> Sql<D> {
        self.ordered(columns, table, page, "<", " DESC")
    }

    /// `SELECT {columns} FROM {table}` with the conditions, after the page's cursor, in
    /// `(created_at, id)` order, one row more than the page holds (to tell whether another
    /// page follows).
    pub(crate) fn page<D: Dialect>(
        self,
        columns: &'static str,
        table: &'static str,
        page: &'v PageRequest,
    ) -> Sql<D> {
        self.ordered(columns, table, page, ">", "")
    }

    /// The page query, after the cursor by `after` (`>` or `<`) and in `direction` (empty or
    /// ` DESC`), both literal.
    fn ordered<D: Dialect>(
        mut self,
        columns: &'static str,
        table: &'static str,
        page: &'v PageRequest,
        after: &'static str,
        direction: &'static str,
    ) -> Sql<D> {
        if let Some(Cursor { created_at, id }) = &page.after {
            let at = self.param(*created_at);
            let id = self.param(Value::Text(Some(Cow::Borrowed(id.as_str()))));
            self.conditions.push(format!("(created_at, id) {after} ({at}, {id})"));
        }
        let limit = self.param(i64::from(page.size()) + 1);
        let mut text = format!("SELECT {columns} FROM {table} WHERE ");
        text.push_str(&self.conditions.join(" AND "));
        text.push_str(&format!(" ORDER BY created_at{direction}, id{direction} LIMIT {limit}"));
        // Literal pieces and numbered placeholders only (see the type's comment).
        let mut query = sql::<D>(sqlx::AssertSqlSafe(text));
        for value in self.values {
            query = query.bind(value);
        }
        query
    }
}

/// The placeholders of `n` values bound in order, the first of them the statement's `first`th
/// value: `$first, …` where the dialect numbers them, else `?, …` (see
/// [`Dialect::NUMBERED_PLACEHOLDERS`]).
pub(crate) fn placeholders<D: Dialect>(first: usize, n: usize) -> String {
    let one = |i: usize| if D::NUMBERED_PLACEHOLDERS { format!("${i}") } else { "?".to_owned() };
    (first..first + n).map(one).collect::<Vec<_>>().join(", ")
}
