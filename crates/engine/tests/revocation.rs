//! Revocation on delete (RFC 7009) against a mock provider: the exact requests (refresh token
//! first, then the access token, with the integration's client authentication), the endpoint
//! found through discovery, and a failing or hanging endpoint that leaves the deletion standing.
//! The outcome reaches the `connection.deleted` event, which never carries a token.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewConnection, Origin, Revocation, WebhookConfig};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ACCESS: &str = "at-canary-123";
const REFRESH: &str = "rt-canary-456";

/// An engine whose connector `prov` has `auth_extra` under its oauth2 method, sending events
/// to `{server}/hook`, with a connection `c1` holding both tokens.
async fn engine_with_connection(server: &MockServer, auth_extra: &str) -> Arc<Engine> {
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n    client_auth: basic\n{auth_extra}",
        uri = server.uri()
    );
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let catalog = Catalog::default();
    catalog.add_source(&yaml, "test.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net)
        .webhook(WebhookConfig {
            url: format!("{}/hook", server.uri()).parse().unwrap(),
            secret: Secret::new("whsec"),
        })
        .build()
        .await
        .unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(latchkey_engine::DeliveryOptions::default()));
    common::add_app(&engine).await;
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new(ACCESS)),
                ("refresh_token".to_string(), Secret::new(REFRESH)),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    engine
}

async fn requests_to(server: &MockServer, to: &str) -> Vec<Request> {
    let all = server.received_requests().await.unwrap();
    all.into_iter().filter(|r| r.url.path() == to).collect()
}

/// The `connection.deleted` event, once delivered.
async fn deleted_event(server: &MockServer) -> serde_json::Value {
    for _ in 0..200 {
        for request in requests_to(server, "/hook").await {
            let body = String::from_utf8(request.body.clone()).unwrap();
            assert!(!body.contains("canary"), "no token in an event: {body}");
            let event: serde_json::Value = serde_json::from_str(&body).unwrap();
            if event["type"] == "connection.deleted" {
                return event;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no connection.deleted event");
}

fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn assert_gone(engine: &Engine) {
    let found = engine.connections().get(&"c1".parse().unwrap()).await;
    assert!(found.is_err(), "the connection is deleted");
}

#[tokio::test]
async fn deleting_revokes_the_refresh_then_the_access_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let extra = format!("    revocation_url: {}/revoke\n", server.uri());
    let engine = engine_with_connection(&server, &extra).await;

    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(outcome, Revocation::Revoked);
    assert_gone(&engine).await;

    let revocations = requests_to(&server, "/revoke").await;
    assert_eq!(revocations.len(), 2);
    assert_eq!(
        form(&revocations[0]),
        pairs(&[("token", REFRESH), ("token_type_hint", "refresh_token")])
    );
    assert_eq!(
        form(&revocations[1]),
        pairs(&[("token", ACCESS), ("token_type_hint", "access_token")])
    );
    for request in &revocations {
        // client_auth: basic, as at the token endpoint: base64("cid:csecret").
        assert_eq!(request.headers["authorization"], "Basic Y2lkOmNzZWNyZXQ=");
        assert_eq!(request.headers["content-type"], "application/x-www-form-urlencoded");
    }
    let event = deleted_event(&server).await;
    assert_eq!(event["revocation"], "revoked");
    assert_eq!(event["connection_id"], "c1");
}

#[tokio::test]
async fn the_revocation_endpoint_is_discovered_from_the_issuer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": server.uri(),
            "token_endpoint": format!("{}/token", server.uri()),
            "revocation_endpoint": format!("{}/oauth/revoke", server.uri()),
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let extra = format!("    issuer: {}\n", server.uri());
    let engine = engine_with_connection(&server, &extra).await;

    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(outcome, Revocation::Revoked);
    assert_eq!(requests_to(&server, "/oauth/revoke").await.len(), 2);
}

#[tokio::test]
async fn a_failing_revocation_endpoint_leaves_the_deletion_standing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(serde_json::json!({"error": "temporarily_unavailable"})),
        )
        .mount(&server)
        .await;
    let extra = format!("    revocation_url: {}/revoke\n", server.uri());
    let engine = engine_with_connection(&server, &extra).await;

    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(
        outcome,
        Revocation::Failed(
            "the provider refused to revoke the refresh token: HTTP 503 (temporarily_unavailable)"
                .into()
        )
    );
    assert_gone(&engine).await;
    // Both tokens were still tried.
    assert_eq!(requests_to(&server, "/revoke").await.len(), 2);
    let event = deleted_event(&server).await;
    assert_eq!(
        event["revocation"],
        "failed: the provider refused to revoke the refresh token: HTTP 503 (temporarily_unavailable)"
    );
}

