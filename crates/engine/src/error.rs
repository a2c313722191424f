//! What can go wrong in the engine, and whose fault it was: the caller's (downstream), the
//! configuration's (a connector, integration or script the operator set up), the third-party
//! API's (upstream), or ours (internal). Each error is classified where it is raised; the server
//! maps the class to a status and a stable code, and shows [`EngineError::public_message`], which
//! never holds a secret.

use std::time::Duration;

use latchkey_core::auth::AuthError;
use latchkey_core::auth::session::SessionError;
use latchkey_core::oauth2::TokenError;
use latchkey_net::NetError;
use latchkey_script::ScriptError;
use latchkey_store::StoreError;

/// Whose fault an error is. It decides the class of the HTTP status (4xx, 422, 502, 500) and
/// whether the detail may be shown to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The caller sent something wrong, or asked for something that is not there.
    Caller,
    /// A connector, integration or connector script is set up wrong for this use.
    Configuration,
    /// The third-party API (or the path to it) failed or refused.
    Upstream,
    /// Latchkey itself (its store, its runtime) failed; the detail goes to the log only.
    Internal,
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No connector with this id.
    #[error("connector `{0}` not found")]
    ConnectorNotFound(String),
    /// No connection with this id.
    #[error("connection `{0}` not found")]
    ConnectionNotFound(String),
    /// No integration with this id.
    #[error("integration `{0}` not found")]
    IntegrationNotFound(String),
    /// No connect session with this id.
    #[error("connect session `{0}` not found")]
    ConnectSessionNotFound(String),
    /// No environment with this id.
    #[error("environment `{0}` not found")]
    EnvironmentNotFound(String),
    /// No API key with this id.
    #[error("API key `{0}` not found")]
    ApiKeyNotFound(String),
    /// No agent token with this id (in the caller's environment), or it was revoked already.
    #[error("agent token `{0}` not found")]
    AgentTokenNotFound(String),
    /// No webhook delivery with this id (in the caller's environment).
    #[error("webhook delivery `{0}` not found")]
    WebhookDeliveryNotFound(String),
    /// Only a failed webhook delivery can be queued again.
    #[error("webhook delivery `{id}` is {status}; only a failed delivery can be retried")]
    WebhookDeliveryNotRetryable {
        /// The delivery.
        id: String,
        /// Where it stands (`pending` or `delivered`).
        status: &'static str,
    },
    /// The connector has no auth method with this name.
    #[error("connector `{connector}` has no auth method `{method}` (it has: {available})")]
    AuthMethodNotFound {
        /// The connector.
        connector: String,
        /// The requested method.
        method: String,
        /// The methods it has, comma-separated.
        available: String,
    },
    /// A field of the caller's request is missing, malformed or not allowed here. The message
    /// names the field, never a secret value.
    #[error("{message}")]
    InvalidRequest {
        /// The request field at fault (`id`, `credentials.token`, `config.sub`, `auth`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The id is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The integration lacks a setting this auth method needs (a client id, a client secret or
    /// key), or holds one that cannot be used.
    #[error("integration `{integration}` {message}")]
    IncompleteIntegration {
        /// The integration.
        integration: String,
        /// What it lacks, e.g. `has no client id`.
        message: String,
    },
    /// The connector could not be applied (a template or placement failed).
    #[error("cannot apply credentials: {0}")]
    Auth(#[from] AuthError),
    /// The connector definition is unusable for this connection (e.g. its base URL template).
    #[error("connector `{connector}` is misconfigured: {message}")]
    Connector {
        /// The connector.
        connector: String,
        /// What is wrong.
        message: String,
    },
    /// The authorization server's metadata (OpenID Connect Discovery, RFC 8414) could not be
    /// had.
    #[error("discovery of `{issuer}`: {error}")]
    Discovery {
        /// The issuer whose metadata was asked for.
        issuer: String,
        /// What went wrong.
        error: DiscoveryError,
    },
    /// The request could not reach the API, or was refused before leaving (host not allowed,
    /// unsafe path).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The credential test got an unexpected answer from the API.
    #[error("credential test failed: the API answered {status}")]
    TestFailed {
        /// HTTP status the API returned.
        status: u16,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A connect flow was refused before any token request (bad, replayed or expired state,
    /// issuer mismatch, session already used) or the provider reported an error on callback.
    #[error("{0}")]
    Flow(#[from] FlowError),
    /// The token endpoint gave no usable token.
    #[error("token endpoint: {0}")]
    Token(#[from] TokenError),
    /// The connection's grant is dead: its user must connect again.
    #[error("connection `{0}` needs to be re-authorised")]
    NeedsReauth(String),
    /// The provider refuses the integration's OAuth client (`invalid_client`,
    /// `unauthorized_client`) and Latchkey holds back token requests for it until the
    /// integration is written again or a probe passes (see `oauth2::misconfigured`).
    #[error("the provider refuses the client of integration `{integration}`: {message}")]
    IntegrationMisconfigured {
        /// The integration.
        integration: String,
        /// What the provider last answered, in safe words.
        message: String,
    },
    /// A connector script failed: it threw, broke a limit, or set something unusable.
    #[error("connector `{connector}` script, {event}: {error}")]
    Script {
        /// The connector.
        connector: String,
        /// The hook that ran.
        event: String,
        /// What went wrong (its message never holds the connection's credentials).
        error: ScriptError,
    },
    /// A connector script's hook returned `false`: the operation was not carried out.
    #[error("connector `{connector}` script stopped the request ({event} returned false)")]
    ScriptAborted {
        /// The connector.
        connector: String,
        /// The hook that returned `false`.
        event: String,
    },
    /// The connector's rate limit (or an API's `Retry-After` being waited out) would hold the
    /// request longer than the connector's `max_wait_ms`; nothing was sent.
    #[error(
        "connector `{connector}`: rate limit reached; retry in {} s",
        retry_after.as_secs_f64().ceil()
    )]
    RateLimited {
        /// The connector.
        connector: String,
        /// How long the caller should wait before trying again.
        retry_after: Duration,
    },
    /// Another refresh of this connection holds its lease (another instance, or one that lost
    /// the lease mid-exchange): nothing was changed, and the caller may try again shortly.
    #[error("connection `{connection}`: {}; retry shortly", if *.lost {
        "the refresh lease was lost during the exchange"
    } else {
        "timed out waiting for another instance's refresh"
    })]
    LeaseBusy {
        /// The connection.
        connection: String,
        /// Whether this caller held the lease and lost it (rather than waited for it in vain).
        lost: bool,
        /// When trying again is likely to find the refresh done.
        retry_after: Duration,
    },
    /// A session login gave no usable session.
    #[error("session login: {0}")]
    Session(#[from] SessionError),
    /// Latchkey failed in a way no input explains (a request it built does not build, the
    /// runtime is shutting down). The detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why authorization-server metadata could not be had. Network failures on the way stay
/// [`EngineError::Net`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The connector's issuer (after templating) is not a URL.
    #[error("the issuer is not a URL: {0}")]
    InvalidIssuer(String),
    /// Neither well-known location serves a document.
    #[error("no discovery document (HTTP {})", .status.map_or_else(|| "-".to_string(), |s| s.to_string()))]
    NoDocument {
        /// The status of the last location tried.
        status: Option<u16>,
    },
    /// The document names another issuer than the one asked for (OpenID Connect Discovery §4.3).
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
    /// A metadata document is not what its specification says (the detail names the field,
    /// never a value).
    #[error("malformed metadata: {0}")]
    Malformed(String),
    /// An MCP server's resource metadata describes another resource (RFC 9728 §3.3).
    #[error("the protected resource metadata names another resource")]
    ResourceMismatch,
    /// The resource metadata URL a server's challenge gave is on another host, which was not
    /// allowed.
    #[error("the resource metadata is on another host ({0}), which is not allowed")]
    ForeignMetadata(String),
    /// The authorization server does not offer PKCE with S256, which the MCP authorization
    /// specification requires.
    #[error("the authorization server does not offer PKCE with S256")]
    PkceUnsupported,
    /// The MCP server did not answer an unauthenticated request with 401.
    #[error("the server answered {status}, not 401, to a request without a token")]
    NotProtected {
        /// Its status.
        status: u16,
    },
}

/// Why a connect flow stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The `state` is unknown, already used, or not bound to this browser.
    #[error(
        "the authorization response does not match a flow in progress (unknown or reused state)"
    )]
    InvalidState,
    /// The flow took longer than its 10 minutes.
    #[error("the connect flow expired; start again")]
    Expired,
    /// RFC 9207: the response's `iss` is not the expected issuer.
    #[error("the authorization response came from an unexpected issuer")]
    IssuerMismatch,
    /// The connect session link is unknown, used, or expired.
    #[error("this connect link is invalid, expired or already used")]
    SessionUnusable,
    /// The user (or the provider on their behalf) did not grant access: `error=access_denied`
    /// on the callback (RFC 6749 §4.1.2.1).
    #[error("access was not granted (the user or the provider refused)")]
    AccessDenied,
    /// The provider returned another error on the callback.
    #[error("the provider returned an error: {code}")]
    Provider {
        /// The OAuth error code, e.g. `server_error` (letters, digits, `_ . -` only).
        code: String,
    },
    /// The callback carries no code (in the parameter the connector names).
    #[error("the authorization response carries no code")]
    MissingCode,
    /// Another callback of the same connect session is being finished (a second window).
    #[error("this connection is being finished in another window")]
    AttemptInProgress,
}

