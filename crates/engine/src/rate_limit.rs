//! Outbound rate limits: per scope key (a connection, an integration or a connector), a FIFO
//! queue in front of a GCRA limiter (`governor`), and the back-off an API asks for with
//! `Retry-After` on a 429 or 503 (RFC 9110 §10.2.3, RFC 6585 §4).
//!
//! The queue is a fair `tokio` mutex: requests take their turn in arrival order, and only the
//! head waits on the limiter, so a burst of proxied requests leaves in order at the limit's pace.
//! Keys idle long enough for their limiter to be full again are swept, so the map holds only
//! keys in use.
//!
//! With Redis configured the limiter is the fleet's (see [`crate::fleet_limit`]): the queue
//! stays per instance, and its head reserves the next permit in Redis; while Redis cannot be
//! reached the local limiter runs on this instance's share of the limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use latchkey_core::Connector;
use latchkey_core::connector::{RateLimit, RateScope};

use crate::fleet_limit::{FleetLimits, Reservation};

/// The longest back-off a `Retry-After` can impose on a key (an hour): beyond that an API's
/// answer is more likely a mistake than a plan.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How often idle keys are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// `governor`'s clock over `tokio::time`, so the limiter and the queue's sleeps share one time
/// (and tests with paused time are exact). Instants are durations since the clock's origin.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Who shares a limit: the connector, the scope and the scope's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RateKey {
    connector: String,
    scope: RateScope,
    id: String,
}

impl RateKey {
    /// The key a connection's requests count against. An `integration` scope without an
    /// integration falls back to the connector.
    pub(crate) fn of(
        connector: &Connector,
        limit: &RateLimit,
        connection: &str,
        integration: Option<&str>,
    ) -> Self {
        let (scope, id) = match (limit.scope, integration) {
            (RateScope::Connection, _) => (RateScope::Connection, connection),
            (RateScope::Integration, Some(integration)) => (RateScope::Integration, integration),
            (RateScope::Integration, None) | (RateScope::Connector, _) => {
                (RateScope::Connector, connector.id.as_str())
            }
        };
        Self { connector: connector.id.clone(), scope, id: id.to_string() }
    }

    /// The key's name in Redis: `<connector>:<scope>:<id>` (ids never hold `:`).
    pub(crate) fn redis_name(&self) -> String {
        let scope = match self.scope {
            RateScope::Connection => "connection",
            RateScope::Integration => "integration",
            RateScope::Connector => "connector",
        };
        format!("{}:{scope}:{}", self.connector, self.id)
    }
}

/// All keys' limiters and back-offs. One per engine.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    clock: TokioClock,
    keys: Mutex<Keys>,
    fleet: Option<Arc<FleetLimits>>,
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<RateKey, Arc<KeyState>>,
    swept_at: Duration,
}

/// One key: its queue, and under a short lock its limiter and back-off.
#[derive(Debug, Default)]
struct KeyState {
    queue: tokio::sync::Mutex<()>,
    queued: AtomicUsize,
    inner: Mutex<KeyInner>,
}

#[derive(Debug, Default)]
struct KeyInner {
    /// The limiter and the quota it was built for (rebuilt when a connector changes it).
    limiter: Option<(Quota, Limiter)>,
    /// No request leaves before this clock time (set from a `Retry-After`).
    blocked_until: Option<Duration>,
    /// The last time a request took a permit.
    last_used: Duration,
}

/// The quota of a connector's limit: `requests` per `per`, evenly spaced, `burst` at once; as
/// the share of one instance among `instances`, `1/instances` of the rate and of the burst.
fn quota(limit: &RateLimit, instances: u32) -> Option<Quota> {
    let (requests, period, burst) = limit.rate()?;
    let instances = instances.max(1);
    let interval = period / requests * instances;
    let burst = NonZeroU32::new(burst.div_ceil(instances))?;
    Some(Quota::with_period(interval.max(Duration::from_nanos(1)))?.allow_burst(burst))
}

impl RateLimits {
    /// Limits whose permits come from `fleet` when it is given (and Redis answers).
    pub(crate) fn new(fleet: Option<Arc<FleetLimits>>) -> Self {
        Self { fleet, ..Self::default() }
    }

