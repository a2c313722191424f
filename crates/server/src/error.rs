//! Errors as the REST API shows them: a status, a stable `code`, and a message that never holds a
//! secret. The engine decides whose fault an error is and its code where it raises it; this
//! module only maps that class to a status, in one exhaustive table ([`status_of`]), and keeps
//! internal detail in the log.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_engine::{
    CallerCode, ConfigurationCode, EngineError, ErrorClass, INTERNAL_MESSAGE, InternalCode,
    UpstreamCode,
};
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// Human-readable message; never holds a secret.
    pub message: String,
    /// The request field at fault, for `invalid_request` (`id`, `config.sub`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The third-party API's status, when the failure came from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
}

/// Refusals the server makes before the engine is asked anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No API key, or the wrong one.
    Unauthorized,
    /// The API key lacks the scope the route needs (the message names it).
    InsufficientScope,
    /// The request body exceeds the route's cap.
    PayloadTooLarge,
    /// The body's `Content-Type` is not the one the route reads.
    UnsupportedMediaType,
    /// The route exists, but not for this method.
    MethodNotAllowed,
    /// An agent token whose lifetime is over.
    AgentTokenExpired,
    /// A request outside what the agent token was granted (another connection, method or path,
    /// or a route other than the proxy).
    OutsideGrant,
    /// The agent token's request budget is spent.
    AgentTokenSpent,
}

impl Refusal {
    /// Every refusal, for tables and tests.
    pub const ALL: &'static [Refusal] = &[
        Refusal::Unauthorized,
        Refusal::InsufficientScope,
        Refusal::PayloadTooLarge,
        Refusal::UnsupportedMediaType,
        Refusal::MethodNotAllowed,
        Refusal::AgentTokenExpired,
        Refusal::OutsideGrant,
        Refusal::AgentTokenSpent,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::InsufficientScope => "insufficient_scope",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::AgentTokenExpired => "agent_token_expired",
            Refusal::OutsideGrant => "outside_grant",
            Refusal::AgentTokenSpent => "agent_token_spent",
        }
    }
}

/// What an error response is about: an engine error's class, or a refusal of the server's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Classified by the engine where it was raised.
    Engine(ErrorClass),
    /// Refused by the server itself.
    Server(Refusal),
}

impl Class {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Class::Engine(class) => class.code(),
            Class::Server(refusal) => refusal.code(),
        }
    }
}

/// The one table from an error's class (its fault and code) to an HTTP status. No arm is a
/// catch-all: a new code does not compile until it is given a status here.
///
/// The fault sets the family — the caller's is a 4xx, the configuration's a 422 (409 for
/// stored credentials that no longer open), the third-party API's a 502 (504 for a timeout), and
/// Latchkey's own a 500 (503 while another instance holds a refresh lease) — and the code
/// refines it.
pub fn status_of(class: Class) -> StatusCode {
    use CallerCode as C;
    use ConfigurationCode as K;
    use ErrorClass::{Caller, Configuration, Internal, Upstream};
    use StatusCode as S;
    use UpstreamCode as U;
    match class {
        Class::Server(Refusal::Unauthorized) => S::UNAUTHORIZED,
        Class::Server(Refusal::InsufficientScope) => S::FORBIDDEN,
        Class::Server(Refusal::PayloadTooLarge) => S::PAYLOAD_TOO_LARGE,
        Class::Server(Refusal::UnsupportedMediaType) => S::UNSUPPORTED_MEDIA_TYPE,
        Class::Server(Refusal::MethodNotAllowed) => S::METHOD_NOT_ALLOWED,
        Class::Server(Refusal::AgentTokenExpired) => S::UNAUTHORIZED,
        Class::Server(Refusal::OutsideGrant) => S::FORBIDDEN,
        Class::Server(Refusal::AgentTokenSpent) => S::TOO_MANY_REQUESTS,
        Class::Engine(class) => match class {
            Caller(
                C::InvalidRequest
                | C::AuthMethodNotFound
                | C::UnsafePath
                | C::InvalidUrl
                | C::InvalidState
                | C::FlowExpired
                | C::IssuerMismatch
                | C::AccessDenied
                | C::ProviderError
                | C::MissingCode,
            ) => S::BAD_REQUEST,
            Caller(C::HostNotAllowed | C::BlockedAddress) => S::FORBIDDEN,
            Caller(
                C::ConnectorNotFound
                | C::ConnectionNotFound
                | C::IntegrationNotFound
                | C::ConnectSessionNotFound
                | C::EnvironmentNotFound
                | C::ApiKeyNotFound
                | C::WebhookDeliveryNotFound
                | C::AgentTokenNotFound
                | C::NotFound,
            ) => S::NOT_FOUND,
            Caller(C::Conflict | C::NeedsReauth) => S::CONFLICT,
            Caller(C::ConnectSessionUnusable) => S::GONE,
            Caller(C::CredentialsNotApplicable) => S::UNPROCESSABLE_ENTITY,
            Caller(C::RateLimited) => S::TOO_MANY_REQUESTS,
            Configuration(
                K::ConnectorMisconfigured
                | K::IntegrationIncomplete
                | K::IntegrationMisconfigured
                | K::CredentialsNotApplicable
                | K::ScriptFailed
                | K::ScriptLimitExceeded
                | K::ScriptAborted,
            ) => S::UNPROCESSABLE_ENTITY,
            Configuration(K::CredentialsUnreadable) => S::CONFLICT,
            Upstream(
                U::UpstreamUnreachable
                | U::UpstreamResponseTooLarge
                | U::TokenRefused
                | U::TokenEndpointUnavailable
                | U::TokenResponseMalformed
                | U::CredentialTestFailed
                | U::SessionLoginRefused
                | U::SessionLoginFailed
                | U::DiscoveryFailed,
            ) => S::BAD_GATEWAY,
            Upstream(U::UpstreamTimeout) => S::GATEWAY_TIMEOUT,
            Internal(InternalCode::Internal) => S::INTERNAL_SERVER_ERROR,
            Internal(InternalCode::RefreshInProgress) => S::SERVICE_UNAVAILABLE,
        },
    }
}

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    class: Class,
    body: ErrorBody,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    retry_after: Option<Duration>,
}

