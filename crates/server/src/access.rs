//! Who is calling and what they may do. Every `/v1` request (and `/metrics`) passes
//! [`authenticate`]: the key in `Authorization: Bearer <key>` — `LATCHKEY_API_KEY`, the
//! bootstrap administrator, or an API key made with `POST /v1/api-keys` — becomes the request's
//! [`Principal`], acting in one environment. Then [`require_scope`] checks the one scope the
//! matched route needs ([`ROUTE_SCOPES`]; a route missing from it needs `admin`).
//!
//! Failed authentications are counted per address; past [`FREE_FAILURES`] in a row, each
//! further failure from that address is answered after a delay that doubles up to
//! [`MAX_DELAY`] — a key guesser slows down, and `latchkey_auth_failures_total` shows it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use latchkey_core::Secret;
use latchkey_engine::{EngineError, EnvironmentId};
use latchkey_store::Scope;
use moka::sync::Cache;

use crate::{ApiError, AppState, Refusal};

/// The request header a key that spans environments names the one it acts in with.
pub const ENVIRONMENT_HEADER: &str = "x-latchkey-environment";

/// Failed authentications from one address that get an immediate answer.
pub const FREE_FAILURES: u32 = 5;
/// The longest a failed authentication is held before its 401.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long an address's failures are remembered after its last one.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Failed authentications, by reason: `missing` (no key) or `invalid_key` (unknown, revoked or
/// expired, which the caller is not told apart).
pub const AUTH_FAILURES: &str = "latchkey_auth_failures_total";
/// Failed authentications answered late because their address kept failing.
pub const AUTH_DELAYED: &str = "latchkey_auth_delayed_total";

/// The caller of a `/v1` request, as its API key says: put on the request as an extension by
/// [`authenticate`], before any handler runs. Handlers take it as an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`bootstrap` for `LATCHKEY_API_KEY`); never the key.
    pub key_id: String,
    /// The key's name, as its creator gave it.
    pub key_name: String,
    /// The environment the request acts in: the key's own, or for a key that spans
    /// environments the `X-Latchkey-Environment` header's (absent: `default`).
    pub environment: EnvironmentId,
    /// What the key may do.
    pub scopes: BTreeSet<Scope>,
    /// The address the request came from, when the server knows it.
    pub address: Option<IpAddr>,
}

impl Principal {
    /// The bootstrap administrator (`LATCHKEY_API_KEY`): every scope, in `environment`.
    pub fn bootstrap(environment: EnvironmentId, address: Option<IpAddr>) -> Self {
        Self {
            key_id: "bootstrap".to_owned(),
            key_name: "LATCHKEY_API_KEY".to_owned(),
            environment,
            scopes: Scope::ALL.into_iter().collect(),
            address,
        }
    }

    /// Whether the key holds `scope` (`admin` holds every scope).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a handler that needs a caller ran unauthenticated"))
    }
}

