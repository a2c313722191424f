//! The deliverer: claims due deliveries from the log, sends each once, records what came of it.

use crate::operations::Timed;
use latchkey_store::OperationKind;
use std::sync::{Arc, Weak};
use std::time::Duration;

use latchkey_net::HostPolicy;
use latchkey_store::{AttemptOutcome, DeliveryStatus, WebhookDelivery};
use time::OffsetDateTime;

use super::{DELIVERIES, DeliveryOptions, signing};
use crate::Engine;

/// Time a claim holds a delivery beyond the attempt's own timeout, for recording its outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How often delivered and failed deliveries past their retention are removed.
const TRIM_EVERY: Duration = Duration::from_secs(60 * 60);

/// The longest `last_error` kept.
const ERROR_LIMIT: usize = 500;

/// Sends due deliveries until the engine is gone.
pub(super) async fn run(engine: Weak<Engine>, options: DeliveryOptions) {
    let mut trimmed_at: Option<tokio::time::Instant> = None;
    loop {
        let Some(strong) = engine.upgrade() else { return };
        if trimmed_at.is_none_or(|at| at.elapsed() >= TRIM_EVERY) {
            trimmed_at = Some(tokio::time::Instant::now());
            trim(&strong, options.retention).await;
        }
        let claimed = claim_and_send(&strong, &options).await;
        let events = strong.events.clone();
        drop(strong);
        // A full batch may leave more due at once; otherwise wait for an event or the poll.
        if claimed < options.batch as usize {
            tokio::select! {
                () = events.inner.recorded.notified() => {}
                () = tokio::time::sleep(options.poll) => {}
            }
        }
    }
}

/// Claims one batch and sends it; returns how many were claimed.
async fn claim_and_send(engine: &Arc<Engine>, options: &DeliveryOptions) -> usize {
    let now = engine.clock.now();
    let lease = options.timeout.saturating_add(LEASE_MARGIN);
    let lease_until = now + time::Duration::try_from(lease).unwrap_or(time::Duration::MINUTE);
    let claimed =
        match engine.store.claim_webhook_deliveries(now, lease_until, options.batch.max(1)).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim webhook deliveries");
                return 0;
            }
        };
    let count = claimed.len();
    let sends = claimed.into_iter().map(|delivery| {
        let engine = engine.clone();
        let options = options.clone();
        // Each in a task of its own: one slow endpoint does not hold up the others' records.
        tokio::spawn(async move { attempt(&engine, &options, delivery).await })
    });
    for send in futures_util::future::join_all(sends).await {
        if let Err(error) = send {
            tracing::error!(%error, "a webhook delivery task failed");
        }
    }
    count
}

/// What one attempt came to, before it is recorded.
enum Answer {
    /// The endpoint answered with this status.
    Status(http::StatusCode),
    /// No answer: why, in safe words.
    NoAnswer(String),
}

/// Sends one claimed delivery and records the outcome.
async fn attempt(engine: &Engine, options: &DeliveryOptions, delivery: WebhookDelivery) {
    let Some(destination) = engine.events.destination(&delivery.environment).await else {
        let outcome = AttemptOutcome {
            status: DeliveryStatus::Failed,
            url: delivery.url.clone(),
            last_status: None,
            last_error: Some(format!(
                "environment `{}` has no webhook any more",
                delivery.environment
            )),
            next_attempt_at: None,
            at: engine.clock.now(),
        };
        record(engine, &delivery, &outcome).await;
        return;
    };
    let now = engine.clock.now();
    let mut timed = Timed::new(engine, OperationKind::Webhook, &delivery.environment).request(
        "POST",
        destination.url.host_str(),
        destination.url.path(),
    );
    timed.set_connection(delivery.connection_id.as_deref());
    let answer = send(engine, options, &delivery, &destination, now).await;
    engine.record_operation(match &answer {
        Answer::Status(status) => timed.answered(status.as_u16()),
        Answer::NoAnswer(error) => timed.failed_with("webhook_unreachable", error, None),
    });
    let at = engine.clock.now();
    let url = destination.url.to_string();
    let failed = |last_status, error: String| {
        let next = options
            .schedule
            .delay_after(delivery.attempts, rand::random_range(-1.0..=1.0))
            .and_then(|d| time::Duration::try_from(d).ok())
            .map(|d| at + d);
        AttemptOutcome {
            status: if next.is_some() { DeliveryStatus::Pending } else { DeliveryStatus::Failed },
            url: url.clone(),
            last_status,
            last_error: Some(truncate(error)),
            next_attempt_at: next,
            at,
        }
    };
    let outcome = match answer {
        Answer::Status(status) if status.is_success() => AttemptOutcome {
            status: DeliveryStatus::Delivered,
            url: url.clone(),
            last_status: Some(status.as_u16()),
            last_error: None,
            next_attempt_at: None,
            at,
        },
        Answer::Status(http::StatusCode::GONE) => AttemptOutcome {
            status: DeliveryStatus::Failed,
            url: url.clone(),
            last_status: Some(410),
            last_error: Some("the endpoint answered 410 Gone: it takes no more deliveries".into()),
            next_attempt_at: None,
            at,
        },
        Answer::Status(status) => {
            failed(Some(status.as_u16()), format!("the endpoint answered {status}"))
        }
        Answer::NoAnswer(error) => failed(None, error),
    };
    record(engine, &delivery, &outcome).await;
}

