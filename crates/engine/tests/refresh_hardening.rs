//! Refresh under hostile, slow and flaky token endpoints: absurd lifetimes, several instances
//! sharing one store while the endpoint takes longer than the lease, transient failures, a token
//! that expires within the margin, and refreshes a crash interrupted. Several-instance cases run
//! on both backends (SQLite file, PostgreSQL schema).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Catalog, Engine, NewConnection, Origin};
use latchkey_store::{
    ConnectionStatus, CredentialUpdate, Keyring, MasterKey, PgStore, SqliteStore, Store,
};
use sqlx::Connection as _;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn connector(server: &MockServer) -> String {
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token\n",
        uri = server.uri()
    )
}

async fn engine_on(
    store: Arc<dyn Store>,
    yaml: &str,
    lease: Duration,
    net: latchkey_net::ClientConfig,
) -> Instance {
    engine_with_integration(store, yaml, lease, net).await
}

/// An engine and the store under it: the tests set expiry times in the store directly.
#[derive(Clone)]
struct Instance {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
}

impl std::ops::Deref for Instance {
    type Target = Arc<Engine>;

    fn deref(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// An engine over `store` with the connector `yaml` and the integration `app`.
async fn engine_with_integration(
    store: Arc<dyn Store>,
    yaml: &str,
    lease: Duration,
    net: latchkey_net::ClientConfig,
) -> Instance {
    let catalog = Catalog::default();
    catalog.add_source(yaml, "test.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(net).unwrap();
    let engine =
        Engine::builder(store.clone(), catalog, net).refresh_lease(lease).build().await.unwrap();
    common::add_app(&engine).await;
    Instance { engine, store }
}

async fn memory_engine(server: &MockServer) -> Instance {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    engine_on(Arc::new(store), &connector(server), Duration::from_secs(30), Default::default())
        .await
}

/// Imports tokens (`old-at`, `rt-1`) that expire at `expires_at`.
async fn connection(engine: &Instance, id: &str, expires_at: OffsetDateTime) {
    connection_with(engine, id, expires_at, "rt-1").await;
}

async fn connection_with(engine: &Instance, id: &str, expires_at: OffsetDateTime, refresh: &str) {
    let record = engine
        .connections()
        .create(NewConnection {
            id: Some(id.parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new("old-at")),
                ("refresh_token".to_string(), Secret::new(refresh)),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    engine
        .store
        .update_credentials(
            id,
            record.version,
            &CredentialUpdate { expires_at: Some(expires_at), ..Default::default() },
        )
        .await
        .unwrap();
}

fn expired() -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::minutes(1)
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

/// The API answers 200 to `token` only.
async fn api_accepting(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("hello"))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(server)
        .await;
}

fn form_value(request: &Request, key: &str) -> Option<String> {
    form_urlencoded::parse(&request.body).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// A provider that rotates refresh tokens (`rt-N` → `rt-N+1`, access token `at-N+1`) and
/// revokes the family when one refresh token is presented twice, like the real ones do.
#[derive(Clone, Default)]
struct RotatingProvider {
    seen: Arc<Mutex<HashMap<String, usize>>>,
    delay: Duration,
}

impl RotatingProvider {
    fn spent_twice(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|(_, n)| **n > 1).map(|(t, _)| t.clone()).collect()
    }
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().values().sum()
    }
}

impl Respond for RotatingProvider {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = form_value(request, "refresh_token").unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        let count = seen.entry(token.clone()).or_default();
        *count += 1;
        if *count > 1 {
            return ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "invalid_grant"}));
        }
        let n: u64 = token.trim_start_matches("rt-").parse().unwrap_or(0);
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({
                "access_token": format!("at-{}", n + 1),
                "refresh_token": format!("rt-{}", n + 1),
                "expires_in": 3600,
            }))
            .set_delay(self.delay)
    }
}

