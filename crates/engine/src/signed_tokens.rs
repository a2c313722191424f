//! Self-signed JWTs kept for their lifetime (`sign: per_lifetime`), per connection, so a
//! private-key signature is paid once per lifetime instead of on every request. A token is tied
//! to the connection's version and auth method: changed credentials are never answered with a
//! token signed from the old ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use latchkey_core::Secret;

/// Past this many kept tokens, expired ones are dropped on the next insert.
const PRUNE_ABOVE: usize = 4096;
/// The most a token is renewed before it expires.
const MAX_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Kept {
    version: i64,
    method: String,
    token: Secret,
    renew_at: OffsetDateTime,
}

/// The reusable JWT of each connection.
#[derive(Debug, Default)]
pub(crate) struct SignedTokens(Mutex<HashMap<String, Kept>>);

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
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(connection)
            .filter(|k| k.version == version && k.method == method && now < k.renew_at)
            .map(|k| k.token.clone())
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
        let keep_for = time::Duration::try_from(lifetime - renewal_margin(lifetime))
            .unwrap_or(time::Duration::MAX);
        // A lifetime too long for the clock to add is kept for a year.
        let renew_at = now.checked_add(keep_for).unwrap_or(now + time::Duration::days(365));
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_ABOVE {
            map.retain(|_, k| k.renew_at > now);
        }
        map.insert(
            connection.to_string(),
            Kept { version, method: method.to_string(), token, renew_at },
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
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(connection);
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
