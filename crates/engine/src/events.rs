//! Connection events, sent as Standard Webhooks (see [`crate::webhooks`]). Emitting records
//! the event in the store's delivery log, in the background, and never blocks the caller; a
//! deliverer ([`Webhooks::run_deliverer`](crate::webhooks::Webhooks::run_deliverer)) sends it,
//! signed, and retries it on its schedule.
//!
//! An event goes to its environment's webhook when the environment has one, else to the
//! server-wide webhook (`--webhook-url`), else nowhere (and is not recorded). Environments'
//! webhooks are read from the store and kept for [`ENVIRONMENT_WEBHOOK_TTL`], so a change made
//! by another process sharing the database is followed within that time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_store::{ConnectionRecord, EndUser, Store, Tags, WebhookDelivery};
use moka::future::Cache;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use url::Url;

use crate::Clock;

/// Where events go.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The app's endpoint.
    pub url: Url,
    /// The signing secret shared with the app.
    pub secret: Secret,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `connection.created`, `connection.updated`, `connection.refresh_failed`,
    /// `connection.needs_reauth`, `connection.unhealthy`, `connection.recovered`,
    /// `connection.deleted`, `integration.misconfigured`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The connection (absent from an integration's event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The integration: the connection's, or the one the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// The environment it belongs to.
    pub environment: String,
    /// Its connector.
    pub connector: String,
    /// The end user who owns the connection (`id`, `email`, `display_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUser>,
    /// The connection's tags (`{}` when it has none).
    pub tags: Tags,
    /// What happened, for failures (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why a connection became unhealthy (`invalid_credentials`, `missing_permission`, …), or
    /// `integration_misconfigured` for an integration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<latchkey_store::HealthReason>,
    /// On `connection.deleted`: what became of the connection's tokens at the provider —
    /// `revoked`, `not_supported` or `failed: <reason>` (never a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Event {
    fn new(kind: &'static str, record: &ConnectionRecord, message: Option<&str>) -> Self {
        Self {
            kind,
            connection_id: Some(record.id.clone()),
            integration: record.integration.clone(),
            environment: record.environment.clone(),
            connector: record.connector.clone(),
            end_user: record.end_user.clone(),
            tags: record.tags.clone(),
            message: message.map(str::to_string),
            revocation: None,
            at: OffsetDateTime::now_utc(),
            reason: None,
        }
    }

    /// A connection was created (or re-authorised).
    pub fn created(record: &ConnectionRecord) -> Self {
        Self::new("connection.created", record, None)
    }

    /// A refresh failed for a reason that may pass; tokens were kept.
    pub fn refresh_failed(record: &ConnectionRecord, message: &str) -> Self {
        Self::new("connection.refresh_failed", record, Some(message))
    }

    /// The grant is dead; the user must connect again.
    pub fn needs_reauth(record: &ConnectionRecord, message: &str) -> Self {
        Self::new("connection.needs_reauth", record, Some(message))
    }

    /// A connection's tags, metadata, end user or label were changed.
    pub fn updated(record: &ConnectionRecord) -> Self {
        Self::new("connection.updated", record, None)
    }

    /// A check failed on a connection that was not unhealthy; the reason and the safe message
    /// come from its health record.
    pub fn unhealthy(record: &ConnectionRecord) -> Self {
        let health = &record.health;
        let message = health.last_error.as_ref().map(|e| e.message.as_str());
        Self { reason: health.reason, ..Self::new("connection.unhealthy", record, message) }
    }

    /// A check passed on a connection that was unhealthy, or the connection was re-authorised.
    pub fn recovered(record: &ConnectionRecord) -> Self {
        Self::new("connection.recovered", record, None)
    }

    /// The provider refused `integration`'s client (`invalid_client`, `unauthorized_client`):
    /// sent once when it is first seen, not once per connection; `message` is what the
    /// provider answered, in safe words.
    pub fn integration_misconfigured(
        integration: &latchkey_store::IntegrationRecord,
        message: &str,
    ) -> Self {
        Self {
            kind: "integration.misconfigured",
            connection_id: None,
            integration: Some(integration.id.clone()),
            environment: integration.environment.clone(),
            connector: integration.connector.clone(),
            end_user: None,
            tags: Tags::default(),
            message: Some(message.to_owned()),
            reason: Some(latchkey_store::HealthReason::IntegrationMisconfigured),
            revocation: None,
            at: OffsetDateTime::now_utc(),
        }
    }

    /// A connection was deleted; `revocation` says what became of its tokens.
    pub fn deleted(record: &ConnectionRecord, revocation: &crate::Revocation) -> Self {
        Self {
            revocation: Some(revocation.to_string()),
            ..Self::new("connection.deleted", record, None)
        }
    }
}

/// How long an environment's webhook setting is used without reading it again.
pub const ENVIRONMENT_WEBHOOK_TTL: Duration = Duration::from_secs(5);

/// Where one environment's events go, with the secrets that sign them.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// The endpoint.
    pub url: Url,
    /// The current secret.
    pub secret: Secret,
    /// A secret that signs too, until the time given (`None`: for as long as it is set).
    pub previous: Option<(Secret, Option<OffsetDateTime>)>,
}