/// Declares a code enum: its variants and the stable string each one shows clients.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every code, for tables and tests.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable, machine-readable code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }
        }
    };
}

codes! {
    /// What the caller got wrong.
    CallerCode {
        /// A request field is missing, malformed or not allowed here.
        InvalidRequest => "invalid_request",
        /// The connector has no such auth method.
        AuthMethodNotFound => "auth_method_not_found",
        /// A proxied path that could leave the API's base URL.
        UnsafePath => "unsafe_path",
        /// A URL that does not parse or is not http(s).
        InvalidUrl => "invalid_url",
        /// The final URL's host is not among the connector's allowed hosts.
        HostNotAllowed => "host_not_allowed",
        /// The host resolves to a private address and blocking is on.
        BlockedAddress => "blocked_address",
        /// No such connector.
        ConnectorNotFound => "connector_not_found",
        /// No such connection.
        ConnectionNotFound => "connection_not_found",
        /// No such integration.
        IntegrationNotFound => "integration_not_found",
        /// No such connect session.
        ConnectSessionNotFound => "connect_session_not_found",
        /// No such environment (or none this key may act in).
        EnvironmentNotFound => "environment_not_found",
        /// No such API key.
        ApiKeyNotFound => "api_key_not_found",
        /// No such webhook delivery.
        WebhookDeliveryNotFound => "webhook_delivery_not_found",
        /// No such agent token (or it was revoked already).
        AgentTokenNotFound => "agent_token_not_found",
        /// No such record (or route).
        NotFound => "not_found",
        /// The id exists, or the record changed meanwhile.
        Conflict => "conflict",
        /// The connection's grant is dead: connect again.
        NeedsReauth => "needs_reauth",
        /// The caller's credentials or body cannot take the connector's placement.
        CredentialsNotApplicable => "credentials_not_applicable",
        /// A callback's `state` is unknown, reused or not bound to this browser.
        InvalidState => "invalid_state",
        /// The connect flow took longer than 10 minutes.
        FlowExpired => "flow_expired",
        /// A callback came from an unexpected issuer.
        IssuerMismatch => "issuer_mismatch",
        /// The user (or the provider) did not grant access on callback.
        AccessDenied => "access_denied",
        /// The provider returned another error on callback.
        ProviderError => "provider_error",
        /// A callback without a code.
        MissingCode => "missing_code",
        /// The connect link is unknown, used or expired.
        ConnectSessionUnusable => "connect_session_unusable",
        /// The connector's rate limit would hold the request too long.
        RateLimited => "rate_limited",
    }
}

