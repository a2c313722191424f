//! Reading a connection's health from what a check saw: a passed credential test makes it
//! healthy; a failure makes it unhealthy with a reason (401 `invalid_credentials`, 403
//! `missing_permission`, 429 `rate_limited`, 5xx and timeouts `provider_unavailable`, an
//! unreachable API `network`). A failure that may pass by itself (5xx, a timeout, the network, a
//! 429) is counted but moves the state only once [`UNHEALTHY_AFTER`] checks in a row have
//! failed, so one bad minute at the provider does not page anyone. A connector without a test
//! leaves the health as it was.

use latchkey_net::NetError;
use latchkey_store::{Health, HealthError, HealthReason};
use time::OffsetDateTime;

use crate::{EngineError, TestOutcome};

/// Checks failing in a row, for a reason that may pass by itself, before a connection is
/// unhealthy.
pub const UNHEALTHY_AFTER: u32 = 3;

/// The health `previous` becomes after a credential test that ended in `outcome` at `now`;
/// `None` when nothing was checked (the connector has no test) or the failure says nothing of
/// the connection (see [`reason_of`]).
pub(crate) fn after_test(
    previous: &Health,
    outcome: &Result<TestOutcome, EngineError>,
    now: OffsetDateTime,
) -> Option<Health> {
    match outcome {
        Ok(outcome) if outcome.ran => Some(previous.clone().passed(now)),
        Ok(_) => None,
        Err(error) => {
            let reason = reason_of(error)?;
            let last = HealthError {
                code: error.code().to_owned(),
                message: error.public_message(),
                at: now,
            };
            Some(if reason.is_transient() {
                previous.clone().failed_transiently(reason, last, UNHEALTHY_AFTER)
            } else {
                previous.clone().failed(reason, last)
            })
        }
    }
}

/// Why a check that failed with `error` makes a connection unhealthy; `None` for an error
/// that says nothing of the credentials (a connector set up wrong, Latchkey's own, a request
/// Latchkey's own rate limit kept back).
pub(crate) fn reason_of(error: &EngineError) -> Option<HealthReason> {
    Some(match error {
        EngineError::TestFailed { status: 401 } => HealthReason::InvalidCredentials,
        EngineError::TestFailed { status: 403 } => HealthReason::MissingPermission,
        EngineError::TestFailed { status: 429 } => HealthReason::RateLimited,
        EngineError::TestFailed { status } if *status >= 500 => HealthReason::ProviderUnavailable,
        // Another 4xx: the API refused what the credentials asked for.
        EngineError::TestFailed { .. } => HealthReason::InvalidCredentials,
        EngineError::Net(NetError::Timeout) => HealthReason::ProviderUnavailable,
        EngineError::Net(NetError::Connect(_) | NetError::Transport(_)) => HealthReason::Network,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_store::HealthState;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_test_moves_the_health_and_keeps_the_last_error() {
        let unknown = Health::default();
        assert_eq!(unknown.state, HealthState::Unknown);
        let untested = Ok(TestOutcome { ran: false, status: None, label: None });
        assert_eq!(after_test(&unknown, &untested, at(0)), None, "no test: nothing known");

        let passed = Ok(TestOutcome { ran: true, status: Some(200), label: None });
        let healthy = after_test(&unknown, &passed, at(1)).unwrap();
        assert_eq!((healthy.state, healthy.last_healthy_at), (HealthState::Healthy, Some(at(1))));

        for (status, reason) in
            [(401, HealthReason::InvalidCredentials), (403, HealthReason::MissingPermission)]
        {
            let failed = Err(EngineError::TestFailed { status });
            let sick = after_test(&healthy, &failed, at(2)).unwrap();
            assert_eq!((sick.state, sick.reason), (HealthState::Unhealthy, Some(reason)));
            assert_eq!(sick.last_healthy_at, Some(at(1)), "kept");
            assert_eq!(sick.last_checked_at, Some(at(2)));
            let error = sick.last_error.clone().unwrap();
            assert_eq!((error.code.as_str(), error.at), ("credential_test_failed", at(2)));
            let recovered = after_test(&sick, &passed, at(3)).unwrap();
            assert_eq!((recovered.state, recovered.reason), (HealthState::Healthy, None));
            assert_eq!(recovered.last_error, sick.last_error, "the last error stays on record");
        }
    }

    /// 429, 5xx, timeouts and network errors count, and make the connection unhealthy only on
    /// the third in a row; a pass in between starts the count again.
    #[test]
    fn transient_failures_move_the_state_on_the_third_in_a_row() {
        let passed = Ok(TestOutcome { ran: true, status: Some(200), label: None });
        let healthy = after_test(&Health::default(), &passed, at(0)).unwrap();
        for (error, reason) in [
            (EngineError::TestFailed { status: 429 }, HealthReason::RateLimited),
            (EngineError::TestFailed { status: 503 }, HealthReason::ProviderUnavailable),
            (EngineError::Net(NetError::Timeout), HealthReason::ProviderUnavailable),
        ] {
            let failed = Err(error);
            let once = after_test(&healthy, &failed, at(1)).unwrap();
            assert_eq!((once.state, once.consecutive_failures), (HealthState::Healthy, 1));
            assert_eq!(once.last_checked_at, Some(at(1)));
            assert_eq!(once.last_error.as_ref().unwrap().at, at(1), "the failure is on record");
            let twice = after_test(&once, &failed, at(2)).unwrap();
            assert_eq!((twice.state, twice.consecutive_failures), (HealthState::Healthy, 2));
            let reset = after_test(&twice, &passed, at(3)).unwrap();
            assert_eq!(reset.consecutive_failures, 0);
            let third = after_test(&twice, &failed, at(3)).unwrap();
            assert_eq!((third.state, third.reason), (HealthState::Unhealthy, Some(reason)));
        }
        let own_limit = Err(EngineError::RateLimited {
            connector: "x".into(),
            retry_after: std::time::Duration::from_secs(1),
        });
        assert_eq!(after_test(&healthy, &own_limit, at(1)), None, "nothing was sent");
    }
}