/// `expires_in` of 1e10, 3e11, `"1e300"` used to give a 500 or panic the refresh.
#[tokio::test]
async fn absurd_lifetimes_keep_the_token_working() {
    for expires_in in [
        serde_json::json!(1e10),
        serde_json::json!(3e11),
        serde_json::json!(1e300),
        serde_json::json!("1e300"),
        serde_json::json!(-5),
        serde_json::json!(0),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "new-at", "refresh_token": "rt-2", "expires_in": expires_in
            })))
            .mount(&server)
            .await;
        api_accepting(&server, "new-at").await;
        let engine = memory_engine(&server).await;
        connection(&engine, "c1", expired()).await;
        let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap();
        assert_eq!(response.status.as_u16(), 200, "expires_in {expires_in}");
        let record = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
        assert_eq!(record.credentials["refresh_token"].expose(), "rt-2");
        let ten_years = OffsetDateTime::now_utc() + time::Duration::days(3651);
        match record.expires_at {
            // Zero or negative: not said, the token is used until refused.
            None => assert!(expires_in.as_f64().is_some_and(|n| n <= 0.0), "{expires_in}"),
            Some(at) => assert!(at < ten_years, "expires_in {expires_in}: clamped, got {at}"),
        }
    }
}

/// One store shared by three engines (separate lease holders).
async fn three_instances(stores: Vec<Arc<dyn Store>>, server: &MockServer) -> Vec<Instance> {
    let mut engines = Vec::new();
    for store in stores {
        engines.push(
            engine_on(store, &connector(server), Duration::from_secs(1), Default::default()).await,
        );
    }
    engines
}

/// The token endpoint takes twice the lease; fifty requests on three instances must send the
/// refresh token once (the provider would revoke the family otherwise) and all succeed.
async fn slow_endpoint_spends_each_refresh_token_once(stores: Vec<Arc<dyn Store>>) {
    let server = MockServer::start().await;
    let provider = RotatingProvider { delay: Duration::from_secs(2), ..Default::default() };
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(provider.clone())
        .mount(&server)
        .await;
    api_accepting(&server, "at-2").await;
    let engines = three_instances(stores, &server).await;
    connection(&engines[0], "c1", expired()).await;
    let mut tasks = Vec::new();
    for n in 0..48 {
        let engine = engines[n % engines.len()].clone();
        tasks.push(tokio::spawn(async move {
            engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await
        }));
    }
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status.as_u16(), 200);
    }
    assert_eq!(provider.spent_twice(), Vec::<String>::new(), "a refresh token was sent twice");
    assert_eq!(provider.calls(), 1, "one exchange for the fleet");
    let record = engines[2].connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!(record.credentials["refresh_token"].expose(), "rt-2");
    assert_eq!(record.status, ConnectionStatus::Ok);
}

async fn sqlite_stores(dir: &tempfile::TempDir, n: usize) -> Vec<Arc<dyn Store>> {
    let key = MasterKey::generate().to_base64();
    let file = dir.path().join("latchkey.db");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..n {
        let key = MasterKey::from_base64(key.expose()).unwrap();
        stores.push(Arc::new(SqliteStore::open(&file, Keyring::single(key)).await.unwrap()));
    }
    stores
}

