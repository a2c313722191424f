//! `/v1/agent-tokens`: short-lived tokens (`lk_agt_…`) that let an AI agent use one connection
//! through the proxy within grants (methods, path globs), an expiry and a request budget, never
//! seeing the connection's credentials. The token is returned once. Needs the `proxy` scope: a
//! token can do no more than its maker's key could through the proxy.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_engine::{AgentTokenRecord, ConnectionId, NewAgentToken};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path};
use crate::{ApiError, AppState, Principal};

/// `POST /v1/agent-tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentToken {
    /// The one connection the token may use.
    #[schema(value_type = String)]
    pub connection: ConnectionId,
    /// The agent's name, for lists and the audit log (default `agent`).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP methods it may send.
    pub methods: Vec<String>,
    /// Path globs it may reach under the connection's base URL: `*` within one segment, `**`
    /// across segments (`/repos/*/issues`, `/**`).
    pub paths: Vec<String>,
    /// Seconds until it stops working (1 to 86400; default 3600).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// At most this many requests (absent: no limit).
    #[serde(default)]
    pub max_requests: Option<u64>,
}

/// An agent token as lists show it: never the token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentTokenView {
    /// Id (`agt_…`), for revocation and the audit log.
    pub id: String,
    /// The connection it may use.
    pub connection: String,
    /// The agent's name.
    pub name: String,
    /// Methods it may send.
    pub methods: Vec<String>,
    /// Path globs it may reach.
    pub paths: Vec<String>,
    /// Its request budget, if limited.
    pub max_requests: Option<u64>,
    /// Requests made with it.
    pub used_requests: u64,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// The token: only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<AgentTokenRecord> for AgentTokenView {
    fn from(t: AgentTokenRecord) -> Self {
        Self {
            id: t.id,
            connection: t.connection,
            name: t.name,
            methods: t.methods,
            paths: t.paths,
            max_requests: t.max_requests,
            used_requests: t.used_requests,
            created_at: super::rfc3339(t.created_at),
            expires_at: super::rfc3339(t.expires_at),
            revoked_at: t.revoked_at.map(super::rfc3339),
            token: None,
        }
    }
}

/// The caller's environment's agent tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentTokenList {
    /// Newest first, revoked and expired ones too.
    pub agent_tokens: Vec<AgentTokenView>,
}

/// Makes an agent token; the answer holds `token`, shown this once.
#[utoipa::path(post, path = "/v1/agent-tokens", request_body = CreateAgentToken,
    responses((status = 201, body = AgentTokenView), (status = 400, body = crate::ErrorBody),
        (status = 404, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateAgentToken>,
) -> Result<(StatusCode, Json<AgentTokenView>), ApiError> {
    let (record, token) = state
        .engine
        .agent_tokens()
        .create(NewAgentToken {
            environment: principal.environment,
            connection: body.connection,
            name: body.name.unwrap_or_else(|| "agent".to_owned()),
            methods: body.methods,
            paths: body.paths,
            expires_in: Duration::from_secs(body.expires_in.unwrap_or(3600)),
            max_requests: body.max_requests,
        })
        .await?;
    let mut view = AgentTokenView::from(record);
    view.token = Some(token.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's environment's agent tokens, newest first.
#[utoipa::path(get, path = "/v1/agent-tokens", responses((status = 200, body = AgentTokenList)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<AgentTokenList>, ApiError> {
    let found = state.engine.agent_tokens().list(&principal.environment).await?;
    Ok(Json(AgentTokenList { agent_tokens: found.into_iter().map(AgentTokenView::from).collect() }))
}

/// Revokes an agent token at once.
#[utoipa::path(delete, path = "/v1/agent-tokens/{id}",
    params(("id" = String, Path, description = "The token's id (`agt_…`).")),
    responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.agent_tokens().revoke(&principal.environment, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