/// The scope each route needs, by method and route template (as matched, `/v1` included).
/// A route not listed needs `admin`, so a route added without a decision is closed, not open.
pub const ROUTE_SCOPES: &[(&str, &str, Scope)] = &[
    ("GET", "/metrics", Scope::ConnectionsRead),
    ("GET", "/v1/connectors", Scope::ConnectionsRead),
    ("GET", "/v1/connectors/{id}", Scope::ConnectionsRead),
    ("PUT", "/v1/connectors/{id}", Scope::IntegrationsWrite),
    ("DELETE", "/v1/connectors/{id}", Scope::IntegrationsWrite),
    ("GET", "/v1/integrations", Scope::ConnectionsRead),
    ("POST", "/v1/integrations", Scope::IntegrationsWrite),
    ("GET", "/v1/integrations/{id}", Scope::ConnectionsRead),
    ("DELETE", "/v1/integrations/{id}", Scope::IntegrationsWrite),
    ("GET", "/v1/integrations/{id}/branding", Scope::ConnectionsRead),
    ("PUT", "/v1/integrations/{id}/branding", Scope::IntegrationsWrite),
    ("POST", "/v1/mcp-integrations", Scope::IntegrationsWrite),
    ("GET", "/v1/connections", Scope::ConnectionsRead),
    ("POST", "/v1/connections", Scope::ConnectionsWrite),
    ("GET", "/v1/connections/{id}", Scope::ConnectionsRead),
    ("PATCH", "/v1/connections/{id}", Scope::ConnectionsWrite),
    ("DELETE", "/v1/connections/{id}", Scope::ConnectionsWrite),
    ("POST", "/v1/connections/{id}/test", Scope::ConnectionsWrite),
    ("POST", "/v1/connections/{id}/check", Scope::ConnectionsWrite),
    ("POST", "/v1/connections/{id}/refresh", Scope::ConnectionsWrite),
    ("GET", "/v1/connections/{id}/token", Scope::CredentialsRead),
    ("POST", "/v1/connect-sessions", Scope::ConnectSessionsWrite),
    ("GET", "/v1/connect-sessions/{id}", Scope::ConnectSessionsWrite),
    ("*", "/v1/proxy/{connection}", Scope::Proxy),
    ("*", "/v1/proxy/{connection}/{*path}", Scope::Proxy),
    ("GET", "/v1/environments", Scope::Admin),
    ("POST", "/v1/environments", Scope::Admin),
    ("GET", "/v1/environments/{id}", Scope::Admin),
    ("PATCH", "/v1/environments/{id}", Scope::Admin),
    ("GET", "/v1/environments/{id}/branding", Scope::Admin),
    ("PUT", "/v1/environments/{id}/branding", Scope::Admin),
    ("POST", "/v1/environments/{id}/webhook-secret/rotate", Scope::Admin),
    ("GET", "/v1/operations", Scope::ConnectionsRead),
    ("POST", "/v1/agent-tokens", Scope::Proxy),
    ("GET", "/v1/agent-tokens", Scope::Proxy),
    ("DELETE", "/v1/agent-tokens/{id}", Scope::Proxy),
    ("GET", "/v1/webhook-deliveries", Scope::Admin),
    ("GET", "/v1/webhook-deliveries/{id}", Scope::Admin),
    ("POST", "/v1/webhook-deliveries/{id}/retry", Scope::Admin),
    ("GET", "/v1/api-keys", Scope::Admin),
    ("POST", "/v1/api-keys", Scope::Admin),
    ("DELETE", "/v1/api-keys/{id}", Scope::Admin),
    ("GET", "/v1/audit", Scope::Admin),
    ("*", "/mcp", Scope::Proxy),
];

/// The scope `method` on `route` (a matched template) needs: from [`ROUTE_SCOPES`], else
/// `admin`.
pub fn scope_for(method: &str, route: &str) -> Scope {
    ROUTE_SCOPES
        .iter()
        .find(|(m, r, _)| (*m == method || *m == "*") && *r == route)
        .map_or(Scope::Admin, |(_, _, scope)| *scope)
}

/// Failed authentications per address, for the back-off.
#[derive(Debug, Clone)]
pub struct AuthThrottle(Cache<IpAddr, u32>);

impl Default for AuthThrottle {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(100_000).time_to_idle(FAILURE_MEMORY).build())
    }
}

impl AuthThrottle {
    /// Counts a failure from `address`; the delay its answer gets (zero for the first
    /// [`FREE_FAILURES`]).
    pub fn failed(&self, address: Option<IpAddr>) -> Duration {
        let Some(address) = address else { return Duration::ZERO };
        let failures = self.0.get(&address).unwrap_or(0).saturating_add(1);
        self.0.insert(address, failures);
        delay_after(failures)
    }

    /// Forgets `address`'s failures (it authenticated).
    pub fn succeeded(&self, address: Option<IpAddr>) {
        if let Some(address) = address {
            self.0.invalidate(&address);
        }
    }
}

