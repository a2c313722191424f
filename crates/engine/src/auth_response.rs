//! Reading what token, discovery, device-authorization and session-login endpoints answer: whole,
//! under [`AUTH_RESPONSE_LIMIT`], far below the cap for API responses.

use bytes::Bytes;
use latchkey_net::{NetError, UpstreamResponse};

use crate::EngineError;

/// Largest answer accepted from a token, discovery, device-authorization or session-login
/// endpoint: 1 MiB. Real ones are a few kilobytes; a larger one fails with
/// [`NetError::ResponseTooLarge`] before anything in it is parsed or stored, so the connection
/// keeps the tokens it had.
pub const AUTH_RESPONSE_LIMIT: u64 = 1024 * 1024;

/// The body of `response` from `endpoint` (e.g. "token endpoint", for the log), read under
/// [`AUTH_RESPONSE_LIMIT`].
pub(crate) async fn read(
    response: UpstreamResponse,
    endpoint: &'static str,
) -> Result<Bytes, EngineError> {
    response.limited_to(AUTH_RESPONSE_LIMIT).bytes().await.map_err(|e| refused(e, endpoint))
}

/// [`read`], as JSON.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    response: UpstreamResponse,
    endpoint: &'static str,
) -> Result<T, EngineError> {
    response.limited_to(AUTH_RESPONSE_LIMIT).json().await.map_err(|e| refused(e, endpoint))
}

fn refused(err: NetError, endpoint: &'static str) -> EngineError {
    if let NetError::ResponseTooLarge { limit } = err {
        tracing::warn!(endpoint, limit, "refused: the {endpoint}'s response is too large");
    }
    err.into()
}
