//! The webhook delivery log: one [`WebhookDelivery`] per event sent to a webhook, kept durably
//! so a restart resumes what was pending and the app can see what reached it. A deliverer
//! claims due rows ([`WebhookStore::claim_webhook_deliveries`](crate::WebhookStore)), each claim
//! counting one attempt and moving the row's due time on as a lease, so several processes on
//! one database never send one attempt twice; the outcome is recorded only by the claim that
//! made it ([`AttemptOutcome`], fenced by the attempt number).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; due at `next_attempt_at`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed, or the endpoint answered 410 Gone.
    Failed,
}

impl DeliveryStatus {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `pending`, `delivered`, `failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status {0:?} (expected pending, delivered or failed)")]
pub struct UnknownDeliveryStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownDeliveryStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(UnknownDeliveryStatus(other.to_owned())),
        }
    }
}

/// One event on its way to (or at) a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// `msg_…`: the `webhook-id` header, the same on every attempt.
    pub id: String,
    /// The environment the event belongs to.
    pub environment: String,
    /// The event's type (`connection.created`, …).
    pub event: String,
    /// The connection it is about, if any.
    pub connection_id: Option<String>,
    /// Where it is sent (the last attempt's URL once one was made).
    pub url: String,
    /// The JSON body, exactly as signed and sent (it holds no secret).
    pub body: String,
    /// Pending, delivered or failed.
    pub status: DeliveryStatus,
    /// Attempts made (claimed) so far.
    pub attempts: u32,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, in safe words.
    pub last_error: Option<String>,
    /// When the event was recorded.
    pub created_at: OffsetDateTime,
    /// When a pending delivery is next due.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<OffsetDateTime>,
    /// When the row last changed.
    pub updated_at: OffsetDateTime,
}

impl WebhookDelivery {
    /// A new pending delivery, due at `at`.
    pub fn pending(
        id: impl Into<String>,
        environment: impl Into<String>,
        event: impl Into<String>,
        connection_id: Option<String>,
        url: impl Into<String>,
        body: impl Into<String>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id: id.into(),
            environment: environment.into(),
            event: event.into(),
            connection_id,
            url: url.into(),
            body: body.into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            created_at: at,
            next_attempt_at: Some(at),
            delivered_at: None,
            updated_at: at,
        }
    }
}

/// What one attempt came to, recorded by the claim that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// `Pending` to try again at `next_attempt_at`, or `Delivered` / `Failed` for good.
    pub status: DeliveryStatus,
    /// The URL the attempt went to.
    pub url: String,
    /// The HTTP status the endpoint answered, if it answered.
    pub last_status: Option<u16>,
    /// Why it failed, in safe words; `None` when it was delivered.
    pub last_error: Option<String>,
    /// When to try again (for `Pending`).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When it was recorded.
    pub at: OffsetDateTime,
}

/// Which deliveries a list returns: those of one environment, and every condition given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// The environment the deliveries belong to.
    pub environment: String,
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only events of this type.
    pub event: Option<String>,
    /// Only events about this connection.
    pub connection: Option<String>,
}

impl DeliveryFilter {
    /// Every delivery of `environment`.
    pub fn in_environment(environment: impl Into<String>) -> Self {
        Self { environment: environment.into(), status: None, event: None, connection: None }
    }
}
