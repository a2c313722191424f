//! What `Engine::builder(…).build()` starts: no script worker until a connector's hook first runs,
//! then one pool. Alone in its test binary, so no other test's engine starts threads meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_engine::{
    ApiRequest, Catalog, Client, ClientConfig, Engine, Keyring, MasterKey, NewConnection, Origin,
    Secret, SqliteStore,
};
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Threads of this process named `latchkey-script-…` (Linux truncates names to 15 bytes).
fn script_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("latchkey-script"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn script_workers_start_with_the_first_hook() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .and(header("x-hooked", "yes"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\nscripts: |\n  function before_action() {{ method_request_headers['X-Hooked'] = 'yes'; }}\n",
        server.uri()
    );
    let catalog = Catalog::default();
    catalog.add_source(&yaml, "prov.yaml", Origin::Custom).unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = Client::new(ClientConfig::default()).unwrap();
    let engine: Arc<Engine> = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: BTreeMap::from([("token".to_string(), Secret::new("tok"))]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(script_threads(), 0, "building an engine and storing a connection start none");

    let request = ApiRequest { path: "/me".into(), ..ApiRequest::default() };
    assert_eq!(
        engine.dispatch().request(&"c1".parse().unwrap(), request).await.unwrap().status.as_u16(),
        200
    );
    let permanent = latchkey_engine::script::PoolSize::default().workers;
    assert!(script_threads() >= 1, "the first hook started the pool");
    assert!(script_threads() <= permanent + 1, "one pool: {} threads", script_threads());
}