codes! {
    /// What is set up wrong: a connector, an integration, a connector script, stored data.
    ConfigurationCode {
        /// The connector's templates or settings fail for this connection.
        ConnectorMisconfigured => "connector_misconfigured",
        /// The integration lacks a client id, secret or key the auth method needs.
        IntegrationIncomplete => "integration_incomplete",
        /// A connector template for the credentials' placement fails.
        CredentialsNotApplicable => "credentials_not_applicable",
        /// Stored credentials do not open (the database was edited, or a key is missing).
        CredentialsUnreadable => "credentials_unreadable",
        /// A connector script threw, did not parse, or set something unusable.
        ScriptFailed => "script_failed",
        /// A connector script went past a limit.
        ScriptLimitExceeded => "script_limit_exceeded",
        /// A connector script's hook returned `false`.
        ScriptAborted => "script_aborted",
        /// The provider refuses the integration's client (`invalid_client`,
        /// `unauthorized_client`).
        IntegrationMisconfigured => "integration_misconfigured",
    }
}

codes! {
    /// How the third-party API (or the path to it) failed.
    UpstreamCode {
        /// The API could not be reached, or the exchange broke off.
        UpstreamUnreachable => "upstream_unreachable",
        /// The API did not answer in time.
        UpstreamTimeout => "upstream_timeout",
        /// The API answered more than a limit.
        UpstreamResponseTooLarge => "upstream_response_too_large",
        /// The token endpoint refused.
        TokenRefused => "token_refused",
        /// The token endpoint failed for now (5xx, 429, `temporarily_unavailable`).
        TokenEndpointUnavailable => "token_endpoint_unavailable",
        /// The token endpoint's answer is not a token response.
        TokenResponseMalformed => "token_response_malformed",
        /// The credential test got an unexpected answer.
        CredentialTestFailed => "credential_test_failed",
        /// A session login was refused (400–403).
        SessionLoginRefused => "session_login_refused",
        /// A session login failed otherwise.
        SessionLoginFailed => "session_login_failed",
        /// The authorization server's metadata could not be had.
        DiscoveryFailed => "discovery_failed",
    }
}

