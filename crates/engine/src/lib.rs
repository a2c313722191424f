//! The engine: connectors, the store and the outbound client put together. It creates and tests
//! connections and makes authenticated requests through them, for the CLI, the server and
//! in-process Rust callers alike.

mod auth_response;
mod caches;
pub mod catalog;
pub mod clock;
mod connections;
mod error;
pub mod events;
mod integrations;
pub mod middleware;
mod mtls;
pub mod oauth2;
pub mod outbound;
mod random;
mod rate_limit;
mod recent;
mod scheduler;
pub mod scripts;
mod send;
mod session;
mod signed_tokens;
mod stored_values;
pub mod telemetry;

use std::sync::Arc;

/// The crates whose types appear in the engine's signatures, so an embedder depends on this
/// crate alone: `latchkey_engine::store::SqliteStore`, `latchkey_engine::net::ClientConfig`, ….
pub use latchkey_core as core;
pub use latchkey_net as net;
pub use latchkey_script as script;
pub use latchkey_store as store;
/// Crates whose types appear in the engine's signatures: `http` and `bytes` in [`ApiRequest`]
/// and [`UpstreamResponse`], `time` in expiry times and [`Clock`], `reqwest` and
/// `reqwest_middleware` in [`middleware`].
pub use {bytes, http, reqwest, reqwest_middleware, time};

pub use latchkey_core::{Connector, Secret};
pub use latchkey_net::{Client, ClientConfig, NetError, UpstreamResponse};
pub use latchkey_store::{
    ConnectSession, ConnectionRecord, ConnectionStatus, ConnectionSummary, IntegrationRecord,
    Keyring, MasterKey, MasterKeys, PgStore, SqliteStore, Store, StoreError,
};

pub use auth_response::AUTH_RESPONSE_LIMIT;
pub use catalog::{Catalog, CatalogEntry, Origin};
pub use clock::{Clock, ManualClock, SystemClock};
pub use connections::{NewConnection, TestOutcome, check_connection_id, resolve_config};
pub use error::{
    CallerCode, ConfigurationCode, DiscoveryError, EngineError, ErrorClass, Fault, FlowError,
    INTERNAL_MESSAGE, InternalCode, UpstreamCode,
};
pub use events::{Event, Events, WebhookConfig};
pub use integrations::NewIntegration;
pub use latchkey_script::{Limits as ScriptLimits, ScriptError};
pub use oauth2::{CallbackParams, NewConnectSession, RefreshReason};
pub use outbound::{ApiRequest, strip_hop_by_hop};
pub use random::random_token;

/// docs/embedding.md, whose examples are compiled (and those that need no network run) as
/// doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
pub struct EmbeddingGuide;

/// Refresh tokens that expire within this margin, before a request and in the scheduler.
pub const DEFAULT_REFRESH_MARGIN: std::time::Duration = std::time::Duration::from_secs(300);

/// Latchkey's engine, built with [`Engine::builder`] and shared behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    catalog: Catalog,
    net: latchkey_net::Client,
    oauth: oauth2::OAuthRuntime,
    events: Events,
    refresh_margin: std::time::Duration,
    digest: send::DigestChallenges,
    signed_tokens: signed_tokens::SignedTokens,
    recent: recent::RecentConnections,
    scripts: latchkey_script::ScriptEngine,
    identities: mtls::Identities,
    rate_limits: rate_limit::RateLimits,
    clock: Arc<dyn Clock>,
    /// The `Arc` this engine lives in: refreshes run in tasks of their own, which a caller
    /// that goes away cannot abandon.
    me: std::sync::Weak<Engine>,
}

/// Builds an [`Engine`]: [`Engine::builder`], the options it needs, then [`EngineBuilder::build`].
#[derive(Debug)]
#[must_use = "an engine builder does nothing until `build` is called"]
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    catalog: Catalog,
    net: latchkey_net::Client,
    refresh_lease: std::time::Duration,
    refresh_margin: std::time::Duration,
    script_limits: ScriptLimits,
    webhook: Option<WebhookConfig>,
    clock: Arc<dyn Clock>,
}

impl EngineBuilder {
    /// How long this engine's refresh leases last (30 s by default; renewed every third of it
    /// while an exchange is in flight). Tests use short ones.
    pub fn refresh_lease(mut self, lease: std::time::Duration) -> Self {
        self.refresh_lease = lease;
        self
    }

