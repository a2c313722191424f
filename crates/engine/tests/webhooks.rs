//! Connection events reach the app's webhook, signed per Standard Webhooks, and are retried
//! until it answers; the delivery log shows what became of each.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, DeliveryFilter, DeliveryOptions, DeliveryStatus, Engine, EngineError, EnvironmentId,
    NewConnection, NewEnvironment, Origin, PageRequest, RetrySchedule, WebhookConfig,
    webhooks::sign,
};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A deliverer that retries at once and looks often, for tests.
fn fast() -> DeliveryOptions {
    DeliveryOptions {
        schedule: RetrySchedule { delays: vec![Duration::ZERO; 5], jitter: 0.0 },
        poll: Duration::from_millis(20),
        ..DeliveryOptions::default()
    }
}

/// Whether `request` carries the Standard Webhooks headers and a signature by `secret`.
fn signed_by(request: &wiremock::Request, secret: &Secret) -> bool {
    let header = |name: &str| request.headers.get(name).unwrap().to_str().unwrap().to_owned();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    assert!(id.starts_with("msg_"), "{id}");
    let expected = sign(secret, &id, timestamp.parse().unwrap(), &request.body);
    header("webhook-signature").split(' ').any(|s| s == expected)
}

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
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
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
        assert!(signed_by(request, &secret));
        assert!(request.headers.get("latchkey-signature").is_none(), "the old header is gone");
        let event: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(event["connection_id"], "c1");
        kinds.push(event["type"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"connection.created".to_string()));
    assert!(kinds.contains(&"connection.deleted".to_string()));

    // The retried event was sent twice under one id, and the log says so.
    let ids: Vec<String> = requests
        .iter()
        .map(|r| r.headers.get("webhook-id").unwrap().to_str().unwrap().to_owned())
        .collect();
    let retried = ids.iter().find(|id| ids.iter().filter(|i| i == id).count() == 2).unwrap();
    let mut delivery = None;
    for _ in 0..200 {
        let found =
            engine.webhooks().get(&EnvironmentId::default_environment(), retried).await.unwrap();
        if found.status == DeliveryStatus::Delivered {
            delivery = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivery = delivery.expect("the retried event is delivered");
    assert_eq!((delivery.attempts, delivery.last_status), (2, Some(204)));
    let page = engine
        .webhooks()
        .list(&DeliveryFilter::in_environment("default"), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2, "one row per event");
}

#[tokio::test]
async fn a_forced_integration_delete_marks_its_connections_and_says_why() {
    let hook = MockServer::start().await;
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
    let engine = Engine::builder(Arc::new(store), catalog, net)
        .webhook(WebhookConfig {
            url: format!("{}/hook", hook.uri()).parse().unwrap(),
            secret: Secret::new("whsec-test"),
        })
        .build()
        .await
        .unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let app: latchkey_engine::IntegrationId = "app".parse().unwrap();
    engine
        .integrations()
        .put(latchkey_engine::NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: app.clone(),
            connector: "plain".parse().unwrap(),
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
        })
        .await
        .unwrap();
    for (id, integration) in [("used", Some(app.clone())), ("other", None)] {
        engine
            .connections()
            .create(NewConnection {
                id: Some(id.parse().unwrap()),
                integration,
                credentials: [("token".to_string(), Secret::new("t"))].into(),
                run_test: false,
                ..NewConnection::new("plain".parse().unwrap())
            })
            .await
            .unwrap();
    }
    let refused = engine
        .integrations()
        .delete(&latchkey_engine::EnvironmentId::default_environment(), &app)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "conflict", "{refused}");
    assert!(refused.to_string().contains("used by 1 connection"), "{refused}");

    let marked = engine
        .integrations()
        .delete_forced(&latchkey_engine::EnvironmentId::default_environment(), &app)
        .await
        .unwrap();
    assert_eq!(marked, ["used"]);
    for (id, status) in [
        ("used", latchkey_store::ConnectionStatus::NeedsReauth),
        ("other", latchkey_store::ConnectionStatus::Ok),
    ] {
        assert_eq!(engine.connections().get(&id.parse().unwrap()).await.unwrap().status, status);
    }

    let mut event = None;
    for _ in 0..100 {
        let requests = hook.received_requests().await.unwrap();
        event = requests.iter().find_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            (body["type"] == "connection.needs_reauth").then_some(body)
        });
        if event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = event.expect("a connection.needs_reauth event");
    assert_eq!(event["connection_id"], "used");
    assert!(
        event["message"].as_str().unwrap().contains("integration `app` was deleted"),
        "{event}"
    );
}

/// The requests `server` received at `at`, once there are `n` of them (or after 5 s).
async fn received(server: &MockServer, at: &str, n: usize) -> Vec<wiremock::Request> {
    for _ in 0..100 {
        let got: Vec<_> = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == at)
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} events reached {at}");
}

