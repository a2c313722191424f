//! Agent tokens through the REST API: the token works only on its connection's proxy, within its
//! methods and path globs, until its budget is spent or it expires or is revoked; the upstream
//! receives the connection's real credential and the agent never sees it.

mod support;

use support::call;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn an_agent_token_works_only_within_its_grants() {
    let upstream = MockServer::start().await;
    // The connection's credential (`tok`, see support::state) reaches the API.
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true })))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/none"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    let state = support::state(&format!("{}/api", upstream.uri()), "", Default::default()).await;
    let admin = support::API_KEY;
    let grant = json!({
        "connection": "c1", "name": "triage bot", "methods": ["get"],
        "paths": ["/repos/*/issues", "/user"], "expires_in": 600, "max_requests": 3,
    });
    let (status, made) = call(&state, "POST", "/v1/agent-tokens", admin, Some(grant)).await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("lk_agt_"));
    assert_eq!(made["methods"], json!(["GET"]));

    let (status, body) =
        call(&state, "GET", "/v1/proxy/c1/repos/acme/issues?state=open", &token, None).await;
    assert_eq!((status, &body), (200, &json!({ "ok": true })));
    let sent = upstream.received_requests().await.unwrap();
    assert_eq!(sent[0].url.path(), "/api/repos/acme/issues");
    assert_eq!(sent[0].headers["authorization"], "Bearer tok", "the real credential upstream");
    assert!(!sent[0].headers["authorization"].to_str().unwrap().contains("lk_agt_"));

    // Outside the grants: another method, path, connection or route.
    for (method, uri, code) in [
        ("POST", "/v1/proxy/c1/repos/acme/issues", "outside_grant"),
        ("GET", "/v1/proxy/c1/repos/acme/keys", "outside_grant"),
        ("GET", "/v1/proxy/c1/repos/acme/../../user/keys", "outside_grant"),
        ("GET", "/v1/proxy/other/user", "outside_grant"),
        ("GET", "/v1/connections", "outside_grant"),
        ("GET", "/v1/connections/c1/token", "outside_grant"),
    ] {
        let (status, error) = call(&state, method, uri, &token, None).await;
        assert_eq!(
            (status, error["code"].as_str().unwrap()),
            (403, code),
            "{method} {uri}: {error}"
        );
    }
    // The budget: 3 requests in all, the refused ones not counted.
    for _ in 0..2 {
        let (status, _) = call(&state, "GET", "/v1/proxy/c1/user", &token, None).await;
        assert_eq!(status, 200);
    }
    let (status, error) = call(&state, "GET", "/v1/proxy/c1/user", &token, None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (429, "agent_token_spent"), "{error}");

    let (_, list) = call(&state, "GET", "/v1/agent-tokens", admin, None).await;
    let listed = &list["agent_tokens"][0];
    assert_eq!((&listed["used_requests"], &listed["token"]), (&json!(3), &Value::Null), "{list}");

    // Revoked: 401 at once; an unknown token too.
    let other = json!({ "connection": "c1", "methods": ["GET"], "paths": ["/**"] });
    let (_, made) = call(&state, "POST", "/v1/agent-tokens", admin, Some(other)).await;
    let second = made["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&state, "GET", "/v1/proxy/c1/anything/deep", &second, None).await.0, 200);
    let id = made["id"].as_str().unwrap();
    assert_eq!(call(&state, "DELETE", &format!("/v1/agent-tokens/{id}"), admin, None).await.0, 204);
    let (status, error) = call(&state, "GET", "/v1/proxy/c1/user", &second, None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (401, "unauthorized"));
    assert_eq!(call(&state, "DELETE", &format!("/v1/agent-tokens/{id}"), admin, None).await.0, 404);
    assert_eq!(call(&state, "GET", "/v1/proxy/c1/user", "lk_agt_forged", None).await.0, 401);

    // Expired.
    let short =
        json!({ "connection": "c1", "methods": ["GET"], "paths": ["/**"], "expires_in": 1 });
    let (_, made) = call(&state, "POST", "/v1/agent-tokens", admin, Some(short)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, error) =
        call(&state, "GET", "/v1/proxy/c1/user", made["token"].as_str().unwrap(), None).await;
    assert_eq!((status, error["code"].as_str().unwrap()), (401, "agent_token_expired"), "{error}");

    // Bad grants are refused with the field named.
    for (body, field) in [
        (json!({ "connection": "c1", "methods": [], "paths": ["/**"] }), "methods"),
        (json!({ "connection": "c1", "methods": ["GET"], "paths": ["user"] }), "paths"),
        (
            json!({ "connection": "c1", "methods": ["GET"], "paths": ["/**"], "expires_in": 86401 }),
            "expires_in",
        ),
        (
            json!({ "connection": "c1", "methods": ["GET"], "paths": ["/**"], "max_requests": 0 }),
            "max_requests",
        ),
    ] {
        let (status, error) = call(&state, "POST", "/v1/agent-tokens", admin, Some(body)).await;
        assert_eq!((status, &error["field"]), (400, &json!(field)), "{error}");
    }
    let (status, _) = call(
        &state,
        "POST",
        "/v1/agent-tokens",
        admin,
        Some(json!({ "connection": "nope", "methods": ["GET"], "paths": ["/**"] })),
    )
    .await;
    assert_eq!(status, 404);
    // Creation and revocation are in the audit log; the token is not.
    let (_, audit) = call(&state, "GET", "/v1/audit?action=agent_token.*", admin, None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"agent_token.create") && actions.contains(&"agent_token.revoke"),
        "{audit}"
    );
    assert!(!audit.to_string().contains("lk_agt_"));
}
