//! Authorization-server metadata: OpenID Connect Discovery
//! (`/.well-known/openid-configuration`) and RFC 8414 (`/.well-known/oauth-authorization-server`),
//! fetched once per issuer and kept in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_net::HostPolicy;
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
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3): every authorization
    /// response must then carry `iss`.
    pub iss_parameter_supported: bool,
}

/// Discovery documents by issuer.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    documents: Mutex<HashMap<String, Metadata>>,
}

impl DiscoveryCache {
    /// The metadata of `issuer`, fetched on first use.
    pub async fn get(
        &self,
        net: &latchkey_net::Client,
        issuer: &str,
    ) -> Result<Metadata, EngineError> {
        if let Some(found) = self.documents.lock().unwrap_or_else(|e| e.into_inner()).get(issuer) {
            return Ok(found.clone());
        }
        let metadata = fetch(net, issuer).await?;
        self.documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_string(), metadata.clone());
        Ok(metadata)
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
            iss_parameter_supported: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        });
    }
    Err(failed(DiscoveryError::NoDocument { status: last }))
}
