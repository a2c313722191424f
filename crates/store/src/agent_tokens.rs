//! Agent tokens: what an AI agent holds instead of a user's credentials. A token works only on
//! one connection's proxy, for the methods and path globs it was granted, until it expires and
//! for at most `max_requests` requests; it is stored as its SHA-256 digest.

use serde::Serialize;
use time::OffsetDateTime;

/// An agent token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentTokenRecord {
    /// `agt_…`, which lists, the audit log and revocation name it by.
    pub id: String,
    /// The environment of its connection.
    pub environment: String,
    /// Hex SHA-256 of the token.
    #[serde(skip)]
    pub token_hash: String,
    /// The one connection it may use.
    pub connection: String,
    /// A name its creator chose (the agent's).
    pub name: String,
    /// The HTTP methods it may send (upper case).
    pub methods: Vec<String>,
    /// The path globs it may reach (`/repos/*/issues`, `/v1/**`).
    pub paths: Vec<String>,
    /// At most this many requests, if limited.
    pub max_requests: Option<u64>,
    /// Requests made so far.
    pub used_requests: u64,
    /// When it was made (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// What counting one more request of a token came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTokenUse {
    /// Counted: this is request number `n`.
    Counted(u64),
    /// Its budget is spent: nothing counted.
    Spent,
    /// No such token.
    Missing,
}
