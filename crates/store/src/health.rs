//! A connection's health: whether its credentials were last seen to work, and if not, why.
//! Kept apart from its [`ConnectionStatus`](crate::ConnectionStatus) (whether Latchkey will use
//! it): a connection stored without a credential test is usable but its health is `unknown`
//! until a check says otherwise.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Whether a connection's credentials were last seen to work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// The last check passed.
    Healthy,
    /// The last check failed; the reason says why.
    Unhealthy,
    /// Never checked (stored without a credential test).
    #[default]
    Unknown,
}

impl HealthState {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `healthy`, `unhealthy`, `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown health {0:?} (expected healthy, unhealthy or unknown)")]
pub struct UnknownHealth(pub String);

impl FromStr for HealthState {
    type Err = UnknownHealth;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "healthy" => Ok(Self::Healthy),
            "unhealthy" => Ok(Self::Unhealthy),
            "unknown" => Ok(Self::Unknown),
            other => Err(UnknownHealth(other.to_owned())),
        }
    }
}

/// Why a connection is unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthReason {
    /// The API refused the credentials (401), or the grant is dead (`invalid_grant`).
    InvalidCredentials,
    /// The API accepted the credentials but refused the call (403).
    MissingPermission,
    /// The API failed (5xx, a timeout).
    ProviderUnavailable,
    /// The API said to slow down (429).
    RateLimited,
    /// The API could not be reached (DNS, connection, TLS).
    Network,
    /// Refreshing the token kept failing.
    RefreshExhausted,
    /// The integration's client is refused by the provider (`invalid_client`).
    IntegrationMisconfigured,
}

/// The last failure a check saw, in safe words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthError {
    /// A stable code (`credential_test_failed`, `upstream_unreachable`, …).
    pub code: String,
    /// What happened, never holding a secret.
    pub message: String,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A connection's health record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Healthy, unhealthy or unknown.
    pub state: HealthState,
    /// Why it is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<HealthReason>,
    /// When a check last passed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_healthy_at: Option<OffsetDateTime>,
    /// When it was last checked.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_checked_at: Option<OffsetDateTime>,
    /// The last failure, kept after it recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<HealthError>,
    /// Checks failed in a row since the last one that passed (absent when none). A failure that
    /// says nothing of the credentials (5xx, a timeout, the network, a 429) leaves the state as
    /// it was until a few of them come in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Health {
    /// A check passed at `at`.
    pub fn passed(mut self, at: OffsetDateTime) -> Self {
        self.state = HealthState::Healthy;
        self.reason = None;
        self.last_healthy_at = Some(at);
        self.last_checked_at = Some(at);
        self.consecutive_failures = 0;
        self
    }

    /// A check failed at `at` for `reason`.
    pub fn failed(mut self, reason: HealthReason, error: HealthError) -> Self {
        self.state = HealthState::Unhealthy;
        self.reason = Some(reason);
        self.last_checked_at = Some(error.at);
        self.last_error = Some(error);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self
    }

    /// A check failed for a `reason` that may pass by itself ([`HealthReason::is_transient`]):
    /// counted, and recorded as the last error, but the state moves to unhealthy only once
    /// `threshold` checks in a row have failed.
    pub fn failed_transiently(
        mut self,
        reason: HealthReason,
        error: HealthError,
        threshold: u32,
    ) -> Self {
        if self.consecutive_failures.saturating_add(1) >= threshold {
            return self.failed(reason, error);
        }
        self.last_checked_at = Some(error.at);
        self.last_error = Some(error);
        self.consecutive_failures += 1;
        self
    }
}

impl HealthReason {
    /// Whether the failure may pass without anyone acting: the provider failed or was
    /// unreachable, or asked to slow down. Such a failure says nothing of the credentials.
    pub fn is_transient(self) -> bool {
        match self {
            Self::ProviderUnavailable | Self::Network | Self::RateLimited => true,
            Self::InvalidCredentials
            | Self::MissingPermission
            | Self::RefreshExhausted
            | Self::IntegrationMisconfigured => false,
        }
    }

    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingPermission => "missing_permission",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::RateLimited => "rate_limited",
            Self::Network => "network",
            Self::RefreshExhausted => "refresh_exhausted",
            Self::IntegrationMisconfigured => "integration_misconfigured",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(at: i64) -> HealthError {
        HealthError {
            code: "credential_test_failed".into(),
            message: "the API answered 503".into(),
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000 + at).unwrap(),
        }
    }

    #[test]
    fn transient_failures_count_until_the_threshold() {
        let healthy = Health::default().passed(error(0).at);
        let once =
            healthy.clone().failed_transiently(HealthReason::ProviderUnavailable, error(1), 3);
        assert_eq!(
            (once.state, once.reason, once.consecutive_failures),
            (HealthState::Healthy, None, 1)
        );
        assert_eq!(once.last_checked_at, Some(error(1).at));
        assert_eq!(once.last_error, Some(error(1)));
        let twice = once.failed_transiently(HealthReason::Network, error(2), 3);
        assert_eq!((twice.state, twice.consecutive_failures), (HealthState::Healthy, 2));
        let third = twice.failed_transiently(HealthReason::ProviderUnavailable, error(3), 3);
        assert_eq!(
            (third.state, third.reason, third.consecutive_failures),
            (HealthState::Unhealthy, Some(HealthReason::ProviderUnavailable), 3)
        );
        let back = third.passed(error(4).at);
        assert_eq!((back.state, back.consecutive_failures), (HealthState::Healthy, 0));
    }

    #[test]
    fn old_records_read_and_a_zero_count_is_not_written() {
        let old: Health = serde_json::from_str(r#"{"state":"healthy"}"#).unwrap();
        assert_eq!(old.consecutive_failures, 0);
        assert!(!serde_json::to_string(&old).unwrap().contains("consecutive_failures"));
        let counted = Health { consecutive_failures: 2, ..old };
        let text = serde_json::to_string(&counted).unwrap();
        assert!(text.contains(r#""consecutive_failures":2"#), "{text}");
        for reason in [HealthReason::RateLimited, HealthReason::IntegrationMisconfigured] {
            let spelled = serde_json::to_string(&reason).unwrap();
            assert_eq!(spelled, format!("\"{}\"", reason.as_str()));
        }
    }
}
