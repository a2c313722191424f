//! The order of credentials and `before_action`: keys, tokens and Basic credentials are on the
//! request when the hook runs, so the hook sees them and has the last word (Cyclr's documented
//! API-key-as-Bearer pattern works unchanged); signing methods (OAuth 1.0a, SigV4) sign the
//! request the hook left.

mod common;

use std::collections::BTreeMap;

use common::engine;
use latchkey_core::auth::oauth1::{self, SigningInput};
use latchkey_core::connector::parse_connector;
use latchkey_core::{AuthMethod, OutgoingRequest, Secret};
use latchkey_engine::{ApiRequest, Engine, NewConnection};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn connector(server: &MockServer, auth: &str, script: &str) -> String {
    let script: String = script.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n{auth}\nscripts: |\n{script}",
        uri = server.uri()
    )
}

async fn connect(engine: &Engine, credentials: &[(&str, &str)]) -> String {
    engine
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
        .unwrap()
        .id
}

fn get(path: &str) -> ApiRequest {
    ApiRequest { path: path.into(), ..ApiRequest::default() }
}

async fn only_request(server: &MockServer) -> Request {
    let mut all = server.received_requests().await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// The URL the engine sent to (wiremock shows the path and query under `http://localhost`).
fn sent_url(server: &MockServer, sent: &Request) -> url::Url {
    let mut url: url::Url = server.uri().parse().unwrap();
    url.set_path(sent.url.path());
    url.set_query(sent.url.query());
    url
}

/// Cyclr's documentation, word for word: an `api_key` connector whose script turns the key into
/// a Bearer token.
#[tokio::test]
async fn cyclrs_api_key_bearer_pattern_sends_bearer_and_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer key-123"))
        .respond_with(ResponseTemplate::new(200).set_body_string("hi"))
        .mount(&server)
        .await;
    let auth = "  - type: api_key\n    fields: [{ key: api_key, label: API key }]";
    let script = "function before_action() {\n  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value;\n  return true;\n}";
    let engine = engine(&connector(&server, auth, script)).await;
    let id = connect(&engine, &[("api_key", "key-123")]).await;
    let response = engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap();
    assert_eq!(response.status, 200, "the API did not get `Authorization: Bearer key-123`");
    let sent = only_request(&server).await;
    let values: Vec<_> = sent.headers.get_all("authorization").iter().collect();
    assert_eq!(values, ["Bearer key-123"]);
}

/// The hook sees the credentials placed (under any case of the header's name) and may move
/// them; a header it writes in another case than the request's stays one header.
#[tokio::test]
async fn before_action_sees_placed_credentials_and_keeps_one_entry_per_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/items"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let auth = "  - type: api_key\n    fields: [{ key: api_key, label: API key }]\n    apply: { in: header, name: X-Api-Key }";
    let script = "function before_action() {\n  method_request_headers['X-Account-Key'] = method_request_headers['X-API-KEY'];\n  delete method_request_headers['x-api-key'];\n  method_request_headers['Content-Type'] = 'application/vnd.api+json';\n}";
    let engine = engine(&connector(&server, auth, script)).await;
    let id = connect(&engine, &[("api_key", "key-9")]).await;
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let request = ApiRequest {
        method: http::Method::POST,
        path: "/items".into(),
        headers,
        body: bytes::Bytes::from_static(b"{\"a\":1}"),
        ..ApiRequest::default()
    };
    assert_eq!(engine.dispatch().request(&id.parse().unwrap(), request).await.unwrap().status, 201);
    let sent = only_request(&server).await;
    assert_eq!(sent.headers.get("x-account-key").unwrap(), "key-9");
    assert!(sent.headers.get("x-api-key").is_none());
    let types: Vec<_> = sent.headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/vnd.api+json"]);
}

/// A bearer token the hook leaves alone is sent as placed.
#[tokio::test]
async fn a_hook_that_does_not_touch_the_credentials_leaves_them() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer tok"))
        .and(header("x-hooked", "yes"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let script = "function before_action() {\n  method_request_headers['X-Hooked'] = method_request_headers['Authorization'] === 'Bearer tok' ? 'yes' : 'no';\n}";
    let engine = engine(&connector(&server, "  - type: bearer", script)).await;
    let id = connect(&engine, &[("token", "tok")]).await;
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );
}

