//! The operation log as the engine writes it: every request through a connection is one
//! operation with its outcome, upstream status, host and path (query values redacted); a
//! failed refresh and a revocation are operations too; nothing secret is written.

mod common;

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, NewConnection, OperationFilter, OperationKind, OperationOutcome, PageRequest,
    RefreshReason,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANARY: &str = "canary-token-7731";
const QUERY_CANARY: &str = "canary-query-5512";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refreshes_and_revocations_are_operations_without_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({ "error": "invalid_grant" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n    revocation_url: {uri}/revoke\n",
        uri = server.uri()
    );
    let setup = common::setup(&yaml).await;
    let engine = &setup.engine;
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new(CANARY)),
                ("refresh_token".to_string(), Secret::new(format!("{CANARY}-r"))),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    let id = "c1".parse().unwrap();
    let get = |path: &str| ApiRequest { path: path.into(), ..ApiRequest::default() };

    let ok = engine
        .dispatch()
        .request(&id, get(&format!("/items?key={QUERY_CANARY}&page=2")))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    // The engine's clock stands still in tests: move it so the operations are ordered.
    setup.clock.advance(std::time::Duration::from_secs(1));
    let missing = engine.dispatch().request(&id, get("/missing")).await.unwrap();
    assert_eq!(missing.status, 404);
    setup.clock.advance(std::time::Duration::from_secs(1));
    let record = engine.connections().get(&id).await.unwrap();
    let refused = engine
        .renewal()
        .refresh(&id, RefreshReason::Forced { seen_version: record.version })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "needs_reauth");
    setup.clock.advance(std::time::Duration::from_secs(1));
    engine.connections().delete(&id).await.unwrap();
    engine.operations().flush().await;

    let page = engine
        .operations()
        .list(&OperationFilter::in_environment("default"), &PageRequest::first(100))
        .await
        .unwrap();
    let ops: Vec<_> = page.items.iter().rev().collect();
    let kinds: Vec<_> = ops.iter().map(|o| (o.kind, o.outcome, o.upstream_status)).collect();
    assert_eq!(
        kinds,
        [
            (OperationKind::Request, OperationOutcome::Success, Some(200)),
            (OperationKind::Request, OperationOutcome::Failure, Some(404)),
            (OperationKind::Refresh, OperationOutcome::Failure, Some(400)),
            (OperationKind::Revocation, OperationOutcome::Success, None),
        ]
    );
    let first = ops[0];
    assert_eq!(first.connection.as_deref(), Some("c1"));
    assert_eq!(
        (first.integration.as_deref(), first.connector.as_deref()),
        (Some("app"), Some("prov"))
    );
    assert_eq!(first.method.as_deref(), Some("GET"));
    assert_eq!(first.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(first.path.as_deref(), Some("/items?key=…&page=…"));
    assert_eq!(ops[2].error_code.as_deref(), Some("token_refused"));
    assert!(ops[2].message.as_deref().unwrap().contains("invalid_grant"));

    let failures = engine
        .operations()
        .list(
            &OperationFilter {
                outcome: Some(OperationOutcome::Failure),
                ..OperationFilter::in_environment("default")
            },
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    assert_eq!(failures.items.len(), 2);
    let text = format!("{:?}", page.items);
    assert!(!text.contains(CANARY) && !text.contains(QUERY_CANARY), "{text}");
}
