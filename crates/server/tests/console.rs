//! The operator console through the router: sign-in with an API key holding `admin` (and
//! refusals), the session cookie's attributes, CSRF refusals on every kind of form, sessions
//! that end at sign-out or when their key is revoked, and pages that never hold a stored
//! secret.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use latchkey_core::Secret;
use latchkey_engine::{NewApiKey, NewConnection, NewIntegration};
use latchkey_server::AppState;
use latchkey_store::Scope;
use tower::ServiceExt;

const CANARY_SECRET: &str = "canary-client-secret-5b1e0c";
const CANARY_TOKEN: &str = "canary-credential-9f3a7d";

/// One answer: status, headers, body text.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    /// The value of cookie `name` this answer sets, with its attributes.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("the page has a form token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn location(&self) -> &str {
        self.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(
    state: &AppState,
    method: &str,
    uri: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> Answer {
    let mut request = http::Request::builder().method(method).uri(uri);
    if !cookie.is_empty() {
        request = request.header(http::header::COOKIE, cookie);
    }
    let body = if method == "POST" {
        request = request.header("content-type", "application/x-www-form-urlencoded");
        let encoded =
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        Body::from(encoded)
    } else {
        Body::empty()
    };
    let response =
        latchkey_server::app(state.clone()).oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// The `name=value` part of a Set-Cookie header.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Signs in with `key`; the answer, and the session cookie (`name=value`) if one was set.
async fn sign_in(state: &AppState, key: &str) -> (Answer, Option<String>) {
    let form = send(state, "GET", "/console/sign-in", "", &[]).await;
    assert_eq!(form.status, 200);
    let binding = pair(&form.set_cookie("latchkey_console_sign_in").unwrap());
    let token = form.csrf();
    let answer =
        send(state, "POST", "/console/sign-in", &binding, &[("csrf", &token), ("key", key)]).await;
    let session = answer.set_cookie("latchkey_console").map(|c| pair(&c));
    (answer, session)
}

async fn state() -> AppState {
    support::state("http://127.0.0.1:9", "", latchkey_net::ClientConfig::default()).await
}

#[tokio::test]
async fn an_admin_key_signs_in_to_a_strict_http_only_session() {
    let state = state().await;
    let anonymous = send(&state, "GET", "/console", "", &[]).await;
    assert_eq!((anonymous.status, anonymous.location()), (303, "/console/sign-in"));

    let (answer, session) = sign_in(&state, support::API_KEY).await;
    assert_eq!((answer.status, answer.location()), (303, "/console"), "{}", answer.body);
    let set = answer.set_cookie("latchkey_console").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "http public URL: no Secure attribute: {set}");
    let session = session.unwrap();

    let overview = send(&state, "GET", "/console", &session, &[]).await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Connections by health"));
    let csp = overview.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"), "{csp}");
    assert_eq!(overview.headers["cache-control"], "no-store");

    let audit = state
        .engine
        .audit()
        .list(
            &Default::default(),
            &latchkey_store::AuditPage { newest_first: true, after: None, limit: 10 },
        )
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.record.action == "console.sign_in" && e.record.actor_id == "bootstrap")
    );
}

#[tokio::test]
async fn sign_in_refuses_wrong_keys_keys_without_admin_and_forged_forms() {
    let state = state().await;
    let (answer, session) = sign_in(&state, "lk_not-a-key").await;
    assert_eq!(answer.status, 401);
    assert!(session.is_none());

    let (_, reader) = state
        .engine
        .access()
        .create_key(NewApiKey {
            name: "reader".into(),
            environment: None,
            scopes: [Scope::ConnectionsRead].into_iter().collect(),
            expires_in: None,
        })
        .await
        .unwrap();
    let (answer, session) = sign_in(&state, reader.expose()).await;
    assert_eq!(answer.status, 403);
    assert!(answer.body.contains("admin"));
    assert!(session.is_none());

    // Without the sign-in cookie the form's token means nothing (login CSRF).
    let page = send(&state, "GET", "/console/sign-in", "", &[]).await;
    let answer = send(
        &state,
        "POST",
        "/console/sign-in",
        "",
        &[("csrf", &page.csrf()), ("key", support::API_KEY)],
    )
    .await;
    assert_eq!(answer.status, 403);
    assert!(answer.set_cookie("latchkey_console").is_none());
}

