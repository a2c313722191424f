//! `/v1/connect-sessions`: a link (10 minutes by default, up to 7 days) that lets an end user's
//! browser make one connection on the hosted connect page; its outcome can be polled.

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_engine::{ConnectionId, ConnectorId, EngineError, IntegrationId, NewConnectSession};
use latchkey_store::{ConnectSession, SessionFailure, SessionStatus};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path};
use crate::{ApiError, AppState, Principal};

/// `POST /v1/connect-sessions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectSession {
    /// The integration to connect through; or `connector` instead.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub integration: Option<IntegrationId>,
    /// Integrations the end user picks from on the connect page (a searchable list); with
    /// one, the page goes straight to it. Instead of `integration`, `connector` and
    /// `reconnect`; takes no `auth` or `config`.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub integrations: Vec<IntegrationId>,
    /// The connector, for one whose auth method needs no client (API key, Basic, a form
    /// login, …): the session connects through the integration of the same id, made on first
    /// use. Exactly one of `integration` and `connector`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub connector: Option<ConnectorId>,
    /// The id the connection gets, or an existing one to re-authorise.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub connection_id: Option<ConnectionId>,
    /// An existing connection to re-authorise in place (same id, tags, metadata, end user);
    /// it must exist in this environment. Without `integration`, through the one it was made
    /// with.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub reconnect: Option<ConnectionId>,
    /// Seconds the link stays usable: 60 to 604800 (7 days); default 600.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The connector's auth method to connect with (its `id`, e.g. `oauth2` or `api_key`);
    /// default: the re-authorised connection's method, else the connector's first.
    #[serde(default)]
    pub auth: Option<String>,
    /// The end user who connects; the connection gets it.
    #[serde(default)]
    pub end_user: Option<super::connections::EndUserBody>,
    /// Tags the connection gets (same rules as on a connection).
    #[serde(default)]
    pub tags: latchkey_engine::Tags,
    /// Metadata the connection gets (a JSON object, at most 16 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: latchkey_engine::Metadata,
    /// The exact origin the popup posts its result to, e.g. `https://app.example`.
    #[serde(default)]
    pub allowed_origin: Option<String>,
    /// Per-connection config the flow needs (e.g. a shop subdomain). Values given are not
    /// shown on the page; required ones left out are asked of the end user.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// The language of the connect page: `en`, `fr`, `de`, `es` or `ja`. Default: the
    /// browser's `Accept-Language`.
    #[serde(default)]
    pub lang: Option<String>,
    /// For a full-page flow without `latchkey.js`: where the page sends the browser when the
    /// flow ends, with `status` (`done` or `failed`), `session_id`, and `connection_id` or
    /// `error` (a code) added to its query. An http(s) URL on `allowed_origin`, which it needs.
    #[serde(default)]
    pub return_url: Option<String>,
}

/// A created session: the token is shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedConnectSession {
    /// Id to poll with.
    pub id: String,
    /// Token for `Latchkey.connect({ token })`.
    pub token: String,
    /// The connect page, a link to share (`{public_url}/connect/{token}`).
    pub connect_link: String,
    /// The same as `connect_link` (its earlier name).
    pub url: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
}

/// How a session stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectSessionView {
    /// Id.
    pub id: String,
    /// `pending`, `done` or `failed`.
    pub status: &'static str,
    /// The connection created.
    pub connection_id: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<ConnectSessionError>,
    /// When the link stops opening (RFC 3339).
    pub expires_at: String,
}

/// Why a connect session failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectSessionError {
    /// Stable: `access_denied`, `token_refused`, `flow_expired`, `issuer_mismatch`,
    /// `missing_code`, `provider_error`, … (the API's error codes).
    pub code: String,
    /// For people; never a secret.
    pub message: String,
}

impl From<SessionFailure> for ConnectSessionError {
    fn from(f: SessionFailure) -> Self {
        Self { code: f.code, message: f.message }
    }
}

