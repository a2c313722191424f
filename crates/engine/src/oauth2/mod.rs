//! OAuth 2.0 in the engine: resolving a connector's endpoints (from its file or its issuer's
//! discovery document), calling the token endpoint, the connect flow, the single-flight
//! refresh and revocation on delete. The request values themselves come from `latchkey_core::oauth2`.

mod connect;
mod device;
mod discovery;
pub mod mcp_client;
pub mod mcp_discovery;
mod misconfigured;
mod oauth1;
mod refresh;
mod revocation;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use latchkey_core::connector::{Grant, OAuth2Auth};
use latchkey_core::oauth2::{
    Client, TokenError, TokenGrant, TokenSet, parse_token_response, token_request,
};
use latchkey_core::template::{self, Scope};
use latchkey_core::{AuthMethod, Connector, Secret};
use latchkey_net::HostPolicy;
use latchkey_store::{ConnectionRecord, IntegrationRecord};
use time::OffsetDateTime;
use url::Url;

pub use connect::{CallbackParams, LocalFlow};
pub use device::DeviceFlow;
pub use discovery::DiscoveryCache;
pub use misconfigured::PROBE_EVERY;
pub use refresh::{LEASE, RefreshCoordinator, RefreshReason};
pub use revocation::{REVOCATION_TIMEOUT, Revocation};

pub(crate) use oauth1::oauth1_flow_method;

use crate::scripts::{HookScope, TokenEvent};
use crate::{Engine, EngineError};

/// A connector's OAuth2 method with its endpoints resolved for one connection's config.
#[derive(Debug, Clone)]
pub struct ResolvedOAuth {
    /// The method's settings.
    pub method: OAuth2Auth,
    /// Authorization endpoint (authorization-code grant only).
    pub authorize_url: Option<Url>,
    /// Token endpoint.
    pub token_url: Url,
    /// Device authorization endpoint (device authorization grant only).
    pub device_authorization_url: Option<Url>,
    /// Refresh endpoint (the token endpoint unless the connector names another).
    pub refresh_url: Url,
    /// The issuer the callback's `iss` must match, when known.
    pub issuer: Option<String>,
    /// Whether the callback must carry `iss`: the connector's `callback.require_iss`, or the
    /// issuer's discovery document says it sends it (RFC 9207 §2.4); a response without it is
    /// then refused.
    pub iss_required: bool,
}

/// The connector's OAuth2 method with this id, if it is one.
pub fn oauth_method<'a>(connector: &'a Connector, auth: Option<&str>) -> Option<&'a OAuth2Auth> {
    match connector.auth_method(auth) {
        Some(AuthMethod::OAuth2(m)) => Some(m),
        _ => None,
    }
}

impl Engine {
    /// Resolves the endpoints of `method` for a connection with `config`.
    pub(crate) async fn resolve_oauth(
        &self,
        connector: &Connector,
        method: &OAuth2Auth,
        config: &BTreeMap<String, String>,
    ) -> Result<ResolvedOAuth, EngineError> {
        let misconfigured =
            |message: String| EngineError::Connector { connector: connector.id.clone(), message };
        let render = |field: &str, value: &Option<String>| -> Result<Option<Url>, EngineError> {
            let Some(value) = value else { return Ok(None) };
            let scope = Scope { credentials: None, config: Some(config), response: None };
            let text = template::render_url(value, scope)
                .map_err(|m| misconfigured(format!("{field}: {m}")))?;
            Url::parse(&text).map(Some).map_err(|e| misconfigured(format!("{field}: {e}")))
        };
        let mut authorize_url = render("authorize_url", &method.authorize_url)?;
        let mut token_url = render("token_url", &method.token_url)?;
        let mut device_authorization_url =
            render("device_authorization_url", &method.device_authorization_url)?;
        let issuer = match &method.issuer {
            Some(issuer) => {
                let scope = Scope { credentials: None, config: Some(config), response: None };
                Some(
                    template::render_url(issuer, scope)
                        .map_err(|m| misconfigured(format!("issuer: {m}")))?,
                )
            }
            None => None,
        };
        let mut iss_required = method.callback.require_iss;
        if let Some(issuer) = &issuer
            && (token_url.is_none()
                || (authorize_url.is_none() && method.grant == Grant::AuthorizationCode)
                || (device_authorization_url.is_none() && method.grant == Grant::DeviceCode))
        {
            let metadata = self.oauth.discovery.get(&self.net, issuer).await?;
            iss_required |= metadata.iss_parameter_supported;
            authorize_url = authorize_url.or(metadata.authorization_endpoint);
            token_url = token_url.or(metadata.token_endpoint);
            device_authorization_url =
                device_authorization_url.or(metadata.device_authorization_endpoint);
        }
        let token_url = token_url.ok_or_else(|| misconfigured("no token endpoint".into()))?;
        if method.grant == Grant::AuthorizationCode && authorize_url.is_none() {
            return Err(misconfigured("no authorization endpoint".into()));
        }
        let refresh_url =
            render("refresh_url", &method.refresh_url)?.unwrap_or_else(|| token_url.clone());
        Ok(ResolvedOAuth {
            method: method.clone(),
            authorize_url,
            token_url,
            device_authorization_url,
            refresh_url,
            issuer,
            iss_required,
        })
    }

