//! `GET /v1/operations`: the operation log of the caller's environment — requests, refreshes,
//! checks, connect steps, webhook deliveries, revocations — newest first, filtered and paged by
//! a cursor. Needs the `connections:read` scope. Never holds a body, a query value or a header
//! value.

use axum::extract::State;
use latchkey_engine::{EngineError, Operation, OperationFilter, page_request};
use latchkey_store::operations::status_class;
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Query};
use crate::{ApiError, AppState, Principal};

/// Query of `GET /v1/operations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OperationParams {
    /// Only this connection's operations.
    #[serde(default)]
    pub connection: Option<String>,
    /// Only this integration's.
    #[serde(default)]
    pub integration: Option<String>,
    /// Only this kind: `request`, `refresh`, `check`, `connect`, `webhook`, `revocation`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only this outcome: `success` or `failure`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Only those whose upstream answered in this class: `2xx`, `3xx`, `4xx` or `5xx`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only those at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only those before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// At most this many operations, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One page of the operation log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperationPage {
    /// Operations, newest first.
    pub operations: Vec<OperationView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One operation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperationView {
    /// `op_…`.
    pub id: String,
    /// When it started (RFC 3339).
    pub at: String,
    /// `request`, `refresh`, `check`, `connect`, `webhook` or `revocation`.
    pub kind: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The connection.
    pub connection: Option<String>,
    /// Its integration.
    pub integration: Option<String>,
    /// Its connector.
    pub connector: Option<String>,
    /// What the upstream answered, if it did.
    pub upstream_status: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// The error's code, when it failed with one.
    pub error_code: Option<String>,
    /// What went wrong, in safe words.
    pub message: Option<String>,
    /// The request's method.
    pub method: Option<String>,
    /// The host it went to.
    pub host: Option<String>,
    /// The path, query values replaced by `…`.
    pub path: Option<String>,
}

impl From<Operation> for OperationView {
    fn from(o: Operation) -> Self {
        Self {
            id: o.id,
            at: super::rfc3339(o.at),
            kind: o.kind.as_str().to_owned(),
            outcome: o.outcome.as_str().to_owned(),
            connection: o.connection,
            integration: o.integration,
            connector: o.connector,
            upstream_status: o.upstream_status,
            latency_ms: o.latency_us as f64 / 1000.0,
            error_code: o.error_code,
            message: o.message,
            method: o.method,
            host: o.host,
            path: o.path,
        }
    }
}

/// The filter a query asks for, in the caller's environment.
pub fn filter_of(environment: &str, params: &OperationParams) -> Result<OperationFilter, ApiError> {
    let invalid =
        |field: &str, e: &dyn std::fmt::Display| EngineError::invalid(field, e.to_string());
    let status_class = params
        .status
        .as_deref()
        .map(status_class)
        .transpose()
        .map_err(|e| invalid("status", &e))?;
    Ok(OperationFilter {
        environment: environment.to_owned(),
        connection: params.connection.clone(),
        integration: params.integration.clone(),
        kind: params
            .kind
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| invalid("kind", &e))?,
        outcome: params
            .outcome
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| invalid("outcome", &e))?,
        status_class,
        since: super::time_param(params.since.as_deref(), "since")?,
        until: super::time_param(params.until.as_deref(), "until")?,
    })
}

/// The caller's environment's operations, newest first.
#[utoipa::path(get, path = "/v1/operations", params(OperationParams),
    responses((status = 200, body = OperationPage), (status = 400, body = crate::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<OperationParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let filter = filter_of(principal.environment.as_str(), &params)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let found = state.engine.operations().list(&filter, &page).await?;
    Ok(Json(OperationPage {
        next_cursor: found.next.map(|c| c.token()),
        operations: found.items.into_iter().map(OperationView::from).collect(),
    }))
}