codes! {
    /// What failed on Latchkey's side.
    InternalCode {
        /// Anything unexplained; details in the log only.
        Internal => "internal",
        /// Another refresh of the connection holds its lease; try again shortly.
        RefreshInProgress => "refresh_in_progress",
    }
}

/// An error's fault and code together: the one thing the server needs to pick a status. Each
/// fault has its own codes, so a table over this type is exhaustive without a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The caller's fault.
    Caller(CallerCode),
    /// The configuration's fault.
    Configuration(ConfigurationCode),
    /// The third-party API's fault.
    Upstream(UpstreamCode),
    /// Latchkey's fault.
    Internal(InternalCode),
}

impl ErrorClass {
    /// Whose fault it is.
    pub fn fault(self) -> Fault {
        match self {
            Self::Caller(_) => Fault::Caller,
            Self::Configuration(_) => Fault::Configuration,
            Self::Upstream(_) => Fault::Upstream,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// The stable code clients see.
    pub fn code(self) -> &'static str {
        match self {
            Self::Caller(c) => c.as_str(),
            Self::Configuration(c) => c.as_str(),
            Self::Upstream(c) => c.as_str(),
            Self::Internal(c) => c.as_str(),
        }
    }

    /// Every class there is, for tables and tests.
    pub fn all() -> impl Iterator<Item = ErrorClass> {
        let caller = CallerCode::ALL.iter().copied().map(Self::Caller);
        let configuration = ConfigurationCode::ALL.iter().copied().map(Self::Configuration);
        let upstream = UpstreamCode::ALL.iter().copied().map(Self::Upstream);
        let internal = InternalCode::ALL.iter().copied().map(Self::Internal);
        caller.chain(configuration).chain(upstream).chain(internal)
    }
}

/// What an end user or API caller sees of an internal error.
pub const INTERNAL_MESSAGE: &str = "internal error; see the server log";

impl From<latchkey_core::IdError> for EngineError {
    /// An id that breaks its rules, as the request's `id` field.
    fn from(e: latchkey_core::IdError) -> Self {
        Self::invalid("id", e.to_string())
    }
}

impl EngineError {
    /// `connector` has no auth method `method`: the error names the ones it has.
    pub(crate) fn auth_method_not_found(
        connector: &latchkey_core::Connector,
        method: impl Into<String>,
    ) -> Self {
        Self::AuthMethodNotFound {
            connector: connector.id.clone(),
            method: method.into(),
            available: connector.auth.iter().map(|m| m.id()).collect::<Vec<_>>().join(", "),
        }
    }

