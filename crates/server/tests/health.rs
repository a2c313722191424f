//! A connection's health through the API: `healthy` after a passed credential test, `unknown`
//! when stored without one, `unhealthy` with a reason and the last error when a test fails,
//! healthy again when one passes; lists filter on it.

mod support;

use axum::body::Body;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn call(
    state: &latchkey_server::AppState,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = latchkey_server::app(state.clone())
        .oneshot(support::request(method, uri, body))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn answer(upstream: &MockServer, status: u16) {
    upstream.reset().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"name": "ada"})))
        .mount(upstream)
        .await;
}

fn ids(page: &Value) -> Vec<&str> {
    page["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn health_follows_the_credential_tests_and_lists_filter_on_it() {
    let upstream = MockServer::start().await;
    answer(&upstream, 200).await;
    let state = support::state(&upstream.uri(), "test: { path: /me }\n", Default::default()).await;
    let create = |id: &str| json!({"id": id, "connector": "prov", "credentials": {"token": "t"}});

    let (status, tested) = call(&state, "POST", "/v1/connections", Some(create("h1"))).await;
    assert_eq!(status, 201, "{tested}");
    assert_eq!(tested["health"]["state"], "healthy", "{tested}");
    assert!(tested["health"]["last_healthy_at"].is_string(), "{tested}");
    let (status, untested) =
        call(&state, "POST", "/v1/connections?test=false", Some(create("u1"))).await;
    assert_eq!(status, 201, "{untested}");
    assert_eq!(
        untested["health"],
        json!({"state": "unknown", "last_healthy_at": null, "last_checked_at": null})
    );

    let (status, unknown) = call(&state, "GET", "/v1/connections?health=unknown", None).await;
    assert_eq!(status, 200, "{unknown}");
    assert_eq!(ids(&unknown), ["c1", "u1"], "stored without a test: not reported healthy");
    let (_, healthy) = call(&state, "GET", "/v1/connections?health=healthy", None).await;
    assert_eq!(ids(&healthy), ["h1"]);
    let (status, refused) = call(&state, "GET", "/v1/connections?health=fine", None).await;
    assert_eq!((status, &refused["field"]), (400, &json!("health")), "{refused}");

    // The key stops working: the test says so, and the health says why.
    answer(&upstream, 401).await;
    let (status, failed) = call(&state, "POST", "/v1/connections/h1/test", None).await;
    assert!(status >= 400, "{failed}");
    let (_, shown) = call(&state, "GET", "/v1/connections/h1", None).await;
    let health = &shown["health"];
    assert_eq!(health["state"], "unhealthy", "{shown}");
    assert_eq!(health["reason"], "invalid_credentials");
    assert_eq!(health["last_error"]["code"], "credential_test_failed");
    assert_eq!(health["last_healthy_at"], tested["health"]["last_healthy_at"], "kept");
    let (_, unhealthy) = call(&state, "GET", "/v1/connections?health=unhealthy", None).await;
    assert_eq!(ids(&unhealthy), ["h1"]);

    // A 403 is a missing permission, not a dead credential; `check` answers the health itself.
    answer(&upstream, 403).await;
    let (status, checked) = call(&state, "POST", "/v1/connections/h1/check", None).await;
    assert_eq!(status, 200, "a failed check is an answer, not an error: {checked}");
    assert_eq!(
        (&checked["state"], &checked["reason"]),
        (&json!("unhealthy"), &json!("missing_permission"))
    );
    let (_, shown) = call(&state, "GET", "/v1/connections/h1", None).await;
    assert_eq!(shown["health"], checked, "{shown}");
    let (status, _) = call(&state, "POST", "/v1/connections/nope/check", None).await;
    assert_eq!(status, 404);

    // It works again: healthy, with the last error kept on record.
    answer(&upstream, 200).await;
    let (status, _) = call(&state, "POST", "/v1/connections/h1/test", None).await;
    assert_eq!(status, 200);
    let (_, shown) = call(&state, "GET", "/v1/connections/h1", None).await;
    assert_eq!(shown["health"]["state"], "healthy", "{shown}");
    assert_eq!(shown["health"].get("reason"), None);
    assert_eq!(shown["health"]["last_error"]["code"], "credential_test_failed");
}
