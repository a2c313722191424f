//! What the operator console keeps: signed-in sessions (stored as the digest of their id) and
//! the counts its overview draws, computed by the database so they stay cheap on a large log.

use time::OffsetDateTime;

/// A console session as stored (never its id: the cookie holds that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// Who signed in, as the audit log names them: an API key's id, or `oidc:<subject>`.
    pub actor_id: String,
    /// Their name: the key's name, or the OpenID Connect email or subject.
    pub actor_name: String,
    /// The environment the console shows.
    pub environment: String,
    /// The only environment it may show, for a key bound to one.
    pub bound: Option<String>,
    /// When it began (UTC).
    pub created_at: OffsetDateTime,
    /// When it ends (UTC).
    pub expires_at: OffsetDateTime,
}

/// How many connections of one integration are in one health state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCount {
    /// The integration; `None` for connections made without one.
    pub integration: Option<String>,
    /// `healthy`, `unhealthy` or `unknown`.
    pub health: String,
    /// How many.
    pub count: u64,
}

/// How many operations of one outcome fell into one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationBucket {
    /// The bucket's number, counted from the `since` asked for (0 is the oldest).
    pub bucket: u64,
    /// `success` or `failure`.
    pub outcome: String,
    /// How many.
    pub count: u64,
}
