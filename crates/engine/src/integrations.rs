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

impl Engine {
    /// Creates or replaces an integration.
    pub async fn put_integration(
        &self,
        new: NewIntegration,
    ) -> Result<IntegrationRecord, EngineError> {
        check_connection_id(&new.id).map_err(|_| {
            EngineError::invalid(
                "id",
                "an integration id is 1-64 characters of A-Z, a-z, 0-9, `-`, `_` or `.`",
            )
        })?;
        self.connector(&new.connector)?;
        let now = self.clock.now();
        let created_at = match self.store.get_integration(&new.id).await? {
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
        self.store.put_integration(&record).await?;
        self.identities.forget(&record.id);
        Ok(record)
    }

    /// The integration with this id.
    pub async fn integration(&self, id: &str) -> Result<IntegrationRecord, EngineError> {
        self.store
            .get_integration(id)
            .await?
            .ok_or_else(|| EngineError::IntegrationNotFound(id.to_string()))
    }

    /// Deletes an integration.
    pub async fn delete_integration(&self, id: &str) -> Result<(), EngineError> {
        self.identities.forget(id);
        if self.store.delete_integration(id).await? {
            Ok(())
        } else {
            Err(EngineError::IntegrationNotFound(id.to_string()))
        }
    }
}
