//! `/v1/api-keys`: keys with scopes, bound to an environment or spanning all of them. The key
//! is returned once, when it is made; lists show its id, name and first characters. Needs the
//! `admin` scope.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_engine::{EnvironmentId, NewApiKey};
use latchkey_store::{ApiKeyRecord, Scope};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path};
use crate::{ApiError, AppState};

/// `POST /v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A name to recognise it by.
    pub name: String,
    /// The environment it acts in; absent: it spans every environment and picks one per
    /// request with `X-Latchkey-Environment`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub environment: Option<EnvironmentId>,
    /// What it may do: `proxy`, `connections:read`, `connections:write`, `credentials:read`,
    /// `connect_sessions:write`, `integrations:write`, `admin`.
    #[schema(value_type = Vec<String>)]
    pub scopes: BTreeSet<Scope>,
    /// Seconds until it stops working; absent: it does not expire.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// An API key as lists show it: never the key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// Id (`key_…`), for revocation and the audit log.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its environment; `null` when it spans every environment.
    pub environment: Option<String>,
    /// Its scopes.
    #[schema(value_type = Vec<String>)]
    pub scopes: BTreeSet<Scope>,
    /// The key's first characters, to recognise it.
    pub hint: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339), if it does.
    pub expires_at: Option<String>,
    /// When it last authenticated a request (to the minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// A key just made: the only time `key` is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    /// The key (`lk_…`): send it as `Authorization: Bearer <key>`. Not shown again.
    pub key: String,
    /// The key's record.
    #[serde(flatten)]
    pub record: ApiKeyView,
}

/// The public view of a key record.
pub fn view(k: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: k.id.clone(),
        name: k.name.clone(),
        environment: k.environment.clone(),
        scopes: k.scopes.clone(),
        hint: k.hint.clone(),
        created_at: super::rfc3339(k.created_at),
        expires_at: k.expires_at.map(super::rfc3339),
        last_used_at: k.last_used_at.map(super::rfc3339),
        revoked_at: k.revoked_at.map(super::rfc3339),
    }
}

/// Makes an API key; the answer holds the key, which is not shown again.
#[utoipa::path(post, path = "/v1/api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = crate::ErrorBody),
              (status = 404, description = "`environment_not_found`", body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let (record, key) = state
        .engine
        .access()
        .create_key(NewApiKey {
            name: body.name,
            environment: body.environment,
            scopes: body.scopes,
            expires_in: body.expires_in.map(Duration::from_secs),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey { key: key.expose().to_owned(), record: view(&record) }),
    ))
}

/// Every API key, revoked ones too; never the keys.
#[utoipa::path(get, path = "/v1/api-keys", responses((status = 200, body = [ApiKeyView])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    Ok(Json(state.engine.access().keys().await?.iter().map(view).collect()))
}

/// Revokes a key: it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", params(("id" = String, Path, description = "The key's id (`key_…`).")),
    responses((status = 204), (status = 404, description = "`api_key_not_found`", body = crate::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.access().revoke_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
