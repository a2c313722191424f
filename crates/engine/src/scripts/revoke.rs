//! The `revoke_connection` hook: a connector whose provider has its own revoke call (not RFC
//! 7009) makes it from its script when a connection is deleted. The hook sees the connection's
//! credentials (`method_credentials`, every field), its auth value, its config in
//! `script_parameters`, and for OAuth2 the integration's client (`method_client`); it may call
//! the connector's allowed hosts with `http_request`. Completing is `revoked`, `return false`
//! is `not_supported` (nothing to revoke), throwing is `failed` with the script's message.

use latchkey_core::{AuthMethod, Connector, Secret};
use latchkey_store::ConnectionRecord;
use serde_json::{Map, Value};

use super::{HookScope, mentions};
use crate::outbound::Target;
use crate::{Engine, EngineError, Revocation};

/// The hook's name.
pub(crate) const EVENT: &str = "revoke_connection";

impl Engine {
    /// Runs the connector's `revoke_connection` hook for a deleted connection; `None` when
    /// the script has no such hook (then RFC 7009 applies).
    pub(crate) async fn revoke_by_script(
        &self,
        connector: &Connector,
        record: &ConnectionRecord,
    ) -> Option<Revocation> {
        if !mentions(connector, EVENT) {
            return None;
        }
        match self.run_revoke_hook(connector, record).await {
            Ok(None) => None,
            Ok(Some(revocation)) => Some(revocation),
            Err(EngineError::ScriptAborted { .. }) => Some(Revocation::NotSupported),
            Err(EngineError::Script { error, .. }) => Some(Revocation::Failed(format!(
                "the connector's revoke_connection hook failed: {error}"
            ))),
            Err(error) => Some(Revocation::Failed(error.public_message())),
        }
    }

    async fn run_revoke_hook(
        &self,
        connector: &Connector,
        record: &ConnectionRecord,
    ) -> Result<Option<Revocation>, EngineError> {
        let target = Target {
            connector,
            auth_method: &record.auth_method,
            credentials: &record.credentials,
            config: &record.config,
            now: self.clock.now().into(),
        };
        let policy = target.host_policy(&target.base_url()?)?;
        // The connection is deleted: its script storage is gone, so storage lasts this call.
        let mut scope: HookScope = target.hook_scope(None, &policy)?;
        let mut globals = Map::new();
        let fields: Map<String, Value> = record
            .credentials
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose().to_owned())))
            .collect();
        globals.insert("method_credentials".into(), Value::Object(fields));
        globals.insert("method_client".into(), Value::Null);
        if let Some(AuthMethod::OAuth2(method)) = connector.auth_method(Some(&record.auth_method))
            && let Ok(integration) = self.oauth_integration(connector, method, record).await
        {
            let secret = integration.client_secret.as_ref().map(Secret::expose);
            globals.insert(
                "method_client".into(),
                serde_json::json!({ "client_id": integration.client_id, "client_secret": secret }),
            );
            scope.secrets.extend(integration.client_secret);
        }
        // `method_credentials` is the hook's own global here, whatever the method.
        scope.credentials = None;
        let run = self.run_hook(connector, EVENT, scope, globals).await?;
        Ok(run.map(|_| Revocation::Revoked))
    }
}
