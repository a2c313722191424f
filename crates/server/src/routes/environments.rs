//! `/v1/environments`: separate spaces of integrations, connections, connect sessions and
//! webhooks (`default`, `prod`, …). Needs the `admin` scope.

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Secret;
use latchkey_engine::{EngineError, EnvironmentId, NewEnvironment, WebhookConfig};
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
    /// Where this environment's connection events go (instead of the server's
    /// `--webhook-url`); needs `webhook_secret`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The secret its events are signed with (write-only): at least 16 characters.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub webhook_secret: Option<Secret>,
}

/// `PATCH /v1/environments/{id}`: its webhook.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    /// The new webhook URL, or `null` to send its events to the server-wide webhook again.
    pub webhook_url: Option<String>,
    /// The secret its events are signed with (write-only); required with a URL.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub webhook_secret: Option<Secret>,
}

/// A webhook from a URL and a secret given together (or neither).
fn webhook(
    url: Option<String>,
    secret: Option<Secret>,
) -> Result<Option<WebhookConfig>, EngineError> {
    match (url, secret) {
        (Some(url), Some(secret)) => {
            let url = url::Url::parse(&url).map_err(|_| {
                EngineError::invalid("webhook_url", "webhook_url is an http or https URL")
            })?;
            Ok(Some(WebhookConfig { url, secret }))
        }
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(EngineError::invalid("webhook_secret", "webhook_url needs a webhook_secret"))
        }
        (None, Some(_)) => {
            Err(EngineError::invalid("webhook_url", "webhook_secret needs a webhook_url"))
        }
    }
}

/// An environment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentView {
    /// Id.
    pub id: String,
    /// Its own webhook URL; `null` when its events go to the server-wide webhook. The secret
    /// is never shown.
    pub webhook_url: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

fn view(record: &EnvironmentRecord) -> EnvironmentView {
    EnvironmentView {
        id: record.id.clone(),
        webhook_url: record.webhook_url.clone(),
        created_at: super::rfc3339(record.created_at),
    }
}

/// Adds an environment.
#[utoipa::path(post, path = "/v1/environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentView), (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>), ApiError> {
    let new =
        NewEnvironment { id: body.id, webhook: webhook(body.webhook_url, body.webhook_secret)? };
    let record = state.engine.access().create_environment(new).await?;
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

/// Sets or clears an environment's own webhook.
#[utoipa::path(patch, path = "/v1/environments/{id}", request_body = UpdateEnvironment, params(("id" = String, Path, description = "The environment's id.")),
    responses((status = 200, body = EnvironmentView), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
    Json(body): Json<UpdateEnvironment>,
) -> Result<Json<EnvironmentView>, ApiError> {
    let webhook = webhook(body.webhook_url, body.webhook_secret)?;
    Ok(Json(view(&state.engine.access().set_webhook(&id, webhook).await?)))
}