    /// A caller's request field that is missing, malformed or not allowed here.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest { field: field.into(), message: message.into() }
    }

    /// Whose fault this is and its stable code, decided by where it was raised.
    pub fn class(&self) -> ErrorClass {
        use CallerCode as C;
        use ConfigurationCode as K;
        use ErrorClass::{Caller, Configuration, Internal, Upstream};
        use UpstreamCode as U;
        match self {
            Self::ConnectorNotFound(_) => Caller(C::ConnectorNotFound),
            Self::ConnectionNotFound(_) => Caller(C::ConnectionNotFound),
            Self::IntegrationNotFound(_) => Caller(C::IntegrationNotFound),
            Self::ConnectSessionNotFound(_) => Caller(C::ConnectSessionNotFound),
            Self::EnvironmentNotFound(_) => Caller(C::EnvironmentNotFound),
            Self::ApiKeyNotFound(_) => Caller(C::ApiKeyNotFound),
            Self::WebhookDeliveryNotFound(_) => Caller(C::WebhookDeliveryNotFound),
            Self::AgentTokenNotFound(_) => Caller(C::AgentTokenNotFound),
            Self::WebhookDeliveryNotRetryable { .. } => Caller(C::Conflict),
            Self::AuthMethodNotFound { .. } => Caller(C::AuthMethodNotFound),
            Self::InvalidRequest { .. } => Caller(C::InvalidRequest),
            Self::Conflict(_) => Caller(C::Conflict),
            Self::IncompleteIntegration { .. } => Configuration(K::IntegrationIncomplete),
            // A template of the connector fails; the rest is about the credentials the caller
            // stored or the body it sent.
            Self::Auth(AuthError::Template(_)) => Configuration(K::CredentialsNotApplicable),
            Self::Auth(
                AuthError::MissingCredential(_)
                | AuthError::InvalidHeaderValue(_)
                | AuthError::Body(_)
                | AuthError::Signing(_),
            ) => Caller(C::CredentialsNotApplicable),
            Self::Connector { .. } => Configuration(K::ConnectorMisconfigured),
            Self::Discovery { error: DiscoveryError::InvalidIssuer(_), .. } => {
                Configuration(K::ConnectorMisconfigured)
            }
            Self::Discovery {
                error:
                    DiscoveryError::NoDocument { .. }
                    | DiscoveryError::IssuerMismatch
                    | DiscoveryError::Malformed(_)
                    | DiscoveryError::ResourceMismatch
                    | DiscoveryError::ForeignMetadata(_)
                    | DiscoveryError::PkceUnsupported
                    | DiscoveryError::NotProtected { .. },
                ..
            } => Upstream(U::DiscoveryFailed),
            Self::Net(net) => match net {
                NetError::HostNotAllowed { .. } => Caller(C::HostNotAllowed),
                NetError::UnsafePath { .. } => Caller(C::UnsafePath),
                NetError::InvalidUrl(_) => Caller(C::InvalidUrl),
                NetError::BlockedAddress => Caller(C::BlockedAddress),
                NetError::Timeout => Upstream(U::UpstreamTimeout),
                NetError::ResponseTooLarge { .. } => Upstream(U::UpstreamResponseTooLarge),
                NetError::Connect(_) | NetError::Transport(_) => Upstream(U::UpstreamUnreachable),
                NetError::Build(_) => Internal(InternalCode::Internal),
            },
            Self::TestFailed { .. } => Upstream(U::CredentialTestFailed),
            Self::Store(store) => match store {
                StoreError::NotFound { .. } => Caller(C::NotFound),
                StoreError::Conflict { .. } | StoreError::VersionConflict { .. } => {
                    Caller(C::Conflict)
                }
                // Not the caller's doing, but theirs to act on (re-authorise); logged for
                // operators by the server.
                StoreError::CredentialsUnreadable { .. } => Configuration(K::CredentialsUnreadable),
                StoreError::Crypto(_)
                | StoreError::Database(_)
                | StoreError::Migration(_)
                | StoreError::WrongKey
                | StoreError::MissingKey
                | StoreError::KeyRetired { .. }
                | StoreError::KeyInUse { .. } => Internal(InternalCode::Internal),
            },
            Self::Flow(flow) => Caller(match flow {
                FlowError::InvalidState => C::InvalidState,
                FlowError::Expired => C::FlowExpired,
                FlowError::IssuerMismatch => C::IssuerMismatch,
                FlowError::SessionUnusable => C::ConnectSessionUnusable,
                FlowError::AccessDenied => C::AccessDenied,
                FlowError::Provider { .. } => C::ProviderError,
                FlowError::MissingCode => C::MissingCode,
                FlowError::AttemptInProgress => C::Conflict,
            }),
            Self::Token(token) if token.is_client_refused() => {
                Configuration(K::IntegrationMisconfigured)
            }
            Self::IntegrationMisconfigured { .. } => Configuration(K::IntegrationMisconfigured),
            Self::Token(token) => Upstream(match token {
                TokenError::Malformed(_) => U::TokenResponseMalformed,
                _ if token.is_transient() => U::TokenEndpointUnavailable,
                TokenError::Provider { .. } | TokenError::Status { .. } => U::TokenRefused,
            }),
            Self::NeedsReauth(_) => Caller(C::NeedsReauth),
            Self::Script { error, .. } => match error {
                ScriptError::CpuLimit
                | ScriptError::MemoryLimit
                | ScriptError::StackOverflow
                | ScriptError::WallTimeLimit(_)
                | ScriptError::HttpRequestLimit(_)
                | ScriptError::TooLarge { .. } => Configuration(K::ScriptLimitExceeded),
                ScriptError::Syntax { .. } | ScriptError::Thrown(_) => {
                    Configuration(K::ScriptFailed)
                }
                ScriptError::Host(_) | ScriptError::Internal(_) => Internal(InternalCode::Internal),
            },
            Self::ScriptAborted { .. } => Configuration(K::ScriptAborted),
            Self::RateLimited { .. } => Caller(C::RateLimited),
            Self::LeaseBusy { .. } => Internal(InternalCode::RefreshInProgress),
            Self::Session(session) if session.is_refused_credentials() => {
                Upstream(U::SessionLoginRefused)
            }
            Self::Session(_) => Upstream(U::SessionLoginFailed),
            Self::Internal(_) => Internal(InternalCode::Internal),
        }
    }

    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        self.class().fault()
    }

    /// The stable, machine-readable code (the ones `docs/api.md` lists).
    pub fn code(&self) -> &'static str {
        self.class().code()
    }

    /// True when the third-party API (or the path to it) is at fault.
    pub fn is_upstream(&self) -> bool {
        self.fault() == Fault::Upstream
    }

    /// What a caller or end user may see: the message itself for every fault but an internal
    /// one, whose detail goes to the log and which reads [`INTERNAL_MESSAGE`] here (a lease
    /// still busy says so, and nothing more). No message holds a secret.
    pub fn public_message(&self) -> String {
        match self.class() {
            ErrorClass::Internal(InternalCode::RefreshInProgress) => self.to_string(),
            ErrorClass::Internal(InternalCode::Internal) => INTERNAL_MESSAGE.to_string(),
            ErrorClass::Caller(_) | ErrorClass::Configuration(_) | ErrorClass::Upstream(_) => {
                self.to_string()
            }
        }
    }

    /// The request field at fault, for a caller's invalid request.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { field, .. } => Some(field),
            _ => None,
        }
    }

    /// How long to wait before trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::LeaseBusy { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The third-party API's status, when the failure came from its answer.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Token(TokenError::Provider { status, .. } | TokenError::Status { status })
            | Self::TestFailed { status }
            | Self::Session(SessionError::Refused(status)) => Some(*status),
            Self::Discovery { error: DiscoveryError::NoDocument { status }, .. } => *status,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_snake_case_and_unique_within_its_fault() {
        let mut seen = std::collections::HashSet::new();
        for class in ErrorClass::all() {
            let code = class.code();
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
            assert!(seen.insert((class.fault(), code)), "{code} twice under {:?}", class.fault());
        }
    }

    #[test]
    fn faults_are_set_where_raised() {
        let cases: Vec<(EngineError, Fault, &str)> = vec![
            (EngineError::invalid("id", "bad id"), Fault::Caller, "invalid_request"),
            (
                EngineError::IncompleteIntegration {
                    integration: "gh".into(),
                    message: "has no client id".into(),
                },
                Fault::Configuration,
                "integration_incomplete",
            ),
            (
                EngineError::Discovery {
                    issuer: "https://idp".into(),
                    error: DiscoveryError::NoDocument { status: Some(404) },
                },
                Fault::Upstream,
                "discovery_failed",
            ),
            (
                EngineError::Discovery {
                    issuer: "x".into(),
                    error: DiscoveryError::InvalidIssuer("relative URL".into()),
                },
                Fault::Configuration,
                "connector_misconfigured",
            ),
            (
                EngineError::ConnectSessionNotFound("s".into()),
                Fault::Caller,
                "connect_session_not_found",
            ),
            (
                EngineError::LeaseBusy {
                    connection: "c".into(),
                    lost: false,
                    retry_after: Duration::from_secs(30),
                },
                Fault::Internal,
                "refresh_in_progress",
            ),
            (EngineError::Net(NetError::Timeout), Fault::Upstream, "upstream_timeout"),
            (EngineError::Net(NetError::UnsafePath { reason: "x" }), Fault::Caller, "unsafe_path"),
            (EngineError::Store(StoreError::Database("db".into())), Fault::Internal, "internal"),
            (
                EngineError::Script {
                    connector: "c".into(),
                    event: "before_action".into(),
                    error: ScriptError::Internal("x".into()),
                },
                Fault::Internal,
                "internal",
            ),
        ];
        for (err, fault, code) in cases {
            assert_eq!((err.fault(), err.code()), (fault, code), "{err}");
        }
    }

    #[test]
    fn internal_detail_stays_out_of_the_public_message() {
        let err = EngineError::Store(StoreError::Database("relation \"secrets\" is locked".into()));
        assert_eq!(err.public_message(), INTERNAL_MESSAGE);
        let busy = EngineError::LeaseBusy {
            connection: "c1".into(),
            lost: false,
            retry_after: Duration::from_secs(30),
        };
        assert!(busy.public_message().contains("c1"), "{}", busy.public_message());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(30)));
        let caller = EngineError::invalid("config.sub", "config `sub` holds a NUL byte");
        assert_eq!(caller.public_message(), "config `sub` holds a NUL byte");
        assert_eq!(caller.field(), Some("config.sub"));
    }

    #[test]
    fn upstream_status_comes_from_the_answer() {
        let err = EngineError::Discovery {
            issuer: "https://idp".into(),
            error: DiscoveryError::NoDocument { status: Some(404) },
        };
        assert_eq!(err.upstream_status(), Some(404));
        assert_eq!(EngineError::Session(SessionError::Refused(401)).upstream_status(), Some(401));
        assert_eq!(EngineError::Net(NetError::Timeout).upstream_status(), None);
    }
}
