//! OAuth2 in the engine against mock token endpoints: single-flight refresh under concurrency,
//! rotation, invalid_grant, transient failures, refresh on 401, kept response fields, and forged
//! callbacks that must never reach the token endpoint.

mod common;

use std::collections::BTreeMap;

use common::{Setup, engine, setup};
use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, CallbackParams, Clock, EngineError, NewConnection, NewIntegration, RefreshReason,
};
use latchkey_store::{ConnectionStatus, CredentialUpdate};
use time::OffsetDateTime;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn connector(server: &MockServer, extra: &str) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n{extra}",
        uri = server.uri()
    )
}

/// Imports tokens and makes the access token already expired.
async fn expired_connection(setup: &Setup, id: &str) {
    let record = setup
        .engine
        .connections()
        .create(NewConnection {
            id: Some(id.parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("old-at")),
                ("refresh_token".to_string(), Secret::new("rt-1")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    let past = OffsetDateTime::now_utc() - time::Duration::minutes(1);
    setup
        .store
        .update_credentials(
            id,
            record.version,
            &CredentialUpdate { expires_at: Some(past), ..Default::default() },
        )
        .await
        .unwrap();
}

async fn token_calls(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/token")
        .collect()
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

async fn api_accepting(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("hello"))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_requests_on_an_expired_token_cause_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=rt-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "new-at", "refresh_token": "rt-2", "expires_in": 3600}))
                .set_delay(std::time::Duration::from_millis(100)),
        )
        .mount(&server)
        .await;
    api_accepting(&server, "new-at").await;
    let setup = setup(&connector(&server, "")).await;
    let engine = &setup.engine;
    expired_connection(&setup, "c1").await;

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .dispatch()
                .request(&"c1".parse().unwrap(), get("/me"))
                .await
                .map(|r| r.status.as_u16())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 200);
    }
    assert_eq!(token_calls(&server).await.len(), 1, "exactly one token-endpoint call");
    let record = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(
        record.credentials["refresh_token"].expose(),
        "rt-2",
        "rotated refresh token stored"
    );
    assert!(record.expires_at.unwrap() > OffsetDateTime::now_utc() + time::Duration::minutes(50));
}

#[tokio::test]
async fn rotation_is_followed_and_a_missing_refresh_token_keeps_the_old_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=rt-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "at-2", "refresh_token": "rt-2", "expires_in": "3600"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("refresh_token=rt-2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "at-3"})),
        )
        .mount(&server)
        .await;
    let setup = setup(&connector(&server, "")).await;
    let engine = &setup.engine;
    expired_connection(&setup, "c1").await;
    for expected_refresh in ["rt-2", "rt-2"] {
        let v = engine.connections().get(&"c1".parse().unwrap()).await.unwrap().version;
        let r = engine
            .renewal()
            .refresh(&"c1".parse().unwrap(), RefreshReason::Forced { seen_version: v })
            .await
            .unwrap();
        assert_eq!(r.credentials["refresh_token"].expose(), expected_refresh);
    }
    let calls = token_calls(&server).await;
    assert_eq!(calls.len(), 2);
    let second = String::from_utf8_lossy(&calls[1].body);
    assert!(
        second.contains("refresh_token=rt-2") && !second.contains("rt-1"),
        "the old refresh token is never reused"
    );
    // Client authentication in the body by default.
    assert!(second.contains("client_id=cid") && second.contains("client_secret=csecret"));
    assert_eq!(
        engine.connections().get(&"c1".parse().unwrap()).await.unwrap().credentials["access_token"]
            .expose(),
        "at-3"
    );
}

#[tokio::test]
async fn invalid_grant_marks_needs_reauth_and_keeps_tokens() {
    let server = MockServer::start().await;
    // HTTP 200 with an error body is an error.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .mount(&server)
        .await;
    let setup = setup(&connector(&server, "")).await;
    let engine = &setup.engine;
    expired_connection(&setup, "c1").await;
    let err = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap_err();
    assert!(matches!(err, EngineError::NeedsReauth(_)), "{err}");
    let record = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(record.status, ConnectionStatus::NeedsReauth);
    assert_eq!(record.credentials["refresh_token"].expose(), "rt-1");
    // No further token calls once marked.
    let _ = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap_err();
    assert_eq!(token_calls(&server).await.len(), 1);
}

