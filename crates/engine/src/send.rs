//! Sending one authenticated request: build it for the connection, apply the strategy, send it
//! through `net`. Challenge-response schemes (HTTP Digest) are answered here: the server's
//! challenge is kept per connection so later requests answer it directly with a counted nonce,
//! and a 401 with a fresh (or `stale`) challenge is answered once.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_core::auth::AuthContext;
use latchkey_core::auth::digest::{Challenge, respond};
use latchkey_core::connector::DigestAuth;
use latchkey_core::{AuthMethod, Connector};
use latchkey_net::UpstreamResponse;
use latchkey_store::ConnectionRecord;

use crate::outbound::{ApiRequest, Target};
use crate::{Engine, EngineError};

/// The last Digest challenge per connection.
#[derive(Debug, Default)]
pub(crate) struct DigestChallenges(Mutex<HashMap<String, Challenge>>);

impl DigestChallenges {
    fn take(&self, id: &str) -> Option<Challenge> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
    }

    fn put(&self, id: &str, challenge: Challenge) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string(), challenge);
    }
}

impl Engine {
    /// Sends `request` once with the connection's credentials applied.
    pub(crate) async fn send_once(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        let target = Target {
            connector,
            auth_method: &record.auth_method,
            credentials: &record.credentials,
            config: &record.config,
        };
        if let Some(AuthMethod::Digest(method)) = connector.auth_method(Some(&record.auth_method)) {
            return self.send_digest(record, &target, method, request).await;
        }
        let (out, policy) = target.build(request)?;
        let http_request = out
            .into_http()
            .map_err(|e| EngineError::InvalidInput(format!("cannot build the request: {e}")))?;
        Ok(self.net.send(http_request, &policy).await?)
    }

    async fn send_digest(
        &self,
        record: &ConnectionRecord,
        target: &Target<'_>,
        method: &DigestAuth,
        request: ApiRequest,
    ) -> Result<UpstreamResponse, EngineError> {
        let ctx = || AuthContext {
            credentials: &record.credentials,
            config: &record.config,
            now: std::time::SystemTime::now(),
            nonce: "",
        };
        let known = self.digest.take(&record.id);
        let (mut out, policy) = target.build(request.clone())?;
        let answered = known.is_some();
        if let Some(mut challenge) = known {
            respond(method, &mut challenge, &mut out, ctx(), None)?;
            self.digest.put(&record.id, challenge);
        }
        let http_request = out
            .into_http()
            .map_err(|e| EngineError::InvalidInput(format!("cannot build the request: {e}")))?;
        let response = self.net.send(http_request, &policy).await?;
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
        let (mut out, policy) = target.build(request)?;
        respond(method, &mut challenge, &mut out, ctx(), None)?;
        self.digest.put(&record.id, challenge);
        let http_request = out
            .into_http()
            .map_err(|e| EngineError::InvalidInput(format!("cannot build the request: {e}")))?;
        Ok(self.net.send(http_request, &policy).await?)
    }
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
