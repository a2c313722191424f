//! Mutual TLS for OAuth2 `tls_client_auth` (RFC 8705): the integration's client certificate is
//! presented to the token endpoint and, since the tokens are bound to it, to the API. One
//! outbound client per integration, built once and kept until the integration changes.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_core::connector::{ClientAuth, OAuth2Auth};
use latchkey_net::Client;
use latchkey_store::IntegrationRecord;

use crate::{Engine, EngineError};

/// Outbound clients holding an integration's certificate, by integration id.
#[derive(Debug, Default)]
pub(crate) struct Identities(Mutex<HashMap<String, Client>>);

impl Identities {
    pub fn forget(&self, integration: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(integration);
    }
}

impl Engine {
    /// The client for `integration`'s token endpoint and API: the shared one, or for
    /// `tls_client_auth` one that presents the integration's certificate.
    pub(crate) fn client_for(
        &self,
        method: &OAuth2Auth,
        integration: &IntegrationRecord,
    ) -> Result<Client, EngineError> {
        if method.client_auth != ClientAuth::TlsClientAuth {
            return Ok(self.net.clone());
        }
        let mut clients = self.identities.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&integration.id) {
            return Ok(client.clone());
        }
        let pem = integration.client_secret.as_ref().ok_or_else(|| {
            EngineError::IncompleteIntegration {
                integration: integration.id.clone(),
                message: "needs its client certificate and key (PEM, as the client secret) for tls_client_auth".into(),
            }
        })?;
        let client = self.net.with_identity(pem.expose().as_bytes()).map_err(|e| {
            EngineError::IncompleteIntegration {
                integration: integration.id.clone(),
                message: format!("holds no usable client certificate and key: {e}"),
            }
        })?;
        clients.insert(integration.id.clone(), client.clone());
        Ok(client)
    }
}
