//! Health checks: a connection's credential test, run on demand ([`Connections::check`]) or on
//! a schedule ([`Connections::run_check_scheduler`]), and what it tells of the connection's
//! health (see `health.rs`). A check records the health only: it never changes the
//! connection's `status` (`POST …/test` does), so a provider's bad answer to an unattended probe
//! never blocks the connection's requests, and a connection whose key works again recovers on
//! the next check.
//!
//! Scheduling: each connection has a due time in the store (`check_due_at`). A new or imported
//! connection gets a random one within its first interval, so a bulk import is not checked at
//! once; after a check, the next is one interval later, less up to a fifth (jitter, so
//! connections checked together drift apart); after a failure that may pass by itself, sooner
//! ([`FIRST_RETRY`], doubled per failure), so [`UNHEALTHY_AFTER`](crate::health::UNHEALTHY_AFTER)
//! failures in a row come within about an hour rather than days. The loop is the refresher's
//! ([`crate::schedule`]): bounded, fair among connectors, each connector's checks at most
//! [`CHECK_PACE`] apart, and a 429 holds that connector's checks back. Checks are API requests:
//! they go through the connector's `rate_limit` like proxied requests. Several instances share
//! the work: each claims a due check in the store before running it, and only one claim wins.
//!
//! Credentials: a check on demand renews an OAuth2 token (or session) about to expire first, as
//! a proxied request would. A scheduled check leaves that to the refresher, which paces its
//! token requests and backs off when the provider fails: it comes back later (within an hour)
//! instead, so a provider whose token endpoint is down is not also hit by every check.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{AuthMethod, Connector};
use latchkey_store::{ConnectionRecord, ConnectionStatus, Health, HealthState};

use crate::schedule::{Done, Due, Listed, Shape, run_schedule};
use crate::{Connections, Engine, EngineError, Event, RefreshReason, TestOutcome, telemetry};

/// How often each connection is checked unless its connector says otherwise.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The wait before checking again after a failure that may pass by itself: doubled on each
/// further one (5, 10, 20 minutes …), at most the interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// The least time between two scheduled checks of one connector's connections (5 a second).
pub const CHECK_PACE: Duration = Duration::from_millis(200);
/// Checks running at once, and per connector.
const CONCURRENCY: usize = 8;
const PER_CONNECTOR: usize = 4;
/// Due checks looked at per listing.
const BATCH: u32 = 256;
/// How long a connector's checks wait after a 429 that gave no `Retry-After`.
const DEFAULT_SLOW_DOWN: Duration = Duration::from_secs(60);

/// What one check came to, for the schedule and the metrics.
enum Seen {
    /// The connector has no test (or its checks are off): nothing was sent.
    Untested,
    /// The test ran and passed.
    Passed,
    /// The test failed for a reason that speaks of the credentials (401, 403, another 4xx).
    Refused,
    /// The test failed for a reason that may pass by itself (5xx, a timeout, the network, a
    /// 429); `failures` in a row so far.
    Transient { failures: u32, slow_down: Option<Duration> },
    /// The check could not tell (Latchkey's own rate limit, a refresh that failed, a
    /// connector set up wrong).
    Unknown { slow_down: Option<Duration> },
    /// A scheduled check met a token about to expire: the refresher's to renew (paced, and
    /// backing off when the provider fails), so the check waits rather than refreshing.
    Deferred,
}

/// How long a scheduled check that met an expiring token waits, at most.
const DEFERRED: Duration = Duration::from_secs(3600);

/// Who asked for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// `POST …/check`: an expiring token is renewed first, as for a proxied request.
    OnDemand,
    /// The schedule: an expiring token is left to the refresher.
    Scheduled,
}

impl Connections<'_> {
    /// The background health checker, to spawn: every `tick` it checks the connections whose
    /// check is due, a few at a time, and runs until the task is dropped. Does nothing when the
    /// engine's check interval is `off`. The future holds the engine's `Arc`, so it is
    /// `'static`.
    pub fn run_check_scheduler(&self, tick: Duration) -> impl Future<Output = ()> + Send + 'static {
        let engine = self.engine.me.upgrade();
        async move {
            if let Some(engine) = engine
                && engine.check_interval.get().is_some()
            {
                engine.run_check_scheduler(tick).await;
            }
        }
    }
}

impl Engine {
    async fn run_check_scheduler(self: Arc<Self>, tick: Duration) {
        let engine = self.clone();
        let due = move |skip: Vec<String>| {
            let engine = engine.clone();
            async move { engine.checks_due(skip).await }
        };
        let engine = self.clone();
        let check = move |due: Due| {
            let engine = engine.clone();
            async move { engine.scheduled_check(&due.id).await }
        };
        let shape = Shape {
            concurrency: CONCURRENCY,
            per_connector: PER_CONNECTOR,
            batch: BATCH,
            queue_per_connector: BATCH as usize / 4,
        };
        let failed = |_: String| std::future::ready(());
        run_schedule(tick, shape, due, check, failed, |_: &str| Some(CHECK_PACE)).await;
    }

