//! `ANY /v1/proxy/{connection}/{*path}`: forwards method, query, body and headers (minus
//! hop-by-hop ones and Latchkey's own `Authorization`), applies the connection's auth, and
//! streams the upstream response back, one chunk at a time, whatever its size. The upstream
//! status is passed through as is; only a failure to reach the API becomes a 502.
//!
//! The request body arrives already read under the proxy's cap (see [`crate::BodyLimits`]). A
//! streaming cap on responses, when the operator sets one, fails visibly: a declared length over
//! it is a 502 `upstream_response_too_large` before anything is sent; crossing it mid-stream
//! aborts the response, so the client sees an incomplete body, never a clean short one.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::HeaderMap;
use latchkey_engine::{ApiRequest, ConnectionId, strip_hop_by_hop};

use crate::extract::Path;
use crate::{ApiError, AppState, Principal};

/// `ANY /v1/proxy/{connection}`.
pub async fn forward_root(
    state: State<AppState>,
    principal: Principal,
    Path(connection): Path<ConnectionId>,
    request: Request,
) -> Result<Response, ApiError> {
    proxy(state, principal, connection, String::new(), request).await
}

/// `ANY /v1/proxy/{connection}/{*path}`.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/v1/proxy/{connection}/{path}",
    tag = "proxy",
    description = "Sends the request to the connection's API at `path` (below the connector's \
        base URL, query string kept) with the connection's credentials applied. Method, body and \
        headers are forwarded, except hop-by-hop headers, `Authorization` (which authenticates \
        the caller to Latchkey) and `X-Latchkey-*`. The API's status, headers and body come back \
        as they are; Latchkey's own errors are JSON `ErrorBody`s. `/v1/proxy/{connection}` \
        reaches the base URL itself.",
    params(
        ("connection" = String, Path, description = "The connection's id."),
        ("path" = String, Path, description = "The API path below the base URL; may contain `/`."),
    ),
    responses(
        (status = "default", description = "The API's own response, passed through."),
        (status = 403, description = "`host_not_allowed` or `blocked_address`.", body = crate::ErrorBody),
        (status = 404, description = "`connection_not_found`.", body = crate::ErrorBody),
        (status = 409, description = "`needs_reauth`: the user must connect again.", body = crate::ErrorBody),
        (status = 429, description = "`rate_limited`: the connector's `rate_limit` would have made the request wait past `max_wait_ms`; nothing was sent. `Retry-After` says when to try again. (An API's own 429 comes back as the default response.)", body = crate::ErrorBody),
        (status = 413, description = "`payload_too_large`: the request body exceeds the proxy's limit (default 32 MiB); nothing was sent.", body = crate::ErrorBody),
        (status = 502, description = "`upstream_unreachable`, `token_refused`, `upstream_response_too_large` (a response over a configured limit, refused before anything is sent when its declared length shows it; crossing the limit mid-stream aborts the response instead), …", body = crate::ErrorBody),
        (status = 504, description = "`upstream_timeout`.", body = crate::ErrorBody),
    )
)]
pub async fn forward(
    state: State<AppState>,
    principal: Principal,
    Path((connection, path)): Path<(ConnectionId, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    proxy(state, principal, connection, path, request).await
}

async fn proxy(
    State(state): State<AppState>,
    principal: Principal,
    connection: ConnectionId,
    path: String,
    request: Request,
) -> Result<Response, ApiError> {
    state.engine.connections().check_environment(&principal.environment, &connection).await?;
    let (parts, body) = request.into_parts();
    // The path as the caller sent it (still percent-encoded), not axum's decoded capture, so
    // that `%2F` cannot turn into a separator on the way through.
    // `/v1/proxy/{connection}` alone is the base URL itself (an MCP server's endpoint), with a
    // slash after it the path below.
    let raw_path = raw_tail(parts.uri.path()).unwrap_or_else(|| format!("/{path}"));
    let path = match parts.uri.query() {
        Some(query) => format!("{raw_path}?{query}"),
        None => raw_path,
    };
    let mut headers = strip_hop_by_hop(&parts.headers);
    headers.remove(http::header::AUTHORIZATION);
    drop_latchkey_headers(&mut headers);
    // Already read whole, under the proxy's cap, by the body-limit layer.
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::invalid_request("the request body could not be read"))?;
    let upstream = state
        .engine
        .dispatch()
        .request(
            &connection,
            ApiRequest { method: parts.method, path, query: Vec::new(), headers, body },
        )
        .await?;
    let status = upstream.status;
    let headers = strip_hop_by_hop(&upstream.headers);
    let stream = upstream.try_into_stream().map_err(latchkey_engine::EngineError::from)?;
    let mut response = Response::builder().status(status);
    if let Some(out) = response.headers_mut() {
        *out = headers;
    }
    // An error item (the streaming cap crossed, the API's connection lost) makes hyper abort
    // the response: no final chunk, so the client knows the body is incomplete.
    response.body(Body::from_stream(stream)).map_err(ApiError::internal)
}

/// The part of `/v1/proxy/{connection}/…` after the connection, with its leading slash (empty
/// when nothing follows the connection). Inside the `/v1` nest axum has already removed that
/// prefix; accept both forms.
fn raw_tail(uri_path: &str) -> Option<String> {
    let rest = uri_path.strip_prefix("/v1").unwrap_or(uri_path).strip_prefix("/proxy/")?;
    Some(rest.find('/').map_or("", |at| &rest[at..]).to_string())
}

/// Headers meant for Latchkey itself are not forwarded.
pub(crate) fn drop_latchkey_headers(headers: &mut HeaderMap) {
    let ours: Vec<_> =
        headers.keys().filter(|k| k.as_str().starts_with("x-latchkey-")).cloned().collect();
    for name in ours {
        headers.remove(name);
    }
}
