//! The audit log through the router: a write, a refused write and a credential read each leave
//! exactly the expected entry, with no secret in it; reads and the proxy leave none; and
//! `GET /v1/audit` pages through them newest first.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewIntegration, Origin};
use latchkey_server::{AppState, app};
use latchkey_store::{AuditFilter, AuditPage, AuditVerdict, Keyring, MasterKey, SqliteStore};
use serde_json::{Value, json};
use support::{API_KEY, request};
use tower::ServiceExt;

/// A credential that must never reach the audit log.
const CANARY: &str = "canary-audit-3f81c07d9e";
/// Another, the refresh token beside it.
const CANARY_REFRESH: &str = "canary-audit-refresh-5a0e62";

/// Two connectors whose APIs are on loopback, where outbound connections are refused
/// (`block_private_addresses`): `prov` (a bearer token, with a credential test) and `oauth`
/// (OAuth2, with integration `oauth-app`); connection `c1` of `prov`.
async fn world() -> AppState {
    let base = "http://127.0.0.1:9";
    let catalog = Catalog::default();
    for yaml in [
        format!(
            "id: prov\nname: Prov\nbase_url: {base}\nauth:\n  - type: bearer\n\
             test: {{ method: GET, path: /me }}\n"
        ),
        format!(
            "id: oauth\nname: OAuth\nbase_url: {base}/api\nauth:\n  - type: oauth2\n    \
             authorize_url: {base}/authorize\n    token_url: {base}/token\n"
        ),
    ] {
        catalog.add_source(&yaml, "test.yaml", Origin::Custom).unwrap();
    }
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig {
        block_private_addresses: true,
        ..latchkey_net::ClientConfig::default()
    })
    .unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    engine
        .integrations()
        .put(NewIntegration {
            id: "oauth-app".parse().unwrap(),
            connector: "oauth".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("client-secret")),
            scopes: Vec::new(),
            environment: latchkey_engine::EnvironmentId::default_environment(),
        })
        .await
        .unwrap();
    let state =
        AppState::new(engine, Secret::new(API_KEY), "http://127.0.0.1:7400".parse().unwrap());
    let (status, _) = call(
        &state,
        "POST",
        "/v1/connections?test=false",
        json!({ "id": "c1", "connector": "prov", "credentials": { "token": "t1" } }),
    )
    .await;
    assert_eq!(status, 201);
    state
}

