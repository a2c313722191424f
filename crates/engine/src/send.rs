//! Sending one authenticated request: build it for the connection, place its credentials (API
//! key, token, Basic, session token), run the connector's `before_action` hook (which sees them
//! and has the last word on them, as in Cyclr), sign the final request (OAuth 1.0a, SigV4,
//! per-request JWT, Digest), send it through `net`, run `after_action` or `after_error`. Challenge-response schemes (HTTP Digest) are answered here: the server's
//! challenge is kept per connection so later requests answer it directly with a counted nonce,
//! and a 401 with a fresh (or `stale`) challenge is answered once.
//!
//! Every transmission to the API, a retry included, first takes a permit from the connector's
//! rate limit (see [`crate::rate_limit`]), and a 429 or 503 with `Retry-After` holds the key back.

use latchkey_core::auth::AuthContext;
use latchkey_core::auth::digest::{Challenge, respond};
use latchkey_core::auth::jwt;
use latchkey_core::connector::{ClientAuth, DigestAuth, JwtAuth, JwtSigning};
use latchkey_core::{AuthMethod, Connector, OutgoingRequest};
use latchkey_net::{HostPolicy, UpstreamResponse};
use latchkey_script::Signal;
use latchkey_store::ConnectionRecord;

use crate::outbound::{ApiRequest, Target};
use crate::rate_limit::{RateKey, retry_after};
use crate::{Engine, EngineError, telemetry};

/// The last Digest challenge per connection: at most [`DigestChallenges::CAPACITY`], each
/// dropped after [`DigestChallenges::IDLE`] unused (a server would call its nonce stale by then,
/// costing a round trip that answering afresh costs too).
#[derive(Debug)]
pub(crate) struct DigestChallenges(moka::sync::Cache<String, Challenge>);

impl Default for DigestChallenges {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_idle(Self::IDLE)
                .build(),
        )
    }
}

impl DigestChallenges {
    const CAPACITY: u64 = 10_000;
    const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

    fn take(&self, id: &str) -> Option<Challenge> {
        self.0.remove(id)
    }

    fn put(&self, id: &str, challenge: Challenge) {
        self.0.insert(id.to_string(), challenge);
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.invalidate(id);
    }

    pub(crate) fn forget_all(&self) {
        self.0.invalidate_all();
    }
}

/// What one send came to. Returned once per request and moved, never stored, so the response
/// is not boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sent {
    /// The API's answer (after the response hooks).
    Response(UpstreamResponse),
    /// A script's hook (the `&str`) asked for fresh credentials and a retry.
    Renew(Signal, &'static str),
}

impl Engine {
    /// Sends `request` once with the connection's credentials applied and the connector's
    /// request hooks run. `stored` tells whether the connection is in the store yet (scripts'
    /// storage is kept only for stored connections).
    pub(crate) async fn send_once(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
        request: ApiRequest,
        stored: bool,
    ) -> Result<Sent, EngineError> {
        let target = Target {
            connector,
            auth_method: &record.auth_method,
            credentials: &record.credentials,
            config: &record.config,
            now: self.clock.now().into(),
        };
        let (mut out, policy) = target.prepare(request)?;
        target.place_credentials(&mut out)?;
        let scope = match &connector.scripts {
            Some(_) => Some(target.hook_scope(stored.then_some(record.id.as_str()), &policy)?),
            None => None,
        };
        if let Some(scope) = &scope
            && let Some(signal) = self.before_action(connector, scope.clone(), &mut out).await?
        {
            return Ok(Sent::Renew(signal, "before_action"));
        }
        let response = self.send_authenticated(record, connector, &target, out, &policy).await?;
        match scope {
            Some(scope) => self.after_response(connector, scope, response).await,
            None => Ok(Sent::Response(response)),
        }
    }