#[tokio::test]
async fn a_hanging_revocation_endpoint_delays_the_deletion_a_few_seconds_at_most() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let extra = format!("    revocation_url: {}/revoke\n", server.uri());
    let engine = engine_with_connection(&server, &extra).await;

    let started = Instant::now();
    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    let took = started.elapsed();
    assert_eq!(outcome, Revocation::Failed("timed out".into()));
    assert!(took >= latchkey_engine::REVOCATION_TIMEOUT, "{took:?}");
    assert!(took < latchkey_engine::REVOCATION_TIMEOUT + Duration::from_secs(2), "{took:?}");
    assert_gone(&engine).await;
    assert_eq!(deleted_event(&server).await["revocation"], "failed: timed out");
}

#[tokio::test]
async fn without_a_revocation_endpoint_nothing_is_sent() {
    let server = MockServer::start().await;
    let engine = engine_with_connection(&server, "").await;

    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(outcome, Revocation::NotSupported);
    assert_gone(&engine).await;
    let sent = server.received_requests().await.unwrap();
    assert!(sent.iter().all(|r| r.url.path() == "/hook"), "only the event is sent");
    assert_eq!(deleted_event(&server).await["revocation"], "not_supported");
}

/// A provider with its own revoke call: the connector script's `revoke_connection` hook makes
/// it (here GitHub's shape: `DELETE /applications/{client_id}/grant` with the client's Basic
/// credentials and the access token in a JSON body), instead of RFC 7009; the outcome is in
/// the audit log as a `connection.revocation` entry.
#[tokio::test]
async fn a_connector_script_revokes_with_the_providers_own_call() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/api/applications/cid/grant"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let script = r#"    revocation_url: {uri}/revoke
scripts: |
  function revoke_connection() {
    var r = http_request({
      method: 'DELETE',
      url: script_parameters.api + '/applications/' + method_client.client_id + '/grant',
      headers: {
        'authorization': 'Basic ' + btoa(method_client.client_id + ':' + method_client.client_secret),
        'content-type': 'application/json'
      },
      data: {access_token: method_credentials.access_token}
    });
    if (r.status_code !== 204) throw new Error('the provider answered ' + r.status_code);
  }
script_parameters:
  api: {uri}/api
"#
    .replace("{uri}", &server.uri());
    let engine = engine_with_connection(&server, &script).await;

    let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(outcome, Revocation::Revoked);
    assert!(requests_to(&server, "/revoke").await.is_empty(), "RFC 7009 is not used");
    let calls = requests_to(&server, "/api/applications/cid/grant").await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["authorization"], "Basic Y2lkOmNzZWNyZXQ=");
    let body: serde_json::Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "access_token": ACCESS }));
    assert_eq!(deleted_event(&server).await["revocation"], "revoked");

    let entries = engine
        .audit()
        .list(
            &latchkey_store::AuditFilter {
                action: Some("connection.revocation".into()),
                ..Default::default()
            },
            &latchkey_store::AuditPage::newest(100),
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    let record = &entries[0].record;
    assert_eq!(record.object.as_ref().unwrap().id, "c1");
    assert_eq!(record.detail.as_deref(), Some("revoked"));
    assert_eq!(record.outcome, latchkey_store::AuditOutcome::Success);
}

/// A revoke hook that throws is a failed revocation (its message, with any token redacted);
/// one that returns `false` says there is nothing to revoke. The deletion stands either way.
#[tokio::test]
async fn a_failing_or_declining_revoke_hook_leaves_the_deletion_standing() {
    for (body, expected) in [
        (
            "throw new Error('refused ' + method_credentials.access_token);",
            Revocation::Failed(
                "the connector's revoke_connection hook failed: script error: refused [redacted]"
                    .into(),
            ),
        ),
        ("return false;", Revocation::NotSupported),
    ] {
        let server = MockServer::start().await;
        let script = format!("scripts: |\n  function revoke_connection() {{ {body} }}\n");
        let engine = engine_with_connection(&server, &script).await;
        let outcome = engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();
        assert_eq!(outcome, expected);
        assert!(!outcome.to_string().contains(ACCESS), "{outcome}");
        assert_gone(&engine).await;
        let entries = engine
            .audit()
            .list(&latchkey_store::AuditFilter::default(), &latchkey_store::AuditPage::newest(100))
            .await
            .unwrap();
        let revocation = entries.iter().find(|e| e.record.action == "connection.revocation");
        let record = &revocation.expect("a connection.revocation entry").record;
        assert_eq!(record.detail.as_deref(), Some(expected.to_string().as_str()));
    }
}
