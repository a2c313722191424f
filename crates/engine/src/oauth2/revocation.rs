//! Revocation on delete. A connector script's `revoke_connection` hook, when it has one, makes
//! the provider's own revoke call (see `scripts::revoke`), for any auth method. Otherwise RFC
//! 7009: a deleted OAuth2 connection's refresh token (hint
//! `refresh_token`) and access token (hint `access_token`) are revoked at the provider's
//! revocation endpoint — the connector's `revocation_url`, or the `revocation_endpoint` of its
//! issuer's discovery document — with the integration's client authentication. Best effort
//! and bounded by [`REVOCATION_TIMEOUT`]: the outcome is reported, never an error, and no token
//! appears in it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_core::connector::OAuth2Auth;
use latchkey_core::oauth2::{
    Client, RevocationAnswer, TokenTypeHint, parse_revocation_response, revocation_request,
};
use latchkey_core::template::{self, Scope};
use latchkey_store::{ConnectionRecord, IntegrationRecord};
use url::Url;

use super::{endpoint_policy, oauth_method};
use crate::{Engine, EngineError};

/// The longest a deletion waits for the provider to revoke the connection's tokens, all
/// requests (and discovery) included.
pub const REVOCATION_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a deleted connection's tokens at the provider. Its `Display` (`revoked`,
/// `not_supported`, `failed: <reason>`) is what the `connection.deleted` event and the log
/// carry; the reason never holds a token or a client secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The provider confirmed the revocation of the tokens the connection held.
    Revoked,
    /// Nothing to revoke, or no way to: not OAuth2, no revocation endpoint, no token, or the
    /// provider revokes none of the kinds held (`unsupported_token_type`).
    NotSupported,
    /// A revocation request failed (or timed out); the tokens may still be valid.
    Failed(String),
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked => f.write_str("revoked"),
            Self::NotSupported => f.write_str("not_supported"),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

impl Engine {
    /// Revokes `record`'s tokens at the provider, within [`REVOCATION_TIMEOUT`].
    pub(crate) async fn revoke_tokens(&self, record: &ConnectionRecord) -> Revocation {
        let timed = crate::operations::Timed::about(
            self,
            latchkey_store::OperationKind::Revocation,
            record,
        );
        let outcome = match tokio::time::timeout(REVOCATION_TIMEOUT, self.revoke_all(record)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Revocation::Failed("timed out".into()),
        };
        // Nothing was tried when there was nothing to revoke: no operation then.
        match &outcome {
            Revocation::Revoked => self.record_operation(timed.succeeded()),
            Revocation::Failed(reason) => {
                self.record_operation(timed.failed_with("revocation_failed", reason, None))
            }
            Revocation::NotSupported => {}
        }
        outcome
    }

    async fn revoke_all(&self, record: &ConnectionRecord) -> Revocation {
        // A connector removed since: nothing says where to revoke.
        let Ok(entry) = self.connector_entry(&record.connector) else {
            return Revocation::NotSupported;
        };
        if let Some(outcome) = self.revoke_by_script(&entry.connector, record).await {
            return outcome;
        }
        let Some(method) = oauth_method(&entry.connector, Some(&record.auth_method)) else {
            return Revocation::NotSupported;
        };
        let held: Vec<(TokenTypeHint, &Secret)> = [
            (TokenTypeHint::RefreshToken, "refresh_token"),
            (TokenTypeHint::AccessToken, "access_token"),
        ]
        .into_iter()
        .filter_map(|(hint, field)| record.credentials.get(field).map(|token| (hint, token)))
        .filter(|(_, token)| !token.is_empty())
        .collect();
        if held.is_empty() {
            return Revocation::NotSupported;
        }
        let endpoint = match self
            .revocation_endpoint(entry.connector.id.as_ref(), method, &record.config)
            .await
        {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return Revocation::NotSupported,
            Err(e) => return Revocation::Failed(safe_reason(&e)),
        };
        let integration = match self.oauth_integration(&entry.connector, method, record).await {
            Ok(integration) => integration,
            Err(e) => return Revocation::Failed(safe_reason(&e)),
        };
        let mut revoked = false;
        let mut failure = None;
        for (hint, token) in held {
            match self.revoke_one(method, &endpoint, &integration, token, hint).await {
                Ok(RevocationAnswer::Revoked) => revoked = true,
                Ok(RevocationAnswer::UnsupportedTokenType) => {}
                Ok(RevocationAnswer::Refused { status, code }) => {
                    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                    failure.get_or_insert(format!(
                        "the provider refused to revoke the {}: HTTP {status}{code}",
                        hint.as_str().replace('_', " ")
                    ));
                }
                Err(e) => {
                    failure.get_or_insert(safe_reason(&e));
                }
            }
        }
        match (failure, revoked) {
            (Some(reason), _) => Revocation::Failed(reason),
            (None, true) => Revocation::Revoked,
            (None, false) => Revocation::NotSupported,
        }
    }

