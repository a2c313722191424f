//! The OAuth 1.0a three-legged flow (RFC 5849 §2) on the same connect machinery as OAuth2: the
//! temporary credentials' token plays the part of `state` (it comes back on the callback), their
//! secret is sealed where the PKCE verifier would be, and `oauth_verifier` plays the part of the
//! code. The integration holds the consumer key (client id) and secret (or RSA key).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::auth::oauth1::{
    FlowCredentials, SigningInput, flow_request, parse_flow_credentials,
};
use latchkey_core::connector::{OAuth1Auth, OAuth1SignatureMethod};
use latchkey_core::template::{self, Scope};
use latchkey_core::{AuthMethod, Connector};
use latchkey_store::IntegrationRecord;
use url::Url;

use super::endpoint_policy;
use crate::{Engine, EngineError};

/// The connector's method `auth` (default: the first) when it is OAuth1 with the three-legged
/// flow.
pub(crate) fn oauth1_flow_method<'a>(
    connector: &'a Connector,
    auth: Option<&str>,
) -> Option<&'a OAuth1Auth> {
    match connector.auth_method(auth) {
        Some(AuthMethod::OAuth1(m)) if m.three_legged() => Some(m),
        _ => None,
    }
}

/// The credential key of the consumer secret for this signature method.
fn secret_field(method: &OAuth1Auth) -> &'static str {
    if method.signature_method == OAuth1SignatureMethod::RsaSha1 {
        "private_key"
    } else {
        "consumer_secret"
    }
}

fn consumer(integration: &IntegrationRecord) -> Result<(&str, &Secret), EngineError> {
    match (&integration.client_id, &integration.client_secret) {
        (Some(key), Some(secret)) => Ok((key, secret)),
        _ => Err(EngineError::IncompleteIntegration {
            integration: integration.id.clone(),
            message:
                "needs the consumer key (client id) and consumer secret or RSA key (client secret)"
                    .into(),
        }),
    }
}

impl Engine {
    fn oauth1_endpoint(
        connector: &Connector,
        field: &str,
        value: &Option<String>,
        config: &BTreeMap<String, String>,
    ) -> Result<Url, EngineError> {
        let misconfigured =
            |message: String| EngineError::Connector { connector: connector.id.clone(), message };
        let value = value.as_deref().ok_or_else(|| misconfigured(format!("no {field}")))?;
        let scope = Scope { credentials: None, config: Some(config), response: None };
        let text = template::render_url(value, scope)
            .map_err(|m| misconfigured(format!("{field}: {m}")))?;
        Url::parse(&text).map_err(|e| misconfigured(format!("{field}: {e}")))
    }

    async fn oauth1_call(
        &self,
        method: &OAuth1Auth,
        endpoint: Url,
        input: &SigningInput<'_>,
        temporary: bool,
    ) -> Result<FlowCredentials, EngineError> {
        let policy = endpoint_policy(&endpoint)?;
        let request = flow_request(method, endpoint, input)?;
        let http_request = request
            .into_http()
            .map_err(|e| EngineError::Internal(format!("OAuth1 request: {e}")))?;
        let response = self.net.send(http_request, &policy).await?;
        let status = response.status.as_u16();
        let body = crate::auth_response::read(response, "OAuth1 token endpoint").await?;
        parse_flow_credentials(status, &body, temporary)
            .map_err(|message| EngineError::Flow(crate::FlowError::Provider { code: message }))
    }

    /// Gets temporary credentials (§2.1) and returns the URL to send the user to (§2.2), the
    /// temporary token (the flow's state) and its secret.
    pub(crate) async fn begin_oauth1(
        &self,
        connector: &Connector,
        method: &OAuth1Auth,
        integration: &IntegrationRecord,
        config: &BTreeMap<String, String>,
        redirect_uri: &str,
    ) -> Result<(Url, Secret, Secret), EngineError> {
        let (key, secret) = consumer(integration)?;
        let endpoint = Self::oauth1_endpoint(
            connector,
            "request_token_url",
            &method.request_token_url,
            config,
        )?;
        let nonce = crate::random_token(16);
        let input = SigningInput {
            consumer_key: key,
            consumer_secret: secret,
            token: None,
            token_secret: None,
            timestamp: self.unix_seconds(),
            nonce: &nonce,
            extra: &[("oauth_callback", redirect_uri)],
        };
        let temporary = self.oauth1_call(method, endpoint, &input, true).await?;
        let mut url =
            Self::oauth1_endpoint(connector, "authorize_url", &method.authorize_url, config)?;
        url.query_pairs_mut().append_pair("oauth_token", &temporary.token);
        Ok((url, Secret::new(temporary.token), temporary.secret))
    }

    /// Exchanges the verifier for token credentials (§2.3): the connection's credentials and
    /// the config values the connector keeps from the response.
    pub(crate) async fn exchange_oauth1(
        &self,
        connector: &Connector,
        method: &OAuth1Auth,
        integration: &IntegrationRecord,
        config: &BTreeMap<String, String>,
        temporary: (&Secret, &Secret),
        verifier: &Secret,
    ) -> Result<(BTreeMap<String, Secret>, BTreeMap<String, String>), EngineError> {
        let (key, secret) = consumer(integration)?;
        let endpoint =
            Self::oauth1_endpoint(connector, "access_token_url", &method.access_token_url, config)?;
        let nonce = crate::random_token(16);
        let input = SigningInput {
            consumer_key: key,
            consumer_secret: secret,
            token: Some(temporary.0.expose()),
            token_secret: Some(temporary.1),
            timestamp: self.unix_seconds(),
            nonce: &nonce,
            extra: &[("oauth_verifier", verifier.expose())],
        };
        let granted = self.oauth1_call(method, endpoint, &input, false).await?;
        let mut credentials = BTreeMap::new();
        credentials.insert("consumer_key".to_string(), Secret::new(key));
        credentials.insert(secret_field(method).to_string(), secret.clone());
        credentials.insert("token".to_string(), Secret::new(granted.token));
        credentials.insert("token_secret".to_string(), granted.secret);
        let kept = method
            .token_keep
            .iter()
            .filter_map(|(key, field)| Some((key.clone(), granted.extra.get(field)?.clone())))
            .collect();
        Ok((credentials, kept))
    }
}

impl Engine {
    /// Adds to imported three-legged OAuth 1.0a tokens the integration's consumer credentials,
    /// as the flow stores them, unless the import brings its own (an export of such a
    /// connection holds them).
    pub(crate) async fn add_oauth1_consumer(
        &self,
        method: &OAuth1Auth,
        environment: &str,
        integration: &str,
        credentials: &mut BTreeMap<String, Secret>,
    ) -> Result<(), EngineError> {
        if credentials.contains_key("consumer_key") {
            return Ok(());
        }
        let integration = self.integration_record(environment, integration).await?;
        let (key, secret) = consumer(&integration)?;
        credentials.insert("consumer_key".to_string(), Secret::new(key));
        credentials.insert(secret_field(method).to_string(), secret.clone());
        Ok(())
    }

    /// The engine clock's time in whole seconds since the Unix epoch (`oauth_timestamp`).
    fn unix_seconds(&self) -> u64 {
        u64::try_from(self.clock.now().unix_timestamp()).unwrap_or(0)
    }
}