    /// Signs `out` (its credentials are placed already) and sends it, answering the challenges
    /// and refusals the method itself handles (Digest, kept JWTs).
    async fn send_authenticated(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
        target: &Target<'_>,
        mut out: OutgoingRequest,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, EngineError> {
        match target.method()? {
            AuthMethod::Digest(method) => {
                self.send_digest(record, target, method, out, policy).await
            }
            AuthMethod::Jwt(method) if method.sign == JwtSigning::PerLifetime => {
                self.send_kept_jwt(record, target, method, out, policy).await
            }
            AuthMethod::OAuth2(method) if method.client_auth == ClientAuth::TlsClientAuth => {
                let integration = self.oauth_integration(connector, method, record).await?;
                let net = self.client_for(method, &integration)?;
                self.transmit(&net, record, connector, out, policy).await
            }
            _ => {
                target.sign(&mut out)?;
                self.send_prepared(record, connector, out, policy).await
            }
        }
    }

    async fn send_prepared(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
        out: OutgoingRequest,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, EngineError> {
        self.transmit(&self.net, record, connector, out, policy).await
    }

    /// Sends one request to the API under the connector's rate limit: waits for the key's turn
    /// (or fails with [`EngineError::RateLimited`] past `max_wait_ms`), and after a 429 or 503
    /// with `Retry-After` holds the key back for that long.
    async fn transmit(
        &self,
        net: &latchkey_net::Client,
        record: &ConnectionRecord,
        connector: &Connector,
        out: OutgoingRequest,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, EngineError> {
        let Some(limit) = &connector.rate_limit else {
            return send_counted(net, connector, out, policy).await;
        };
        let key = RateKey::of(connector, limit, &record.id, record.integration.as_deref());
        let queued = std::time::Instant::now();
        let permit = self.rate_limits.acquire(&key, limit).await;
        telemetry::rate_limit(&connector.id, permit.is_ok(), queued);
        permit.map_err(|retry_after| {
            tracing::info!(connector = %connector.id, connection = %record.id, ?retry_after, "rate limit: request refused");
            EngineError::RateLimited { connector: connector.id.clone(), retry_after }
        })?;
        let response = send_counted(net, connector, out, policy).await?;
        if let Some(wait) = retry_after(response.status, &response.headers) {
            tracing::info!(connector = %connector.id, connection = %record.id, status = response.status.as_u16(), ?wait, "the API asked to back off");
            self.rate_limits.back_off(&key, wait);
        }
        Ok(response)
    }

    async fn send_digest(
        &self,
        record: &ConnectionRecord,
        target: &Target<'_>,
        method: &DigestAuth,
        prepared: OutgoingRequest,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, EngineError> {
        let ctx = || AuthContext {
            credentials: target.credentials,
            config: target.config,
            now: target.now,
            nonce: "",
        };
        let known = self.digest.take(&record.id);
        let mut out = prepared.clone();
        let answered = known.is_some();
        if let Some(mut challenge) = known {
            respond(method, &mut challenge, &mut out, ctx(), None)?;
            self.digest.put(&record.id, challenge);
        }
        let response = self.send_prepared(record, target.connector, out, policy).await?;
        if response.status != http::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(header) = digest_challenge(&response.headers) else {
            return Ok(response);
        };
        let mut challenge = Challenge::parse(&header)?;
        // Sent without credentials, or with a nonce the server now calls stale (or forgot):
        // answer the new challenge, once.
        tracing::debug!(connection = %record.id, answered, stale = challenge.is_stale(), "answering a Digest challenge");
        drop(response);
        let mut out = prepared;
        respond(method, &mut challenge, &mut out, ctx(), None)?;
        self.digest.put(&record.id, challenge);
        self.send_prepared(record, target.connector, out, policy).await
    }
}

impl Engine {
    /// Sends with the connection's kept JWT (`sign: per_lifetime`), signing one when none is
    /// kept or it is due. A 401 to a reused token is answered once with a freshly signed one.
    async fn send_kept_jwt(
        &self,
        record: &ConnectionRecord,
        target: &Target<'_>,
        method: &JwtAuth,
        prepared: OutgoingRequest,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, EngineError> {
        let kept = self.signed_tokens.get(
            &record.id,
            record.version,
            &record.auth_method,
            self.clock.now(),
        );
        let reused = kept.is_some();
        let token = match kept {
            Some(token) => token,
            None => self.sign_kept_jwt(record, target, method)?,
        };
        let mut out = prepared.clone();
        jwt::place(method, &token, &mut out, target.context(""))?;
        let response = self.send_prepared(record, target.connector, out, policy).await?;
        self.signed_tokens.forget_if_refused(&record.id, response.status);
        if !reused || response.status != http::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!(connection = %record.id, "a reused JWT was refused; signing a new one");
        drop(response);
        let token = self.sign_kept_jwt(record, target, method)?;
        let mut out = prepared;
        jwt::place(method, &token, &mut out, target.context(""))?;
        let response = self.send_prepared(record, target.connector, out, policy).await?;
        self.signed_tokens.forget_if_refused(&record.id, response.status);
        Ok(response)
    }

    fn sign_kept_jwt(
        &self,
        record: &ConnectionRecord,
        target: &Target<'_>,
        method: &JwtAuth,
    ) -> Result<latchkey_core::Secret, EngineError> {
        let token = jwt::sign(method, target.context(""))?;
        self.signed_tokens.put(
            &record.id,
            record.version,
            &record.auth_method,
            token.clone(),
            std::time::Duration::from_secs(method.lifetime),
            target.now.into(),
        );
        Ok(token)
    }
}

/// [`send_with`], recorded in the upstream metrics.
async fn send_counted(
    net: &latchkey_net::Client,
    connector: &Connector,
    out: OutgoingRequest,
    policy: &HostPolicy,
) -> Result<UpstreamResponse, EngineError> {
    let started = std::time::Instant::now();
    let sent = send_with(net, out, policy).await;
    telemetry::upstream(&connector.id, sent.as_ref().ok().map(|r| r.status), started);
    sent
}

async fn send_with(
    net: &latchkey_net::Client,
    out: OutgoingRequest,
    policy: &HostPolicy,
) -> Result<UpstreamResponse, EngineError> {
    let http_request = out
        .into_http()
        .map_err(|e| EngineError::Internal(format!("cannot build the request: {e}")))?;
    Ok(net.send(http_request, policy).await?)
}

/// The first `WWW-Authenticate` value offering Digest.
fn digest_challenge(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().get(..6).is_some_and(|p| p.eq_ignore_ascii_case("digest")))
        .map(str::to_string)
}
