//! Webhooks through the REST API: a secret generated when a URL comes without one and shown
//! once, the secret rotation route, and `/v1/webhook-deliveries` (filters, pages, one delivery
//! with its body, retry), each kept to the caller's environment.

mod support;

use axum::body::{Body, to_bytes};
use latchkey_server::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A call with `key` (the bootstrap key when `None`), in `environment` when given; a JSON body
/// is sent with its content type, none without.
async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", key.unwrap_or(support::API_KEY)));
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = app(state.clone()).oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 4 << 20).await.unwrap();
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, json)
}

async fn ok(
    state: &AppState,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (status, answer) = call(state, method, uri, key, body).await;
    assert!((200..300).contains(&status), "{method} {uri}: {status} {answer}");
    answer
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_webhook_secret_is_generated_when_absent_and_shown_once() {
    let state = support::state("https://prov.example", "", Default::default()).await;
    let made = ok(
        &state,
        "POST",
        "/v1/environments",
        None,
        Some(json!({"id": "prod", "webhook_url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    let secret = made["webhook_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{made}");
    let shown = ok(&state, "GET", "/v1/environments/prod", None, None).await;
    assert!(shown.get("webhook_secret").is_none(), "never shown again: {shown}");
    assert!(!ok(&state, "GET", "/v1/environments", None, None).await.to_string().contains(secret));

    // A new URL alone keeps the secret: nothing generated, nothing shown.
    let moved = ok(
        &state,
        "PATCH",
        "/v1/environments/prod",
        None,
        Some(json!({"webhook_url": "http://127.0.0.1:9/new"})),
    )
    .await;
    assert!(moved.get("webhook_secret").is_none(), "{moved}");
    assert_eq!(moved["webhook_url"], "http://127.0.0.1:9/new");
    // A given secret is taken and not echoed.
    let given = ok(
        &state,
        "PATCH",
        "/v1/environments/default",
        None,
        Some(json!({"webhook_url": "http://127.0.0.1:9/d", "webhook_secret": "given-secret-0123456"})),
    )
    .await;
    assert!(!given.to_string().contains("given-secret"), "{given}");
    let (status, bad) = call(
        &state,
        "POST",
        "/v1/environments",
        None,
        Some(json!({"id": "dev", "webhook_url": "http://127.0.0.1:9/x", "webhook_secret": "whsec_!!not-base64!!"})),
    )
    .await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("webhook_secret")), "{bad}");
}

#[tokio::test]
async fn rotating_returns_the_new_secret_once_and_is_audited() {
    let state = support::state("https://prov.example", "", Default::default()).await;
    let made = ok(
        &state,
        "POST",
        "/v1/environments",
        None,
        Some(json!({"id": "prod", "webhook_url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    let rotate = "/v1/environments/prod/webhook-secret/rotate";
    let rotated = ok(&state, "POST", rotate, None, Some(json!({"overlap_seconds": 3600}))).await;
    let new = rotated["webhook_secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != made["webhook_secret"], "{rotated}");
    assert!(rotated["webhook_previous_secret_expires_at"].is_string(), "{rotated}");
    let shown = ok(&state, "GET", "/v1/environments/prod", None, None).await;
    assert!(shown.get("webhook_secret").is_none());
    assert!(shown["webhook_previous_secret_expires_at"].is_string(), "the overlap shows: {shown}");

    // No body: a generated secret and a day's overlap. A given secret is taken, with none.
    let bare = ok(&state, "POST", rotate, None, None).await;
    assert!(bare["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    let given = ok(
        &state,
        "POST",
        rotate,
        None,
        Some(json!({"secret": "rotated-secret-0123456", "overlap_seconds": 0})),
    )
    .await;
    assert_eq!(given["webhook_secret"], "rotated-secret-0123456");
    assert!(given.get("webhook_previous_secret_expires_at").is_none(), "{given}");

    for (uri, body, field) in [
        (rotate, json!({"overlap_seconds": 604_801}), "overlap_seconds"),
        (rotate, json!({"secret": "short"}), "webhook_secret"),
        ("/v1/environments/default/webhook-secret/rotate", json!({}), "id"),
    ] {
        let (status, answer) = call(&state, "POST", uri, None, Some(body)).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{answer}");
    }
    let (status, _) =
        call(&state, "POST", "/v1/environments/nope/webhook-secret/rotate", None, None).await;
    assert_eq!(status, 404);

    let audit =
        ok(&state, "GET", "/v1/audit?action=environment.webhook_secret_rotate", None, None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.len() >= 3, "{audit}");
    assert!(entries.iter().any(|e| e["object"] == json!({"kind": "environment", "id": "prod"})
        && e["outcome"] == "success"));
    assert!(!audit.to_string().contains("rotated-secret"), "no secret in the audit log");
}

#[tokio::test]
async fn deliveries_list_filter_page_and_keep_to_the_callers_environment() {
    let state = support::state("https://prov.example", "", Default::default()).await;
    // Webhooks nobody answers, and no deliverer runs: every delivery stays pending.
    for (id, url) in [("prod", "http://127.0.0.1:9/prod")] {
        ok(&state, "POST", "/v1/environments", None, Some(json!({"id": id, "webhook_url": url})))
            .await;
    }
    ok(
        &state,
        "PATCH",
        "/v1/environments/default",
        None,
        Some(json!({"webhook_url": "http://127.0.0.1:9/d"})),
    )
    .await;
    let (prod_key, _) = {
        let made = ok(
            &state,
            "POST",
            "/v1/api-keys",
            None,
            Some(json!({"name": "prod-admin", "environment": "prod", "scopes": ["admin"]})),
        )
        .await;
        (made["key"].as_str().unwrap().to_owned(), ())
    };
    for id in ["d1", "d2"] {
        ok(
            &state,
            "POST",
            "/v1/connections?test=false",
            None,
            Some(json!({"id": id, "connector": "prov", "credentials": {"token": "tok-canary"}})),
        )
        .await;
    }
    ok(&state, "DELETE", "/v1/connections/d1", None, None).await;
    ok(
        &state,
        "POST",
        "/v1/connections?test=false",
        Some(&prod_key),
        Some(json!({"id": "p1", "connector": "prov", "credentials": {"token": "t"}})),
    )
    .await;
    state.engine.webhooks().settle().await;

    let all = ok(&state, "GET", "/v1/webhook-deliveries", None, None).await;
    assert_eq!(ids(&all).len(), 3, "{all}");
    let events: Vec<&str> =
        all["items"].as_array().unwrap().iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(events[0], "connection.deleted", "newest first: {all}");
    assert!(all["items"][0].get("body").is_none(), "lists leave bodies out");
    assert!(!all.to_string().contains("tok-canary"));
    let created =
        ok(&state, "GET", "/v1/webhook-deliveries?event=connection.created", None, None).await;
    assert_eq!(ids(&created).len(), 2);
    let d2 = ok(&state, "GET", "/v1/webhook-deliveries?connection=d2", None, None).await;
    assert_eq!(d2["items"][0]["connection_id"], "d2");
    assert_eq!(ids(&d2).len(), 1);
    let pending = ok(&state, "GET", "/v1/webhook-deliveries?status=pending", None, None).await;
    assert_eq!(ids(&pending).len(), 3);
    let failed = ok(&state, "GET", "/v1/webhook-deliveries?status=failed", None, None).await;
    assert!(ids(&failed).is_empty());

    // Pages of one, by cursor.
    let mut walked = Vec::new();
    let mut uri = "/v1/webhook-deliveries?limit=1".to_owned();
    loop {
        let page = ok(&state, "GET", &uri, None, None).await;
        walked.extend(ids(&page).into_iter().map(str::to_owned));
        match page["next_cursor"].as_str() {
            Some(next) => uri = format!("/v1/webhook-deliveries?limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, ids(&all));

    for (uri, field) in [
        ("/v1/webhook-deliveries?status=lost", "status"),
        ("/v1/webhook-deliveries?limit=0", "limit"),
        ("/v1/webhook-deliveries?cursor=nope", "cursor"),
        ("/v1/webhook-deliveries?environment=prod", "environment"),
    ] {
        let (status, answer) = call(&state, "GET", uri, None, None).await;
        assert_eq!((status, answer["field"].as_str()), (400, Some(field)), "{uri}: {answer}");
    }

    // One, with its body; the prod key sees prod's only.
    let first = ids(&all)[0].to_owned();
    let one = ok(&state, "GET", &format!("/v1/webhook-deliveries/{first}"), None, None).await;
    assert_eq!(one["body"]["type"], "connection.deleted", "{one}");
    assert_eq!(one["status"], "pending");
    let theirs = ok(&state, "GET", "/v1/webhook-deliveries", Some(&prod_key), None).await;
    assert_eq!(ids(&theirs).len(), 1);
    assert_eq!(theirs["items"][0]["connection_id"], "p1");
    let (status, answer) =
        call(&state, "GET", &format!("/v1/webhook-deliveries/{first}"), Some(&prod_key), None)
            .await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("webhook_delivery_not_found")));

    // Only a failed delivery is retried.
    let (status, answer) =
        call(&state, "POST", &format!("/v1/webhook-deliveries/{first}/retry"), None, None).await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("conflict")), "{answer}");
}
