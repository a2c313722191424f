//! Who may do what: environments and the API keys that act in them, with their scopes.
//! Keys are kept only as a SHA-256 digest; the key itself is shown once, when it is made.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use latchkey_core::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A separate space of integrations, connections, connect sessions and webhooks (`default`,
/// `prod`, `dev`, …). Keys bound to one environment see nothing of the others.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentRecord {
    /// Its id.
    pub id: String,
    /// Where this environment's webhook events go (the server's `--webhook-url` when `None`).
    pub webhook_url: Option<String>,
    /// The secret its webhooks are signed with; stored encrypted.
    pub webhook_secret: Option<Secret>,
    /// The secret it replaced at the last rotation, which also signs deliveries until
    /// `webhook_previous_expires_at`; stored encrypted. May be past its expiry: readers check.
    pub webhook_previous_secret: Option<Secret>,
    /// Until when `webhook_previous_secret` signs too.
    pub webhook_previous_expires_at: Option<OffsetDateTime>,
    /// When it was created (UTC).
    pub created_at: OffsetDateTime,
}

/// An API key as stored: its SHA-256 digest, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's id (`key_…`), which lists, the audit log and revocation name it by.
    pub id: String,
    /// A name its creator chose (`billing-backend`).
    pub name: String,
    /// The environment it acts in; `None` for a key that spans every environment.
    pub environment: Option<String>,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// The key's first characters (`lk_Ab3d…`), to recognise it in a list.
    pub hint: String,
    /// When it was created (UTC).
    pub created_at: OffsetDateTime,
    /// When it stops working, if it does.
    pub expires_at: Option<OffsetDateTime>,
    /// When it last authenticated a request (written at most once a minute).
    pub last_used_at: Option<OffsetDateTime>,
    /// When it was revoked; a revoked key never authenticates again.
    pub revoked_at: Option<OffsetDateTime>,
}

/// What an API key may do. A route names the one scope it needs; `admin` holds every scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Send requests through `/v1/proxy`.
    #[serde(rename = "proxy")]
    Proxy,
    /// Read connections (never their credentials).
    #[serde(rename = "connections:read")]
    ConnectionsRead,
    /// Create, test, refresh and delete connections.
    #[serde(rename = "connections:write")]
    ConnectionsWrite,
    /// Read a connection's token, export credentials.
    #[serde(rename = "credentials:read")]
    CredentialsRead,
    /// Create connect sessions (and read them back).
    #[serde(rename = "connect_sessions:write")]
    ConnectSessionsWrite,
    /// Create, change and delete integrations and custom connectors.
    #[serde(rename = "integrations:write")]
    IntegrationsWrite,
    /// Everything, and API keys, environments and the audit log.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in the order documentation lists them.
    pub const ALL: [Scope; 7] = [
        Scope::Proxy,
        Scope::ConnectionsRead,
        Scope::ConnectionsWrite,
        Scope::CredentialsRead,
        Scope::ConnectSessionsWrite,
        Scope::IntegrationsWrite,
        Scope::Admin,
    ];

    /// The scope's name: `proxy`, `connections:read`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Proxy => "proxy",
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsWrite => "connections:write",
            Scope::CredentialsRead => "credentials:read",
            Scope::ConnectSessionsWrite => "connect_sessions:write",
            Scope::IntegrationsWrite => "integrations:write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?} (expected proxy, connections:read, connections:write, credentials:read, connect_sessions:write, integrations:write or admin)"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_roundtrip_as_text_and_json() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::Value::from(scope.as_str())
            );
        }
        assert!("Admin".parse::<Scope>().is_err());
    }
}
