//! The engine's Prometheus metrics, recorded through the `metrics` facade (a no-op unless the
//! embedding program installs a recorder; `latchkey serve` exports them at `/metrics`). Labels
//! are connector ids and fixed words only, never connection ids, so their number stays bounded.
//! Every name is listed in `docs/api.md`.

use std::time::Instant;

/// Credential renewals (OAuth2 refreshes and session logins) by connector and outcome.
pub const RENEWALS: &str = "latchkey_credential_renewals_total";
/// How long renewals take, by connector.
pub const RENEWAL_SECONDS: &str = "latchkey_credential_renewal_seconds";
/// Requests sent to APIs, by connector and status class (`2xx` … `5xx`, or `error` when no
/// response came back).
pub const UPSTREAM_REQUESTS: &str = "latchkey_upstream_requests_total";
/// One exchange with an API, from sending to the response head, by connector (time queued
/// for a rate limit excluded).
pub const UPSTREAM_SECONDS: &str = "latchkey_upstream_request_seconds";

/// Requests that went through a connector's `rate_limit`, by connector and outcome (`sent`, or
/// `refused` when the wait would have passed `max_wait_ms`).
pub const RATE_LIMITED: &str = "latchkey_rate_limit_requests_total";
/// How long requests waited for their turn under a `rate_limit`, by connector.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "latchkey_rate_limit_wait_seconds";

/// Health checks (on demand and scheduled), by connector and what they saw: `ok`, a health
/// reason (`invalid_credentials`, `provider_unavailable`, …), or `error` when the check could
/// not tell.
pub const HEALTH_CHECKS: &str = "latchkey_health_checks_total";

/// How a renewal ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RenewalOutcome {
    /// New credentials stored.
    Ok,
    /// Refused for good: the connection needs the user again.
    NeedsReauth,
    /// Failed for now (the provider was unreachable, say); the old credentials are kept.
    Failed,
}

pub(crate) fn renewal(connector: &str, outcome: RenewalOutcome, started: Instant) {
    let outcome = match outcome {
        RenewalOutcome::Ok => "ok",
        RenewalOutcome::NeedsReauth => "needs_reauth",
        RenewalOutcome::Failed => "failed",
    };
    metrics::counter!(RENEWALS, "connector" => connector.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(RENEWAL_SECONDS, "connector" => connector.to_string())
        .record(started.elapsed().as_secs_f64());
}

/// Records one upstream exchange: `status` is `None` when no response came back.
pub(crate) fn upstream(connector: &str, status: Option<http::StatusCode>, started: Instant) {
    let class = match status.map(|s| s.as_u16() / 100) {
        Some(1) => "1xx",
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "error",
    };
    metrics::counter!(UPSTREAM_REQUESTS, "connector" => connector.to_string(), "status" => class)
        .increment(1);
    metrics::histogram!(UPSTREAM_SECONDS, "connector" => connector.to_string())
        .record(started.elapsed().as_secs_f64());
}

/// Records one request's turn under a rate limit: `sent` unless it was refused.
pub(crate) fn rate_limit(connector: &str, sent: bool, queued: Instant) {
    let outcome = if sent { "sent" } else { "refused" };
    metrics::counter!(RATE_LIMITED, "connector" => connector.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(RATE_LIMIT_WAIT_SECONDS, "connector" => connector.to_string())
        .record(queued.elapsed().as_secs_f64());
}

/// Records one health check that saw `outcome` (a fixed word).
pub(crate) fn health_check(connector: &str, outcome: &'static str) {
    metrics::counter!(HEALTH_CHECKS, "connector" => connector.to_string(), "outcome" => outcome)
        .increment(1);
}
