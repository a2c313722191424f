//! The authorization server of a remote MCP server, found as the MCP authorization
//! specification (2025-11-25) orders it: the server's 401 and its `WWW-Authenticate` challenge
//! (`resource_metadata`, `scope`), the protected resource metadata (RFC 9728), then the
//! authorization server's metadata (RFC 8414 or OpenID Connect Discovery, in the specification's
//! order). Every fetch goes through `net` (its private-address block, timeouts) under
//! [`AUTH_RESPONSE_LIMIT`](crate::AUTH_RESPONSE_LIMIT), to the server's own host unless the
//! caller allows another.
//!
//! What is refused, before anything is used: a metadata URL on another host, a document too
//! large or not the expected JSON, a resource document for another resource (RFC 9728 §3.3), an
//! authorization server document for another issuer (RFC 8414 §3.3), and an authorization server
//! that does not offer PKCE with S256 (which the MCP specification makes a MUST).

use latchkey_core::oauth2::{
    BearerChallenge, authorization_server_metadata_urls, protected_resource_metadata_urls,
    same_identifier,
};
use latchkey_net::HostPolicy;
use serde::Deserialize;
use url::Url;

use crate::{DiscoveryError, EngineError};

/// How Latchkey authorises to one MCP server: what discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpAuthorization {
    /// The resource: the MCP server's URL, sent as RFC 8707 `resource` on the authorization and
    /// the token request.
    pub resource: Url,
    /// The authorization server's issuer; an authorization response's `iss` must equal it
    /// (RFC 9207).
    pub issuer: Url,
    /// `authorization_endpoint`.
    pub authorization_endpoint: Url,
    /// `token_endpoint`.
    pub token_endpoint: Url,
    /// `registration_endpoint` (RFC 7591), for dynamic registration.
    pub registration_endpoint: Option<Url>,
    /// `client_id_metadata_document_supported`: a Client ID Metadata Document URL may serve as
    /// the client id.
    pub client_id_metadata_document_supported: bool,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3).
    pub iss_parameter_supported: bool,
    /// The client authenticates at the token endpoint with HTTP Basic: the server's
    /// `token_endpoint_auth_methods_supported` names `client_secret_basic` and not
    /// `client_secret_post` (otherwise the secret goes in the body).
    pub client_secret_basic: bool,
    /// The scopes to ask for: the challenge's `scope`, else the resource's `scopes_supported`,
    /// else none (the parameter is left out).
    pub scopes: Vec<String>,
}

