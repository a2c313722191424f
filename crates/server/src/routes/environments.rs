//! `/v1/environments`: separate spaces of integrations, connections and connect sessions
//! (`default`, `prod`, …). Needs the `admin` scope.

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_engine::{EnvironmentId, NewEnvironment};
use latchkey_store::EnvironmentRecord;
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path};
use crate::{ApiError, AppState};

/// `POST /v1/environments`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// Its id: 1-64 characters of `a-z 0-9 - _`.
    #[schema(value_type = String)]
    pub id: EnvironmentId,
}

/// An environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentView {
    /// Id.
    pub id: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

fn view(record: &EnvironmentRecord) -> EnvironmentView {
    EnvironmentView { id: record.id.clone(), created_at: super::rfc3339(record.created_at) }
}

/// Adds an environment.
#[utoipa::path(post, path = "/v1/environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentView), (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>), ApiError> {
    let record = state.engine.access().create_environment(NewEnvironment { id: body.id }).await?;
    Ok((StatusCode::CREATED, Json(view(&record))))
}

/// Every environment.
#[utoipa::path(get, path = "/v1/environments", responses((status = 200, body = [EnvironmentView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    Ok(Json(state.engine.access().environments().await?.iter().map(view).collect()))
}

/// One environment.
#[utoipa::path(get, path = "/v1/environments/{id}", params(("id" = String, Path, description = "The environment's id.")),
    responses((status = 200, body = EnvironmentView), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
) -> Result<Json<EnvironmentView>, ApiError> {
    Ok(Json(view(&state.engine.access().environment(&id).await?)))
}
