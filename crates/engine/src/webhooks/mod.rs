//! Webhooks, from [`Engine::webhooks`]: the delivery log (list, one delivery, retry a failed
//! one) and the deliverer that sends what the log holds.
//!
//! Every event ([`Events::emit`](crate::Events::emit)) becomes a row of the store's delivery
//! log. A deliverer ([`Webhooks::run_deliverer`], which `latchkey serve` starts) claims due
//! rows, signs each per Standard Webhooks ([`signing`]) with the destination's secrets, posts
//! it, and records the outcome: a 2xx delivers it; 410 Gone fails it at once (the receiver asks
//! for no more); anything else is tried again on the [`RetrySchedule`] until it fails. Claims
//! are atomic across processes sharing the database, so several instances each send an attempt
//! once; a row whose deliverer died is claimed again when its lease runs out, so a restart
//! resumes what was pending.

mod delivery;
pub mod signing;

use std::time::Duration;

use latchkey_store::{DeliveryFilter, DeliveryStatus, Page, PageRequest, WebhookDelivery};

use crate::{Engine, EngineError, EnvironmentId};

pub use signing::{
    MESSAGE_PREFIX, SECRET_PREFIX, generate_secret, message_id, sign, signature_header,
};

/// Webhook deliveries, by outcome: `delivered`, `retrying` (an attempt failed; another is
/// due), `failed` (for good), `dropped` (the event could not be recorded).
pub const DELIVERIES: &str = "latchkey_webhook_deliveries_total";

/// When failed attempts are tried again: after the first failure wait `delays[0]`, after the
/// second `delays[1]`, …; a delivery that fails `delays.len() + 1` times is `failed`. Each wait
/// is spread by up to ±`jitter` of itself, so receivers coming back from an outage are not hit
/// by every delivery at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// The wait after each failed attempt.
    pub delays: Vec<Duration>,
    /// The spread of each wait, as a fraction of it (0 to 1).
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// Eight attempts over about 22 hours: then, 5 s, 30 s, 2 min, 10 min, 1 h, 4 h and 16 h
    /// after the failure before, each ±10 %.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(60),
                minutes(4 * 60),
                minutes(16 * 60),
            ],
            jitter: 0.1,
        }
    }
}

impl RetrySchedule {
    /// The most attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The wait after failed attempt number `attempt` (from 1), with `spread` in -1..=1 picking
    /// where in the jitter it falls; `None` when no attempt follows.
    pub fn delay_after(&self, attempt: u32, spread: f64) -> Option<Duration> {
        let base = *self.delays.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * spread.clamp(-1.0, 1.0);
        Some(base.mul_f64(factor.max(0.0)))
    }
}

/// How a deliverer runs.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// When failed attempts are tried again.
    pub schedule: RetrySchedule,
    /// How often the log is looked at for due deliveries (besides the wake-up each event in
    /// this process gives).
    pub poll: Duration,
    /// The most deliveries claimed (and sent concurrently) at once.
    pub batch: u32,
    /// The longest one attempt may take, the answer's head included.
    pub timeout: Duration,
    /// Delivered and failed deliveries are kept this long, then removed.
    pub retention: Duration,
}

impl Default for DeliveryOptions {
    /// The default schedule, a look every second, 16 at once, 30 s per attempt, 7 days kept.
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            poll: Duration::from_secs(1),
            batch: 16,
            timeout: Duration::from_secs(30),
            retention: DEFAULT_RETENTION,
        }
    }
}

/// How long delivered and failed deliveries are kept by default: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The delivery log and the deliverer, from [`Engine::webhooks`].
#[derive(Debug, Clone, Copy)]
pub struct Webhooks<'e> {
    pub(crate) engine: &'e Engine,
}

impl Webhooks<'_> {
    /// One page of the deliveries `filter` selects, newest first.
    pub async fn list(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, EngineError> {
        crate::pages::check_limit(page)?;
        Ok(self.engine.store.list_webhook_deliveries(filter, page).await?)
    }

    /// The delivery `id` of `environment` ([`EngineError::WebhookDeliveryNotFound`] if there
    /// is none there).
    pub async fn get(
        &self,
        environment: &EnvironmentId,
        id: &str,
    ) -> Result<WebhookDelivery, EngineError> {
        self.engine
            .store
            .get_webhook_delivery(id)
            .await?
            .filter(|d| d.environment == environment.as_str())
            .ok_or_else(|| EngineError::WebhookDeliveryNotFound(id.to_owned()))
    }

    /// Queues a failed delivery of `environment` again, due now, with the whole schedule
    /// ahead of it; [`EngineError::WebhookDeliveryNotRetryable`] if it is not failed.
    pub async fn retry(
        &self,
        environment: &EnvironmentId,
        id: &str,
    ) -> Result<WebhookDelivery, EngineError> {
        let found = self.get(environment, id).await?;
        if found.status != DeliveryStatus::Failed
            || !self.engine.store.retry_webhook_delivery(id, self.engine.clock.now()).await?
        {
            return Err(EngineError::WebhookDeliveryNotRetryable {
                id: id.to_owned(),
                status: found.status.as_str(),
            });
        }
        self.engine.events.inner.recorded.notify_one();
        tracing::info!(delivery = %id, "webhook delivery queued again");
        self.get(environment, id).await
    }

    /// The deliverer, to spawn: it sends due deliveries until the engine is dropped (see the
    /// module doc). Run one per process; several processes on one database share the work.
    pub fn run_deliverer(
        &self,
        options: DeliveryOptions,
    ) -> impl Future<Output = ()> + Send + 'static {
        delivery::run(self.engine.me.clone(), options)
    }

    /// Waits until every event emitted so far in this process is in the delivery log.
    pub async fn settle(&self) {
        self.engine.events.settle().await;
    }
}

impl Engine {
    /// Webhooks: the delivery log and the deliverer.
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks { engine: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_makes_eight_attempts_in_about_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        let total: Duration =
            (1..schedule.attempts()).filter_map(|n| schedule.delay_after(n, 0.0)).sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(24 * 3600));
        assert_eq!(schedule.delay_after(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(schedule.delay_after(1, 1.0), Some(Duration::from_millis(5500)));
        assert_eq!(schedule.delay_after(1, -1.0), Some(Duration::from_millis(4500)));
        assert_eq!(schedule.delay_after(8, 0.0), None, "the eighth failure is the last");
        assert_eq!(schedule.delay_after(0, 0.0), None);
    }
}
