//! Latchkey as the OAuth client of a remote MCP server, after [`discover`](super::mcp_discovery)
//! found its authorization server: which client registration to use (pre-registered
//! credentials, a Client ID Metadata Document served under `--public-url`, or RFC 7591 dynamic
//! registration, in the MCP specification's order of preference), and the connector OAuth2 method
//! that the engine's existing flow runs — authorization code with PKCE S256, RFC 8707 `resource`
//! on the authorization, token and refresh requests — so that the connect flow, the callback
//! checks and the single-flight refresh are the same code as for any OAuth2 connector; and the
//! scopes of a step-up after a 403 `insufficient_scope`.

use std::collections::BTreeMap;

use latchkey_core::ConnectorId;
use latchkey_core::Secret;
use latchkey_core::connector::OAuth2Auth;
use latchkey_net::HostPolicy;
use serde::Deserialize;
use url::Url;

use super::mcp_discovery::McpAuthorization;
use crate::{DiscoveryError, EngineError};

/// How Latchkey is known to the MCP server's authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Credentials the operator registered beforehand (an integration's client id and secret).
    PreRegistered {
        /// The client id.
        client_id: String,
    },
    /// The URL of Latchkey's Client ID Metadata Document, which is the client id.
    MetadataDocument {
        /// `{public_url}/oauth/client-metadata.json`.
        client_id: Url,
    },
    /// RFC 7591 dynamic registration at this endpoint.
    Dynamic {
        /// `registration_endpoint`.
        endpoint: Url,
    },
}

/// The registration to use, in the MCP specification's order: pre-registered credentials when
/// the operator has them; else a Client ID Metadata Document when the server supports it and
/// the public URL is `https` (the document must be fetchable by the server); else dynamic
/// registration when the server offers it. `None`: the operator must register a client.
pub fn choose_registration(
    found: &McpAuthorization,
    pre_registered: Option<&str>,
    public_url: &Url,
) -> Option<Registration> {
    if let Some(client_id) = pre_registered {
        return Some(Registration::PreRegistered { client_id: client_id.to_owned() });
    }
    if found.client_id_metadata_document_supported && public_url.scheme() == "https" {
        let mut client_id = public_url.clone();
        client_id.set_path(&format!(
            "{}/oauth/client-metadata.json",
            public_url.path().trim_end_matches('/')
        ));
        return Some(Registration::MetadataDocument { client_id });
    }
    found.registration_endpoint.clone().map(|endpoint| Registration::Dynamic { endpoint })
}

