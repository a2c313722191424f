//! Outbound rate limits shared by a fleet: with `--redis-url`, every instance takes its permits
//! from one GCRA in Redis, so a connector's `rate_limit` holds across the fleet rather than per
//! instance. Each request reserves the next slot atomically (a Lua script: read the key's
//! theoretical arrival time, refuse past `max_wait`, else advance it) and is told how long to
//! wait for it, so one round trip decides, and requests leave in reservation order.
//!
//! Instances announce themselves in Redis every few seconds, so each knows the fleet's size.
//! When Redis cannot be reached (or answers slower than [`REDIS_TIMEOUT`]) an instance falls
//! back to its share of the limit (the limit divided by the last fleet size seen), logs the
//! change once, and says so in [`FLEET_LIMIT_SHARED`]; it returns to Redis when Redis answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use latchkey_core::connector::RateLimit;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::rate_limit::RateKey;

/// 1 while this instance takes its permits from Redis, 0 while it falls back to its share.
pub const FLEET_LIMIT_SHARED: &str = "latchkey_rate_limit_shared";
/// The fleet size this instance last saw in Redis.
pub const FLEET_SIZE: &str = "latchkey_fleet_instances";

/// The longest a permit waits on Redis before the instance falls back to its share.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// How often an instance announces itself; it counts as gone after three misses.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);

/// Reserves the next slot of a GCRA: `KEYS[1]` holds the theoretical arrival time (µs, Redis's
/// clock); `ARGV` = emission interval (µs), burst tolerance (µs), longest wait (µs). Returns
/// `{1, wait_µs}` (reserved: leave after the wait) or `{0, wait_µs}` (refused: the wait the
/// caller would have had).
const RESERVE: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, wait} end
local next_tat = tat + interval
redis.call('SET', KEYS[1], tostring(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {1, wait}
";

/// Counts this instance in and returns the fleet's size: `KEYS[1]` is a sorted set of
/// instances by last announcement (ms); `ARGV` = this instance's id, how long an announcement
/// counts (ms).
const ANNOUNCE: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
";

/// What Redis said about one permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reservation {
    /// Leave after this wait.
    Granted(Duration),
    /// Past `max_wait`: come back after this.
    Refused(Duration),
}

/// The fleet's shared limits (see the module doc). One per engine.
pub(crate) struct FleetLimits {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    instance: String,
    fleet_size: AtomicU32,
    shared: AtomicBool,
    reserve: redis::Script,
}

impl FleetLimits {
    /// Limits shared through the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS).
    /// Connects in the background: until Redis answers, the instance uses its share.
    pub(crate) fn new(url: &str) -> Result<Arc<Self>, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid Redis URL ({:?})", e.kind()))?;
        let limits = Arc::new(Self {
            client,
            connection: OnceCell::new(),
            prefix: "latchkey:".to_owned(),
            instance: crate::random_token(12),
            fleet_size: AtomicU32::new(1),
            // Counted as shared only once Redis has answered.
            shared: AtomicBool::new(true),
            reserve: redis::Script::new(RESERVE),
        });
        limits.set_shared(false);
        Ok(limits)
    }

    /// Connects, then announces this instance every few seconds, until `self` is dropped.
    pub(crate) async fn run(limits: std::sync::Weak<Self>) {
        let announce = redis::Script::new(ANNOUNCE);
        loop {
            let Some(this) = limits.upgrade() else { return };
            match this.connection().await {
                Ok(mut connection) => {
                    let mut invocation = announce.prepare_invoke();
                    invocation
                        .key(format!("{}instances", this.prefix))
                        .arg(&this.instance)
                        .arg(micros(ANNOUNCE_EVERY * 3) / 1000);
                    let counted = invocation.invoke_async::<u32>(&mut connection);
                    match tokio::time::timeout(REDIS_TIMEOUT * 10, counted).await {
                        Ok(Ok(size)) => {
                            this.fleet_size.store(size.max(1), Ordering::Relaxed);
                            metrics::gauge!(FLEET_SIZE).set(f64::from(size.max(1)));
                        }
                        Ok(Err(error)) => this.unreachable(&error.to_string()),
                        Err(_) => this.unreachable("no answer"),
                    }
                }
                Err(error) => this.unreachable(&error),
            }
            drop(this);
            tokio::time::sleep(ANNOUNCE_EVERY).await;
        }
    }

    /// The connection, made on first use (the manager reconnects by itself after that).
    async fn connection(&self) -> Result<ConnectionManager, String> {
        self.connection
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT * 10)
                    .set_response_timeout(REDIS_TIMEOUT * 10)
                    .set_number_of_retries(1);
                self.client.get_connection_manager_with_config(config)
            })
            .await
            .cloned()
            .map_err(|e| e.to_string())
    }

    /// Reserves `key`'s next permit under `limit` in Redis. `None` when Redis cannot decide
    /// (unreachable, too slow): the caller then uses [`FleetLimits::share`] locally.
    pub(crate) async fn reserve(
        &self,
        key: &RateKey,
        limit: &RateLimit,
        max_wait: Duration,
    ) -> Option<Reservation> {
        let (requests, period, burst) = limit.rate()?;
        let interval = (period / requests).max(Duration::from_micros(1));
        let tolerance = interval * burst.saturating_sub(1);
        let connection = match tokio::time::timeout(REDIS_TIMEOUT, self.connection()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                self.unreachable(&error);
                return None;
            }
            Err(_) => {
                self.unreachable("no connection in time");
                return None;
            }
        };
        let mut connection = connection;
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(format!("{}rate:{}", self.prefix, key.redis_name()))
            .arg(micros(interval))
            .arg(micros(tolerance))
            .arg(micros(max_wait));
        let call = invocation.invoke_async::<(u8, u64)>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok((granted, wait))) => {
                self.set_shared(true);
                let wait = Duration::from_micros(wait);
                Some(if granted == 1 {
                    Reservation::Granted(wait)
                } else {
                    Reservation::Refused(wait)
                })
            }
            Ok(Err(error)) => {
                self.unreachable(&error.to_string());
                None
            }
            Err(_) => {
                self.unreachable("no answer in time");
                None
            }
        }
    }

    /// How many instances share a limit while Redis cannot be reached: the last fleet size
    /// seen (each instance then takes `1/size` of the rate and of the burst).
    pub(crate) fn fleet_size(&self) -> u32 {
        self.fleet_size.load(Ordering::Relaxed).max(1)
    }

    fn unreachable(&self, why: &str) {
        if self.shared.load(Ordering::Relaxed) {
            tracing::warn!(reason = %why, fleet_size = self.fleet_size.load(Ordering::Relaxed), "Redis cannot be reached: rate limits fall back to this instance's share");
        }
        self.set_shared(false);
    }

    fn set_shared(&self, shared: bool) {
        let was = self.shared.swap(shared, Ordering::Relaxed);
        if shared && !was {
            tracing::info!("rate limits are shared through Redis");
        }
        metrics::gauge!(FLEET_LIMIT_SHARED).set(if shared { 1.0 } else { 0.0 });
    }
}

impl std::fmt::Debug for FleetLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its URL may hold a password.
        f.debug_struct("FleetLimits")
            .field("instance", &self.instance)
            .field("fleet_size", &self.fleet_size)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
