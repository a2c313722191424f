//! `GET /v1/connections` and `GET /v1/integrations` as pages: the query they read (filters,
//! `tags[<key>]`, `limit`, `cursor`), what they refuse, and the page shape; tags, metadata and
//! end users through `POST` and `PATCH /v1/connections`, and connect sessions.

mod support;

use axum::body::{Body, to_bytes};
use latchkey_server::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app(state.clone()).oneshot(support::request(method, uri, body)).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 4 << 20).await.unwrap();
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, json)
}

async fn get(state: &AppState, uri: &str) -> Value {
    let (status, body) = call(state, "GET", uri, None).await;
    assert_eq!(status, 200, "{uri}: {body}");
    body
}

/// A refusal: 400 `invalid_request` naming `field`.
async fn refused(state: &AppState, method: &str, uri: &str, body: Option<Value>, field: &str) {
    let (status, answer) = call(state, method, uri, body).await;
    assert_eq!(status, 400, "{method} {uri}: {answer}");
    assert_eq!(answer["code"], "invalid_request", "{answer}");
    assert_eq!(answer["field"], field, "{method} {uri}: {answer}");
}

fn ids(page: &Value) -> Vec<&str> {
    page["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect()
}

/// The `prov` world of `support::state` (connection `c1`, no tags), plus `app` and five
/// connections with end users and tags.
async fn world() -> AppState {
    let state = support::state("https://prov.example", "", Default::default()).await;
    let (status, body) =
        call(&state, "POST", "/v1/integrations", Some(json!({"id": "app", "connector": "prov"})))
            .await;
    assert_eq!(status, 201, "{body}");
    for (id, user, tags) in [
        ("a", "u1", json!({"org": "acme", "plan": "pro"})),
        ("b", "u1", json!({"org": "acme", "plan": "free"})),
        ("c", "u2", json!({"org": "acme", "plan": "pro"})),
        ("d", "u2", json!({"org": "globex", "plan": "pro"})),
        ("e", "u1", json!({})),
    ] {
        let (status, body) = call(
            &state,
            "POST",
            "/v1/connections?test=false",
            Some(json!({
                "id": id, "connector": "prov", "integration": "app",
                "credentials": {"token": "t"},
                "end_user": {"id": user, "email": format!("{user}@example.com")},
                "tags": tags, "metadata": {"n": id},
            })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["tags"], tags);
        assert_eq!(body["end_user"]["id"], user);
        assert_eq!(body["metadata"], json!({"n": id}));
    }
    state
}

#[tokio::test]
async fn connections_filter_on_the_query_and_answer_a_page() {
    let state = world().await;
    let all = get(&state, "/v1/connections").await;
    assert_eq!(ids(&all), ["c1", "a", "b", "c", "d", "e"]);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(all.as_object().unwrap().len(), 2, "connections and next_cursor: {all}");

    for (query, expected) in [
        ("integration=app", vec!["a", "b", "c", "d", "e"]),
        ("end_user=u2", vec!["c", "d"]),
        ("status=ok&end_user=u1", vec!["a", "b", "e"]),
        ("status=needs_reauth", vec![]),
        ("tags[org]=acme", vec!["a", "b", "c"]),
        ("tags[org]=acme&tags[plan]=pro", vec!["a", "c"]),
        ("tags%5Bplan%5D=pro&end_user=u2", vec!["c", "d"]),
        ("integration=app&tags[plan]=pro&end_user=u1", vec!["a"]),
        ("tags[org]=initech", vec![]),
    ] {
        assert_eq!(
            ids(&get(&state, &format!("/v1/connections?{query}")).await),
            expected,
            "{query}"
        );
    }

    // A walk two at a time sees every connection once, in order.
    let mut walked = Vec::new();
    let mut uri = "/v1/connections?limit=2".to_owned();
    loop {
        let page = get(&state, &uri).await;
        assert!(ids(&page).len() <= 2);
        walked.extend(ids(&page).into_iter().map(str::to_owned));
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/connections?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, ["c1", "a", "b", "c", "d", "e"]);
    let filtered = get(&state, "/v1/connections?tags[org]=acme&limit=2").await;
    assert_eq!(ids(&filtered), ["a", "b"]);
    let cursor = filtered["next_cursor"].as_str().unwrap();
    let rest =
        get(&state, &format!("/v1/connections?tags[org]=acme&limit=2&cursor={cursor}")).await;
    assert_eq!((ids(&rest), &rest["next_cursor"]), (vec!["c"], &Value::Null));
    assert_eq!(ids(&get(&state, "/v1/connections?limit=1000").await).len(), 6);
}

#[tokio::test]
async fn bad_list_queries_are_refused_naming_the_parameter() {
    let state = world().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("status=fine", "status"),
        ("tags[Org]=acme", "tags[Org]"),
        ("tags[]=acme", "tags[]"),
        ("tags=acme", "tags"),
        ("tags[org][x]=acme", "tags[org][x]"),
        ("tag[org]=acme", "tag[org]"),
        ("end_user_id=u1", "end_user_id"),
        ("end_user=u1&end_user=u2", "end_user"),
        ("tags[org]=a&tags[org]=b", "tags[org]"),
    ] {
        refused(&state, "GET", &format!("/v1/connections?{query}"), None, field).await;
    }
    for (query, field) in [("limit=1001", "limit"), ("cursor=x", "cursor"), ("status=ok", "status")]
    {
        refused(&state, "GET", &format!("/v1/integrations?{query}"), None, field).await;
    }
}

#[tokio::test]
async fn integrations_answer_pages() {
    let state = world().await;
    for id in ["i2", "i3"] {
        let (status, _) =
            call(&state, "POST", "/v1/integrations", Some(json!({"id": id, "connector": "prov"})))
                .await;
        assert_eq!(status, 201);
    }
    let first = get(&state, "/v1/integrations?limit=2").await;
    let names = |page: &Value| -> Vec<String> {
        page["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["app", "i2"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = get(&state, &format!("/v1/integrations?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["i3"]);
    assert_eq!(second["next_cursor"], Value::Null);
}

#[tokio::test]
async fn tags_metadata_and_end_users_are_checked_and_can_be_changed() {
    let state = world().await;
    let create = |extra: Value| {
        let mut body = json!({"connector": "prov", "credentials": {"token": "t"}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Some(body)
    };
    let uri = "/v1/connections?test=false";
    refused(&state, "POST", uri, create(json!({"tags": {"Org": "acme"}})), "tags.Org").await;
    let big = json!({"metadata": {"k": "x".repeat(16 * 1024)}});
    refused(&state, "POST", uri, create(big), "metadata").await;
    refused(&state, "POST", uri, create(json!({"metadata": [1]})), "metadata").await;
    let email = json!({"end_user": {"id": "u", "email": "nope"}});
    refused(&state, "POST", uri, create(email), "end_user.email").await;
    refused(&state, "POST", uri, create(json!({"end_user_id": "u"})), "end_user_id").await;
    refused(&state, "POST", uri, create(json!({"tags": {"org": 1}})), "tags.org").await;
    assert_eq!(ids(&get(&state, "/v1/connections").await).len(), 6, "nothing stored");

    // PATCH replaces what it is given and keeps the rest; null clears.
    let (status, patched) = call(
        &state,
        "PATCH",
        "/v1/connections/a",
        Some(json!({"tags": {"org": "initech"}, "label": "Main", "end_user": {"id": "u9"}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["tags"], json!({"org": "initech"}));
    assert_eq!(patched["label"], "Main");
    assert_eq!(patched["end_user"], json!({"id": "u9"}));
    assert_eq!(patched["metadata"], json!({"n": "a"}), "kept");
    assert_eq!(ids(&get(&state, "/v1/connections?tags[org]=initech").await), ["a"]);
    assert_eq!(ids(&get(&state, "/v1/connections?tags[org]=acme").await), ["b", "c"]);

    let (status, cleared) = call(
        &state,
        "PATCH",
        "/v1/connections/a",
        Some(json!({"end_user": null, "metadata": {"m": [1, 2]}})),
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["end_user"], Value::Null);
    assert_eq!(cleared["metadata"], json!({"m": [1, 2]}));
    assert_eq!(cleared["label"], "Main");
    assert_eq!(get(&state, "/v1/connections/a").await["metadata"], json!({"m": [1, 2]}));

    refused(&state, "PATCH", "/v1/connections/a", Some(json!({"tags": {"A": "x"}})), "tags.A")
        .await;
    refused(&state, "PATCH", "/v1/connections/a", Some(json!({"status": "ok"})), "status").await;
    let (status, missing) =
        call(&state, "PATCH", "/v1/connections/nope", Some(json!({"label": "x"}))).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("connection_not_found")));
}

#[tokio::test]
async fn connect_sessions_take_an_end_user_tags_and_metadata() {
    let state = world().await;
    let uri = "/v1/connect-sessions";
    let (status, body) = call(
        &state,
        "POST",
        uri,
        Some(json!({
            "integration": "app",
            "end_user": {"id": "u1", "email": "u1@example.com", "display_name": "Ann"},
            "tags": {"org": "acme"}, "metadata": {"crm": 1},
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let session = json!({"integration": "app", "tags": {"Org": "acme"}});
    refused(&state, "POST", uri, Some(session), "tags.Org").await;
    let session = json!({"integration": "app", "end_user": {"id": "u1", "email": "a b@c"}});
    refused(&state, "POST", uri, Some(session), "end_user.email").await;
}

#[tokio::test]
async fn the_openapi_document_describes_pages_and_the_patch() {
    let state = world().await;
    let response = app(state.clone())
        .oneshot(http::Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let doc: Value =
        serde_json::from_slice(&to_bytes(response.into_body(), 4 << 20).await.unwrap()).unwrap();
    let list = &doc["paths"]["/v1/connections"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["integration", "status", "end_user", "tags", "limit", "cursor"]);
    let tags = list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "tags").unwrap();
    assert_eq!(tags["style"], "deepObject");
    assert!(doc["paths"]["/v1/connections/{id}"]["patch"].is_object());
    let page = &doc["components"]["schemas"]["ConnectionPage"]["properties"];
    assert!(page["connections"].is_object() && page["next_cursor"].is_object(), "{page}");
    let ints = &doc["components"]["schemas"]["IntegrationPage"]["properties"];
    assert!(ints["integrations"].is_object() && ints["next_cursor"].is_object(), "{ints}");
}
