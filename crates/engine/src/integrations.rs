//! Integrations: a connector enabled with the app's own settings (OAuth client id and secret,
//! scopes). The client secret is stored encrypted and never returned.

use latchkey_core::Secret;
use latchkey_store::{
    ConnectionFilter, ConnectionStatus, IntegrationFilter, IntegrationRecord, MAX_PAGE_SIZE, Page,
    PageRequest,
};

use crate::events::Event;
use crate::{ConnectorId, Engine, EngineError, EnvironmentId, IntegrationId};

/// What a caller supplies to create or replace an integration.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    /// The environment it belongs to.
    pub environment: EnvironmentId,
    /// Integration id, unique in its environment.
    pub id: IntegrationId,
    /// The connector it enables.
    pub connector: ConnectorId,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret.
    pub client_secret: Option<Secret>,
    /// Scopes to request (the connector's defaults when empty).
    pub scopes: Vec<String>,
}

/// What a caller supplies to integrate a remote MCP server by its URL alone.
#[derive(Debug, Clone)]
pub struct NewMcpIntegration {
    /// The environment it belongs to.
    pub environment: EnvironmentId,
    /// Integration id, unique in its environment; the connector made for the server gets it too.
    pub id: IntegrationId,
    /// The MCP server.
    pub server: McpServer,
    /// A client the operator registered at the server's authorization server, if any.
    pub client_id: Option<String>,
    /// That client's secret.
    pub client_secret: Option<Secret>,
    /// Latchkey's public URL (the Client ID Metadata Document is served under it).
    pub public_url: url::Url,
    /// Latchkey's OAuth callback, the redirect URI registered.
    pub redirect_uri: String,
}

/// Which remote MCP server to integrate.
#[derive(Debug, Clone)]
pub enum McpServer {
    /// By its URL (its Streamable HTTP endpoint): a custom connector is made from what
    /// discovery finds.
    Url(url::Url),
    /// By a catalog connector for it (see
    /// [`mcp_server_of`](crate::oauth2::mcp_client::mcp_server_of)): discovery registers
    /// Latchkey, and the integration uses that connector as it is.
    Connector(ConnectorId),
}

/// The engine's integrations, from [`Engine::integrations`].
#[derive(Debug, Clone, Copy)]
pub struct Integrations<'e> {
    pub(crate) engine: &'e Engine,
}

