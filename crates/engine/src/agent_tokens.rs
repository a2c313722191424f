//! Agent tokens: an AI agent gets a short-lived opaque token (`lk_agt_…`) instead of a user's
//! credentials. It works only on one connection's proxy, only for the methods and path globs it
//! was granted (`*` within one path segment, `**` across segments), until it expires and for at
//! most `max_requests` requests (counted in the store, so the budget holds across instances);
//! it never reveals the upstream credentials, and it is revocable. The server audits its
//! creation and revocation like any API write.

use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use latchkey_core::Secret;
use latchkey_store::{AgentTokenRecord, AgentTokenUse};

use crate::{ConnectionId, Engine, EngineError, EnvironmentId};

/// What every agent token starts with.
pub const AGENT_TOKEN_PREFIX: &str = "lk_agt_";
/// The longest an agent token may live (a day): agents get short-lived access.
pub const MAX_AGENT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// What a new agent token may do.
#[derive(Debug, Clone)]
pub struct NewAgentToken {
    /// The environment of the connection.
    pub environment: EnvironmentId,
    /// The one connection it may use.
    pub connection: ConnectionId,
    /// The agent's name, for lists and the audit log.
    pub name: String,
    /// HTTP methods it may send (`GET`, …).
    pub methods: Vec<String>,
    /// Path globs it may reach, under the connection's base URL (`/repos/*/issues`, `/**`).
    pub paths: Vec<String>,
    /// How long it lives (at most [`MAX_AGENT_TOKEN_LIFETIME`]).
    pub expires_in: Duration,
    /// At most this many requests, if limited.
    pub max_requests: Option<u64>,
}

/// Why an agent token does not let a request through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefusal {
    /// No such token, or it was revoked (not told apart).
    #[error("the agent token is not valid")]
    Invalid,
    /// Its lifetime is over.
    #[error("the agent token expired at {0}")]
    Expired(String),
    /// The request is outside what it was granted.
    #[error("{0}")]
    OutsideGrant(String),
    /// Its request budget is spent.
    #[error("the agent token's budget of {0} requests is spent")]
    Spent(u64),
}

/// Agent tokens, from [`Engine::agent_tokens`].
#[derive(Debug, Clone, Copy)]
pub struct AgentTokens<'e> {
    pub(crate) engine: &'e Engine,
}

impl AgentTokens<'_> {
    /// Makes a token for `new`'s connection; returns its record and the token, which is shown
    /// this once (only its digest is stored).
    pub async fn create(
        &self,
        new: NewAgentToken,
    ) -> Result<(AgentTokenRecord, Secret), EngineError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(EngineError::invalid("name", "name is 1-100 printable characters"));
        }
        let methods = methods(&new.methods)?;
        check_paths(&new.paths)?;
        if new.expires_in.is_zero() || new.expires_in > MAX_AGENT_TOKEN_LIFETIME {
            return Err(EngineError::invalid(
                "expires_in",
                format!(
                    "expires_in is 1 to {} seconds: agent tokens are short-lived",
                    MAX_AGENT_TOKEN_LIFETIME.as_secs()
                ),
            ));
        }
        if new.max_requests == Some(0) {
            return Err(EngineError::invalid("max_requests", "max_requests is at least 1"));
        }
        self.engine.connections().check_environment(&new.environment, &new.connection).await?;
        let token = Secret::new(format!("{AGENT_TOKEN_PREFIX}{}", crate::random_token(32)));
        let now = self.engine.clock.now();
        let record = AgentTokenRecord {
            id: format!("agt_{}", crate::random_token(12)),
            environment: new.environment.into_string(),
            token_hash: crate::oauth2::hash(&token),
            connection: new.connection.to_string(),
            name: name.to_owned(),
            methods,
            paths: new.paths,
            max_requests: new.max_requests,
            used_requests: 0,
            created_at: now,
            expires_at: now + new.expires_in,
            revoked_at: None,
        };
        self.engine.store.create_agent_token(&record).await?;
        tracing::info!(token = %record.id, connection = %record.connection, "agent token created");
        Ok((record, token))
    }

    /// The tokens of `environment`, newest first.
    pub async fn list(
        &self,
        environment: &EnvironmentId,
    ) -> Result<Vec<AgentTokenRecord>, EngineError> {
        Ok(self.engine.store.list_agent_tokens(environment.as_str()).await?)
    }

    /// Revokes token `id` of `environment` at once; [`EngineError::AgentTokenNotFound`] if
    /// there is no such token or it was revoked already.
    pub async fn revoke(&self, environment: &EnvironmentId, id: &str) -> Result<(), EngineError> {
        let now = self.engine.clock.now();
        if self.engine.store.revoke_agent_token(environment.as_str(), id, now).await? {
            tracing::info!(token = %id, "agent token revoked");
            Ok(())
        } else {
            Err(EngineError::AgentTokenNotFound(id.to_owned()))
        }
    }

    /// The record of `presented` if it is a live token (known, not revoked, not expired),
    /// without counting a request: for callers, such as the MCP server, that authenticate a
    /// token before they know which request it will send.
    pub async fn check(
        &self,
        presented: &Secret,
    ) -> Result<Result<AgentTokenRecord, AgentRefusal>, EngineError> {
        if !presented.expose().starts_with(AGENT_TOKEN_PREFIX) {
            return Ok(Err(AgentRefusal::Invalid));
        }
        let digest = crate::oauth2::hash(presented);
        let Some(record) = self.engine.store.agent_token_by_hash(&digest).await? else {
            return Ok(Err(AgentRefusal::Invalid));
        };
        if record.revoked_at.is_some() {
            return Ok(Err(AgentRefusal::Invalid));
        }
        if self.engine.clock.now() >= record.expires_at {
            let at = record
                .expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            return Ok(Err(AgentRefusal::Expired(at)));
        }
        Ok(Ok(record))
    }

    /// Lets `presented` send `method` to `path` (without its query) on `connection`, counting
    /// the request against its budget; the token's record, or why not.
    pub async fn authorize(
        &self,
        presented: &Secret,
        connection: &str,
        method: &str,
        path: &str,
    ) -> Result<Result<AgentTokenRecord, AgentRefusal>, EngineError> {
        let record = match self.check(presented).await? {
            Ok(record) => record,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if record.connection != connection {
            return Ok(Err(AgentRefusal::OutsideGrant(format!(
                "agent token `{}` may use connection `{}` only",
                record.id, record.connection
            ))));
        }
        if !record.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return Ok(Err(AgentRefusal::OutsideGrant(format!(
                "agent token `{}` may not send {method}; it may send {}",
                record.id,
                record.methods.join(", ")
            ))));
        }
        let globs = self
            .engine
            .access_caches
            .agent_paths
            .get_with_by_ref(&record.id, || std::sync::Arc::new(glob_set(&record.paths)));
        if !path_granted(&globs, path) {
            return Ok(Err(AgentRefusal::OutsideGrant(format!(
                "agent token `{}` may not reach {path}; it may reach {}",
                record.id,
                record.paths.join(", ")
            ))));
        }
        match self.engine.store.use_agent_token(&record.id).await? {
            AgentTokenUse::Counted(_) => Ok(Ok(record)),
            AgentTokenUse::Spent => Ok(Err(AgentRefusal::Spent(record.max_requests.unwrap_or(0)))),
            AgentTokenUse::Missing => Ok(Err(AgentRefusal::Invalid)),
        }
    }
}

