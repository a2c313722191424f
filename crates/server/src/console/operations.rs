//! The operations page: the operation log with its filters (connection, integration, kind,
//! outcome, status class, the last hours), errors first: the latest failures that match, then
//! every operation that matches, in keyset pages.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_engine::{EngineError, Operation, OperationFilter, OperationOutcome, page_request};
use latchkey_store::operations::status_class;
use serde::Serialize;

use super::{Operator, Page, field, shown};
use crate::{ApiError, AppState};

/// Rows per page.
const PAGE_SIZE: u32 = 50;
/// Failures shown above the list.
const ERRORS_FIRST: u32 = 10;

/// An operation as a table row.
#[derive(Debug, Serialize)]
pub(crate) struct OperationRow {
    at: String,
    kind: &'static str,
    outcome: &'static str,
    connection: Option<String>,
    integration: Option<String>,
    request: Option<String>,
    upstream_status: Option<u16>,
    latency_ms: String,
    error_code: Option<String>,
    message: Option<String>,
}

pub(crate) fn row(o: Operation) -> OperationRow {
    let request = match (&o.method, &o.host, &o.path) {
        (None, None, None) => None,
        (method, host, path) => Some(format!(
            "{} {}{}",
            method.as_deref().unwrap_or(""),
            host.as_deref().unwrap_or(""),
            path.as_deref().unwrap_or("")
        )),
    };
    OperationRow {
        at: shown(o.at),
        kind: o.kind.as_str(),
        outcome: o.outcome.as_str(),
        connection: o.connection,
        integration: o.integration,
        request,
        upstream_status: o.upstream_status,
        latency_ms: format!("{:.1}", o.latency_us as f64 / 1000.0),
        error_code: o.error_code,
        message: o.message,
    }
}

fn filter_of(
    state: &AppState,
    environment: &str,
    query: &BTreeMap<String, String>,
) -> Result<OperationFilter, EngineError> {
    let invalid = |name: &str, e: &dyn std::fmt::Display| EngineError::invalid(name, e.to_string());
    let mut filter = OperationFilter::in_environment(environment);
    filter.connection = field(query, "connection").map(str::to_owned);
    filter.integration = field(query, "integration").map(str::to_owned);
    filter.kind =
        field(query, "kind").map(str::parse).transpose().map_err(|e| invalid("kind", &e))?;
    filter.outcome =
        field(query, "outcome").map(str::parse).transpose().map_err(|e| invalid("outcome", &e))?;
    filter.status_class =
        field(query, "status").map(status_class).transpose().map_err(|e| invalid("status", &e))?;
    if let Some(hours) = field(query, "hours") {
        let hours: u64 =
            hours.parse().ok().filter(|h| (1..=24 * 31).contains(h)).ok_or_else(|| {
                EngineError::invalid("hours", "hours is a whole number, 1 to 744")
            })?;
        filter.since = Some(state.engine.clock().now() - Duration::from_secs(hours * 3600));
    }
    Ok(filter)
}

/// `GET /console/operations`.
pub async fn list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let filter = filter_of(&state, operator.environment.as_str(), &query)?;
        let cursor = field(&query, "cursor");
        let errors = if cursor.is_none() && filter.outcome.is_none() {
            let failures =
                OperationFilter { outcome: Some(OperationOutcome::Failure), ..filter.clone() };
            let page = page_request(Some(ERRORS_FIRST), None)?;
            state.engine.operations().list(&failures, &page).await?.items
        } else {
            Vec::new()
        };
        let page = page_request(Some(PAGE_SIZE), cursor)?;
        let all = state.engine.operations().list(&filter, &page).await?;
        Ok::<_, EngineError>((errors, all))
    }
    .await;
    let (errors, rows, next, error) = match result {
        Ok((errors, all)) => {
            let next = all.next.map(|c| super::page_link(&query, Some(c.token())));
            (
                errors.into_iter().map(row).collect::<Vec<_>>(),
                all.items.into_iter().map(row).collect::<Vec<_>>(),
                next,
                None,
            )
        }
        Err(e) => (Vec::new(), Vec::new(), None, Some(ApiError::from(e).body().message.clone())),
    };
    let kinds: Vec<&str> = latchkey_engine::OperationKind::ALL.iter().map(|k| k.as_str()).collect();
    Page::new(
        "operations.html",
        minijinja::context! {
            errors, operations => rows, next, error, query, kinds,
            first => query.contains_key("cursor").then(|| super::page_link(&query, None)),
        },
    )
    .status(if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK })
    .render(&operator, "operations")
}
