//! The OAuth callback through the router: a callback without the browser's binding cookie is
//! refused and kills nothing, every failure past it is recorded on the session (API and status
//! page) and posted to the opener at its exact origin, and connect links (`connect_link`,
//! `expires_in`, `reconnect`).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewConnection, NewIntegration, Origin};
use latchkey_server::{AppState, app};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "test-api-key";
const ORIGIN: &str = "https://app.example";

/// A provider whose token endpoint refuses the code `bad` and grants any other, the connector
/// `oauth` with integration `oauth-app`, and `c1`, a connection of a bearer connector.
async fn world() -> (MockServer, AppState) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=bad"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "at"})))
        .mount(&server)
        .await;
    let uri = server.uri();
    let catalog = Catalog::default();
    let oauth = format!(
        "id: oauth\nname: OAuth\nbase_url: {uri}/api\nauth:\n  - type: oauth2\n    \
         authorize_url: {uri}/authorize\n    token_url: {uri}/token\n"
    );
    catalog.add_source(&oauth, "oauth.yaml", Origin::Custom).unwrap();
    let bearer = format!("id: prov\nname: Prov\nbase_url: {uri}/api\nauth:\n  - type: bearer\n");
    catalog.add_source(&bearer, "prov.yaml", Origin::Custom).unwrap();
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "oauth-app".parse().unwrap(),
            connector: "oauth".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("client-secret")),
            scopes: Vec::new(),
        })
        .await
        .unwrap();
    engine
        .connections()
        .create(NewConnection {
            id: Some("c1".parse().unwrap()),
            credentials: [("token".to_string(), Secret::new("t"))].into(),
            run_test: false,
            ..NewConnection::new("prov".parse().unwrap())
        })
        .await
        .unwrap();
    let state =
        AppState::new(engine, Secret::new(API_KEY), "http://127.0.0.1:7400".parse().unwrap());
    (server, state)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
}

async fn send(state: &AppState, request: http::Request<Body>) -> Answer {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 4 << 20).await.unwrap();
    Answer { status, headers, text: String::from_utf8_lossy(&body).into_owned() }
}

async fn api(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    send(state, request.body(body).unwrap()).await
}

async fn get(state: &AppState, uri: &str, cookie: Option<&str>) -> Answer {
    let mut request = http::Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(state, request.body(Body::empty()).unwrap()).await
}

/// A session for `oauth-app` posting to [`ORIGIN`]: its id and token.
async fn new_session(state: &AppState, extra: Value) -> (String, String) {
    let mut body = json!({"integration": "oauth-app", "allowed_origin": ORIGIN});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let created = api(state, "POST", "/v1/connect-sessions", Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    (created["id"].as_str().unwrap().into(), created["token"].as_str().unwrap().into())
}

/// Opens the link as a browser: the state sent to the provider and the binding cookie set.
async fn open(state: &AppState, token: &str) -> (String, String) {
    let page = get(state, &format!("/connect/{token}"), None).await;
    assert_eq!(page.status, 303, "{}", page.text);
    let location = page.headers["location"].to_str().unwrap();
    let location = url::Url::parse(location).unwrap();
    let state_param = location.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("latchkey_flow="), "{cookie}");
    (state_param, cookie)
}

