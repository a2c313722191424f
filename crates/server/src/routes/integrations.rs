//! `/v1/integrations`: connectors enabled with the app's OAuth client and scopes. The client
//! secret goes in and never comes out.

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Secret;
use latchkey_engine::{
    ConnectorId, EngineError, IntegrationFilter, IntegrationId, McpServer, NewIntegration,
    NewMcpIntegration, page_request,
};
use latchkey_store::IntegrationRecord;
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, Principal};

/// `POST /v1/integrations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// Id.
    #[schema(value_type = String)]
    pub id: IntegrationId,
    /// The connector it enables.
    #[schema(value_type = String)]
    pub connector: ConnectorId,
    /// OAuth client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth client secret (write-only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Secret>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// An integration as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    /// Id, unique in its environment.
    pub id: String,
    /// The environment it belongs to.
    pub environment: String,
    /// The connector.
    pub connector: String,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// Whether a client secret is stored (it is never returned).
    pub has_client_secret: bool,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Set while the provider refuses the integration's client (`invalid_client`,
    /// `unauthorized_client`): refreshes are held back, one probe every 5 minutes, until the
    /// integration is written again. `null` otherwise.
    pub misconfigured: Option<MisconfigurationView>,
}

/// Why and since when the provider refuses an integration's client.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MisconfigurationView {
    /// When it was first seen (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: time::OffsetDateTime,
    /// When it was last seen (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub seen_at: time::OffsetDateTime,
    /// What the provider answered, in safe words.
    pub message: String,
}

fn view(record: &IntegrationRecord) -> IntegrationView {
    IntegrationView {
        id: record.id.clone(),
        environment: record.environment.clone(),
        connector: record.connector.clone(),
        client_id: record.client_id.clone(),
        has_client_secret: record.client_secret.is_some(),
        scopes: record.scopes.clone(),
        misconfigured: record.misconfigured.as_ref().map(|m| MisconfigurationView {
            since: m.since,
            seen_at: m.seen_at,
            message: m.message.clone(),
        }),
    }
}

/// Creates or replaces an integration.
#[utoipa::path(post, path = "/v1/integrations", request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let record = state
        .engine
        .integrations()
        .put(NewIntegration {
            environment: principal.environment,
            id: body.id,
            connector: body.connector,
            client_id: body.client_id,
            client_secret: body.client_secret,
            scopes: body.scopes,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(&record))))
}

/// `POST /v1/mcp-integrations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMcpIntegration {
    /// Id of the integration, and of the custom connector made for a server given by URL.
    #[schema(value_type = String)]
    pub id: IntegrationId,
    /// The remote MCP server's URL (its Streamable HTTP endpoint), e.g. `https://mcp.example.com/mcp`.
    /// Give this or `connector`.
    #[serde(default)]
    pub mcp_server: Option<String>,
    /// A catalog connector for a remote MCP server (`linear-mcp`, …; see `docs/mcp.md`): the
    /// integration uses it, with the client discovery registered. Give this or `mcp_server`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub connector: Option<ConnectorId>,
    /// A client registered beforehand at the server's authorization server; without it,
    /// Latchkey's Client ID Metadata Document or dynamic registration.
    #[serde(default)]
    pub client_id: Option<String>,
    /// That client's secret (write-only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Secret>,
}

/// Integrates a remote MCP server by its URL: discovers its authorization server, registers
/// Latchkey there, and makes the connector and the integration to connect through.
#[utoipa::path(post, path = "/v1/mcp-integrations", request_body = CreateMcpIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, body = crate::ErrorBody),
        (status = 502, body = crate::ErrorBody)))]
pub async fn create_mcp(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateMcpIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let server = match (body.mcp_server, body.connector) {
        (Some(url), None) => McpServer::Url(
            url::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    EngineError::invalid("mcp_server", "must be an http(s) URL with a host")
                })?,
        ),
        (None, Some(connector)) => McpServer::Connector(connector),
        _ => {
            return Err(EngineError::invalid(
                "mcp_server",
                "give either `mcp_server` (the server's URL) or `connector` (a catalog MCP server connector)",
            )
            .into());
        }
    };
    let record = state
        .engine
        .integrations()
        .put_mcp_server(NewMcpIntegration {
            environment: principal.environment,
            id: body.id,
            server,
            client_id: body.client_id,
            client_secret: body.client_secret,
            public_url: (*state.public_url).clone(),
            redirect_uri: state.callback_url(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(&record))))
}

/// Query of `GET /v1/integrations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Rows per page: 1-1000, default 100.
    #[serde(default)]
    pub limit: Option<String>,
    /// Where the page starts: the `next_cursor` of the page before (opaque).
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One page of integrations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationPage {
    /// The integrations, oldest first.
    pub integrations: Vec<IntegrationView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Lists integrations, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/integrations", params(ListParams), responses((status = 200, body = IntegrationPage), (status = 400, body = crate::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<IntegrationPage>, ApiError> {
    let limit = params.limit.as_deref().map(super::connections::parse_limit).transpose()?;
    let page = page_request(limit, params.cursor.as_deref())?;
    let found = state
        .engine
        .integrations()
        .list(&IntegrationFilter::in_environment(principal.environment.as_str()), &page)
        .await?;
    Ok(Json(IntegrationPage {
        integrations: found.items.iter().map(view).collect(),
        next_cursor: found.next.map(|c| c.token()),
    }))
}

/// One integration.
#[utoipa::path(get, path = "/v1/integrations/{id}", params(("id" = String, Path, description = "The integration's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200, body = IntegrationView), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<IntegrationId>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(view(&state.engine.integrations().get(&principal.environment, &id).await?)))
}

/// Query of `DELETE /v1/integrations/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Delete it even if connections use it; they become `needs_reauth` (default false).
    #[serde(default)]
    pub force: bool,
}

/// Deletes an integration; one that connections use is refused (409) unless `?force=true`.
#[utoipa::path(delete, path = "/v1/integrations/{id}", params(("id" = String, Path, description = "The integration's id: 1-64 characters of `A-Z a-z 0-9 - _ .`."), DeleteParams), responses((status = 204), (status = 404, body = crate::ErrorBody), (status = 409, body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<IntegrationId>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    let environment = &principal.environment;
    if params.force {
        state.engine.integrations().delete_forced(environment, &id).await?;
    } else {
        state.engine.integrations().delete(environment, &id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
