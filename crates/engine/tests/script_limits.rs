//! Hooks that can not stall the server: the wall-clock limit and the `http_request` cap against
//! a slow or endless API, one connector's slow hooks leaving the others' scripts alone, and the
//! script size cap and off-thread compile of connector uploads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::ScriptError;
use latchkey_engine::{ApiRequest, Catalog, Engine, EngineError, NewConnection, Origin};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CUSTOM_KEY: &str = "  - type: custom\n    fields: [{ key: api_key, label: API key }]";

/// A connector `id` over the mock server, with `extra` top-level YAML and `script`.
fn connector(id: &str, server: &MockServer, extra: &str, script: &str) -> String {
    let script: String = script.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "id: {id}\nname: {id}\nbase_url: {uri}/api\nauth:\n{CUSTOM_KEY}\n{extra}scripts: |\n{script}",
        uri = server.uri()
    )
}

/// An engine over an in-memory store with these connectors, and one connection `c-ID` each.
async fn engine_with(connectors: &[(&str, String)]) -> Arc<Engine> {
    let catalog = Catalog::default();
    for (id, yaml) in connectors {
        catalog.add_source(yaml, &format!("{id}.yaml"), Origin::Custom).unwrap();
    }
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    for (id, _) in connectors {
        engine
            .connections()
            .create(NewConnection {
                id: Some(format!("c-{id}").parse().unwrap()),
                credentials: BTreeMap::from([("api_key".to_string(), Secret::new("key-1"))]),
                ..NewConnection::new((*id).parse().unwrap())
            })
            .await
            .unwrap();
    }
    engine
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

async fn calls_to(server: &MockServer, to: &str) -> usize {
    let all = server.received_requests().await.unwrap();
    all.into_iter().filter(|r| r.url.path() == to).count()
}

/// Fails rather than hangs when a limit does not hold.
async fn bounded<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), what).await.expect("the hook was not stopped")
}

fn script_error(result: Result<latchkey_net::UpstreamResponse, EngineError>) -> ScriptError {
    match result {
        Err(EngineError::Script { error, .. }) => error,
        Err(other) => panic!("another error: {other}"),
        Ok(response) => panic!("answered {}", response.status),
    }
}

const LOOP: &str = "function before_action() {\n  var base = method_endpoint.replace(/\\/me$/, '');\n  for (;;) {\n    try { http_request({url: base + '/slow'}); } catch (e) {}\n  }\n}";

