//! The catalog's remote MCP servers (`connectors/*-mcp.yaml`): every one loads and is recognised
//! as an MCP server connector — its base URL is the resource, sent on the authorization, token
//! and refresh requests, with PKCE S256 — and no other catalog entry is taken for one. One
//! shipped file, its hosts pointed at a local mock of the server, is integrated by `connector`,
//! connected, and its credential test (an MCP `initialize`) run.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use latchkey_engine::core::connector::AuthMethod;
use latchkey_engine::core::oauth2::{AuthorizeRequest, authorize_url};
use latchkey_engine::oauth2::mcp_client::mcp_server_of;
use latchkey_engine::{Catalog, Engine, Origin};
use latchkey_server::{AppState, app};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use serde_json::json;
use support::{API_KEY, call};
use tower::ServiceExt;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[test]
fn every_mcp_catalog_entry_is_an_mcp_server_connector_bound_to_its_url() {
    let catalog = Catalog::load(&[] as &[&str]);
    let broken: Vec<_> = catalog.errors().into_iter().filter(|e| e.file.contains("-mcp")).collect();
    assert!(broken.is_empty(), "MCP catalog entries that do not load: {broken:?}");
    let mut servers = Vec::new();
    for entry in catalog.list() {
        let connector = &entry.connector;
        let named = connector.id.ends_with("-mcp");
        let server = mcp_server_of(connector);
        assert_eq!(
            server.is_some(),
            named,
            "`{}`: an MCP server connector is named `*-mcp`, and every `*-mcp` entry is one",
            connector.id
        );
        let Some(server) = server else { continue };
        assert_eq!(
            server.as_str(),
            connector.base_url,
            "{}: the resource is its URL",
            connector.id
        );
        assert_eq!(server.scheme(), "https", "{}", connector.id);
        let Some(AuthMethod::OAuth2(method)) = connector.auth.first() else { unreachable!() };
        let endpoint = url::Url::parse(method.authorize_url.as_deref().unwrap()).unwrap();
        let url = authorize_url(
            method,
            AuthorizeRequest {
                endpoint: &endpoint,
                client_id: "c",
                redirect_uri: "https://latchkey.example.com/oauth/callback",
                scopes: &method.scopes,
                state: "s",
                code_challenge: Some("challenge"),
            },
        );
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["resource"], connector.base_url, "{}", connector.id);
        assert_eq!(query["code_challenge_method"], "S256", "{}", connector.id);
        assert!(method.token_url.is_some(), "{}: documented endpoints", connector.id);
        assert!(connector.docs.is_some(), "{}: the provider's page", connector.id);
        servers.push(connector.id.clone());
    }
    servers.sort();
    assert_eq!(
        servers,
        ["asana-mcp", "canva-mcp", "github-mcp", "linear-mcp", "notion-mcp", "sentry-mcp"],
        "the list in docs/mcp.md"
    );
}

/// `connectors/linear-mcp.yaml` as shipped, with `https://mcp.linear.app` pointed at a mock that
/// behaves as the MCP authorization specification says the server does: 401 with its resource
/// metadata, RFC 8414 metadata naming the same issuer, dynamic registration, a token request that
/// must carry the PKCE verifier and the resource, and `initialize` answered with the token.
#[tokio::test]
async fn a_shipped_mcp_entry_is_integrated_connected_and_tested_against_a_mock_server() {
    let mock = MockServer::start().await;
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../connectors/linear-mcp.yaml"
    ))
    .unwrap();
    assert!(shipped.contains("https://mcp.linear.app"), "update this test: {shipped}");
    let source = shipped.replace("https://mcp.linear.app", &mock.uri());
    let resource = format!("{}/mcp", mock.uri());
    let encoded = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(header("authorization", "Bearer at"))
        .and(body_string_contains("initialize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"jsonrpc": "2.0", "id": 1, "result": {"serverInfo": {"name": "m", "version": "1"}}}),
        ))
        .mount(&mock)
        .await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", mock.uri());
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(r#"Bearer resource_metadata="{metadata}""#).as_str(),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-protected-resource/mcp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resource": resource, "authorization_servers": [mock.uri()],
            "scopes_supported": ["read", "write"]})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": mock.uri(),
            "authorization_endpoint": format!("{}/authorize", mock.uri()),
            "token_endpoint": format!("{}/token", mock.uri()),
            "registration_endpoint": format!("{}/register", mock.uri()),
            "code_challenge_methods_supported": ["S256"],
        })))
        .mount(&mock)
        .await;
    let callback = "http://127.0.0.1:7400/oauth/callback";
    Mock::given(method("POST"))
        .and(path("/register"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"client_id": "dyn", "client_secret": "dyn-secret", "redirect_uris": [callback]}),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code_verifier="))
        .and(body_string_contains(format!("resource={}", encoded(&resource))))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at", "token_type": "Bearer", "refresh_token": "rt", "expires_in": 3600}),
        ))
        .mount(&mock)
        .await;

    let catalog = Catalog::default();
    catalog.add_source(&source, "connectors/linear-mcp.yaml", Origin::Builtin).unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    let state = AppState::new(
        engine,
        latchkey_core::Secret::new(API_KEY),
        "http://127.0.0.1:7400".parse().unwrap(),
    );

    let (status, made) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "linear", "connector": "linear-mcp"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["connector"], "linear-mcp");
    assert_eq!(made["client_id"], "dyn");
    assert_eq!(made["scopes"], json!(["read", "write"]));

    let (status, created) = call(
        &state,
        "POST",
        "/v1/connect-sessions",
        API_KEY,
        Some(json!({"integration": "linear"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let link = format!("/connect/{}", created["token"].as_str().unwrap());
    let response = app(state.clone())
        .oneshot(http::Request::get(link).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let cookie =
        response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(location.path(), "/authorize", "the entry's documented endpoint");
    let query: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["resource"], resource);
    assert_eq!(query["code_challenge_method"], "S256");
    let back = format!(
        "/oauth/callback?state={}&code=c&iss={}",
        encoded(&query["state"]),
        encoded(&mock.uri())
    );
    let response = app(state.clone())
        .oneshot(http::Request::get(back).header("cookie", cookie).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let page = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&page));

    let (_, list) = call(&state, "GET", "/v1/connections", API_KEY, None).await;
    let connection = list["connections"][0]["id"].as_str().unwrap().to_owned();
    let (status, outcome) =
        call(&state, "POST", &format!("/v1/connections/{connection}/test"), API_KEY, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["ran"], true, "{outcome}");
    assert_eq!(outcome["status"], 200, "the initialize with the token: {outcome}");
}
