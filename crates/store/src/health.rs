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
}

impl Health {
    /// A check passed at `at`.
    pub fn passed(mut self, at: OffsetDateTime) -> Self {
        self.state = HealthState::Healthy;
        self.reason = None;
        self.last_healthy_at = Some(at);
        self.last_checked_at = Some(at);
        self
    }

    /// A check failed at `at` for `reason`.
    pub fn failed(mut self, reason: HealthReason, error: HealthError) -> Self {
        self.state = HealthState::Unhealthy;
        self.reason = Some(reason);
        self.last_checked_at = Some(error.at);
        self.last_error = Some(error);
        self
    }
}
