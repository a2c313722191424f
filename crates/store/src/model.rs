//! The records the store keeps: integrations, connections (with their credentials decrypted),
//! connection summaries for listing, and user-added connector definitions.
//!
//! Records holding a [`Secret`] do not implement `Serialize`, so they cannot be sent out whole
//! by accident; [`ConnectionSummary`] is the shape meant for listings and APIs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use latchkey_core::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::health::Health;

/// The app's labels on a connection, for filtering lists: key to value.
pub type Tags = BTreeMap<String, String>;

/// Free JSON the app keeps on a connection (an object).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Who a connection belongs to, in the app's own terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUser {
    /// The app's id for the end user; several connections (even of one integration) may share it.
    pub id: String,
    /// Their email address, if the app gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A name to show for them, if the app gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl EndUser {
    /// An end user with this id and nothing else.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), email: None, display_name: None }
    }
}

/// A connector enabled in this Latchkey with the app's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRecord {
    /// The environment it belongs to.
    pub environment: String,
    /// Its id, chosen by the operator (e.g. `github-main`), unique in its environment.
    pub id: String,
    /// The connector it uses.
    pub connector: String,
    /// OAuth client id, if the connector's auth method needs one.
    pub client_id: Option<String>,
    /// OAuth client secret; stored encrypted.
    pub client_secret: Option<Secret>,
    /// Scopes requested instead of the connector's defaults.
    pub scopes: Vec<String>,
    /// Non-secret overrides of the connector's settings.
    pub settings: serde_json::Value,
    /// When it was created (UTC).
    pub created_at: OffsetDateTime,
    /// When it was last written (UTC).
    pub updated_at: OffsetDateTime,
    /// Set when the provider refused the integration's client (`invalid_client`,
    /// `unauthorized_client`) on a token request; writing the integration clears it. Ignored by
    /// [`IntegrationStore::put_integration`](crate::IntegrationStore::put_integration).
    pub misconfigured: Option<Misconfiguration>,
}

/// Why and since when an integration's client is refused by its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misconfiguration {
    /// When it was first seen (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When it was last seen (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub seen_at: OffsetDateTime,
    /// What the provider answered, in safe words.
    pub message: String,
}

/// Whether a connection can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Credentials work (as far as we know).
    Ok,
    /// The end user must authorise again (e.g. the refresh token was revoked).
    NeedsReauth,
    /// The last attempt to use or refresh it failed for another reason.
    Error,
}

impl ConnectionStatus {
    /// The stored form: `ok`, `needs_reauth` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NeedsReauth => "needs_reauth",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `ok`, `needs_reauth`, `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown connection status {0:?} (expected ok, needs_reauth or error)")]
pub struct UnknownStatus(pub String);

impl FromStr for ConnectionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(Self::Ok),
            "needs_reauth" => Ok(Self::NeedsReauth),
            "error" => Ok(Self::Error),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// One end user's authorised access through a connector, with its credentials decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRecord {
    /// Unique id (across environments).
    pub id: String,
    /// The environment it belongs to.
    pub environment: String,
    /// The connector it uses.
    pub connector: String,
    /// The integration it was made through, if any.
    pub integration: Option<String>,
    /// The connector auth method (`basic`, `api_key`, `oauth2`, …).
    pub auth_method: String,
    /// Secret fields by name (`api_key`, `access_token`, `refresh_token`, …); stored encrypted,
    /// one row per field.
    pub credentials: BTreeMap<String, Secret>,
    /// Per-connection, non-secret settings (e.g. a subdomain).
    pub config: BTreeMap<String, String>,
    /// Whether it can be used.
    pub status: ConnectionStatus,
    /// A human label (e.g. the account name the credential test returned).
    pub label: Option<String>,
    /// The end user who owns it, in the app's own terms.
    pub end_user: Option<EndUser>,
    /// The app's labels for filtering (checked by the engine: at most 10, lower-case keys).
    pub tags: Tags,
    /// Free JSON for the app.
    pub metadata: Metadata,
    /// Whether its credentials were last seen to work (`unknown` until checked).
    pub health: Health,
    /// When the access token expires, for refreshing ahead of time.
    pub expires_at: Option<OffsetDateTime>,
    /// Fencing counter: the store bumps it on every write; ignored on insert (starts at 1).
    pub version: i64,
    /// When it was created (UTC).
    pub created_at: OffsetDateTime,
    /// When it was last written (UTC).
    pub updated_at: OffsetDateTime,
}