#[tokio::test]
async fn transient_failures_keep_the_tokens_and_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let setup = setup(&connector(&server, "")).await;
    let engine = &setup.engine;
    expired_connection(&setup, "c1").await;
    let before = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    let err = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap_err();
    assert!(matches!(&err, EngineError::Token(t) if t.is_transient()), "{err}");
    let after = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(after.status, ConnectionStatus::Ok);
    assert_eq!(after.version, before.version);
    assert_eq!(after.credentials["access_token"].expose(), "old-at");
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_request_retried_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "fresh"})),
        )
        .mount(&server)
        .await;
    api_accepting(&server, "fresh").await;
    let engine = engine(&connector(&server, "    client_auth: basic\n")).await;
    // Imported token with no known expiry: only the 401 says it is stale.
    engine
        .connections()
        .create(NewConnection {
            id: Some("c2".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("stale")),
                ("refresh_token".to_string(), Secret::new("rt-1")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    let response = engine.dispatch().request(&"c2".parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status.as_u16(), 200);
    let calls = token_calls(&server).await;
    assert_eq!(calls.len(), 1);
    // client_secret_basic: credentials in the header, not the body.
    let auth = calls[0].headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("Basic "));
    assert!(!String::from_utf8_lossy(&calls[0].body).contains("csecret"));
    let api_calls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/me")
        .count();
    assert_eq!(api_calls, 2, "one refused call, one retry");
}

#[tokio::test]
async fn client_credentials_keep_instance_url_for_the_base_url() {
    let server = MockServer::start().await;
    let instance = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "data": {"token": "cc-at", "ttl": 3_600_000}, "instance_url": instance.uri()
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/ping"))
        .and(header("x-token", "cc-at"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&instance)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: \"{{{{ config.instance_url }}}}/v1\"\nallowed_hosts: [\"127.0.0.1:{port}\"]\nconfig: [{{key: instance_url, optional: true}}]\nauth:\n  - type: oauth2\n    grant: client_credentials\n    token_url: {uri}/token\n    token_response: {{access_token: data.token, expires_in: data.ttl, expires_in_unit: milliseconds, keep: {{instance_url: instance_url}}}}\n    apply: {{in: header, name: X-Token, value: \"{{{{ access_token }}}}\"}}\n",
        uri = server.uri(),
        port = instance.address().port(),
    );
    let engine = engine(&yaml).await;
    let record = engine
        .connections()
        .create(NewConnection {
            id: Some("cc".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(record.config["instance_url"], instance.uri());
    let lifetime = record.expires_at.unwrap() - OffsetDateTime::now_utc();
    assert!(lifetime > time::Duration::minutes(59) && lifetime <= time::Duration::minutes(60));
    assert_eq!(
        engine
            .dispatch()
            .request(&"cc".parse().unwrap(), get("/ping"))
            .await
            .unwrap()
            .status
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn forged_replayed_and_missing_states_never_reach_the_token_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "x"})),
        )
        .mount(&server)
        .await;
    let engine = engine(&connector(&server, "")).await;
    let (session, _token) = engine
        .connect()
        .create_session(latchkey_engine::NewConnectSession {
            allowed_origin: Some("http://app.example".into()),
            ..latchkey_engine::NewConnectSession::new("app".parse().unwrap())
        })
        .await
        .unwrap();
    let binding = Secret::new("browser-1");
    let url = engine
        .connect()
        .begin_authorization(&session, "http://lk.example/oauth/callback", &binding)
        .await
        .unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    assert!(state.len() >= 22, "at least 128 bits of state");
    let challenge =
        url.query_pairs().find(|(k, _)| k == "code_challenge_method").unwrap().1.to_string();
    assert_eq!(challenge, "S256");

    for i in 0..1000 {
        let forged = CallbackParams::from_pairs([
            ("state".to_string(), format!("forged-{i}")),
            ("code".to_string(), "c".to_string()),
        ]);
        assert!(engine.connect().complete_authorization(forged, Some(&binding)).await.is_err());
    }
    let missing = CallbackParams::from_pairs([("code".to_string(), "c".to_string())]);
    assert!(engine.connect().complete_authorization(missing, Some(&binding)).await.is_err());
    // The right state without this browser's binding, or with another's, is refused and
    // spends nothing: the flow stays open for its browser.
    for other in [None, Some(Secret::new("other-browser"))] {
        let stolen = CallbackParams::from_pairs([
            ("state".to_string(), state.clone()),
            ("error".to_string(), "access_denied".to_string()),
        ]);
        let (session_seen, err) =
            engine.connect().complete_authorization(stolen, other.as_ref()).await.unwrap_err();
        assert!(session_seen.is_none(), "no session is reported to a forged callback");
        assert_eq!(err.code(), "invalid_state");
    }
    let s = engine.connect().session(&session.id).await.unwrap();
    assert_eq!(s.status, latchkey_store::SessionStatus::Started, "a forged callback kills nothing");
    assert_eq!(token_calls(&server).await.len(), 0);
    let real = CallbackParams::from_pairs([
        ("state".to_string(), state.clone()),
        ("code".to_string(), "c".to_string()),
    ]);
    let (_, record) = engine.connect().complete_authorization(real, Some(&binding)).await.unwrap();
    let replay = CallbackParams::from_pairs([
        ("state".to_string(), state),
        ("code".to_string(), "c".to_string()),
    ]);
    assert!(engine.connect().complete_authorization(replay, Some(&binding)).await.is_err());
    assert_eq!(token_calls(&server).await.len(), 1, "one exchange, for the real callback");
    let s = engine.connect().session(&session.id).await.unwrap();
    assert_eq!(s.status, latchkey_store::SessionStatus::Done);
    assert_eq!(s.result_connection.as_deref(), Some(record.id.as_str()));
    // A link that made its connection cannot start another flow.
    assert!(
        engine
            .connect()
            .begin_authorization(&session, "http://lk.example/oauth/callback", &binding)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_mismatched_issuer_is_refused_before_the_token_request() {
    let server = MockServer::start().await;
    let engine = engine(&connector(&server, &format!("    issuer: {}\n", server.uri()))).await;
    let (session, _) = engine
        .connect()
        .create_session(latchkey_engine::NewConnectSession {
            ..latchkey_engine::NewConnectSession::new("app".parse().unwrap())
        })
        .await
        .unwrap();
    let binding = Secret::new("b");
    let url = engine.connect().begin_authorization(&session, "http://cb", &binding).await.unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let params = CallbackParams::from_pairs([
        ("state".to_string(), state),
        ("code".to_string(), "c".to_string()),
        ("iss".to_string(), "https://evil.example".to_string()),
    ]);
    let (_, err) =
        engine.connect().complete_authorization(params, Some(&binding)).await.unwrap_err();
    assert!(err.to_string().contains("unexpected issuer"), "{err}");
    assert_eq!(token_calls(&server).await.len(), 0);
    let s = engine.connect().session(&session.id).await.unwrap();
    assert_eq!(s.status, latchkey_store::SessionStatus::Failed);
}

#[tokio::test]
async fn private_key_jwt_client_authentication() {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let pem = include_str!("../../core/examples/bench_rsa_key.pem");
    let public = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .unwrap()
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "pkj", "expires_in": 600})))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: client_credentials\n    token_url: {uri}/token\n    client_auth: private_key_jwt\n",
        uri = server.uri()
    );
    let engine = engine(&yaml).await;
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "prov".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new(pem)),
            scopes: vec![],
        })
        .await
        .unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("k".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    let calls = token_calls(&server).await;
    assert_eq!(calls.len(), 1);
    let form: BTreeMap<String, String> =
        form_urlencoded::parse(&calls[0].body).into_owned().collect();
    assert!(!form.contains_key("client_secret"), "the key never leaves");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", server.uri())]);
    let token = jsonwebtoken::decode::<serde_json::Value>(
        &form["client_assertion"],
        &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(token.claims["iss"], "cid");
    assert_eq!(token.claims["sub"], "cid");
    assert!(token.claims["jti"].as_str().unwrap().len() >= 16);
}

#[tokio::test]
async fn device_flow_polls_and_slows_down() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dev-1", "user_code": "WDJB-MJHT", "verification_uri": "https://p.example/device",
            "expires_in": 60, "interval": 0
        })))
        .mount(&server)
        .await;
    for (priority, body) in [
        (1, serde_json::json!({"error": "authorization_pending"})),
        (2, serde_json::json!({"error": "slow_down"})),
    ] {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(body))
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
        ))
        .and(body_string_contains("device_code=dev-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "dev-at", "refresh_token": "dev-rt"}),
        ))
        .with_priority(3)
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    device_authorization_url: {uri}/device\n    token_url: {uri}/token\n",
        uri = server.uri()
    );
    let Setup { engine, clock, .. } = setup(&yaml).await;
    let flow = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(flow.authorization.user_code, "WDJB-MJHT");
    let started = clock.now();
    let record = engine
        .connect()
        .complete_device_authorization(flow, Some("dev".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(record.credentials["access_token"].expose(), "dev-at");
    let polls = token_calls(&server).await;
    assert_eq!(polls.len(), 3, "pending, slow_down, success");
    // Waited on the engine's clock: the least interval (1 s) twice, then 1 + 5 s after slow_down.
    assert_eq!(clock.now() - started, time::Duration::seconds(8), "slow_down adds five seconds");
}

/// The device code's `expires_in` is counted on the engine's clock: a user who never decides
/// ends the polling with `expired` once that time has passed, after one poll per interval.
#[tokio::test]
async fn device_flow_gives_up_when_the_code_expires() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dev-1", "user_code": "WDJB-MJHT", "verification_uri": "https://p.example/device",
            "expires_in": 60, "interval": 10
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "authorization_pending"})),
        )
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    device_authorization_url: {uri}/device\n    token_url: {uri}/token\n",
        uri = server.uri()
    );
    let Setup { engine, clock, .. } = setup(&yaml).await;
    let flow = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
        .unwrap();
    let started = clock.now();
    let real = std::time::Instant::now();
    let outcome = engine.connect().complete_device_authorization(flow, None).await;
    assert!(matches!(outcome, Err(EngineError::Flow(_))), "{outcome:?}");
    assert_eq!(token_calls(&server).await.len(), 6, "one poll every 10 s within the 60 s");
    assert_eq!(clock.now() - started, time::Duration::seconds(70));
    assert!(real.elapsed() < std::time::Duration::from_secs(10), "nothing really waited");
}

