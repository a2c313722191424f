//! The server the limit tests run: one connector (`prov`, a bearer token, base URL given) and one
//! connection `c1`, over an in-memory store, with the outbound client configured per test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewConnection, Origin};
use latchkey_server::AppState;
use latchkey_store::{Keyring, MasterKey, SqliteStore};

pub const API_KEY: &str = "test-api-key";

/// State over a connector whose API lives at `base_url`, with `extra` YAML appended.
pub async fn state(base_url: &str, extra: &str, net: latchkey_net::ClientConfig) -> AppState {
    let connector =
        format!("id: prov\nname: Prov\nbase_url: {base_url}\nauth:\n  - type: bearer\n{extra}");
    let catalog = Catalog::default();
    catalog.add_source(&connector, "prov.yaml", Origin::Custom).unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(net).unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([("token".to_string(), Secret::new("tok"))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    AppState::new(engine, Secret::new(API_KEY), "http://127.0.0.1:7400".parse().unwrap())
}

/// A request to the router with the API key.
pub fn request(method: &str, uri: &str, body: Body) -> http::Request<Body> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// `n` bytes in 64 KiB chunks, with no declared length.
pub fn chunked(n: usize) -> Body {
    let chunks = (0..n).step_by(1 << 16).map(move |i| {
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; (1 << 16).min(n - i)]))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// Serves `router` on a free loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// The JSON error body of `response`.
pub async fn error_of(response: http::Response<Body>) -> serde_json::Value {
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

/// `method uri` through the router with `Authorization: Bearer {key}` and, when given, a JSON
/// body; the status and the body as JSON (as a JSON string when it is not JSON).
pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"));
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response =
        latchkey_server::app(state.clone()).oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}
