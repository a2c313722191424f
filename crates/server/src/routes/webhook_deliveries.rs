//! `/v1/webhook-deliveries`: the webhook delivery log of the caller's environment, newest
//! first, filtered and paged by a cursor; one delivery with its body; and queuing a failed one
//! again. Needs the `admin` scope.

use axum::extract::State;
use latchkey_engine::{DeliveryFilter, DeliveryStatus, EngineError, WebhookDelivery, page_request};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, Principal};

/// Query of `GET /v1/webhook-deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// Only deliveries in this status: `pending`, `delivered` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only events of this type (`connection.created`, …).
    #[serde(default)]
    pub event: Option<String>,
    /// Only events about this connection id.
    #[serde(default)]
    pub connection: Option<String>,
    /// At most this many deliveries, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One page of the delivery log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// Deliveries, newest first (without their bodies).
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One webhook delivery. Its body is the event as sent; it holds no secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// `msg_…`: the `webhook-id` header, the same on every attempt.
    pub id: String,
    /// The event's type.
    pub event: String,
    /// The connection it is about.
    pub connection_id: Option<String>,
    /// Where it is sent (where the last attempt went, once one was made).
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event was recorded (RFC 3339).
    pub created_at: String,
    /// When a pending delivery is next tried (RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When the endpoint accepted it (RFC 3339).
    pub delivered_at: Option<String>,
    /// The JSON body, exactly as signed and sent (only when one delivery is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

impl DeliveryView {
    fn of(d: WebhookDelivery, with_body: bool) -> Self {
        let body = with_body.then(|| {
            serde_json::from_str(&d.body).unwrap_or(serde_json::Value::String(d.body.clone()))
        });
        Self {
            id: d.id,
            event: d.event,
            connection_id: d.connection_id,
            url: d.url,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: super::rfc3339(d.created_at),
            next_attempt_at: d.next_attempt_at.map(super::rfc3339),
            delivered_at: d.delivered_at.map(super::rfc3339),
            body,
        }
    }
}

/// The caller's environment's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhook-deliveries", params(DeliveryParams),
    responses((status = 200, body = DeliveryPage), (status = 400, body = crate::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let status = params
        .status
        .map(|s| s.parse::<DeliveryStatus>())
        .transpose()
        .map_err(|e| EngineError::invalid("status", e.to_string()))?;
    let filter = DeliveryFilter {
        environment: principal.environment.as_str().to_owned(),
        status,
        event: params.event,
        connection: params.connection,
    };
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let found = state.engine.webhooks().list(&filter, &page).await?;
    Ok(Json(DeliveryPage {
        next_cursor: found.next.map(|c| c.token()),
        items: found.items.into_iter().map(|d| DeliveryView::of(d, false)).collect(),
    }))
}

/// One delivery, with its body.
#[utoipa::path(get, path = "/v1/webhook-deliveries/{id}",
    params(("id" = String, Path, description = "The delivery's id (`msg_…`).")),
    responses((status = 200, body = DeliveryView), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let found = state.engine.webhooks().get(&principal.environment, &id).await?;
    Ok(Json(DeliveryView::of(found, true)))
}

/// Queues a failed delivery again, with the whole retry schedule ahead of it.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/retry",
    params(("id" = String, Path, description = "The delivery's id (`msg_…`).")),
    responses((status = 200, body = DeliveryView), (status = 404, body = crate::ErrorBody),
        (status = 409, body = crate::ErrorBody, description = "The delivery is not failed.")))]
pub async fn retry(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let queued = state.engine.webhooks().retry(&principal.environment, &id).await?;
    Ok(Json(DeliveryView::of(queued, true)))
}
