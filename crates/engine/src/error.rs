//! What can go wrong in the engine, and whose fault it was: the caller's (downstream), the
//! third-party API's (upstream), or ours (internal). The server maps each to a status and a
//! stable code; no message holds a secret.

use latchkey_core::auth::AuthError;
use latchkey_core::oauth2::TokenError;
use latchkey_net::NetError;
use latchkey_store::StoreError;

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
    /// The caller sent something invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The id is taken.
    #[error("{0} already exists")]
    Conflict(String),
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
    /// A connector script failed: it threw, broke a limit, or set something unusable.
    #[error("connector `{connector}` script, {event}: {error}")]
    Script {
        /// The connector.
        connector: String,
        /// The hook that ran.
        event: String,
        /// What went wrong (its message never holds the connection's credentials).
        error: latchkey_script::ScriptError,
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
        retry_after: std::time::Duration,
    },
    /// A session login gave no usable session.
    #[error("session login: {0}")]
    Session(#[from] latchkey_core::auth::session::SessionError),
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
    /// The provider (or the user) refused.
    #[error("the provider returned an error: {code}")]
    Provider {
        /// The OAuth error code, e.g. `access_denied`.
        code: String,
    },
    /// The callback carries no code.
    #[error("the authorization response carries no code")]
    MissingCode,
}

impl EngineError {
    /// True when the third-party API (or the path to it) is at fault.
    pub fn is_upstream(&self) -> bool {
        match self {
            Self::Net(e) => {
                !matches!(e, NetError::HostNotAllowed { .. } | NetError::UnsafePath { .. })
            }
            Self::TestFailed { .. } => true,
            Self::Token(_) => true,
            Self::Session(_) => true,
            _ => false,
        }
    }
}
