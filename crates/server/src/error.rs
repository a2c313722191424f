//! Errors as the REST API shows them: a status, a stable `code`, and a message that never holds a
//! secret. Internal detail goes to the log, not to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_engine::{EngineError, FlowError};
use latchkey_net::NetError;
use latchkey_store::StoreError;
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// Human-readable message; never holds a secret.
    pub message: String,
    /// The third-party API's status, when the failure came from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
}

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody { code, message: message.into(), upstream_status: None },
            retry_after: None,
        }
    }

    /// 400 with code `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 with code `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        use StatusCode as S;
        let message = err.to_string();
        let (status, code) = match &err {
            EngineError::ConnectorNotFound(_) => (S::NOT_FOUND, "connector_not_found"),
            EngineError::ConnectionNotFound(_) => (S::NOT_FOUND, "connection_not_found"),
            EngineError::IntegrationNotFound(_) => (S::NOT_FOUND, "integration_not_found"),
            EngineError::AuthMethodNotFound { .. } => (S::BAD_REQUEST, "auth_method_not_found"),
            EngineError::InvalidInput(_) => (S::BAD_REQUEST, "invalid_request"),
            EngineError::Conflict(_) => (S::CONFLICT, "conflict"),
            EngineError::Auth(_) => (S::UNPROCESSABLE_ENTITY, "credentials_not_applicable"),
            EngineError::Connector { .. } => (S::UNPROCESSABLE_ENTITY, "connector_misconfigured"),
            EngineError::TestFailed { .. } => (S::BAD_GATEWAY, "credential_test_failed"),
            EngineError::Net(net) => match net {
                NetError::HostNotAllowed { .. } => (S::FORBIDDEN, "host_not_allowed"),
                NetError::UnsafePath { .. } => (S::BAD_REQUEST, "unsafe_path"),
                NetError::InvalidUrl(_) => (S::BAD_REQUEST, "invalid_url"),
                NetError::Timeout => (S::GATEWAY_TIMEOUT, "upstream_timeout"),
                NetError::ResponseTooLarge { .. } => {
                    (S::BAD_GATEWAY, "upstream_response_too_large")
                }
                NetError::BlockedAddress => (S::FORBIDDEN, "blocked_address"),
                NetError::Connect(_) | NetError::Transport(_) => {
                    (S::BAD_GATEWAY, "upstream_unreachable")
                }
                NetError::Build(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            EngineError::Flow(flow) => match flow {
                FlowError::InvalidState => (S::BAD_REQUEST, "invalid_state"),
                FlowError::Expired => (S::BAD_REQUEST, "flow_expired"),
                FlowError::IssuerMismatch => (S::BAD_REQUEST, "issuer_mismatch"),
                FlowError::SessionUnusable => (S::GONE, "connect_session_unusable"),
                FlowError::Provider { .. } => (S::BAD_REQUEST, "provider_error"),
                FlowError::MissingCode => (S::BAD_REQUEST, "missing_code"),
            },
            EngineError::Token(token) => match token {
                latchkey_core::oauth2::TokenError::Malformed(_) => {
                    (S::BAD_GATEWAY, "token_response_malformed")
                }
                _ if token.is_transient() => (S::BAD_GATEWAY, "token_endpoint_unavailable"),
                _ => (S::BAD_GATEWAY, "token_refused"),
            },
            EngineError::NeedsReauth(_) => (S::CONFLICT, "needs_reauth"),
            EngineError::Script { error, .. } => match error {
                latchkey_engine::ScriptError::CpuLimit
                | latchkey_engine::ScriptError::MemoryLimit
                | latchkey_engine::ScriptError::StackOverflow
                | latchkey_engine::ScriptError::WallTimeLimit(_)
                | latchkey_engine::ScriptError::HttpRequestLimit(_)
                | latchkey_engine::ScriptError::TooLarge { .. } => {
                    (S::UNPROCESSABLE_ENTITY, "script_limit_exceeded")
                }
                _ => (S::UNPROCESSABLE_ENTITY, "script_failed"),
            },
            EngineError::ScriptAborted { .. } => (S::UNPROCESSABLE_ENTITY, "script_aborted"),
            EngineError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
            EngineError::Session(session) if session.is_refused_credentials() => {
                (S::BAD_GATEWAY, "session_login_refused")
            }
            EngineError::Session(_) => (S::BAD_GATEWAY, "session_login_failed"),
            EngineError::Store(store) => match store {
                StoreError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
                StoreError::Conflict { .. } | StoreError::VersionConflict { .. } => {
                    (S::CONFLICT, "conflict")
                }
                // Not the caller's fault, but theirs to act on (re-authorise): the message
                // names the connection; the 409 is logged for operators below.
                StoreError::CredentialsUnreadable { .. } => (S::CONFLICT, "credentials_unreadable"),
                StoreError::Crypto(_)
                | StoreError::Database(_)
                | StoreError::Migration(_)
                | StoreError::WrongKey
                | StoreError::MissingKey
                | StoreError::KeyRetired { .. }
                | StoreError::KeyInUse { .. } => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
        };
        let upstream_status = match &err {
            EngineError::Token(latchkey_core::oauth2::TokenError::Provider { status, .. })
            | EngineError::Token(latchkey_core::oauth2::TokenError::Status { status }) => {
                Some(*status)
            }
            EngineError::TestFailed { status } => Some(*status),
            _ => None,
        };
        if code == "credentials_unreadable" {
            tracing::error!(
                error = %message,
                "stored credentials do not open: the database was edited, or a key is missing"
            );
        }
        let message = if status == S::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %message, "internal error");
            "internal error; see the server log".to_string()
        } else {
            message
        };
        let retry_after = match &err {
            EngineError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        Self { status, body: ErrorBody { code, message, upstream_status }, retry_after }
    }
}