#[tokio::test]
async fn a_hook_looping_http_request_against_a_slow_host_stops_at_its_wall_clock_limit() {
    let server = MockServer::start().await;
    Mock::given(path("/api/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&server)
        .await;
    let limits = "script_limits: { wall_ms: 1500 }\n";
    let engine = engine_with(&[("loop", connector("loop", &server, limits, LOOP))]).await;
    let error = script_error(
        bounded(engine.dispatch().request(&"c-loop".parse().unwrap(), get("/me"))).await,
    );
    assert_eq!(error, ScriptError::WallTimeLimit(Duration::from_millis(1500)));
    // About five calls of 300 ms fit; the probe saw 2,001 in 22.5 s.
    let calls = calls_to(&server, "/api/slow").await;
    assert!(calls <= 6, "{calls} calls");
    assert_eq!(calls_to(&server, "/api/me").await, 0);
}

#[tokio::test]
async fn a_hook_looping_http_request_stops_at_the_default_call_cap() {
    let server = MockServer::start().await;
    Mock::given(path("/api/slow")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let engine = engine_with(&[("loop", connector("loop", &server, "", LOOP))]).await;
    let error = script_error(
        bounded(engine.dispatch().request(&"c-loop".parse().unwrap(), get("/me"))).await,
    );
    assert_eq!(error, ScriptError::HttpRequestLimit(20));
    assert_eq!(calls_to(&server, "/api/slow").await, 20);
    assert_eq!(calls_to(&server, "/api/me").await, 0);
    let message =
        EngineError::Script { connector: "loop".into(), event: "before_action".into(), error }
            .to_string();
    assert_eq!(
        message,
        "connector `loop` script, before_action: script made more than 20 http_request calls"
    );
}

#[tokio::test]
async fn a_connector_cannot_raise_the_servers_wall_clock_limit() {
    let server = MockServer::start().await;
    Mock::given(path("/api/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    let script = "function before_action() {\n  http_request({url: method_endpoint.replace(/\\/me$/, '/slow')});\n}";
    let limits = "script_limits: { wall_ms: 3600000 }\n";
    let catalog = Catalog::default();
    catalog
        .add_source(&connector("greedy", &server, limits, script), "greedy.yaml", Origin::Custom)
        .unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let max = latchkey_engine::ScriptLimits {
        wall_time: Duration::from_millis(500),
        ..latchkey_engine::ScriptLimits::default()
    };
    let engine =
        Engine::builder(Arc::new(store), catalog, net).script_limits(max).build().await.unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c-greedy".parse().unwrap()),
            credentials: BTreeMap::from([("api_key".to_string(), Secret::new("key-1"))]),
            ..NewConnection::new("greedy".parse().unwrap())
        })
        .await
        .unwrap();
    let error = script_error(
        bounded(engine.dispatch().request(&"c-greedy".parse().unwrap(), get("/me"))).await,
    );
    assert_eq!(error, ScriptError::WallTimeLimit(Duration::from_millis(500)));
}

/// Answers after an hour, telling the test each time a request arrives.
struct Hanging(tokio::sync::mpsc::UnboundedSender<()>);

impl Respond for Hanging {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let _ = self.0.send(());
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3600))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_hooks_of_one_connector_do_not_delay_another_connectors_scripted_request() {
    let slow_api = MockServer::start().await;
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    Mock::given(path("/api/slow")).respond_with(Hanging(arrived)).mount(&slow_api).await;
    let fast_api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200).set_body_string("fine"))
        .mount(&fast_api)
        .await;
    let slow_script = "function before_action() {\n  http_request({url: method_endpoint.replace(/\\/me$/, '/slow')});\n}";
    let fast_script = "function before_action() {\n  method_request_headers['x-fast'] = '1';\n}";
    // Long enough that the other connector's request surely ends first; the slow hooks end
    // with it, so the test takes about that long.
    let slow_limits = "script_limits: { wall_ms: 8000 }\n";
    let engine = engine_with(&[
        ("slow", connector("slow", &slow_api, slow_limits, slow_script)),
        ("fast", connector("fast", &fast_api, "", fast_script)),
    ])
    .await;

    let slow: Vec<_> = (0..16)
        .map(|_| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                engine.dispatch().request(&"c-slow".parse().unwrap(), get("/me")).await
            })
        })
        .collect();
    // The slow connector's share of the script workers (8) is waiting on its API.
    let share = latchkey_script::PoolSize::default().per_group;
    for _ in 0..share {
        bounded(arrivals.recv()).await.unwrap();
    }

    let response =
        bounded(engine.dispatch().request(&"c-fast".parse().unwrap(), get("/me"))).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.bytes().await.unwrap()[..], b"fine");
    // It was answered while every slow hook was still in flight, no more of them running than
    // the connector's share (the others wait for one of those to end).
    assert!(slow.iter().all(|task| !task.is_finished()));
    assert!(arrivals.try_recv().is_err(), "more slow hooks ran than the share");

    for task in slow {
        let error = script_error(bounded(task).await.unwrap());
        assert_eq!(error, ScriptError::WallTimeLimit(Duration::from_secs(8)));
    }
}

fn big_script(bytes: usize) -> String {
    let line = "var a = 1;\n";
    format!("{}function before_action() {{}}\n", line.repeat(bytes / line.len()))
}

#[tokio::test]
async fn a_script_over_the_size_cap_is_refused_naming_the_connector() {
    let server = MockServer::start().await;
    let engine = engine_with(&[]).await;
    let yaml = connector("big", &server, "", &big_script(300 * 1024));
    let err = engine.connectors().put_custom(&"big".parse().unwrap(), &yaml).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("custom:big"), "{text}");
    assert!(text.contains("`scripts`"), "{text}");
    assert!(text.contains("scripts may be at most 256 KiB"), "{text}");
    assert!(engine.connectors().catalog().get("big").is_none());

    // The same from a file.
    let catalog = Catalog::default();
    let err = catalog.add_source(&yaml, "connectors/big.yaml", Origin::Custom).unwrap_err();
    assert_eq!(err.file, "connectors/big.yaml");
    assert_eq!(err.field.as_deref(), Some("scripts"));
    assert!(err.message.contains("at most 256 KiB"), "{}", err.message);
}

#[tokio::test(flavor = "current_thread")]
async fn an_upload_compiles_its_script_off_the_async_thread() {
    let server = MockServer::start().await;
    let engine = engine_with(&[]).await;
    let on_this_thread = latchkey_script::checks_on_this_thread();

    let yaml = connector("large", &server, "", &big_script(200 * 1024));
    engine.connectors().put_custom(&"large".parse().unwrap(), &yaml).await.unwrap();
    assert!(engine.connectors().catalog().get("large").is_some());
    // A syntax error still comes back, so the check ran: elsewhere.
    let broken = connector("broken", &server, "", "function before_action() {\n  var x = ;\n}");
    let err =
        engine.connectors().put_custom(&"broken".parse().unwrap(), &broken).await.unwrap_err();
    assert!(err.to_string().contains("script line 2"), "{err}");

    // This is the runtime's only thread: a compile here would have held every other request.
    assert_eq!(latchkey_script::checks_on_this_thread(), on_this_thread);
}