/// Each request's event, after checking its signature with `secret`: (type, connection id).
fn events(requests: &[wiremock::Request], secret: &Secret) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for request in requests {
        assert!(signed_by(request, secret), "signed with its secret");
        let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        out.push((
            event["type"].as_str().unwrap().to_owned(),
            event["connection_id"].as_str().unwrap().to_owned(),
        ));
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_environment_with_its_own_webhook_gets_its_events_and_no_other() {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&hook).await;
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
    let server_secret = Secret::new("whsec-server-wide");
    let prod_secret = Secret::new("whsec-prod-0123456789");
    let engine = Engine::builder(Arc::new(store), catalog, net)
        .webhook(WebhookConfig {
            url: format!("{}/server", hook.uri()).parse().unwrap(),
            secret: server_secret.clone(),
        })
        .build()
        .await
        .unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let prod: EnvironmentId = "prod".parse().unwrap();
    let prod_hook = WebhookConfig {
        url: format!("{}/prod", hook.uri()).parse().unwrap(),
        secret: prod_secret.clone(),
    };
    // A webhook that cannot sign well, or for an environment that is not there, is refused.
    let weak = WebhookConfig { secret: Secret::new("short"), ..prod_hook.clone() };
    let refused = engine
        .access()
        .create_environment(NewEnvironment { id: prod.clone(), webhook: Some(weak) })
        .await;
    assert!(
        matches!(refused, Err(EngineError::InvalidRequest { ref field, .. }) if field == "webhook_secret"),
        "{refused:?}"
    );
    let missing = engine.access().set_webhook(&prod, Some(prod_hook.clone())).await;
    assert!(matches!(missing, Err(EngineError::EnvironmentNotFound(_))), "{missing:?}");

    let made = engine
        .access()
        .create_environment(NewEnvironment { id: prod.clone(), webhook: Some(prod_hook) })
        .await
        .unwrap();
    assert_eq!(made.webhook_url.as_deref(), Some(format!("{}/prod", hook.uri()).as_str()));
    let connect = |environment: EnvironmentId, id: &'static str| {
        let engine = engine.clone();
        async move {
            engine
                .connections()
                .create(NewConnection {
                    environment,
                    id: Some(id.parse().unwrap()),
                    credentials: [("token".to_string(), Secret::new("tok"))].into(),
                    ..NewConnection::new("plain".parse().unwrap())
                })
                .await
                .unwrap();
        }
    };
    connect(prod.clone(), "in-prod").await;
    connect(EnvironmentId::default_environment(), "in-default").await;
    let to_prod = events(&received(&hook, "/prod", 1).await, &prod_secret);
    let to_server = events(&received(&hook, "/server", 1).await, &server_secret);
    assert_eq!(to_prod, [("connection.created".to_owned(), "in-prod".to_owned())]);
    assert_eq!(to_server, [("connection.created".to_owned(), "in-default".to_owned())]);

    // Cleared: prod's events go to the server-wide webhook again, at once in this process.
    let cleared = engine.access().set_webhook(&prod, None).await.unwrap();
    assert_eq!(cleared.webhook_url, None);
    connect(prod.clone(), "in-prod-2").await;
    let to_server = events(&received(&hook, "/server", 2).await, &server_secret);
    assert!(to_server.contains(&("connection.created".to_owned(), "in-prod-2".to_owned())));
    assert_eq!(received(&hook, "/prod", 1).await.len(), 1, "nothing more to prod's old webhook");
}

#[tokio::test]
async fn a_check_that_fails_then_passes_sends_unhealthy_then_recovered() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let api = MockServer::start().await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let catalog = Catalog::default();
    catalog
        .add_source(
            &format!("id: plain\nname: Plain\nbase_url: {}\nauth: [{{type: bearer}}]\ntest: {{ path: /me }}\n", api.uri()),
            "p.yaml",
            Origin::Custom,
        )
        .unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let secret = Secret::new("whsec-health-0123456789");
    let engine = Engine::builder(Arc::new(store), catalog, net)
        .webhook(WebhookConfig {
            url: format!("{}/hook", hook.uri()).parse().unwrap(),
            secret: secret.clone(),
        })
        .build()
        .await
        .unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(fast()));
    let answer = |status: u16| {
        let api = &api;
        async move {
            api.reset().await;
            Mock::given(method("GET"))
                .and(path("/me"))
                .respond_with(ResponseTemplate::new(status))
                .mount(api)
                .await;
        }
    };
    answer(200).await;
    let id: latchkey_engine::ConnectionId = "h1".parse().unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some(id.clone()),
            credentials: [("token".to_string(), Secret::new("tok-canary"))].into(),
            run_test: true,
            ..NewConnection::new("plain".parse().unwrap())
        })
        .await
        .unwrap();
    answer(401).await;
    let sick = engine.connections().check(&id).await.unwrap();
    assert_eq!(sick.reason, Some(latchkey_store::HealthReason::InvalidCredentials));
    // Still failing: no second `unhealthy`.
    engine.connections().check(&id).await.unwrap();
    answer(200).await;
    engine.connections().check(&id).await.unwrap();

    let requests = received(&hook, "/hook", 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests = if hook.received_requests().await.unwrap().len() > requests.len() {
        received(&hook, "/hook", 4).await
    } else {
        requests
    };
    let kinds: Vec<String> = events(&requests, &secret).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        kinds,
        ["connection.created", "connection.recovered", "connection.unhealthy"],
        "sorted"
    );
    let unhealthy = requests
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
        .find(|e| e["type"] == "connection.unhealthy")
        .unwrap();
    assert_eq!(unhealthy["reason"], "invalid_credentials", "{unhealthy}");
    assert!(unhealthy["message"].as_str().unwrap().contains("401"), "{unhealthy}");
    assert!(!unhealthy.to_string().contains("tok-canary"));
}
