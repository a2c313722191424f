//! The device authorization grant (RFC 8628) for headless connections: ask for a user code,
//! show it, and poll the token endpoint at the interval the server asks for (`slow_down` adds
//! five seconds, §3.5) until the user approves, refuses, or the code expires.

use std::collections::BTreeMap;
use std::time::Duration;

use latchkey_core::oauth2::{
    Client, DeviceAuthorization, TokenError, TokenGrant, device_authorization_request,
    parse_device_authorization,
};
use latchkey_store::{ConnectionRecord, ConnectionStatus};

use super::{ResolvedOAuth, apply_tokens, endpoint_policy, oauth_method};
use crate::events::Event;
use crate::{Connect, ConnectionId, Engine, EngineError, EnvironmentId, FlowError, IntegrationId};

/// A device flow in progress: show `authorization.user_code` and `verification_uri`.
#[derive(Debug)]
pub struct DeviceFlow {
    /// What the user needs.
    pub authorization: DeviceAuthorization,
    oauth: ResolvedOAuth,
    environment: String,
    integration: String,
}

impl Connect<'_> {
    /// Starts a device flow for an integration whose connector uses `grant: device_code`.
    pub async fn begin_device_authorization(
        &self,
        environment: &EnvironmentId,
        integration: &IntegrationId,
    ) -> Result<DeviceFlow, EngineError> {
        let integration =
            self.engine.integration_record(environment.as_str(), integration.as_str()).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let method = oauth_method(&entry.connector, None).ok_or_else(|| {
            EngineError::invalid("integration", "this connector does not use OAuth2")
        })?;
        let oauth = self.engine.resolve_oauth(&entry.connector, method, &BTreeMap::new()).await?;
        let endpoint = oauth.device_authorization_url.clone().ok_or_else(|| {
            EngineError::invalid(
                "integration",
                "this connector's OAuth2 method has no device authorization endpoint",
            )
        })?;
        let client_id = Engine::client_id(&integration)?;
        let scopes = Engine::scopes(&oauth, &integration);
        // The device endpoint authenticates the client as the token endpoint does (§3.1).
        let assertion = self.engine.client_assertion(
            &oauth.method,
            &integration,
            client_id,
            &oauth.token_url,
        )?;
        let client = Client {
            id: client_id,
            secret: integration.client_secret.as_ref(),
            assertion: assertion.as_ref(),
        };
        let request =
            device_authorization_request(&oauth.method, &endpoint, client, &scopes).map_err(
                |m| EngineError::Connector { connector: integration.connector.clone(), message: m },
            )?;
        let http_request = request.into_http().map_err(|e| EngineError::Internal(e.to_string()))?;
        let response = self.engine.net.send(http_request, &endpoint_policy(&endpoint)?).await?;
        let status = response.status.as_u16();
        let body = crate::auth_response::read(response, "device authorization endpoint").await?;
        let authorization = parse_device_authorization(status, &body)?;
        Ok(DeviceFlow {
            authorization,
            oauth,
            environment: integration.environment,
            integration: integration.id,
        })
    }

    /// Polls until the user decides, then stores the connection.
    pub async fn complete_device_authorization(
        &self,
        flow: DeviceFlow,
        connection_id: Option<ConnectionId>,
    ) -> Result<ConnectionRecord, EngineError> {
        let integration =
            self.engine.integration_record(&flow.environment, &flow.integration).await?;
        let expires_in =
            time::Duration::try_from(flow.authorization.expires_in).unwrap_or(time::Duration::MAX);
        let deadline = self.engine.clock.now().saturating_add(expires_in);
        let mut interval = flow.authorization.interval;
        let tokens = loop {
            self.engine.clock.sleep(interval).await;
            if self.engine.clock.now() > deadline {
                return Err(FlowError::Expired.into());
            }
            let grant = TokenGrant::DeviceCode { device_code: &flow.authorization.device_code };
            match self
                .engine
                .call_token_endpoint(&flow.oauth, &flow.oauth.token_url, &integration, None, grant)
                .await
            {
                Ok(tokens) => break tokens,
                Err(EngineError::Token(TokenError::Provider { code, .. }))
                    if code == "authorization_pending" => {}
                Err(EngineError::Token(TokenError::Provider { code, .. }))
                    if code == "slow_down" =>
                {
                    interval += Duration::from_secs(5);
                }
                Err(EngineError::Token(TokenError::Provider { code, .. }))
                    if code == "access_denied" =>
                {
                    return Err(FlowError::AccessDenied.into());
                }
                Err(EngineError::Token(TokenError::Provider { code, .. }))
                    if code == "expired_token" =>
                {
                    return Err(FlowError::Provider { code }.into());
                }
                Err(other) => return Err(other),
            }
        };
        let entry = self.engine.connector_entry(&integration.connector)?;
        let now = self.engine.clock.now();
        let mut record = ConnectionRecord {
            environment: integration.environment.clone(),
            id: connection_id
                .map(String::from)
                .unwrap_or_else(|| format!("conn_{}", crate::random_token(12))),
            connector: entry.connector.id.clone(),
            integration: Some(integration.id.clone()),
            auth_method: entry
                .connector
                .auth_method(None)
                .map(|m| m.id().to_string())
                .unwrap_or_default(),
            credentials: BTreeMap::new(),
            config: BTreeMap::new(),
            status: ConnectionStatus::Ok,
            health: latchkey_store::Health::default(),
            label: None,
            end_user: None,
            tags: Default::default(),
            metadata: Default::default(),
            expires_at: None,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        apply_tokens(&mut record, tokens, now);
        let outcome = self.engine.run_test(&record, &entry.connector).await;
        if let Some(health) = crate::health::after_test(&record.health, &outcome, now) {
            record.health = health;
        }
        record.label = outcome?.label;
        record.version = self.engine.store.insert_connection(&record).await?;
        self.engine.forget(&record.id);
        self.engine.events.emit(Event::created(&record));
        Ok(record)
    }
}
