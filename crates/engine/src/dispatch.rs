//! Dispatch: an authenticated request through a connection, with its credentials renewed
//! before it when they are about to expire and once after it when the API refuses them.

use std::sync::Arc;

use latchkey_store::OperationKind;

use crate::operations::Timed;
use crate::{
    ApiRequest, ConnectionId, ConnectionRecord, Engine, EngineError, RefreshReason,
    UpstreamResponse, rate_limit, send, session,
};

/// Authenticated requests, from [`Engine::dispatch`]: what the proxy and embedders call.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'e> {
    pub(crate) engine: &'e Engine,
}

impl Dispatch<'_> {
    /// Makes an authenticated request through a connection: refreshes an OAuth2 token (or logs
    /// a session in again) when it is about to expire, runs the connector's request hooks, and
    /// when the credentials are refused (401, the connector's statuses, or a script's
    /// `AuthRefreshException` / `AuthSessionException`) renews them once and retries once.
    ///
    /// Under a connector's `rate_limit`, every send (retries too) waits for a permit, and fails
    /// with [`EngineError::RateLimited`] when that would take longer than `max_wait_ms`; a 429
    /// or 503 whose `Retry-After` is within `retry_after_max_ms` is waited out and retried once
    /// for the connector's `retry_methods`. The response's body is not read unless a response
    /// hook needs it; stream it or call `bytes()`.
    pub async fn request(
        &self,
        connection: &ConnectionId,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        // A connection that cannot be read has nothing to attribute an operation to.
        let record = self.engine.recent_connection(connection.as_str()).await?;
        let mut timed = Timed::about(self.engine, OperationKind::Request, &record).request(
            request.method.as_str(),
            None,
            &request.path,
        );
        let result = self.request_once_renewed(record, request).await;
        let operation = match &result {
            Ok(response) => {
                timed.set_host(response.url().host_str());
                timed.answered(response.status.as_u16())
            }
            Err(error) => timed.failed(error),
        };
        self.engine.record_operation(operation);
        result
    }

    /// [`Dispatch::request`] for the connection as just read.
    async fn request_once_renewed(
        &self,
        mut record: Arc<ConnectionRecord>,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        let connection_id = record.id.clone();
        let connection_id = connection_id.as_str();
        let entry = self.engine.connector_entry(&record.connector)?;
        let renew_on = renewal_statuses(&entry.connector, &record.auth_method);
        if renew_on.is_some() {
            if record.status == latchkey_store::ConnectionStatus::NeedsReauth {
                return Err(EngineError::NeedsReauth(record.id.clone()));
            }
            // Checked on the record already read, so fresh credentials cost no lock.
            let expiring = RefreshReason::Expiring(self.engine.refresh_margin);
            let unset = session::session_method(&entry.connector, Some(&record.auth_method))
                .is_some()
                && !record.credentials.contains_key(latchkey_core::auth::session::SESSION_TOKEN);
            let reason = if unset {
                Some(RefreshReason::Forced { seen_version: record.version })
            } else {
                expiring.still_needed(&record, self.engine.clock.now()).then_some(expiring)
            };
            if let Some(reason) = reason {
                record = Arc::new(self.engine.refresh_record(connection_id, reason).await?);
            }
        }
        let mut renewed = false;
        let mut waited_out = false;
        loop {
            let sent =
                self.engine.send_once(&record, &entry.connector, request.clone(), true).await?;
            match sent {
                send::Sent::Response(response) => {
                    if !waited_out
                        && let Some(wait) = wait_out(&entry.connector, &request.method, &response)
                    {
                        // The body is `Bytes`, so the same request goes again, signed afresh.
                        tracing::info!(connection = %record.id, status = response.status.as_u16(), ?wait, "waiting out Retry-After, then retrying once");
                        drop(response);
                        waited_out = true;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let refused = renew_on.is_some_and(|s| s.contains(&response.status.as_u16()));
                    if renewed || !refused {
                        self.engine.step_up(&record, &entry.connector, &response).await?;
                        return Ok(response);
                    }
                }
                send::Sent::Renew(signal, event) => {
                    let asked = match signal {
                        latchkey_script::Signal::AuthRefresh => "AuthRefreshException",
                        latchkey_script::Signal::AuthSession => "AuthSessionException",
                    };
                    let message = if renewed {
                        format!("{asked} again after the credentials were renewed")
                    } else if renew_on.is_none() {
                        format!(
                            "{asked}, but auth method `{}` has nothing to renew",
                            record.auth_method
                        )
                    } else {
                        String::new()
                    };
                    if !message.is_empty() {
                        return Err(EngineError::Script {
                            connector: entry.connector.id.clone(),
                            event: event.into(),
                            error: latchkey_script::ScriptError::Thrown(message),
                        });
                    }
                    tracing::info!(connection = %record.id, signal = asked, "script asked for new credentials");
                }
            }
            renewed = true;
            record = Arc::new(
                self.engine
                    .refresh_record(
                        connection_id,
                        RefreshReason::Rejected { seen_version: record.version },
                    )
                    .await?,
            );
        }
    }
}

