//! Integrations: a connector enabled with the app's own settings (OAuth client id and secret,
//! scopes). The client secret is stored encrypted and never returned.

use latchkey_core::Secret;
use latchkey_store::IntegrationRecord;

use crate::{ConnectorId, Engine, EngineError, IntegrationId};

/// What a caller supplies to create or replace an integration.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    /// Integration id.
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

/// The engine's integrations, from [`Engine::integrations`].
#[derive(Debug, Clone, Copy)]
pub struct Integrations<'e> {
    pub(crate) engine: &'e Engine,
}

impl Integrations<'_> {
    /// Creates or replaces an integration.
    pub async fn put(&self, new: NewIntegration) -> Result<IntegrationRecord, EngineError> {
        self.engine.connector_entry(new.connector.as_str())?;
        let now = self.engine.clock.now();
        let created_at = match self.engine.store.get_integration(new.id.as_str()).await? {
            Some(existing) => existing.created_at,
            None => now,
        };
        let record = IntegrationRecord {
            id: new.id.into_string(),
            connector: new.connector.into_string(),
            client_id: new.client_id,
            client_secret: new.client_secret,
            scopes: new.scopes,
            settings: serde_json::Value::Object(Default::default()),
            created_at,
            updated_at: now,
        };
        self.engine.store.put_integration(&record).await?;
        self.engine.identities.forget(&record.id);
        Ok(record)
    }

    /// The integration with this id.
    pub async fn get(&self, id: &IntegrationId) -> Result<IntegrationRecord, EngineError> {
        self.engine.integration_record(id.as_str()).await
    }

    /// Deletes an integration.
    pub async fn delete(&self, id: &IntegrationId) -> Result<(), EngineError> {
        self.engine.identities.forget(id.as_str());
        if self.engine.store.delete_integration(id.as_str()).await? {
            Ok(())
        } else {
            Err(EngineError::IntegrationNotFound(id.to_string()))
        }
    }

    /// Every integration (client secrets stay sealed in the records' [`Secret`]s).
    pub async fn list(&self) -> Result<Vec<IntegrationRecord>, EngineError> {
        Ok(self.engine.store.list_integrations().await?)
    }
}

impl Engine {
    /// The integration with this id (ids read from the store).
    pub(crate) async fn integration_record(
        &self,
        id: &str,
    ) -> Result<IntegrationRecord, EngineError> {
        self.store
            .get_integration(id)
            .await?
            .ok_or_else(|| EngineError::IntegrationNotFound(id.to_string()))
    }
}
