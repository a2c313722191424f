//! Every route with a body has an explicit cap and answers a larger body with 413 and the JSON
//! error `payload_too_large`: declared (`Content-Length`) or chunked, on the JSON API, the
//! connector upload and the proxy, through the router and over a real socket.

mod support;

use axum::body::Body;
use latchkey_server::{BodyLimits, app, app_with_limits};
use support::{API_KEY, chunked, error_of, request, serve, state};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

const MIB: usize = 1 << 20;

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

async fn assert_too_large(response: http::Response<Body>, what: &str) {
    assert_eq!(response.status(), 413, "{what}");
    let body = error_of(response).await;
    assert_eq!(body["code"], "payload_too_large", "{what}: {body}");
    assert!(body["message"].as_str().unwrap().contains("limit"), "{what}: {body}");
}

#[tokio::test]
async fn json_api_routes_refuse_bodies_over_1_mib() {
    let server = upstream().await;
    let router = app(state(&server.uri(), "", Default::default()).await);
    let declared = Body::from(vec![b' '; MIB + 1]);
    let response = router.clone().oneshot(request("POST", "/v1/connections", declared)).await;
    assert_too_large(response.unwrap(), "declared").await;
    let response =
        router.clone().oneshot(request("POST", "/v1/connections", chunked(MIB + 1))).await;
    assert_too_large(response.unwrap(), "chunked").await;

    // Under the cap the route reads the body as before: a JSON error of its own, not a 413.
    let small = Body::from(r#"{"connector": "nope"}"#);
    let response = router.oneshot(request("POST", "/v1/connections", small)).await.unwrap();
    assert_ne!(response.status(), 413);
}

#[tokio::test]
async fn the_connector_upload_has_its_own_4_mib_cap() {
    let server = upstream().await;
    let router = app(state(&server.uri(), "", Default::default()).await);
    // 3 MiB: past axum's implicit 2 MiB default, within the upload's cap; refused as a
    // connector (it is only blanks), not for its size.
    let response =
        router.clone().oneshot(request("PUT", "/v1/connectors/big", chunked(3 * MIB))).await;
    let response = response.unwrap();
    assert_ne!(response.status(), 413, "{:?}", error_of(response).await);
    let response =
        router.clone().oneshot(request("PUT", "/v1/connectors/big", chunked(4 * MIB + 1))).await;
    assert_too_large(response.unwrap(), "chunked upload").await;
    let declared = Body::from(vec![b' '; 4 * MIB + 1]);
    let response = router.oneshot(request("PUT", "/v1/connectors/big", declared)).await;
    assert_too_large(response.unwrap(), "declared upload").await;
}

#[tokio::test]
async fn proxy_bodies_over_the_limit_are_refused_and_never_sent() {
    let server = upstream().await;
    let limits = BodyLimits { proxy: 64 * 1024, ..BodyLimits::default() };
    let router = app_with_limits(state(&server.uri(), "", Default::default()).await, limits);
    let declared = Body::from(vec![b'x'; 64 * 1024 + 1]);
    let response = router.clone().oneshot(request("POST", "/v1/proxy/c1/upload", declared)).await;
    assert_too_large(response.unwrap(), "declared").await;
    let response = router
        .clone()
        .oneshot(request("POST", "/v1/proxy/c1/upload", chunked(64 * 1024 + 1)))
        .await;
    assert_too_large(response.unwrap(), "chunked").await;
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing reached the API");

    let fits = Body::from(vec![b'x'; 64 * 1024]);
    let response = router.oneshot(request("POST", "/v1/proxy/c1/upload", fits)).await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body.len(), 64 * 1024, "the body went through whole");
}

#[tokio::test]
async fn the_default_proxy_cap_is_32_mib() {
    assert_eq!(BodyLimits::default().proxy, 32 * MIB);
    assert_eq!(BodyLimits::default().api, MIB);
}

#[tokio::test]
async fn over_a_socket_a_chunked_oversized_body_gets_the_413_not_a_reset() {
    let server = upstream().await;
    let router = app(state(&server.uri(), "", Default::default()).await);
    let addr = serve(router).await;
    let stream = futures_util::stream::iter(
        (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/connections"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("the 413 arrives, not a reset");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn over_a_socket_a_declared_oversized_body_gets_the_413() {
    let server = upstream().await;
    let addr = serve(app(state(&server.uri(), "", Default::default()).await)).await;
    // Sent whole without waiting: the server reads what is past the cap before answering.
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/connections"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * MIB])
        .send()
        .await
        .expect("the 413 arrives, not a reset");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");

    // Waiting for `100 Continue` on a 10 GB declaration: answered at once, nothing read.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/connections HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 10000000000\r\n\
         expect: 100-continue\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
}

#[tokio::test]
async fn the_hosted_connect_form_refuses_bodies_over_1_mib() {
    let server = upstream().await;
    let router = app(state(&server.uri(), "", Default::default()).await);
    let form = |body: Body| {
        http::Request::post("/connect/some-token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .unwrap()
    };
    let response = router.clone().oneshot(form(Body::from(vec![b'a'; MIB + 1]))).await;
    assert_too_large(response.unwrap(), "declared form").await;
    let response = router.clone().oneshot(form(chunked(MIB + 1))).await;
    assert_too_large(response.unwrap(), "chunked form").await;
    // Within the cap the page answers as before (an unknown connect link).
    let response = router.oneshot(form(Body::from("a=b"))).await.unwrap();
    assert_ne!(response.status(), 413);
}