async fn session_view(state: &AppState, id: &str) -> Value {
    let got = api(state, "GET", &format!("/v1/connect-sessions/{id}"), None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.json()
}

/// The result the page posts to its opener, and the origin it posts to.
fn posted(page: &Answer) -> Option<(Value, Value)> {
    let line = |prefix: &str| {
        page.text.lines().find_map(|l| l.trim().strip_prefix(prefix)?.strip_suffix(';'))
    };
    let result = serde_json::from_str(line("var result = ")?).unwrap();
    let origin = serde_json::from_str(line("var origin = ")?).unwrap();
    Some((result, origin))
}

#[tokio::test]
async fn a_callback_without_the_browser_binding_is_refused_and_the_real_one_then_succeeds() {
    let (server, state) = world().await;
    let (id, token) = new_session(&state, json!({})).await;
    let (flow, cookie) = open(&state, &token).await;
    let callback = format!("/oauth/callback?state={flow}&error=access_denied");
    for forged in [None, Some("latchkey_flow=someone-else"), Some("other=1")] {
        let page = get(&state, &callback, forged).await;
        assert_eq!(page.status, 400, "{forged:?}: {}", page.text);
        assert!(page.text.contains("does not belong to a connection started in this browser"));
        assert!(posted(&page).is_none(), "nobody's opener is told: {}", page.text);
    }
    assert_eq!(session_view(&state, &id).await["status"], "pending", "nothing was killed");

    let page = get(&state, &format!("/oauth/callback?state={flow}&code=good"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (result, origin) = posted(&page).unwrap();
    assert_eq!((result["ok"].as_bool(), origin.as_str()), (Some(true), Some(ORIGIN)));
    let view = session_view(&state, &id).await;
    assert_eq!(view["status"], "done");
    assert_eq!(view["connection_id"], result["connection"]["id"]);
    let exchanges = server.received_requests().await.unwrap();
    assert_eq!(exchanges.iter().filter(|r| r.url.path() == "/token").count(), 1);
}

#[tokio::test]
async fn access_denied_fails_the_session_and_is_posted_to_the_exact_origin() {
    let (_server, state) = world().await;
    let (id, token) = new_session(&state, json!({})).await;
    let (flow, cookie) = open(&state, &token).await;
    let callback = format!("/oauth/callback?state={flow}&error=access_denied");
    let page = get(&state, &callback, Some(&cookie)).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(page.text.contains("Access was not granted"), "{}", page.text);
    let (result, origin) = posted(&page).expect("the opener is told");
    assert_eq!(origin, ORIGIN, "the session's origin, never *");
    assert!(page.text.contains("window.opener.postMessage(result, origin)"));
    assert_eq!(result["ok"], false);
    assert_eq!(result["error"]["code"], "access_denied");
    let view = session_view(&state, &id).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["error"]["code"], "access_denied");
    assert_eq!(view["error"]["message"], result["error"]["message"]);
    // The popup's fallback when it lost its opener says the same.
    let polled = get(&state, &format!("/connect/{token}/status"), None).await.json();
    assert_eq!((polled["status"].as_str(), &polled["error"]), (Some("failed"), &view["error"]));

    // The link may be tried again until it expires.
    let (flow, cookie) = open(&state, &token).await;
    assert_eq!(session_view(&state, &id).await["status"], "pending");
    let page = get(&state, &format!("/oauth/callback?state={flow}&code=good"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(session_view(&state, &id).await["status"], "done");
    let used = get(&state, &format!("/connect/{token}"), None).await;
    assert_eq!(used.status, 410, "a link that made its connection opens nothing more");
}

#[tokio::test]
async fn a_refused_token_exchange_fails_the_session_with_token_refused() {
    let (_server, state) = world().await;
    let (id, token) = new_session(&state, json!({})).await;
    let (flow, cookie) = open(&state, &token).await;
    let page = get(&state, &format!("/oauth/callback?state={flow}&code=bad"), Some(&cookie)).await;
    assert_eq!(page.status, 502, "{}", page.text);
    assert!(page.text.contains("The provider refused to complete the connection"));
    let (result, _) = posted(&page).unwrap();
    assert_eq!(result["error"]["code"], "token_refused");
    let view = session_view(&state, &id).await;
    assert_eq!(
        (view["status"].as_str(), &view["error"]["code"]),
        (Some("failed"), &json!("token_refused"))
    );
}

#[tokio::test]
async fn a_session_answers_a_connect_link_that_lives_as_long_as_asked() {
    let (_server, state) = world().await;
    let created = api(
        &state,
        "POST",
        "/v1/connect-sessions",
        Some(json!({"integration": "oauth-app", "expires_in": 604800})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let token = created["token"].as_str().unwrap();
    assert_eq!(created["connect_link"], format!("http://127.0.0.1:7400/connect/{token}"));
    assert_eq!(created["url"], created["connect_link"]);
    let expires = time::OffsetDateTime::parse(
        created["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let week = expires - time::OffsetDateTime::now_utc();
    assert!(week > time::Duration::days(7) - time::Duration::minutes(1), "{week}");
    let view = session_view(&state, created["id"].as_str().unwrap()).await;
    assert_eq!(view["expires_at"], created["expires_at"]);

    for bad in [json!(0), json!(604801), json!(-5)] {
        let refused = api(
            &state,
            "POST",
            "/v1/connect-sessions",
            Some(json!({"integration": "oauth-app", "expires_in": bad})),
        )
        .await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text);
        assert_eq!(refused.json()["code"], "invalid_request");
        assert!(refused.text.contains("expires_in"), "{}", refused.text);
    }
}

#[tokio::test]
async fn a_reconnect_link_names_the_connection_alone() {
    let (_server, state) = world().await;
    let (id, token) = new_session(&state, json!({"tags": {"team": "blue"}})).await;
    let (flow, cookie) = open(&state, &token).await;
    get(&state, &format!("/oauth/callback?state={flow}&code=good"), Some(&cookie)).await;
    let connection = session_view(&state, &id).await["connection_id"].as_str().unwrap().to_owned();

    let again =
        api(&state, "POST", "/v1/connect-sessions", Some(json!({"reconnect": connection}))).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let again = again.json();
    let (flow, cookie) = open(&state, again["token"].as_str().unwrap()).await;
    get(&state, &format!("/oauth/callback?state={flow}&code=good"), Some(&cookie)).await;
    let view = session_view(&state, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (view["status"].as_str(), view["connection_id"].as_str()),
        (Some("done"), Some(connection.as_str()))
    );
    let conn = api(&state, "GET", &format!("/v1/connections/{connection}"), None).await.json();
    assert_eq!(conn["tags"]["team"], "blue", "re-authorised in place: {conn}");

    let missing =
        api(&state, "POST", "/v1/connect-sessions", Some(json!({"reconnect": "nope"}))).await;
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("connection_not_found"))
    );
    // `c1` was made without an integration: the link must name one (here, the connector).
    let bare = api(&state, "POST", "/v1/connect-sessions", Some(json!({"reconnect": "c1"}))).await;
    assert_eq!((bare.status, bare.json()["field"].as_str()), (400, Some("integration")));
    // The connect form makes new connections only: a key is updated, not reconnected.
    let form = json!({"reconnect": "c1", "connector": "prov"});
    let form = api(&state, "POST", "/v1/connect-sessions", Some(form)).await;
    assert_eq!(
        (form.status, form.json()["field"].as_str()),
        (400, Some("reconnect")),
        "{}",
        form.text
    );
}
