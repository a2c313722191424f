//! `rate_limit`: how fast Latchkey may call a connector's API, and how it answers the API's own
//! `429 Too Many Requests` / `503` with `Retry-After` (RFC 9110 §10.2.3, RFC 6585 §4).
//!
//! The engine enforces it; this module only describes and checks it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest `max_wait_ms` and `retry_after_max_ms` a connector may ask for (five minutes):
/// a caller's request is held that long at most.
pub const MAX_RATE_LIMIT_WAIT_MS: u64 = 300_000;

/// Outbound rate limit and `Retry-After` handling for one connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per `per`. Without it Latchkey sets no limit of its own and only follows
    /// the API's `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// The period `requests` are counted over: `second` (default), `minute` or `hour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<RatePeriod>,
    /// How many requests may leave at once after a quiet spell (default 1: evenly spaced, so no
    /// window of length `per` ever holds more than `requests`). Above 1, up to
    /// `burst + requests - 1` may fall in one window: only for APIs with a token bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Who shares one limit: each `connection` (default), each `integration` (one OAuth app;
    /// connections without one share the connector's), or the whole `connector`.
    #[serde(default)]
    pub scope: RateScope,
    /// How long a request may queue for its turn before it fails with `rate_limited` (default
    /// 10000; 0 fails at once). At most 300000.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// The longest `Retry-After` (on a 429 or 503) that Latchkey waits out and then retries the
    /// request once (default 5000; 0 never retries). A longer one is passed to the caller as is.
    /// At most 300000.
    #[serde(default = "default_retry_after_max_ms")]
    pub retry_after_max_ms: u64,
    /// Methods retried after a `Retry-After`; default the idempotent ones (GET, HEAD, OPTIONS,
    /// PUT, DELETE). Add POST or PATCH only where the API is sure not to have acted on a
    /// refused request, or takes an idempotency key.
    #[serde(default = "default_retry_methods")]
    pub retry_methods: Vec<String>,
}

/// The period a rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    /// One second.
    #[default]
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

/// Who shares one rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateScope {
    /// Each connection (one end user's credentials) has its own limit.
    #[default]
    Connection,
    /// All connections through one integration (one OAuth app) share a limit.
    Integration,
    /// All connections to the connector share a limit.
    Connector,
}

impl RatePeriod {
    /// The period's length.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        })
    }
}

impl RateLimit {
    /// The limit as `(requests, period, burst)`, when the connector sets one.
    pub fn rate(&self) -> Option<(u32, std::time::Duration, u32)> {
        let requests = self.requests?;
        Some((requests, self.per.unwrap_or_default().duration(), self.burst.unwrap_or(1)))
    }

    /// Whether a request with this method may be retried after a `Retry-After`.
    pub fn retries(&self, method: &http::Method) -> bool {
        self.retry_methods.iter().any(|m| m == method.as_str())
    }

    /// The checks serde cannot express, as `(field under rate_limit, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        match self.requests {
            Some(0) => return err("requests", "must be at least 1"),
            None if self.per.is_some() || self.burst.is_some() => {
                return err("requests", "`per` and `burst` need `requests`");
            }
            _ => {}
        }
        if self.burst == Some(0) {
            return err("burst", "must be at least 1");
        }
        if self.max_wait_ms > MAX_RATE_LIMIT_WAIT_MS {
            return err("max_wait_ms", "must be at most 300000 (five minutes)");
        }
        if self.retry_after_max_ms > MAX_RATE_LIMIT_WAIT_MS {
            return err("retry_after_max_ms", "must be at most 300000 (five minutes)");
        }
        for (i, method) in self.retry_methods.iter().enumerate() {
            let token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
            if !token {
                return Err((
                    format!("retry_methods[{i}]"),
                    format!("`{method}` is not an upper-case HTTP method"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests: None,
            per: None,
            burst: None,
            scope: RateScope::default(),
            max_wait_ms: default_max_wait_ms(),
            retry_after_max_ms: default_retry_after_max_ms(),
            retry_methods: default_retry_methods(),
        }
    }
}

fn default_max_wait_ms() -> u64 {
    10_000
}

fn default_retry_after_max_ms() -> u64 {
    5_000
}

fn default_retry_methods() -> Vec<String> {
    ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"].map(String::from).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_smooth_per_connection_limit() {
        let limit = RateLimit { requests: Some(10), ..RateLimit::default() };
        assert_eq!(limit.rate(), Some((10, std::time::Duration::from_secs(1), 1)));
        assert_eq!(limit.scope, RateScope::Connection);
        assert!(limit.retries(&http::Method::GET));
        assert!(limit.retries(&http::Method::DELETE));
        assert!(!limit.retries(&http::Method::POST));
        assert!(!limit.retries(&http::Method::PATCH));
        assert_eq!(limit.check(), Ok(()));
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |limit: RateLimit| limit.check().unwrap_err().0;
        assert_eq!(field(RateLimit { requests: Some(0), ..RateLimit::default() }), "requests");
        assert_eq!(field(RateLimit { burst: Some(2), ..RateLimit::default() }), "requests");
        assert_eq!(
            field(RateLimit { requests: Some(1), burst: Some(0), ..RateLimit::default() }),
            "burst"
        );
        assert_eq!(
            field(RateLimit { max_wait_ms: 300_001, ..RateLimit::default() }),
            "max_wait_ms"
        );
        assert_eq!(
            field(RateLimit { retry_methods: vec!["post".into()], ..RateLimit::default() }),
            "retry_methods[0]"
        );
    }
}
