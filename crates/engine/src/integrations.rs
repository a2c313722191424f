//! Integrations: a connector enabled with the app's own settings (OAuth client id and secret,
//! scopes). The client secret is stored encrypted and never returned.

use latchkey_core::Secret;
use latchkey_store::IntegrationRecord;

use crate::{Engine, EngineError, check_connection_id};

/// What a caller supplies to create or replace an integration.
#[derive(Debug, Clone, Default)]
pub struct NewIntegration {
    /// Integration id.
    pub id: String,
    /// The connector it enables.
    pub connector: String,
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
        check_connection_id(&new.id).map_err(|_| {
            EngineError::invalid(
                "id",
                "an integration id is 1-64 characters of A-Z, a-z, 0-9, `-`, `_` or `.`",
            )
        })?;
        self.engine.connectors().get(&new.connector)?;
        let now = self.engine.clock.now();
        let created_at = match self.engine.store.get_integration(&new.id).await? {
            Some(existing) => existing.created_at,
            None => now,
        };
        let record = IntegrationRecord {
            id: new.id,
            connector: new.connector,
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
    pub async fn get(&self, id: &str) -> Result<IntegrationRecord, EngineError> {
        self.engine
            .store
            .get_integration(id)
            .await?
            .ok_or_else(|| EngineError::IntegrationNotFound(id.to_string()))
    }

    /// Deletes an integration.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        self.engine.identities.forget(id);
        if self.engine.store.delete_integration(id).await? {
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