impl Integrations<'_> {
    /// Creates or replaces an integration.
    pub async fn put(&self, new: NewIntegration) -> Result<IntegrationRecord, EngineError> {
        self.engine.connector_entry(new.connector.as_str())?;
        self.engine.environment(&new.environment).await?;
        let now = self.engine.clock.now();
        let created_at = match self
            .engine
            .store
            .get_integration(new.environment.as_str(), new.id.as_str())
            .await?
        {
            Some(existing) => existing.created_at,
            None => now,
        };
        let record = IntegrationRecord {
            environment: new.environment.into_string(),
            id: new.id.into_string(),
            connector: new.connector.into_string(),
            client_id: new.client_id,
            client_secret: new.client_secret,
            scopes: new.scopes,
            settings: serde_json::Value::Object(Default::default()),
            created_at,
            updated_at: now,
            misconfigured: None,
        };
        self.engine.store.put_integration(&record).await?;
        self.engine.identities.forget(&record.environment, &record.id);
        Ok(record)
    }

    /// Integrates the remote MCP server `new.server`: discovers its authorization server
    /// ([`discover`](crate::oauth2::mcp_discovery::discover)), registers Latchkey there (see
    /// [`choose_registration`](crate::oauth2::mcp_client::choose_registration)), and stores the
    /// integration that connects through — for a server given by URL, a custom connector whose
    /// base URL is the server and whose OAuth2 method carries the discovered issuer and
    /// `resource`; for a catalog connector, that connector, once the discovered issuer is the
    /// one it names (a catalog entry that no longer matches the server is refused rather than
    /// sending codes to another issuer). Connect sessions for the integration then run the
    /// ordinary OAuth2 flow.
    pub async fn put_mcp_server(
        &self,
        new: NewMcpIntegration,
    ) -> Result<IntegrationRecord, EngineError> {
        use crate::oauth2::mcp_client::{self, Registration};
        self.engine.environment(&new.environment).await?;
        let connector = ConnectorId::new(new.id.as_str())
            .map_err(|e| EngineError::invalid("id", e.to_string()))?;
        let net = &self.engine.net;
        let (server, catalog) = match &new.server {
            McpServer::Url(url) => (url.clone(), None),
            McpServer::Connector(id) => {
                let entry = self.engine.connector_entry(id.as_str())?;
                let server = mcp_client::mcp_server_of(&entry.connector).ok_or_else(|| {
                    EngineError::invalid(
                        "connector",
                        format!(
                            "connector `{id}` is not an MCP server connector (an OAuth2 \
                                 method with PKCE and its base URL as `resource`)"
                        ),
                    )
                })?;
                (server, Some(entry.connector))
            }
        };
        let found = crate::oauth2::mcp_discovery::discover(net, &server, None, None).await?;
        let catalog_method = catalog.as_ref().and_then(|c| crate::oauth2::oauth_method(c, None));
        if let Some(Some(issuer)) = catalog_method.map(|m| m.issuer.as_deref())
            && !latchkey_core::oauth2::same_identifier(issuer, found.issuer.as_str())
        {
            return Err(EngineError::Discovery {
                issuer: found.issuer.to_string(),
                error: crate::DiscoveryError::IssuerMismatch,
            });
        }
        let registration =
            mcp_client::choose_registration(&found, new.client_id.as_deref(), &new.public_url);
        let (client_id, client_secret) = match registration {
            Some(Registration::PreRegistered { client_id }) => (client_id, new.client_secret),
            Some(Registration::MetadataDocument { client_id }) => (client_id.to_string(), None),
            Some(Registration::Dynamic { endpoint }) => {
                // A catalog connector authenticates as it says; register the client so.
                let basic = catalog_method.map_or(found.client_secret_basic, |m| {
                    m.client_auth == latchkey_core::connector::ClientAuth::Basic
                });
                let client = mcp_client::register(net, &endpoint, &new.redirect_uri, basic).await?;
                (client.client_id, client.client_secret)
            }
            None => {
                return Err(EngineError::invalid(
                    "client_id",
                    "the MCP server's authorization server offers neither dynamic registration \
                     nor a Client ID Metadata Document Latchkey can use (that needs an https \
                     public URL): register a client there and pass its `client_id`",
                ));
            }
        };
        let connector = match catalog {
            Some(catalog) => ConnectorId::new(&catalog.id)
                .map_err(|e| EngineError::Internal(format!("catalog connector id: {e}")))?,
            None => {
                self.refuse_other_environments_connector(&new.environment, &connector).await?;
                let source = mcp_client::connector_source(&connector, &found);
                self.engine.connectors().put_custom(&connector, &source).await?;
                connector
            }
        };
        self.put(NewIntegration {
            environment: new.environment,
            id: new.id,
            connector,
            client_id: Some(client_id),
            client_secret,
            scopes: found.scopes,
        })
        .await
    }

    /// Connector ids are global while integrations belong to an environment: the custom
    /// connector made for a server integrated by URL (named as its integration) must not replace
    /// one that another environment's integration of that name connects through.
    async fn refuse_other_environments_connector(
        &self,
        environment: &EnvironmentId,
        connector: &ConnectorId,
    ) -> Result<(), EngineError> {
        for other in self.engine.store.list_environments().await? {
            if other.id == environment.as_str() {
                continue;
            }
            if let Some(found) =
                self.engine.store.get_integration(&other.id, connector.as_str()).await?
                && found.connector == connector.as_str()
            {
                return Err(EngineError::Conflict(format!(
                    "environment `{}` has an MCP integration `{connector}`, and its connector has                      that id too (connector ids are shared by every environment): choose another id",
                    other.id
                )));
            }
        }
        Ok(())
    }

    /// The integration with this id in `environment`.
    pub async fn get(
        &self,
        environment: &EnvironmentId,
        id: &IntegrationId,
    ) -> Result<IntegrationRecord, EngineError> {
        self.engine.integration_record(environment.as_str(), id.as_str()).await
    }

    /// Deletes an integration that no connection uses; one still in use is refused with
    /// [`EngineError::Conflict`] naming how many use it (see [`Integrations::delete_forced`]).
    pub async fn delete(
        &self,
        environment: &EnvironmentId,
        id: &IntegrationId,
    ) -> Result<(), EngineError> {
        self.engine.integration_record(environment.as_str(), id.as_str()).await?;
        let users = self.users(environment, id).await?;
        if !users.is_empty() {
            let n = users.len();
            let noun = if n == 1 { "connection" } else { "connections" };
            return Err(EngineError::Conflict(format!(
                "integration `{id}` is used by {n} {noun}; delete them first, or delete it with \
                 `force` to mark them `needs_reauth`"
            )));
        }
        self.remove(environment, id).await
    }

    /// Deletes an integration even if connections use it: each of them becomes `needs_reauth`
    /// (its tokens were issued to this integration's client) and a `connection.needs_reauth`
    /// event gives the reason. Returns the ids of the connections marked.
    pub async fn delete_forced(
        &self,
        environment: &EnvironmentId,
        id: &IntegrationId,
    ) -> Result<Vec<String>, EngineError> {
        self.engine.integration_record(environment.as_str(), id.as_str()).await?;
        let users = self.users(environment, id).await?;
        let reason = format!("integration `{id}` was deleted; connect again");
        let mut marked = Vec::with_capacity(users.len());
        for connection in users {
            if !self
                .engine
                .store
                .set_connection_status(&connection, ConnectionStatus::NeedsReauth)
                .await?
            {
                continue; // deleted meanwhile
            }
            self.engine.forget(&connection);
            if let Some(record) = self.engine.store.get_connection(&connection).await? {
                tracing::info!(%connection, integration = %id, "connection needs reauth: integration deleted");
                self.engine.events.emit(Event::needs_reauth(&record, &reason));
            }
            marked.push(connection);
        }
        self.remove(environment, id).await?;
        Ok(marked)
    }

    /// The ids of the connections made through this integration.
    async fn users(
        &self,
        environment: &EnvironmentId,
        id: &IntegrationId,
    ) -> Result<Vec<String>, EngineError> {
        let filter = ConnectionFilter {
            integration: Some(id.to_string()),
            ..ConnectionFilter::in_environment(environment.as_str())
        };
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        let mut users = Vec::new();
        loop {
            let found = self.engine.store.list_connections(&filter, &page).await?;
            users.extend(found.items.into_iter().map(|c| c.id));
            match found.next {
                Some(next) => page.after = Some(next),
                None => return Ok(users),
            }
        }
    }

    async fn remove(
        &self,
        environment: &EnvironmentId,
        id: &IntegrationId,
    ) -> Result<(), EngineError> {
        self.engine.identities.forget(environment.as_str(), id.as_str());
        if self.engine.store.delete_integration(environment.as_str(), id.as_str()).await? {
            Ok(())
        } else {
            Err(EngineError::IntegrationNotFound(id.to_string()))
        }
    }

    /// One page of the integrations `filter` selects, oldest first (client secrets stay in the
    /// records' [`Secret`]s). Refuses a limit outside 1..=[`MAX_PAGE_SIZE`].
    pub async fn list(
        &self,
        filter: &IntegrationFilter,
        page: &PageRequest,
    ) -> Result<Page<IntegrationRecord>, EngineError> {
        crate::pages::check_limit(page)?;
        Ok(self.engine.store.list_integrations(filter, page).await?)
    }
}

impl Engine {
    /// The integration with this id in `environment` (ids read from the store).
    pub(crate) async fn integration_record(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<IntegrationRecord, EngineError> {
        self.store
            .get_integration(environment, id)
            .await?
            .ok_or_else(|| EngineError::IntegrationNotFound(id.to_string()))
    }
}
