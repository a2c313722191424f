//! `GET /v1/operations`: proxied requests appear as operations with their status and a
//! redacted path, filtered by kind, outcome and status class, refused with the field named for
//! a bad filter, kept to the caller's environment, and never holding the credential.

mod support;

use support::call;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn kinds(page: &Value) -> Vec<(String, Option<u64>)> {
    page["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().to_owned(), o["upstream_status"].as_u64()))
        .collect()
}

#[tokio::test]
async fn proxied_requests_are_listed_filtered_and_kept_to_their_environment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/ok"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let state = support::state(&format!("{}/api", server.uri()), "", Default::default()).await;
    let key = support::API_KEY;
    for uri in ["/v1/proxy/c1/ok?api_key=canary-q", "/v1/proxy/c1/missing"] {
        call(&state, "GET", uri, key, None).await;
        // Operations at the same instant list in id order: keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    state.engine.operations().flush().await;

    let (status, page) = call(&state, "GET", "/v1/operations", key, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(kinds(&page), [("request".into(), Some(404)), ("request".into(), Some(200))]);
    let newest = &page["operations"][1];
    assert_eq!(newest["path"], "/ok?api_key=…");
    assert_eq!((&newest["connection"], &newest["outcome"]), (&json!("c1"), &json!("success")));
    assert!(newest["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(!page.to_string().contains("canary-q") && !page.to_string().contains("\"tok\""));

    let (_, failures) =
        call(&state, "GET", "/v1/operations?outcome=failure&status=4xx", key, None).await;
    assert_eq!(kinds(&failures), [("request".into(), Some(404))]);
    let (_, none) = call(&state, "GET", "/v1/operations?kind=refresh", key, None).await;
    assert_eq!(kinds(&none), []);
    let (_, first) = call(&state, "GET", "/v1/operations?limit=1", key, None).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) =
        call(&state, "GET", &format!("/v1/operations?limit=1&cursor={cursor}"), key, None).await;
    assert_eq!(kinds(&second), [("request".into(), Some(200))]);

    for (query, field) in [
        ("kind=proxy", "kind"),
        ("status=6xx", "status"),
        ("since=yesterday", "since"),
        ("outcome=ok", "outcome"),
    ] {
        let (status, error) =
            call(&state, "GET", &format!("/v1/operations?{query}"), key, None).await;
        assert_eq!((status, &error["field"]), (400, &json!(field)), "{query}: {error}");
    }

    // A key of another environment sees none of them.
    let (status, _) =
        call(&state, "POST", "/v1/environments", key, Some(json!({ "id": "prod" }))).await;
    assert_eq!(status, 201);
    let (status, made) = call(
        &state,
        "POST",
        "/v1/api-keys",
        key,
        Some(
            json!({ "name": "prod reader", "environment": "prod", "scopes": ["connections:read"] }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let (status, page) =
        call(&state, "GET", "/v1/operations", made["key"].as_str().unwrap(), None).await;
    assert_eq!((status, kinds(&page)), (200, vec![]));
}
