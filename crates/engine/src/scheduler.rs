//! The proactive refresher: every tick, queue the tokens that expire within the margin and
//! refresh them a few at a time, each in a task of its own, through the shared scheduling loop
//! ([`crate::schedule`]: bounded, fair among connectors, paced). A refresh that fails, hangs
//! until its timeout or panics holds one slot and delays only its own connection: the others
//! keep going, and a failure (a panic counts as one, and is logged) backs off with a growing,
//! jittered delay per connection. Failures never touch the stored tokens (see
//! `oauth2::refresh`).
//!
//! Fairness: the back-off is kept in the store (`refresh_failures`, `refresh_retry_at`), whose
//! query leaves out the connections that wait, so they never hold the window of the next
//! [`BATCH`] due; the queue takes connectors in turn, and one connector holds at most
//! [`PER_CONNECTOR`] of the [`CONCURRENCY`] slots, so one provider's outage (failing or hanging
//! token endpoints) does not delay another provider's refreshes.
//!
//! Spreading and pacing: a connection is due at its expiry less the margin less a share of the
//! margin of its own (fixed by its id in the store, up to [`SPREAD`] of it; the store's query
//! orders by that due time), so connections imported or connected
//! together, whose tokens expire together, are refreshed over a stretch of time rather than at
//! once; and one connector's scheduled refreshes start at most its pace apart (the engine's
//! refresh rate, or the connector's own `rate_limit` where it sets a lower connector-wide one),
//! so a provider's token endpoint never sees more than that from the scheduler. Refreshes on
//! demand (a request meeting an expiring token) are not paced.
//!
//! On start, connections whose refresh a crash interrupted are checked at once; later, every
//! tick also checks the connections whose refresh lease ran out unreleased (a refresh cancelled
//! or panicking mid-exchange).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::connector::RateScope;

use crate::schedule::{Done, Due, Listed, Shape, run_schedule};
use crate::{Engine, RefreshReason, Renewal};

/// Connections refreshed at once.
const CONCURRENCY: usize = 32;
/// Slots one connector may hold at once: the others stay free for other providers.
const PER_CONNECTOR: usize = CONCURRENCY / 2;
/// Connections looked at per listing (those backing off are not among them).
const BATCH: u32 = 256;
/// How far ahead of the margin a connection may be refreshed, as a share of the margin: each
/// connection's own share is fixed by its id ([`latchkey_store::refresh_spread`]).
const SPREAD: f64 = 0.5;
/// The first delay after a failure; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest delay after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The default pace of scheduled refreshes: at most this many token requests per second to
/// one connector's token endpoint.
pub const DEFAULT_REFRESH_RATE: u32 = 10;

/// The delay before the next scheduled refresh after `failures` consecutive failures (1 for
/// the first): [`FIRST_BACKOFF`] doubled per further failure up to [`MAX_BACKOFF`], scaled by
/// `jitter` (drawn from 0.5..=1.0, "equal jitter"), so that connections which failed together
/// do not all come back together.
fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let delay = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    delay.mul_f64(jitter.clamp(0.5, 1.0))
}

/// How long before expiry connection `id` is refreshed by the scheduler: the margin, and its
/// own share ([`latchkey_store::refresh_spread`]) of [`SPREAD`] of the margin more.
fn lead(id: &str, margin: Duration) -> Duration {
    margin + margin.mul_f64(SPREAD * latchkey_store::refresh_spread(id))
}

impl Renewal<'_> {
    /// The background refresher, to spawn: every `tick` it refreshes the tokens that expire
    /// within the margin, a few at a time, and runs until the task is dropped. It starts by
    /// checking, in a task of its own, the connections whose refresh a crash interrupted
    /// ([`Renewal::check_interrupted`]). The future holds the engine's `Arc`, so it is
    /// `'static`; while the engine is being dropped it finishes at once.
    pub fn run_scheduler(&self, tick: Duration) -> impl Future<Output = ()> + Send + 'static {
        let engine = self.engine.me.upgrade();
        async move {
            if let Some(engine) = engine {
                engine.run_scheduler(tick).await;
            }
        }
    }
}

