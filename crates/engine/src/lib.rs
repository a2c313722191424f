//! The engine: connectors, the store and the outbound client put together. It creates and tests
//! connections and makes authenticated requests through them, for the CLI, the server and
//! in-process Rust callers alike.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod agent_tokens;
mod audit;
mod auth_response;
pub mod branding;
mod caches;
pub mod catalog;
mod changes;
mod checks;
pub mod clock;
mod connect;
mod connections;
mod connectors;
mod console;
mod console_oidc;
mod dispatch;
mod error;
pub mod events;
mod fleet_limit;
mod health;
mod import;
mod integrations;
pub mod middleware;
mod mtls;
pub mod oauth2;
mod operations;
mod otlp;
pub mod outbound;
mod pages;
mod random;
mod rate_limit;
mod recent;
mod refresh_health;
mod renewal;
mod schedule;
mod scheduler;
pub mod scripts;
mod send;
mod session;
mod signed_tokens;
mod stored_values;
pub mod tags;
pub mod telemetry;
pub mod webhooks;

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

pub use latchkey_core::{
    ConnectionId, Connector, ConnectorId, EnvironmentId, IdError, IntegrationId, Secret,
};
pub use latchkey_net::{Client, ClientConfig, NetError, UpstreamResponse};
pub use latchkey_store::{
    AgentTokenRecord, ConnectSession, ConnectionDetails, ConnectionFilter, ConnectionRecord,
    ConnectionStatus, ConnectionSummary, Cursor, DEFAULT_PAGE_SIZE, DeliveryFilter, DeliveryStatus,
    EndUser, IntegrationFilter, IntegrationRecord, Keyring, MAX_PAGE_SIZE, MasterKey, MasterKeys,
    Metadata, Operation, OperationFilter, OperationKind, OperationOutcome, Page, PageRequest,
    PgStore, SqliteStore, Store, StoreError, Tags, WebhookDelivery,
};

pub use access::{Access, KEY_PREFIX, NewApiKey, NewEnvironment};
pub use agent_tokens::{
    AGENT_TOKEN_PREFIX, AgentRefusal, AgentTokens, MAX_AGENT_TOKEN_LIFETIME, NewAgentToken,
};
pub use audit::Audit;
pub use auth_response::AUTH_RESPONSE_LIMIT;
pub use catalog::{Catalog, CatalogEntry, Origin};
pub use changes::CHANGES_RECEIVED;
pub use checks::{CHECK_PACE, DEFAULT_CHECK_INTERVAL, FIRST_RETRY};
pub use clock::{Clock, ManualClock, SystemClock};
pub use connect::{
    Choice, Connect, MAX_SESSION_LIFETIME, MIN_SESSION_LIFETIME, NewConnectSession, SessionForm,
    session_standing,
};
pub use connections::{Connections, NewConnection, TestOutcome, resolve_config};
pub use connectors::Connectors;
pub use console::{CONSOLE_SESSION_LIFETIME, Console, NewConsoleSession};
pub use console_oidc::{OperatorOidc, OperatorSignInError, PendingSignIn, SignedInOperator};
pub use dispatch::Dispatch;
pub use error::{
    CallerCode, ConfigurationCode, DiscoveryError, EngineError, ErrorClass, Fault, FlowError,
    INTERNAL_MESSAGE, InternalCode, UpstreamCode,
};
pub use events::{Event, Events, WebhookConfig};
pub use fleet_limit::{ANNOUNCE_EVERY, FLEET_LIMIT_SHARED, FLEET_SIZE, REDIS_TIMEOUT};
pub use health::UNHEALTHY_AFTER;
pub use import::{GRANTED_SCOPES, ImportedTokens, granted_scopes};
pub use integrations::{Integrations, McpServer, NewIntegration, NewMcpIntegration};
pub use latchkey_script::{Limits as ScriptLimits, ScriptError};
pub use oauth2::{CallbackParams, PROBE_EVERY, REVOCATION_TIMEOUT, RefreshReason, Revocation};
pub use operations::{OPERATIONS_DROPPED, Operations};
pub use otlp::{OPERATIONS_EXPORT_DROPPED, OPERATIONS_EXPORTED, OtlpConfig};
pub use outbound::{ApiRequest, strip_hop_by_hop};
pub use pages::page_request;
pub use random::random_token;
pub use renewal::Renewal;
pub use scheduler::DEFAULT_REFRESH_RATE;
pub use webhooks::{DeliveryOptions, RetrySchedule, Webhooks};

/// docs/embedding.md, whose examples are compiled (and those that need no network run) as
/// doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
pub struct EmbeddingGuide;

