//! Finding a remote MCP server's authorization server, as the MCP authorization specification
//! orders it — and refusing hostile answers: oversized or malformed metadata, a resource metadata
//! URL on another host or a private address, a document for another resource or issuer, an
//! authorization server without PKCE S256.

use latchkey_engine::oauth2::mcp_discovery::discover;
use latchkey_engine::{ClientConfig, EngineError};
use latchkey_net::{Client, HostPolicy};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn net() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

async fn serve(server: &MockServer, at: &str, status: u16, body: Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(server)
        .await;
}

/// An MCP server at `/mcp` whose 401 names its metadata, and an authorization server at
/// `/tenant` (a path: the RFC 8414 path-inserted location is tried first).
async fn world(server: &MockServer, auth: &MockServer) -> Url {
    let mcp = Url::parse(&format!("{}/mcp", server.uri())).unwrap();
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", server.uri());
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(r#"Bearer resource_metadata="{metadata}", scope="files:read""#).as_str(),
        ))
        .mount(server)
        .await;
    serve(
        server,
        "/.well-known/oauth-protected-resource/mcp",
        200,
        json!({ "resource": mcp.as_str(), "authorization_servers": [format!("{}/tenant", auth.uri())],
                "scopes_supported": ["files:read", "files:write"] }),
    )
    .await;
    mcp
}

fn as_document(auth: &MockServer) -> Value {
    json!({
        "issuer": format!("{}/tenant", auth.uri()),
        "authorization_endpoint": format!("{}/tenant/authorize", auth.uri()),
        "token_endpoint": format!("{}/tenant/token", auth.uri()),
        "registration_endpoint": format!("{}/tenant/register", auth.uri()),
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    })
}

fn code(error: &EngineError) -> &'static str {
    error.class().code()
}

#[tokio::test]
async fn the_401_leads_to_the_resource_and_then_the_authorization_server() {
    let (server, auth) = (MockServer::start().await, MockServer::start().await);
    let mcp = world(&server, &auth).await;
    // RFC 8414 with path insertion is not there; OpenID Connect with path insertion is.
    serve(&auth, "/.well-known/openid-configuration/tenant", 200, as_document(&auth)).await;
    let found = discover(&net(), &mcp, None, None).await.unwrap();
    assert_eq!(found.resource, mcp);
    assert_eq!(found.issuer.as_str(), format!("{}/tenant", auth.uri()));
    assert_eq!(found.token_endpoint.as_str(), format!("{}/tenant/token", auth.uri()));
    assert!(found.registration_endpoint.is_some());
    assert!(found.client_id_metadata_document_supported && found.iss_parameter_supported);
    assert_eq!(found.scopes, ["files:read"], "the challenge's scope first");
    let asked: Vec<String> =
        auth.received_requests().await.unwrap().iter().map(|r| r.url.path().to_owned()).collect();
    assert_eq!(
        asked,
        [
            "/.well-known/oauth-authorization-server/tenant",
            "/.well-known/openid-configuration/tenant"
        ]
    );
}

#[tokio::test]
async fn without_resource_metadata_in_the_challenge_the_well_known_locations_are_tried() {
    let (server, auth) = (MockServer::start().await, MockServer::start().await);
    let mcp = Url::parse(&format!("{}/mcp", server.uri())).unwrap();
    // Only the root location serves the document.
    serve(
        &server,
        "/.well-known/oauth-protected-resource",
        200,
        json!({ "resource": mcp.as_str(), "authorization_servers": [format!("{}/tenant", auth.uri())],
                "scopes_supported": ["a", "b"] }),
    )
    .await;
    serve(&auth, "/.well-known/oauth-authorization-server/tenant", 200, as_document(&auth)).await;
    let found = discover(&net(), &mcp, Some("Bearer"), None).await.unwrap();
    assert_eq!(found.scopes, ["a", "b"], "scopes_supported when the challenge names none");
}

