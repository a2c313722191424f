//! The connect page's settings through the API: branding per environment and integration
//! (checked, merged, shown on the page), and a session's `lang`, `integrations` and
//! `return_url`.

mod support;

use axum::body::{Body, to_bytes};
use latchkey_engine::NewIntegration;
use serde_json::json;
use support::{API_KEY, call, state};
use tower::ServiceExt;

async fn page(state: &latchkey_server::AppState, link: &str, lang: &str) -> (u16, String, String) {
    let path = link.trim_start_matches("http://127.0.0.1:7400");
    let request =
        http::Request::get(path).header("accept-language", lang).body(Body::empty()).unwrap();
    let response = latchkey_server::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_string();
    let html = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, csp, String::from_utf8_lossy(&html).into_owned())
}

#[tokio::test]
async fn branding_is_checked_merged_and_worn_by_the_page() {
    let state = state("https://api.prov.example", "", Default::default()).await;
    state
        .engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "prov-app".parse().unwrap(),
            connector: "prov".parse().unwrap(),
            client_id: None,
            client_secret: None,
            scopes: vec![],
        })
        .await
        .unwrap();
    for (body, field) in [
        (json!({"custom_css": "h1 { background: url(https://x.example/a.png) }"}), "custom_css"),
        (json!({"custom_css": "@import 'x.css';"}), "custom_css"),
        (json!({"logo": "https://x.example/logo.png"}), "logo"),
        (json!({"primary_color": "blue"}), "primary_color"),
    ] {
        let (status, error) =
            call(&state, "PUT", "/v1/environments/default/branding", API_KEY, Some(body)).await;
        assert_eq!((status, error["field"].as_str()), (400, Some(field)), "{error}");
    }
    let (status, error) = call(
        &state,
        "PUT",
        "/v1/environments/default/branding",
        API_KEY,
        Some(json!({"colour": "#000000"})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {error}");

    let env = json!({"display_name": "Acme CRM", "primary_color": "#7b2ff7", "theme": "light"});
    let (status, set) =
        call(&state, "PUT", "/v1/environments/default/branding", API_KEY, Some(env.clone())).await;
    assert_eq!((status, &set), (200, &env));
    let mine = json!({"theme": "dark", "custom_css": ".card { border-width: 2px }"});
    let (status, _) =
        call(&state, "PUT", "/v1/integrations/prov-app/branding", API_KEY, Some(mine.clone()))
            .await;
    assert_eq!(status, 200);
    let (_, got) = call(&state, "GET", "/v1/integrations/prov-app/branding", API_KEY, None).await;
    assert_eq!(got, mine, "an integration's branding reads as set, not merged");
    let (status, _) = call(&state, "GET", "/v1/integrations/nope/branding", API_KEY, None).await;
    assert_eq!(status, 404);

    let (status, session) = call(
        &state,
        "POST",
        "/v1/connect-sessions",
        API_KEY,
        Some(json!({"integration": "prov-app"})),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let (status, csp, html) = page(&state, session["connect_link"].as_str().unwrap(), "en").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Acme CRM") && html.contains("--primary: #7b2ff7"), "{html}");
    assert!(html.contains(r#"data-theme="dark""#), "the integration's theme wins");
    assert!(html.contains(".card { border-width: 2px }"));
    assert!(csp.contains("default-src 'none'") && csp.contains("img-src data:"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert_eq!(
        html.matches(&format!(r#"nonce="{nonce}""#)).count(),
        3,
        "two styles and one script"
    );

    // Cleared with {}.
    let (status, cleared) =
        call(&state, "PUT", "/v1/environments/default/branding", API_KEY, Some(json!({}))).await;
    assert_eq!((status, cleared), (200, json!({})));
}

#[tokio::test]
async fn a_session_speaks_its_language_and_offers_its_picks() {
    let state = state("https://api.prov.example", "", Default::default()).await;
    for id in ["one", "two"] {
        state
            .engine
            .integrations()
            .put(NewIntegration {
                environment: latchkey_engine::EnvironmentId::default_environment(),
                id: id.parse().unwrap(),
                connector: "prov".parse().unwrap(),
                client_id: None,
                client_secret: None,
                scopes: vec![],
            })
            .await
            .unwrap();
    }
    let create = |body: serde_json::Value| {
        let state = state.clone();
        async move { call(&state, "POST", "/v1/connect-sessions", API_KEY, Some(body)).await }
    };
    let (status, error) = create(json!({"integration": "one", "lang": "xx"})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("lang")), "{error}");
    let (status, error) =
        create(json!({"integration": "one", "integrations": ["one", "two"]})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("integrations")), "{error}");
    let (status, error) =
        create(json!({"integration": "one", "return_url": "https://app.example/done"})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("return_url")), "{error}");

    let (status, session) = create(json!({"integration": "one", "lang": "de"})).await;
    assert_eq!(status, 201, "{session}");
    let (_, _, html) = page(&state, session["connect_link"].as_str().unwrap(), "fr").await;
    assert!(html.contains(r#"<html lang="de""#) && html.contains("Prov verbinden"), "{html}");
    let (_, session) = create(json!({"integration": "one"})).await;
    let (_, _, html) =
        page(&state, session["connect_link"].as_str().unwrap(), "ja, en;q=0.5").await;
    assert!(html.contains(r#"<html lang="ja""#) && html.contains("Prov に接続"), "{html}");

    let (_, session) = create(json!({"integrations": ["one", "two"]})).await;
    let link = session["connect_link"].as_str().unwrap();
    let (status, _, html) = page(&state, link, "en").await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose a service to connect"), "{html}");
    assert!(html.contains("?integration=one") && html.contains("?integration=two"), "{html}");
    let (status, _, html) = page(&state, &format!("{link}?integration=two"), "en").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Connect Prov") && html.contains(r#"action="?integration=two""#),
        "{html}"
    );
    let (status, _, _) = page(&state, &format!("{link}?integration=other"), "en").await;
    assert_eq!(status, 400, "an integration the link does not offer");
}