impl Engine {
    /// Agent tokens: scoped, short-lived access to one connection's proxy.
    pub fn agent_tokens(&self) -> AgentTokens<'_> {
        AgentTokens { engine: self }
    }
}

/// The methods, checked and upper-cased.
fn methods(given: &[String]) -> Result<Vec<String>, EngineError> {
    if given.is_empty() {
        return Err(EngineError::invalid("methods", "methods lists at least one HTTP method"));
    }
    given
        .iter()
        .map(|m| {
            let upper = m.trim().to_ascii_uppercase();
            match http::Method::from_bytes(upper.as_bytes()) {
                Ok(_) if !upper.is_empty() => Ok(upper),
                _ => Err(EngineError::invalid("methods", format!("`{m}` is not an HTTP method"))),
            }
        })
        .collect()
}

/// The path globs, checked: each starts with `/` and compiles.
fn check_paths(paths: &[String]) -> Result<(), EngineError> {
    if paths.is_empty() {
        return Err(EngineError::invalid(
            "paths",
            "paths lists at least one path glob (`/**` for all)",
        ));
    }
    for path in paths {
        if !path.starts_with('/') {
            return Err(EngineError::invalid("paths", format!("`{path}` must start with /")));
        }
        glob(path).map_err(|e| EngineError::invalid("paths", format!("`{path}`: {e}")))?;
    }
    Ok(())
}

fn glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// The granted path globs as one set (patterns were checked when the token was made; one that
/// no longer compiles matches nothing).
fn glob_set(patterns: &[String]) -> GlobSet {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        if let Ok(glob) = glob(pattern) {
            set.add(glob);
        }
    }
    set.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Whether `path` (without its query) matches `globs`. A path that climbs (`..`) or hides a
/// separator (`%2F`) never matches: what is granted is what the API will see.
fn path_granted(globs: &GlobSet, path: &str) -> bool {
    let lowered = path.to_ascii_lowercase();
    if path.split('/').any(|segment| segment == ".." || segment == ".")
        || lowered.contains("%2f")
        || lowered.contains("%5c")
        || lowered.contains("%2e")
    {
        return false;
    }
    globs.is_match(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_grant_segments_and_refuse_escapes() {
        let granted =
            glob_set(&["/repos/*/issues".to_owned(), "/user".to_owned(), "/gists/**".to_owned()]);
        assert!(path_granted(&granted, "/repos/acme/issues"));
        assert!(path_granted(&granted, "/user"));
        assert!(path_granted(&granted, "/gists/1/comments/2"));
        assert!(!path_granted(&granted, "/repos/acme/x/issues"), "* stays in one segment");
        assert!(!path_granted(&granted, "/repos/acme/issues/1"));
        assert!(!path_granted(&granted, "/user/keys"));
        assert!(!path_granted(&granted, "/repos/acme/../../user/keys"));
        assert!(!path_granted(&granted, "/repos/acme%2Fx/issues"));
        assert!(!path_granted(&granted, "/gists/%2e%2e/admin"));
        assert!(check_paths(&["relative".into()]).is_err());
        assert!(check_paths(&[]).is_err());
        assert_eq!(methods(&["get".into(), "Post".into()]).unwrap(), ["GET", "POST"]);
        assert!(methods(&["GE T".into()]).is_err());
    }
}
