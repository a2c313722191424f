//! Latchkey as an MCP server: `/mcp` speaks the Streamable HTTP transport (through the official
//! Rust SDK, `rmcp`) and offers the tools in [`tools`], which let an AI agent list the connections
//! it may use and send requests through them without ever holding their credentials.
//!
//! `/mcp` is an OAuth protected resource (RFC 9728, see [`resource`]): a request without a valid
//! `Authorization: Bearer …` gets 401 with `WWW-Authenticate: Bearer resource_metadata="…"`.
//! It accepts agent tokens (`lk_agt_…`, which keep to their one connection, grants and budget)
//! and API keys with the `proxy` scope (every connection of their environment).
//!
//! `/oauth/client-metadata.json` is the other side: Latchkey's Client ID Metadata Document, for
//! when Latchkey is the OAuth client of a remote MCP server.
//!
//! The transport runs stateless (no `Mcp-Session-Id`): every POST is authenticated and answered
//! on its own, so any instance behind a load balancer can serve it.

pub(crate) mod resource;
mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use latchkey_core::Secret;
use latchkey_engine::{AgentRefusal, AgentTokenRecord, EnvironmentId};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::{ApiError, AppState, Principal, Refusal, access};

/// Where the MCP server answers.
pub const MCP_PATH: &str = "/mcp";

/// Where Latchkey serves its Client ID Metadata Document, for remote MCP servers' authorization
/// servers that accept one as a client id.
pub const CLIENT_METADATA_PATH: &str = "/oauth/client-metadata.json";

/// `GET /oauth/client-metadata.json`: Latchkey as an OAuth client of remote MCP servers — its
/// URL is its client id, its redirect URI the one OAuth callback.
async fn client_metadata(State(state): State<AppState>) -> Response {
    let client_id =
        format!("{}{CLIENT_METADATA_PATH}", state.public_url.as_str().trim_end_matches('/'));
    match url::Url::parse(&client_id) {
        Ok(client_id) => axum::Json(latchkey_engine::oauth2::mcp_client::client_metadata_document(
            &client_id,
            &state.callback_url(),
        ))
        .into_response(),
        Err(e) => ApiError::internal(format!("the client metadata URL: {e}")).into_response(),
    }
}

/// Who is calling `/mcp`, as its bearer says; put on the request for the tools.
#[derive(Debug)]
pub(crate) enum Caller {
    /// An agent token: one connection, within its grants and budget. The token is kept to
    /// count each request against its budget when it is sent.
    Agent { token: Secret, record: AgentTokenRecord },
    /// An API key with the `proxy` scope: every connection of its environment.
    Key(Principal),
}

impl Caller {
    /// The environment the caller acts in.
    fn environment(&self) -> Result<EnvironmentId, ApiError> {
        match self {
            Caller::Agent { record, .. } => {
                EnvironmentId::new(&record.environment).map_err(|_| ApiError::unauthorized())
            }
            Caller::Key(principal) => Ok(principal.environment.clone()),
        }
    }
}

