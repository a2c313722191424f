//! Connection events reach the app's webhook, signed, and are retried until it answers.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewConnection, Origin, WebhookConfig, events::signature};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn events_are_signed_and_retried() {
    let hook = MockServer::start().await;
    // The first delivery fails; the retry succeeds.
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;

    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let catalog = Catalog::default();
    catalog
        .add_source(
            "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
            "p.yaml",
            Origin::Custom,
        )
        .unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let secret = Secret::new("whsec-test");
    let engine = Engine::builder(Arc::new(store), catalog, net)
        .webhook(WebhookConfig {
            url: format!("{}/hook", hook.uri()).parse().unwrap(),
            secret: secret.clone(),
        })
        .build()
        .await
        .unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: [("token".to_string(), Secret::new("tok-canary"))].into(),
            ..NewConnection::new("plain".parse().unwrap())
        })
        .await
        .unwrap();
    engine.connections().delete(&"c1".parse().unwrap()).await.unwrap();

    let mut requests = Vec::new();
    for _ in 0..100 {
        requests = hook.received_requests().await.unwrap();
        if requests.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(requests.len() >= 3, "two events, one of them retried: got {}", requests.len());
    let mut kinds = Vec::new();
    for request in &requests {
        let body = String::from_utf8(request.body.clone()).unwrap();
        assert!(!body.contains("tok-canary"), "no secret in events");
        let header = request.headers.get("latchkey-signature").unwrap().to_str().unwrap();
        let timestamp: i64 =
            header.trim_start_matches("t=").split(',').next().unwrap().parse().unwrap();
        assert_eq!(header, signature(&secret, timestamp, body.as_bytes()));
        let event: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(event["connection_id"], "c1");
        kinds.push(event["type"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"connection.created".to_string()));
    assert!(kinds.contains(&"connection.deleted".to_string()));
}