impl Destination {
    /// The secrets that sign a delivery made at `now`: the current one first.
    pub fn secrets(&self, now: OffsetDateTime) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some((previous, until)) = &self.previous
            && until.is_none_or(|until| now < until)
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// The event emitter: records each event for its environment's webhook or the server-wide one.
#[derive(Clone)]
pub struct Events {
    pub(crate) inner: Arc<Sinks>,
}

pub(crate) struct Sinks {
    /// The server-wide webhook, for environments without their own.
    default: Option<Destination>,
    /// Where environments' own webhooks are read from and deliveries recorded; `None`: events
    /// go nowhere.
    store: Option<Arc<dyn Store>>,
    /// Each environment's own webhook (or none), as last read.
    environments: Cache<String, Option<Destination>>,
    clock: Arc<dyn Clock>,
    /// Woken when a delivery is recorded, so a deliverer in this process sends it at once.
    pub(crate) recorded: Notify,
    /// Events being recorded, and a wake-up when that count falls to zero.
    recording: AtomicUsize,
    settled: Notify,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("default", &self.inner.default.as_ref().map(|c| c.url.as_str()))
            .field("per_environment", &self.inner.store.is_some())
            .finish()
    }
}

impl Default for Events {
    /// An emitter that sends nothing.
    fn default() -> Self {
        Self::new(None, None, None, Arc::new(crate::SystemClock))
    }
}

impl Events {
    /// Events recorded in `store` for their environment's webhook, or for `default` (signed
    /// also with `default_previous` while it is given).
    pub(crate) fn new(
        default: Option<WebhookConfig>,
        default_previous: Option<Secret>,
        store: Option<Arc<dyn Store>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let environments =
            Cache::builder().max_capacity(10_000).time_to_live(ENVIRONMENT_WEBHOOK_TTL).build();
        let default = default.map(|config| Destination {
            url: config.url,
            secret: config.secret,
            previous: default_previous.map(|secret| (secret, None)),
        });
        Self {
            inner: Arc::new(Sinks {
                default,
                store,
                environments,
                clock,
                recorded: Notify::new(),
                recording: AtomicUsize::new(0),
                settled: Notify::new(),
            }),
        }
    }

    /// Forgets what was read of `environment`'s webhook (after it changed here).
    pub async fn forget_environment(&self, environment: &str) {
        self.inner.environments.invalidate(environment).await;
    }

    /// Where an event of `environment` goes, if anywhere.
    pub(crate) async fn destination(&self, environment: &str) -> Option<Destination> {
        let sinks = &self.inner;
        if let Some(store) = &sinks.store {
            let own = sinks
                .environments
                .try_get_with(environment.to_owned(), async {
                    let record = store.get_environment(environment).await?;
                    Ok::<_, latchkey_store::StoreError>(record.and_then(environment_webhook))
                })
                .await;
            match own {
                Ok(Some(config)) => return Some(config),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(environment, error = %e, "cannot read the environment's webhook; using the server's");
                }
            }
        }
        sinks.default.clone()
    }

    /// Records `event` for delivery, in the background.
    pub fn emit(&self, event: Event) {
        let Some(store) = self.inner.store.clone() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let events = self.clone();
        self.inner.recording.fetch_add(1, Ordering::SeqCst);
        runtime.spawn(async move {
            events.record(&*store, &event).await;
            if events.inner.recording.fetch_sub(1, Ordering::SeqCst) == 1 {
                events.inner.settled.notify_waiters();
            }
        });
    }

    async fn record(&self, store: &dyn Store, event: &Event) {
        let Some(destination) = self.destination(&event.environment).await else { return };
        let Ok(body) = serde_json::to_string(event) else { return };
        let delivery = WebhookDelivery::pending(
            crate::webhooks::message_id(),
            event.environment.as_str(),
            event.kind,
            event.connection_id.clone(),
            destination.url.as_str(),
            body,
            self.inner.clock.now(),
        );
        match store.insert_webhook_delivery(&delivery).await {
            Ok(()) => self.inner.recorded.notify_one(),
            Err(error) => {
                tracing::error!(event = event.kind, connection = ?event.connection_id, environment = %event.environment, %error, "cannot record a webhook delivery; the event is lost");
                metrics::counter!(crate::webhooks::DELIVERIES, "outcome" => "dropped").increment(1);
            }
        }
    }

    /// Waits until every event emitted so far is recorded (a short-lived process, such as a
    /// CLI command, calls it before it exits, so its events are not lost with it).
    pub async fn settle(&self) {
        loop {
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.inner.recording.load(Ordering::SeqCst) == 0 {
                return;
            }
            settled.await;
        }
    }
}

/// An environment's own webhook, when it has a URL and a secret.
fn environment_webhook(record: latchkey_store::EnvironmentRecord) -> Option<Destination> {
    let url = Url::parse(record.webhook_url.as_deref()?).ok()?;
    let previous = record
        .webhook_previous_secret
        .zip(record.webhook_previous_expires_at)
        .map(|(secret, until)| (secret, Some(until)));
    Some(Destination { url, secret: record.webhook_secret?, previous })
}