    /// Refreshes tokens that expire within `margin` (default [`DEFAULT_REFRESH_MARGIN`], five
    /// minutes), before a request and in the scheduler.
    pub fn refresh_margin(mut self, margin: std::time::Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The most CPU time, memory, wall-clock time and `http_request` calls any connector script
    /// may use per hook (default 100 ms, 16 MiB, 10 s and 20); connectors may ask for less.
    pub fn script_limits(mut self, limits: ScriptLimits) -> Self {
        self.script_limits = limits;
        self
    }

    /// Sends connection events to a webhook.
    pub fn webhook(mut self, config: WebhookConfig) -> Self {
        self.webhook = Some(config);
        self
    }

    /// Reads the time (token expiry, JWT reuse, device-flow polling) from `clock` instead of
    /// the system clock. Tests pass a [`ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The engine, behind the `Arc` that servers and long-lived programs hold. Loads the custom
    /// connectors kept in the store into the catalog. The script worker threads start with the
    /// first script a connector runs, not here.
    ///
    /// The engine runs each token refresh in a task of its own: if the caller goes away (a
    /// proxy client hangs up) the exchange still finishes and its tokens are stored, so a
    /// refresh token the provider has just rotated is never lost with the caller.
    pub async fn build(self) -> Result<Arc<Engine>, EngineError> {
        for custom in self.store.list_custom_connectors().await? {
            let _ = self.catalog.add_source(
                &custom.source,
                &format!("custom:{}", custom.id),
                Origin::Custom,
            );
        }
        let events = match self.webhook {
            Some(config) => Events::webhook(config, self.net.clone()),
            None => Events::default(),
        };
        let oauth = oauth2::OAuthRuntime {
            refresher: Arc::new(oauth2::RefreshCoordinator::with_lease(self.refresh_lease)),
            ..oauth2::OAuthRuntime::default()
        };
        Ok(Arc::new_cyclic(|me| Engine {
            store: self.store,
            catalog: self.catalog,
            net: self.net,
            oauth,
            events,
            refresh_margin: self.refresh_margin,
            digest: send::DigestChallenges::default(),
            signed_tokens: signed_tokens::SignedTokens::default(),
            recent: recent::RecentConnections::default(),
            scripts: latchkey_script::ScriptEngine::new(self.script_limits),
            identities: mtls::Identities::default(),
            rate_limits: rate_limit::RateLimits::default(),
            clock: self.clock,
            me: me.clone(),
        }))
    }
}

impl Engine {
    /// Starts building an engine over `store`, with `catalog` and the outbound `net` client.
    ///
    /// Keep your own clone of the `Arc<dyn Store>` only for what the engine does not do (a
    /// migration, a test's set-up): writes made around the engine bypass its caches.
    pub fn builder(
        store: Arc<dyn Store>,
        catalog: Catalog,
        net: latchkey_net::Client,
    ) -> EngineBuilder {
        EngineBuilder {
            store,
            catalog,
            net,
            refresh_lease: oauth2::LEASE,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            script_limits: ScriptLimits::default(),
            webhook: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock this engine reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Every stored connection, without secrets.
    pub async fn list_connections(&self) -> Result<Vec<ConnectionSummary>, EngineError> {
        Ok(self.store.list_connections().await?)
    }

    /// Every integration (client secrets stay sealed in the records' [`Secret`]s).
    pub async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, EngineError> {
        Ok(self.store.list_integrations().await?)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The connector with this id.
    pub fn connector(&self, id: &str) -> Result<CatalogEntry, EngineError> {
        self.catalog.get(id).ok_or_else(|| EngineError::ConnectorNotFound(id.to_string()))
    }

    /// Stores a custom connector (YAML) and adds it to the catalog; a malformed one is refused
    /// with the parse error and changes nothing. The YAML is parsed and its script compiled on
    /// a blocking thread, so that an upload never holds the threads serving other requests.
    pub async fn put_custom_connector(
        &self,
        id: &str,
        source: &str,
    ) -> Result<CatalogEntry, EngineError> {
        let origin = format!("custom:{id}");
        let text = source.to_owned();
        let connector = tokio::task::spawn_blocking(move || {
            let connector = latchkey_core::connector::parse_connector(&text, &origin)?;
            scripts::check_connector_scripts(&connector, &text, &origin)?;
            Ok::<_, latchkey_core::connector::ConnectorError>(connector)
        })
        .await
        .map_err(|_| EngineError::Connector {
            connector: id.to_owned(),
            message: "checking it failed".into(),
        })?
        .map_err(|e| EngineError::invalid("body", e.to_string()))?;
        if connector.id != id {
            return Err(EngineError::invalid(
                "id",
                format!("the connector's id `{}` differs from `{id}`", connector.id),
            ));
        }
        self.store.put_custom_connector(id, source).await?;
        let entry = CatalogEntry { connector: Arc::new(connector), origin: Origin::Custom };
        self.catalog.insert(entry.clone());
        Ok(entry)
    }

    /// Removes a custom connector. Built-in and file connectors cannot be removed this way.
    pub async fn delete_custom_connector(&self, id: &str) -> Result<(), EngineError> {
        match self.catalog.get(id) {
            Some(entry) if entry.origin == Origin::Custom => {
                self.store.delete_custom_connector(id).await?;
                self.catalog.remove(id);
                Ok(())
            }
            Some(_) => Err(EngineError::invalid(
                "id",
                format!("connector `{id}` is not a custom connector and cannot be deleted"),
            )),
            None => Err(EngineError::ConnectorNotFound(id.to_string())),
        }
    }

    /// The stored connection with this id.
    pub async fn connection(&self, id: &str) -> Result<ConnectionRecord, EngineError> {
        self.store
            .get_connection(id)
            .await?
            .ok_or_else(|| EngineError::ConnectionNotFound(id.to_string()))
    }

    /// The connection as read in the last second (see `recent.rs`), or from the store.
    async fn recent_connection(&self, id: &str) -> Result<Arc<ConnectionRecord>, EngineError> {
        if let Some(record) = self.recent.get(id) {
            return Ok(record);
        }
        let record = Arc::new(self.connection(id).await?);
        self.recent.put(record.clone());
        Ok(record)
    }

    /// Deletes a connection and its credentials.
    pub async fn delete_connection(&self, id: &str) -> Result<(), EngineError> {
        let record = self.connection(id).await?;
        let deleted = self.store.delete_connection(id).await?;
        self.forget(id);
        if deleted {
            tracing::info!(connection = %id, "connection deleted");
            self.events.emit(Event::deleted(&record));
            Ok(())
        } else {
            Err(EngineError::ConnectionNotFound(id.to_string()))
        }
    }

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
        connection_id: &str,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        let mut record = self.recent_connection(connection_id).await?;
        let entry = self.connector(&record.connector)?;
        let renew_on = renewal_statuses(&entry.connector, &record.auth_method);
        if renew_on.is_some() {
            if record.status == latchkey_store::ConnectionStatus::NeedsReauth {
                return Err(EngineError::NeedsReauth(record.id.clone()));
            }
            // Checked on the record already read, so fresh credentials cost no lock.
            let expiring = RefreshReason::Expiring(self.refresh_margin);
            let unset = session::session_method(&entry.connector, Some(&record.auth_method))
                .is_some()
                && !record.credentials.contains_key(latchkey_core::auth::session::SESSION_TOKEN);
            let reason = if unset {
                Some(RefreshReason::Forced { seen_version: record.version })
            } else {
                expiring.still_needed(&record, self.clock.now()).then_some(expiring)
            };
            if let Some(reason) = reason {
                record = Arc::new(self.refresh_connection(connection_id, reason).await?);
            }
        }
        let mut renewed = false;
        let mut waited_out = false;
        loop {
            let sent = self.send_once(&record, &entry.connector, request.clone(), true).await?;
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
                self.refresh_connection(
                    connection_id,
                    RefreshReason::Rejected { seen_version: record.version },
                )
                .await?,
            );
        }
    }

    /// A fresh access token for an OAuth2 connection, for apps that call the API themselves.
    pub async fn fresh_token(
        &self,
        connection_id: &str,
    ) -> Result<(latchkey_core::Secret, Option<time::OffsetDateTime>), EngineError> {
        let record = self.connection(connection_id).await?;
        let entry = self.connector(&record.connector)?;
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
            .refresh_connection(connection_id, RefreshReason::Expiring(self.refresh_margin))
            .await?;
        let token = record
            .credentials
            .get("access_token")
            .cloned()
            .ok_or_else(|| EngineError::NeedsReauth(connection_id.to_string()))?;
        Ok((token, record.expires_at))
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
