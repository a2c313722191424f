//! The connections pages: a filtered list in keyset pages (the store's list, so a page costs
//! the same with a million connections), and one connection with its health, its history and
//! recent operations, and actions (check now, refresh now, a reconnect link, delete after a
//! confirmation). Never a credential: only the names of the stored fields.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_engine::{
    ConnectionFilter, ConnectionId, EngineError, OperationFilter, OperationKind, page_request,
};
use latchkey_store::{ConnectionSummary, Operation};
use serde::Serialize;

use super::operations::{OperationRow, row as operation_row};
use super::session::Submitted;
use super::{Operator, Page, audit, failed, field, see_other, shown};
use crate::{ApiError, AppState};

/// Rows per page of the list.
const PAGE_SIZE: u32 = 50;
/// Operations and checks shown on a connection's page.
const RECENT: u32 = 20;

/// A connection as a list row.
#[derive(Debug, Serialize)]
struct ConnectionRow {
    id: String,
    integration: Option<String>,
    connector: String,
    label: Option<String>,
    status: &'static str,
    health: &'static str,
    end_user: Option<String>,
    tags: String,
    created_at: String,
}

fn list_row(c: &ConnectionSummary) -> ConnectionRow {
    ConnectionRow {
        id: c.id.clone(),
        integration: c.integration.clone(),
        connector: c.connector.clone(),
        label: c.label.clone(),
        status: c.status.as_str(),
        health: c.health.state.as_str(),
        end_user: c.end_user.as_ref().map(|u| u.id.clone()),
        tags: c.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        created_at: shown(c.created_at),
    }
}

/// The list's filter from its query: `integration`, `health`, `status`, `tag` (`key=value`),
/// `end_user`; a bad value is an error the page shows.
fn filter_of(
    environment: &str,
    query: &BTreeMap<String, String>,
) -> Result<ConnectionFilter, EngineError> {
    let mut filter = ConnectionFilter::in_environment(environment);
    filter.integration = field(query, "integration").map(str::to_owned);
    filter.end_user = field(query, "end_user").map(str::to_owned);
    if let Some(status) = field(query, "status") {
        filter.status = Some(status.parse().map_err(|_| {
            EngineError::invalid("status", "status must be ok, needs_reauth or error")
        })?);
    }
    if let Some(health) = field(query, "health") {
        filter.health = Some(health.parse().map_err(|_| {
            EngineError::invalid("health", "health must be healthy, unhealthy or unknown")
        })?);
    }
    if let Some(tag) = field(query, "tag") {
        let (key, value) = tag
            .split_once('=')
            .ok_or_else(|| EngineError::invalid("tag", "a tag filter is key=value"))?;
        filter.tags.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(filter)
}

/// `GET /console/connections`: filters, a search by id, keyset pages.
pub async fn list(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(id) = field(&query, "id") {
        // A search by id opens the connection if it is in this environment.
        let found = match ConnectionId::new(id) {
            Ok(cid) => {
                state.engine.connections().check_environment(&operator.environment, &cid).await
            }
            Err(e) => Err(e.into()),
        };
        return match found {
            Ok(()) => see_other(&format!("/console/connections/{id}")),
            Err(e) => failed(&operator, "No such connection", e.into(), "/console/connections"),
        };
    }
    let result = async {
        let filter = filter_of(operator.environment.as_str(), &query)?;
        let page = page_request(Some(PAGE_SIZE), field(&query, "cursor"))?;
        state.engine.connections().list(&filter, &page).await
    }
    .await;
    let integrations = super::integrations::all(&state, &operator)
        .await
        .map(|all| all.into_iter().map(|i| i.id).collect::<Vec<_>>())
        .unwrap_or_default();
    let (rows, next, error) = match result {
        Ok(found) => {
            let next = found.next.map(|c| super::page_link(&query, Some(c.token())));
            (found.items.iter().map(list_row).collect(), next, None)
        }
        Err(e) => (Vec::new(), None, Some(ApiError::from(e).body().message.clone())),
    };
    Page::new(
        "connections.html",
        minijinja::context! {
            connections => rows, next, error, query, integrations,
            first => query.contains_key("cursor").then(|| super::page_link(&query, None)),
        },
    )
    .status(if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK })
    .render(&operator, "connections")
}

/// What one connection's page shows.
#[derive(Debug, Serialize)]
struct ConnectionView {
    id: String,
    integration: Option<String>,
    connector: String,
    auth_method: String,
    label: Option<String>,
    status: &'static str,
    health: &'static str,
    health_reason: Option<String>,
    last_healthy_at: Option<String>,
    last_checked_at: Option<String>,
    last_error: Option<String>,
    consecutive_failures: u32,
    end_user: Option<latchkey_store::EndUser>,
    tags: BTreeMap<String, String>,
    metadata: String,
    config: BTreeMap<String, String>,
    secret_fields: Vec<String>,
    expires_at: Option<String>,
    scopes: Vec<String>,
    created_at: String,
    updated_at: String,
}

fn view(c: &ConnectionSummary) -> ConnectionView {
    let mut config = c.config.clone();
    config.remove(latchkey_engine::GRANTED_SCOPES);
    let reason = c
        .health
        .reason
        .and_then(|r| serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_owned)));
    ConnectionView {
        id: c.id.clone(),
        integration: c.integration.clone(),
        connector: c.connector.clone(),
        auth_method: c.auth_method.clone(),
        label: c.label.clone(),
        status: c.status.as_str(),
        health: c.health.state.as_str(),
        health_reason: reason,
        last_healthy_at: c.health.last_healthy_at.map(shown),
        last_checked_at: c.health.last_checked_at.map(shown),
        last_error: c.health.last_error.as_ref().map(|e| e.message.clone()),
        consecutive_failures: c.health.consecutive_failures,
        end_user: c.end_user.clone(),
        tags: c.tags.clone(),
        metadata: serde_json::to_string_pretty(&c.metadata).unwrap_or_default(),
        config,
        secret_fields: c.secret_fields.clone(),
        expires_at: c.expires_at.map(shown),
        scopes: latchkey_engine::granted_scopes(&c.config),
        created_at: shown(c.created_at),
        updated_at: shown(c.updated_at),
    }
}

