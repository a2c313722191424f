//! `/v1/connectors`: the catalog, and custom connectors added through the API.

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Connector;
use latchkey_engine::{CatalogEntry, ConnectorId, Origin};
use serde::Serialize;

use crate::extract::{Json, Path};
use crate::{ApiError, AppState};

/// A connector in a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectorSummary {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: Option<String>,
    /// Auth method names, the default first.
    pub auth: Vec<String>,
    /// `builtin`, `file` or `custom`.
    pub origin: &'static str,
}

fn summary(entry: &CatalogEntry) -> ConnectorSummary {
    let c = &entry.connector;
    ConnectorSummary {
        id: c.id.clone(),
        name: c.name.clone(),
        category: c.category.clone(),
        auth: c.auth.iter().map(|m| m.id().to_string()).collect(),
        origin: match entry.origin {
            Origin::Builtin => "builtin",
            Origin::File(_) => "file",
            Origin::Custom => "custom",
        },
    }
}

/// Lists every connector.
#[utoipa::path(get, path = "/v1/connectors", responses((status = 200, body = [ConnectorSummary])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ConnectorSummary>> {
    Json(state.engine.connectors().catalog().list().iter().map(summary).collect())
}

/// One connector, in full.
#[utoipa::path(get, path = "/v1/connectors/{id}", params(("id" = String, Path, description = "The connector's id: 1-64 characters of `a-z 0-9 - _`.")), responses((status = 200), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<ConnectorId>,
) -> Result<Json<Connector>, ApiError> {
    let entry = state.engine.connectors().get(&id)?;
    Ok(Json(entry.connector.as_ref().clone()))
}

/// Adds or replaces a custom connector. The body is the connector in YAML (or JSON).
#[utoipa::path(put, path = "/v1/connectors/{id}", params(("id" = String, Path, description = "The connector's id: 1-64 characters of `a-z 0-9 - _`.")), request_body(content = String, content_type = "application/yaml"),
    responses((status = 200, body = ConnectorSummary), (status = 400, body = crate::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<ConnectorId>,
    body: String,
) -> Result<Json<ConnectorSummary>, ApiError> {
    if let Some(existing) = state.engine.connectors().catalog().get(id.as_str())
        && existing.origin != Origin::Custom
    {
        tracing::info!(connector = %id, "custom connector overrides a catalog connector");
    }
    let entry = state.engine.connectors().put_custom(&id, &body).await?;
    Ok(Json(summary(&entry)))
}

/// Deletes a custom connector.
#[utoipa::path(delete, path = "/v1/connectors/{id}", params(("id" = String, Path, description = "The connector's id: 1-64 characters of `a-z 0-9 - _`.")), responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<ConnectorId>,
) -> Result<StatusCode, ApiError> {
    state.engine.connectors().delete_custom(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