/// A schema of its own on the test server (`LATCHKEY_TEST_POSTGRES_URL`), `n` stores on it.
async fn postgres_stores(n: usize) -> (String, Vec<Arc<dyn Store>>) {
    let url = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let schema = format!("lk_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let key = MasterKey::generate().to_base64();
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..n {
        let key = MasterKey::from_base64(key.expose()).unwrap();
        let options = options.clone().options([("search_path", &schema)]);
        stores.push(Arc::new(PgStore::connect_with(options, Keyring::single(key)).await.unwrap()));
    }
    (schema, stores)
}

async fn drop_schema(schema: &str) {
    let url = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_slow_endpoint_spends_each_refresh_token_once_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    slow_endpoint_spends_each_refresh_token_once(sqlite_stores(&dir, 3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_slow_endpoint_spends_each_refresh_token_once_across_instances() {
    let (schema, stores) = postgres_stores(3).await;
    slow_endpoint_spends_each_refresh_token_once(stores).await;
    drop_schema(&schema).await;
}

/// A crash between the provider's answer and the commit leaves the lease row behind: on start,
/// the connection is checked at once. The provider already spent `rt-1` (its answer was lost),
/// so that connection is visibly `needs_reauth`; one whose exchange never left is refreshed;
/// one without a lease row is not touched.
async fn interrupted_refreshes_are_checked_on_start(stores: Vec<Arc<dyn Store>>) {
    let server = MockServer::start().await;
    let provider = RotatingProvider::default();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(provider.clone())
        .mount(&server)
        .await;
    let engines = three_instances(stores, &server).await;
    let (before_crash, after_restart) = (&engines[0], &engines[1]);
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    for (id, refresh) in [("spent", "rt-1"), ("unsent", "rt-100"), ("untouched", "rt-200")] {
        connection_with(before_crash, id, later, refresh).await;
    }
    // What the crashed instance left: its leases, still running for a lease's time.
    let store = &before_crash.store;
    for id in ["spent", "unsent"] {
        assert!(
            store
                .try_lock(&format!("refresh:{id}"), "crashed", Duration::from_secs(1))
                .await
                .unwrap()
        );
    }
    // The exchange for `spent` reached the provider, which rotated; the answer was lost.
    provider.seen.lock().unwrap().insert("rt-1".into(), 1);
    let checked = after_restart.renewal().check_interrupted().await.unwrap();
    assert_eq!(checked, 2);
    let spent = after_restart.connections().get(&"spent".parse().unwrap()).await.unwrap();
    assert_eq!(spent.status, ConnectionStatus::NeedsReauth, "not silently `ok`");
    let unsent = after_restart.connections().get(&"unsent".parse().unwrap()).await.unwrap();
    assert_eq!(unsent.status, ConnectionStatus::Ok);
    assert_eq!(unsent.credentials["access_token"].expose(), "at-101");
    let untouched = after_restart.connections().get(&"untouched".parse().unwrap()).await.unwrap();
    assert_eq!(untouched.credentials["access_token"].expose(), "old-at");
    assert_eq!(store.locks_named("refresh:", false).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn sqlite_interrupted_refreshes_are_checked_on_start() {
    let dir = tempfile::tempdir().unwrap();
    interrupted_refreshes_are_checked_on_start(sqlite_stores(&dir, 2).await).await;
}

#[tokio::test]
async fn postgres_interrupted_refreshes_are_checked_on_start() {
    let (schema, stores) = postgres_stores(2).await;
    interrupted_refreshes_are_checked_on_start(stores).await;
    drop_schema(&schema).await;
}

/// 429, then a timeout, then success: bounded retries with jitter; a provider that keeps
/// failing gets three tries and leaves the old tokens and the status as they were.
#[tokio::test]
async fn transient_failures_are_retried_a_bounded_number_of_times() {
    struct Flaky(Arc<Mutex<usize>>);
    impl Respond for Flaky {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            let mut calls = self.0.lock().unwrap();
            *calls += 1;
            let ok = ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "new-at", "refresh_token": "rt-2", "expires_in": 3600
            }));
            match *calls {
                1 => ResponseTemplate::new(429),
                2 => ok.set_delay(Duration::from_secs(5)),
                _ => ok,
            }
        }
    }
    let server = MockServer::start().await;
    let calls = Arc::new(Mutex::new(0));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Flaky(calls.clone()))
        .mount(&server)
        .await;
    api_accepting(&server, "new-at").await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::ClientConfig {
        total_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let engine =
        engine_on(Arc::new(store), &connector(&server), Duration::from_secs(30), net).await;
    connection(&engine, "c1", expired()).await;
    assert_eq!(
        engine
            .dispatch()
            .request(&"c1".parse().unwrap(), get("/me"))
            .await
            .unwrap()
            .status
            .as_u16(),
        200
    );
    assert_eq!(*calls.lock().unwrap(), 3);

    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    let engine = memory_engine(&down).await;
    connection(&engine, "c1", expired()).await;
    let before = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap_err();
    let token_calls = down.received_requests().await.unwrap().len();
    assert_eq!(token_calls, 3, "one try and two retries");
    let after = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
    assert_eq!((after.version, after.status), (before.version, ConnectionStatus::Ok));
    assert_eq!(after.credentials["access_token"].expose(), "old-at");
}

/// The expiry is our receive time plus `expires_in`, whatever the provider's clock says
/// (`Date` five minutes off either way), and an expired token is renewed before it is sent: the
/// API never sees it.
#[tokio::test]
async fn clock_skew_never_lets_an_expiring_token_be_sent() {
    for skew in [-300i64, 300] {
        let server = MockServer::start().await;
        let date = std::time::SystemTime::now()
            .checked_add(Duration::from_secs(skew.unsigned_abs()))
            .filter(|_| skew > 0)
            .unwrap_or_else(|| std::time::SystemTime::now() - Duration::from_secs(300));
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("date", httpdate::fmt_http_date(date).as_str())
                    .set_body_json(serde_json::json!({
                        "access_token": "new-at", "refresh_token": "rt-2", "expires_in": 600
                    })),
            )
            .mount(&server)
            .await;
        api_accepting(&server, "new-at").await;
        let engine = memory_engine(&server).await;
        // Expired a minute ago by our clock (the provider's would say six minutes, or valid
        // for four more): ours decides.
        connection(&engine, "c1", expired()).await;
        let sent_at = OffsetDateTime::now_utc();
        assert_eq!(
            engine
                .dispatch()
                .request(&"c1".parse().unwrap(), get("/me"))
                .await
                .unwrap()
                .status
                .as_u16(),
            200
        );
        let api_calls: Vec<_> = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == "/api/me")
            .collect();
        assert_eq!(api_calls.len(), 1, "skew {skew}: the expiring token was never sent");
        let at =
            engine.connections().get(&"c1".parse().unwrap()).await.unwrap().expires_at.unwrap();
        let lifetime = at - sent_at;
        assert!(
            lifetime > time::Duration::seconds(590) && lifetime < time::Duration::seconds(610),
            "skew {skew}: expiry from our clock, got {lifetime}"
        );
    }
}

