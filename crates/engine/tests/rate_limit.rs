//! A connector's `rate_limit` in the engine, against mock APIs: the limit holds, queued requests
//! leave in order, a request that would wait past `max_wait_ms` fails with `RateLimited`, scopes
//! are kept apart, and an API's `Retry-After` is waited out once or passed through.
//!
//! Nothing here asserts speed: counts, order, and lower bounds on when requests may leave.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine;
use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Engine, EngineError, NewConnection};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A bearer connector over the mock server with `rate_limit: {limit}`.
fn connector(server: &MockServer, limit: &str) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\nrate_limit: {limit}\n",
        server.uri()
    )
}

async fn connect(engine: &Engine, id: &str, integration: Option<&str>) {
    engine
        .connections()
        .create(NewConnection {
            id: Some(id.parse().unwrap()),
            integration: integration.map(|i| i.parse().unwrap()),
            credentials: BTreeMap::from([("token".to_string(), Secret::new("tok"))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

fn post(path: &str) -> ApiRequest {
    ApiRequest { method: http::Method::POST, path: path.into(), body: "{}".into(), ..get("") }
}

async fn ok_everywhere(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(server)
        .await;
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

fn refused_for(result: Result<latchkey_net::UpstreamResponse, EngineError>) -> Duration {
    match result {
        Err(EngineError::RateLimited { connector, retry_after }) => {
            assert_eq!(connector, "prov");
            retry_after
        }
        Err(other) => panic!("expected RateLimited, got {other}"),
        Ok(response) => panic!("expected RateLimited, got {}", response.status),
    }
}

#[tokio::test]
async fn the_limit_holds_and_the_rest_is_refused() {
    let server = MockServer::start().await;
    ok_everywhere(&server).await;
    let engine =
        engine(&connector(&server, "{ requests: 2, per: hour, burst: 2, max_wait_ms: 0 }")).await;
    connect(&engine, "c1", None).await;

    let calls = (0..6).map(|i| {
        let engine = engine.clone();
        async move {
            engine.dispatch().request(&"c1".parse().unwrap(), get(&format!("/items/{i}"))).await
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let (sent, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(sent.len(), 2);
    assert_eq!(received(&server).await, 2, "the API saw only the permitted requests");
    for result in refused {
        let wait = refused_for(result);
        // Two an hour: the next permit is half an hour away.
        assert!(wait > Duration::from_secs(1700) && wait <= Duration::from_secs(1800), "{wait:?}");
    }
}

#[tokio::test]
async fn a_request_that_would_wait_past_max_wait_fails_without_waiting_in_vain() {
    let server = MockServer::start().await;
    ok_everywhere(&server).await;
    let engine =
        engine(&connector(&server, "{ requests: 1, per: minute, max_wait_ms: 200 }")).await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), get("/a")).await.unwrap().status,
        200
    );
    let wait = refused_for(engine.dispatch().request(&"c1".parse().unwrap(), get("/b")).await);
    assert!(wait > Duration::from_secs(50), "{wait:?}");
    assert_eq!(received(&server).await, 1);
}

/// Records when each request reached the API, and answers 200.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(String, Instant)>>>);

impl Respond for Arrivals {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().push((request.url.path().to_string(), Instant::now()));
        ResponseTemplate::new(200)
    }
}

#[tokio::test]
async fn queued_requests_all_succeed_in_order_at_the_limits_pace() {
    let server = MockServer::start().await;
    let arrivals = Arrivals::default();
    Mock::given(method("GET")).respond_with(arrivals.clone()).mount(&server).await;
    let engine = engine(&connector(&server, "{ requests: 20, per: second }")).await;
    connect(&engine, "c1", None).await;

    let start = Instant::now();
    // The first takes the only permit (and puts the connection in the engine's cache, so the
    // others reach the queue without awaiting the store: spawn order is queue order).
    engine.dispatch().request(&"c1".parse().unwrap(), get("/seq/0")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 1..6 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine.dispatch().request(&"c1".parse().unwrap(), get(&format!("/seq/{i}"))).await
        }));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    let arrivals = arrivals.0.lock().unwrap().clone();
    let paths: Vec<&str> = arrivals.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/api/seq/0", "/api/seq/1", "/api/seq/2", "/api/seq/3", "/api/seq/4", "/api/seq/5"]
    );
    // 20 a second, evenly spaced: request k cannot leave before k × 50 ms.
    for (k, (_, at)) in arrivals.iter().enumerate() {
        assert!(
            at.duration_since(start) >= Duration::from_millis(50) * k as u32,
            "request {k} too early"
        );
    }
}

#[tokio::test]
async fn each_connection_has_its_own_limit_by_default() {
    let server = MockServer::start().await;
    ok_everywhere(&server).await;
    let engine = engine(&connector(&server, "{ requests: 1, per: hour, max_wait_ms: 0 }")).await;
    connect(&engine, "c1", None).await;
    connect(&engine, "c2", None).await;
    assert!(engine.dispatch().request(&"c1".parse().unwrap(), get("/a")).await.is_ok());
    assert!(engine.dispatch().request(&"c2".parse().unwrap(), get("/a")).await.is_ok());
    refused_for(engine.dispatch().request(&"c1".parse().unwrap(), get("/b")).await);
    refused_for(engine.dispatch().request(&"c2".parse().unwrap(), get("/b")).await);
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn an_integration_or_connector_scope_is_shared() {
    for scope in ["integration", "connector"] {
        let server = MockServer::start().await;
        ok_everywhere(&server).await;
        let limit = format!("{{ requests: 1, per: hour, max_wait_ms: 0, scope: {scope} }}");
        let engine = engine(&connector(&server, &limit)).await;
        connect(&engine, "c1", Some("app")).await;
        connect(&engine, "c2", Some("app")).await;
        assert!(engine.dispatch().request(&"c1".parse().unwrap(), get("/a")).await.is_ok());
        refused_for(engine.dispatch().request(&"c2".parse().unwrap(), get("/a")).await);
        assert_eq!(received(&server).await, 1, "scope {scope}");
    }
}

/// Answers the first request with `first`, every later one with 200.
async fn first_then_ok(server: &MockServer, first: ResponseTemplate) {
    Mock::given(path("/api/x")).respond_with(first).up_to_n_times(1).mount(server).await;
    ok_everywhere(server).await;
}

fn too_many(retry_after: &str) -> ResponseTemplate {
    ResponseTemplate::new(429).insert_header("retry-after", retry_after).set_body_string("slow")
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_retried_once() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("1")).await;
    let engine = engine(&connector(&server, "{}")).await;
    connect(&engine, "c1", None).await;
    let start = Instant::now();
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(received(&server).await, 2);
    assert!(start.elapsed() >= Duration::from_secs(1), "the retry waited for Retry-After");
}

#[tokio::test]
async fn a_second_429_goes_to_the_caller() {
    let server = MockServer::start().await;
    Mock::given(path("/api/x")).respond_with(too_many("0")).mount(&server).await;
    let engine = engine(&connector(&server, "{}")).await;
    connect(&engine, "c1", None).await;
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(received(&server).await, 2, "retried once, not more");
}

#[tokio::test]
async fn a_long_retry_after_is_passed_through_and_holds_the_connection_back() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("120")).await;
    let engine = engine(&connector(&server, "{ requests: 10 }")).await;
    connect(&engine, "c1", None).await;
    connect(&engine, "c2", None).await;
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(response.headers[http::header::RETRY_AFTER], "120");
    assert_eq!(response.bytes().await.unwrap(), "slow");
    // The API said two minutes: this connection's next requests are refused here, not sent.
    let wait = refused_for(engine.dispatch().request(&"c1".parse().unwrap(), get("/y")).await);
    assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    assert_eq!(received(&server).await, 1);
    // Another connection is not held back.
    assert_eq!(
        engine.dispatch().request(&"c2".parse().unwrap(), get("/y")).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn post_is_not_retried_unless_the_connector_says_so() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("0")).await;
    let engine = engine(&connector(&server, "{}")).await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), post("/x")).await.unwrap().status,
        429
    );
    assert_eq!(received(&server).await, 1);

    let server = MockServer::start().await;
    first_then_ok(&server, too_many("0")).await;
    let engine = common::engine(&connector(&server, "{ retry_methods: [GET, POST] }")).await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), post("/x")).await.unwrap().status,
        200
    );
    let bodies: Vec<Vec<u8>> =
        server.received_requests().await.unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [b"{}".to_vec(), b"{}".to_vec()], "the same body, sent again");
}

