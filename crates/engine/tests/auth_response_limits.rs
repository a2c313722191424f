//! Answers of token, discovery, device-authorization and session-login endpoints are read under
//! a 1 MiB cap: a larger one is refused with `ResponseTooLarge` before anything is parsed or
//! stored, and the connection keeps the tokens it had.

mod common;

use std::collections::BTreeMap;

use common::engine;
use latchkey_core::Secret;
use latchkey_engine::{AUTH_RESPONSE_LIMIT, EngineError, NewConnection, RefreshReason};
use latchkey_net::NetError;
use latchkey_store::ConnectionStatus;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A JSON object with `field` set to a string that takes the body just past the cap.
fn oversized(field: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut doc = extra;
    doc[field] = "a".repeat(AUTH_RESPONSE_LIMIT as usize).into();
    doc
}

fn too_large(err: &EngineError) -> bool {
    matches!(err, EngineError::Net(NetError::ResponseTooLarge { limit }) if *limit == AUTH_RESPONSE_LIMIT)
}

#[tokio::test]
async fn an_oversized_token_response_is_refused_and_the_old_tokens_are_kept() {
    let server = MockServer::start().await;
    let body =
        oversized("access_token", serde_json::json!({"refresh_token": "rt-2", "expires_in": 3600}));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let uri = server.uri();
    let engine = engine(&format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n"
    ))
    .await;
    let record = engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("old-at")),
                ("refresh_token".to_string(), Secret::new("rt-1")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();

    let refreshed = engine
        .renewal()
        .refresh(&"c1".parse().unwrap(), RefreshReason::Forced { seen_version: record.version })
        .await;
    let Err(err) = refreshed else { panic!("the oversized token response was accepted") };
    assert!(too_large(&err), "{err:?}");
    assert!(!err.to_string().contains("aaaa"), "{err}");

    let after = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(after.credentials["access_token"].expose(), "old-at");
    assert_eq!(after.credentials["refresh_token"].expose(), "rt-1");
    assert_eq!(after.status, ConnectionStatus::Ok);
}

#[tokio::test]
async fn an_oversized_discovery_document_is_refused() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let doc = oversized(
        "service_documentation",
        serde_json::json!({
            "issuer": uri,
            "token_endpoint": format!("{uri}/token"),
            "device_authorization_endpoint": format!("{uri}/device"),
        }),
    );
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&server)
        .await;
    let engine = engine(&format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    issuer: {uri}\n"
    ))
    .await;
    let Err(err) = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
    else {
        panic!("the oversized response was accepted")
    };
    assert!(too_large(&err), "{err:?}");
    let device_calls = server.received_requests().await.unwrap();
    assert!(device_calls.iter().all(|r| r.url.path() != "/device"), "nothing was read from it");
}

#[tokio::test]
async fn an_oversized_device_authorization_response_is_refused() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let body = oversized(
        "user_code",
        serde_json::json!({"device_code": "d", "verification_uri": format!("{uri}/v"), "expires_in": 60}),
    );
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let engine = engine(&format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    device_authorization_url: {uri}/device\n    token_url: {uri}/token\n"
    ))
    .await;
    let Err(err) = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
    else {
        panic!("the oversized response was accepted")
    };
    assert!(too_large(&err), "{err:?}");
}

#[tokio::test]
async fn an_oversized_session_login_response_stores_nothing() {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(oversized("token", serde_json::json!({}))),
        )
        .mount(&server)
        .await;
    let engine = engine(&format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: session\n    login:\n      url: {uri}/login\n      body: {{ user: '{{{{ credentials.username }}}}', pass: '{{{{ credentials.password }}}}' }}\n    token: {{ from: json, name: token }}\n    apply: {{ in: header, name: X-Session, value: '{{{{ session_token }}}}' }}\n"
    ))
    .await;
    let created = engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([
                ("username".to_string(), Secret::new("ada")),
                ("password".to_string(), Secret::new("pw")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await;
    let Err(err) = created else { panic!("the oversized login response was accepted") };
    assert!(too_large(&err), "{err:?}");
    assert!(
        engine.connections().get(&"c1".parse().unwrap()).await.is_err(),
        "no connection was stored"
    );
}
