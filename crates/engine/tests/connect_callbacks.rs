//! Connect callbacks against a mock provider: every failed flow marks its session failed with a
//! code (and never a forged one), a provider that names the code otherwise (Amazon's
//! `spapi_oauth_code`), kept callback parameters, link lifetimes, retries and reconnect links.

mod common;

use std::time::Duration;

use common::{Setup, setup};
use latchkey_core::Secret;
use latchkey_engine::{CallbackParams, ConnectSession, EngineError, NewConnectSession};
use latchkey_store::{ConnectionRecord, SessionStatus};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REDIRECT: &str = "http://lk.example/oauth/callback";

fn connector(server: &MockServer, extra: &str) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nconfig:\n  - {{key: region, optional: true, pattern: '[a-z]+'}}\n  - {{key: seller, optional: true, pattern: '[A-Z0-9]+'}}\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n{extra}",
        uri = server.uri()
    )
}

async fn provider(status: u16, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

async fn token_calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == "/token").count()
}

fn pairs(state: &str, extra: &[(&str, &str)]) -> CallbackParams {
    let mut all = vec![("state".to_string(), state.to_string())];
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    CallbackParams::from_pairs(all)
}

async fn session(setup: &Setup, new: NewConnectSession) -> ConnectSession {
    setup.engine.connect().create_session(new).await.unwrap().0
}

/// Opens the session's link in a browser bound by `binding`; the state sent to the provider.
async fn begin(setup: &Setup, session: &ConnectSession, binding: &Secret) -> String {
    let url = setup.engine.connect().begin_authorization(session, REDIRECT, binding).await.unwrap();
    url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
}

async fn answer(
    setup: &Setup,
    state: &str,
    extra: &[(&str, &str)],
    binding: &Secret,
) -> Result<ConnectionRecord, (Option<ConnectSession>, EngineError)> {
    let params = pairs(state, extra);
    setup.engine.connect().complete_authorization(params, Some(binding)).await.map(|(_, r)| r)
}

/// The session's status and error code, as the API shows them.
async fn standing(setup: &Setup, id: &str) -> (SessionStatus, Option<String>) {
    let s = setup.engine.connect().session(id).await.unwrap();
    let (status, error) = setup.engine.connect().standing(&s);
    (status, error.map(|e| e.code))
}

#[tokio::test]
async fn a_refusal_at_the_provider_fails_the_session_with_access_denied_and_may_be_retried() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &s, &binding).await;

    let (seen, err) = answer(&setup, &state, &[("error", "access_denied")], &binding)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), "access_denied");
    assert_eq!(seen.unwrap().allowed_origin, s.allowed_origin, "the page learns the session");
    assert_eq!(
        standing(&setup, &s.id).await,
        (SessionStatus::Failed, Some("access_denied".into()))
    );
    let stored = setup.engine.connect().session(&s.id).await.unwrap().error.unwrap();
    assert_eq!(stored.message, "access was not granted (the user or the provider refused)");
    assert_eq!(token_calls(&server).await, 0);

    // The same link may try again until it expires; that attempt clears the error.
    let state = begin(&setup, &s, &binding).await;
    assert_eq!(standing(&setup, &s.id).await, (SessionStatus::Started, None));
    let record = answer(&setup, &state, &[("code", "c")], &binding).await.unwrap();
    let done = setup.engine.connect().session(&s.id).await.unwrap();
    assert_eq!(done.status, SessionStatus::Done);
    assert_eq!(done.result_connection, Some(record.id));
    assert!(setup.engine.connect().begin_authorization(&s, REDIRECT, &binding).await.is_err());
}

#[tokio::test]
async fn provider_errors_are_kept_to_the_characters_of_an_error_code() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &s, &binding).await;
    let (_, err) =
        answer(&setup, &state, &[("error", "server_error<script>")], &binding).await.unwrap_err();
    assert_eq!(err.code(), "provider_error");
    let stored = setup.engine.connect().session(&s.id).await.unwrap().error.unwrap();
    assert_eq!(stored.code, "provider_error");
    assert_eq!(stored.message, "the provider returned an error: server_errorscript");
}

