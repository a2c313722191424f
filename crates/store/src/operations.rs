//! The operation log: what Latchkey did for each connection — auth flow steps, refreshes,
//! health checks, webhook deliveries, API requests — with the outcome, the upstream status,
//! the time it took and the error in safe words. It holds no body, no query value and no header
//! value: a request is recorded by its method, host and path (query values replaced by `…`).
//! Rows are written in batches off the request path and trimmed by age and by a row cap.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What kind of work an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// An API request through a connection (the proxy, the CLI's `request`, an embedding
    /// program).
    Request,
    /// A token refresh or session login.
    Refresh,
    /// A credential test or health check.
    Check,
    /// A step of a connect flow (a token exchange on callback, a connection stored).
    Connect,
    /// A webhook delivery attempt.
    Webhook,
    /// Revoking a deleted connection's tokens at the provider.
    Revocation,
}

impl OperationKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 6] =
        [Self::Request, Self::Refresh, Self::Check, Self::Connect, Self::Webhook, Self::Revocation];

    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Refresh => "refresh",
            Self::Check => "check",
            Self::Connect => "connect",
            Self::Webhook => "webhook",
            Self::Revocation => "revocation",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no operation kind or outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownOperationValue {
    /// `kind`, `outcome` or `status class`.
    pub what: &'static str,
    /// What was given.
    pub value: String,
    /// The values there are.
    pub expected: &'static str,
}

impl FromStr for OperationKind {
    type Err = UnknownOperationValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownOperationValue {
            what: "kind",
            value: s.to_owned(),
            expected: "request, refresh, check, connect, webhook, revocation",
        })
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationOutcome {
    /// It worked (for a request: the API answered below 400).
    Success,
    /// It failed: an error, or an API answer of 400 or more.
    Failure,
}

impl OperationOutcome {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl FromStr for OperationOutcome {
    type Err = UnknownOperationValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Self::Success),
            "failure" => Ok(Self::Failure),
            other => Err(UnknownOperationValue {
                what: "outcome",
                value: other.to_owned(),
                expected: "success, failure",
            }),
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// `op_…`, unique.
    pub id: String,
    /// The environment it happened in.
    pub environment: String,
    /// When it started (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What it was.
    pub kind: OperationKind,
    /// How it ended.
    pub outcome: OperationOutcome,
    /// The connection it was for.
    pub connection: Option<String>,
    /// The connection's (or flow's) integration.
    pub integration: Option<String>,
    /// The connector.
    pub connector: Option<String>,
    /// The status the upstream (API, token endpoint, webhook receiver) answered, if it did.
    pub upstream_status: Option<u16>,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// The error's stable code, when it failed with one.
    pub error_code: Option<String>,
    /// What went wrong, in safe words.
    pub message: Option<String>,
    /// The request's method, when it was one.
    pub method: Option<String>,
    /// The host it went to.
    pub host: Option<String>,
    /// The path, query values replaced by `…`.
    pub path: Option<String>,
}

/// Which operations a list returns: those of one environment, and every condition given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationFilter {
    /// The environment.
    pub environment: String,
    /// Only this connection's.
    pub connection: Option<String>,
    /// Only this integration's.
    pub integration: Option<String>,
    /// Only this kind.
    pub kind: Option<OperationKind>,
    /// Only this outcome.
    pub outcome: Option<OperationOutcome>,
    /// Only those whose upstream status is in this class (`4` for 4xx, …).
    pub status_class: Option<u16>,
    /// Only those at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only those before this time.
    pub until: Option<OffsetDateTime>,
}

impl OperationFilter {
    /// Every operation of `environment`.
    pub fn in_environment(environment: impl Into<String>) -> Self {
        Self {
            environment: environment.into(),
            connection: None,
            integration: None,
            kind: None,
            outcome: None,
            status_class: None,
            since: None,
            until: None,
        }
    }
}

/// The class a status filter names: `2xx` to `5xx` → 2 to 5.
pub fn status_class(text: &str) -> Result<u16, UnknownOperationValue> {
    match text {
        "2xx" => Ok(2),
        "3xx" => Ok(3),
        "4xx" => Ok(4),
        "5xx" => Ok(5),
        other => Err(UnknownOperationValue {
            what: "status class",
            value: other.to_owned(),
            expected: "2xx, 3xx, 4xx, 5xx",
        }),
    }
}

/// `path` with every query value replaced by `…` (names kept): values may carry secrets (an
/// API key in `?key=`), names say what was asked.
pub fn redact_query(path: &str) -> String {
    let Some((path, query)) = path.split_once('?') else { return path.to_owned() };
    let names: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}=…"),
            None => pair.to_owned(),
        })
        .collect();
    if names.is_empty() { path.to_owned() } else { format!("{path}?{}", names.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_and_names_kept() {
        assert_eq!(redact_query("/v1/items"), "/v1/items");
        assert_eq!(redact_query("/v1/items?key=s3cret&page=2"), "/v1/items?key=…&page=…");
        assert_eq!(redact_query("/x?flag&=v&"), "/x?flag&=…");
        assert_eq!(redact_query("/x?"), "/x");
        for kind in OperationKind::ALL {
            assert_eq!(kind.as_str().parse::<OperationKind>().unwrap(), kind);
        }
        assert!("proxy".parse::<OperationKind>().is_err());
        assert_eq!(status_class("4xx"), Ok(4));
        assert!(status_class("6xx").is_err() && status_class("4").is_err());
    }
}