impl ApiError {
    fn of(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            body: ErrorBody {
                code: class.code(),
                message: message.into(),
                field: None,
                upstream_status: None,
            },
            retry_after: None,
        }
    }

    /// 400 `invalid_request`: the request (its body, path or query) is malformed.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::of(Class::Engine(ErrorClass::Caller(CallerCode::InvalidRequest)), message)
    }

    /// The same error, naming the request field at fault.
    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    /// 404 `not_found`: no route here.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::of(Class::Engine(ErrorClass::Caller(CallerCode::NotFound)), message)
    }

    /// 500 `internal`: `detail` goes to the log, the client reads a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::of(Class::Engine(ErrorClass::Internal(InternalCode::Internal)), INTERNAL_MESSAGE)
    }

    /// A refusal of the server's own.
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        Self::of(Class::Server(refusal), message)
    }

    /// 401 with code `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::refused(
            Refusal::Unauthorized,
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        status_of(self.class)
    }

    /// The body this error is answered with.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (status_of(self.class), Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let class = err.class();
        match class {
            ErrorClass::Internal(_) => tracing::error!(error = %err, "internal error"),
            ErrorClass::Configuration(ConfigurationCode::CredentialsUnreadable) => {
                tracing::error!(
                    error = %err,
                    "stored credentials do not open: the database was edited, or a key is missing"
                );
            }
            ErrorClass::Configuration(_) => tracing::warn!(error = %err, "configuration error"),
            ErrorClass::Caller(_) | ErrorClass::Upstream(_) => {}
        }
        let mut error = Self::of(Class::Engine(class), err.public_message());
        error.body.field = err.field().map(str::to_owned);
        error.body.upstream_status = err.upstream_status();
        error.retry_after = err.retry_after();
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_engine::Fault;

    /// The table, written out once more by hand: a change to a status shows up as a diff here.
    const EXPECTED: &[(&str, &str, u16)] = &[
        ("caller", "invalid_request", 400),
        ("caller", "auth_method_not_found", 400),
        ("caller", "unsafe_path", 400),
        ("caller", "invalid_url", 400),
        ("caller", "host_not_allowed", 403),
        ("caller", "blocked_address", 403),
        ("caller", "connector_not_found", 404),
        ("caller", "connection_not_found", 404),
        ("caller", "integration_not_found", 404),
        ("caller", "connect_session_not_found", 404),
        ("caller", "environment_not_found", 404),
        ("caller", "api_key_not_found", 404),
        ("caller", "webhook_delivery_not_found", 404),
        ("caller", "agent_token_not_found", 404),
        ("caller", "not_found", 404),
        ("caller", "conflict", 409),
        ("caller", "needs_reauth", 409),
        ("caller", "credentials_not_applicable", 422),
        ("caller", "invalid_state", 400),
        ("caller", "flow_expired", 400),
        ("caller", "issuer_mismatch", 400),
        ("caller", "access_denied", 400),
        ("caller", "provider_error", 400),
        ("caller", "missing_code", 400),
        ("caller", "connect_session_unusable", 410),
        ("caller", "rate_limited", 429),
        ("configuration", "connector_misconfigured", 422),
        ("configuration", "integration_incomplete", 422),
        ("configuration", "integration_misconfigured", 422),
        ("configuration", "credentials_not_applicable", 422),
        ("configuration", "credentials_unreadable", 409),
        ("configuration", "script_failed", 422),
        ("configuration", "script_limit_exceeded", 422),
        ("configuration", "script_aborted", 422),
        ("upstream", "upstream_unreachable", 502),
        ("upstream", "upstream_timeout", 504),
        ("upstream", "upstream_response_too_large", 502),
        ("upstream", "token_refused", 502),
        ("upstream", "token_endpoint_unavailable", 502),
        ("upstream", "token_response_malformed", 502),
        ("upstream", "credential_test_failed", 502),
        ("upstream", "session_login_refused", 502),
        ("upstream", "session_login_failed", 502),
        ("upstream", "discovery_failed", 502),
        ("internal", "internal", 500),
        ("internal", "refresh_in_progress", 503),
        ("server", "unauthorized", 401),
        ("server", "insufficient_scope", 403),
        ("server", "payload_too_large", 413),
        ("server", "unsupported_media_type", 415),
        ("server", "method_not_allowed", 405),
        ("server", "agent_token_expired", 401),
        ("server", "outside_grant", 403),
        ("server", "agent_token_spent", 429),
    ];

    fn fault_name(class: Class) -> &'static str {
        match class {
            Class::Engine(c) => match c.fault() {
                Fault::Caller => "caller",
                Fault::Configuration => "configuration",
                Fault::Upstream => "upstream",
                Fault::Internal => "internal",
            },
            Class::Server(_) => "server",
        }
    }

    #[test]
    fn every_class_has_the_documented_status() {
        let classes: Vec<Class> = ErrorClass::all()
            .map(Class::Engine)
            .chain(Refusal::ALL.iter().copied().map(Class::Server))
            .collect();
        assert_eq!(classes.len(), EXPECTED.len(), "every class is in EXPECTED, once");
        for class in classes {
            let key = (fault_name(class), class.code());
            let expected = EXPECTED
                .iter()
                .find(|(f, c, _)| (*f, *c) == key)
                .unwrap_or_else(|| panic!("{key:?} missing from EXPECTED"));
            assert_eq!(status_of(class).as_u16(), expected.2, "{key:?}");
        }
    }

    #[test]
    fn the_fault_sets_the_status_family() {
        for class in ErrorClass::all() {
            let status = status_of(Class::Engine(class));
            let ok = match class.fault() {
                Fault::Caller => status.is_client_error(),
                Fault::Configuration => matches!(status.as_u16(), 409 | 422),
                Fault::Upstream => matches!(status.as_u16(), 502 | 504),
                Fault::Internal => {
                    status.is_server_error() && !matches!(status.as_u16(), 502 | 504)
                }
            };
            assert!(ok, "{class:?} → {status}");
        }
    }

    /// The docs' error table lists every code with the status the table gives it.
    #[test]
    fn docs_api_md_lists_every_code_with_its_status() {
        let docs = include_str!("../../../docs/api.md");
        for (_, code, status) in EXPECTED {
            let row = docs
                .lines()
                .filter(|l| l.starts_with("| "))
                .find(|l| {
                    l.split('|').nth(1).is_some_and(|cell| cell.contains(&format!("`{code}`")))
                })
                .unwrap_or_else(|| panic!("docs/api.md has no row for `{code}`"));
            let cell = row.split('|').nth(2).unwrap_or_default();
            assert!(cell.contains(&status.to_string()), "`{code}` is {status}; docs say {row}");
        }
    }
}
