//! Connection events, delivered as signed webhooks: JSON bodies signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"`, sent in `Latchkey-Signature: t=<unix>,v1=<hex>`, retried with
//! exponential backoff. Delivery runs in the background and never blocks the caller.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use latchkey_core::Secret;
use latchkey_net::HostPolicy;
use latchkey_store::{ConnectionRecord, EndUser, Tags};
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
    /// `connection.needs_reauth`, `connection.deleted`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The connection.
    pub connection_id: String,
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
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Event {
    fn new(kind: &'static str, record: &ConnectionRecord, message: Option<&str>) -> Self {
        Self {
            kind,
            connection_id: record.id.clone(),
            environment: record.environment.clone(),
            connector: record.connector.clone(),
            end_user: record.end_user.clone(),
            tags: record.tags.clone(),
            message: message.map(str::to_string),
            at: OffsetDateTime::now_utc(),
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

    /// A connection was deleted.
    pub fn deleted(record: &ConnectionRecord) -> Self {
        Self::new("connection.deleted", record, None)
    }
}

/// The event emitter: a no-op without a webhook.
#[derive(Debug, Clone, Default)]
pub struct Events {
    sink: Option<Arc<(WebhookConfig, latchkey_net::Client)>>,
}

/// Delivery attempts before an event is dropped (with a log line).
const ATTEMPTS: u32 = 6;

impl Events {
    /// Events delivered to `config` through `net`.
    pub fn webhook(config: WebhookConfig, net: latchkey_net::Client) -> Self {
        Self { sink: Some(Arc::new((config, net))) }
    }

    /// Sends `event` in the background.
    pub fn emit(&self, event: Event) {
        let Some(sink) = self.sink.clone() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let (config, net) = &*sink;
            let body = match serde_json::to_vec(&event) {
                Ok(body) => body,
                Err(_) => return,
            };
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                match deliver(net, config, &body).await {
                    Ok(()) => return,
                    Err(reason) if attempt == ATTEMPTS => {
                        tracing::error!(event = event.kind, connection = %event.connection_id, %reason, "webhook dropped");
                    }
                    Err(reason) => {
                        tracing::warn!(event = event.kind, attempt, %reason, "webhook delivery failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        });
    }
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
