//! The engine: connectors, the store and the outbound client put together. It creates and tests
//! connections and makes authenticated requests through them, for the CLI, the server and
//! in-process Rust callers alike.

pub mod catalog;
mod connections;
pub mod data_dir;
mod error;
pub mod events;
mod integrations;
pub mod oauth2;
pub mod outbound;
mod recent;
mod scheduler;
mod send;

use std::sync::Arc;

use latchkey_net::UpstreamResponse;
use latchkey_store::{ConnectionRecord, Store};

pub use catalog::{Catalog, CatalogEntry, Origin};
pub use connections::{NewConnection, TestOutcome, check_connection_id, resolve_config};
pub use data_dir::{DataDir, KeySource, SetupError};
pub use error::{EngineError, FlowError};
pub use events::{Event, Events, WebhookConfig};
pub use integrations::NewIntegration;
pub use oauth2::{CallbackParams, NewConnectSession, RefreshReason};
pub use outbound::{ApiRequest, strip_hop_by_hop};

/// Refresh tokens that expire within this margin, before a request and in the scheduler.
pub const DEFAULT_REFRESH_MARGIN: std::time::Duration = std::time::Duration::from_secs(300);

/// Latchkey's engine. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    catalog: Catalog,
    net: latchkey_net::Client,
    oauth: oauth2::OAuthRuntime,
    events: Events,
    refresh_margin: std::time::Duration,
    digest: send::DigestChallenges,
    recent: recent::RecentConnections,
}

impl Engine {
    /// An engine over `store`, with `catalog` and the outbound `net` client. Loads the custom
    /// connectors kept in the store into the catalog.
    pub async fn new(
        store: Arc<dyn Store>,
        catalog: Catalog,
        net: latchkey_net::Client,
    ) -> Result<Self, EngineError> {
        for custom in store.list_custom_connectors().await? {
            let _ = catalog.add_source(
                &custom.source,
                &format!("custom:{}", custom.id),
                Origin::Custom,
            );
        }
        Ok(Self {
            store,
            catalog,
            net,
            oauth: oauth2::OAuthRuntime::default(),
            events: Events::default(),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            digest: send::DigestChallenges::default(),
            recent: recent::RecentConnections::default(),
        })
    }

    /// Sends connection events to a webhook.
    pub fn with_webhook(mut self, config: WebhookConfig) -> Self {
        self.events = Events::webhook(config, self.net.clone());
        self
    }

    /// Refreshes tokens that expire within `margin` (default five minutes).
    pub fn with_refresh_margin(mut self, margin: std::time::Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The connector with this id.
    pub fn connector(&self, id: &str) -> Result<CatalogEntry, EngineError> {
        self.catalog.get(id).ok_or_else(|| EngineError::ConnectorNotFound(id.to_string()))
    }

    /// Stores a custom connector (YAML) and adds it to the catalog; a malformed one is refused
    /// with the parse error and changes nothing.
    pub async fn put_custom_connector(
        &self,
        id: &str,
        source: &str,
    ) -> Result<CatalogEntry, EngineError> {
        let connector = latchkey_core::connector::parse_connector(source, &format!("custom:{id}"))
            .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        if connector.id != id {
            return Err(EngineError::InvalidInput(format!(
                "the connector's id `{}` differs from `{id}`",
                connector.id
            )));
        }
        self.store.put_custom_connector(id, source).await?;
        let entry = CatalogEntry { connector: Arc::new(connector), origin: Origin::Custom };
        self.catalog.insert(entry.clone());
        Ok(entry)
    }

    /// Removes a custom connector. Built-in and file connectors cannot be removed this way.
    pub async fn delete_custom_connector(&self, id: &str) -> Result<(), EngineError> {
        match self.catalog.get(id) {
            Some(entry) if entry.origin == Origin::Custom => {
                self.store.delete_custom_connector(id).await?;
                self.catalog.remove(id);
                Ok(())
            }
            Some(_) => Err(EngineError::InvalidInput(format!(
                "connector `{id}` is not a custom connector and cannot be deleted"
            ))),
            None => Err(EngineError::ConnectorNotFound(id.to_string())),
        }
    }

    /// The stored connection with this id.
    pub async fn connection(&self, id: &str) -> Result<ConnectionRecord, EngineError> {
        self.store
            .get_connection(id)
            .await?
            .ok_or_else(|| EngineError::ConnectionNotFound(id.to_string()))
    }

    /// Deletes a connection and its credentials.
    pub async fn delete_connection(&self, id: &str) -> Result<(), EngineError> {
        let record = self.connection(id).await?;
        self.recent.forget(id);
        if self.store.delete_connection(id).await? {
            tracing::info!(connection = %id, "connection deleted");
            self.events.emit(Event::deleted(&record));
            Ok(())
        } else {
            Err(EngineError::ConnectionNotFound(id.to_string()))
        }
    }

    /// Makes an authenticated request through a connection: refreshes an OAuth2 token that is
    /// about to expire first, and on a refused token (401, or the connector's statuses)
    /// refreshes once and retries once. The response's body is not read; stream it or call
    /// `bytes()`.
    pub async fn request(
        &self,
        connection_id: &str,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        let mut record = match self.recent.get(connection_id) {
            Some(record) => record,
            None => {
                let record = Arc::new(self.connection(connection_id).await?);
                self.recent.put(record.clone());
                record
            }
        };
        let entry = self.connector(&record.connector)?;
        let oauth = oauth2::oauth_method(&entry.connector, Some(&record.auth_method));
        if let Some(_method) = oauth {
            if record.status == latchkey_store::ConnectionStatus::NeedsReauth {
                return Err(EngineError::NeedsReauth(record.id.clone()));
            }
            // Checked on the record already read, so a fresh token costs no lock.
            let expiring = RefreshReason::Expiring(self.refresh_margin);
            if expiring.still_needed(&record) {
                record = Arc::new(self.refresh_connection(connection_id, expiring).await?);
            }
        }
        let response = self.send_once(&record, &entry.connector, request.clone()).await?;
        let refused = oauth.is_some_and(|m| m.refresh_on.contains(&response.status.as_u16()));
        if !refused {
            return Ok(response);
        }
        drop(response);
        let record = self
            .refresh_connection(
                connection_id,
                RefreshReason::Rejected { seen_version: record.version },
            )
            .await?;
        self.send_once(&record, &entry.connector, request).await
    }

    /// A fresh access token for an OAuth2 connection, for apps that call the API themselves.
    pub async fn fresh_token(
        &self,
        connection_id: &str,
    ) -> Result<(latchkey_core::Secret, Option<time::OffsetDateTime>), EngineError> {
        let record = self.connection(connection_id).await?;
        let entry = self.connector(&record.connector)?;
        if oauth2::oauth_method(&entry.connector, Some(&record.auth_method)).is_none() {
            return Err(EngineError::InvalidInput(format!(
                "connection `{connection_id}` does not use OAuth2"
            )));
        }
        if record.status == latchkey_store::ConnectionStatus::NeedsReauth {
            return Err(EngineError::NeedsReauth(record.id));
        }
        let record = self
            .refresh_connection(connection_id, RefreshReason::Expiring(self.refresh_margin))
            .await?;
        let token = record
            .credentials
            .get("access_token")
            .cloned()
            .ok_or_else(|| EngineError::NeedsReauth(connection_id.to_string()))?;
        Ok((token, record.expires_at))
    }
}
