//! Scoped API keys and environments, through the real router: every route allows the scope it
//! names and refuses every other with 403 `insufficient_scope`; a key bound to an environment
//! finds nothing of another (404, never 403) on any route; revocation and expiry act at once;
//! a key is stored only as its digest; failing addresses are slowed down.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, Engine, EnvironmentId, ManualClock, NewConnection, NewIntegration, Origin,
};
use latchkey_server::access::ROUTE_SCOPES;
use latchkey_server::{AppState, app};
use latchkey_store::{Keyring, MasterKey, Scope, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ADMIN: &str = "bootstrap-admin-key";

struct Fixture {
    state: AppState,
    clock: Arc<ManualClock>,
    upstream: MockServer,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

/// A server over a SQLite file with environments `default` and `prod`, the integration `gh`
/// in each, the connection `c-default` (default) and `c-prod` (prod), both API-key
/// connections to a mock upstream.
async fn fixture() -> Fixture {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(200).set_body_string("items"))
        .mount(&upstream)
        .await;
    let connector = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\n",
        upstream.uri()
    );
    let catalog = Catalog::default();
    catalog.add_source(&connector, "prov.yaml", Origin::Custom).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let store = SqliteStore::open(&db, Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let engine =
        Engine::builder(Arc::new(store), catalog, net).clock(clock.clone()).build().await.unwrap();
    let prod = EnvironmentId::new("prod").unwrap();
    engine
        .access()
        .create_environment(latchkey_engine::NewEnvironment::new(prod.clone()))
        .await
        .unwrap();
    for (environment, connection) in
        [(EnvironmentId::default_environment(), "c-default"), (prod, "c-prod")]
    {
        engine
            .integrations()
            .put(NewIntegration {
                environment: environment.clone(),
                id: "gh".parse().unwrap(),
                connector: "prov".parse().unwrap(),
                client_id: Some(format!("client-{environment}")),
                client_secret: Some(Secret::new(format!("secret-{environment}"))),
                scopes: vec![],
            })
            .await
            .unwrap();
        engine
            .connections()
            .create(NewConnection {
                environment,
                id: Some(connection.parse().unwrap()),
                credentials: BTreeMap::from([("token".to_string(), Secret::new("tok"))]),
                ..NewConnection::new("prov".parse().unwrap())
            })
            .await
            .unwrap();
    }
    let state = AppState::new(engine, Secret::new(ADMIN), "http://127.0.0.1:7400".parse().unwrap());
    Fixture { state, clock, upstream, _dir: dir, db }
}

struct Answer {
    status: u16,
    body: Value,
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).unwrap();
    let peer: SocketAddr = "203.0.113.7:4000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer { status, body }
}