    /// The checks due now, claimed for this instance. Connections never scheduled get a random
    /// first time within one interval, and those whose connector has no test (or checks off) are
    /// put one interval forward: neither is checked now.
    async fn checks_due(&self, skip: Vec<String>) -> Listed {
        let now = self.clock.now();
        let found = match self.store.connections_due_for_check(now, BATCH, &skip).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "check scheduler cannot list due checks");
                return Listed::default();
            }
        };
        let full = found.len() == BATCH as usize;
        let mut moved = Vec::new();
        let mut due = Vec::new();
        for row in found {
            let interval = self.connector_check_interval(&row.connector);
            let every = interval.or(self.check_interval.get()).unwrap_or(DEFAULT_CHECK_INTERVAL);
            match (row.due_at, interval) {
                (None, _) => {
                    moved.push((row.id, now + every.mul_f64(rand::random_range(0.0..1.0))))
                }
                (Some(_), None) => moved.push((row.id, now + every)),
                (Some(seen), Some(every)) => {
                    match self.store.claim_check(&row.id, Some(seen), now + every).await {
                        Ok(true) => due.push(Due::new(row.id, row.connector)),
                        Ok(false) => {} // another instance has it
                        Err(e) => {
                            tracing::warn!(connection = %row.id, error = %e, "cannot claim a check")
                        }
                    }
                }
            }
        }
        let rescheduled = moved.len();
        if let Err(e) = self.store.schedule_checks(&moved).await {
            tracing::warn!(error = %e, "cannot schedule checks");
        }
        Listed { due, full, rescheduled }
    }

    /// How often `connector`'s connections are checked; `None` when they are not (no test, a
    /// connector gone, its `check_interval: off`, or checks off on this engine).
    fn connector_check_interval(&self, connector: &str) -> Option<Duration> {
        let entry = self.catalog.get(connector)?;
        let test = entry.connector.test.as_ref()?;
        self.check_interval.get()?;
        test.check_interval.unwrap_or(self.check_interval).get()
    }

    /// One scheduled check, claimed already.
    async fn scheduled_check(&self, id: &str) -> Done {
        let Ok(record) = self.connection_record(id).await else { return Done::Ok };
        if record.status == ConnectionStatus::NeedsReauth {
            return Done::Ok;
        }
        let Ok(entry) = self.connector_entry(&record.connector) else { return Done::Ok };
        match self.check_record(record, &entry.connector, Trigger::Scheduled).await {
            (
                _,
                Seen::Transient { slow_down: Some(wait), .. }
                | Seen::Unknown { slow_down: Some(wait) },
            ) => Done::SlowDown(wait),
            _ => Done::Ok,
        }
    }

    /// Checks connection `record` now: runs its test (see the module's note on credentials),
    /// records the health it tells and when the next check is due, sends
    /// `connection.unhealthy` or `connection.recovered` on a change, and counts it. Returns the
    /// error the check met, if any, with what it saw.
    async fn check_record(
        &self,
        record: ConnectionRecord,
        connector: &Connector,
        trigger: Trigger,
    ) -> (Result<(), EngineError>, Seen) {
        let id = record.id.clone();
        let interval = self.connector_check_interval(&connector.id);
        if connector.test.is_none() {
            self.schedule_next(&id, interval, &Seen::Untested).await;
            return (Ok(()), Seen::Untested);
        }
        let expiring = RefreshReason::Expiring(self.refresh_margin);
        let renews = matches!(
            connector.auth_method(Some(&record.auth_method)),
            Some(AuthMethod::OAuth2(_) | AuthMethod::Session(_))
        ) && expiring.still_needed(&record, self.clock.now());
        if renews && trigger == Trigger::Scheduled {
            self.schedule_next(&id, interval, &Seen::Deferred).await;
            return (Ok(()), Seen::Deferred);
        }
        let renewed = match renews {
            true => self.refresh_record(&record.id, expiring).await,
            false => Ok(record),
        };
        let record = match renewed {
            Ok(record) => record,
            Err(e) => {
                let seen = Seen::Unknown { slow_down: None };
                telemetry::health_check(&connector.id, "error");
                self.schedule_next(&id, interval, &seen).await;
                return (Err(e), seen);
            }
        };
        let outcome = self.run_test(&record, connector).await;
        let now = self.clock.now();
        let health = crate::health::after_test(&record.health, &outcome, now);
        let seen = match (&outcome, &health) {
            (Ok(TestOutcome { ran: false, .. }), _) => Seen::Untested,
            (Ok(_), _) => Seen::Passed,
            (Err(e), Some(health)) => match crate::health::reason_of(e) {
                Some(reason) if reason.is_transient() => Seen::Transient {
                    failures: health.consecutive_failures,
                    slow_down: slow_down_after(e),
                },
                _ => Seen::Refused,
            },
            (Err(e), None) => Seen::Unknown { slow_down: slow_down_after(e) },
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => crate::health::reason_of(e).map_or("error", |r| r.as_str()),
        };
        if !matches!(seen, Seen::Untested) {
            telemetry::health_check(&connector.id, label);
        }
        let mut result = outcome.map(|_| ());
        if let Some(health) = health
            && let Err(e) = self.record_health(&record, health).await
        {
            result = Err(e);
        }
        self.schedule_next(&id, interval, &seen).await;
        (result, seen)
    }

    /// Writes when connection `id` is next checked after a check that saw `seen`, on an engine
    /// that schedules checks. `interval` is the connector's (`None`: not checked; the due time
    /// then moves one server interval on).
    async fn schedule_next(&self, id: &str, interval: Option<Duration>, seen: &Seen) {
        let Some(server) = self.check_interval.get() else { return };
        let every = interval.unwrap_or(server);
        let wait = match seen {
            Seen::Untested => every,
            Seen::Passed | Seen::Refused => every.mul_f64(rand::random_range(0.8..=1.0)),
            Seen::Transient { failures, slow_down } => {
                let doublings = failures.saturating_sub(1).min(16);
                let retry = FIRST_RETRY.saturating_mul(1 << doublings).min(every);
                retry.max(slow_down.unwrap_or_default()).mul_f64(rand::random_range(0.8..=1.0))
            }
            Seen::Deferred => every.min(DEFERRED).mul_f64(rand::random_range(0.8..=1.0)),
            Seen::Unknown { slow_down } => FIRST_RETRY
                .min(every)
                .max(slow_down.unwrap_or_default())
                .mul_f64(rand::random_range(0.8..=1.0)),
        };
        let next = self.clock.now() + wait;
        if let Err(e) = self.store.schedule_checks(&[(id.to_owned(), next)]).await {
            tracing::warn!(connection = %id, error = %e, "cannot schedule the next check");
        }
    }

    /// Stores `health` for `record` (read before the check), forgets the cached connection,
    /// and sends `connection.unhealthy` or `connection.recovered` when the state changed.
    pub(crate) async fn record_health(
        &self,
        record: &ConnectionRecord,
        health: Health,
    ) -> Result<(), EngineError> {
        self.store.set_connection_health(&record.id, &health).await?;
        self.forget(&record.id);
        let was = record.health.state;
        let checked = ConnectionRecord { health, ..record.clone() };
        match (was, checked.health.state) {
            (HealthState::Unhealthy, HealthState::Healthy) => {
                tracing::info!(connection = %checked.id, "connection recovered");
                self.events.emit(Event::recovered(&checked));
            }
            (HealthState::Healthy | HealthState::Unknown, HealthState::Unhealthy) => {
                tracing::warn!(connection = %checked.id, connector = %checked.connector, reason = ?checked.health.reason, "connection unhealthy");
                self.events.emit(Event::unhealthy(&checked));
            }
            _ => {}
        }
        Ok(())
    }
}

