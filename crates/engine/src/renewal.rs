//! Renewal: keeping connections' credentials fresh for the apps that call APIs themselves
//! ([`Renewal::fresh_token`]) and for operators (a forced refresh, the check of refreshes a
//! crash interrupted, the background scheduler). The refresh itself is in `oauth2::refresh`,
//! the scheduler in `scheduler.rs`.

use crate::{ConnectionId, Engine, EngineError, RefreshReason, oauth2};

/// Credential renewal, from [`Engine::renewal`].
#[derive(Debug, Clone, Copy)]
pub struct Renewal<'e> {
    pub(crate) engine: &'e Engine,
}

impl Renewal<'_> {
    /// A fresh access token for an OAuth2 connection, for apps that call the API themselves.
    pub async fn fresh_token(
        &self,
        connection: &ConnectionId,
    ) -> Result<(latchkey_core::Secret, Option<time::OffsetDateTime>), EngineError> {
        let connection_id = connection.as_str();
        let record = self.engine.connection_record(connection_id).await?;
        let entry = self.engine.connector_entry(&record.connector)?;
        if oauth2::oauth_method(&entry.connector, Some(&record.auth_method)).is_none() {
            return Err(EngineError::invalid(
                "id",
                format!("connection `{connection_id}` does not use OAuth2"),
            ));
        }
        if record.status == latchkey_store::ConnectionStatus::NeedsReauth {
            return Err(EngineError::NeedsReauth(record.id));
        }
        let record = self
            .engine
            .refresh_record(connection_id, RefreshReason::Expiring(self.engine.refresh_margin))
            .await?;
        let token = record
            .credentials
            .get("access_token")
            .cloned()
            .ok_or_else(|| EngineError::NeedsReauth(connection_id.to_string()))?;
        Ok((token, record.expires_at))
    }
}
