//! Single-flight token refresh. Within one process, callers for one connection queue on an
//! async mutex; across processes they share a lease in the store. Whoever gets through re-reads
//! the connection first: someone may have refreshed already. The write is fenced by the
//! connection's version, a rotated refresh token is stored in the same transaction, and a
//! response without one keeps the old one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use latchkey_core::oauth2::TokenGrant;
use latchkey_store::{ConnectionRecord, ConnectionStatus, CredentialUpdate, StoreError};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::auth::session::SESSION_TOKEN;
use latchkey_core::connector::OAuth2Auth;

use super::{expiry, oauth_method};
use crate::events::Event;
use crate::session::session_method;
use crate::telemetry::{self, RenewalOutcome};
use crate::{Engine, EngineError};

/// Why a refresh is wanted; decides whether it is still needed after re-reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The token expires within this margin (proactive or before a request).
    Expiring(Duration),
    /// The API refused the token of this connection version (401, or the connector's list).
    Rejected {
        /// The version whose token was refused.
        seen_version: i64,
    },
    /// Asked for explicitly (`connection refresh`), against this version.
    Forced {
        /// The version read when the refresh was asked for.
        seen_version: i64,
    },
}

impl RefreshReason {
    /// Whether `record` still needs the refresh this reason asks for.
    pub fn still_needed(self, record: &ConnectionRecord) -> bool {
        match self {
            Self::Expiring(margin) => record.expires_at.is_some_and(|at| {
                // A credential that lives shorter than twice the margin is renewed at half its
                // life, not on every request.
                let lifetime = (at - record.updated_at).max(time::Duration::ZERO);
                let margin = time::Duration::try_from(margin)
                    .unwrap_or(time::Duration::MAX)
                    .min(lifetime / 2);
                at <= OffsetDateTime::now_utc() + margin
            }),
            Self::Rejected { seen_version } | Self::Forced { seen_version } => {
                record.version == seen_version
            }
        }
    }
}

/// What a refresh or a new login gives: the credentials to replace, their expiry, config to keep.
struct Renewed {
    credentials: BTreeMap<String, Secret>,
    expires_at: Option<OffsetDateTime>,
    config: BTreeMap<String, String>,
}

/// How long a process may hold a refresh lease before others may take it over.
const LEASE: Duration = Duration::from_secs(30);
/// How long a caller waits for another process's refresh.
const WAIT: Duration = Duration::from_secs(35);

/// Makes refreshes happen once per connection, however many callers ask at once.
#[derive(Debug)]
pub struct RefreshCoordinator {
    holder: String,
    in_flight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Default for RefreshCoordinator {
    fn default() -> Self {
        Self { holder: crate::data_dir::random_token(12), in_flight: Mutex::default() }
    }
}

impl RefreshCoordinator {
    fn local_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(lock) = map.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(id.to_string(), Arc::downgrade(&lock));
        lock
    }
}