#[tokio::test]
async fn hostile_metadata_is_refused() {
    let (server, auth) = (MockServer::start().await, MockServer::start().await);
    let mcp = Url::parse(&format!("{}/mcp", server.uri())).unwrap();
    let challenge = |at: &str| format!(r#"Bearer resource_metadata="{}{at}""#, server.uri());

    // Oversized: refused before it is parsed.
    Mock::given(method("GET"))
        .and(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_string(" ".repeat(2 << 20)))
        .mount(&server)
        .await;
    let error = discover(&net(), &mcp, Some(&challenge("/big")), None).await.unwrap_err();
    assert_eq!(code(&error), "upstream_response_too_large", "{error}");

    // Malformed: not JSON, then JSON without `resource`.
    Mock::given(method("GET"))
        .and(path("/html"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    serve(&server, "/no-resource", 200, json!({ "authorization_servers": [] })).await;
    for at in ["/html", "/no-resource"] {
        let error = discover(&net(), &mcp, Some(&challenge(at)), None).await.unwrap_err();
        assert_eq!(code(&error), "discovery_failed", "{at}: {error}");
        assert!(error.to_string().contains("not the expected JSON"), "{error}");
    }

    // Another resource's document.
    serve(
        &server,
        "/other",
        200,
        json!({ "resource": "https://elsewhere.example/mcp", "authorization_servers": [auth.uri()] }),
    )
    .await;
    let error = discover(&net(), &mcp, Some(&challenge("/other")), None).await.unwrap_err();
    assert!(error.to_string().contains("names another resource"), "{error}");

    // A resource metadata URL on another host is refused before any request is sent to it,
    // unless the caller allows that host.
    let port = Url::parse(&server.uri()).unwrap().port().unwrap();
    let elsewhere = format!(
        r#"Bearer resource_metadata="http://localhost:{port}/.well-known/oauth-protected-resource/mcp""#
    );
    let before = server.received_requests().await.unwrap().len();
    let error = discover(&net(), &mcp, Some(&elsewhere), None).await.unwrap_err();
    assert!(error.to_string().contains("on another host (localhost)"), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), before, "nothing was fetched");
    serve(
        &server,
        "/.well-known/oauth-protected-resource/mcp",
        200,
        json!({ "resource": mcp.as_str(), "authorization_servers": [format!("{}/tenant", auth.uri())] }),
    )
    .await;
    serve(&auth, "/.well-known/oauth-authorization-server/tenant", 200, as_document(&auth)).await;
    let allowed = HostPolicy::new(["localhost"]).unwrap();
    assert!(discover(&net(), &mcp, Some(&elsewhere), Some(&allowed)).await.is_ok());

    // A private address, with the private-address block on (as in production): refused.
    let guarded =
        Client::new(ClientConfig { block_private_addresses: true, ..ClientConfig::default() })
            .unwrap();
    let error = discover(&guarded, &mcp, Some(&challenge("/x")), None).await.unwrap_err();
    assert_eq!(code(&error), "blocked_address", "{error}");
}

#[tokio::test]
async fn an_authorization_server_for_another_issuer_or_without_s256_is_refused() {
    let (server, auth) = (MockServer::start().await, MockServer::start().await);
    let mcp = world(&server, &auth).await;
    let mut wrong = as_document(&auth);
    wrong["issuer"] = json!("https://attacker.example/tenant");
    serve(&auth, "/.well-known/oauth-authorization-server/tenant", 200, wrong).await;
    let error = discover(&net(), &mcp, None, None).await.unwrap_err();
    assert_eq!(code(&error), "discovery_failed");
    assert!(error.to_string().contains("names another issuer"), "{error}");

    let (server, auth) = (MockServer::start().await, MockServer::start().await);
    let mcp = world(&server, &auth).await;
    let mut plain = as_document(&auth);
    plain["code_challenge_methods_supported"] = json!(["plain"]);
    serve(&auth, "/.well-known/oauth-authorization-server/tenant", 200, plain).await;
    let error = discover(&net(), &mcp, None, None).await.unwrap_err();
    assert!(error.to_string().contains("PKCE with S256"), "{error}");
}

#[tokio::test]
async fn a_registration_that_changes_the_redirect_uri_is_refused() {
    use latchkey_engine::oauth2::mcp_client::register;
    let auth = MockServer::start().await;
    let endpoint = Url::parse(&format!("{}/register", auth.uri())).unwrap();
    let ours = "https://latchkey.example.com/oauth/callback";
    Mock::given(method("POST"))
        .and(path("/register"))
        .and(wiremock::matchers::body_partial_json(json!({ "redirect_uris": [ours] })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "client_id": "dyn-1", "client_secret": "dyn-secret",
            "redirect_uris": ["https://attacker.example/callback"],
        })))
        .up_to_n_times(1)
        .mount(&auth)
        .await;
    let error = register(&net(), &endpoint, ours, false).await.unwrap_err();
    assert!(error.to_string().contains("changed the redirect URI"), "{error}");
    assert!(!error.to_string().contains("dyn-secret"));

    Mock::given(method("POST"))
        .and(path("/register"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "client_id": "dyn-2", "client_secret": "dyn-secret", "redirect_uris": [ours],
        })))
        .mount(&auth)
        .await;
    let client = register(&net(), &endpoint, ours, false).await.unwrap();
    assert_eq!(client.client_id, "dyn-2");
    assert_eq!(client.client_secret.unwrap().expose(), "dyn-secret");
}
