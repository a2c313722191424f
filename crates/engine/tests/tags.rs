//! Tags, metadata and end users: checked on the way in, copied from a connect session to the
//! connection it makes, carried by every webhook event, and changeable afterwards.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{
    Catalog, ConnectionDetails, ConnectionFilter, EndUser, Engine, EngineError, IntegrationId,
    NewConnectSession, NewConnection, NewIntegration, Origin, PageRequest, Tags, WebhookConfig,
    page_request,
};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLAIN: &str =
    "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n";

async fn engine(hook: Option<&MockServer>) -> Arc<Engine> {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let catalog = Catalog::default();
    catalog.add_source(PLAIN, "p.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let mut builder = Engine::builder(Arc::new(store), catalog, net);
    if let Some(hook) = hook {
        builder = builder.webhook(WebhookConfig {
            url: format!("{}/hook", hook.uri()).parse().unwrap(),
            secret: Secret::new("whsec"),
        });
    }
    let engine = builder.build().await.unwrap();
    tokio::spawn(engine.webhooks().run_deliverer(latchkey_engine::DeliveryOptions::default()));
    engine
        .integrations()
        .put(NewIntegration {
            id: "plain-app".parse().unwrap(),
            connector: "plain".parse().unwrap(),
            client_id: None,
            client_secret: None,
            scopes: vec![],
            environment: latchkey_engine::EnvironmentId::default_environment(),
        })
        .await
        .unwrap();
    engine
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn new(id: &str) -> NewConnection {
    NewConnection {
        id: Some(id.parse().unwrap()),
        integration: Some("plain-app".parse().unwrap()),
        credentials: [("token".to_string(), Secret::new("tok"))].into(),
        ..NewConnection::new("plain".parse().unwrap())
    }
}

fn field(error: EngineError) -> String {
    match error {
        EngineError::InvalidRequest { field, .. } => field,
        other => panic!("expected invalid_request, got {other}"),
    }
}

/// The JSON bodies the hook received, once there are `n` of them.
async fn events(hook: &MockServer, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let got = hook.received_requests().await.unwrap();
        if got.len() >= n {
            return got.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} events arrived");
}

#[tokio::test]
async fn invalid_values_are_refused_naming_the_field_and_nothing_is_stored() {
    let engine = engine(None).await;
    let big = serde_json::json!({ "k": "x".repeat(16 * 1024) }).as_object().unwrap().clone();
    let eleven: Tags = (0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let cases: Vec<(NewConnection, &str)> = vec![
        (NewConnection { tags: tags(&[("Org", "acme")]), ..new("c1") }, "tags.Org"),
        (NewConnection { tags: eleven, ..new("c1") }, "tags"),
        (NewConnection { tags: tags(&[("org", &"v".repeat(256))]), ..new("c1") }, "tags.org"),
        (NewConnection { metadata: big, ..new("c1") }, "metadata"),
        (
            NewConnection {
                end_user: Some(EndUser {
                    id: "u1".into(),
                    email: Some("not-an-address".into()),
                    display_name: None,
                }),
                ..new("c1")
            },
            "end_user.email",
        ),
        (NewConnection { end_user: Some(EndUser::new("")), ..new("c1") }, "end_user.id"),
    ];
    for (bad, expected) in cases {
        assert_eq!(field(engine.connections().create(bad).await.unwrap_err()), expected);
    }
    let listed = engine.connections().list(&Default::default(), &Default::default()).await.unwrap();
    assert!(listed.items.is_empty(), "nothing stored");

    let session = NewConnectSession {
        tags: tags(&[("Org", "acme")]),
        ..NewConnectSession::new("plain-app".parse().unwrap())
    };
    assert_eq!(field(engine.connect().create_session(session).await.unwrap_err()), "tags.Org");

    let c = engine.connections().create(new("c1")).await.unwrap();
    let id = c.id.parse().unwrap();
    let details = ConnectionDetails { tags: Some(tags(&[("a b", "x")])), ..Default::default() };
    assert_eq!(field(engine.connections().update(&id, details).await.unwrap_err()), "tags.a b");
    let label = ConnectionDetails { label: Some(Some("l".repeat(256))), ..Default::default() };
    assert_eq!(field(engine.connections().update(&id, label).await.unwrap_err()), "label");

    for (limit, cursor, expected) in
        [(Some(0), None, "limit"), (Some(1001), None, "limit"), (None, Some("nope!"), "cursor")]
    {
        assert_eq!(field(page_request(limit, cursor).unwrap_err()), expected);
    }
    assert_eq!(page_request(Some(1000), None).unwrap(), PageRequest::first(1000));
    assert_eq!(page_request(None, None).unwrap(), PageRequest::first(100));
    let oversize = PageRequest::first(1001);
    let refused = engine.connections().list(&Default::default(), &oversize).await.unwrap_err();
    assert_eq!(field(refused), "limit");
}

#[tokio::test]
async fn a_connect_session_passes_its_end_user_tags_and_metadata_to_the_connection_and_events() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let engine = engine(Some(&hook)).await;
    let user = EndUser {
        id: "u-42".into(),
        email: Some("ann@example.com".into()),
        display_name: Some("Ann".into()),
    };
    let (session, _token) = engine
        .connect()
        .create_session(NewConnectSession {
            end_user: Some(user.clone()),
            tags: tags(&[("org", "acme"), ("plan", "pro")]),
            metadata: serde_json::json!({ "crm": 7 }).as_object().unwrap().clone(),
            ..NewConnectSession::new("plain-app".parse().unwrap())
        })
        .await
        .unwrap();
    let record = engine
        .connect()
        .complete_session_form(&session, [("token".to_string(), Secret::new("tok"))].into())
        .await
        .unwrap();
    assert_eq!(record.end_user, Some(user.clone()));
    assert_eq!(record.tags, tags(&[("org", "acme"), ("plan", "pro")]));
    assert_eq!(record.metadata["crm"], 7);
    let stored = engine.connections().get(&record.id.parse().unwrap()).await.unwrap();
    assert_eq!((stored.end_user, stored.tags), (record.end_user.clone(), record.tags.clone()));

    let created = &events(&hook, 1).await[0];
    assert_eq!(created["type"], "connection.created");
    assert_eq!(
        created["end_user"],
        serde_json::json!({ "id": "u-42", "email": "ann@example.com", "display_name": "Ann" })
    );
    assert_eq!(created["tags"], serde_json::json!({ "org": "acme", "plan": "pro" }));

    // A change of tags is an event of its own, carrying the new tags; so is the deletion.
    let id = record.id.parse().unwrap();
    let details =
        ConnectionDetails { tags: Some(tags(&[("org", "globex")])), ..Default::default() };
    let changed = engine.connections().update(&id, details).await.unwrap();
    assert_eq!(changed.tags, tags(&[("org", "globex")]));
    assert_eq!(changed.end_user, Some(user), "kept");
    assert_eq!(changed.version, record.version + 1);
    engine.connections().delete(&id).await.unwrap();
    let all = events(&hook, 3).await;
    let by_type = |kind: &str| all.iter().find(|e| e["type"] == kind).unwrap().clone();
    assert_eq!(by_type("connection.updated")["tags"], serde_json::json!({ "org": "globex" }));
    assert_eq!(by_type("connection.deleted")["tags"], serde_json::json!({ "org": "globex" }));
    assert_eq!(by_type("connection.deleted")["end_user"]["id"], "u-42");
}

#[tokio::test]
async fn one_end_user_may_hold_several_connections_of_one_integration() {
    let engine = engine(None).await;
    for id in ["a", "b", "c"] {
        engine
            .connections()
            .create(NewConnection { end_user: Some(EndUser::new("same")), ..new(id) })
            .await
            .unwrap();
    }
    // Through connect sessions too: two sessions for the same user and integration.
    for _ in 0..2 {
        let (session, _) = engine
            .connect()
            .create_session(NewConnectSession {
                end_user: Some(EndUser::new("same")),
                ..NewConnectSession::new(IntegrationId::new("plain-app").unwrap())
            })
            .await
            .unwrap();
        engine
            .connect()
            .complete_session_form(&session, [("token".to_string(), Secret::new("t"))].into())
            .await
            .unwrap();
    }
    let filter = ConnectionFilter {
        integration: Some("plain-app".into()),
        end_user: Some("same".into()),
        ..Default::default()
    };
    let page = engine.connections().list(&filter, &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next, None);
}
