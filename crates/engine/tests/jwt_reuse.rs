//! `type: jwt` with `sign: per_lifetime`: one token per connection, reused across requests, and
//! signed again when the API refuses a reused one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Setup, setup};
use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Clock, Engine, NewConnection};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn connector(server: &MockServer, sign: &str) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: jwt\n    algorithm: HS256\n    claims: {{ iss: me }}\n    lifetime: 600\n    sign: {sign}\n",
        uri = server.uri()
    )
}

async fn connect(engine: &Engine) {
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([("secret".into(), Secret::new("s3cret-s3cret-s3cret"))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
}

async fn get(engine: &Engine) -> u16 {
    let request = ApiRequest { path: "/me".into(), ..ApiRequest::default() };
    engine.dispatch().request(&"c1".parse().unwrap(), request).await.unwrap().status.as_u16()
}

async fn tokens(server: &MockServer) -> Vec<String> {
    let received = server.received_requests().await.unwrap();
    received
        .iter()
        .map(|r| r.headers.get("authorization").unwrap().to_str().unwrap().to_string())
        .collect()
}

async fn accept_all(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

/// Moves the engine's clock into the next second, so a token signed now has another `iat` than
/// one signed before.
fn next_second(setup: &Setup) {
    setup.clock.advance(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_lifetime_reuses_one_token() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let setup = setup(&connector(&server, "per_lifetime")).await;
    let engine = &setup.engine;
    connect(engine).await;
    assert_eq!(get(engine).await, 200);
    next_second(&setup);
    assert_eq!(get(engine).await, 200);
    let seen = tokens(&server).await;
    assert_eq!(seen.len(), 2);
    assert!(seen[0].starts_with("Bearer ey"), "{}", seen[0]);
    assert_eq!(seen[0], seen[1], "the token signed for the first request is reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_request_signs_each_time() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let setup = setup(&connector(&server, "per_request")).await;
    let engine = &setup.engine;
    connect(engine).await;
    assert_eq!(get(engine).await, 200);
    next_second(&setup);
    assert_eq!(get(engine).await, 200);
    let seen = tokens(&server).await;
    assert_ne!(seen[0], seen[1], "each request has its own token");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_reused_token_is_signed_again_once() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let setup = setup(&connector(&server, "per_lifetime")).await;
    let engine = &setup.engine;
    connect(engine).await;
    assert_eq!(get(engine).await, 200);
    let first = tokens(&server).await.remove(0);
    // The API now refuses the first token (revoked, say); a new one is accepted.
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", first.as_str()))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(1)
        .mount(&server)
        .await;
    next_second(&setup);
    assert_eq!(get(engine).await, 200, "the 401 was answered with a new token");
    assert_eq!(get(engine).await, 200);
    let seen = tokens(&server).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[1], first, "the kept token was tried first");
    assert_ne!(seen[2], first, "then a newly signed one");
    assert_eq!(seen[3], seen[2], "and the new one is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_new_token_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let setup = setup(&connector(&server, "per_lifetime")).await;
    let engine = &setup.engine;
    connect(engine).await;
    assert_eq!(get(engine).await, 401);
    assert_eq!(tokens(&server).await.len(), 1, "a freshly signed token is sent once");
    assert_eq!(get(engine).await, 401);
    assert_eq!(tokens(&server).await.len(), 2, "and a refused one is not kept");
}

/// A kept token is signed again once the engine's clock reaches its renewal time (a quarter of
/// its lifetime before it expires, at most a minute): 600 s lifetime, renewed after 540 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_token_is_renewed_before_it_expires() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let setup = setup(&connector(&server, "per_lifetime")).await;
    let engine = &setup.engine;
    let start = setup.clock.now();
    connect(engine).await;
    assert_eq!(get(engine).await, 200);
    setup.clock.advance(Duration::from_secs(539));
    assert_eq!(get(engine).await, 200);
    setup.clock.advance(Duration::from_secs(1));
    assert_eq!(get(engine).await, 200);
    let seen = tokens(&server).await;
    assert_eq!(seen[0], seen[1], "kept until its renewal time");
    assert_ne!(seen[1], seen[2], "signed again at it");
    let claims = |token: &str| -> serde_json::Value {
        use base64::Engine as _;
        let payload = token.trim_start_matches("Bearer ").split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
        )
        .unwrap()
    };
    let (first, renewed) = (claims(&seen[0]), claims(&seen[2]));
    assert_eq!(renewed["iat"].as_i64().unwrap() - first["iat"].as_i64().unwrap(), 540);
    assert_eq!(first["iat"].as_i64().unwrap(), start.unix_timestamp());
}