async fn call(state: &AppState, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
    let mut request = request(method, uri, body);
    let peer: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn audit_count(state: &AppState) -> usize {
    state
        .engine
        .audit()
        .list(&AuditFilter::default(), &AuditPage::newest(1000))
        .await
        .unwrap()
        .len()
}

/// The entry as `GET /v1/audit` shows it, without the parts that vary (time, hash).
fn fixed(entry: &Value) -> Value {
    let mut entry = entry.clone();
    let at = entry["at"].as_str().unwrap().to_owned();
    assert!(at.ends_with('Z') && at.len() >= 20, "RFC 3339 in UTC: {at}");
    assert_eq!(entry["hash"].as_str().unwrap().len(), 64, "32 bytes in hex");
    entry.as_object_mut().unwrap().remove("at");
    entry.as_object_mut().unwrap().remove("hash");
    entry
}

fn expected(seq: i64, action: &str, object: &str, outcome: &str, status: u16) -> Value {
    json!({
        "seq": seq,
        "actor": { "id": "bootstrap", "name": "LATCHKEY_API_KEY" },
        "action": action,
        "object": { "kind": "connection", "id": object },
        "environment": "default",
        "address": "203.0.113.5",
        "outcome": outcome,
        "status": status,
        "detail": null,
    })
}

#[tokio::test]
async fn a_write_a_refused_write_and_a_token_read_each_leave_one_entry() {
    let state = world().await;
    // The set-up's connection, and nothing else.
    assert_eq!(audit_count(&state).await, 1);

    // A write: the created object's id comes from the answer.
    let (status, _) = call(
        &state,
        "POST",
        "/v1/connections?test=false",
        json!({
            "id": "c2",
            "connector": "oauth",
            "integration": "oauth-app",
            "credentials": { "access_token": CANARY, "refresh_token": CANARY_REFRESH },
        }),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(audit_count(&state).await, 2);

    // A write refused: the credential test would go to a private address.
    let (status, body) = call(&state, "POST", "/v1/connections/c1/test", Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("blocked_address")), "{body}");
    assert_eq!(audit_count(&state).await, 3);

    // A credential read.
    let (status, body) = call(&state, "GET", "/v1/connections/c2/token", Value::Null).await;
    assert_eq!((status, body["access_token"].as_str()), (200, Some(CANARY)), "{body}");
    assert_eq!(audit_count(&state).await, 4);

    // Reads, the proxy and unknown routes leave nothing.
    for (method, uri) in [
        ("GET", "/v1/connections"),
        ("GET", "/v1/connections/c2"),
        ("GET", "/v1/proxy/c2/anything"),
        ("POST", "/v1/proxy/c2/anything"),
        ("POST", "/v1/nowhere"),
        ("GET", "/v1/audit"),
    ] {
        call(&state, method, uri, Value::Null).await;
    }
    assert_eq!(audit_count(&state).await, 4);

    let (status, page) = call(&state, "GET", "/v1/audit?limit=3", Value::Null).await;
    assert_eq!(status, 200, "{page}");
    let entries: Vec<Value> = page["entries"].as_array().unwrap().iter().map(fixed).collect();
    assert_eq!(
        entries,
        [
            expected(4, "connection.token_read", "c2", "success", 200),
            expected(3, "connection.test", "c1", "denied", 403),
            expected(2, "connection.create", "c2", "success", 201),
        ]
    );
    assert_eq!(page["next_cursor"], "2");
    let text = page.to_string();
    for form in [
        CANARY.to_owned(),
        hex::encode(CANARY),
        CANARY_REFRESH.to_owned(),
        hex::encode(CANARY_REFRESH),
        API_KEY.to_owned(),
    ] {
        assert!(!text.contains(&form), "no secret in the audit log: {text}");
    }
    assert!(matches!(
        state.engine.audit().verify().await.unwrap(),
        AuditVerdict::Intact { entries: 4, .. }
    ));
}

#[tokio::test]
async fn the_audit_route_filters_pages_and_refuses_bad_parameters() {
    let state =
        support::state("http://127.0.0.1:9", "", latchkey_net::ClientConfig::default()).await;
    for id in ["a", "b", "c"] {
        let (status, _) =
            call(&state, "DELETE", &format!("/v1/connections/{id}"), Value::Null).await;
        assert_eq!(status, 404);
    }
    let (_, page) = call(&state, "DELETE", "/v1/connections/c1", Value::Null).await;
    assert_eq!(page, Value::Null, "204");

    let seqs = |page: &Value| -> Vec<i64> {
        page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    // The deletion left two entries: Latchkey's own record of the revocation, then the request.
    let (_, page) = call(&state, "GET", "/v1/audit?limit=2", Value::Null).await;
    assert_eq!((seqs(&page), page["next_cursor"].as_str()), (vec![5, 4], Some("4")));
    let revocation = &page["entries"][1];
    assert_eq!(revocation["action"], "connection.revocation");
    assert_eq!(revocation["actor"]["id"], "latchkey");
    assert_eq!(revocation["object"]["id"], "c1");
    assert_eq!(
        (&revocation["outcome"], &revocation["detail"]),
        (&json!("success"), &json!("not_supported"))
    );
    let (_, page) = call(&state, "GET", "/v1/audit?limit=2&cursor=4", Value::Null).await;
    assert_eq!((seqs(&page), page["next_cursor"].as_str()), (vec![3, 2], Some("2")));
    let (_, page) = call(&state, "GET", "/v1/audit?limit=2&cursor=2", Value::Null).await;
    assert_eq!((seqs(&page), &page["next_cursor"]), (vec![1], &Value::Null));
    let (_, page) = call(&state, "GET", "/v1/audit?object=connection:b", Value::Null).await;
    assert_eq!(seqs(&page), [2]);
    assert_eq!(page["entries"][0]["outcome"], "failed");
    assert_eq!(page["entries"][0]["status"], 404);
    let (_, page) =
        call(&state, "GET", "/v1/audit?action=connection.*&actor=bootstrap", Value::Null).await;
    assert_eq!(seqs(&page), [5, 3, 2, 1]);
    let (_, page) = call(&state, "GET", "/v1/audit?actor=someone-else", Value::Null).await;
    assert_eq!(seqs(&page), Vec::<i64>::new());
    let (_, page) = call(
        &state,
        "GET",
        "/v1/audit?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z",
        Value::Null,
    )
    .await;
    assert_eq!(seqs(&page), Vec::<i64>::new());
    let (_, page) =
        call(&state, "GET", "/v1/audit?since=2000-01-01T00:00:00%2B02:00", Value::Null).await;
    assert_eq!(seqs(&page), [5, 4, 3, 2, 1]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=abc", "cursor"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("environment=prod", "environment"),
    ] {
        let (status, body) = call(&state, "GET", &format!("/v1/audit?{query}"), Value::Null).await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
}