async fn recent(
    state: &AppState,
    operator: &Operator,
    id: &str,
    kind: Option<OperationKind>,
    limit: u32,
) -> Result<Vec<Operation>, EngineError> {
    let mut filter = OperationFilter::in_environment(operator.environment.as_str());
    filter.connection = Some(id.to_owned());
    filter.kind = kind;
    let page = page_request(Some(limit), None)?;
    Ok(state.engine.operations().list(&filter, &page).await?.items)
}

/// `GET /console/connections/{id}`.
pub async fn show(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let cid = ConnectionId::new(id.as_str())?;
        let connections = state.engine.connections();
        connections.check_environment(&operator.environment, &cid).await?;
        let summary = connections.get(&cid).await?.summary();
        let operations = recent(&state, &operator, &id, None, RECENT).await?;
        let checks = recent(&state, &operator, &id, Some(OperationKind::Check), RECENT).await?;
        let refresh = recent(&state, &operator, &id, Some(OperationKind::Refresh), 1).await?;
        Ok::<_, EngineError>((summary, operations, checks, refresh))
    }
    .await;
    match result {
        Ok((summary, operations, checks, refresh)) => {
            let operations: Vec<OperationRow> = operations.into_iter().map(operation_row).collect();
            let checks: Vec<OperationRow> = checks.into_iter().map(operation_row).collect();
            let last_refresh = refresh.into_iter().next().map(operation_row);
            Page::new(
                "connection.html",
                minijinja::context! {
                    connection => view(&summary), operations, checks, last_refresh,
                },
            )
            .render(&operator, "connections")
        }
        Err(e) => failed(&operator, "Cannot open the connection", e.into(), "/console/connections"),
    }
}

/// Runs one action on a connection of the operator's environment and audits it as `action`.
async fn act<F, Fut>(
    state: &AppState,
    operator: &Operator,
    id: &str,
    action: &str,
    done: StatusCode,
    run: F,
) -> Result<(), ApiError>
where
    F: FnOnce(ConnectionId) -> Fut,
    Fut: std::future::Future<Output = Result<(), EngineError>>,
{
    let result = async {
        let cid = ConnectionId::new(id)?;
        state.engine.connections().check_environment(&operator.environment, &cid).await?;
        run(cid).await
    }
    .await
    .map_err(ApiError::from);
    let status = result.as_ref().map_or_else(ApiError::status, |()| done);
    audit::record(state, operator, action, Some(("connection", id)), status).await;
    result
}

/// `POST /console/connections/{id}/check`: the credential test now; the page then shows the
/// new health.
pub async fn check(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let operator = form.operator;
    let engine = state.engine.clone();
    let result =
        act(&state, &operator, &id, "connection.check", StatusCode::OK, |cid| async move {
            engine.connections().check(&cid).await.map(drop)
        })
        .await;
    back_to_connection(&operator, &id, "Cannot check the connection", result)
}

/// `POST /console/connections/{id}/refresh`: a forced token refresh now.
pub async fn refresh(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let operator = form.operator;
    let engine = state.engine.clone();
    let result =
        act(&state, &operator, &id, "connection.refresh", StatusCode::OK, |cid| async move {
            let current = engine.connections().get(&cid).await?;
            engine
                .renewal()
                .refresh(
                    &cid,
                    latchkey_engine::RefreshReason::Forced { seen_version: current.version },
                )
                .await
                .map(drop)
        })
        .await;
    back_to_connection(&operator, &id, "Cannot refresh the connection", result)
}

/// The connection's page again after an action, or `failure` with a link back to it.
fn back_to_connection(
    operator: &Operator,
    id: &str,
    failure: &str,
    result: Result<(), ApiError>,
) -> Response {
    let page = format!("/console/connections/{id}");
    match result {
        Ok(()) => see_other(&page),
        Err(e) => failed(operator, failure, e, &page),
    }
}

/// `POST /console/connections/{id}/reconnect`: a link for the end user to authorise this
/// connection again, shown once.
pub async fn reconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let Submitted { operator, fields } = form;
    let request = super::links::LinkRequest {
        integration: None,
        reconnect: Some(id.clone()),
        end_user: None,
        expires_in: field(&fields, "expires_in").map(str::to_owned),
    };
    super::links::create_and_show(&state, &operator, request).await
}

/// `POST /console/connections/{id}/delete`: needs `confirm` to repeat the connection's id.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let Submitted { operator, fields } = form;
    if field(&fields, "confirm") != Some(id.as_str()) {
        let error = ApiError::from(EngineError::invalid(
            "confirm",
            "type the connection's id to confirm its deletion",
        ));
        return failed(&operator, "Not deleted", error, &format!("/console/connections/{id}"));
    }
    let engine = state.engine.clone();
    let result = act(
        &state,
        &operator,
        &id,
        "connection.delete",
        StatusCode::NO_CONTENT,
        |cid| async move { engine.connections().delete(&cid).await.map(drop) },
    )
    .await;
    match result {
        Ok(()) => see_other("/console/connections"),
        Err(e) => failed(
            &operator,
            "Cannot delete the connection",
            e,
            &format!("/console/connections/{id}"),
        ),
    }
}
