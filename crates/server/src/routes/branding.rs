//! `/v1/environments/{id}/branding` and `/v1/integrations/{id}/branding`: how the connect page
//! looks for an environment, and for one of its integrations (whose set fields win). `PUT`
//! replaces it whole; `{}` clears it.

use axum::extract::State;
use latchkey_engine::branding::{Branding, Theme};
use latchkey_engine::{EnvironmentId, IntegrationId};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path};
use crate::{ApiError, AppState, Principal};

/// The connect page's branding (see `docs/connect-ui.md`).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// The app's name shown on the page (1-80 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The logo: `data:image/{png,jpeg,gif,webp,svg+xml};base64,…`, at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// Buttons, focus rings and the picker's letters: `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// `light`, `dark` or `system` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub theme: Option<Theme>,
    /// CSS added after the page's own, at most 8 KiB; no `url(`, `@import`, `@font-face`,
    /// `image-set(`, `expression(`, backslash or `<`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_css: Option<String>,
}

impl From<BrandingBody> for Branding {
    fn from(b: BrandingBody) -> Self {
        Branding {
            display_name: b.display_name,
            logo: b.logo,
            primary_color: b.primary_color,
            theme: b.theme,
            custom_css: b.custom_css,
        }
    }
}

impl From<Branding> for BrandingBody {
    fn from(b: Branding) -> Self {
        BrandingBody {
            display_name: b.display_name,
            logo: b.logo,
            primary_color: b.primary_color,
            theme: b.theme,
            custom_css: b.custom_css,
        }
    }
}

/// An environment's branding.
#[utoipa::path(get, path = "/v1/environments/{id}/branding", params(("id" = String, Path, description = "The environment's id.")),
    responses((status = 200, body = BrandingBody), (status = 404, body = crate::ErrorBody)))]
pub async fn get_environment(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
) -> Result<Json<BrandingBody>, ApiError> {
    Ok(Json(state.engine.branding().get(&id, None).await?.into()))
}

/// Replaces an environment's branding.
#[utoipa::path(put, path = "/v1/environments/{id}/branding", request_body = BrandingBody,
    params(("id" = String, Path, description = "The environment's id.")),
    responses((status = 200, body = BrandingBody), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn put_environment(
    State(state): State<AppState>,
    Path(id): Path<EnvironmentId>,
    Json(body): Json<BrandingBody>,
) -> Result<Json<BrandingBody>, ApiError> {
    Ok(Json(state.engine.branding().set(&id, None, body.into()).await?.into()))
}

/// An integration's branding (its own fields, not merged with the environment's).
#[utoipa::path(get, path = "/v1/integrations/{id}/branding", params(("id" = String, Path, description = "The integration's id.")),
    responses((status = 200, body = BrandingBody), (status = 404, body = crate::ErrorBody)))]
pub async fn get_integration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<IntegrationId>,
) -> Result<Json<BrandingBody>, ApiError> {
    Ok(Json(state.engine.branding().get(&principal.environment, Some(&id)).await?.into()))
}

/// Replaces an integration's branding.
#[utoipa::path(put, path = "/v1/integrations/{id}/branding", request_body = BrandingBody,
    params(("id" = String, Path, description = "The integration's id.")),
    responses((status = 200, body = BrandingBody), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn put_integration(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<IntegrationId>,
    Json(body): Json<BrandingBody>,
) -> Result<Json<BrandingBody>, ApiError> {
    let set = state.engine.branding().set(&principal.environment, Some(&id), body.into()).await?;
    Ok(Json(set.into()))
}