#[tokio::test]
async fn a_forged_callback_neither_spends_the_state_nor_fails_the_session() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &s, &binding).await;
    for forged in [None, Some(Secret::new("attacker"))] {
        for extra in [&[("error", "access_denied")][..], &[("code", "attacker-code")][..]] {
            let (seen, err) = setup
                .engine
                .connect()
                .complete_authorization(pairs(&state, extra), forged.as_ref())
                .await
                .unwrap_err();
            assert!(seen.is_none());
            assert_eq!(err.code(), "invalid_state");
        }
    }
    assert_eq!(standing(&setup, &s.id).await, (SessionStatus::Started, None));
    assert_eq!(token_calls(&server).await, 0);
    answer(&setup, &state, &[("code", "c")], &binding).await.unwrap();
    assert_eq!(standing(&setup, &s.id).await.0, SessionStatus::Done);
}

#[tokio::test]
async fn a_refused_token_exchange_fails_the_session_with_token_refused() {
    let server = provider(400, serde_json::json!({"error": "invalid_grant"})).await;
    let setup = setup(&connector(&server, "")).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &s, &binding).await;
    let (_, err) = answer(&setup, &state, &[("code", "c")], &binding).await.unwrap_err();
    assert_eq!(err.code(), "token_refused");
    assert_eq!(
        standing(&setup, &s.id).await,
        (SessionStatus::Failed, Some("token_refused".into()))
    );
    assert_eq!(token_calls(&server).await, 1);
}

#[tokio::test]
async fn an_expired_flow_a_missing_code_and_a_wrong_issuer_each_fail_the_session() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let issuer = format!("    issuer: {}\n", server.uri());
    let setup = setup(&connector(&server, &issuer)).await;
    let binding = Secret::new("browser");
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);
    let cases: [Case; 3] = [
        (&[("code", "c")], true, "flow_expired"),
        (&[("iss", "https://idp.example")], false, "missing_code"),
        (&[("code", "c"), ("iss", "https://evil.example")], false, "issuer_mismatch"),
    ];
    for (extra, late, code) in cases {
        let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
        let state = begin(&setup, &s, &binding).await;
        if late {
            setup.clock.advance(Duration::from_secs(11 * 60));
        }
        let (seen, err) = answer(&setup, &state, extra, &binding).await.unwrap_err();
        assert!(seen.is_some(), "{code}");
        assert_eq!(err.code(), code);
        assert_eq!(standing(&setup, &s.id).await, (SessionStatus::Failed, Some(code.into())));
    }
    assert_eq!(token_calls(&server).await, 0);
}

#[tokio::test]
async fn a_session_nothing_can_finish_reads_as_failed_flow_expired() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let unopened = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let started = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    begin(&setup, &started, &Secret::new("b")).await;
    setup.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        standing(&setup, &unopened.id).await,
        (SessionStatus::Failed, Some("flow_expired".into()))
    );
    // An attempt begun before the link expired has its own ten minutes.
    assert_eq!(standing(&setup, &started.id).await, (SessionStatus::Started, None));
    setup.clock.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        standing(&setup, &started.id).await,
        (SessionStatus::Failed, Some("flow_expired".into()))
    );
}

#[tokio::test]
async fn a_new_attempt_cancels_the_one_it_replaces() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let first = Secret::new("first-window");
    let second = Secret::new("second-window");
    let abandoned = begin(&setup, &s, &first).await;
    let state = begin(&setup, &s, &second).await;
    let (_, err) = answer(&setup, &abandoned, &[("code", "c")], &first).await.unwrap_err();
    assert_eq!(err.code(), "invalid_state");
    answer(&setup, &state, &[("code", "c")], &second).await.unwrap();
    assert_eq!(token_calls(&server).await, 1);
}

#[tokio::test]
async fn the_code_may_come_under_another_name_and_other_parameters_are_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=ANaRwQJUaAb"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "Atza|x", "refresh_token": "Atzr|y", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let callback =
        "    callback: {code_param: spapi_oauth_code, keep: {seller: selling_partner_id}}\n";
    let setup = setup(&connector(&server, callback)).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");

    // Without the named parameter there is no code, even with a `code`.
    let state = begin(&setup, &s, &binding).await;
    let (_, err) = answer(&setup, &state, &[("code", "ANaRwQJUaAb")], &binding).await.unwrap_err();
    assert_eq!(err.code(), "missing_code");

    let state = begin(&setup, &s, &binding).await;
    let extra = [("spapi_oauth_code", "ANaRwQJUaAb"), ("selling_partner_id", "A3EXAMPLE")];
    let record = answer(&setup, &state, &extra, &binding).await.unwrap();
    assert_eq!(record.config.get("seller").map(String::as_str), Some("A3EXAMPLE"));
    assert!(!record.config.values().any(|v| v.contains("ANaRwQJUaAb")), "the code is no config");
}

