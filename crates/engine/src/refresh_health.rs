//! How refreshing a connection's token moves its health: a dead grant (`invalid_grant`, a
//! refused session login) is `invalid_credentials` (and the connection `needs_reauth`); a
//! refused client is `integration_misconfigured` (one event for the integration, none per
//! connection); scheduled refreshes failing for longer than the engine's
//! `refresh_exhausted_after` make it `refresh_exhausted`; a renewal heals what a refresh broke.

use latchkey_store::{ConnectionRecord, Health, HealthError, HealthReason, HealthState};
use time::OffsetDateTime;

use crate::events::Event;
use crate::{Engine, EngineError};

/// The refresh failed because the provider refuses the integration's client (or Latchkey held
/// the request back for that reason).
pub(crate) fn is_client_refused(error: &EngineError) -> bool {
    matches!(error, EngineError::Token(token) if token.is_client_refused())
        || matches!(error, EngineError::IntegrationMisconfigured { .. })
}

/// The health after a refresh failed with `error` at `now`; `None` when the failure says
/// nothing of the credentials yet (a transient failure counts only through
/// [`Engine::refresh_exhausted`]).
pub(crate) fn after_failure(
    previous: &Health,
    error: &EngineError,
    now: OffsetDateTime,
) -> Option<Health> {
    let reason = if is_client_refused(error) {
        HealthReason::IntegrationMisconfigured
    } else if matches!(error, EngineError::Token(token) if token.is_invalid_grant())
        || matches!(error, EngineError::Session(session) if session.is_refused_credentials())
        || matches!(error, EngineError::NeedsReauth(_))
    {
        HealthReason::InvalidCredentials
    } else {
        return None;
    };
    let last =
        HealthError { code: error.code().to_owned(), message: error.public_message(), at: now };
    Some(previous.clone().failed(reason, last))
}

/// Reasons a renewal proves wrong: what a refresh broke, a refresh heals.
fn healed_by_renewal(reason: Option<HealthReason>) -> bool {
    matches!(reason, Some(HealthReason::IntegrationMisconfigured | HealthReason::RefreshExhausted))
}

impl Engine {
    /// After a renewal of `record` was stored: a connection unhealthy because of its refreshes
    /// is healthy again (`connection.recovered`).
    pub(crate) async fn refresh_recovered(&self, record: &ConnectionRecord) {
        if record.health.state != HealthState::Unhealthy || !healed_by_renewal(record.health.reason)
        {
            return;
        }
        let health = record.health.clone().passed(self.clock.now());
        if let Err(e) = self.store.set_connection_health(&record.id, &health).await {
            tracing::warn!(connection = %record.id, error = %e, "cannot record the connection's health");
            return;
        }
        self.forget(&record.id);
        tracing::info!(connection = %record.id, "connection recovered: its token was renewed");
        self.events.emit(Event::recovered(&ConnectionRecord { health, ..record.clone() }));
    }

    /// After a scheduled refresh of connection `id` failed again, in a run of failures that
    /// began at `failing_since`: once the run is longer than `refresh_exhausted_after`, the
    /// connection is `refresh_exhausted` (one `connection.unhealthy`). A connection already
    /// unhealthy for a reason of its own (a dead grant, a refused client) keeps it.
    pub(crate) async fn refresh_exhausted(&self, id: &str, failing_since: OffsetDateTime) {
        let now = self.clock.now();
        let Ok(after) = time::Duration::try_from(self.refresh_exhausted_after) else { return };
        if now - failing_since < after {
            return;
        }
        let record = match self.connection_record(id).await {
            Ok(record) => record,
            Err(_) => return,
        };
        if record.health.state == HealthState::Unhealthy
            && matches!(
                record.health.reason,
                Some(HealthReason::RefreshExhausted | HealthReason::IntegrationMisconfigured)
            )
        {
            return;
        }
        let since = failing_since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let last = HealthError {
            code: "refresh_exhausted".to_owned(),
            message: format!("refreshing the token has failed continuously since {since}"),
            at: now,
        };
        let health = record.health.clone().failed(HealthReason::RefreshExhausted, last);
        if let Err(e) = self.store.set_connection_health(id, &health).await {
            tracing::warn!(connection = %id, error = %e, "cannot record the connection's health");
            return;
        }
        self.forget(id);
        tracing::warn!(connection = %id, connector = %record.connector, %since, "refresh exhausted: the connection is unhealthy");
        self.events.emit(Event::unhealthy(&ConnectionRecord { health, ..record }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::oauth2::TokenError;

    fn provider(code: &str) -> EngineError {
        EngineError::Token(TokenError::Provider {
            code: code.into(),
            description: None,
            status: 400,
        })
    }

    #[test]
    fn refresh_failures_are_classified() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let healthy = Health::default().passed(now);
        let reason =
            |error: &EngineError| after_failure(&healthy, error, now).and_then(|h| h.reason);
        assert_eq!(reason(&provider("invalid_grant")), Some(HealthReason::InvalidCredentials));
        assert_eq!(
            reason(&provider("invalid_client")),
            Some(HealthReason::IntegrationMisconfigured)
        );
        assert_eq!(
            reason(&provider("unauthorized_client")),
            Some(HealthReason::IntegrationMisconfigured)
        );
        let held =
            EngineError::IntegrationMisconfigured { integration: "i".into(), message: "m".into() };
        assert_eq!(reason(&held), Some(HealthReason::IntegrationMisconfigured));
        assert_eq!(reason(&provider("temporarily_unavailable")), None, "transient: not yet");
        assert_eq!(reason(&EngineError::Net(latchkey_net::NetError::Timeout)), None);
        let failed = after_failure(&healthy, &provider("invalid_client"), now).unwrap();
        let last = failed.last_error.unwrap();
        assert_eq!(last.code, "integration_misconfigured");
        assert_eq!(failed.last_healthy_at, Some(now), "kept");
    }
}
