//! Authorization-server metadata: OpenID Connect Discovery
//! (`/.well-known/openid-configuration`) and RFC 8414 (`/.well-known/oauth-authorization-server`),
//! fetched once per issuer however many callers ask at once, kept for an hour and then fetched
//! again, so a provider that moves an endpoint is followed without a restart.

use std::sync::Arc;
use std::time::Duration;

use latchkey_net::{HostPolicy, NetError};
use moka::future::Cache;
use url::Url;

use crate::{DiscoveryError, EngineError};

/// The endpoints Latchkey reads from a discovery document.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `authorization_endpoint`.
    pub authorization_endpoint: Option<Url>,
    /// `token_endpoint`.
    pub token_endpoint: Option<Url>,
    /// `device_authorization_endpoint` (RFC 8628 §4).
    pub device_authorization_endpoint: Option<Url>,
    /// `revocation_endpoint` (RFC 8414 §2, RFC 7009).
    pub revocation_endpoint: Option<Url>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3): every authorization
    /// response must then carry `iss`.
    pub iss_parameter_supported: bool,
}

/// How long a discovery document is used before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The most issuers whose documents are kept.
const CAPACITY: u64 = 1_000;

/// Discovery documents by issuer.
#[derive(Debug)]
pub struct DiscoveryCache {
    documents: Cache<String, Metadata>,
}

impl Default for DiscoveryCache {
    fn default() -> Self {
        Self::with_ttl(DISCOVERY_TTL)
    }
}

impl DiscoveryCache {
    /// A cache that keeps each document for `ttl` ([`DISCOVERY_TTL`] by default).
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { documents: Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build() }
    }

    /// The metadata of `issuer`: kept, or fetched now. Concurrent callers for one issuer share
    /// one fetch; a failed fetch is not kept, so the next caller tries again.
    pub async fn get(
        &self,
        net: &latchkey_net::Client,
        issuer: &str,
    ) -> Result<Metadata, EngineError> {
        // The caller whose fetch ran gets its own error; callers that waited on it get one
        // of the same side (the provider's or the configuration's) with the same message.
        let mut own = None;
        let fetched = self
            .documents
            .try_get_with_by_ref(issuer, async {
                fetch(net, issuer).await.map_err(|error| {
                    let shared = shared(&error);
                    own = Some(error);
                    shared
                })
            })
            .await;
        fetched.map_err(|shared| own.take().unwrap_or_else(|| unshare(&shared)))
    }
}

/// What callers waiting on a failed fetch learn of its error: the same variant, with the
/// network error's message (`NetError` is not `Clone`).
#[derive(Debug)]
enum Shared {
    Timeout,
    Net(String),
    Discovery { issuer: String, error: DiscoveryError },
    Internal(String),
}

fn shared(error: &EngineError) -> Shared {
    match error {
        EngineError::Net(NetError::Timeout) => Shared::Timeout,
        EngineError::Net(net) => Shared::Net(net.to_string()),
        EngineError::Discovery { issuer, error } => {
            Shared::Discovery { issuer: issuer.clone(), error: error.clone() }
        }
        other => Shared::Internal(other.to_string()),
    }
}

fn unshare(shared: &Arc<Shared>) -> EngineError {
    match &**shared {
        Shared::Timeout => EngineError::Net(NetError::Timeout),
        Shared::Net(message) => EngineError::Net(NetError::Transport(message.clone())),
        Shared::Discovery { issuer, error } => {
            EngineError::Discovery { issuer: issuer.clone(), error: error.clone() }
        }
        Shared::Internal(message) => EngineError::Internal(message.clone()),
    }
}

async fn fetch(net: &latchkey_net::Client, issuer: &str) -> Result<Metadata, EngineError> {
    let failed =
        |error: DiscoveryError| EngineError::Discovery { issuer: issuer.to_string(), error };
    let base =
        Url::parse(issuer).map_err(|e| failed(DiscoveryError::InvalidIssuer(e.to_string())))?;
    let policy = HostPolicy::for_url(&base)?;
    let trimmed = issuer.trim_end_matches('/');
    let mut last = None;
    for suffix in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let url = format!("{trimmed}{suffix}");
        let request = http::Request::get(&url)
            .header(http::header::ACCEPT, "application/json")
            .body(bytes::Bytes::new())
            .map_err(|e| EngineError::Internal(format!("discovery request: {e}")))?;
        let response = net.send(request, &policy).await?;
        if !response.status.is_success() {
            last = Some(response.status.as_u16());
            continue;
        }
        let doc: serde_json::Value =
            crate::auth_response::read_json(response, "discovery document").await?;
        if doc.get("issuer").and_then(|v| v.as_str()).map(|s| s.trim_end_matches('/'))
            != Some(trimmed)
        {
            return Err(failed(DiscoveryError::IssuerMismatch));
        }
        let url_of =
            |key: &str| doc.get(key).and_then(|v| v.as_str()).and_then(|s| Url::parse(s).ok());
        return Ok(Metadata {
            authorization_endpoint: url_of("authorization_endpoint"),
            token_endpoint: url_of("token_endpoint"),
            device_authorization_endpoint: url_of("device_authorization_endpoint"),
            revocation_endpoint: url_of("revocation_endpoint"),
            iss_parameter_supported: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        });
    }
    Err(failed(DiscoveryError::NoDocument { status: last }))
}