impl Engine {
    async fn run_scheduler(self: Arc<Self>, tick: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.renewal().check_interrupted().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(connections = n, "checked interrupted refreshes"),
                Err(e) => tracing::warn!(error = %e, "cannot check interrupted refreshes"),
            }
        });
        let engine = self.clone();
        let due = move |skip: Vec<String>| {
            let engine = engine.clone();
            async move { engine.refreshes_due(skip).await }
        };
        let engine = self.clone();
        let refresh = move |due: Due| {
            let engine = engine.clone();
            async move {
                if engine.abandoned_refreshes().await.is_ok_and(|ids| ids.contains(&due.id)) {
                    let checked = engine.check_interrupted_refresh(&due.id).await;
                    return if checked.unwrap_or(false) { Done::Ok } else { Done::Failed };
                }
                let reason = RefreshReason::Expiring(lead(&due.id, engine.refresh_margin));
                match engine.refresh_record(&due.id, reason).await {
                    Ok(_) => Done::Ok,
                    Err(_) => Done::Failed,
                }
            }
        };
        let engine = self.clone();
        let failed = move |id: String| {
            let engine = engine.clone();
            async move { engine.back_off_refresh(&id).await }
        };
        let pace = move |connector: &str| self.refresh_pace(connector);
        let shape = Shape {
            concurrency: CONCURRENCY,
            per_connector: PER_CONNECTOR,
            batch: BATCH,
            queue_per_connector: BATCH as usize / 4,
        };
        run_schedule(tick, shape, due, refresh, failed, pace).await;
    }

    /// The refreshes due now: those a crash or a cancellation abandoned, then the tokens within
    /// their lead of expiry, soonest first, leaving out connections backing off and the
    /// connectors in `skip`.
    async fn refreshes_due(&self, skip: Vec<String>) -> Listed {
        let now = self.clock.now();
        let abandoned = self.abandoned_refreshes().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "scheduler cannot list abandoned refreshes");
            Vec::new()
        });
        // Which connector an abandoned refresh belongs to does not matter: there are few.
        let mut due: Vec<Due> = abandoned.into_iter().map(|id| Due::new(id, "")).collect();
        let before = now + self.refresh_margin;
        let spread = self.refresh_margin.mul_f64(SPREAD);
        let expiring = self.store.connections_expiring(before, spread, now, BATCH, &skip).await;
        let expiring = expiring.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "scheduler cannot list expiring connections");
            Vec::new()
        });
        let full = expiring.len() == BATCH as usize;
        due.extend(expiring.into_iter().map(|c| Due::new(c.id, c.connector)));
        Listed { due, full, rescheduled: 0 }
    }

    /// The least time between two scheduled refreshes of `connector`: one over the engine's
    /// refresh rate, or over the connector's own connector-wide `rate_limit` when that is lower
    /// (a provider that limits the whole app counts its token requests too). `None`: no pace.
    fn refresh_pace(&self, connector: &str) -> Option<Duration> {
        let entry = self.catalog.get(connector);
        pace(self.refresh_rate, entry.as_ref().and_then(|e| e.connector.rate_limit.as_ref()))
    }

    /// Records a failed scheduled refresh in the store: the scheduler leaves the connection
    /// alone until its jittered retry time.
    async fn back_off_refresh(&self, id: &str) {
        let now = self.clock.now();
        let jitter = rand::random_range(0.5..=1.0);
        let retry_at = move |failures: u32| now + backoff_delay(failures, jitter);
        match self.store.record_refresh_failure(id, now, &retry_at).await {
            Ok(Some(backoff)) => {
                tracing::info!(
                    connection = %id,
                    failures = backoff.failures,
                    retry_at = ?backoff.retry_at,
                    "scheduled refresh failed; backing off"
                );
                if let Some(since) = backoff.failing_since {
                    self.refresh_exhausted(id, since).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "cannot record a refresh back-off")
            }
        }
    }
}