    /// The signed client assertion (RFC 7523 §2.2) when the method authenticates with
    /// `private_key_jwt`, for a request to `audience` (the token endpoint); `None` otherwise.
    pub(crate) fn client_assertion(
        &self,
        method: &OAuth2Auth,
        integration: &IntegrationRecord,
        client_id: &str,
        audience: &Url,
    ) -> Result<Option<Secret>, EngineError> {
        if method.client_auth != latchkey_core::connector::ClientAuth::PrivateKeyJwt {
            return Ok(None);
        }
        let key = integration.client_secret.as_ref().ok_or_else(|| {
            EngineError::IncompleteIntegration {
                integration: integration.id.clone(),
                message: "needs its private key (as the client secret) for private_key_jwt".into(),
            }
        })?;
        let alg = method.client_assertion_alg.as_deref().unwrap_or("RS256");
        let jti = crate::random_token(16);
        latchkey_core::oauth2::client_assertion(
            client_id,
            audience.as_str(),
            key,
            alg,
            self.clock.now().into(),
            &jti,
        )
        .map(Some)
        .map_err(|m| EngineError::Connector {
            connector: integration.connector.clone(),
            message: m,
        })
    }

    /// Sends one token request, through the connector's token hooks, and parses the answer.
    /// `connection` scopes the hooks' storage (`None` while a connection is being created).
    pub(crate) async fn call_token_endpoint(
        &self,
        oauth: &ResolvedOAuth,
        endpoint: &Url,
        integration: &IntegrationRecord,
        connection: Option<&str>,
        grant: TokenGrant<'_>,
    ) -> Result<TokenSet, EngineError> {
        let result = self.token_exchange(oauth, endpoint, integration, connection, grant).await;
        match &result {
            Ok(_) => self.client_accepted(integration).await,
            Err(error @ EngineError::Token(token)) if token.is_client_refused() => {
                self.client_refused(integration, error).await;
            }
            Err(_) => {}
        }
        result
    }