impl Engine {
    /// Step-up authorization (MCP authorization, "Scope Challenge Handling"): a 403 whose
    /// `WWW-Authenticate` is `Bearer error="insufficient_scope", scope="…"` naming scopes the
    /// OAuth2 connection's integration does not ask for yet. The integration then asks for the
    /// union (on every later connect through it) and the connection is marked `needs_reauth`
    /// with a `connection.needs_reauth` event saying so: a reconnect session re-authorises it.
    /// A challenge that asks for nothing new changes nothing (asking again would loop). The 403
    /// itself is answered to the caller as it came.
    async fn step_up(
        &self,
        record: &ConnectionRecord,
        connector: &latchkey_core::Connector,
        response: &UpstreamResponse,
    ) -> Result<(), EngineError> {
        if response.status != http::StatusCode::FORBIDDEN {
            return Ok(());
        }
        let Some(latchkey_core::AuthMethod::OAuth2(method)) =
            connector.auth_method(Some(&record.auth_method))
        else {
            return Ok(());
        };
        let (Some(integration), Some(challenge)) = (
            &record.integration,
            response.headers.get(http::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()),
        ) else {
            return Ok(());
        };
        let mut integration = self.integration_record(&record.environment, integration).await?;
        let held = if integration.scopes.is_empty() { &method.scopes } else { &integration.scopes };
        let Some(scopes) = crate::oauth2::mcp_client::step_up_scopes(held, challenge) else {
            return Ok(());
        };
        let reason = format!(
            "the API asks for more scopes ({}); connect again (a reconnect session) to grant them",
            scopes.join(" ")
        );
        integration.scopes = scopes;
        integration.updated_at = self.clock.now();
        self.store.put_integration(&integration).await?;
        self.identities.forget(&integration.environment, &integration.id);
        if self
            .store
            .set_connection_status(&record.id, latchkey_store::ConnectionStatus::NeedsReauth)
            .await?
        {
            self.forget(&record.id);
            tracing::info!(connection = %record.id, "connection needs reauth: insufficient_scope");
            self.events.emit(crate::events::Event::needs_reauth(record, &reason));
        }
        Ok(())
    }

    /// The connection as read in the last second (see `recent.rs`), or from the store.
    pub(crate) async fn recent_connection(
        &self,
        id: &str,
    ) -> Result<Arc<ConnectionRecord>, EngineError> {
        if let Some(record) = self.recent.get(id) {
            return Ok(record);
        }
        let record = Arc::new(self.connection_record(id).await?);
        self.recent.put(record.clone());
        Ok(record)
    }
}

/// How long to wait before retrying a 429 or 503 once: its `Retry-After`, when the connector's
/// `rate_limit` allows a retry of this method and the wait is within `retry_after_max_ms`.
fn wait_out(
    connector: &latchkey_core::Connector,
    method: &http::Method,
    response: &UpstreamResponse,
) -> Option<std::time::Duration> {
    let limit = connector.rate_limit.as_ref()?;
    let wait = rate_limit::retry_after(response.status, &response.headers)?;
    let allowed = std::time::Duration::from_millis(limit.retry_after_max_ms);
    (limit.retry_after_max_ms > 0 && wait <= allowed && limit.retries(method)).then_some(wait)
}

/// The statuses on which a connection's credentials are renewed once, when its method can renew
/// them (OAuth2's `refresh_on`, a session's `expire_on`).
fn renewal_statuses<'a>(connector: &'a latchkey_core::Connector, auth: &str) -> Option<&'a [u16]> {
    match connector.auth_method(Some(auth)) {
        Some(latchkey_core::AuthMethod::OAuth2(m)) => Some(&m.refresh_on),
        Some(latchkey_core::AuthMethod::Session(m)) => Some(&m.expire_on),
        _ => None,
    }
}
