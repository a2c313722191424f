//! The proxy under a connector's rate limit: when the limiter gives up, the caller gets 429 with
//! `Retry-After` and the stable code `rate_limited`, and the API sees nothing.

mod support;

use axum::body::{Body, to_bytes};
use latchkey_server::{AppState, app};
use support::API_KEY;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn state_over(server: &MockServer) -> AppState {
    let base_url = format!("{}/api", server.uri());
    let limit = "rate_limit: { requests: 1, per: hour, max_wait_ms: 0 }\n";
    support::state(&base_url, limit, latchkey_net::ClientConfig::default()).await
}

fn proxied(path: &str) -> http::Request<Body> {
    http::Request::get(format!("/v1/proxy/c1{path}"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_proxy_answers_429_with_retry_after_when_the_limit_gives_up() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let router = app(state_over(&server).await);

    let first = router.clone().oneshot(proxied("/items")).await.unwrap();
    assert_eq!(first.status(), 200);

    let second = router.clone().oneshot(proxied("/items")).await.unwrap();
    assert_eq!(second.status(), 429);
    let retry_after: u64 =
        second.headers()[http::header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    // One request an hour: the next permit is an hour after the first.
    assert!((3590..=3600).contains(&retry_after), "Retry-After: {retry_after}");
    let body = to_bytes(second.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("prov"), "{body}");
    assert!(!body.to_string().contains("tok\""), "no secret in the error");
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "the API saw one request");

    // The refusal is counted.
    let request = http::Request::get("/metrics")
        .header("authorization", format!("Bearer {API_KEY}"))
        .body(Body::empty())
        .unwrap();
    let metrics = router.oneshot(request).await.unwrap();
    let text = to_bytes(metrics.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&text);
    let refused = r#"latchkey_rate_limit_requests_total{connector="prov",outcome="refused"} 1"#;
    assert!(text.contains(refused), "{refused} in {text}");
}

#[tokio::test]
async fn an_upstream_429_is_passed_through_unchanged() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/busy"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "120")
                .set_body_string("slow down"),
        )
        .mount(&server)
        .await;
    let response = app(state_over(&server).await).oneshot(proxied("/busy")).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "120");
    let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
    assert_eq!(&body[..], b"slow down");
}