/// On a shared engine (as `latchkey serve` holds it), a caller that goes away mid-exchange does
/// not abandon the refresh: the provider's answer, with its rotated refresh token, is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_engine_stores_a_refresh_whose_caller_went_away() {
    let server = MockServer::start().await;
    let provider = RotatingProvider { delay: Duration::from_millis(500), ..Default::default() };
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(provider.clone())
        .mount(&server)
        .await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let engine = engine_with_integration(
        Arc::new(store),
        &connector(&server),
        Duration::from_secs(30),
        Default::default(),
    )
    .await;
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    connection(&engine, "c1", later).await;
    let version = engine.connections().get(&"c1".parse().unwrap()).await.unwrap().version;
    let caller = engine.clone();
    let refresh = tokio::spawn(async move {
        caller
            .renewal()
            .refresh(
                &"c1".parse().unwrap(),
                latchkey_engine::RefreshReason::Forced { seen_version: version },
            )
            .await
    });
    while provider.calls() == 0 {
        tokio::task::yield_now().await;
    }
    refresh.abort();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let record = engine.connections().get(&"c1".parse().unwrap()).await.unwrap();
        if record.version != version {
            assert_eq!(record.status, ConnectionStatus::Ok);
            assert_eq!(record.credentials["refresh_token"].expose(), "rt-2");
            assert_eq!(record.credentials["access_token"].expose(), "at-2");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the abandoned refresh was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(provider.spent_twice().is_empty());
}

/// A refresh abandoned mid-exchange (its process died after the provider rotated) leaves its
/// lease behind; without a restart, the scheduler finds it once the lease runs out and checks
/// the connection: it is visibly `needs_reauth`, not `ok` until its next refresh. (A caller that
/// goes away no longer abandons a refresh in this process: see the test above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_abandoned_mid_exchange_is_checked_by_the_scheduler() {
    let server = MockServer::start().await;
    let provider = RotatingProvider::default();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(provider.clone())
        .mount(&server)
        .await;
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let engine =
        engine_on(Arc::new(store), &connector(&server), Duration::from_secs(1), Default::default())
            .await;
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    connection(&engine, "c1", later).await;
    let scheduler = tokio::spawn(engine.engine.renewal().run_scheduler(Duration::from_millis(50)));
    // Another instance took the lease and sent `rt-1` (the provider rotated), then died.
    assert!(engine.store.try_lock("refresh:c1", "crashed", Duration::from_secs(1)).await.unwrap());
    provider.seen.lock().unwrap().insert("rt-1".into(), 1);
    assert_eq!(
        engine.connections().get(&"c1".parse().unwrap()).await.unwrap().status,
        ConnectionStatus::Ok
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine.connections().get(&"c1".parse().unwrap()).await.unwrap().status
        != ConnectionStatus::NeedsReauth
    {
        assert!(std::time::Instant::now() < deadline, "the interrupted refresh was never checked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.abort();
    assert_eq!(provider.spent_twice(), ["rt-1"], "the check found the token spent");
}