/// Refresh tokens that expire within this margin, before a request and in the scheduler.
pub const DEFAULT_REFRESH_MARGIN: std::time::Duration = std::time::Duration::from_secs(300);

/// How long scheduled refreshes may fail continuously before a connection is
/// `refresh_exhausted` (four days).
pub const DEFAULT_REFRESH_EXHAUSTED_AFTER: std::time::Duration =
    std::time::Duration::from_secs(4 * 24 * 60 * 60);

/// Latchkey's engine, built with [`Engine::builder`] and shared behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    catalog: Catalog,
    net: latchkey_net::Client,
    oauth: oauth2::OAuthRuntime,
    events: Events,
    refresh_margin: std::time::Duration,
    refresh_exhausted_after: std::time::Duration,
    operation_log: operations::OperationLog,
    refresh_rate: u32,
    check_interval: latchkey_core::Interval,
    digest: send::DigestChallenges,
    signed_tokens: signed_tokens::SignedTokens,
    recent: recent::RecentConnections,
    scripts: latchkey_script::ScriptEngine,
    identities: mtls::Identities,
    access_caches: access::AccessCaches,
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
    refresh_exhausted_after: std::time::Duration,
    operation_log: bool,
    otlp: Option<OtlpConfig>,
    refresh_rate: u32,
    check_interval: latchkey_core::Interval,
    script_limits: ScriptLimits,
    webhook: Option<WebhookConfig>,
    webhook_previous_secret: Option<latchkey_core::Secret>,
    redis_url: Option<String>,
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

    /// A connection whose scheduled refreshes have failed continuously for `period` (default
    /// [`DEFAULT_REFRESH_EXHAUSTED_AFTER`], four days) becomes unhealthy, `refresh_exhausted`;
    /// the scheduler keeps trying, and a renewal makes it healthy again.
    pub fn refresh_exhausted_after(mut self, period: std::time::Duration) -> Self {
        self.refresh_exhausted_after = period;
        self
    }

    /// Whether operations (requests, refreshes, checks, webhook deliveries, …) are written to
    /// the operation log (default `true`); see [`Engine::operations`].
    pub fn operation_log(mut self, enabled: bool) -> Self {
        self.operation_log = enabled;
        self
    }

    /// Also exports every operation as an OpenTelemetry span to the OTLP/HTTP collector in
    /// `config` (whether or not the database log is on); see [`OtlpConfig`]. The endpoint is
    /// checked by [`EngineBuilder::build`]; the collector itself may be down then.
    pub fn otlp(mut self, config: OtlpConfig) -> Self {
        self.otlp = Some(config);
        self
    }

    /// Paces the background refresher: at most `per_second` scheduled refreshes a second to
    /// one connector (default [`DEFAULT_REFRESH_RATE`]; a connector's own connector-wide
    /// `rate_limit` lowers it; `0`: no pace). Refreshes before a request are never paced.
    pub fn refresh_rate(mut self, per_second: u32) -> Self {
        self.refresh_rate = per_second;
        self
    }

    /// How often the health checker ([`Connections::run_check_scheduler`]) checks each
    /// connection whose connector has a test (default [`DEFAULT_CHECK_INTERVAL`], a day); a
    /// connector's `test.check_interval` overrides it; `off` checks nothing on a schedule.
    pub fn check_interval(mut self, every: latchkey_core::Interval) -> Self {
        self.check_interval = every;
        self
    }

    /// The most CPU time, memory, wall-clock time and `http_request` calls any connector script
    /// may use per hook (default 100 ms, 16 MiB, 10 s and 20); connectors may ask for less.
    pub fn script_limits(mut self, limits: ScriptLimits) -> Self {
        self.script_limits = limits;
        self
    }

    /// Sends connection events to a webhook: the server-wide one, for environments without
    /// their own (see [`Access::set_webhook`]). Events are recorded in the store's delivery log;
    /// a deliverer ([`Webhooks::run_deliverer`]) sends them.
    pub fn webhook(mut self, config: WebhookConfig) -> Self {
        self.webhook = Some(config);
        self
    }

    /// Signs the server-wide webhook's deliveries with `secret` too, besides its own secret:
    /// the one it replaced, while receivers move to the new one (`LATCHKEY_WEBHOOK_PREVIOUS_SECRET`).
    pub fn webhook_previous_secret(mut self, secret: latchkey_core::Secret) -> Self {
        self.webhook_previous_secret = Some(secret);
        self
    }

    /// Shares connectors' outbound rate limits with every instance using the Redis at `url`
    /// (`redis://[user:password@]host:port[/db]`); see [`FLEET_LIMIT_SHARED`]. Checked by
    /// [`EngineBuilder::build`]; Redis itself may be down then (the instance uses its share).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
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
        let events = Events::new(
            self.webhook,
            self.webhook_previous_secret,
            Some(self.store.clone()),
            self.clock.clone(),
        );
        let oauth = oauth2::OAuthRuntime {
            refresher: Arc::new(oauth2::RefreshCoordinator::with_lease(self.refresh_lease)),
            ..oauth2::OAuthRuntime::default()
        };
        let operation_store: Arc<dyn latchkey_store::OperationStore> = self.store.clone();
        let export = self.otlp.as_ref().map(otlp::OtlpExport::start).transpose()?;
        let operation_log =
            operations::OperationLog::new(operation_store, self.operation_log, export);
        let fleet = match &self.redis_url {
            Some(url) => Some(
                fleet_limit::FleetLimits::new(url)
                    .map_err(|message| EngineError::invalid("redis_url", message))?,
            ),
            None => None,
        };
        let feed = match self.store.change_feed().await {
            Ok(feed) => feed,
            Err(error) => {
                tracing::warn!(%error, "no change feed: other instances' writes are seen when caches expire");
                None
            }
        };
        let lifetimes = match feed {
            Some(_) => changes::Lifetimes::FOLLOWED,
            None => changes::Lifetimes::UNFOLLOWED,
        };
        let engine = Arc::new_cyclic(|me| Engine {
            store: self.store,
            catalog: self.catalog,
            net: self.net,
            oauth,
            events,
            refresh_margin: self.refresh_margin,
            refresh_exhausted_after: self.refresh_exhausted_after,
            operation_log,
            refresh_rate: self.refresh_rate,
            check_interval: self.check_interval,
            digest: send::DigestChallenges::default(),
            signed_tokens: signed_tokens::SignedTokens::default(),
            recent: recent::RecentConnections::new(lifetimes.connection),
            scripts: latchkey_script::ScriptEngine::new(self.script_limits),
            identities: mtls::Identities::default(),
            access_caches: access::AccessCaches::new(lifetimes.api_key),
            rate_limits: rate_limit::RateLimits::new(fleet.clone()),
            clock: self.clock,
            me: me.clone(),
        });
        if let Some(feed) = feed {
            tokio::spawn(changes::follow(Arc::downgrade(&engine), feed));
        }
        if let Some(fleet) = &fleet {
            tokio::spawn(fleet_limit::FleetLimits::run(Arc::downgrade(fleet)));
        }
        Ok(engine)
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
            refresh_exhausted_after: DEFAULT_REFRESH_EXHAUSTED_AFTER,
            operation_log: true,
            otlp: None,
            refresh_rate: DEFAULT_REFRESH_RATE,
            check_interval: latchkey_core::Interval::every(DEFAULT_CHECK_INTERVAL),
            script_limits: ScriptLimits::default(),
            webhook: None,
            webhook_previous_secret: None,
            redis_url: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The operation log: what Latchkey did for each connection, newest first.
    pub fn operations(&self) -> Operations<'_> {
        Operations { engine: self }
    }

    /// The clock this engine reads the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Connections: create, read, list, test and delete them (embedders and the REST API).
    pub fn connections(&self) -> Connections<'_> {
        Connections { engine: self }
    }

    /// Authenticated requests through a connection (the proxy, the CLI and embedders).
    pub fn dispatch(&self) -> Dispatch<'_> {
        Dispatch { engine: self }
    }

    /// Keeping credentials fresh: fresh tokens, refreshes, the scheduler (operators).
    pub fn renewal(&self) -> Renewal<'_> {
        Renewal { engine: self }
    }

    /// Connecting end users: connect sessions, browser, loopback and device flows, connect
    /// forms (the server's connect page and the CLI).
    pub fn connect(&self) -> Connect<'_> {
        Connect { engine: self }
    }

    /// The connect page's branding, per environment and per integration.
    pub fn branding(&self) -> branding::Brandings<'_> {
        branding::Brandings { engine: self }
    }

    /// Integrations: connectors enabled with the app's own OAuth client settings.
    pub fn integrations(&self) -> Integrations<'_> {
        Integrations { engine: self }
    }

    /// Connectors: the catalog and the custom connectors kept in the store.
    pub fn connectors(&self) -> Connectors<'_> {
        Connectors { engine: self }
    }

    /// The audit log: appending, listing, retention and verification.
    pub fn audit(&self) -> Audit<'_> {
        Audit { engine: self }
    }
}