/// 100 ms after the first failure past the free ones, doubling up to [`MAX_DELAY`].
fn delay_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None | Some(0) => Duration::ZERO,
        Some(over) => Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow(over.saturating_sub(1).min(16)))
            .min(MAX_DELAY),
    }
}

/// Authenticates the request's key and puts its [`Principal`] on the request; a request
/// without a valid key gets 401 (late, if its address keeps failing).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let Some(presented) = bearer(&request) else {
        metrics::counter!(AUTH_FAILURES, "reason" => "missing").increment(1);
        return ApiError::unauthorized().into_response();
    };
    if presented.expose().starts_with(latchkey_engine::AGENT_TOKEN_PREFIX) {
        let (method, uri_path) = (request.method().to_string(), request.uri().path().to_owned());
        return match agent_principal(&state, &method, &uri_path, &presented, address).await {
            Ok(principal) => {
                state.auth_throttle.succeeded(address);
                request.extensions_mut().insert(principal);
                next.run(request).await
            }
            Err(refusal) => refusal.into_response(),
        };
    }
    match key_principal(&state, request.headers(), &presented, address).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The key or token in `Authorization: Bearer …`, if the request has one.
pub(crate) fn bearer(request: &Request) -> Option<Secret> {
    request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| Secret::new(v.trim()))
}

/// Counts a failed authentication from `address` and answers it, late if the address keeps
/// failing: 401 `unauthorized`.
pub(crate) async fn invalid_key(state: &AppState, address: Option<IpAddr>) -> ApiError {
    metrics::counter!(AUTH_FAILURES, "reason" => "invalid_key").increment(1);
    let delay = state.auth_throttle.failed(address);
    if !delay.is_zero() {
        metrics::counter!(AUTH_DELAYED).increment(1);
        tokio::time::sleep(delay).await;
    }
    ApiError::unauthorized()
}

/// The principal of a request (with `headers`) made with an API key (`presented`, not an agent
/// token), in the environment it acts in; 401 for an unknown, revoked or expired key (late, if `address` keeps
/// failing). Shared by `/v1` and `/mcp`.
pub(crate) async fn key_principal(
    state: &AppState,
    headers: &http::HeaderMap,
    presented: &Secret,
    address: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    let asked = requested_environment(headers)?;
    // The key, and the environment it is bound to (`None`: it spans every environment).
    let found = if *presented == *state.api_key {
        Some((Principal::bootstrap(EnvironmentId::default_environment(), address), None))
    } else {
        match state.engine.access().authenticate(presented).await? {
            Some(key) => {
                // A stored environment is a checked id; one that is not acts nowhere.
                let bound = key
                    .environment
                    .map(EnvironmentId::new)
                    .transpose()
                    .map_err(|_| ApiError::unauthorized())?;
                let principal = Principal {
                    key_id: key.id,
                    key_name: key.name,
                    environment: bound.clone().unwrap_or_else(EnvironmentId::default_environment),
                    scopes: key.scopes,
                    address,
                };
                Some((principal, bound))
            }
            None => None,
        }
    };
    let Some((mut principal, bound)) = found else {
        return Err(invalid_key(state, address).await);
    };
    state.auth_throttle.succeeded(address);
    match (asked, bound) {
        (Some(asked), None) => principal.environment = asked,
        // Another environment does not exist for a key bound to one.
        (Some(asked), Some(bound)) if asked != bound => {
            return Err(EngineError::EnvironmentNotFound(asked.into_string()).into());
        }
        _ => {}
    }
    state.engine.environment(&principal.environment).await?;
    Ok(principal)
}