/// `/mcp` and the protected resource metadata, capped at `body_limit` per request.
pub(crate) fn router(state: &AppState, body_limit: usize) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(allowed_hosts(&state.public_url))
        .with_allowed_origins(allowed_origins(&state.public_url))
        .enforce_origin_validation()
        // The body-limit layer below answers first, as JSON; this only backs it up.
        .with_max_request_body_bytes(body_limit.saturating_add(1));
    let handler_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(tools::LatchkeyTools::new(handler_state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let mcp = Router::new()
        .route_service(MCP_PATH, service)
        // The caller is checked before any body is read (the outer layer runs first).
        .route_layer(middleware::from_fn(move |request: Request, next: Next| {
            crate::body_limit::enforce(body_limit, request, next)
        }))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route(CLIENT_METADATA_PATH, axum::routing::get(client_metadata))
        .route(resource::METADATA_PATH, axum::routing::get(resource::metadata))
        .route(
            &format!("{}{MCP_PATH}", resource::METADATA_PATH),
            axum::routing::get(resource::metadata),
        )
        .merge(mcp)
}

/// The loopback names, which a server whose public URL is on this machine answers to.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

fn is_loopback(public_url: &url::Url) -> bool {
    public_url.host_str().is_some_and(|host| LOOPBACK.contains(&host))
}

/// The hosts `/mcp` answers to (DNS rebinding protection): the public URL's, or every loopback
/// name when it is on this machine.
fn allowed_hosts(public_url: &url::Url) -> Vec<String> {
    if is_loopback(public_url) {
        return LOOPBACK.iter().map(|h| h.to_string()).collect();
    }
    vec![public_url.host_str().unwrap_or_default().to_owned()]
}

/// The browser origins that may call `/mcp` (agents send none): the public URL's, with its
/// port spelled out, or any loopback origin when it is on this machine.
fn allowed_origins(public_url: &url::Url) -> Vec<String> {
    let scheme = public_url.scheme();
    if is_loopback(public_url) {
        return LOOPBACK.iter().map(|h| format!("{scheme}://{h}:*")).collect();
    }
    let port = public_url.port_or_known_default().unwrap_or(443);
    vec![format!("{scheme}://{}:{port}", public_url.host_str().unwrap_or_default())]
}

/// Authenticates a request to `/mcp`: an agent token that is live (its grants and budget are
/// checked per request by the `request` tool), or an API key that holds `proxy`. A refusal
/// is the usual JSON error; a 401 or 403 also carries the RFC 6750 / RFC 9728 challenge.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let address = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Some(presented) = access::bearer(&request) else {
        metrics::counter!(access::AUTH_FAILURES, "reason" => "missing").increment(1);
        return resource::challenge(&state, ApiError::unauthorized(), None);
    };
    let caller = if presented.expose().starts_with(latchkey_engine::AGENT_TOKEN_PREFIX) {
        match state.engine.agent_tokens().check(&presented).await {
            Ok(Ok(record)) => {
                state.auth_throttle.succeeded(address);
                Caller::Agent { token: presented, record }
            }
            Ok(Err(AgentRefusal::Invalid)) => {
                let refusal = access::invalid_key(&state, address).await;
                return resource::challenge(&state, refusal, Some("invalid_token"));
            }
            Ok(Err(refusal @ AgentRefusal::Expired(_))) => {
                let refusal = ApiError::refused(Refusal::AgentTokenExpired, refusal.to_string());
                return resource::challenge(&state, refusal, Some("invalid_token"));
            }
            // `check` refuses nothing else: grants and budget are the tools' to check.
            Ok(Err(refusal)) => {
                return ApiError::refused(Refusal::OutsideGrant, refusal.to_string())
                    .into_response();
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        match access::key_principal(&state, request.headers(), &presented, address).await {
            Ok(principal) => {
                let needed = access::scope_for(request.method().as_str(), MCP_PATH);
                if !principal.may(needed) {
                    let refusal = access::lacks_scope(
                        &principal,
                        needed,
                        request.method().as_str(),
                        MCP_PATH,
                    );
                    return resource::challenge(&state, refusal, Some("insufficient_scope"));
                }
                Caller::Key(principal)
            }
            Err(refusal) if refusal.status() == http::StatusCode::UNAUTHORIZED => {
                return resource::challenge(&state, refusal, Some("invalid_token"));
            }
            Err(refusal) => return refusal.into_response(),
        }
    };
    request.extensions_mut().insert(Arc::new(caller));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_public_urls_allow_every_loopback_name() {
        let local = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(allowed_hosts(&local), LOOPBACK);
        assert_eq!(allowed_origins(&local)[0], "http://localhost:*");
        let public = url::Url::parse("https://latchkey.example.com").unwrap();
        assert_eq!(allowed_hosts(&public), ["latchkey.example.com"]);
        assert_eq!(allowed_origins(&public), ["https://latchkey.example.com:443"]);
    }
}