impl Engine {
    /// Refreshes the connection's token if `reason` still holds once this caller is first in
    /// line; returns the connection as it is afterwards.
    pub async fn refresh_connection(
        &self,
        id: &str,
        reason: RefreshReason,
    ) -> Result<ConnectionRecord, EngineError> {
        let coordinator = self.oauth.refresher.clone();
        let local = coordinator.local_lock(id);
        let _in_process = local.lock().await;
        let record = self.connection(id).await?;
        if !reason.still_needed(&record) {
            return Ok(record);
        }
        let lease = format!("refresh:{id}");
        let started = Instant::now();
        while !self.store.try_lock(&lease, &coordinator.holder, LEASE).await? {
            if started.elapsed() > WAIT {
                return Err(EngineError::Store(StoreError::Database(
                    "timed out waiting for another process's refresh".into(),
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            let record = self.connection(id).await?;
            if !reason.still_needed(&record) {
                return Ok(record);
            }
        }
        let outcome = self.refresh_locked(id, reason).await;
        if let Err(e) = self.store.unlock(&lease, &coordinator.holder).await {
            tracing::warn!(connection = %id, error = %e, "cannot release the refresh lease");
        }
        outcome
    }

    async fn refresh_locked(
        &self,
        id: &str,
        reason: RefreshReason,
    ) -> Result<ConnectionRecord, EngineError> {
        let record = self.connection(id).await?;
        if !reason.still_needed(&record) {
            return Ok(record);
        }
        let entry = self.connector(&record.connector)?;
        let started = Instant::now();
        let result = match (
            oauth_method(&entry.connector, Some(&record.auth_method)),
            session_method(&entry.connector, Some(&record.auth_method)),
        ) {
            (Some(method), _) => self.refresh_tokens(&entry.connector, method, &record).await,
            (None, Some(method)) => self
                .session_login(
                    &entry.connector,
                    &record.auth_method,
                    method,
                    &record.credentials,
                    &record.config,
                )
                .await
                .map(|session| Renewed {
                    credentials: [(SESSION_TOKEN.to_string(), session.token)].into(),
                    expires_at: expiry(session.lifetime),
                    config: BTreeMap::new(),
                }),
            (None, None) => {
                return Err(EngineError::InvalidInput(format!(
                    "connection `{id}` uses neither OAuth2 nor a session login; it has nothing to refresh"
                )));
            }
        };
        match result {
            Ok(renewed) => {
                let update = CredentialUpdate {
                    credentials: renewed.credentials,
                    expires_at: renewed.expires_at,
                    config: renewed.config,
                    status: (record.status != ConnectionStatus::Ok).then_some(ConnectionStatus::Ok),
                };
                self.store.update_credentials(id, record.version, &update).await?;
                self.recent.forget(id);
                telemetry::renewal(&record.connector, RenewalOutcome::Ok, started);
                tracing::info!(connection = %id, "credentials renewed");
                self.connection(id).await
            }
            Err(err) => {
                let dead = matches!(&err, EngineError::Token(t) if t.is_invalid_grant())
                    || matches!(&err, EngineError::Session(s) if s.is_refused_credentials())
                    || matches!(err, EngineError::NeedsReauth(_));
                if dead {
                    // Someone may have refreshed with a newer token in the meantime.
                    let now = self.connection(id).await?;
                    if now.version != record.version {
                        return Ok(now);
                    }
                    self.store.set_connection_status(id, ConnectionStatus::NeedsReauth).await?;
                    self.recent.forget(id);
                    telemetry::renewal(&record.connector, RenewalOutcome::NeedsReauth, started);
                    tracing::warn!(connection = %id, error = %err, "refresh refused; connection needs re-authorisation");
                    self.events.emit(Event::needs_reauth(&record, &err.to_string()));
                    return Err(EngineError::NeedsReauth(id.to_string()));
                }
                telemetry::renewal(&record.connector, RenewalOutcome::Failed, started);
                tracing::warn!(connection = %id, error = %err, "refresh failed; tokens kept");
                self.events.emit(Event::refresh_failed(&record, &err.to_string()));
                Err(err)
            }
        }
    }

    /// A new access token from the refresh token, or from a client grant when there is none.
    async fn refresh_tokens(
        &self,
        connector: &latchkey_core::Connector,
        method: &OAuth2Auth,
        record: &ConnectionRecord,
    ) -> Result<Renewed, EngineError> {
        let id = record.id.as_str();
        let integration =
            self.oauth_integration(connector, method, record.integration.as_deref()).await?;
        let oauth = self.resolve_oauth(connector, method, &record.config).await?;
        let tokens = match record.credentials.get("refresh_token") {
            Some(token) => {
                self.call_token_endpoint(
                    &oauth,
                    &oauth.refresh_url,
                    &integration,
                    Some(id),
                    TokenGrant::RefreshToken { refresh_token: token },
                )
                .await
            }
            // No refresh token: grants without a user in the loop just ask again.
            None => self
                .client_grant(&oauth, &integration, Some(id), &record.credentials, &record.config)
                .await
                .unwrap_or_else(|| Err(EngineError::NeedsReauth(id.to_string()))),
        }?;
        let mut credentials = BTreeMap::new();
        credentials.insert("access_token".to_string(), tokens.access_token);
        if let Some(rotated) = tokens.refresh_token {
            credentials.insert("refresh_token".to_string(), rotated);
        }
        Ok(Renewed { credentials, expires_at: expiry(tokens.expires_in), config: tokens.kept })
    }
}
