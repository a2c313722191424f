//! The whole router, driven through `app(state)` with `oneshot` and no socket: every route group,
//! the API-key check, malformed input (JSON, content type, path, query, unknown routes), and the
//! error table — each engine error class answered with its status, code and public message.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, DiscoveryError, Engine, EngineError, ErrorClass, FlowError, INTERNAL_MESSAGE,
    NewConnection, NewIntegration, Origin, ScriptError,
};
use latchkey_net::NetError;
use latchkey_server::{ApiError, AppState, Class, app, status_of};
use latchkey_store::{Keyring, MasterKey, SqliteStore, Store, StoreError};
use serde_json::{Value, json};
use support::API_KEY;
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The refresh lease of the test engine: short, so that waiting for a held one gives up fast.
const LEASE: Duration = Duration::from_millis(200);

/// An API (`prov`, bearer, with connection `c1` and integration `app`), an OAuth2 provider
/// (`oauth`, with integration `oauth-app` and connection `o1` holding imported tokens), an
/// OpenID provider whose discovery documents are missing (`oidc`, integration `oidc-app`), and
/// a catalog connector (`builtin`).
async fn world() -> (MockServer, AppState) {
    let (server, state, _) = world_and_store().await;
    (server, state)
}

/// [`world`], and the store under its engine.
async fn world_and_store() -> (MockServer, AppState, Arc<dyn Store>) {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(path("/api/ok"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fine"))
        .mount(&server)
        .await;
    Mock::given(path("/api/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "u"})))
        .mount(&server)
        .await;
    let catalog = Catalog::default();
    let sources = [
        (
            format!(
                "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: bearer\n\
                 test: {{ method: GET, path: /user }}\n"
            ),
            Origin::Custom,
        ),
        (
            format!(
                "id: oauth\nname: OAuth\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    \
                 authorize_url: {uri}/authorize\n    token_url: {uri}/token\n"
            ),
            Origin::Custom,
        ),
        (
            format!(
                "id: oidc\nname: OIDC\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    \
                 grant: client_credentials\n    issuer: {uri}/idp\n"
            ),
            Origin::Custom,
        ),
        (
            "id: builtin\nname: B\nbase_url: https://b.example\nauth:\n  - type: bearer\n".into(),
            Origin::Builtin,
        ),
    ];
    for (yaml, origin) in sources {
        catalog.add_source(&yaml, "test.yaml", origin).unwrap();
    }
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let engine =
        Engine::builder(store.clone(), catalog, net).refresh_lease(LEASE).build().await.unwrap();
    for (id, connector) in [("app", "prov"), ("oauth-app", "oauth"), ("oidc-app", "oidc")] {
        engine
            .integrations()
            .put(NewIntegration {
                environment: latchkey_engine::EnvironmentId::default_environment(),
                id: id.parse().unwrap(),
                connector: connector.parse().unwrap(),
                client_id: Some("cid".into()),
                client_secret: Some(Secret::new("client-secret")),
                scopes: Vec::new(),
            })
            .await
            .unwrap();
    }
    let creds = |pairs: &[(&str, &str)]| -> BTreeMap<String, Secret> {
        pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
    };
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: creds(&[("token", "sekrit-c1")]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("o1".parse().unwrap()),
            integration: Some("oauth-app".parse().unwrap()),
            credentials: creds(&[("access_token", "at"), ("refresh_token", "rt")]),
            run_test: false,
            ..NewConnection::new("oauth".parse().unwrap())
        })
        .await
        .unwrap();
    let state =
        AppState::new(engine, Secret::new(API_KEY), "http://127.0.0.1:7400".parse().unwrap());
    (server, state, store)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    /// Asserts a JSON `ErrorBody` with this status and code; returns it.
    fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let content_type = self.headers.get("content-type").map(|v| v.to_str().unwrap());
        assert_eq!(content_type, Some("application/json"), "{status} {code}: {:?}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body
    }
}

async fn send(state: &AppState, request: http::Request<Body>) -> Answer {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 4 << 20).await.unwrap();
    Answer { status, headers, text: String::from_utf8_lossy(&body).into_owned() }
}

fn with_key(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {API_KEY}"))
}

async fn call(state: &AppState, method: &str, uri: &str) -> Answer {
    send(state, with_key(method, uri).body(Body::empty()).unwrap()).await
}

async fn call_json(state: &AppState, method: &str, uri: &str, body: &Value) -> Answer {
    let request = with_key(method, uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(state, request).await
}

#[tokio::test]
async fn public_routes_answer_without_a_key() {
    let (_server, state) = world().await;
    let health = send(&state, http::Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((health.status, health.text.as_str()), (200, "ok"));
    let doc = send(&state, http::Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    for route in ["/v1/connections/{id}", "/v1/connect-sessions", "/v1/proxy/{connection}/{path}"] {
        assert!(doc["paths"][route].is_object(), "{route} in the OpenAPI document");
    }
    let parameters = &doc["paths"]["/v1/connections/{id}"]["get"]["parameters"];
    assert_eq!(parameters[0]["name"], "id", "path parameters stay documented: {parameters}");
    assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["field"].is_object());
    let sdk = send(&state, http::Request::get("/latchkey.js").body(Body::empty()).unwrap()).await;
    assert_eq!(sdk.status, 200);
}

#[tokio::test]
async fn every_v1_route_and_metrics_need_the_api_key() {
    let (_server, state) = world().await;
    let routes = [
        ("GET", "/v1/connectors"),
        ("GET", "/v1/connectors/prov"),
        ("PUT", "/v1/connectors/x"),
        ("DELETE", "/v1/connectors/prov"),
        ("GET", "/v1/integrations"),
        ("POST", "/v1/integrations"),
        ("GET", "/v1/connections"),
        ("POST", "/v1/connections"),
        ("GET", "/v1/connections/c1"),
        ("GET", "/v1/connections/o1/token"),
        ("POST", "/v1/connections/c1/test"),
        ("POST", "/v1/connections/o1/refresh"),
        ("POST", "/v1/connect-sessions"),
        ("GET", "/v1/connect-sessions/s"),
        ("GET", "/v1/proxy/c1/ok"),
        ("GET", "/v1/no-such-route"),
        ("GET", "/metrics"),
    ];
    let keys =
        [None, Some("Bearer wrong-key"), Some(&*format!("Basic {API_KEY}")), Some("Bearer ")];
    for (method, uri) in routes {
        for key in keys {
            let mut request = http::Request::builder().method(method).uri(uri);
            if let Some(key) = key {
                request = request.header("authorization", key);
            }
            let answer = send(&state, request.body(Body::empty()).unwrap()).await;
            let body = answer.error(401, "unauthorized");
            assert!(!answer.text.contains("wrong-key"), "{method} {uri}: {body}");
        }
    }
    let metrics = call(&state, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200);
}

#[tokio::test]
async fn connectors_route_group() {
    let (_server, state) = world().await;
    let list = call(&state, "GET", "/v1/connectors").await;
    assert_eq!(list.status, 200);
    let ids: Vec<String> =
        list.json().as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().into()).collect();
    assert!(ids.contains(&"prov".to_string()) && ids.contains(&"builtin".to_string()), "{ids:?}");
    assert_eq!(call(&state, "GET", "/v1/connectors/prov").await.json()["id"], "prov");
    call(&state, "GET", "/v1/connectors/nope").await.error(404, "connector_not_found");

    let yaml = "id: mine\nname: Mine\nbase_url: https://mine.example\nauth:\n  - type: bearer\n";
    let put = |id: &str, body: &str| {
        with_key("PUT", &format!("/v1/connectors/{id}"))
            .header("content-type", "application/yaml")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let created = send(&state, put("mine", yaml)).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json()["origin"], "custom");
    let body = send(&state, put("other", yaml)).await.error(400, "invalid_request");
    assert_eq!(body["field"], "id", "{body}");
    let body = send(&state, put("bad", "id: bad\nname: [")).await.error(400, "invalid_request");
    assert_eq!(body["field"], "body", "{body}");
    let body = call(&state, "DELETE", "/v1/connectors/builtin").await.error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("not a custom connector"), "{body}");
    assert_eq!(call(&state, "DELETE", "/v1/connectors/mine").await.status, 204);
    call(&state, "DELETE", "/v1/connectors/mine").await.error(404, "connector_not_found");
}

#[tokio::test]
async fn integrations_route_group() {
    let (_server, state) = world().await;
    let created = call_json(
        &state,
        "POST",
        "/v1/integrations",
        &json!({"id": "gh", "connector": "prov", "client_id": "c", "client_secret": "hush"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["has_client_secret"], true);
    assert!(!created.text.contains("hush"), "the secret never comes back");
    let list = call(&state, "GET", "/v1/integrations").await;
    assert_eq!(list.json()["integrations"].as_array().unwrap().len(), 4);
    assert_eq!(list.json()["next_cursor"], Value::Null);
    assert_eq!(call(&state, "GET", "/v1/integrations/gh").await.json()["client_id"], "c");
    call(&state, "GET", "/v1/integrations/nope").await.error(404, "integration_not_found");
    let body =
        call_json(&state, "POST", "/v1/integrations", &json!({"id": "a b", "connector": "prov"}))
            .await
            .error(400, "invalid_request");
    assert_eq!(body["field"], "id");
    call_json(&state, "POST", "/v1/integrations", &json!({"id": "x", "connector": "nope"}))
        .await
        .error(404, "connector_not_found");
    assert_eq!(call(&state, "DELETE", "/v1/integrations/gh").await.status, 204);
    call(&state, "GET", "/v1/integrations/gh").await.error(404, "integration_not_found");
}

#[tokio::test]
async fn connections_route_group() {
    let (server, state) = world().await;
    let list = call(&state, "GET", "/v1/connections").await;
    assert_eq!(list.json()["connections"].as_array().unwrap().len(), 2);
    let one = call(&state, "GET", "/v1/connections/c1").await;
    assert_eq!(one.json()["id"], "c1");
    assert!(!one.text.contains("sekrit-c1"), "no credentials in a summary: {}", one.text);
    call(&state, "GET", "/v1/connections/nope").await.error(404, "connection_not_found");

    let created = call_json(
        &state,
        "POST",
        "/v1/connections",
        &json!({"id": "c2", "connector": "prov", "credentials": {"token": "t2"}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let untested = call_json(
        &state,
        "POST",
        "/v1/connections?test=false",
        &json!({"id": "c3", "connector": "prov", "credentials": {"token": "t3"}}),
    )
    .await;
    assert_eq!(untested.status, 201, "{}", untested.text);
    let body = call_json(
        &state,
        "POST",
        "/v1/connections",
        &json!({"id": "c4", "connector": "prov", "credentials": {"nope": "x"}}),
    )
    .await
    .error(400, "invalid_request");
    assert_eq!(body["field"], "credentials", "{body}");
    let body = call_json(&state, "POST", "/v1/connections", &json!({"connector": "oauth"}))
        .await
        .error(400, "invalid_request");
    assert_eq!(body["field"], "integration", "{body}");

    let tested = call(&state, "POST", "/v1/connections/c1/test").await;
    assert_eq!(tested.status, 200, "{}", tested.text);
    assert_eq!(tested.json()["ran"], true);
    let token = call(&state, "GET", "/v1/connections/o1/token").await;
    assert_eq!(token.status, 200, "{}", token.text);
    assert_eq!(token.json()["access_token"], "at");
    assert_eq!(token.headers["cache-control"], "no-store");
    let body = call(&state, "GET", "/v1/connections/c1/token").await.error(400, "invalid_request");
    assert_eq!(body["field"], "id");
    call(&state, "POST", "/v1/connections/c1/refresh").await.error(400, "invalid_request");

    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at2", "token_type": "bearer", "expires_in": 3600}),
        ))
        .mount(&server)
        .await;
    let refreshed = call(&state, "POST", "/v1/connections/o1/refresh").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(call(&state, "GET", "/v1/connections/o1/token").await.json()["access_token"], "at2");

    assert_eq!(call(&state, "DELETE", "/v1/connections/c2").await.status, 204);
    call(&state, "DELETE", "/v1/connections/c2").await.error(404, "connection_not_found");
}

#[tokio::test]
async fn connect_sessions_route_group() {
    let (_server, state) = world().await;
    let created = call_json(
        &state,
        "POST",
        "/v1/connect-sessions",
        &json!({"integration": "app", "allowed_origin": "https://app.example"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let id = created["id"].as_str().unwrap();
    let url = created["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:7400/connect/"), "{url}");
    let got = call(&state, "GET", &format!("/v1/connect-sessions/{id}")).await;
    assert_eq!(got.json()["status"], "pending");
    // Was a 400 `invalid_request`: an unknown id is a 404 like every other object's.
    call(&state, "GET", "/v1/connect-sessions/nope").await.error(404, "connect_session_not_found");
    let body = call_json(
        &state,
        "POST",
        "/v1/connect-sessions",
        &json!({"integration": "app", "allowed_origin": "https://app.example/path"}),
    )
    .await
    .error(400, "invalid_request");
    assert_eq!(body["field"], "allowed_origin");
    call_json(&state, "POST", "/v1/connect-sessions", &json!({"integration": "nope"}))
        .await
        .error(404, "integration_not_found");
}

/// A session may name a connector that needs no OAuth client instead of an integration: it
/// connects through the integration of the same id, made on first use.
#[tokio::test]
async fn a_connect_session_may_name_a_connector_that_needs_no_client() {
    let (_server, state) = world().await;
    let created =
        call_json(&state, "POST", "/v1/connect-sessions", &json!({"connector": "prov"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    let made = call(&state, "GET", "/v1/integrations/prov").await;
    assert_eq!(made.status, 200, "{}", made.text);
    assert_eq!(made.json()["connector"], "prov");
    let again =
        call_json(&state, "POST", "/v1/connect-sessions", &json!({"connector": "prov"})).await;
    assert_eq!(again.status, 201, "the integration is reused: {}", again.text);

    let connect = state.engine.connect();
    let session = connect.open_session(&latchkey_core::Secret::new(token)).await.unwrap();
    let values = [("token".to_owned(), latchkey_core::Secret::new("t-1"))].into();
    let record = connect.complete_session_form(&session, values).await.unwrap();
    assert_eq!((record.connector.as_str(), record.integration.as_deref()), ("prov", Some("prov")));

    for (body, field) in [
        (json!({"connector": "oauth"}), "connector"),
        (json!({"connector": "prov", "integration": "app"}), "connector"),
        (json!({"allowed_origin": "https://app.example"}), "integration"),
    ] {
        let refused = call_json(&state, "POST", "/v1/connect-sessions", &body).await;
        let error = refused.error(400, "invalid_request");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    let oauth =
        call_json(&state, "POST", "/v1/connect-sessions", &json!({"connector": "oauth"})).await;
    assert!(oauth.text.contains("POST /v1/integrations"), "says what to do: {}", oauth.text);
    call_json(&state, "POST", "/v1/connect-sessions", &json!({"connector": "nope"}))
        .await
        .error(404, "connector_not_found");
}

#[tokio::test]
async fn proxy_route_group() {
    let (server, state) = world().await;
    let ok = call(&state, "GET", "/v1/proxy/c1/ok").await;
    assert_eq!((ok.status, ok.text.as_str()), (200, "fine"));
    let sent = server.received_requests().await.unwrap();
    let sent = sent.iter().find(|r| r.url.path() == "/api/ok").unwrap();
    assert_eq!(sent.headers["authorization"], "Bearer sekrit-c1", "the connection's key, not ours");
    // The API's own 404 passes through as it is; a missing connection is Latchkey's JSON 404.
    assert_eq!(call(&state, "GET", "/v1/proxy/c1/missing").await.status, 404);
    call(&state, "GET", "/v1/proxy/nope/ok").await.error(404, "connection_not_found");
    call(&state, "GET", "/v1/proxy/c1/..%2F..%2Fetc").await.error(400, "unsafe_path");
}

/// Ids are parsed where they enter: a path or body id that breaks its rules is a 400 naming the
/// field and the rule, never the value, and the engine is not asked.
#[tokio::test]
async fn ids_that_break_their_rules_are_refused_where_they_enter() {
    let (_server, state) = world().await;
    for (uri, field, kind) in [
        ("/v1/connections/bad%20id%21", "id", "a connection id"),
        ("/v1/connections/bad%20id%21/token", "id", "a connection id"),
        ("/v1/integrations/bad%20id%21", "id", "an integration id"),
        ("/v1/connectors/Bad.Id", "id", "a connector id"),
        ("/v1/proxy/bad%20id%21/x", "connection", "a connection id"),
        ("/v1/proxy/bad%20id%21", "connection", "a connection id"),
    ] {
        let answer = call(&state, "GET", uri).await;
        let body = answer.error(400, "invalid_request");
        assert_eq!(body["field"], field, "{uri}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(kind) && message.contains("1-64 characters"), "{uri}: {message}");
        assert!(
            !answer.text.contains("bad id") && !answer.text.contains("Bad.Id"),
            "{uri}: {message}"
        );
    }
    let long = "c".repeat(65);
    let answer = call(&state, "DELETE", &format!("/v1/connections/{long}")).await;
    answer.error(400, "invalid_request");
    assert!(!answer.text.contains(&long), "{}", answer.text);

    for (uri, body, place) in [
        ("/v1/connections", json!({"id": "a/b", "connector": "prov"}), "id"),
        ("/v1/connections", json!({"connector": "Prov"}), "connector"),
        ("/v1/connections", json!({"connector": "prov", "integration": ""}), "integration"),
        ("/v1/integrations", json!({"id": "a b", "connector": "prov"}), "id"),
        (
            "/v1/connect-sessions",
            json!({"integration": "app", "connection_id": "x/y"}),
            "connection_id",
        ),
    ] {
        let answer = call_json(&state, "POST", uri, &body).await;
        let error = answer.error(400, "invalid_request");
        assert_eq!(error["field"], place, "{uri}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(place) && message.contains("1-64 characters"), "{uri}: {message}");
        assert!(!answer.text.contains("a/b") && !answer.text.contains("x/y"), "{message}");
    }
}

#[tokio::test]
async fn malformed_json_is_a_json_400_that_echoes_no_value() {
    let (_server, state) = world().await;
    let raw = |body: &str, content_type: Option<&str>| {
        let mut request = with_key("POST", "/v1/connections");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    let body = send(&state, raw("{\"connector\": ", Some("application/json")))
        .await
        .error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    send(&state, raw("not json at all", Some("application/json")))
        .await
        .error(400, "invalid_request");

    // A mistyped secret: the place is named, the value is not repeated.
    let answer = send(
        &state,
        raw(
            r#"{"connector": "prov", "credentials": {"token": 918273645}}"#,
            Some("application/json"),
        ),
    )
    .await;
    let body = answer.error(400, "invalid_request");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("credentials.token") && message.contains("invalid type"), "{message}");
    assert!(!answer.text.contains("918273645"), "{message}");
    let answer = send(
        &state,
        raw(r#"{"connector": "prov", "credentials": "s3cr3t-value"}"#, Some("application/json")),
    )
    .await;
    answer.error(400, "invalid_request");
    assert!(!answer.text.contains("s3cr3t-value"), "{}", answer.text);

    let body =
        send(&state, raw(r#"{"connector": "prov", "colour": "red"}"#, Some("application/json")))
            .await
            .error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");
    let body = send(&state, raw(r#"{"id": "x"}"#, Some("application/json")))
        .await
        .error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("missing field `connector`"), "{body}");
}

#[tokio::test]
async fn a_wrong_content_type_is_a_json_415() {
    let (_server, state) = world().await;
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = with_key("POST", "/v1/integrations");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let body = Body::from(r#"{"id": "x", "connector": "prov"}"#);
        let body =
            send(&state, request.body(body).unwrap()).await.error(415, "unsupported_media_type");
        assert!(body["message"].as_str().unwrap().contains("application/json"), "{body}");
    }
}

#[tokio::test]
async fn bad_path_and_query_parameters_are_json_400s() {
    let (_server, state) = world().await;
    let body = call(&state, "GET", "/v1/connections/%FF%FE").await.error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("`id`"), "{body}");
    call(&state, "GET", "/v1/proxy/%FF/ok").await.error(400, "invalid_request");
    let body = call_json(
        &state,
        "POST",
        "/v1/connections?test=maybe",
        &json!({"connector": "prov", "credentials": {"token": "t"}}),
    )
    .await
    .error(400, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("query string"), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let (_server, state) = world().await;
    for uri in ["/v1/nope", "/v1/connections/c1/nope", "/v1", "/v1/"] {
        let answer = call(&state, "GET", uri).await;
        let body = answer.error(404, "not_found");
        assert!(body["message"].as_str().unwrap().contains("no route"), "{uri}: {body}");
    }
    for (method, uri) in [
        ("PATCH", "/v1/connections"),
        ("PUT", "/v1/connections/c1"),
        ("GET", "/v1/connect-sessions"),
    ] {
        let answer = call(&state, method, uri).await;
        answer.error(405, "method_not_allowed");
        assert!(answer.headers.contains_key("allow"), "{method} {uri}: the methods it takes");
    }
    // Outside `/v1` nothing changes: the hosted pages are HTML, unknown paths axum's plain 404.
    let outside = send(&state, http::Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(outside.status, 404);
}

#[tokio::test]
async fn a_missing_discovery_document_is_a_502_not_a_400() {
    let (server, state) = world().await;
    Mock::given(path("/idp/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let body = call_json(
        &state,
        "POST",
        "/v1/connections",
        &json!({"connector": "oidc", "integration": "oidc-app"}),
    )
    .await
    .error(502, "discovery_failed");
    assert_eq!(body["upstream_status"], 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("/idp"), "{body}");
}

#[tokio::test]
async fn a_refresh_lease_held_elsewhere_is_a_503_with_retry_after() {
    let (server, state, store) = world_and_store().await;
    assert!(
        store.try_lock("refresh:o1", "another-instance", Duration::from_secs(60)).await.unwrap()
    );
    let started = std::time::Instant::now();
    let answer = call(&state, "POST", "/v1/connections/o1/refresh").await;
    let body = answer.error(503, "refresh_in_progress");
    assert_eq!(answer.headers["retry-after"], "1", "the lease, rounded up to whole seconds");
    assert!(body["message"].as_str().unwrap().contains("o1"), "{body}");
    assert!(started.elapsed() >= LEASE * 4, "it waited the holder's longest exchange and a lease");
    assert!(
        server.received_requests().await.unwrap().iter().all(|r| r.url.path() != "/token"),
        "nothing was sent while another instance holds the lease"
    );
}

#[tokio::test]
async fn the_hosted_connect_page_uses_the_public_message_and_status() {
    let (_server, state) = world().await;
    let page =
        send(&state, http::Request::get("/connect/unknown-token").body(Body::empty()).unwrap())
            .await;
    assert_eq!(page.status, 410, "an unusable link: {}", page.text);
    assert!(page.text.contains("invalid, expired or already used"), "{}", page.text);
    let status = send(
        &state,
        http::Request::get("/connect/unknown-token/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((status.status, status.json()["status"].as_str()), (404, Some("unknown")));
}

/// One error of every class the engine raises, as the router answers it.
fn one_of_each() -> Vec<EngineError> {
    let crypto = || latchkey_store::CryptoError::Decrypt;
    vec![
        EngineError::ConnectorNotFound("x".into()),
        EngineError::ConnectionNotFound("x".into()),
        EngineError::IntegrationNotFound("x".into()),
        EngineError::ConnectSessionNotFound("x".into()),
        EngineError::EnvironmentNotFound("x".into()),
        EngineError::ApiKeyNotFound("x".into()),
        EngineError::WebhookDeliveryNotFound("msg_x".into()),
        EngineError::AgentTokenNotFound("agt_x".into()),
        EngineError::WebhookDeliveryNotRetryable { id: "msg_x".into(), status: "delivered" },
        EngineError::AuthMethodNotFound {
            connector: "x".into(),
            method: "m".into(),
            available: "bearer".into(),
        },
        EngineError::invalid("id", "bad id"),
        EngineError::Conflict("connection `x`".into()),
        EngineError::IncompleteIntegration {
            integration: "i".into(),
            message: "has no client id".into(),
        },
        EngineError::Auth(latchkey_core::auth::AuthError::MissingCredential("token".into())),
        EngineError::Auth(latchkey_core::auth::AuthError::Template("bad template".into())),
        EngineError::Connector { connector: "x".into(), message: "base_url".into() },
        EngineError::Discovery {
            issuer: "https://idp".into(),
            error: DiscoveryError::NoDocument { status: Some(404) },
        },
        EngineError::Discovery {
            issuer: "https://idp".into(),
            error: DiscoveryError::IssuerMismatch,
        },
        EngineError::Discovery {
            issuer: "idp".into(),
            error: DiscoveryError::InvalidIssuer("relative URL without a base".into()),
        },
        EngineError::Net(NetError::HostNotAllowed { host: "evil.example".into() }),
        EngineError::Net(NetError::UnsafePath { reason: "dot segment" }),
        EngineError::Net(NetError::InvalidUrl("x".into())),
        EngineError::Net(NetError::Timeout),
        EngineError::Net(NetError::Connect("refused".into())),
        EngineError::Net(NetError::Transport("reset".into())),
        EngineError::Net(NetError::ResponseTooLarge { limit: 10 }),
        EngineError::Net(NetError::BlockedAddress),
        EngineError::Net(NetError::Build("tls".into())),
        EngineError::TestFailed { status: 401 },
        EngineError::Store(StoreError::NotFound { kind: "connection", id: "x".into() }),
        EngineError::Store(StoreError::Conflict { kind: "connection", id: "x".into() }),
        EngineError::Store(StoreError::VersionConflict { id: "x".into(), expected: 1, found: 2 }),
        EngineError::Store(StoreError::CredentialsUnreadable {
            connection: "x".into(),
            field: "token".into(),
            reason: crypto(),
        }),
        EngineError::Store(StoreError::Crypto(crypto())),
        EngineError::Store(StoreError::Database("relation secrets: password=hunter2".into())),
        EngineError::Store(StoreError::Migration("m".into())),
        EngineError::Store(StoreError::WrongKey),
        EngineError::Store(StoreError::MissingKey),
        EngineError::Store(StoreError::KeyRetired { version: 1 }),
        EngineError::Store(StoreError::KeyInUse { version: 1, rows: 2 }),
        EngineError::Flow(FlowError::InvalidState),
        EngineError::Flow(FlowError::Expired),
        EngineError::Flow(FlowError::IssuerMismatch),
        EngineError::Flow(FlowError::SessionUnusable),
        EngineError::Flow(FlowError::AccessDenied),
        EngineError::Flow(FlowError::Provider { code: "server_error".into() }),
        EngineError::Flow(FlowError::MissingCode),
        EngineError::Flow(FlowError::AttemptInProgress),
        EngineError::Token(latchkey_core::oauth2::TokenError::Provider {
            code: "invalid_scope".into(),
            description: None,
            status: 400,
        }),
        EngineError::Token(latchkey_core::oauth2::TokenError::Provider {
            code: "invalid_client".into(),
            description: None,
            status: 401,
        }),
        EngineError::Token(latchkey_core::oauth2::TokenError::Status { status: 503 }),
        EngineError::Token(latchkey_core::oauth2::TokenError::Malformed("no access_token".into())),
        EngineError::NeedsReauth("x".into()),
        EngineError::Script {
            connector: "x".into(),
            event: "before_action".into(),
            error: ScriptError::Thrown("boom".into()),
        },
        EngineError::Script {
            connector: "x".into(),
            event: "before_action".into(),
            error: ScriptError::CpuLimit,
        },
        EngineError::Script {
            connector: "x".into(),
            event: "before_action".into(),
            error: ScriptError::Internal("worker gone".into()),
        },
        EngineError::ScriptAborted { connector: "x".into(), event: "before_action".into() },
        EngineError::RateLimited {
            connector: "x".into(),
            retry_after: Duration::from_millis(1500),
        },
        EngineError::LeaseBusy { connection: "x".into(), lost: true, retry_after: LEASE },
        EngineError::Session(latchkey_core::auth::session::SessionError::Refused(403)),
        EngineError::Session(latchkey_core::auth::session::SessionError::NoToken("body".into())),
        EngineError::Internal("cannot build the request".into()),
    ]
}

#[tokio::test]
async fn the_error_table_answers_every_engine_error_with_its_class() {
    use axum::response::IntoResponse;
    let errors = one_of_each();
    let classes: std::collections::HashSet<ErrorClass> = errors.iter().map(|e| e.class()).collect();
    let missing: Vec<_> = ErrorClass::all().filter(|c| !classes.contains(c)).collect();
    assert!(missing.is_empty(), "no example error for {missing:?}");
    for err in errors {
        let class = err.class();
        let (public, field, upstream, retry) = (
            err.public_message(),
            err.field().map(str::to_owned),
            err.upstream_status(),
            err.retry_after(),
        );
        let response = ApiError::from(err).into_response();
        assert_eq!(response.status(), status_of(Class::Engine(class)), "{class:?}");
        let retry_after =
            response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            retry_after,
            retry.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1).to_string()),
            "{class:?}"
        );
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], class.code(), "{class:?}");
        assert_eq!(body["message"], public, "{class:?}");
        assert_eq!(body["field"].as_str().map(str::to_owned), field, "{class:?}");
        assert_eq!(body["upstream_status"].as_u64().map(|s| s as u16), upstream, "{class:?}");
        if class.fault() == latchkey_engine::Fault::Internal
            && class != ErrorClass::Internal(latchkey_engine::InternalCode::RefreshInProgress)
        {
            assert_eq!(body["message"], INTERNAL_MESSAGE, "{class:?}: no detail leaves");
        }
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
}

#[tokio::test]
async fn query_parameters_a_route_does_not_know_are_refused() {
    let (_server, state) = world().await;
    // Was: every user's connections, the parameter silently ignored (the filter is `end_user`).
    let body =
        call(&state, "GET", "/v1/connections?end_user_id=u1").await.error(400, "invalid_request");
    assert_eq!(body["field"], "end_user_id", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`end_user`") && message.contains("`tags[<key>]`"),
        "the message names what the route takes: {message}"
    );
    for (method, uri, field) in [
        ("GET", "/v1/connectors?page=2", "page"),
        ("GET", "/v1/connections/c1?verbose", "verbose"),
        ("GET", "/v1/integrations/app?connector=prov", "connector"),
        ("DELETE", "/v1/connections/c1?force=true", "force"),
        ("POST", "/v1/connections/c1/test?dry_run=1", "dry_run"),
        ("GET", "/v1/connect-sessions/x?token=t", "token"),
    ] {
        let body = call(&state, method, uri).await.error(400, "invalid_request");
        assert_eq!(body["field"], field, "{method} {uri}: {body}");
        assert!(body["message"].as_str().unwrap().contains("takes no query parameters"), "{body}");
    }
    let body = call_json(
        &state,
        "POST",
        "/v1/connections?test=false&dry_run=1",
        &json!({"connector": "prov", "credentials": {"token": "t"}}),
    )
    .await
    .error(400, "invalid_request");
    assert_eq!(body["field"], "dry_run", "{body}");
    let put = with_key("PUT", "/v1/connectors/mine?overwrite=1")
        .header("content-type", "application/yaml")
        .body(Body::from(
            "id: mine\nname: M\nbase_url: https://m.example\nauth:\n  - type: bearer\n",
        ))
        .unwrap();
    assert_eq!(send(&state, put).await.error(400, "invalid_request")["field"], "overwrite");
    call(&state, "GET", "/v1/connectors/mine").await.error(404, "connector_not_found");
    // Nothing was created by the refused requests; the proxy still passes its query through.
    let all = call(&state, "GET", "/v1/connections").await.json();
    assert_eq!(all["connections"].as_array().unwrap().len(), 2);
    assert_eq!(call(&state, "GET", "/v1/proxy/c1/ok?anything=1").await.status, 200);
    assert_eq!(call(&state, "GET", "/v1/connections?").await.status, 200);
}

#[tokio::test]
async fn deleting_an_integration_in_use_is_refused_unless_forced() {
    let (_server, state) = world().await;
    // `oauth-app` is used by `o1`.
    let body = call(&state, "DELETE", "/v1/integrations/oauth-app").await.error(409, "conflict");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("used by 1 connection;") && message.contains("force"), "{message}");
    assert_eq!(call(&state, "GET", "/v1/integrations/oauth-app").await.status, 200, "kept");
    assert_eq!(call(&state, "GET", "/v1/connections/o1").await.json()["status"], "ok");
    call(&state, "DELETE", "/v1/integrations/oauth-app?force=maybe")
        .await
        .error(400, "invalid_request");
    call(&state, "DELETE", "/v1/integrations/nope?force=true")
        .await
        .error(404, "integration_not_found");

    assert_eq!(call(&state, "DELETE", "/v1/integrations/oauth-app?force=true").await.status, 204);
    call(&state, "GET", "/v1/integrations/oauth-app").await.error(404, "integration_not_found");
    let o1 = call(&state, "GET", "/v1/connections/o1").await.json();
    assert_eq!(o1["status"], "needs_reauth", "{o1}");
    call(&state, "GET", "/v1/connections/o1/token").await.error(409, "needs_reauth");
    // An integration nothing uses goes without `force`; `c1` (no integration) is untouched.
    assert_eq!(call(&state, "DELETE", "/v1/integrations/app").await.status, 204);
    assert_eq!(call(&state, "GET", "/v1/connections/c1").await.json()["status"], "ok");
}

#[tokio::test]
async fn a_connect_session_that_cannot_succeed_is_refused_when_created() {
    let (_server, state) = world().await;
    // `o1` is an `oauth` connection; `app` enables `prov`.
    let body = call_json(
        &state,
        "POST",
        "/v1/connect-sessions",
        &json!({"integration": "app", "connection_id": "o1"}),
    )
    .await
    .error(400, "invalid_request");
    assert_eq!(body["field"], "connection_id", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("`oauth`") && message.contains("`prov`"), "{message}");

    // A connection whose method its connector no longer has (the connector was replaced).
    let put = |yaml: &str| {
        with_key("PUT", "/v1/connectors/moved")
            .header("content-type", "application/yaml")
            .body(Body::from(yaml.to_owned()))
            .unwrap()
    };
    let bearer = "id: moved\nname: M\nbase_url: https://m.example\nauth:\n  - type: bearer\n";
    assert_eq!(send(&state, put(bearer)).await.status, 200);
    let created = call_json(
        &state,
        "POST",
        "/v1/connections?test=false",
        &json!({"id": "m1", "connector": "moved", "credentials": {"token": "t"}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let basic = "id: moved\nname: M\nbase_url: https://m.example\nauth:\n  - type: basic\n";
    assert_eq!(send(&state, put(basic)).await.status, 200);
    call_json(
        &state,
        "POST",
        "/v1/integrations",
        &json!({"id": "moved-app", "connector": "moved"}),
    )
    .await;
    let body = call_json(
        &state,
        "POST",
        "/v1/connect-sessions",
        &json!({"integration": "moved-app", "connection_id": "m1"}),
    )
    .await
    .error(400, "auth_method_not_found");
    assert!(body["message"].as_str().unwrap().contains("basic"), "{body}");
    // Naming a method the connector has is fine, and so is a new connection.
    for body in [
        json!({"integration": "moved-app", "connection_id": "m1", "auth": "basic"}),
        json!({"integration": "moved-app", "connection_id": "m2"}),
        json!({"integration": "app", "connection_id": "c1"}),
    ] {
        let created = call_json(&state, "POST", "/v1/connect-sessions", &body).await;
        assert_eq!(created.status, 201, "{body}: {}", created.text);
    }
}
