//! RFC 9207 at the callback: when the issuer's metadata says
//! `authorization_response_iss_parameter_supported: true`, an authorization response with a
//! wrong `iss` or none at all is refused before the code exchange (no token request); the
//! right `iss` goes through.

mod common;

use common::engine;
use latchkey_engine::{EngineError, FlowError};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": server.uri(),
            "authorization_endpoint": format!("{}/authorize", server.uri()),
            "token_endpoint": format!("{}/token", server.uri()),
            "authorization_response_iss_parameter_supported": true,
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    server
}

async fn token_requests(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests.iter().filter(|r| r.url.path() == "/token").count()
}

/// Starts a loopback flow and answers it with `iss`.
async fn callback(
    engine: &latchkey_engine::Engine,
    iss: Option<String>,
) -> Result<latchkey_store::ConnectionRecord, EngineError> {
    let extra: Vec<(&str, &str)> = iss.as_deref().map(|iss| ("iss", iss)).into_iter().collect();
    common::answer_local_flow(engine, &extra, None).await
}

#[tokio::test]
async fn a_wrong_or_missing_iss_is_refused_before_the_code_exchange() {
    let server = provider().await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    issuer: {uri}\n",
        uri = server.uri()
    );
    let engine = engine(&yaml).await;
    for (what, iss) in [
        ("wrong", Some("https://evil.example".to_owned())),
        ("another path", Some(format!("{}/other", server.uri()))),
        ("missing", None),
    ] {
        let result = callback(&engine, iss).await;
        assert!(
            matches!(result, Err(EngineError::Flow(FlowError::IssuerMismatch))),
            "{what}: {result:?}"
        );
        assert_eq!(token_requests(&server).await, 0, "{what}: no token request");
    }
    let ok = callback(&engine, Some(server.uri())).await.unwrap();
    assert_eq!(ok.credentials["access_token"].expose(), "at");
    assert_eq!(token_requests(&server).await, 1);
}
