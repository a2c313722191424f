//! Connection events, delivered as signed webhooks: JSON bodies signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"`, sent in `Latchkey-Signature: t=<unix>,v1=<hex>`, retried with
//! exponential backoff. Delivery runs in the background and never blocks the caller.
//!
//! An event goes to its environment's webhook when the environment has one, else to the
//! server-wide webhook (`--webhook-url`), else nowhere. Environments' webhooks are read from
//! the store and kept for [`ENVIRONMENT_WEBHOOK_TTL`], so a change made by another process
//! sharing the database is followed within that time.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use latchkey_core::Secret;
use latchkey_net::HostPolicy;
use latchkey_store::{AccessStore, ConnectionRecord, EndUser, Tags};
use moka::future::Cache;
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use url::Url;

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

/// The event emitter: sends each event to its environment's webhook or the server-wide one.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Sinks>,
}

struct Sinks {
    /// The server-wide webhook, for environments without their own.
    default: Option<WebhookConfig>,
    /// Where environments' own webhooks are read from; `None`: only `default` is used.
    store: Option<Arc<dyn AccessStore>>,
    /// Each environment's own webhook (or none), as last read.
    environments: Cache<String, Option<WebhookConfig>>,
    net: Option<latchkey_net::Client>,
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
        Self::new(None, None, None)
    }
}

/// Delivery attempts before an event is dropped (with a log line).
const ATTEMPTS: u32 = 6;

impl Events {
    /// Events delivered through `net` to their environment's webhook, read from `store`, or to
    /// `default`.
    pub fn new(
        default: Option<WebhookConfig>,
        store: Option<Arc<dyn AccessStore>>,
        net: Option<latchkey_net::Client>,
    ) -> Self {
        let environments =
            Cache::builder().max_capacity(10_000).time_to_live(ENVIRONMENT_WEBHOOK_TTL).build();
        Self { inner: Arc::new(Sinks { default, store, environments, net }) }
    }

    /// Events delivered to `config` through `net`, whatever their environment.
    pub fn webhook(config: WebhookConfig, net: latchkey_net::Client) -> Self {
        Self::new(Some(config), None, Some(net))
    }

    /// Forgets what was read of `environment`'s webhook (after it changed here).
    pub async fn forget_environment(&self, environment: &str) {
        self.inner.environments.invalidate(environment).await;
    }

    /// Where an event of `environment` goes, if anywhere.
    async fn destination(&self, environment: &str) -> Option<WebhookConfig> {
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

    /// Sends `event` in the background.
    pub fn emit(&self, event: Event) {
        let Some(net) = self.inner.net.clone() else { return };
        if self.inner.default.is_none() && self.inner.store.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let events = self.clone();
        runtime.spawn(async move {
            let Some(config) = events.destination(&event.environment).await else { return };
            let body = match serde_json::to_vec(&event) {
                Ok(body) => body,
                Err(_) => return,
            };
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match deliver(&net, &config, &body).await {
                    Ok(()) => return,
                    Err(reason) if attempt == ATTEMPTS => {
                        tracing::error!(event = event.kind, connection = ?event.connection_id, environment = %event.environment, %reason, "webhook dropped");
                    }
                    Err(reason) => {
                        tracing::warn!(event = event.kind, connection = ?event.connection_id, attempt, %reason, "webhook delivery failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        });
    }
}

/// An environment's own webhook, when it has a URL and a secret.
fn environment_webhook(record: latchkey_store::EnvironmentRecord) -> Option<WebhookConfig> {
    let url = Url::parse(record.webhook_url.as_deref()?).ok()?;
    Some(WebhookConfig { url, secret: record.webhook_secret? })
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver(
    net: &latchkey_net::Client,
    config: &WebhookConfig,
    body: &[u8],
) -> Result<(), String> {
    let policy = HostPolicy::for_url(&config.url).map_err(|e| e.to_string())?;
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let request = http::Request::post(config.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("latchkey-signature", signature(&config.secret, timestamp, body))
        .body(bytes::Bytes::copy_from_slice(body))
        .map_err(|e| e.to_string())?;
    let response = net.send(request, &policy).await.map_err(|e| e.to_string())?;
    if response.status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {}", response.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // HMAC-SHA256("key", "1700000000.{}"), computed with Python's hmac module.
        let sig = signature(&Secret::new("key"), 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
