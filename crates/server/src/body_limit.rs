//! Explicit request-body caps per route group. A body over its route's cap is answered with 413
//! and the JSON `ErrorBody` (`payload_too_large`), whether the client declared its length or sent
//! it chunked; nothing of it reaches a handler.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;

use crate::ApiError;
use crate::error::Refusal;

/// The caps, in bytes. `BodyLimits::default()` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// JSON API routes under `/v1` and the hosted connect page's form. Default 1 MiB.
    pub api: usize,
    /// `PUT /v1/connectors/{id}` (a connector file, scripts included). Default 4 MiB.
    pub connector_upload: usize,
    /// Request bodies sent through the proxy. Default 32 MiB. They are buffered, not streamed:
    /// a 401 is retried once with fresh credentials, a Digest challenge is answered by sending
    /// again, and `before_action` hooks see the body, so it must be at hand more than once.
    pub proxy: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { api: 1 << 20, connector_upload: 4 << 20, proxy: 32 << 20 }
    }
}

/// How much of a refused body is still read (and dropped) past the cap before answering, so a
/// client that does not wait for `100 Continue` reads the 413 instead of a connection reset
/// (closing a socket with unread data makes the kernel send RST). A declared length further
/// past the cap is answered at once.
const LINGER_BYTES: usize = 4 << 20;

/// Middleware: reads the request body under `limit` and hands it on, or answers 413.
///
/// Every route with a body reads it whole anyway (JSON, a connector file, a proxied request that
/// may be sent twice), so reading it here costs no extra memory.
pub(crate) async fn enforce(limit: usize, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > limit as u64) {
        let expects_continue = parts
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // With `Expect: 100-continue` the client sends nothing until told to: answer now.
        if !expects_continue && declared <= (limit + LINGER_BYTES) as u64 {
            let _ = read(body, limit).await;
        }
        return too_large(limit, parts.uri.path());
    }
    match read(body, limit).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(Refused::TooLarge) => too_large(limit, parts.uri.path()),
        Err(Refused::Unreadable) => {
            ApiError::invalid_request("the request body could not be read").into_response()
        }
    }
}

enum Refused {
    TooLarge,
    Unreadable,
}

/// The whole body if it fits in `limit`; past it, drops up to [`LINGER_BYTES`] more and fails.
/// (Written here rather than with `http_body_util::Limited`, which stops reading at the cap.)
async fn read(mut body: Body, limit: usize) -> Result<Bytes, Refused> {
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Refused::Unreadable)?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > limit + LINGER_BYTES {
            break;
        }
        if seen <= limit {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit { Err(Refused::TooLarge) } else { Ok(kept.freeze()) }
}

fn too_large(limit: usize, path: &str) -> Response {
    tracing::info!(path, limit, "refused: request body over the route's limit");
    ApiError::refused(
        Refusal::PayloadTooLarge,
        format!("the request body exceeds this route's limit of {limit} bytes"),
    )
    .into_response()
}