impl ConnectionRecord {
    /// The record without its credentials, keeping only their field names.
    pub fn summary(&self) -> ConnectionSummary {
        ConnectionSummary {
            id: self.id.clone(),
            environment: self.environment.clone(),
            connector: self.connector.clone(),
            integration: self.integration.clone(),
            auth_method: self.auth_method.clone(),
            secret_fields: self.credentials.keys().cloned().collect(),
            config: self.config.clone(),
            status: self.status,
            label: self.label.clone(),
            end_user: self.end_user.clone(),
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
            health: self.health.clone(),
            expires_at: self.expires_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A connection without its credentials: what listings return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionSummary {
    /// Unique id (across environments).
    pub id: String,
    /// The environment it belongs to.
    pub environment: String,
    /// The connector it uses.
    pub connector: String,
    /// The integration it was made through, if any.
    pub integration: Option<String>,
    /// The connector auth method.
    pub auth_method: String,
    /// Names of the stored credential fields, sorted; never their values.
    pub secret_fields: Vec<String>,
    /// Per-connection, non-secret settings.
    pub config: BTreeMap<String, String>,
    /// Whether it can be used.
    pub status: ConnectionStatus,
    /// A human label.
    pub label: Option<String>,
    /// The end user who owns it, in the app's own terms.
    pub end_user: Option<EndUser>,
    /// The app's labels for filtering.
    pub tags: Tags,
    /// Free JSON for the app.
    pub metadata: Metadata,
    /// Whether its credentials were last seen to work.
    pub health: Health,
    /// When the access token expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Fencing counter.
    pub version: i64,
    /// When it was created (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last written (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A connector definition added by a user rather than shipped in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomConnector {
    /// The connector id.
    pub id: String,
    /// The YAML text, stored as given.
    pub source: String,
    /// When it was last written (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_roundtrips() {
        for status in [ConnectionStatus::Ok, ConnectionStatus::NeedsReauth, ConnectionStatus::Error]
        {
            assert_eq!(status.as_str().parse::<ConnectionStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert!("OK".parse::<ConnectionStatus>().is_err());
    }

    #[test]
    fn summary_keeps_field_names_only() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let record = ConnectionRecord {
            id: "c1".into(),
            environment: "default".into(),
            connector: "github".into(),
            integration: None,
            auth_method: "api_key".into(),
            credentials: BTreeMap::from([("api_key".into(), Secret::new("canary-summary"))]),
            config: BTreeMap::new(),
            status: ConnectionStatus::Ok,
            health: crate::Health::default(),
            label: None,
            end_user: None,
            tags: Tags::new(),
            metadata: Metadata::new(),
            expires_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let summary = record.summary();
        assert_eq!(summary.secret_fields, vec!["api_key".to_owned()]);
        let json = serde_json::to_string(&summary).unwrap();
        assert!(!json.contains("canary-summary"));
        assert!(!format!("{record:?}").contains("canary-summary"));
    }
}

/// Where a connect session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created; the end user has not opened it yet.
    Pending,
    /// The end user opened it and was sent to the provider; opening it again starts a new
    /// attempt in place of this one.
    Started,
    /// A connection was created; the link opens nothing more.
    Done,
    /// The last attempt failed (`error` says why); the link may start another until it expires.
    Failed,
}

impl SessionStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Started => "started",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "started" => Self::Started,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A short-lived, single-use permission for an end user's browser to finish a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSession {
    /// Id the app polls with.
    pub id: String,
    /// The environment it belongs to (and the connection it makes).
    pub environment: String,
    /// SHA-256 (hex) of the token in the connect URL; the token itself is never stored.
    pub token_hash: String,
    /// The integration to connect through (the first of `choices` until the end user picks).
    pub integration: String,
    /// The integrations the end user picks from on the connect page; empty when the session
    /// names one integration.
    pub choices: Vec<String>,
    /// The language the connect page speaks (`en`, `fr`, `de`, `es`, `ja`); the browser's
    /// `Accept-Language` decides when `None`.
    pub lang: Option<String>,
    /// Where the connect page sends the browser when the flow ends, for a full-page flow
    /// without `latchkey.js` (same origin as `allowed_origin`).
    pub return_url: Option<String>,
    /// The id the new connection gets (or the one to re-authorise).
    pub connection_id: Option<String>,
    /// The auth method the end user connects with; the connector's first when `None`.
    pub auth_method: Option<String>,
    /// The end user who connects; copied to the connection.
    pub end_user: Option<EndUser>,
    /// Tags the connection gets.
    pub tags: Tags,
    /// Metadata the connection gets.
    pub metadata: Metadata,
    /// The exact origin the result is posted to.
    pub allowed_origin: Option<String>,
    /// Per-connection config the flow uses (defaults filled in).
    pub config: BTreeMap<String, String>,
    /// Where it stands.
    pub status: SessionStatus,
    /// The connection created, when done.
    pub result_connection: Option<String>,
    /// Why its last attempt failed (no secret).
    pub error: Option<SessionFailure>,
    /// When its link stops opening.
    pub expires_at: OffsetDateTime,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// Why a connect session's attempt failed: a stable code (the engine's error code, or
/// `access_denied`) and a message safe to show an end user or the app (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionFailure {
    /// Stable, machine-readable.
    pub code: String,
    /// For people; no secret.
    pub message: String,
}

/// An authorization request in flight: found by the hash of its `state`, used once.
#[derive(Debug, Clone)]
pub struct OAuthState {
    /// SHA-256 (hex) of the `state` parameter.
    pub state_hash: String,
    /// The connect session that started it.
    pub connect_session: String,
    /// SHA-256 (hex) of the browser-binding cookie set when the flow started.
    pub browser_hash: Option<String>,
    /// The redirect URI sent in the authorization request.
    pub redirect_uri: String,
    /// The PKCE verifier (sealed at rest).
    pub pkce_verifier: Option<Secret>,
    /// When it expires.
    pub expires_at: OffsetDateTime,
}

/// A connection the background refresher should renew: its token expires soon and its refresh
/// is not backing off.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiringConnection {
    /// The connection's id.
    pub id: String,
    /// Its connector, so the refresher can share its slots fairly among providers.
    pub connector: String,
    /// When its access token expires (`None` for a refresh a crash interrupted).
    pub expires_at: Option<OffsetDateTime>,
    /// Its share, in `0.0..1.0`, of the stretch before the margin in which it may be renewed
    /// ([`refresh_spread`]; 0 for connections stored before spreading).
    pub spread: f64,
}

/// Connection `id`'s share of the refresh spread, in `0.0..1.0`: fixed by its id (FNV-1a, then
/// MurmurHash3's finaliser, so ids that differ in one character land far apart), so every
/// instance agrees on it, and a thousand connections expiring together spread evenly.
pub fn refresh_spread(id: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    // The top 53 bits, as a fraction.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// [`refresh_spread`] as stored: parts per million.
pub(crate) fn refresh_spread_ppm(id: &str) -> i64 {
    (refresh_spread(id) * 1_000_000.0) as i64
}

/// A connection whose scheduled health check is due (see
/// [`ConnectionStore::connections_due_for_check`](crate::ConnectionStore::connections_due_for_check)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    /// The connection's id.
    pub id: String,
    /// Its connector, so checks are shared fairly among providers.
    pub connector: String,
    /// When the check was due; `None` when it was never scheduled (a new or imported
    /// connection), which the scheduler gives a first time instead of checking it at once.
    pub due_at: Option<OffsetDateTime>,
}

/// The background refresher's back-off of one connection, kept in the store so that every
/// instance honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefreshBackoff {
    /// Consecutive failed scheduled refreshes (0 after a renewal).
    pub failures: u32,
    /// The earliest time the scheduler tries again (`None`: at once).
    pub retry_at: Option<OffsetDateTime>,
    /// When the current run of failures began (`None` after a renewal).
    pub failing_since: Option<OffsetDateTime>,
}

/// What a token refresh (or login) writes to a connection, all in one fenced transaction.
#[derive(Debug, Clone, Default)]
pub struct CredentialUpdate {
    /// Credential fields to set (others are kept: a refresh without a new refresh token keeps
    /// the old one).
    pub credentials: BTreeMap<String, Secret>,
    /// The new access-token expiry (`None` clears it).
    pub expires_at: Option<OffsetDateTime>,
    /// Config values to set (e.g. `instance_url` from a token response); others are kept.
    pub config: BTreeMap<String, String>,
    /// A new status, if it changes.
    pub status: Option<ConnectionStatus>,
}

/// What [`ConnectionStore::update_connection_details`](crate::ConnectionStore::update_connection_details)
/// changes on a connection: each `Some` replaces the stored value (`Some(None)` clears it),
/// each `None` keeps it. Credentials and config are not touched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectionDetails {
    /// New tags (replacing all of them).
    pub tags: Option<Tags>,
    /// New metadata (replacing it).
    pub metadata: Option<Metadata>,
    /// A new end user, or none.
    pub end_user: Option<Option<EndUser>>,
    /// A new label, or none.
    pub label: Option<Option<String>>,
}