#[tokio::test]
async fn a_malformed_retry_after_is_passed_through_and_holds_nothing_back() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("in a bit")).await;
    let engine = engine(&connector(&server, "{}")).await;
    connect(&engine, "c1", None).await;
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(received(&server).await, 1);
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_too() {
    let server = MockServer::start().await;
    first_then_ok(&server, ResponseTemplate::new(503).insert_header("retry-after", "0")).await;
    let engine = engine(&connector(&server, "{}")).await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap().status,
        200
    );
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn retry_after_max_ms_zero_never_retries() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("0")).await;
    let engine = engine(&connector(&server, "{ retry_after_max_ms: 0 }")).await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap().status,
        429
    );
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn without_rate_limit_a_429_is_passed_through() {
    let server = MockServer::start().await;
    first_then_ok(&server, too_many("0")).await;
    let engine = engine(&format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\n",
        server.uri()
    ))
    .await;
    connect(&engine, "c1", None).await;
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), get("/x")).await.unwrap().status,
        429
    );
    assert_eq!(received(&server).await, 1);
}

/// Latchkey's own retries (here 401 → refresh → retry) take a permit like any request: the API
/// counts them. The token endpoint is not the API and is not limited.
#[tokio::test]
async fn the_retry_after_a_refresh_takes_a_permit_of_its_own() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "new-at", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/api/me")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    let yaml = |limit: &str| {
        format!(
            "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\nrate_limit: {limit}\n",
            uri = server.uri()
        )
    };
    let tokens = || {
        BTreeMap::from([
            ("access_token".to_string(), Secret::new("old-at")),
            ("refresh_token".to_string(), Secret::new("rt-1")),
        ])
    };
    let strict = engine(&yaml("{ requests: 1, per: hour, max_wait_ms: 0 }")).await;
    strict
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: tokens(),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    refused_for(strict.dispatch().request(&"c1".parse().unwrap(), get("/me")).await);
    let api_calls = |all: Vec<Request>| all.iter().filter(|r| r.url.path() == "/api/me").count();
    assert_eq!(api_calls(server.received_requests().await.unwrap()), 1, "the retry was not sent");
}