/// The least time between two scheduled refreshes of one connector: one over `rate` (a second),
/// or over the connector's `limit` when it is connector-wide and lower. `None`: no pace (`rate`
/// 0 and no such limit).
fn pace(rate: u32, limit: Option<&latchkey_core::connector::RateLimit>) -> Option<Duration> {
    let own = limit.filter(|l| l.scope == RateScope::Connector).and_then(|l| {
        let (requests, period, _) = l.rate()?;
        Some(f64::from(requests) / period.as_secs_f64())
    });
    let rate = match (rate, own) {
        (0, None) => return None,
        (0, Some(own)) => own,
        (rate, None) => f64::from(rate),
        (rate, Some(own)) => own.min(f64::from(rate)),
    };
    (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_is_the_rate_or_a_lower_connector_wide_limit() {
        use latchkey_core::connector::{RateLimit, RatePeriod};
        let limit = |requests: u32, per: RatePeriod, scope: RateScope| RateLimit {
            requests: Some(requests),
            per: Some(per),
            scope,
            ..RateLimit::default()
        };
        let ms = Duration::from_millis;
        assert_eq!(pace(10, None), Some(ms(100)));
        assert_eq!(pace(0, None), None, "0: no pace");
        let wide = limit(120, RatePeriod::Minute, RateScope::Connector);
        assert_eq!(pace(10, Some(&wide)), Some(ms(500)), "2 a second is lower");
        assert_eq!(pace(0, Some(&wide)), Some(ms(500)));
        let generous = limit(100, RatePeriod::Second, RateScope::Connector);
        assert_eq!(pace(10, Some(&generous)), Some(ms(100)), "the rate is lower");
        let per_user = limit(1, RatePeriod::Second, RateScope::Connection);
        assert_eq!(pace(10, Some(&per_user)), Some(ms(100)), "a per-connection limit: ignored");
        let only_retry_after = RateLimit { scope: RateScope::Connector, ..RateLimit::default() };
        assert_eq!(pace(10, Some(&only_retry_after)), Some(ms(100)));
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_is_jittered_down_to_half() {
        assert_eq!(backoff_delay(1, 1.0), FIRST_BACKOFF);
        assert_eq!(backoff_delay(1, 0.5), FIRST_BACKOFF / 2);
        assert_eq!(backoff_delay(2, 1.0), FIRST_BACKOFF * 2);
        assert_eq!(backoff_delay(3, 0.75), FIRST_BACKOFF * 3);
        assert_eq!(backoff_delay(100, 1.0), MAX_BACKOFF);
        assert_eq!(backoff_delay(u32::MAX, 0.5), MAX_BACKOFF / 2);
        assert_eq!(backoff_delay(1, 7.0), FIRST_BACKOFF, "jitter never lengthens the delay");
    }

    /// Ten thousand connections expiring at one instant are due spread evenly over half the
    /// margin before it: about a tenth in each tenth, none before, all by the margin.
    #[test]
    fn connections_expiring_together_are_due_spread_over_the_margin() {
        let margin = Duration::from_secs(300);
        let mut per_tenth = [0usize; 10];
        for i in 0..10_000 {
            let lead = lead(&format!("conn_{i}"), margin);
            assert!(lead >= margin && lead < margin + margin / 2, "{lead:?}");
            per_tenth[((lead - margin).as_secs_f64() / 15.0) as usize] += 1;
        }
        for (tenth, n) in per_tenth.iter().enumerate() {
            assert!((800..1200).contains(n), "tenth {tenth}: {n} of 10000 ({per_tenth:?})");
        }
        assert_eq!(lead("conn_1", margin), lead("conn_1", margin), "fixed per connection");
    }
}