/// OAuth 1.0a signs the request the hook left: a query parameter and a header the hook added
/// are covered, and the signature verifies over the URL the API received.
#[tokio::test]
async fn oauth1_signs_after_the_hook_changed_the_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let auth = "  - type: oauth1\n    signature_method: HMAC-SHA256";
    let script = "function before_action() {\n  method_request_parameters.hooked = 'yes please';\n  method_request_headers['X-Hook'] = '1';\n}";
    let yaml = connector(&server, auth, script);
    let engine = engine(&yaml).await;
    let id = connect(
        &engine,
        &[
            ("consumer_key", "ck"),
            ("consumer_secret", "cs"),
            ("token", "tk"),
            ("token_secret", "ts"),
        ],
    )
    .await;
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me?a=1")).await.unwrap().status,
        200
    );
    let sent = only_request(&server).await;
    assert_eq!(sent.url.query(), Some("a=1&hooked=yes+please"));
    assert_eq!(sent.headers.get("x-hook").unwrap(), "1");

    let authorization = sent.headers.get("authorization").unwrap().to_str().unwrap();
    let param = |name: &str| -> String {
        let start = authorization.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = start + authorization[start..].find('"').unwrap();
        percent_decode(&authorization[start..end])
    };
    let connector = parse_connector(&yaml, "t.yaml").unwrap();
    let AuthMethod::OAuth1(m) = &connector.auth[0] else { panic!("not oauth1") };
    let mut expected = OutgoingRequest::new(http::Method::GET, sent_url(&server, &sent));
    let (secret, token_secret) = (Secret::new("cs"), Secret::new("ts"));
    let nonce = param("oauth_nonce");
    oauth1::sign(
        m,
        &mut expected,
        &SigningInput {
            consumer_key: "ck",
            consumer_secret: &secret,
            token: Some("tk"),
            token_secret: Some(&token_secret),
            timestamp: param("oauth_timestamp").parse().unwrap(),
            nonce: &nonce,
            extra: &[],
        },
    )
    .unwrap();
    let expected = expected.headers.get("authorization").unwrap().to_str().unwrap().to_string();
    assert_eq!(authorization, expected, "the signature does not cover the final request");
}

/// SigV4 signs after the hook: the header the hook added is among the signed headers, and
/// the signature recomputed over the request the API received matches.
#[tokio::test]
async fn sigv4_signs_after_the_hook_changed_a_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let auth = "  - type: aws_sigv4\n    service: execute-api\n    region: eu-west-1";
    let script = "function before_action() {\n  method_request_headers['X-Hook'] = 'signed';\n}";
    let yaml = connector(&server, auth, script);
    let engine = engine(&yaml).await;
    let credentials = [("access_key_id", "AKIDEXAMPLE"), ("secret_access_key", "sk-example")];
    let id = connect(&engine, &credentials).await;
    assert_eq!(
        engine.dispatch().request(&id.parse().unwrap(), get("/me")).await.unwrap().status,
        200
    );
    let sent = only_request(&server).await;
    let authorization = sent.headers.get("authorization").unwrap().to_str().unwrap();
    let signed = authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
    assert!(signed.split(';').any(|h| h == "x-hook"), "x-hook is not signed: {authorization}");

    // Recompute: the same headers (those signed, less what the signer adds), at the same time.
    let amz_date = sent.headers.get("x-amz-date").unwrap().to_str().unwrap();
    let mut expected = OutgoingRequest::new(http::Method::GET, sent_url(&server, &sent));
    for name in signed.split(';').filter(|h| !matches!(*h, "host" | "x-amz-date")) {
        expected.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            sent.headers.get(name).unwrap().clone(),
        );
    }
    let connector = parse_connector(&yaml, "t.yaml").unwrap();
    let stored: BTreeMap<String, Secret> =
        credentials.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect();
    let config = BTreeMap::new();
    latchkey_core::auth::apply(
        &connector.auth[0],
        &mut expected,
        latchkey_core::auth::AuthContext {
            credentials: &stored,
            config: &config,
            now: amz_time(amz_date),
            nonce: "",
        },
    )
    .unwrap();
    assert_eq!(authorization, expected.headers.get("authorization").unwrap().to_str().unwrap());
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `YYYYMMDDTHHMMSSZ` as a time (days from the civil date, Howard Hinnant's algorithm).
fn amz_time(text: &str) -> std::time::SystemTime {
    let n = |a: usize, b: usize| text[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9, 11) * 3600 + n(11, 13) * 60 + n(13, 15);
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap())
}