/// The protected resource metadata fields read (RFC 9728 §2).
#[derive(Debug, Deserialize)]
struct ResourceDocument {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

/// The authorization server metadata fields read (RFC 8414 §2).
#[derive(Debug, Deserialize)]
struct ServerDocument {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

/// Finds how to authorise to the MCP server at `server`. `challenge` is the `WWW-Authenticate`
/// value of its 401, when the caller has one; without it the server is asked (an unauthenticated
/// `initialize`). Metadata is fetched only from `server`'s host, and from the hosts
/// `metadata_hosts` allows; the authorization server's documents only from its issuer's host.
pub async fn discover(
    net: &latchkey_net::Client,
    server: &Url,
    challenge: Option<&str>,
    metadata_hosts: Option<&HostPolicy>,
) -> Result<McpAuthorization, EngineError> {
    let failed =
        |error: DiscoveryError| EngineError::Discovery { issuer: server.to_string(), error };
    let own_host = HostPolicy::for_url(server)?;
    let challenge = match challenge {
        Some(value) => BearerChallenge::parse(value).unwrap_or_default(),
        None => ask_for_challenge(net, server, &own_host).await?,
    };
    let candidates = match &challenge.resource_metadata {
        Some(url) => {
            let url = Url::parse(url).map_err(|e| {
                failed(DiscoveryError::Malformed(format!("resource_metadata: {e}")))
            })?;
            let allowed = own_host.allows(&url) || metadata_hosts.is_some_and(|p| p.allows(&url));
            if !allowed {
                return Err(failed(DiscoveryError::ForeignMetadata(
                    url.host_str().unwrap_or_default().to_owned(),
                )));
            }
            vec![url]
        }
        None => protected_resource_metadata_urls(server),
    };
    let mut last = None;
    let mut resource = None;
    for url in candidates {
        let policy = HostPolicy::for_url(&url)?;
        match fetch_json::<ResourceDocument>(net, &url, &policy, "protected resource metadata")
            .await?
        {
            Fetched::Document(document) => {
                resource = Some(document);
                break;
            }
            Fetched::Status(status) => last = Some(status),
        }
    }
    let resource = resource.ok_or_else(|| failed(DiscoveryError::NoDocument { status: last }))?;
    if !same_identifier(&resource.resource, server.as_str()) {
        return Err(failed(DiscoveryError::ResourceMismatch));
    }
    let issuer = resource.authorization_servers.first().ok_or_else(|| {
        failed(DiscoveryError::Malformed("authorization_servers lists no server".into()))
    })?;
    let issuer = Url::parse(issuer)
        .map_err(|e| failed(DiscoveryError::Malformed(format!("authorization server: {e}"))))?;
    let as_failed =
        |error: DiscoveryError| EngineError::Discovery { issuer: issuer.to_string(), error };
    let issuer_policy = HostPolicy::for_url(&issuer)?;
    let mut last = None;
    let mut document = None;
    for url in authorization_server_metadata_urls(&issuer) {
        match fetch_json::<ServerDocument>(
            net,
            &url,
            &issuer_policy,
            "authorization server metadata",
        )
        .await?
        {
            Fetched::Document(found) => {
                document = Some(found);
                break;
            }
            Fetched::Status(status) => last = Some(status),
        }
    }
    let document =
        document.ok_or_else(|| as_failed(DiscoveryError::NoDocument { status: last }))?;
    if document.issuer != issuer.as_str()
        && document.issuer != issuer.as_str().trim_end_matches('/')
    {
        return Err(as_failed(DiscoveryError::IssuerMismatch));
    }
    if !document.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return Err(as_failed(DiscoveryError::PkceUnsupported));
    }
    let endpoint = |name: &str, value: Option<String>| -> Result<Url, EngineError> {
        let value =
            value.ok_or_else(|| as_failed(DiscoveryError::Malformed(format!("no {name}"))))?;
        Url::parse(&value).map_err(|e| as_failed(DiscoveryError::Malformed(format!("{name}: {e}"))))
    };
    let scopes =
        if challenge.scope.is_empty() { resource.scopes_supported } else { challenge.scope };
    let supports = |m: &str| document.token_endpoint_auth_methods_supported.iter().any(|s| s == m);
    let client_secret_basic = supports("client_secret_basic") && !supports("client_secret_post");
    Ok(McpAuthorization {
        client_secret_basic,
        resource: server.clone(),
        authorization_endpoint: endpoint(
            "authorization_endpoint",
            document.authorization_endpoint,
        )?,
        token_endpoint: endpoint("token_endpoint", document.token_endpoint)?,
        registration_endpoint: document
            .registration_endpoint
            .map(|v| endpoint("registration_endpoint", Some(v)))
            .transpose()?,
        client_id_metadata_document_supported: document.client_id_metadata_document_supported,
        iss_parameter_supported: document.authorization_response_iss_parameter_supported,
        issuer,
        scopes,
    })
}

/// A metadata document, or the status of a location that served none.
enum Fetched<T> {
    Document(T),
    Status(u16),
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    net: &latchkey_net::Client,
    url: &Url,
    policy: &HostPolicy,
    what: &'static str,
) -> Result<Fetched<T>, EngineError> {
    let request = http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(bytes::Bytes::new())
        .map_err(|e| EngineError::Internal(format!("{what} request: {e}")))?;
    let response = net.send(request, policy).await?;
    if !response.status.is_success() {
        return Ok(Fetched::Status(response.status.as_u16()));
    }
    let bytes = crate::auth_response::read(response, what).await?;
    serde_json::from_slice(&bytes).map(Fetched::Document).map_err(|e| EngineError::Discovery {
        issuer: url.to_string(),
        error: DiscoveryError::Malformed(format!(
            "the {what} is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    })
}

/// Sends an unauthenticated `initialize` to `server` and reads the challenge of its 401.
async fn ask_for_challenge(
    net: &latchkey_net::Client,
    server: &Url,
    policy: &HostPolicy,
) -> Result<BearerChallenge, EngineError> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "latchkey", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    let request = http::Request::post(server.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(bytes::Bytes::from(body.to_string()))
        .map_err(|e| EngineError::Internal(format!("initialize request: {e}")))?;
    let response = net.send(request, policy).await?;
    if response.status != http::StatusCode::UNAUTHORIZED {
        return Err(EngineError::Discovery {
            issuer: server.to_string(),
            error: DiscoveryError::NotProtected { status: response.status.as_u16() },
        });
    }
    Ok(response
        .headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(BearerChallenge::parse)
        .unwrap_or_default())
}
