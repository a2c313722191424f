//! `/mcp` as an OAuth protected resource: its metadata document (RFC 9728 §2–3) at
//! `/.well-known/oauth-protected-resource` and `…/mcp`, and the challenge every refused
//! request carries (RFC 9728 §5.1, RFC 6750 §3) so that an MCP client can find the document.
//!
//! Latchkey issues the tokens `/mcp` accepts itself (agent tokens, through its REST API), so
//! the document names no authorization server: an agent is given its token, it does not run
//! an OAuth flow for it.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::MCP_PATH;
use crate::{ApiError, AppState};

/// Where the metadata document is served (also with `/mcp` appended, RFC 9728 §3.1).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The protected resource metadata of `/mcp` (RFC 9728 §2).
#[derive(Debug, Serialize)]
pub struct ResourceMetadata {
    /// The resource identifier: `/mcp` under the public URL.
    pub resource: String,
    /// How the token is sent: in the `Authorization` header only (never in a URL).
    pub bearer_methods_supported: Vec<&'static str>,
    /// A human-readable name.
    pub resource_name: &'static str,
}

/// `/mcp` under `state`'s public URL: the resource identifier.
pub fn resource_url(state: &AppState) -> String {
    format!("{}{MCP_PATH}", state.public_url.as_str().trim_end_matches('/'))
}

/// The URL of the metadata document for `/mcp`.
pub fn metadata_url(state: &AppState) -> String {
    format!("{}{METADATA_PATH}{MCP_PATH}", state.public_url.as_str().trim_end_matches('/'))
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub async fn metadata(State(state): State<AppState>) -> Json<ResourceMetadata> {
    Json(ResourceMetadata {
        resource: resource_url(&state),
        bearer_methods_supported: vec!["header"],
        resource_name: "Latchkey",
    })
}

/// `refusal` as a response that carries `WWW-Authenticate: Bearer resource_metadata="…"`,
/// with the RFC 6750 `error` code when a token was presented (`invalid_token`,
/// `insufficient_scope`).
pub fn challenge(state: &AppState, refusal: ApiError, error: Option<&str>) -> Response {
    let mut value = format!("Bearer resource_metadata=\"{}\"", metadata_url(state));
    if let Some(error) = error {
        value.push_str(&format!(", error=\"{error}\""));
        if error == "insufficient_scope" {
            value.push_str(", scope=\"proxy\"");
        }
    }
    let mut response = refusal.into_response();
    match http::HeaderValue::from_str(&value) {
        Ok(value) => {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
        }
        // The public URL is a parsed URL: it holds nothing a header cannot.
        Err(e) => tracing::error!(error = %e, "the resource metadata URL is not a header value"),
    }
    response
}
