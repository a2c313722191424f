//! The operation log exported as OpenTelemetry traces over OTLP/HTTP: a collector (a wiremock
//! server taking `POST /v1/traces`) receives one span per operation, decoded here with the
//! OpenTelemetry project's own protobuf definitions (`opentelemetry-proto`); the spans carry the
//! operation's attributes and never a secret; a collector that is down costs the requests
//! nothing; export works with the database log turned off.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, Catalog, Engine, NewConnection, OperationFilter, Origin, OtlpConfig, PageRequest,
};
use latchkey_store::{Keyring, MasterKey, SqliteStore, Store};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use prost::Message as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANARY: &str = "canary-key-4471";
const QUERY_CANARY: &str = "canary-query-9021";
const COLLECTOR_KEY: &str = "collector-key-118";

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn collector() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "application/x-protobuf"),
        )
        .mount(&server)
        .await;
    server
}

/// An engine with one API-key connection `c1` to `upstream`, exporting to `otlp`.
async fn engine(upstream: &MockServer, otlp: OtlpConfig, database_log: bool) -> Arc<Engine> {
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: api_key\n    apply: {{ in: header, name: X-Api-Key }}\n",
        upstream.uri()
    );
    let catalog = Catalog::default();
    catalog.add_source(&yaml, "test.yaml", Origin::Custom).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap(),
    );
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(store, catalog, net)
        .operation_log(database_log)
        .otlp(otlp)
        .build()
        .await
        .unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([("api_key".to_string(), Secret::new(CANARY))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    engine
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

/// Every export the collector received, decoded, and the raw bodies.
async fn received(collector: &MockServer) -> (Vec<ExportTraceServiceRequest>, Vec<Vec<u8>>) {
    let requests = collector.received_requests().await.unwrap_or_default();
    let bodies: Vec<Vec<u8>> = requests.iter().map(|r| r.body.clone()).collect();
    let decoded = bodies
        .iter()
        .map(|body| ExportTraceServiceRequest::decode(body.as_slice()).unwrap())
        .collect();
    (decoded, bodies)
}

fn spans(exports: &[ExportTraceServiceRequest]) -> Vec<Span> {
    exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn attributes(span: &Span) -> HashMap<String, any_value::Value> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let AnyValue { value } = kv.value.clone()?;
            Some((kv.key.clone(), value?))
        })
        .collect()
}

fn text(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_becomes_a_span_with_its_attributes_and_no_secret() {
    let upstream = upstream().await;
    let collector = collector().await;
    let otlp = OtlpConfig {
        endpoint: collector.uri().parse().unwrap(),
        headers: vec![("x-collector-key".into(), Secret::new(COLLECTOR_KEY))],
    };
    let engine = engine(&upstream, otlp, true).await;
    let id = "c1".parse().unwrap();
    let ok = engine
        .dispatch()
        .request(&id, get(&format!("/items?key={QUERY_CANARY}&page=2")))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let missing = engine.dispatch().request(&id, get("/missing")).await.unwrap();
    assert_eq!(missing.status, 404);
    engine.operations().flush().await;

    let (exports, bodies) = received(&collector).await;
    let requests = collector.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r.headers.get("x-collector-key").map(|v| v.as_bytes())
            == Some(COLLECTOR_KEY.as_bytes())),
        "every export carries the configured header"
    );
    let resource = exports[0].resource_spans[0].resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
    assert_eq!(service.value.as_ref().unwrap().value, Some(text("latchkey")));

    let mut spans = spans(&exports);
    spans.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(spans.len(), 2, "one span per operation: {spans:?}");
    let logged = engine
        .operations()
        .list(&OperationFilter::in_environment("default"), &PageRequest::first(10))
        .await
        .unwrap();
    let mut logged: Vec<_> = logged.items.into_iter().collect();
    logged.sort_by_key(|o| o.at);

    let first = attributes(&spans[0]);
    assert_eq!(spans[0].name, "request GET");
    assert_eq!(first["latchkey.operation.id"], text(&logged[0].id));
    assert_eq!(first["latchkey.operation.kind"], text("request"));
    assert_eq!(first["latchkey.outcome"], text("success"));
    assert_eq!(first["latchkey.connection.id"], text("c1"));
    assert_eq!(first["latchkey.connector.id"], text("prov"));
    assert_eq!(first["http.request.method"], text("GET"));
    assert_eq!(first["server.address"], text("127.0.0.1"));
    assert_eq!(first["url.path"], text("/items"));
    assert_eq!(first["url.query"], text("key=…&page=…"));
    assert_eq!(first["http.response.status_code"], any_value::Value::IntValue(200));
    assert_eq!(spans[0].status.as_ref().map(|s| s.code()), Some(StatusCode::Unset));
    assert!(spans[0].end_time_unix_nano >= spans[0].start_time_unix_nano);
    assert_eq!(spans[0].trace_id.len(), 16);
    assert_eq!(spans[0].span_id.len(), 8);
    assert_ne!(spans[0].trace_id, spans[1].trace_id, "each operation is its own trace");

    let second = attributes(&spans[1]);
    assert_eq!(second["latchkey.outcome"], text("failure"));
    assert_eq!(second["http.response.status_code"], any_value::Value::IntValue(404));
    assert_eq!(second["error.type"], text("404"));
    assert_eq!(spans[1].status.as_ref().map(|s| s.code()), Some(StatusCode::Error));

    for body in &bodies {
        let body = String::from_utf8_lossy(body);
        assert!(!body.contains(CANARY), "the credential reached the collector");
        assert!(!body.contains(QUERY_CANARY), "a query value reached the collector");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_the_requests_nothing() {
    let upstream = upstream().await;
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let otlp = OtlpConfig::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let engine = engine(&upstream, otlp, true).await;
    let id = "c1".parse().unwrap();
    for _ in 0..3 {
        let ok = engine.dispatch().request(&id, get("/items")).await.unwrap();
        assert_eq!(ok.status, 200);
    }
    engine.operations().flush().await;
    let logged = engine
        .operations()
        .list(&OperationFilter::in_environment("default"), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(logged.items.len(), 3, "the database log is written all the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_with_the_database_log_off() {
    let upstream = upstream().await;
    let collector = collector().await;
    let engine = engine(&upstream, OtlpConfig::new(collector.uri().parse().unwrap()), false).await;
    let id = "c1".parse().unwrap();
    engine.dispatch().request(&id, get("/items")).await.unwrap();
    engine.operations().flush().await;
    let (exports, _) = received(&collector).await;
    assert_eq!(spans(&exports).len(), 1);
    let logged = engine
        .operations()
        .list(&OperationFilter::in_environment("default"), &PageRequest::first(10))
        .await
        .unwrap();
    assert!(logged.items.is_empty(), "nothing is written to the database");
}

#[tokio::test]
async fn an_endpoint_that_is_not_http_is_refused() {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap(),
    );
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let error = Engine::builder(store, Catalog::default(), net)
        .otlp(OtlpConfig::new("ftp://collector:4318".parse().unwrap()))
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_request");
    assert!(error.to_string().contains("OTLP endpoint must be an http or https URL"), "{error}");
}