#[tokio::test]
async fn every_form_without_the_session_token_is_refused() {
    let state = state().await;
    let (_, session) = sign_in(&state, support::API_KEY).await;
    let session = session.unwrap();
    let page = send(&state, "GET", "/console/api-keys", &session, &[]).await;
    let token = page.csrf();

    let forms: &[(&str, &[(&str, &str)])] = &[
        ("/console/api-keys", &[("name", "forged"), ("scope:admin", "1")]),
        ("/console/integrations", &[("id", "forged"), ("connector", "prov")]),
        ("/console/links", &[("integration", "forged")]),
        ("/console/connections/c1/delete", &[("confirm", "c1")]),
        ("/console/connections/c1/check", &[]),
        ("/console/environment", &[("environment", "default")]),
        ("/console/sign-out", &[]),
    ];
    for (uri, fields) in forms {
        for bad in [None, Some("0".repeat(64)), Some(token[..63].to_owned())] {
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            if let Some(bad) = &bad {
                form.push(("csrf", bad));
            }
            let answer = send(&state, "POST", uri, &session, &form).await;
            assert_eq!(answer.status, 403, "{uri} with {bad:?}");
        }
    }
    // Nothing happened: no key, no integration, the connection is there, still signed in.
    let keys = state.engine.access().keys().await.unwrap();
    assert!(keys.iter().all(|k| k.name != "forged"));
    assert!(state.engine.connections().get(&"c1".parse().unwrap()).await.is_ok());
    assert_eq!(send(&state, "GET", "/console", &session, &[]).await.status, 200);

    // Another session's token is refused too.
    let (_, other) = sign_in(&state, support::API_KEY).await;
    let other_token = send(&state, "GET", "/console", &other.unwrap(), &[]).await.csrf();
    assert_ne!(other_token, token);
    let answer = send(
        &state,
        "POST",
        "/console/api-keys",
        &session,
        &[("csrf", &other_token), ("name", "forged"), ("scope:admin", "1")],
    )
    .await;
    assert_eq!(answer.status, 403);

    // With its token the same form works, and the key is shown once.
    let answer = send(
        &state,
        "POST",
        "/console/api-keys",
        &session,
        &[("csrf", &token), ("name", "made"), ("scope:proxy", "1")],
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert!(answer.body.contains("value=\"lk_"));
    let listed = send(&state, "GET", "/console/api-keys", &session, &[]).await;
    assert!(!listed.body.contains("value=\"lk_"), "the key is not shown again");
    let audit = state
        .engine
        .audit()
        .list(
            &Default::default(),
            &latchkey_store::AuditPage { newest_first: true, after: None, limit: 50 },
        )
        .await
        .unwrap();
    let created: Vec<_> = audit.iter().filter(|e| e.record.action == "api_key.create").collect();
    assert_eq!(created.len(), 1, "only the accepted form is a change");
    assert_eq!(created[0].record.detail.as_deref(), Some("console"));
}

#[tokio::test]
async fn sessions_end_at_sign_out_and_when_their_key_is_revoked() {
    let state = state().await;
    let (record, key) = state
        .engine
        .access()
        .create_key(NewApiKey {
            name: "operator".into(),
            environment: None,
            scopes: [Scope::Admin].into_iter().collect(),
            expires_in: None,
        })
        .await
        .unwrap();
    let (_, session) = sign_in(&state, key.expose()).await;
    let session = session.unwrap();
    let page = send(&state, "GET", "/console", &session, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("operator"));
    state.engine.access().revoke_key(&record.id).await.unwrap();
    let after = send(&state, "GET", "/console", &session, &[]).await;
    assert_eq!((after.status, after.location()), (303, "/console/sign-in"));

    let (_, session) = sign_in(&state, support::API_KEY).await;
    let session = session.unwrap();
    let token = send(&state, "GET", "/console", &session, &[]).await.csrf();
    let out = send(&state, "POST", "/console/sign-out", &session, &[("csrf", &token)]).await;
    assert_eq!((out.status, out.location()), (303, "/console/sign-in"));
    let cleared = out.set_cookie("latchkey_console").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = send(&state, "GET", "/console", &session, &[]).await;
    assert_eq!((after.status, after.location()), (303, "/console/sign-in"));
}

#[tokio::test]
async fn no_page_holds_a_stored_secret() {
    let state = state().await;
    let oauth = "id: prov2\nname: P2\nbase_url: https://api.example.com\nauth:\n  - type: oauth2\n    authorize_url: https://example.com/a\n    token_url: https://example.com/t\n";
    state
        .engine
        .connectors()
        .catalog()
        .add_source(oauth, "p2.yaml", latchkey_engine::Origin::Custom)
        .unwrap();
    state
        .engine
        .integrations()
        .put(NewIntegration {
            id: "app".parse().unwrap(),
            connector: "prov2".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new(CANARY_SECRET)),
            scopes: vec!["read".into()],
            environment: latchkey_engine::EnvironmentId::default_environment(),
        })
        .await
        .unwrap();
    state
        .engine
        .connections()
        .create(NewConnection {
            id: Some("c2".parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            credentials: BTreeMap::from([
                ("access_token".to_string(), Secret::new(CANARY_TOKEN)),
                ("refresh_token".to_string(), Secret::new(format!("{CANARY_TOKEN}-refresh"))),
            ]),
            ..NewConnection::new("prov2".parse().unwrap())
        })
        .await
        .unwrap();
    let (_, session) = sign_in(&state, support::API_KEY).await;
    let session = session.unwrap();
    let token = send(&state, "GET", "/console", &session, &[]).await.csrf();
    // An edit that leaves the secret empty keeps it.
    let saved = send(
        &state,
        "POST",
        "/console/integrations",
        &session,
        &[
            ("csrf", &token),
            ("replace", "1"),
            ("id", "app"),
            ("connector", "prov2"),
            ("client_id", "cid2"),
        ],
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let record = state
        .engine
        .integrations()
        .get(&latchkey_engine::EnvironmentId::default_environment(), &"app".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(record.client_secret.as_ref().map(Secret::expose), Some(CANARY_SECRET));
    assert_eq!(record.client_id.as_deref(), Some("cid2"));

    let pages = [
        "/console",
        "/console/integrations",
        "/console/integrations/app",
        "/console/connections",
        "/console/connections?integration=app&health=unknown",
        "/console/connections/c2",
        "/console/connections/c1",
        "/console/operations",
        "/console/operations?kind=refresh&outcome=failure",
        "/console/links",
        "/console/api-keys",
        "/console/audit",
    ];
    for uri in pages {
        let page = send(&state, "GET", uri, &session, &[]).await;
        assert_eq!(page.status, 200, "{uri}: {}", page.body);
        assert!(!page.body.contains("canary"), "{uri} holds a secret");
        assert!(page.body.contains("<main"), "{uri}");
    }
    let detail = send(&state, "GET", "/console/connections/c2", &session, &[]).await;
    assert!(detail.body.contains("access_token, refresh_token"), "field names, not values");
    let bad = send(&state, "GET", "/console/connections?status=nope", &session, &[]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("status must be"));
}

#[tokio::test]
async fn an_oidc_callback_needs_this_browsers_sign_in_and_its_state() {
    let plain = state().await;
    let off = send(&plain, "GET", "/console/oidc/start", "", &[]).await;
    assert_eq!(off.status, 404, "not configured: no single sign-on");
    assert!(!send(&plain, "GET", "/console/sign-in", "", &[]).await.body.contains("oidc-sign-in"));

    // An issuer nobody answers at: every refusal below happens before Latchkey would call it.
    let state = plain.with_console_oidc(latchkey_engine::OperatorOidc {
        issuer: "http://127.0.0.1:9".parse().unwrap(),
        client_id: "console".into(),
        client_secret: Secret::new(CANARY_SECRET),
        allowed: vec!["sub:alice".into()],
    });
    assert!(send(&state, "GET", "/console/sign-in", "", &[]).await.body.contains("oidc-sign-in"));
    let unreachable = send(&state, "GET", "/console/oidc/start", "", &[]).await;
    assert_eq!(unreachable.status, 502);
    assert!(!unreachable.body.contains("canary"));

    let without_cookie =
        send(&state, "GET", "/console/oidc/callback?state=s&code=c", "", &[]).await;
    assert_eq!(without_cookie.status, 400);
    assert!(without_cookie.body.contains("not started in this browser"));
    assert!(without_cookie.set_cookie("latchkey_console").is_none());

    let pending = latchkey_engine::PendingSignIn {
        state: Secret::new("s".repeat(43)),
        nonce: Secret::new("n".repeat(43)),
        verifier: Secret::new("v".repeat(43)),
    };
    let cookie = format!("latchkey_console_oidc={}", pending.to_cookie());
    let forged =
        send(&state, "GET", "/console/oidc/callback?state=other&code=c", &cookie, &[]).await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("does not match"), "{}", forged.body);
    assert!(forged.set_cookie("latchkey_console").is_none());
    let cleared = forged.set_cookie("latchkey_console_oidc").unwrap();
    assert!(cleared.contains("Max-Age=0"), "the pending sign-in is forgotten: {cleared}");
    let denied = format!("/console/oidc/callback?state={}&error=access_denied", "s".repeat(43));
    let denied = send(&state, "GET", &denied, &cookie, &[]).await;
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("refused the sign-in: access_denied"), "{}", denied.body);
}

#[tokio::test]
async fn the_environment_switcher_keeps_a_bound_key_in_its_environment() {
    let state = state().await;
    let prod = latchkey_engine::EnvironmentId::new("prod").unwrap();
    state
        .engine
        .access()
        .create_environment(latchkey_engine::NewEnvironment::new(prod.clone()))
        .await
        .unwrap();
    let (_, session) = sign_in(&state, support::API_KEY).await;
    let session = session.unwrap();
    let page = send(&state, "GET", "/console/connections", &session, &[]).await;
    let c1 = "href=\"/console/connections/c1\"";
    assert!(page.body.contains("environment-switch") && page.body.contains(c1));
    let token = page.csrf();
    let switched = send(
        &state,
        "POST",
        "/console/environment",
        &session,
        &[("csrf", &token), ("environment", "prod")],
    )
    .await;
    assert_eq!(switched.status, 303);
    let page = send(&state, "GET", "/console/connections", &session, &[]).await;
    assert!(page.body.contains("<option value=\"prod\" selected>"), "{}", page.body);
    assert!(!page.body.contains(c1), "the default environment's connection is not shown in prod");
    let unknown = send(
        &state,
        "POST",
        "/console/environment",
        &session,
        &[("csrf", &token), ("environment", "staging")],
    )
    .await;
    assert_eq!(unknown.status, 404);

    let (_, bound_key) = state
        .engine
        .access()
        .create_key(NewApiKey {
            name: "default admin".into(),
            environment: Some(latchkey_engine::EnvironmentId::default_environment()),
            scopes: [Scope::Admin].into_iter().collect(),
            expires_in: None,
        })
        .await
        .unwrap();
    let (_, bound) = sign_in(&state, bound_key.expose()).await;
    let bound = bound.unwrap();
    let page = send(&state, "GET", "/console", &bound, &[]).await;
    assert!(!page.body.contains("environment-switch"), "a bound key has no switcher");
    let token = page.csrf();
    let refused = send(
        &state,
        "POST",
        "/console/environment",
        &bound,
        &[("csrf", &token), ("environment", "prod")],
    )
    .await;
    assert_eq!(refused.status, 404, "another environment does not exist for a bound key");
    let page = send(&state, "GET", "/console/connections", &bound, &[]).await;
    assert!(page.body.contains(c1), "still in default");
}
