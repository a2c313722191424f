//! Self-signed JWTs kept for their lifetime (`sign: per_lifetime`), per connection, so a
//! private-key signature is paid once per lifetime instead of on every request. A token is tied
//! to the connection's version and auth method: changed credentials are never answered with a
//! token signed from the old ones.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use latchkey_core::Secret;
use moka::Expiry;
use moka::sync::Cache;

/// The most tokens kept (one per connection).
const CAPACITY: u64 = 10_000;
/// The most a token is renewed before it expires.
const MAX_MARGIN: Duration = Duration::from_secs(60);
/// The longest a token is kept, whatever its lifetime.
const MAX_KEEP: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone)]
struct Kept {
    version: i64,
    method: String,
    token: Secret,
    /// From signing until it is due for renewal (the cache's own eviction, in real time).
    keep_for: Duration,
    /// When it is due for renewal by the engine's clock, which tests may move.
    renew_at: OffsetDateTime,
}

/// Each token expires from the cache when it is due for renewal.
struct UntilRenewal;

impl Expiry<String, Kept> for UntilRenewal {
    fn expire_after_create(&self, _: &String, kept: &Kept, _: Instant) -> Option<Duration> {
        Some(kept.keep_for)
    }
}

/// The reusable JWT of each connection.
#[derive(Debug)]
pub(crate) struct SignedTokens(Cache<String, Kept>);

impl Default for SignedTokens {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(CAPACITY).expire_after(UntilRenewal).build())
    }
}

impl SignedTokens {
    /// The kept token of `connection` at `version` for `method`, unless it is due for renewal
    /// at `now` (the engine clock's time).
    pub fn get(
        &self,
        connection: &str,
        version: i64,
        method: &str,
        now: OffsetDateTime,
    ) -> Option<Secret> {
        self.0
            .get(connection)
            .filter(|k| k.version == version && k.method == method && now < k.renew_at)
            .map(|k| k.token)
    }

    /// Keeps `token`, signed at `now` with a lifetime of `lifetime`.
    pub fn put(
        &self,
        connection: &str,
        version: i64,
        method: &str,
        token: Secret,
        lifetime: Duration,
        now: OffsetDateTime,
    ) {
        let keep_for = (lifetime - renewal_margin(lifetime)).min(MAX_KEEP);
        if keep_for.is_zero() {
            self.forget(connection);
            return;
        }
        // `keep_for` is at most a year, which the clock can always add.
        let renew_at = now.checked_add(keep_for.try_into().unwrap_or(time::Duration::days(365)));
        let renew_at = renew_at.unwrap_or(now);
        self.0.insert(
            connection.to_string(),
            Kept { version, method: method.to_string(), token, keep_for, renew_at },
        );
    }

    /// Drops the kept token of `connection` when the API answered `status` 401 to it.
    pub fn forget_if_refused(&self, connection: &str, status: http::StatusCode) {
        if status == http::StatusCode::UNAUTHORIZED {
            self.forget(connection);
        }
    }

    /// Drops the kept token of `connection`.
    pub fn forget(&self, connection: &str) {
        self.0.invalidate(connection);
    }

    /// Drops every kept token.
    pub(crate) fn forget_all(&self) {
        self.0.invalidate_all();
    }
}

/// How long before expiry a token is signed again: a quarter of its lifetime, at most a minute.
fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(MAX_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_quarter_up_to_a_minute() {
        assert_eq!(renewal_margin(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(renewal_margin(Duration::from_secs(3600)), MAX_MARGIN);
    }

    #[test]
    fn a_token_is_tied_to_version_and_method() {
        let kept = SignedTokens::default();
        let now = OffsetDateTime::now_utc();
        kept.put("c1", 3, "jwt", Secret::new("t"), Duration::from_secs(300), now);
        assert!(kept.get("c1", 3, "jwt", now).is_some());
        assert!(kept.get("c1", 4, "jwt", now).is_none(), "new credentials need a new token");
        assert!(kept.get("c1", 3, "other", now).is_none());
        kept.forget("c1");
        assert!(kept.get("c1", 3, "jwt", now).is_none());
    }

    #[test]
    fn a_token_leaves_the_cache_when_due_for_renewal() {
        let kept = SignedTokens::default();
        let now = OffsetDateTime::now_utc();
        // Lifetime 400 ms: renewed 100 ms before, so the cache keeps it for 300 ms of real time.
        kept.put("c1", 1, "jwt", Secret::new("t"), Duration::from_millis(400), now);
        assert!(kept.get("c1", 1, "jwt", now).is_some());
        std::thread::sleep(Duration::from_millis(350));
        assert!(kept.get("c1", 1, "jwt", now).is_none());
    }

    #[test]
    fn a_token_due_for_renewal_is_not_returned() {
        let kept = SignedTokens::default();
        let now = OffsetDateTime::now_utc();
        // Lifetime 0: the margin is 0 and the token is due at once.
        kept.put("c1", 1, "jwt", Secret::new("t"), Duration::ZERO, now);
        assert!(kept.get("c1", 1, "jwt", now).is_none());
        // Lifetime 400 s: kept until a minute before it expires, by the given time alone.
        kept.put("c1", 1, "jwt", Secret::new("t"), Duration::from_secs(400), now);
        assert!(kept.get("c1", 1, "jwt", now + time::Duration::seconds(339)).is_some());
        assert!(kept.get("c1", 1, "jwt", now + time::Duration::seconds(340)).is_none());
    }
}