/// The Client ID Metadata Document Latchkey serves at `client_id` (its own URL), for
/// `redirect_uri`: a public client (PKCE, no secret) using the authorization code grant.
pub fn client_metadata_document(client_id: &Url, redirect_uri: &str) -> serde_json::Value {
    serde_json::json!({
        "client_id": client_id.as_str(),
        "client_name": "Latchkey",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

/// What dynamic registration gave.
#[derive(Debug)]
pub struct RegisteredClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`, for a confidential client.
    pub client_secret: Option<Secret>,
}

#[derive(Deserialize)]
struct RegistrationResponse {
    client_id: String,
    client_secret: Option<Secret>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
}

/// Registers Latchkey at `endpoint` (RFC 7591 §3.1) for `redirect_uri`, authenticating at the
/// token endpoint with HTTP Basic when `basic` (else the secret in the body). A response that
/// changes the redirect URI, or is not a registration response, is refused: the flow would
/// otherwise send the code somewhere Latchkey did not ask for.
pub async fn register(
    net: &latchkey_net::Client,
    endpoint: &Url,
    redirect_uri: &str,
    basic: bool,
) -> Result<RegisteredClient, EngineError> {
    let failed =
        |error: DiscoveryError| EngineError::Discovery { issuer: endpoint.to_string(), error };
    let body = serde_json::json!({
        "client_name": "Latchkey",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method":
            if basic { "client_secret_basic" } else { "client_secret_post" },
    });
    let request = http::Request::post(endpoint.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(bytes::Bytes::from(body.to_string()))
        .map_err(|e| EngineError::Internal(format!("registration request: {e}")))?;
    let response = net.send(request, &HostPolicy::for_url(endpoint)?).await?;
    if !response.status.is_success() {
        return Err(failed(DiscoveryError::Malformed(format!(
            "the registration endpoint answered {}",
            response.status.as_u16()
        ))));
    }
    let bytes = crate::auth_response::read(response, "registration endpoint").await?;
    let answer: RegistrationResponse = serde_json::from_slice(&bytes).map_err(|e| {
        failed(DiscoveryError::Malformed(format!(
            "the registration response is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )))
    })?;
    if let Some(uris) = &answer.redirect_uris
        && uris.iter().map(String::as_str).ne([redirect_uri])
    {
        return Err(failed(DiscoveryError::Malformed(
            "the registration response changed the redirect URI".into(),
        )));
    }
    if answer.client_id.is_empty() {
        return Err(failed(DiscoveryError::Malformed("the registration gave no client_id".into())));
    }
    Ok(RegisteredClient { client_id: answer.client_id, client_secret: answer.client_secret })
}

/// The connector OAuth2 method that authorises to the MCP server `found` describes: its
/// endpoints and issuer (the callback's `iss` must equal it, and must be there when the server's
/// metadata says it sends it, RFC 9207), PKCE S256, the scopes,
/// `resource` (RFC 8707) on the authorization, token and refresh requests, the client secret
/// (if any) in the body, or with HTTP Basic when the server supports only that.
pub fn oauth2_method(found: &McpAuthorization) -> Result<OAuth2Auth, EngineError> {
    serde_json::from_value(method_json(found))
        .map_err(|e| EngineError::Internal(format!("the MCP server's OAuth2 method: {e}")))
}

fn method_json(found: &McpAuthorization) -> serde_json::Value {
    let resource = BTreeMap::from([("resource".to_owned(), found.resource.to_string())]);
    serde_json::json!({
        "issuer": found.issuer.as_str(),
        "authorize_url": found.authorization_endpoint.as_str(),
        "token_url": found.token_endpoint.as_str(),
        "scopes": found.scopes,
        "pkce": true,
        "client_auth": if found.client_secret_basic { "basic" } else { "body" },
        "authorize_params": resource,
        "token_params": resource,
        "refresh_params": resource,
        "callback": { "require_iss": found.iss_parameter_supported },
    })
}

/// The custom connector (its YAML source; JSON is YAML) for the MCP server `found` describes:
/// `base_url` the server's URL, so that proxied requests go there with the token, and the one
/// [`oauth2_method`].
pub fn connector_source(id: &ConnectorId, found: &McpAuthorization) -> String {
    let mut method = method_json(found);
    method["type"] = "oauth2".into();
    serde_json::json!({
        "id": id.as_str(),
        "name": format!("MCP server at {}", found.resource.host_str().unwrap_or_default()),
        "description": format!("The remote MCP server {}.", found.resource),
        "base_url": found.resource.as_str(),
        "auth": [method],
    })
    .to_string()
}

/// The MCP server a connector targets, when it is an MCP server connector: one made by
/// [`connector_source`], or a catalog entry written the same way (the `*-mcp` entries of
/// `connectors/`). That is, a fixed `base_url` (the server's URL) and a first auth method that is
/// OAuth2's authorization code grant with PKCE S256 and RFC 8707 `resource` equal to that URL on
/// the authorization, token and refresh requests (MCP authorization, "Resource Parameter
/// Implementation"). `None` for any other connector.
pub fn mcp_server_of(connector: &latchkey_core::Connector) -> Option<Url> {
    use latchkey_core::connector::{AuthMethod, Grant};
    let Some(AuthMethod::OAuth2(method)) = connector.auth.first() else { return None };
    if method.grant != Grant::AuthorizationCode || !method.pkce {
        return None;
    }
    let server = Url::parse(&connector.base_url).ok()?;
    let bound = |params: &BTreeMap<String, String>| {
        params
            .get("resource")
            .is_some_and(|r| latchkey_core::oauth2::same_identifier(r, server.as_str()))
    };
    (matches!(server.scheme(), "https" | "http")
        && !latchkey_core::template::is_template(&connector.base_url)
        && bound(&method.authorize_params)
        && bound(&method.token_params)
        && bound(&method.refresh_params))
    .then_some(server)
}

/// Step-up authorization (MCP authorization, "Scope Challenge Handling"): when the MCP server
/// answers 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`, the
/// scopes to ask for on re-authorization — the union of those held and those asked, in that
/// order. `None` when the answer is no scope challenge, or asks for nothing new (asking again
/// would loop).
pub fn step_up_scopes(held: &[String], www_authenticate: &str) -> Option<Vec<String>> {
    let challenge = latchkey_core::oauth2::BearerChallenge::parse(www_authenticate)?;
    if challenge.error.as_deref() != Some("insufficient_scope") {
        return None;
    }
    let mut scopes = held.to_vec();
    for scope in challenge.scope {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    (scopes.len() > held.len()).then_some(scopes)
}

#[cfg(test)]
mod tests {
    use latchkey_core::oauth2::{
        AuthorizeRequest, Client, TokenGrant, authorize_url, token_request,
    };

    use super::*;

    fn found(cimd: bool, registration: bool) -> McpAuthorization {
        let url = |s: &str| Url::parse(s).unwrap();
        McpAuthorization {
            resource: url("https://mcp.example.com/mcp"),
            issuer: url("https://auth.example.com"),
            authorization_endpoint: url("https://auth.example.com/authorize"),
            token_endpoint: url("https://auth.example.com/token"),
            registration_endpoint: registration.then(|| url("https://auth.example.com/register")),
            client_id_metadata_document_supported: cimd,
            iss_parameter_supported: true,
            client_secret_basic: false,
            scopes: vec!["files:read".into()],
        }
    }

    #[test]
    fn registration_prefers_pre_registered_then_the_metadata_document_then_dcr() {
        let public = Url::parse("https://latchkey.example.com/base/").unwrap();
        assert_eq!(
            choose_registration(&found(true, true), Some("abc"), &public),
            Some(Registration::PreRegistered { client_id: "abc".into() })
        );
        assert_eq!(
            choose_registration(&found(true, true), None, &public),
            Some(Registration::MetadataDocument {
                client_id: Url::parse(
                    "https://latchkey.example.com/base/oauth/client-metadata.json"
                )
                .unwrap()
            })
        );
        let local = Url::parse("http://127.0.0.1:7400").unwrap();
        assert!(matches!(
            choose_registration(&found(true, true), None, &local),
            Some(Registration::Dynamic { .. })
        ));
        assert_eq!(choose_registration(&found(false, false), None, &public), None);
    }

    #[test]
    fn the_connector_targets_the_server_with_the_discovered_issuer() {
        let id = ConnectorId::new("files-mcp").unwrap();
        let source = connector_source(&id, &found(false, true));
        let connector = latchkey_core::connector::parse_connector(&source, "test").unwrap();
        assert_eq!(connector.base_url, "https://mcp.example.com/mcp");
        let [latchkey_core::connector::AuthMethod::OAuth2(method)] = connector.auth.as_slice()
        else {
            panic!("one OAuth2 method: {source}")
        };
        assert_eq!(method.issuer.as_deref(), Some("https://auth.example.com/"));
        assert!(method.pkce);
        assert_eq!(method.refresh_params["resource"], "https://mcp.example.com/mcp");
        assert!(method.callback.require_iss, "the server's metadata says it sends iss");
        assert_eq!(
            mcp_server_of(&connector).map(String::from).as_deref(),
            Some("https://mcp.example.com/mcp"),
            "recognised as an MCP server connector"
        );
        let mut without = found(false, true);
        without.iss_parameter_supported = false;
        let source = connector_source(&id, &without);
        let connector = latchkey_core::connector::parse_connector(&source, "test").unwrap();
        let [latchkey_core::connector::AuthMethod::OAuth2(method)] = connector.auth.as_slice()
        else {
            panic!("one OAuth2 method: {source}")
        };
        assert!(!method.callback.require_iss);
    }

    #[test]
    fn a_connector_is_an_mcp_server_only_when_bound_to_its_url_with_pkce() {
        let yaml = |pkce: bool, refresh: &str| {
            format!(
                "id: x-mcp\nname: X\nbase_url: https://mcp.x.example/mcp\nauth:\n  - type: oauth2\n    authorize_url: https://mcp.x.example/authorize\n    token_url: https://mcp.x.example/token\n    pkce: {pkce}\n    authorize_params: {{resource: 'https://mcp.x.example/mcp'}}\n    token_params: {{resource: 'https://mcp.x.example/mcp'}}\n    refresh_params: {{resource: '{refresh}'}}\n"
            )
        };
        let parse = |source: String| {
            latchkey_core::connector::parse_connector(&source, "x-mcp.yaml").unwrap()
        };
        let server = mcp_server_of(&parse(yaml(true, "https://mcp.x.example/mcp")));
        assert_eq!(server.map(String::from).as_deref(), Some("https://mcp.x.example/mcp"));
        assert_eq!(
            mcp_server_of(&parse(yaml(false, "https://mcp.x.example/mcp"))),
            None,
            "no PKCE"
        );
        assert_eq!(
            mcp_server_of(&parse(yaml(true, "https://other.example/mcp"))),
            None,
            "refresh tokens bound to another resource"
        );
        let plain = "id: y\nname: Y\nbase_url: https://api.y.example\nauth:\n  - type: oauth2\n    authorize_url: https://y.example/a\n    token_url: https://y.example/t\n";
        assert_eq!(mcp_server_of(&parse(plain.into())), None, "an ordinary OAuth2 API");
    }

    #[test]
    fn step_up_asks_for_the_union_once() {
        let held = vec!["files:read".to_owned()];
        let header = r#"Bearer error="insufficient_scope", scope="files:read files:write""#;
        assert_eq!(step_up_scopes(&held, header).unwrap(), ["files:read", "files:write"]);
        let all = vec!["files:read".to_owned(), "files:write".to_owned()];
        assert_eq!(step_up_scopes(&all, header), None, "nothing new: no loop");
        assert_eq!(step_up_scopes(&held, r#"Bearer error="invalid_token""#), None);
    }

    #[test]
    fn resource_goes_on_the_authorization_and_the_token_request() {
        let found = found(false, true);
        let method = oauth2_method(&found).unwrap();
        let url = authorize_url(
            &method,
            AuthorizeRequest {
                endpoint: &found.authorization_endpoint,
                client_id: "c",
                redirect_uri: "https://latchkey.example.com/oauth/callback",
                scopes: &method.scopes,
                state: "s",
                code_challenge: Some("x"),
            },
        );
        let pairs: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["resource"], "https://mcp.example.com/mcp");
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["scope"], "files:read");
        let code = Secret::new("the-code");
        let verifier = Secret::new("v".repeat(43));
        let request = token_request(
            &method,
            &found.token_endpoint,
            Client { id: "c", secret: None, assertion: None },
            TokenGrant::AuthorizationCode {
                code: &code,
                redirect_uri: "https://latchkey.example.com/oauth/callback",
                code_verifier: Some(&verifier),
            },
        )
        .unwrap();
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        assert!(body.contains("resource=https%3A%2F%2Fmcp.example.com%2Fmcp"), "{body}");
        assert!(body.contains("code_verifier="), "{body}");
    }
}