/// Makes a key through the API with the bootstrap key.
async fn make_key(state: &AppState, body: Value) -> (String, String) {
    let made = call(state, "POST", "/v1/api-keys", ADMIN, &[], Some(body)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    (made.body["key"].as_str().unwrap().to_owned(), made.body["id"].as_str().unwrap().to_owned())
}

/// A concrete request for a route template: ids of objects that exist in `default`.
fn concrete(route: &str) -> String {
    route
        .replace("{connection}", "c-default")
        .replace("{*path}", "items")
        .replace("/connections/{id}", "/connections/c-default")
        .replace("/integrations/{id}", "/integrations/gh")
        .replace("/connectors/{id}", "/connectors/prov")
        .replace("/environments/{id}", "/environments/default")
        .replace("/api-keys/{id}", "/api-keys/key_none")
        .replace("/connect-sessions/{id}", "/connect-sessions/cs_none")
}

#[tokio::test]
async fn every_route_allows_its_scope_and_refuses_the_others() {
    let f = fixture().await;
    let mut keys = BTreeMap::new();
    for scope in Scope::ALL {
        let (key, _) = make_key(
            &f.state,
            json!({ "name": format!("only-{scope}"), "environment": "default", "scopes": [scope] }),
        )
        .await;
        keys.insert(scope, key);
    }
    let mut checked = 0;
    for (method, route, needed) in ROUTE_SCOPES {
        let method = if *method == "*" { "GET" } else { method };
        let uri = concrete(route);
        for (scope, key) in &keys {
            // Refused routes must not act: a DELETE allowed here would remove the fixture, so
            // allowed writes are checked on a fresh fixture below instead.
            let allowed = *scope == Scope::Admin || scope == needed;
            if allowed && method != "GET" {
                continue;
            }
            let answer = call(&f.state, method, &uri, key, &[], None).await;
            if allowed {
                assert_ne!(
                    (answer.status, answer.body["code"].as_str()),
                    (403, Some("insufficient_scope")),
                    "{method} {uri} with {scope}: {}",
                    answer.body
                );
            } else {
                assert_eq!(answer.status, 403, "{method} {uri} with {scope}: {}", answer.body);
                assert_eq!(answer.body["code"], "insufficient_scope");
                let message = answer.body["message"].as_str().unwrap();
                assert!(message.contains(&format!("`{needed}`")), "{message}");
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "only {checked} route/scope pairs checked");
    // The writes each scope allows, once each, on a fresh fixture.
    for (method, route, needed) in ROUTE_SCOPES.iter().filter(|(m, _, _)| *m != "GET" && *m != "*")
    {
        let f = fixture().await;
        let (key, _) = make_key(
            &f.state,
            json!({ "name": "w", "environment": "default", "scopes": [needed] }),
        )
        .await;
        let answer = call(&f.state, method, &concrete(route), &key, &[], None).await;
        assert_ne!(answer.status, 403, "{method} {route} with {needed}: {}", answer.body);
        assert_ne!(answer.status, 401, "{method} {route} with {needed}: {}", answer.body);
    }
}

#[tokio::test]
async fn a_key_bound_to_an_environment_finds_nothing_of_another() {
    let f = fixture().await;
    let (prod, _) = make_key(
        &f.state,
        json!({ "name": "prod-all", "environment": "prod", "scopes": ["admin"] }),
    )
    .await;
    let session = call(
        &f.state,
        "POST",
        "/v1/connect-sessions",
        ADMIN,
        &[],
        Some(json!({ "integration": "gh" })),
    )
    .await;
    assert_eq!(session.status, 201, "{}", session.body);
    let session = session.body["id"].as_str().unwrap().to_owned();

    // Every route that names a default-environment object: not found, never forbidden.
    for (method, uri, code) in [
        ("GET", "/v1/connections/c-default", "connection_not_found"),
        ("POST", "/v1/connections/c-default/test", "connection_not_found"),
        ("POST", "/v1/connections/c-default/refresh", "connection_not_found"),
        ("GET", "/v1/connections/c-default/token", "connection_not_found"),
        ("DELETE", "/v1/connections/c-default", "connection_not_found"),
        ("GET", "/v1/proxy/c-default/items", "connection_not_found"),
        ("GET", &format!("/v1/connect-sessions/{session}"), "connect_session_not_found"),
    ] {
        let answer = call(&f.state, method, uri, &prod, &[], None).await;
        assert_eq!(answer.status, 404, "{method} {uri}: {}", answer.body);
        assert_eq!(answer.body["code"], code, "{method} {uri}");
    }
    // Its own environment's objects are there.
    let own = call(&f.state, "GET", "/v1/proxy/c-prod/items", &prod, &[], None).await;
    assert_eq!((own.status, own.body.as_str()), (200, Some("items")));
    let listed = call(&f.state, "GET", "/v1/connections", &prod, &[], None).await;
    let ids: Vec<&str> = listed.body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c-prod"]);
    let integration = call(&f.state, "GET", "/v1/integrations/gh", &prod, &[], None).await;
    assert_eq!(integration.body["client_id"], "client-prod");
    assert_eq!(integration.body["environment"], "prod");
    // Naming another environment is not a way out.
    let asked = call(
        &f.state,
        "GET",
        "/v1/connections",
        &prod,
        &[("x-latchkey-environment", "default")],
        None,
    )
    .await;
    assert_eq!((asked.status, asked.body["code"].as_str()), (404, Some("environment_not_found")));
    // A new connection made with the prod key lands in prod, and the default key cannot see it.
    let made = call(
        &f.state,
        "POST",
        "/v1/connections?test=false",
        &prod,
        &[],
        Some(json!({ "id": "c-new", "connector": "prov", "credentials": { "token": "t" } })),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["environment"], "prod");
    let (default_key, _) = make_key(
        &f.state,
        json!({ "name": "default-read", "environment": "default", "scopes": ["connections:read"] }),
    )
    .await;
    let hidden = call(&f.state, "GET", "/v1/connections/c-new", &default_key, &[], None).await;
    assert_eq!(hidden.status, 404);
    // The refused delete removed nothing.
    let still = call(&f.state, "GET", "/v1/connections/c-default", ADMIN, &[], None).await;
    assert_eq!(still.status, 200, "{}", still.body);
}

#[tokio::test]
async fn a_key_that_spans_environments_picks_one_per_request() {
    let f = fixture().await;
    let (span, _) =
        make_key(&f.state, json!({ "name": "ops", "scopes": ["connections:read"] })).await;
    let list = |env: Option<&'static str>| {
        let state = f.state.clone();
        let key = span.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                env.map(|e| vec![("x-latchkey-environment", e)]).unwrap_or_default();
            let answer = call(&state, "GET", "/v1/connections", &key, &headers, None).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body["connections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None).await, ["c-default"]);
    assert_eq!(list(Some("default")).await, ["c-default"]);
    assert_eq!(list(Some("prod")).await, ["c-prod"]);
    let unknown = call(
        &f.state,
        "GET",
        "/v1/connections",
        &span,
        &[("x-latchkey-environment", "nope")],
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (404, Some("environment_not_found"))
    );
    let bad = call(
        &f.state,
        "GET",
        "/v1/connections",
        &span,
        &[("x-latchkey-environment", "Bad Env")],
        None,
    )
    .await;
    assert_eq!((bad.status, bad.body["code"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn the_proxy_never_forwards_the_environment_header() {
    let f = fixture().await;
    Mock::given(method("GET"))
        .and(path("/api/echo"))
        .and(header_exists("x-latchkey-environment"))
        .respond_with(ResponseTemplate::new(418))
        .mount(&f.upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/echo"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&f.upstream)
        .await;
    let answer = call(
        &f.state,
        "GET",
        "/v1/proxy/c-prod/echo",
        ADMIN,
        &[("x-latchkey-environment", "prod")],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "the header reached the API: {}", answer.body);
}

#[tokio::test]
async fn revocation_and_expiry_act_at_once_and_keys_are_stored_only_as_digests() {
    let f = fixture().await;
    let (key, id) = make_key(
        &f.state,
        json!({ "name": "billing", "environment": "default", "scopes": ["connections:read"], "expires_in": 3600 }),
    )
    .await;
    assert!(key.starts_with("lk_") && key.len() > 40, "{key}");
    assert_eq!(call(&f.state, "GET", "/v1/connections", &key, &[], None).await.status, 200);

    let listed = call(&f.state, "GET", "/v1/api-keys", ADMIN, &[], None).await;
    let row = listed.body.as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(row["name"], "billing");
    assert_eq!(row["scopes"], json!(["connections:read"]));
    assert!(row.get("key").is_none() && !listed.body.to_string().contains(&key));
    assert!(key.starts_with(row["hint"].as_str().unwrap().trim_end_matches('…')));
    let database = std::fs::read(&f.db).unwrap();
    assert!(
        !database.windows(key.len()).any(|w| w == key.as_bytes()),
        "the key is in the database file"
    );

    let revoked = call(&f.state, "DELETE", &format!("/v1/api-keys/{id}"), ADMIN, &[], None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    let after = call(&f.state, "GET", "/v1/connections", &key, &[], None).await;
    assert_eq!((after.status, after.body["code"].as_str()), (401, Some("unauthorized")));
    let again = call(&f.state, "DELETE", &format!("/v1/api-keys/{id}"), ADMIN, &[], None).await;
    assert_eq!(again.status, 204, "revoking twice is not an error");
    let unknown = call(&f.state, "DELETE", "/v1/api-keys/key_nope", ADMIN, &[], None).await;
    assert_eq!((unknown.status, unknown.body["code"].as_str()), (404, Some("api_key_not_found")));

    let (short, _) = make_key(
        &f.state,
        json!({ "name": "short", "environment": "default", "scopes": ["connections:read"], "expires_in": 60 }),
    )
    .await;
    assert_eq!(call(&f.state, "GET", "/v1/connections", &short, &[], None).await.status, 200);
    f.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(call(&f.state, "GET", "/v1/connections", &short, &[], None).await.status, 401);
}

#[tokio::test]
async fn a_key_is_refused_for_unknown_scopes_and_environments() {
    let f = fixture().await;
    for (body, status, field) in [
        (json!({ "name": "x", "scopes": ["root"] }), 400, "scopes"),
        (json!({ "name": "x", "scopes": [] }), 400, "scopes"),
        (json!({ "name": " ", "scopes": ["proxy"] }), 400, "name"),
        (json!({ "name": "x", "environment": "nope", "scopes": ["proxy"] }), 404, ""),
    ] {
        let answer = call(&f.state, "POST", "/v1/api-keys", ADMIN, &[], Some(body.clone())).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        if !field.is_empty() {
            assert!(
                answer.body["field"].as_str().unwrap_or_default().starts_with(field),
                "{}",
                answer.body
            );
        }
    }
    let made =
        call(&f.state, "POST", "/v1/environments", ADMIN, &[], Some(json!({ "id": "prod" }))).await;
    assert_eq!((made.status, made.body["code"].as_str()), (409, Some("conflict")));
    let listed = call(&f.state, "GET", "/v1/environments", ADMIN, &[], None).await;
    let ids: Vec<&str> =
        listed.body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "prod"]);
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_slowed_down() {
    let f = fixture().await;
    // Paused after the set-up: the store's pool must not see time jump.
    tokio::time::pause();
    // Wrong keys without the `lk_` prefix are refused without a store read.
    for _ in 0..latchkey_server::access::FREE_FAILURES {
        let started = tokio::time::Instant::now();
        assert_eq!(call(&f.state, "GET", "/v1/connections", "wrong", &[], None).await.status, 401);
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }
    let started = tokio::time::Instant::now();
    assert_eq!(call(&f.state, "GET", "/v1/connections", "wrong", &[], None).await.status, 401);
    assert!(started.elapsed() >= std::time::Duration::from_millis(100), "{:?}", started.elapsed());
    let started = tokio::time::Instant::now();
    assert_eq!(call(&f.state, "GET", "/v1/connections", "wrong", &[], None).await.status, 401);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    // A success forgets the address's failures.
    tokio::time::resume();
    assert_eq!(call(&f.state, "GET", "/v1/connections", ADMIN, &[], None).await.status, 200);
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    assert_eq!(call(&f.state, "GET", "/v1/connections", "wrong", &[], None).await.status, 401);
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
}
