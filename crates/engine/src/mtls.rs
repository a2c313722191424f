//! Mutual TLS for OAuth2 `tls_client_auth` (RFC 8705): the integration's client certificate is
//! presented to the token endpoint and, since the tokens are bound to it, to the API. One
//! outbound client per version of an integration's credentials, built on first use and kept
//! until the integration changes (in any process: the key holds its `updated_at`) or an hour
//! passes unused.

use std::time::Duration;

use latchkey_core::connector::{ClientAuth, OAuth2Auth};
use latchkey_net::Client;
use latchkey_store::IntegrationRecord;
use moka::sync::Cache;

use crate::{Engine, EngineError};

/// The most integrations with a client kept.
const CAPACITY: u64 = 1_000;
/// How long an unused client is kept.
const IDLE: Duration = Duration::from_secs(3600);

/// Outbound clients holding an integration's certificate, by environment and integration id,
/// each with the `updated_at` of the credentials it was built from.
#[derive(Debug)]
pub(crate) struct Identities(Cache<(String, String), (time::OffsetDateTime, Client)>);

impl Default for Identities {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(CAPACITY).time_to_idle(IDLE).build())
    }
}

impl Identities {
    /// Drops the client of `integration` in `environment`.
    pub fn forget(&self, environment: &str, integration: &str) {
        self.0.invalidate(&(environment.to_owned(), integration.to_owned()));
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
        if let Some((_, client)) = self
            .identities
            .0
            .get(&(integration.environment.clone(), integration.id.clone()))
            .filter(|(version, _)| *version == integration.updated_at)
        {
            return Ok(client);
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
        let key = (integration.environment.clone(), integration.id.clone());
        self.identities.0.insert(key, (integration.updated_at, client.clone()));
        Ok(client)
    }
}