    /// Waits for `key`'s turn and a permit under `limit`: in arrival order, after any back-off,
    /// at most `max_wait_ms`. On giving up, returns how long the caller should wait before
    /// trying again (an estimate when the request was still queued).
    pub(crate) async fn acquire(&self, key: &RateKey, limit: &RateLimit) -> Result<(), Duration> {
        let instances = self.fleet.as_ref().map_or(1, |fleet| fleet.fleet_size());
        let quota = quota(limit, instances);
        let max_wait = Duration::from_millis(limit.max_wait_ms);
        let deadline = self.clock.now() + max_wait;
        let state = self.state(key);
        let ahead = state.queued.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&state.queued);
        let turn = tokio::time::timeout(max_wait, state.queue.lock()).await;
        let Ok(_turn) = turn else {
            let interval = quota.map_or(Duration::ZERO, |q| q.replenish_interval());
            let blocked = self.blocked_for(&state);
            return Err(blocked.max(interval * ahead as u32).max(Duration::from_secs(1)));
        };
        // A back-off (the API's own `Retry-After`) is waited out first, on this instance.
        loop {
            let now = self.clock.now();
            let blocked = self.blocked_for(&state);
            if blocked.is_zero() {
                break;
            }
            if now + blocked > deadline {
                return Err(blocked);
            }
            tokio::time::sleep(blocked).await;
        }
        if let Some(fleet) = &self.fleet
            && limit.rate().is_some()
        {
            let left = deadline.saturating_sub(self.clock.now());
            // Boxed: the Redis call's future would otherwise nest inside every caller's.
            match Box::pin(fleet.reserve(key, limit, left)).await {
                Some(Reservation::Granted(wait)) => {
                    state.inner.lock().last_used = self.clock.now() + wait;
                    tokio::time::sleep(wait).await;
                    return Ok(());
                }
                Some(Reservation::Refused(wait)) => return Err(wait),
                // Redis cannot decide: this instance's share, below.
                None => {}
            }
        }
        loop {
            let now = self.clock.now();
            let Some(wait) = self.next_permit(&state, quota, now) else {
                return Ok(());
            };
            if now + wait > deadline {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// After a 429 or 503 with `Retry-After`: nothing more leaves on `key` for `wait`.
    pub(crate) fn back_off(&self, key: &RateKey, wait: Duration) {
        let until = self.clock.now() + wait.min(MAX_BACKOFF);
        let state = self.state(key);
        let mut inner = state.inner.lock();
        inner.blocked_until = Some(inner.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// How many keys are held (for tests of the sweep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().map.len()
    }

    fn blocked_for(&self, state: &KeyState) -> Duration {
        let inner = state.inner.lock();
        inner.blocked_until.map_or(Duration::ZERO, |b| b.saturating_sub(self.clock.now()))
    }

    /// Takes a permit now (`None`), or says how long until one may be free.
    fn next_permit(
        &self,
        state: &KeyState,
        quota: Option<Quota>,
        now: Duration,
    ) -> Option<Duration> {
        let mut inner = state.inner.lock();
        if let Some(until) = inner.blocked_until {
            if until > now {
                return Some(until - now);
            }
            inner.blocked_until = None;
        }
        let Some(quota) = quota else {
            inner.last_used = now;
            return None;
        };
        if inner.limiter.as_ref().is_none_or(|(built, _)| *built != quota) {
            inner.limiter = Some((quota, RateLimiter::direct_with_clock(quota, self.clock)));
        }
        let (_, limiter) = inner.limiter.as_ref()?;
        match limiter.check() {
            Ok(()) => {
                inner.last_used = now;
                None
            }
            Err(not_until) => Some(not_until.wait_time_from(now).max(Duration::from_millis(1))),
        }
    }

    /// The state of `key`, made on first use. Sweeps idle keys now and then.
    fn state(&self, key: &RateKey) -> Arc<KeyState> {
        let now = self.clock.now();
        let mut keys = self.keys.lock();
        if now.saturating_sub(keys.swept_at) >= SWEEP_EVERY {
            keys.swept_at = now;
            keys.map.retain(|_, state| Arc::strong_count(state) > 1 || !state.idle(now));
        }
        keys.map.entry(key.clone()).or_default().clone()
    }
}

impl KeyState {
    /// Nobody queued, no back-off, and the limiter full again: forgetting the key loses nothing.
    fn idle(&self, now: Duration) -> bool {
        if self.queued.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let inner = self.inner.lock();
        let refill =
            inner.limiter.as_ref().map_or(Duration::ZERO, |(q, _)| q.burst_size_replenished_in());
        inner.blocked_until.is_none_or(|until| until <= now)
            && now.saturating_sub(inner.last_used) >= refill
    }
}

/// Counts a request in a key's queue until it leaves (taken, refused or dropped).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wait a 429 or 503 response asks for in `Retry-After` (delta-seconds or an HTTP-date,
/// RFC 9110 §10.2.3). `None` for any other status, no header, or a malformed one.
pub(crate) fn retry_after(status: http::StatusCode, headers: &http::HeaderMap) -> Option<Duration> {
    if status != http::StatusCode::TOO_MANY_REQUESTS
        && status != http::StatusCode::SERVICE_UNAVAILABLE
    {
        return None;
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> RateKey {
        RateKey { connector: "prov".into(), scope: RateScope::Connection, id: id.into() }
    }

    fn limit(requests: u32, burst: u32, max_wait_ms: u64) -> RateLimit {
        RateLimit {
            requests: Some(requests),
            burst: Some(burst),
            max_wait_ms,
            ..RateLimit::default()
        }
    }

    /// Ten requests at 5 per second leave 200 ms apart, in the order they came.
    #[tokio::test(start_paused = true)]
    async fn permits_are_evenly_spaced_and_in_order() {
        let limits = Arc::new(RateLimits::default());
        let start = tokio::time::Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..10u32 {
            let (limits, order) = (limits.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                limits.acquire(&key("c1"), &limit(5, 1, 10_000)).await.unwrap();
                order.lock().push((i, start.elapsed()));
            }));
            // Let each task queue before the next starts, so arrival order is known.
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().clone();
        let ids: Vec<u32> = order.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        for (n, (_, at)) in order.iter().enumerate() {
            assert_eq!(*at, Duration::from_millis(200) * n as u32, "permit {n}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_leaves_at_once_then_the_rate_holds() {
        let limits = RateLimits::default();
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            limits.acquire(&key("c1"), &limit(1, 3, 10_000)).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.acquire(&key("c1"), &limit(1, 3, 10_000)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn past_max_wait_the_caller_is_told_when_to_come_back() {
        let limits = RateLimits::default();
        let slow = limit(1, 1, 500);
        limits.acquire(&key("c1"), &slow).await.unwrap();
        let start = tokio::time::Instant::now();
        let retry = limits.acquire(&key("c1"), &slow).await.unwrap_err();
        assert_eq!(retry, Duration::from_secs(1));
        assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting in vain");
        // Another key is not affected.
        limits.acquire(&key("c2"), &slow).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_holds_requests_until_its_end() {
        let limits = RateLimits::default();
        let only_backoff = RateLimit { max_wait_ms: 2_000, ..RateLimit::default() };
        limits.back_off(&key("c1"), Duration::from_secs(5));
        assert_eq!(
            limits.acquire(&key("c1"), &only_backoff).await.unwrap_err(),
            Duration::from_secs(5)
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        let start = tokio::time::Instant::now();
        limits.acquire(&key("c1"), &only_backoff).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // A back-off is capped.
        limits.back_off(&key("c2"), Duration::from_secs(86_400));
        let wait = limits.acquire(&key("c2"), &only_backoff).await.unwrap_err();
        assert_eq!(wait, MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept() {
        let limits = RateLimits::default();
        for i in 0..100 {
            limits.acquire(&key(&format!("c{i}")), &limit(10, 1, 0)).await.unwrap();
        }
        assert_eq!(limits.len(), 100);
        tokio::time::advance(SWEEP_EVERY).await;
        limits.acquire(&key("other"), &limit(10, 1, 0)).await.unwrap();
        assert_eq!(limits.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_quota_takes_effect() {
        let limits = RateLimits::default();
        limits.acquire(&key("c1"), &limit(1, 1, 0)).await.unwrap();
        assert!(limits.acquire(&key("c1"), &limit(1, 1, 0)).await.is_err());
        limits.acquire(&key("c1"), &limit(10, 2, 0)).await.unwrap();
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_only_on_429_and_503() {
        let headers = |value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            h
        };
        let s429 = http::StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(retry_after(s429, &headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(http::StatusCode::SERVICE_UNAVAILABLE, &headers(" 0 ")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(http::StatusCode::OK, &headers("7")), None);
        assert_eq!(retry_after(s429, &headers("soon")), None);
        assert_eq!(retry_after(s429, &headers("-1")), None);
        assert_eq!(retry_after(s429, &headers("1.5")), None);
        assert_eq!(retry_after(s429, &http::HeaderMap::new()), None);
        let past = httpdate::fmt_http_date(std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(retry_after(s429, &headers(&past)), Some(Duration::ZERO));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = retry_after(s429, &headers(&httpdate::fmt_http_date(later))).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    }
}