#[tokio::test]
async fn a_kept_parameter_must_match_its_config_pattern() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let callback = "    callback: {keep: {seller: selling_partner_id, region: region}}\n";
    let setup = setup(&connector(&server, callback)).await;
    let s = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &s, &binding).await;
    let extra = [("code", "c"), ("selling_partner_id", "../../admin"), ("region", "eu")];
    let (_, err) = answer(&setup, &state, &extra, &binding).await.unwrap_err();
    assert_eq!((err.code(), err.field()), ("invalid_request", Some("config.seller")));
    assert_eq!(token_calls(&server).await, 0, "checked before the code is spent");
    assert_eq!(standing(&setup, &s.id).await.0, SessionStatus::Failed);
}

#[tokio::test]
async fn a_link_lives_between_a_minute_and_seven_days() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    for bad in [0, 59, 7 * 86_400 + 1, u64::MAX] {
        let err = setup
            .engine
            .connect()
            .create_session(NewConnectSession {
                expires_in: Some(bad),
                ..NewConnectSession::new("app".parse().unwrap())
            })
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.field()), ("invalid_request", Some("expires_in")), "{bad}");
    }
    let week = session(
        &setup,
        NewConnectSession {
            expires_in: Some(7 * 86_400),
            ..NewConnectSession::new("app".parse().unwrap())
        },
    )
    .await;
    assert_eq!(week.expires_at - week.created_at, time::Duration::days(7));
    let default = session(&setup, NewConnectSession::new("app".parse().unwrap())).await;
    assert_eq!(default.expires_at - default.created_at, time::Duration::minutes(10));
    // Six days on, the link still opens.
    let new = NewConnectSession {
        expires_in: Some(7 * 86_400),
        ..NewConnectSession::new("app".parse().unwrap())
    };
    let (_, token) = setup.engine.connect().create_session(new).await.unwrap();
    setup.clock.advance(Duration::from_secs(6 * 86_400));
    assert!(setup.engine.connect().open_session(&token).await.is_ok());
    setup.clock.advance(Duration::from_secs(86_400));
    assert!(setup.engine.connect().open_session(&token).await.is_err(), "past seven days");
}

#[tokio::test]
async fn a_reconnect_link_reauthorises_the_connection_in_place() {
    let server = provider(200, serde_json::json!({"access_token": "at"})).await;
    let setup = setup(&connector(&server, "")).await;
    let env = latchkey_engine::EnvironmentId::default_environment();
    let first = session(
        &setup,
        NewConnectSession {
            tags: [("team".to_string(), "blue".to_string())].into(),
            config: [("region".to_string(), "eu".to_string())].into(),
            ..NewConnectSession::new("app".parse().unwrap())
        },
    )
    .await;
    let binding = Secret::new("browser");
    let state = begin(&setup, &first, &binding).await;
    let made = answer(&setup, &state, &[("code", "c")], &binding).await.unwrap();

    let id: latchkey_engine::ConnectionId = made.id.parse().unwrap();
    let new = setup.engine.connect().reconnecting(env.clone(), id.clone()).await.unwrap();
    let again = session(&setup, new).await;
    assert_eq!(again.connection_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(again.config.get("region").map(String::as_str), Some("eu"), "config carried");
    let state = begin(&setup, &again, &binding).await;
    let redone = answer(&setup, &state, &[("code", "c2")], &binding).await.unwrap();
    assert_eq!((redone.id, redone.tags, redone.created_at), (made.id, made.tags, made.created_at));

    // Only a connection of this environment, and not together with connection_id.
    let other: latchkey_engine::EnvironmentId = "other".parse().unwrap();
    let err = setup.engine.connect().reconnecting(other, id.clone()).await.unwrap_err();
    assert_eq!(err.code(), "connection_not_found");
    let missing = "conn_none".parse().unwrap();
    let err = setup.engine.connect().reconnecting(env.clone(), missing).await.unwrap_err();
    assert_eq!(err.code(), "connection_not_found");
    let err = setup
        .engine
        .connect()
        .create_session(NewConnectSession {
            reconnect: Some(id.clone()),
            connection_id: Some(id),
            ..NewConnectSession::new("app".parse().unwrap())
        })
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("reconnect"));
}
