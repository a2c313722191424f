//! Connections moved in from another system with their OAuth2 tokens: the imported access token
//! is used as it is, the scheduler refreshes it with the imported refresh token before it
//! expires, and one without a refresh token works until it expires. Also what an import may
//! not carry, and batches written in one transaction.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::setup;
use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, Clock, EngineError, GRANTED_SCOPES, ImportedTokens, NewConnection,
};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn connector(server: &MockServer) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    \
         authorize_url: {uri}/authorize\n    token_url: {uri}/token\n    \
         token_response: {{ keep: {{ instance_url: instance_url }} }}\n  - type: api_key\n",
        uri = server.uri()
    )
}

fn tokens(access: &str, refresh: Option<&str>) -> BTreeMap<String, Secret> {
    let mut map = BTreeMap::from([("access_token".to_string(), Secret::new(access))]);
    if let Some(refresh) = refresh {
        map.insert("refresh_token".to_string(), Secret::new(refresh));
    }
    map
}

fn imported(id: &str, credentials: BTreeMap<String, Secret>) -> NewConnection {
    NewConnection {
        id: Some(id.parse().unwrap()),
        integration: Some("app".parse().unwrap()),
        credentials,
        ..NewConnection::new("prov".parse().unwrap())
    }
}

async fn token_calls(server: &MockServer) -> Vec<Request> {
    let all = server.received_requests().await.unwrap();
    all.into_iter().filter(|r| r.url.path() == "/token").collect()
}

/// `GET /api/me` answers 200 to `Bearer {token}` and 401 to anything else.
async fn api_accepting(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("hello"))
        .with_priority(1)
        .mount(server)
        .await;
}

async fn api_refusing_the_rest(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(server)
        .await;
}

