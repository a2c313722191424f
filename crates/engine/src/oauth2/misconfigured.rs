//! An integration whose OAuth client the provider refuses (`invalid_client`,
//! `unauthorized_client`). Every connection of it would fail alike, so the integration is
//! flagged once (in the store, shared by every instance), the app hears of it once (an
//! `integration.misconfigured` event), and scheduled and on-demand refreshes for it are held
//! back, except one probe every [`PROBE_EVERY`], until the integration is written again or a
//! token request for it passes.

use std::time::Duration;

use latchkey_store::IntegrationRecord;

use crate::events::Event;
use crate::{Engine, EngineError};

/// How often a refresh for a flagged integration still goes to the provider, to see whether it
/// accepts the client again.
pub const PROBE_EVERY: Duration = Duration::from_secs(300);

impl Engine {
    /// Refuses a refresh for `integration` while it is flagged and was last refused less than
    /// [`PROBE_EVERY`] ago.
    pub(crate) fn hold_back_refresh(
        &self,
        integration: &IntegrationRecord,
    ) -> Result<(), EngineError> {
        let Some(flag) = &integration.misconfigured else { return Ok(()) };
        let probe_at = flag.seen_at + PROBE_EVERY;
        if self.clock.now() >= probe_at {
            return Ok(());
        }
        Err(EngineError::IntegrationMisconfigured {
            integration: integration.id.clone(),
            message: format!(
                "{} (token requests are held back until the integration is updated; next probe \
                 at {})",
                flag.message,
                probe_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
            ),
        })
    }

    /// Records that the provider refused `integration`'s client with `error`: the first time,
    /// logs it and sends `integration.misconfigured`.
    pub(crate) async fn client_refused(
        &self,
        integration: &IntegrationRecord,
        error: &EngineError,
    ) {
        if integration.id.is_empty() {
            // A grant without an integration (JWT bearer): nothing to flag.
            return;
        }
        let message = error.public_message();
        let now = self.clock.now();
        match self
            .store
            .flag_integration_misconfigured(
                &integration.environment,
                &integration.id,
                &message,
                now,
            )
            .await
        {
            Ok(true) => {
                tracing::error!(
                    integration = %integration.id,
                    environment = %integration.environment,
                    %message,
                    "the provider refuses the integration's client; its refreshes are held back"
                );
                self.events.emit(Event::integration_misconfigured(integration, &message));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(integration = %integration.id, error = %e, "cannot flag the integration")
            }
        }
    }

    /// Clears the flag after a token request for `integration` passed.
    pub(crate) async fn client_accepted(&self, integration: &IntegrationRecord) {
        if integration.misconfigured.is_none() {
            return;
        }
        match self
            .store
            .clear_integration_misconfigured(&integration.environment, &integration.id)
            .await
        {
            Ok(true) => tracing::info!(
                integration = %integration.id,
                environment = %integration.environment,
                "the provider accepts the integration's client again"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(integration = %integration.id, error = %e, "cannot clear the integration's flag")
            }
        }
    }
}