/// Posts the body, signed with every secret that signs at `now`.
async fn send(
    engine: &Engine,
    options: &DeliveryOptions,
    delivery: &WebhookDelivery,
    destination: &crate::events::Destination,
    now: OffsetDateTime,
) -> Answer {
    let policy = match HostPolicy::for_url(&destination.url) {
        Ok(policy) => policy,
        Err(e) => return Answer::NoAnswer(e.to_string()),
    };
    let timestamp = now.unix_timestamp();
    let body = delivery.body.as_bytes();
    let signature =
        signing::signature_header(destination.secrets(now), &delivery.id, timestamp, body);
    let request = http::Request::post(destination.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("Latchkey/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(bytes::Bytes::copy_from_slice(body));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Answer::NoAnswer(e.to_string()),
    };
    match tokio::time::timeout(options.timeout, engine.net.send(request, &policy)).await {
        Ok(Ok(response)) => Answer::Status(response.status),
        Ok(Err(e)) => Answer::NoAnswer(e.to_string()),
        Err(_) => Answer::NoAnswer(format!(
            "the endpoint did not answer within {} s",
            options.timeout.as_secs_f64()
        )),
    }
}

/// Records an outcome (fenced by the attempt it was claimed as) and counts it.
async fn record(engine: &Engine, delivery: &WebhookDelivery, outcome: &AttemptOutcome) {
    let label = match outcome.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Pending => "retrying",
        DeliveryStatus::Failed => "failed",
    };
    metrics::counter!(DELIVERIES, "outcome" => label).increment(1);
    let (id, attempt) = (&delivery.id, delivery.attempts);
    match outcome.status {
        DeliveryStatus::Delivered => {
            tracing::debug!(delivery = %id, event = %delivery.event, attempt, "webhook delivered");
        }
        DeliveryStatus::Pending => tracing::warn!(
            delivery = %id, event = %delivery.event, attempt,
            error = outcome.last_error.as_deref().unwrap_or_default(),
            "webhook delivery failed; it will be tried again"
        ),
        DeliveryStatus::Failed => tracing::error!(
            delivery = %id, event = %delivery.event, environment = %delivery.environment, attempt,
            error = outcome.last_error.as_deref().unwrap_or_default(),
            "webhook delivery failed for good"
        ),
    }
    match engine.store.record_webhook_attempt(id, attempt, outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            delivery = %id, attempt,
            "a webhook attempt's outcome came after its claim ran out or the delivery was retried; not recorded"
        ),
        Err(error) => tracing::error!(delivery = %id, %error, "cannot record a webhook attempt"),
    }
}

/// Removes delivered and failed deliveries older than `retention`.
async fn trim(engine: &Engine, retention: Duration) {
    let Ok(retention) = time::Duration::try_from(retention) else { return };
    let Some(before) = engine.clock.now().checked_sub(retention) else { return };
    match engine.store.trim_webhook_deliveries(before).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "trimmed the webhook delivery log to its retention"),
        Err(error) => tracing::warn!(%error, "cannot trim the webhook delivery log"),
    }
}

/// `error`, cut to [`ERROR_LIMIT`] bytes at a character boundary.
fn truncate(mut error: String) -> String {
    if error.len() > ERROR_LIMIT {
        let mut end = ERROR_LIMIT;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}
