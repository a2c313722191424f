//! The engine's caches never answer with what a write replaced: after each way a connection is
//! written (created, re-authorised, credentials renewed, status changed, deleted) the very next
//! request sees the new state, well within the second a read connection is otherwise reused.
//! And discovery documents are fetched once for concurrent callers, and again after their TTL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::engine;
use latchkey_core::Secret;
use latchkey_engine::oauth2::DiscoveryCache;
use latchkey_engine::{ApiRequest, Engine, EngineError, NewConnection, RefreshReason};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn get() -> ApiRequest {
    ApiRequest { path: "/me".into(), ..ApiRequest::default() }
}

/// The `Authorization` header of the last request the API received.
async fn last_authorization(server: &MockServer) -> String {
    let received = server.received_requests().await.unwrap();
    let last = received.iter().rev().find(|r| r.url.path() == "/api/me").unwrap();
    last.headers.get("authorization").unwrap().to_str().unwrap().to_string()
}

async fn api_ok(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

fn basic(user: &str, password: &str) -> BTreeMap<String, Secret> {
    BTreeMap::from([
        ("username".to_string(), Secret::new(user)),
        ("password".to_string(), Secret::new(password)),
    ])
}

async fn create(engine: &Engine, credentials: BTreeMap<String, Secret>) {
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials,
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_connection_is_used_at_once_where_one_of_its_id_was_read() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    let yaml =
        format!("id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: basic\n", server.uri());
    let common::Setup { engine, store, .. } = common::setup(&yaml).await;
    create(&engine, basic("ann", "first")).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    // Gone behind the engine's back (another process), then created again through the engine.
    assert!(store.delete_connection("c1").await.unwrap());
    create(&engine, basic("ann", "second")).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    assert_eq!(last_authorization(&server).await, "Basic YW5uOnNlY29uZA==", "ann:second");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_connection_is_not_served_from_memory() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    let yaml =
        format!("id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: basic\n", server.uri());
    let engine = engine(&yaml).await;
    create(&engine, basic("ann", "first")).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    let after = engine.dispatch().request(&"c1".parse().unwrap(), get()).await;
    assert!(matches!(after, Err(EngineError::ConnectionNotFound(_))), "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_jwt_is_not_reused_for_a_connection_created_again() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: jwt\n    algorithm: HS256\n    claims: {{ iss: me }}\n    lifetime: 600\n    sign: per_lifetime\n",
        server.uri()
    );
    let engine = engine(&yaml).await;
    let secret = |s: &str| BTreeMap::from([("secret".to_string(), Secret::new(s))]);
    create(&engine, secret("first-secret-first-secret")).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    let first = last_authorization(&server).await;
    engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    // The new row starts at the same version as the old one did.
    create(&engine, secret("second-secret-second-secret")).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    let second = last_authorization(&server).await;
    let token = second.strip_prefix("Bearer ").unwrap();
    let key = jsonwebtoken::DecodingKey::from_secret(b"second-secret-second-secret").unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .expect("the token is signed with the new secret");
    assert_ne!(first, second);
}

fn oauth_connector(server: &MockServer) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n",
        uri = server.uri()
    )
}

async fn oauth_connection(engine: &Engine) -> i64 {
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("at-1")),
                ("refresh_token".to_string(), Secret::new("rt-1")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap()
        .version
}

