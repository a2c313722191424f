//! The proxy streams responses of any size, and a configured streaming cap fails visibly: a
//! declared length over it is a 502 before anything is sent, crossing it mid-stream aborts the
//! body so the client never reads a clean short one. Hooks that need the whole body fail with a
//! 502 past the whole-body cap instead of truncating.

mod support;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use futures_util::StreamExt;
use latchkey_net::ClientConfig;
use latchkey_server::app;
use sha2::{Digest, Sha256};
use support::{API_KEY, error_of, request, serve, state};
use tower::ServiceExt;

const MIB: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;

/// Chunk `i` of a test body: 64 KiB of a byte that varies with `i`.
fn chunk(i: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![(i % 251) as u8; CHUNK])
}

/// An API answering `/stream/{n}` with `n` chunks and no declared length, `/sized/{n}` with
/// `n` chunks and a `Content-Length`.
fn api() -> Router {
    Router::new()
        .route(
            "/stream/{n}",
            get(|Path(n): Path<usize>| async move {
                Body::from_stream(
                    futures_util::stream::iter(0..n).map(|i| Ok::<_, std::io::Error>(chunk(i))),
                )
            }),
        )
        .route(
            "/sized/{n}",
            get(|Path(n): Path<usize>| async move {
                (0..n).flat_map(|i| chunk(i).to_vec()).collect::<Vec<u8>>()
            }),
        )
}

fn get_proxied(path: &str) -> http::Request<Body> {
    request("GET", &format!("/v1/proxy/c1{path}"), Body::empty())
}

#[tokio::test]
async fn a_100_mib_streamed_body_arrives_complete() {
    let upstream = serve(api()).await;
    let router = app(state(&format!("http://{upstream}"), "", ClientConfig::default()).await);
    let chunks = 100 * MIB / CHUNK;
    let response = router.oneshot(get_proxied(&format!("/stream/{chunks}"))).await.unwrap();
    assert_eq!(response.status(), 200);

    let mut received = Sha256::new();
    let mut length = 0usize;
    let mut body = response.into_body().into_data_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.expect("the body streams without error");
        length += piece.len();
        received.update(&piece);
    }
    let mut expected = Sha256::new();
    (0..chunks).for_each(|i| expected.update(chunk(i)));
    assert_eq!(length, 100 * MIB);
    assert_eq!(received.finalize(), expected.finalize(), "the body arrived intact");
}

#[tokio::test]
async fn a_declared_length_over_the_configured_cap_is_a_502_before_anything_is_sent() {
    let upstream = serve(api()).await;
    let net = ClientConfig { max_streamed_response_bytes: Some(MIB as u64), ..Default::default() };
    let router = app(state(&format!("http://{upstream}"), "", net).await);
    let response = router.oneshot(get_proxied("/sized/17")).await.unwrap();
    assert_eq!(response.status(), 502);
    let body = error_of(response).await;
    assert_eq!(body["code"], "upstream_response_too_large", "{body}");
}

#[tokio::test]
async fn crossing_the_configured_cap_mid_stream_aborts_the_body() {
    let upstream = serve(api()).await;
    let net = ClientConfig { max_streamed_response_bytes: Some(MIB as u64), ..Default::default() };
    let addr = serve(app(state(&format!("http://{upstream}"), "", net).await)).await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("http://{addr}/v1/proxy/c1/stream/17"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the status was sent before the cap was crossed");
    let read = response.bytes().await;
    assert!(read.is_err(), "a body cut at the cap must not read as complete: {read:?}");

    // Within the cap, the same route streams whole.
    let response = client
        .get(format!("http://{addr}/v1/proxy/c1/stream/16"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), MIB);
}

#[tokio::test]
async fn a_hook_that_reads_the_body_fails_visibly_past_the_whole_body_cap() {
    let upstream = serve(api()).await;
    let script = "scripts: |\n  function after_action() { return true; }\n";
    let net = ClientConfig { max_response_bytes: MIB as u64, ..Default::default() };
    let router = app(state(&format!("http://{upstream}"), script, net).await);
    let response = router.clone().oneshot(get_proxied("/stream/17")).await.unwrap();
    assert_eq!(response.status(), 502);
    let body = error_of(response).await;
    assert_eq!(body["code"], "upstream_response_too_large", "{body}");

    let response = router.oneshot(get_proxied("/stream/16")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 2 * MIB).await.unwrap();
    assert_eq!(body.len(), MIB);
}