/// The principal of a request made with an agent token: it may only use the proxy of its one
/// connection, within its grants (methods, path globs), before it expires and within its budget.
/// The request counts against the budget once it is let through.
async fn agent_principal(
    state: &AppState,
    method: &str,
    uri_path: &str,
    presented: &Secret,
    address: Option<IpAddr>,
) -> Result<Principal, ApiError> {
    use latchkey_engine::AgentRefusal;
    let Some(rest) = uri_path.strip_prefix("/v1").unwrap_or(uri_path).strip_prefix("/proxy/")
    else {
        return Err(ApiError::refused(
            Refusal::OutsideGrant,
            "an agent token works only on /v1/proxy/{connection}/…",
        ));
    };
    let (connection, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let path = format!("/{tail}");
    let authorized = state
        .engine
        .agent_tokens()
        .authorize(presented, connection, method, &path)
        .await
        .map_err(ApiError::from)?;
    match authorized {
        Ok(token) => {
            let environment =
                EnvironmentId::new(&token.environment).map_err(|_| ApiError::unauthorized())?;
            Ok(Principal {
                key_id: token.id,
                key_name: format!("agent token: {}", token.name),
                environment,
                scopes: [Scope::Proxy].into_iter().collect(),
                address,
            })
        }
        Err(AgentRefusal::Invalid) => Err(invalid_key(state, address).await),
        Err(refusal @ AgentRefusal::Expired(_)) => {
            Err(ApiError::refused(Refusal::AgentTokenExpired, refusal.to_string()))
        }
        Err(refusal @ AgentRefusal::OutsideGrant(_)) => {
            Err(ApiError::refused(Refusal::OutsideGrant, refusal.to_string()))
        }
        Err(refusal @ AgentRefusal::Spent(_)) => {
            Err(ApiError::refused(Refusal::AgentTokenSpent, refusal.to_string()))
        }
    }
}

/// The environment `X-Latchkey-Environment` names, if the request has the header.
fn requested_environment(headers: &http::HeaderMap) -> Result<Option<EnvironmentId>, ApiError> {
    let Some(value) = headers.get(ENVIRONMENT_HEADER) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default();
    EnvironmentId::new(text).map(Some).map_err(|e| {
        ApiError::invalid_request(format!("{ENVIRONMENT_HEADER}: {e}"))
            .with_field(ENVIRONMENT_HEADER)
    })
}

/// Refuses with 403 `insufficient_scope`, naming the scope, a request whose key lacks the one
/// its route needs. A route layer: it sees the matched route's template.
pub async fn require_scope(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("", |p| p.as_str());
    let needed = scope_for(request.method().as_str(), route);
    match request.extensions().get::<Principal>() {
        Some(principal) if principal.may(needed) => next.run(request).await,
        Some(principal) => {
            lacks_scope(principal, needed, request.method().as_str(), route).into_response()
        }
        None => ApiError::unauthorized().into_response(),
    }
}

/// 403 `insufficient_scope`: `principal`'s key lacks `needed`, which `method` on `route` needs.
pub(crate) fn lacks_scope(
    principal: &Principal,
    needed: Scope,
    method: &str,
    route: &str,
) -> ApiError {
    ApiError::refused(
        Refusal::InsufficientScope,
        format!(
            "API key `{}` lacks the scope `{needed}` that {method} {route} needs",
            principal.key_id
        ),
    )
    .with_field("scope")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_starts_after_the_free_failures_and_doubles_to_the_cap() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(FREE_FAILURES), Duration::ZERO);
        assert_eq!(delay_after(FREE_FAILURES + 1), Duration::from_millis(100));
        assert_eq!(delay_after(FREE_FAILURES + 2), Duration::from_millis(200));
        assert_eq!(delay_after(FREE_FAILURES + 4), Duration::from_millis(800));
        assert_eq!(delay_after(FREE_FAILURES + 30), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn an_unlisted_route_needs_admin() {
        assert_eq!(scope_for("GET", "/v1/connections"), Scope::ConnectionsRead);
        assert_eq!(scope_for("PATCH", "/v1/proxy/{connection}/{*path}"), Scope::Proxy);
        assert_eq!(scope_for("POST", "/v1/something-new"), Scope::Admin);
    }
}