    /// The method's revocation endpoint for a connection with `config`: its `revocation_url`,
    /// else its issuer's `revocation_endpoint`; `None` when neither names one.
    async fn revocation_endpoint(
        &self,
        connector: &str,
        method: &OAuth2Auth,
        config: &BTreeMap<String, String>,
    ) -> Result<Option<Url>, EngineError> {
        let scope = || Scope { credentials: None, config: Some(config), response: None };
        let misconfigured =
            |message: String| EngineError::Connector { connector: connector.to_string(), message };
        if let Some(url) = &method.revocation_url {
            let text = template::render_url(url, scope())
                .map_err(|m| misconfigured(format!("revocation_url: {m}")))?;
            return Url::parse(&text)
                .map(Some)
                .map_err(|e| misconfigured(format!("revocation_url: {e}")));
        }
        let Some(issuer) = &method.issuer else { return Ok(None) };
        let issuer = template::render_url(issuer, scope())
            .map_err(|m| misconfigured(format!("issuer: {m}")))?;
        Ok(self.oauth.discovery.get(&self.net, &issuer).await?.revocation_endpoint)
    }

    /// One revocation request (RFC 7009 §2.1), authenticated as the token requests are.
    async fn revoke_one(
        &self,
        method: &OAuth2Auth,
        endpoint: &Url,
        integration: &IntegrationRecord,
        token: &Secret,
        hint: TokenTypeHint,
    ) -> Result<RevocationAnswer, EngineError> {
        let client_id = Self::client_id(integration)?;
        let assertion = self.client_assertion(method, integration, client_id, endpoint)?;
        let client = Client {
            id: client_id,
            secret: integration.client_secret.as_ref(),
            assertion: assertion.as_ref(),
        };
        let request = revocation_request(method, endpoint, client, token, hint).map_err(|m| {
            EngineError::Connector { connector: integration.connector.clone(), message: m }
        })?;
        let http_request = request
            .into_http()
            .map_err(|e| EngineError::Internal(format!("revocation request: {e}")))?;
        // Only the endpoint's own host receives the token and the client credentials.
        let policy = endpoint_policy(endpoint)?;
        let net = self.client_for(method, integration)?;
        let response = net.send(http_request, &policy).await?;
        let status = response.status.as_u16();
        let body = crate::auth_response::read(response, "revocation endpoint").await?;
        Ok(parse_revocation_response(status, &body))
    }
}

/// Why a revocation could not be asked for, in words safe for an event and a log: the network
/// error's own text names a host at most; the rest are fixed phrases.
fn safe_reason(error: &EngineError) -> String {
    match error {
        EngineError::Net(net) => net.to_string(),
        EngineError::Discovery { .. } => "the issuer's discovery document is unavailable".into(),
        EngineError::Connector { .. } => "the connector's revocation settings are invalid".into(),
        EngineError::IncompleteIntegration { .. } => "the integration is incomplete".into(),
        _ => "the integration or the request could not be prepared".into(),
    }
}