async fn token_answers(server: &MockServer, body: serde_json::Value, status: u16) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn renewed_credentials_are_used_by_the_next_request() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    token_answers(
        &server,
        serde_json::json!({"access_token": "at-2", "token_type": "Bearer", "expires_in": 3600}),
        200,
    )
    .await;
    let engine = engine(&oauth_connector(&server)).await;
    let version = oauth_connection(&engine).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    assert_eq!(last_authorization(&server).await, "Bearer at-1");
    engine
        .renewal()
        .refresh(&"c1".parse().unwrap(), RefreshReason::Forced { seen_version: version })
        .await
        .unwrap();
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    assert_eq!(last_authorization(&server).await, "Bearer at-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_is_seen_by_the_next_request() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    token_answers(&server, serde_json::json!({"error": "invalid_grant"}), 400).await;
    let engine = engine(&oauth_connector(&server)).await;
    let version = oauth_connection(&engine).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    let refresh = engine
        .renewal()
        .refresh(&"c1".parse().unwrap(), RefreshReason::Forced { seen_version: version })
        .await;
    assert!(matches!(refresh, Err(EngineError::NeedsReauth(_))), "{refresh:?}");
    let after = engine.dispatch().request(&"c1".parse().unwrap(), get()).await;
    assert!(matches!(after, Err(EngineError::NeedsReauth(_))), "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_set_by_the_credential_test_is_seen_by_the_next_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let yaml = format!("{}test: {{ path: /me }}\n", oauth_connector(&server));
    let engine = engine(&yaml).await;
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([("access_token".to_string(), Secret::new("at-1"))]),
            run_test: false,
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    assert!(
        engine.connections().test(&"c1".parse().unwrap()).await.is_err(),
        "the API now answers 403"
    );
    let after = engine.dispatch().request(&"c1".parse().unwrap(), get()).await;
    assert!(matches!(after, Err(EngineError::NeedsReauth(_))), "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reauthorised_connection_is_used_by_the_next_request() {
    let server = MockServer::start().await;
    api_ok(&server).await;
    token_answers(
        &server,
        serde_json::json!({"access_token": "at-new", "token_type": "Bearer", "expires_in": 3600}),
        200,
    )
    .await;
    let engine = engine(&oauth_connector(&server)).await;
    oauth_connection(&engine).await;
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    common::answer_local_flow(&engine, &[], Some("c1".parse().unwrap())).await.unwrap();
    engine.dispatch().request(&"c1".parse().unwrap(), get()).await.unwrap();
    assert_eq!(last_authorization(&server).await, "Bearer at-new");
}

async fn issuer(fetches: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({
                    "issuer": server.uri(),
                    "authorization_endpoint": format!("{}/authorize", server.uri()),
                    "token_endpoint": format!("{}/token", server.uri()),
                }))
                // Slow enough that every caller below asks while the first fetch is in flight.
                .set_delay(Duration::from_millis(200)),
        )
        .expect(fetches)
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_is_fetched_once_for_concurrent_callers() {
    let server = issuer(1).await;
    let cache = DiscoveryCache::default();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let issuer = server.uri();
    let calls = (0..20).map(|_| cache.get(&net, &issuer));
    let all = futures_util::future::join_all(calls).await;
    for metadata in all {
        let metadata = metadata.unwrap();
        assert_eq!(metadata.token_endpoint.unwrap().path(), "/token");
    }
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_is_fetched_again_after_its_ttl() {
    let server = issuer(2).await;
    let cache = DiscoveryCache::with_ttl(Duration::from_millis(500));
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let issuer = server.uri();
    cache.get(&net, &issuer).await.unwrap();
    cache.get(&net, &issuer).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "kept within its TTL");
    tokio::time::sleep(Duration::from_millis(700)).await;
    cache.get(&net, &issuer).await.unwrap();
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_discovery_is_not_kept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": server.uri(),
            "token_endpoint": format!("{}/token", server.uri()),
        })))
        .mount(&server)
        .await;
    let cache = DiscoveryCache::default();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    assert!(cache.get(&net, &server.uri()).await.is_err());
    assert!(cache.get(&net, &server.uri()).await.is_ok(), "the next caller fetches again");
}

/// Re-authorising an unhealthy connection makes it healthy again, through the store (the
/// health a check wrote is replaced, not kept), with its last error on record.
#[tokio::test]
async fn a_reauthorised_connection_is_healthy_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    api_ok(&server).await;
    token_answers(
        &server,
        serde_json::json!({"access_token": "at-new", "token_type": "Bearer", "expires_in": 3600}),
        200,
    )
    .await;
    let connector = format!("{}test: {{ path: /me }}\n", oauth_connector(&server));
    let engine = engine(&connector).await;
    oauth_connection(&engine).await;
    let id: latchkey_engine::ConnectionId = "c1".parse().unwrap();
    let sick = engine.connections().check(&id).await.unwrap();
    assert_eq!(sick.state, latchkey_store::HealthState::Unhealthy);
    common::answer_local_flow(&engine, &[], Some(id.clone())).await.unwrap();
    let health = engine.connections().get(&id).await.unwrap().health;
    assert_eq!(health.state, latchkey_store::HealthState::Healthy, "{health:?}");
    assert_eq!(health.last_error, sick.last_error, "the last failure stays on record");
}