/// The public view of a session as it stands now (see
/// [`latchkey_engine::session_standing`]): `started` reads as `pending`, and a
/// session nothing can finish any more as `failed` with `flow_expired`.
pub fn view(state: &AppState, s: &ConnectSession) -> ConnectSessionView {
    let (status, error) = state.engine.connect().standing(s);
    ConnectSessionView {
        id: s.id.clone(),
        status: match status {
            SessionStatus::Pending | SessionStatus::Started => "pending",
            SessionStatus::Done => "done",
            SessionStatus::Failed => "failed",
        },
        connection_id: s.result_connection.clone(),
        error: error.map(Into::into),
        expires_at: rfc3339(s.expires_at),
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Starts a connect session.
#[utoipa::path(post, path = "/v1/connect-sessions", request_body = CreateConnectSession,
    responses((status = 201, body = CreatedConnectSession), (status = 400, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateConnectSession>,
) -> Result<(StatusCode, Json<CreatedConnectSession>), ApiError> {
    if let Some(lang) = &body.lang
        && !crate::pages::is_supported_language(lang)
    {
        return Err(EngineError::invalid(
            "lang",
            format!("lang is one of {}", crate::pages::language_list()),
        )
        .into());
    }
    let through = match (body.integration, body.connector) {
        (None, None) if !body.integrations.is_empty() => {
            if body.reconnect.is_some() {
                return Err(EngineError::invalid(
                    "integrations",
                    "name either `integrations` or `reconnect`, not both",
                )
                .into());
            }
            NewConnectSession::new(body.integrations[0].clone())
        }
        (Some(_), _) | (_, Some(_)) if !body.integrations.is_empty() => {
            return Err(EngineError::invalid(
                "integrations",
                "name either `integrations` or one `integration` (or `connector`), not both",
            )
            .into());
        }
        (Some(integration), None) => NewConnectSession::new(integration),
        (None, Some(connector)) => NewConnectSession::for_connector(connector),
        (None, None) if body.reconnect.is_some() => {
            let id = body.reconnect.clone().unwrap_or_else(|| unreachable!("checked just above"));
            state.engine.connect().reconnecting(principal.environment.clone(), id).await?
        }
        (Some(_), Some(_)) => {
            return Err(EngineError::invalid(
                "connector",
                "name either `integration` or `connector`, not both",
            )
            .into());
        }
        (None, None) => {
            return Err(EngineError::invalid(
                "integration",
                "name the `integration` to connect through (or, for a connector that needs no \
                 OAuth client, the `connector`)",
            )
            .into());
        }
    };
    let (session, token) = state
        .engine
        .connect()
        .create_session(NewConnectSession {
            environment: principal.environment,
            connection_id: body.connection_id,
            reconnect: body.reconnect,
            expires_in: body.expires_in,
            auth: body.auth,
            end_user: body.end_user.map(Into::into),
            tags: body.tags,
            metadata: body.metadata,
            allowed_origin: body.allowed_origin,
            config: body.config,
            choices: body.integrations,
            lang: body.lang,
            return_url: body.return_url,
            ..through
        })
        .await?;
    let link =
        format!("{}/connect/{}", state.public_url.as_str().trim_end_matches('/'), token.expose());
    Ok((
        StatusCode::CREATED,
        Json(CreatedConnectSession {
            id: session.id,
            token: token.expose().to_string(),
            connect_link: link.clone(),
            url: link,
            expires_at: rfc3339(session.expires_at),
        }),
    ))
}

/// How a connect session ended.
#[utoipa::path(get, path = "/v1/connect-sessions/{id}", responses((status = 200, body = ConnectSessionView)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ConnectSessionView>, ApiError> {
    let session = state.engine.connect().session(&id).await?;
    if session.environment != principal.environment.as_str() {
        return Err(latchkey_engine::EngineError::ConnectSessionNotFound(id).into());
    }
    Ok(Json(view(&state, &session)))
}
