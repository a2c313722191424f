//! Moving connections in from another system: OAuth2 tokens given as they are (with their
//! expiry and granted scopes) instead of a new consent, the config values a flow keeps from a
//! token response, and batches of connections written in one transaction each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use latchkey_core::AuthMethod;
use latchkey_store::ConnectionRecord;
use time::OffsetDateTime;

use crate::{Connections, EngineError, NewConnection};

/// The config key an imported OAuth2 connection's granted scopes are kept under, separated by
/// spaces as in a token response's `scope` (RFC 6749 §5.1).
pub const GRANTED_SCOPES: &str = "granted_scopes";

/// What comes with imported OAuth2 tokens besides the tokens themselves (which are the
/// `access_token` and `refresh_token` credentials). Empty for every other connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedTokens {
    /// When the access token expires.
    pub expires_at: Option<OffsetDateTime>,
    /// Or its lifetime from now (clamped like a token response's).
    pub expires_in: Option<Duration>,
    /// The scopes the provider granted.
    pub scopes: Vec<String>,
}

impl ImportedTokens {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.expires_at.is_none() && self.expires_in.is_none() && self.scopes.is_empty()
    }

    /// Refuses these fields on a connection that imports no OAuth2 access token.
    pub(crate) fn refuse_without_access_token(&self) -> Result<(), EngineError> {
        let field = if self.expires_at.is_some() {
            "expires_at"
        } else if self.expires_in.is_some() {
            "expires_in"
        } else if !self.scopes.is_empty() {
            "scopes"
        } else {
            return Ok(());
        };
        Err(EngineError::invalid(
            field,
            format!(
                "`{field}` is only for an OAuth2 connection given its tokens \
                 (credentials.access_token)"
            ),
        ))
    }

    /// Sets the record's expiry and granted scopes, as a token response would have.
    pub(crate) fn apply(
        self,
        record: &mut ConnectionRecord,
        now: OffsetDateTime,
    ) -> Result<(), EngineError> {
        record.expires_at = match (self.expires_at, self.expires_in) {
            (Some(_), Some(_)) => {
                return Err(EngineError::invalid(
                    "expires_in",
                    "give `expires_at` or `expires_in`, not both",
                ));
            }
            (Some(at), None) => Some(at),
            (None, lifetime) => crate::oauth2::expiry(now, lifetime),
        };
        if let Some(scope) = self.scopes.iter().find(|s| !valid_scope(s)) {
            let shown: String = scope.chars().take(64).collect();
            return Err(EngineError::invalid(
                "scopes",
                format!(
                    "scope {shown:?} is not a scope token (RFC 6749 §3.3: printable, no spaces)"
                ),
            ));
        }
        if !self.scopes.is_empty() {
            record.config.insert(GRANTED_SCOPES.to_string(), self.scopes.join(" "));
        }
        Ok(())
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn valid_scope(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The granted scopes kept in a connection's config, if any.
pub fn granted_scopes(config: &BTreeMap<String, String>) -> Vec<String> {
    config
        .get(GRANTED_SCOPES)
        .map(|s| s.split(' ').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Splits `config` into the connector's declared fields and the values the auth method's flow
/// keeps from the provider (`token_response.keep`, `callback.keep`, OAuth 1 `token_keep`, and
/// the granted scopes of OAuth2), which a connection made elsewhere brings along.
pub(crate) fn split_kept_config(
    method: &AuthMethod,
    config: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let kept: BTreeSet<&str> = match method {
        AuthMethod::OAuth2(m) => m
            .token_response
            .keep
            .keys()
            .chain(m.kept_callback_params().map(|(key, _)| key))
            .map(String::as_str)
            .chain([GRANTED_SCOPES])
            .collect(),
        AuthMethod::OAuth1(m) => m.token_keep.keys().map(String::as_str).collect(),
        _ => BTreeSet::new(),
    };
    config.into_iter().partition(|(key, _)| !kept.contains(key.as_str()))
}

/// Checks the credentials of a connection given the tokens a flow would have obtained: OAuth2's
/// `access_token` (and `refresh_token`), or three-legged OAuth 1.0a's `token` and
/// `token_secret`, beside the auth method's own fields (a password grant's username and
/// password, a JWT-bearer grant's key).
pub(crate) fn check_imported_tokens(
    method: &AuthMethod,
    credentials: &BTreeMap<String, latchkey_core::Secret>,
) -> Result<(), EngineError> {
    let tokens: &[&str] = match method {
        // The flow also stores the consumer credentials it signed with.
        AuthMethod::OAuth1(_) => {
            &["token", "token_secret", "consumer_key", "consumer_secret", "private_key"]
        }
        _ => &["access_token", "refresh_token"],
    };
    let own = method.fields();
    if let Some(key) = credentials
        .keys()
        .find(|k| !tokens.contains(&k.as_str()) && !own.iter().any(|f| &f.key == *k))
    {
        return Err(EngineError::invalid(
            format!("credentials.{key}"),
            format!(
                "`{key}` is neither a token field ({}) nor a field of auth method `{}`",
                tokens.join(", "),
                method.id()
            ),
        ));
    }
    if let AuthMethod::OAuth1(_) = method
        && !credentials.contains_key("token_secret")
    {
        return Err(EngineError::invalid(
            "credentials.token_secret",
            "an imported OAuth 1.0a token needs its `token_secret`",
        ));
    }
    Ok(())
}

/// How many connections [`Connections::import`] prepares at once (credential tests overlap).
const PREPARE_CONCURRENCY: usize = 8;

impl Connections<'_> {
    /// Creates many connections, as [`Connections::create_imported`] does each, with one store
    /// transaction for the batch: one result per item, in order. Each connection is stored
    /// whole or not at all; an id already taken (stored, or earlier in the batch) is a
    /// [`EngineError::Conflict`] for that item alone. Should the batch write fail, each item is
    /// tried on its own, so one bad row never costs the others.
    pub async fn import(
        &self,
        batch: Vec<(NewConnection, ImportedTokens)>,
    ) -> Vec<Result<ConnectionRecord, EngineError>> {
        use futures_util::StreamExt as _;
        let mut known = BTreeSet::new();
        let wanted: BTreeSet<(String, String)> = batch
            .iter()
            .filter_map(|(new, _)| {
                let integration = new.integration.as_ref()?;
                Some((new.environment.as_str().to_owned(), integration.to_string()))
            })
            .collect();
        for (environment, id) in wanted {
            match self.engine.integration_exists(&environment, &id).await {
                Ok(true) => {
                    known.insert((environment, id));
                }
                Ok(false) => {}
                // Unknown: checked again per item, which reports the error where it belongs.
                Err(_) => return self.import_one_by_one(batch).await,
            }
        }
        let known = &known;
        let mut prepared: Vec<Result<ConnectionRecord, EngineError>> =
            futures_util::stream::iter(batch)
                .map(|(new, tokens)| self.prepare(new, tokens, Some(known)))
                .buffered(PREPARE_CONCURRENCY)
                .collect()
                .await;
        // Lists and exports page by creation time: the batch keeps its input order (the
        // records were prepared concurrently, so their clocks were read in any order).
        let start = self.engine.clock.now();
        for (n, record) in prepared.iter_mut().filter_map(|r| r.as_mut().ok()).enumerate() {
            record.created_at = start + time::Duration::nanoseconds(n as i64);
            record.updated_at = record.created_at;
        }
        let ready: Vec<ConnectionRecord> =
            prepared.iter().filter_map(|r| r.as_ref().ok()).cloned().collect();
        let inserted = match self.engine.store.insert_connections(&ready).await {
            Ok(inserted) => inserted,
            Err(e) => {
                tracing::warn!(error = %e, rows = ready.len(), "batch insert failed; inserting one by one");
                let mut out = Vec::with_capacity(prepared.len());
                for result in prepared {
                    out.push(match result {
                        Ok(record) => self.insert_prepared(record).await,
                        Err(e) => Err(e),
                    });
                }
                return out;
            }
        };
        let mut inserted = inserted.into_iter();
        prepared
            .into_iter()
            .map(|result| {
                let mut record = result?;
                if inserted.next() == Some(true) {
                    record.version = 1;
                    self.engine.connection_stored(&record);
                    Ok(record)
                } else {
                    Err(EngineError::Conflict(format!("connection `{}`", record.id)))
                }
            })
            .collect()
    }

    async fn insert_prepared(
        &self,
        mut record: ConnectionRecord,
    ) -> Result<ConnectionRecord, EngineError> {
        record.version = self.engine.store.insert_connection(&record).await?;
        self.engine.connection_stored(&record);
        Ok(record)
    }

    async fn import_one_by_one(
        &self,
        batch: Vec<(NewConnection, ImportedTokens)>,
    ) -> Vec<Result<ConnectionRecord, EngineError>> {
        let mut out = Vec::with_capacity(batch.len());
        for (new, tokens) in batch {
            out.push(self.create_imported(new, tokens).await);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in ["repo", "read:user", "https://www.googleapis.com/auth/drive", "a!#[]~"] {
            assert!(valid_scope(ok), "{ok}");
        }
        for bad in ["", "two words", "quote\"", "back\\slash", "tab\t", "caf\u{e9}"] {
            assert!(!valid_scope(bad), "{bad:?}");
        }
    }

    #[test]
    fn granted_scopes_read_back_from_config() {
        let config = BTreeMap::from([(GRANTED_SCOPES.to_string(), "repo read:user".to_string())]);
        assert_eq!(granted_scopes(&config), ["repo", "read:user"]);
        assert!(granted_scopes(&BTreeMap::new()).is_empty());
    }
}