impl Connections<'_> {
    /// Checks connection `id` now (its credential test, with fresh credentials) and returns its
    /// health record, as a scheduled check would: a failure that may pass by itself (5xx, a
    /// timeout, the network, a 429) is counted and shown as the record's `last_error` and
    /// `consecutive_failures`, and makes the connection unhealthy only on the third in a row;
    /// the next scheduled check comes sooner. The status is left alone. A failed test is not
    /// an error here: it is what the health says. Errors that say nothing of the connection's
    /// credentials (it does not exist, the connector is set up wrong, Latchkey's own) are
    /// returned.
    pub async fn check(&self, id: &crate::ConnectionId) -> Result<Health, EngineError> {
        let record = self.engine.connection_record(id.as_str()).await?;
        let entry = self.engine.connector_entry(&record.connector)?;
        let (result, _) =
            self.engine.check_record(record, &entry.connector, Trigger::OnDemand).await;
        if let Err(e) = result
            && e.class().fault() != crate::Fault::Upstream
        {
            return Err(e);
        }
        Ok(self.engine.connection_record(id.as_str()).await?.health)
    }
}

/// How long a connector's checks should wait after `error`: the API's 429 (its `Retry-After`
/// is kept by the rate limit when the connector has one; without it, a minute), or Latchkey's
/// own rate limit.
fn slow_down_after(error: &EngineError) -> Option<Duration> {
    match error {
        EngineError::TestFailed { status: 429 } => Some(DEFAULT_SLOW_DOWN),
        EngineError::RateLimited { retry_after, .. } => Some(*retry_after),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_slows_the_connector_down_and_a_401_does_not() {
        assert_eq!(
            slow_down_after(&EngineError::TestFailed { status: 429 }),
            Some(DEFAULT_SLOW_DOWN)
        );
        assert_eq!(slow_down_after(&EngineError::TestFailed { status: 401 }), None);
        let own =
            EngineError::RateLimited { connector: "x".into(), retry_after: Duration::from_secs(7) };
        assert_eq!(slow_down_after(&own), Some(Duration::from_secs(7)));
    }
}
