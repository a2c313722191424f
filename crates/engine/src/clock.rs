//! The engine's time source. Token expiry, the reuse of signed JWTs, the `iat`/`exp` of what the
//! engine signs and the device flow's polling all read the time (and the device flow waits)
//! through a [`Clock`], so tests can run them on a [`ManualClock`] instead of sleeping.
//!
//! Elapsed-time measurements for metrics and logs, rate limits and `Retry-After` waits keep
//! tokio's clock (tests pause and advance it with `tokio::time::pause`/`advance`); the store
//! stamps its rows with the system time.

use parking_lot::Mutex;
use std::time::Duration;

/// A boxed future that can be sent between threads (as `futures::future::BoxFuture`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
use time::OffsetDateTime;

/// Where the engine reads the time from, and how it waits.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now (UTC).
    fn now(&self) -> OffsetDateTime;

    /// Waits `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()>;
}

/// The system's clock, and tokio's timer for waits: what an engine uses unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to: [`ManualClock::advance`], or a wait, which advances it
/// by the time waited and returns at once. For tests of expiry, JWT reuse and polling.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self { now: Mutex::new(at) }
    }

    /// A clock standing at the system time now (the store stamps rows with the system time, so
    /// this keeps the two close).
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now = now.saturating_add(time::Duration::try_from(by).unwrap_or(time::Duration::MAX));
    }

    /// Sets the clock to `at` (backwards too).
    pub fn set(&self, at: OffsetDateTime) {
        *self.now.lock() = at;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::starting_now()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'_, ()> {
        self.advance(duration);
        // Still a suspension point, as a real wait is: other tasks get to run.
        Box::pin(tokio::task::yield_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_when_advanced_or_waited_on() {
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + time::Duration::seconds(90));
        let before = std::time::Instant::now();
        clock.sleep(Duration::from_secs(3600)).await;
        assert!(before.elapsed() < Duration::from_secs(1), "nothing really waits");
        assert_eq!(clock.now(), start + time::Duration::seconds(3690));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let before = OffsetDateTime::now_utc();
        let now = SystemClock.now();
        assert!(now >= before && now <= OffsetDateTime::now_utc());
    }
}