    /// One token request (see [`Engine::call_token_endpoint`]), hooks included.
    async fn token_exchange(
        &self,
        oauth: &ResolvedOAuth,
        endpoint: &Url,
        integration: &IntegrationRecord,
        connection: Option<&str>,
        grant: TokenGrant<'_>,
    ) -> Result<TokenSet, EngineError> {
        let event = match grant {
            TokenGrant::RefreshToken { .. } => TokenEvent::Refresh,
            _ => TokenEvent::Token,
        };
        let client_id = match (&integration.client_id, grant) {
            (Some(id), _) => id.as_str(),
            // The assertion identifies the caller; no client is needed.
            (None, TokenGrant::JwtBearer { .. }) => "",
            (None, _) => Self::client_id(integration)?,
        };
        let assertion = self.client_assertion(&oauth.method, integration, client_id, endpoint)?;
        let client = Client {
            id: client_id,
            secret: integration.client_secret.as_ref(),
            assertion: assertion.as_ref(),
        };
        let mut request = token_request(&oauth.method, endpoint, client, grant).map_err(|m| {
            EngineError::Connector { connector: integration.connector.clone(), message: m }
        })?;
        // Only the endpoint's own host receives the client credentials, whatever a hook does.
        let policy = endpoint_policy(endpoint)?;
        let entry = self.connector_entry(&integration.connector)?;
        // Hooks' logs and errors never show the client secret or the grant's secrets.
        let mut secrets: Vec<Secret> = integration.client_secret.iter().cloned().collect();
        secrets.extend(grant_secrets(grant));
        let scope = |secrets: Vec<Secret>| HookScope {
            connection: connection.map(str::to_string),
            policy: policy.clone(),
            auth_value: None,
            credentials: None,
            config: Default::default(),
            secrets,
        };
        self.before_token_request(&entry.connector, event, scope(secrets.clone()), &mut request)
            .await?;
        let http_request = request
            .into_http()
            .map_err(|e| EngineError::Internal(format!("token request: {e}")))?;
        let net = self.client_for(&oauth.method, integration)?;
        let response = net.send(http_request, &policy).await?;
        let status = response.status.as_u16();
        let headers = response.headers.clone();
        let body: Bytes = crate::auth_response::read(response, "token endpoint").await?;
        secrets.extend(response_secrets(&body));
        let (status, body) = self
            .after_token_response(&entry.connector, event, scope(secrets), status, &headers, body)
            .await?;
        match parse_token_response(&oauth.method.token_response, status, &body) {
            Ok(tokens) => Ok(tokens),
            Err(TokenError::Provider { code, description, status }) => {
                // A refusal from a server whose clock is far from ours is most likely about
                // the timestamps we signed (assertions, `iat`/`exp`): say so.
                let description = match clock_skew(&headers) {
                    Some(skew) => Some(format!(
                        "{}the server's clock differs from ours by {skew} s",
                        description.map(|d| format!("{d}; ")).unwrap_or_default()
                    )),
                    None => description,
                };
                Err(TokenError::Provider { code, description, status }.into())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The integration an OAuth2 connection uses, in the connection's environment: the JWT
    /// bearer grant may have none (its assertion identifies the caller), every other grant
    /// needs one.
    pub(crate) async fn oauth_integration(
        &self,
        connector: &Connector,
        method: &OAuth2Auth,
        record: &ConnectionRecord,
    ) -> Result<IntegrationRecord, EngineError> {
        match record.integration.as_deref() {
            None if method.grant == Grant::JwtBearer => {
                let now = self.clock.now();
                Ok(IntegrationRecord {
                    environment: record.environment.clone(),
                    id: String::new(),
                    connector: connector.id.clone(),
                    client_id: None,
                    client_secret: None,
                    scopes: Vec::new(),
                    settings: serde_json::Value::Null,
                    created_at: now,
                    updated_at: now,
                    misconfigured: None,
                })
            }
            None => Err(EngineError::invalid(
                "integration",
                "an OAuth2 connection needs an integration (client id and secret)",
            )),
            Some(id) => self.integration_record(&record.environment, id).await,
        }
    }

    /// The integration's client id; [`EngineError::IncompleteIntegration`] when it has none.
    pub(crate) fn client_id(integration: &IntegrationRecord) -> Result<&str, EngineError> {
        integration.client_id.as_deref().ok_or_else(|| EngineError::IncompleteIntegration {
            integration: integration.id.clone(),
            message: "has no client id".into(),
        })
    }

    /// The scopes to request: the integration's, else the connector's defaults.
    pub(crate) fn scopes(oauth: &ResolvedOAuth, integration: &IntegrationRecord) -> Vec<String> {
        if integration.scopes.is_empty() {
            oauth.method.scopes.clone()
        } else {
            integration.scopes.clone()
        }
    }

    /// A token from the grants that need no user in the loop: client credentials, the password
    /// grant with the stored username and password, or the JWT bearer grant with a freshly
    /// signed assertion. `None` for the other grants (or a password grant without both
    /// credentials).
    pub(crate) async fn client_grant(
        &self,
        oauth: &ResolvedOAuth,
        integration: &IntegrationRecord,
        connection: Option<&str>,
        credentials: &BTreeMap<String, Secret>,
        config: &BTreeMap<String, String>,
    ) -> Option<Result<TokenSet, EngineError>> {
        let scopes = Self::scopes(oauth, integration);
        let assertion;
        let grant = match oauth.method.grant {
            Grant::JwtBearer => {
                let scope =
                    Scope { credentials: Some(credentials), config: Some(config), response: None };
                assertion = match latchkey_core::oauth2::jwt_bearer_assertion(
                    &oauth.method,
                    oauth.token_url.as_str(),
                    &scopes,
                    scope,
                    self.clock.now().into(),
                    &crate::random_token(16),
                ) {
                    Ok(assertion) => assertion,
                    Err(message) => {
                        return Some(Err(EngineError::Connector {
                            connector: integration.connector.clone(),
                            message,
                        }));
                    }
                };
                TokenGrant::JwtBearer { assertion: &assertion }
            }
            Grant::ClientCredentials => TokenGrant::ClientCredentials { scopes: &scopes },
            Grant::Password => TokenGrant::Password {
                username: credentials.get("username")?,
                password: credentials.get("password")?,
                scopes: &scopes,
            },
            Grant::AuthorizationCode | Grant::DeviceCode => return None,
        };
        Some(
            self.call_token_endpoint(oauth, &oauth.token_url, integration, connection, grant).await,
        )
    }

    /// Obtains the first token for the client-credentials and password grants.
    pub(crate) async fn initial_grant(
        &self,
        connector: &Connector,
        method: &OAuth2Auth,
        record: &mut ConnectionRecord,
    ) -> Result<(), EngineError> {
        let integration = self.oauth_integration(connector, method, record).await?;
        let oauth = self.resolve_oauth(connector, method, &record.config).await?;
        let tokens = self
            .client_grant(&oauth, &integration, None, &record.credentials, &record.config)
            .await.ok_or_else(|| {
            EngineError::invalid(
                "auth",
                "this auth method connects through a user flow: a connect session, or `latchkey connect`",
            )
        })??;
        apply_tokens(record, tokens, self.clock.now());
        Ok(())
    }
}

/// How far (seconds, signed: positive when the server is ahead) a response's `Date` is from our
/// clock, when it is more than five minutes.
pub(crate) fn clock_skew(headers: &http::HeaderMap) -> Option<i64> {
    let date = headers.get(http::header::DATE)?.to_str().ok()?;
    let theirs = httpdate::parse_http_date(date).ok()?;
    let ours = std::time::SystemTime::now();
    let skew = match theirs.duration_since(ours) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).ok()?,
        Err(behind) => -i64::try_from(behind.duration().as_secs()).ok()?,
    };
    (skew.abs() > 300).then_some(skew)
}

/// The secret values a grant sends.
fn grant_secrets(grant: TokenGrant<'_>) -> Vec<Secret> {
    match grant {
        TokenGrant::AuthorizationCode { code, code_verifier, .. } => {
            std::iter::once(code).chain(code_verifier).cloned().collect()
        }
        TokenGrant::Password { password, .. } => vec![password.clone()],
        TokenGrant::DeviceCode { device_code } => vec![device_code.clone()],
        TokenGrant::JwtBearer { assertion } => vec![assertion.clone()],
        TokenGrant::RefreshToken { refresh_token } => vec![refresh_token.clone()],
        TokenGrant::ClientCredentials { .. } => Vec::new(),
    }
}

/// Every string in a token response under a key that names a token or a secret, at any depth.
fn response_secrets(body: &[u8]) -> Vec<Secret> {
    fn walk(value: &serde_json::Value, secret_here: bool, out: &mut Vec<Secret>) {
        match value {
            serde_json::Value::String(text) if secret_here && text.len() >= 8 => {
                out.push(Secret::new(text.as_str()));
            }
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let key = key.to_ascii_lowercase();
                    let secret = (key.contains("token") || key.contains("secret") || key == "code")
                        && key != "token_type";
                    walk(value, secret, out);
                }
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|v| walk(v, secret_here, out));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let doc = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_else(|_| {
        // Some token endpoints answer with a form.
        serde_json::Value::Object(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect(),
        )
    });
    walk(&doc, false, &mut out);
    out
}

/// Puts a token set into a connection record (used when a connection is created).
pub(crate) fn apply_tokens(record: &mut ConnectionRecord, tokens: TokenSet, now: OffsetDateTime) {
    record.credentials.insert("access_token".into(), tokens.access_token);
    if let Some(refresh) = tokens.refresh_token {
        record.credentials.insert("refresh_token".into(), refresh);
    }
    record.expires_at = expiry(now, tokens.expires_in);
    record.config.extend(tokens.kept);
}

/// When a token with this lifetime expires. The lifetime comes from a provider (a token
/// response, a session login), so it is clamped to
/// [`MAX_TOKEN_LIFETIME`](latchkey_core::oauth2::MAX_TOKEN_LIFETIME) and the sum never overflows.
pub(crate) fn expiry(
    now: OffsetDateTime,
    lifetime: Option<std::time::Duration>,
) -> Option<OffsetDateTime> {
    let lifetime = lifetime?.min(latchkey_core::oauth2::MAX_TOKEN_LIFETIME);
    Some(now.checked_add(time::Duration::try_from(lifetime).ok()?).unwrap_or(now))
}

/// Only the endpoint's own host (and port) may receive the client credentials.
pub(crate) fn endpoint_policy(endpoint: &Url) -> Result<HostPolicy, EngineError> {
    Ok(HostPolicy::for_url(endpoint)?)
}

/// SHA-256 of a token or state, hex: what the store keeps instead of the value.
pub(crate) fn hash(value: &Secret) -> String {
    use sha2::{Digest, Sha256};
    hex_encode(&Sha256::digest(value.expose().as_bytes()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shared state of the OAuth machinery.
#[derive(Debug, Default)]
pub struct OAuthRuntime {
    pub(crate) discovery: DiscoveryCache,
    pub(crate) refresher: Arc<RefreshCoordinator>,
}
