//! `/v1/environments`: separate spaces of integrations, connections, connect sessions and
//! webhooks (`default`, `prod`, …), and the rotation of an environment's webhook secret. Needs
//! the `admin` scope. A webhook secret is write-only: shown once when Latchkey generates it.

use axum::extract::{FromRequest as _, State};
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
    /// `--webhook-url`).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The secret its events are signed with (write-only): 16-1024 characters; `whsec_` and a
    /// base64 key, or any other string (used as its bytes). Generated when absent, and then
    /// returned once in the response.
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
    /// A new secret its events are signed with (write-only). Absent: the secret it has is
    /// kept, or one is generated (and returned once) when it has none. Setting one ends any
    /// rotation overlap.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub webhook_secret: Option<Secret>,
}

/// `POST /v1/environments/{id}/webhook-secret/rotate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecret {
    /// The new secret (write-only); generated when absent. Either way it is returned once.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Secret>,
    /// How long the secret it replaces keeps signing deliveries too, in seconds (default
    /// 86400, at most 604800; 0 stops it at once).
    #[serde(default)]
    pub overlap_seconds: Option<u64>,
}

/// The overlap a rotation gives when the caller does not say: one day.
const DEFAULT_OVERLAP_SECONDS: u64 = 24 * 60 * 60;

/// A webhook URL as the API takes it.
fn parse_url(url: &str) -> Result<url::Url, EngineError> {
    url::Url::parse(url)
        .map_err(|_| EngineError::invalid("webhook_url", "webhook_url is an http or https URL"))
}

/// A webhook from a URL and a secret (generated when absent, and then also returned).
fn webhook(
    url: Option<String>,
    secret: Option<Secret>,
) -> Result<(Option<WebhookConfig>, Option<Secret>), EngineError> {
    match (url, secret) {
        (Some(url), secret) => {
            let url = parse_url(&url)?;
            let generated = secret.is_none().then(latchkey_engine::webhooks::generate_secret);
            let secret = secret.or_else(|| generated.clone()).unwrap_or_default();
            Ok((Some(WebhookConfig { url, secret }), generated))
        }
        (None, None) => Ok((None, None)),
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
    /// Its own webhook URL; `null` when its events go to the server-wide webhook.
    pub webhook_url: Option<String>,
    /// The webhook secret, only in the answer that generated or rotated it: it is never shown
    /// again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Until when the secret replaced by the last rotation also signs deliveries (RFC 3339);
    /// absent when no rotation overlap is running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_previous_secret_expires_at: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

fn view(record: &EnvironmentRecord) -> EnvironmentView {
    let now = time::OffsetDateTime::now_utc();
    EnvironmentView {
        id: record.id.clone(),
        webhook_url: record.webhook_url.clone(),
        webhook_secret: None,
        webhook_previous_secret_expires_at: record
            .webhook_previous_expires_at
            .filter(|until| *until > now)
            .map(super::rfc3339),
        created_at: super::rfc3339(record.created_at),
    }
}

/// The view, with a secret that is shown this once.
fn view_with_secret(record: &EnvironmentRecord, secret: Option<Secret>) -> EnvironmentView {
    EnvironmentView { webhook_secret: secret.map(|s| s.expose().to_owned()), ..view(record) }
}

/// Adds an environment.
#[utoipa::path(post, path = "/v1/environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentView, description = "The environment; `webhook_secret` when one was generated (shown this once)."), (status = 409, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>), ApiError> {
    let (webhook, generated) = webhook(body.webhook_url, body.webhook_secret)?;
    let record =
        state.engine.access().create_environment(NewEnvironment { id: body.id, webhook }).await?;
    Ok((StatusCode::CREATED, Json(view_with_secret(&record, generated))))
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
    responses((status = 200, body = EnvironmentView, description = "The environment; `webhook_secret` when one was generated (shown this once)."), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
    Json(body): Json<UpdateEnvironment>,
) -> Result<Json<EnvironmentView>, ApiError> {
    let access = state.engine.access();
    match (body.webhook_url, body.webhook_secret) {
        (Some(url), None) => {
            let (record, generated) = access.set_webhook_url(&id, parse_url(&url)?).await?;
            Ok(Json(view_with_secret(&record, generated)))
        }
        (url, secret) => {
            let (webhook, _) = webhook(url, secret)?;
            Ok(Json(view(&access.set_webhook(&id, webhook).await?)))
        }
    }
}

/// Replaces an environment's webhook secret; the one replaced keeps signing for the overlap.
#[utoipa::path(post, path = "/v1/environments/{id}/webhook-secret/rotate", request_body = RotateWebhookSecret,
    params(("id" = String, Path, description = "The environment's id.")),
    responses((status = 200, body = EnvironmentView, description = "The environment, with the new `webhook_secret` (shown this once)."),
        (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
    request: axum::extract::Request,
) -> Result<Json<EnvironmentView>, ApiError> {
    // The body is optional: without one (no `Content-Type`), a generated secret and a day's
    // overlap.
    let body = if request.headers().contains_key(http::header::CONTENT_TYPE) {
        let Json(body) = Json::<RotateWebhookSecret>::from_request(request, &state).await?;
        body
    } else {
        RotateWebhookSecret::default()
    };
    let overlap =
        std::time::Duration::from_secs(body.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS));
    let (record, secret) =
        state.engine.access().rotate_webhook_secret(&id, body.secret, overlap).await?;
    Ok(Json(view_with_secret(&record, Some(secret))))
}