fn me() -> ApiRequest {
    ApiRequest { path: "/me".into(), ..ApiRequest::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_tokens_are_used_then_refreshed_by_the_scheduler_before_they_expire() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=imported-rt"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "fresh-at", "refresh_token": "fresh-rt", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    api_accepting(&server, "imported-at").await;
    api_accepting(&server, "fresh-at").await;
    api_refusing_the_rest(&server).await;
    let setup = setup(&connector(&server)).await;
    let engine = &setup.engine;
    let now = setup.clock.now();
    let expires_at = now + time::Duration::hours(1);

    let record = engine
        .connections()
        .create_imported(
            imported("c1", tokens("imported-at", Some("imported-rt"))),
            ImportedTokens {
                expires_at: Some(expires_at),
                expires_in: None,
                scopes: vec!["read".into(), "write:all".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(record.expires_at, Some(expires_at));
    assert_eq!(record.config.get(GRANTED_SCOPES).map(String::as_str), Some("read write:all"));
    assert_eq!(record.version, 1);

    let id = "c1".parse().unwrap();
    let response = engine.dispatch().request(&id, me()).await.unwrap();
    assert_eq!(response.status.as_u16(), 200, "the imported access token is sent as it is");
    assert!(token_calls(&server).await.is_empty(), "no refresh while the token is fresh");

    // Four minutes before expiry, within the five-minute margin: the scheduler refreshes.
    setup.clock.advance(Duration::from_secs(56 * 60));
    let scheduler = tokio::spawn(engine.renewal().run_scheduler(Duration::from_millis(20)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while token_calls(&server).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the scheduler never refreshed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = token_calls(&server).await;
    assert_eq!(calls.len(), 1);
    let body = String::from_utf8(calls[0].body.clone()).unwrap();
    assert!(body.contains("refresh_token=imported-rt"), "{body}");
    // The write lands right after the call; wait for it.
    let refreshed = loop {
        let record = engine.connections().get(&id).await.unwrap();
        if record.version > 1 {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "the refresh was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The scheduler is left running to the end of the test: aborting it mid-write would drop
    // the in-memory store's one connection, and with it the database.
    let _scheduler = scheduler;
    assert_eq!(refreshed.credentials["access_token"].expose(), "fresh-at");
    assert_eq!(refreshed.credentials["refresh_token"].expose(), "fresh-rt");
    assert_eq!(
        refreshed.config.get(GRANTED_SCOPES).map(String::as_str),
        Some("read write:all"),
        "the granted scopes stay"
    );
    let response = engine.dispatch().request(&id, me()).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(response.status.as_u16(), 200);
}

#[tokio::test]
async fn without_a_refresh_token_an_imported_token_works_until_it_expires() {
    let server = MockServer::start().await;
    api_accepting(&server, "short-at").await;
    api_refusing_the_rest(&server).await;
    let setup = setup(&connector(&server)).await;
    let engine = &setup.engine;
    let record = engine
        .connections()
        .create_imported(
            imported("c1", tokens("short-at", None)),
            ImportedTokens { expires_in: Some(Duration::from_secs(3600)), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(record.expires_at, Some(setup.clock.now() + time::Duration::hours(1)));
    let id = "c1".parse().unwrap();
    let response = engine.dispatch().request(&id, me()).await.unwrap();
    assert_eq!(response.status.as_u16(), 200);

    setup.clock.advance(Duration::from_secs(3601));
    let err = engine.dispatch().request(&id, me()).await.unwrap_err();
    assert!(matches!(err, EngineError::NeedsReauth(ref c) if c == "c1"), "{err:?}");
    assert!(token_calls(&server).await.is_empty(), "nothing to refresh with");
}

#[tokio::test]
async fn what_an_import_may_not_carry_is_refused_by_field() {
    let server = MockServer::start().await;
    let setup = setup(&connector(&server)).await;
    let connections = setup.engine.connections();
    let field_of = |err: EngineError| match err {
        EngineError::InvalidRequest { field, message } => {
            assert!(!message.contains("canary"), "{message}");
            field
        }
        other => panic!("{other:?}"),
    };
    let at = Some(setup.clock.now());
    let api_key = NewConnection {
        auth: Some("api_key".into()),
        credentials: BTreeMap::from([("api_key".to_string(), Secret::new("canary-key"))]),
        ..NewConnection::new("prov".parse().unwrap())
    };
    let cases: Vec<(NewConnection, ImportedTokens, &str)> = vec![
        (api_key.clone(), ImportedTokens { expires_at: at, ..Default::default() }, "expires_at"),
        (api_key, ImportedTokens { scopes: vec!["a".into()], ..Default::default() }, "scopes"),
        (
            imported("c1", tokens("canary-at", None)),
            ImportedTokens {
                expires_at: at,
                expires_in: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            "expires_in",
        ),
        (
            imported("c1", tokens("canary-at", None)),
            ImportedTokens { scopes: vec!["two words".into()], ..Default::default() },
            "scopes",
        ),
        (
            {
                let mut new = imported("c1", tokens("canary-at", None));
                new.credentials.insert("client_secret".into(), Secret::new("canary-cs"));
                new
            },
            ImportedTokens::default(),
            "credentials.client_secret",
        ),
        (
            {
                let mut new = imported("c1", tokens("canary-at", None));
                new.config.insert("elsewhere".into(), "x".into());
                new
            },
            ImportedTokens::default(),
            "config.elsewhere",
        ),
    ];
    for (new, tokens, field) in cases {
        let err = connections.create_imported(new, tokens).await.unwrap_err();
        assert_eq!(field_of(err), field);
    }
    assert!(
        connections.list(&Default::default(), &Default::default()).await.unwrap().items.is_empty(),
        "nothing stored"
    );

    // A value the flow keeps from the token response comes along with imported tokens.
    let mut new = imported("c1", tokens("at", None));
    new.config.insert("instance_url".into(), "https://eu1.example.com".into());
    let record = connections.create_imported(new, ImportedTokens::default()).await.unwrap();
    assert_eq!(record.config["instance_url"], "https://eu1.example.com");
}

#[tokio::test]
async fn a_batch_stores_the_good_items_and_says_why_each_other_failed() {
    let server = MockServer::start().await;
    let setup = setup(&connector(&server)).await;
    let connections = setup.engine.connections();
    connections.create(imported("taken", tokens("at-0", None))).await.unwrap();
    let mut unknown_integration = imported("c3", tokens("at-3", None));
    unknown_integration.integration = Some("nope".parse().unwrap());
    let batch = vec![
        (imported("c1", tokens("at-1", Some("rt-1"))), ImportedTokens::default()),
        (imported("taken", tokens("at-2", None)), ImportedTokens::default()),
        (unknown_integration, ImportedTokens::default()),
        (imported("c1", tokens("at-4", None)), ImportedTokens::default()),
        (imported("c5", tokens("at-5", None)), ImportedTokens::default()),
    ];
    let results = connections.import(batch).await;
    let outcome: Vec<Result<String, &'static str>> = results
        .iter()
        .map(|r| r.as_ref().map(|c| c.id.clone()).map_err(EngineError::code))
        .collect();
    assert_eq!(
        outcome,
        [
            Ok("c1".to_string()),
            Err("conflict"),
            Err("integration_not_found"),
            Err("conflict"),
            Ok("c5".to_string()),
        ]
    );
    let c1 = connections.get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(c1.credentials["refresh_token"].expose(), "rt-1");
    let taken = connections.get(&"taken".parse().unwrap()).await.unwrap();
    assert_eq!(taken.credentials["access_token"].expose(), "at-0", "left as it was");
    assert_eq!(
        connections.list(&Default::default(), &Default::default()).await.unwrap().items.len(),
        3
    );
}

/// A password grant's username and password come along with its tokens; a three-legged
/// OAuth 1.0a connection is imported with its token and token secret (and signs with them).
#[tokio::test]
async fn other_flows_keep_their_own_fields_and_oauth1_tokens_import() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(wiremock::matchers::header_regex(
            "authorization",
            r#"^OAuth .*oauth_token="imported-token""#,
        ))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    id: pw\n    \
         grant: password\n    token_url: {uri}/token\n  - type: oauth1\n    \
         request_token_url: {uri}/rt\n    authorize_url: {uri}/authorize\n    \
         access_token_url: {uri}/at\n",
        uri = server.uri()
    );
    let setup = setup(&yaml).await;
    let connections = setup.engine.connections();
    let mut password = imported("pw-1", tokens("at", Some("rt")));
    password.auth = Some("pw".into());
    password.credentials.insert("username".into(), Secret::new("ada"));
    password.credentials.insert("password".into(), Secret::new("pw"));
    let record = connections.create_imported(password, ImportedTokens::default()).await.unwrap();
    let fields: Vec<&str> = record.credentials.keys().map(String::as_str).collect();
    assert_eq!(fields, ["access_token", "password", "refresh_token", "username"]);

    let oauth1 = |credentials: &[(&str, &str)]| NewConnection {
        auth: Some("oauth1".into()),
        credentials: credentials.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect(),
        ..imported("o1", BTreeMap::new())
    };
    let err = connections.create(oauth1(&[("token", "imported-token")])).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest { field, .. } if field == "credentials.token_secret"),
        "{err:?}"
    );
    connections
        .create(oauth1(&[("token", "imported-token"), ("token_secret", "imported-secret")]))
        .await
        .unwrap();
    let response = setup.engine.dispatch().request(&"o1".parse().unwrap(), me()).await.unwrap();
    assert_eq!(response.status.as_u16(), 200, "signed with the imported token");
}