#[tokio::test]
async fn device_flow_reads_its_endpoint_from_the_issuers_discovery_document() {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": uri, "token_endpoint": format!("{uri}/token"),
            "device_authorization_endpoint": format!("{uri}/device/auth"),
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/device/auth"))
        .and(body_string_contains("client_id=cid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dev-1", "user_code": "WDJB-MJHT",
            "verification_uri": format!("{uri}/device"), "expires_in": 60, "interval": 3
        })))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    issuer: {uri}\n"
    );
    let engine = engine(&yaml).await;
    let flow = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(flow.authorization.user_code, "WDJB-MJHT");
    assert_eq!(flow.authorization.interval, std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn device_authorization_authenticates_a_private_key_jwt_client() {
    let pem = include_str!("../../core/examples/bench_rsa_key.pem");
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("POST"))
        .and(path("/device"))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ))
        .and(body_string_contains("client_assertion=ey"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dev-1", "user_code": "WDJB-MJHT", "verification_uri": "https://p.example/device",
            "expires_in": 60, "interval": 1
        })))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    device_authorization_url: {uri}/device\n    token_url: {uri}/token\n    client_auth: private_key_jwt\n"
    );
    let engine = engine(&yaml).await;
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "prov".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new(pem)),
            scopes: vec![],
        })
        .await
        .unwrap();
    let flow = engine
        .connect()
        .begin_device_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(flow.authorization.user_code, "WDJB-MJHT");
    let calls = server.received_requests().await.unwrap();
    let body = String::from_utf8_lossy(&calls[0].body).to_string();
    let assertion = body
        .split('&')
        .find_map(|p| p.strip_prefix("client_assertion="))
        .expect("an assertion is sent");
    let claims: serde_json::Value = {
        use base64::Engine as _;
        let payload = assertion.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["aud"], format!("{uri}/token"), "the token endpoint is the audience");
    assert_eq!(claims["iss"], "cid");
}
