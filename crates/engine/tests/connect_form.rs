//! What the connect page asks: config the app did not pass (asked, not refused at creation),
//! defaults pre-filled, the app's values hidden, patterns checked on the server, and the
//! end user's pick among a link's integrations.

mod common;

use std::collections::BTreeMap;

use common::setup;
use latchkey_core::Secret;
use latchkey_core::connector::FieldProblem;
use latchkey_engine::{EngineError, NewConnectSession, NewIntegration};

const REDIRECT: &str = "http://lk.example/oauth/callback";

fn oauth_connector() -> &'static str {
    "id: prov\nname: Prov\nbase_url: https://{{ config.shop }}.prov.example/api\nconfig:\n  - {key: shop, label: Shop, pattern: '[a-z0-9-]+', example: acme}\n  - {key: region, pattern: '[a-z]{2}', default: us}\nauth:\n  - type: oauth2\n    authorize_url: https://{{ config.shop }}.prov.example/authorize\n    token_url: https://{{ config.shop }}.prov.example/token\n"
}

fn form_connector() -> &'static str {
    "id: prov\nname: Prov\nbase_url: https://api.prov.example\nconfig:\n  - {key: region, label: Region, pattern: '[a-z]{2}', default: us}\n  - {key: team, label: Team, pattern: '[a-z]+'}\nauth:\n  - type: api_key\n    fields:\n      - {key: token, label: API token, pattern: 'tok-[0-9]+', example: tok-1, help: Settings, docs_url: 'https://prov.example/docs/tokens'}\n"
}

fn field(error: EngineError) -> String {
    error.field().unwrap_or_else(|| panic!("no field: {error}")).to_string()
}

#[tokio::test]
async fn required_config_the_app_did_not_pass_is_asked_before_the_consent_redirect() {
    let s = setup(oauth_connector()).await;
    let connect = s.engine.connect();
    // Creating the session no longer fails for the missing shop.
    let (session, _) =
        connect.create_session(NewConnectSession::new("app".parse().unwrap())).await.unwrap();
    assert!(
        session.config.is_empty(),
        "defaults are filled when the flow runs: {:?}",
        session.config
    );
    let form = connect.session_form(&session).await.unwrap();
    assert!(form.redirect);
    let keys: Vec<_> = form.fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["shop"], "only what the redirect needs; region has a default");
    assert_eq!(form.fields[0].example.as_deref(), Some("acme"));

    let typed = |shop: &str| BTreeMap::from([("shop".to_string(), shop.to_string())]);
    assert_eq!(field(connect.add_config(&session, typed("Acme!")).await.unwrap_err()), "shop");
    assert_eq!(field(connect.add_config(&session, typed("")).await.unwrap_err()), "shop");
    let session = connect.add_config(&session, typed("acme")).await.unwrap();
    let stored = connect.session(&session.id).await.unwrap();
    assert_eq!(stored.config["shop"], "acme", "kept for the callback");
    assert!(connect.session_form(&stored).await.unwrap().fields.is_empty(), "nothing left to ask");
    let url = connect.begin_authorization(&stored, REDIRECT, &Secret::new("b")).await.unwrap();
    assert_eq!(url.host_str(), Some("acme.prov.example"));
}

#[tokio::test]
async fn the_apps_values_are_hidden_checked_and_win() {
    let s = setup(oauth_connector()).await;
    let connect = s.engine.connect();
    let passed = |shop: &str| NewConnectSession {
        config: BTreeMap::from([("shop".to_string(), shop.to_string())]),
        ..NewConnectSession::new("app".parse().unwrap())
    };
    // A value passed is still checked when the session is made.
    assert_eq!(field(connect.create_session(passed("Bad Shop")).await.unwrap_err()), "config.shop");
    let (session, _) = connect.create_session(passed("beta")).await.unwrap();
    assert!(
        connect.session_form(&session).await.unwrap().fields.is_empty(),
        "straight to the provider"
    );
    let url = connect.begin_authorization(&session, REDIRECT, &Secret::new("b")).await.unwrap();
    assert_eq!(url.host_str(), Some("beta.prov.example"));
}

#[tokio::test]
async fn a_form_prefills_defaults_and_the_server_checks_every_pattern() {
    let s = setup(form_connector()).await;
    let connect = s.engine.connect();
    let (session, _) =
        connect.create_session(NewConnectSession::new("app".parse().unwrap())).await.unwrap();
    let form = connect.session_form(&session).await.unwrap();
    assert!(!form.redirect);
    let keys: Vec<_> = form.fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["region", "team", "token"]);
    assert_eq!(form.fields[0].default.as_deref(), Some("us"), "pre-filled");
    assert_eq!(form.fields[2].docs_url.as_deref(), Some("https://prov.example/docs/tokens"));

    let values = |pairs: &[(&str, &str)]| -> BTreeMap<String, Secret> {
        pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
    };
    let problems = form.problems(&values(&[("region", ""), ("token", "nope")])).unwrap();
    assert_eq!(
        problems,
        BTreeMap::from([
            ("team".to_string(), FieldProblem::Missing),
            ("token".to_string(), FieldProblem::Mismatch),
        ]),
        "an empty field with a default is fine"
    );
    let refused = connect
        .complete_session_form(&session, values(&[("team", "acme"), ("token", "nope")]))
        .await
        .unwrap_err();
    assert_eq!(field(refused), "token");
    let refused = connect
        .complete_session_form(&session, values(&[("team", "Acme"), ("token", "tok-1")]))
        .await
        .unwrap_err();
    assert_eq!(field(refused), "team");
    let made = connect
        .complete_session_form(
            &session,
            values(&[("region", ""), ("team", "acme"), ("token", "tok-1")]),
        )
        .await
        .unwrap();
    assert_eq!(made.config["region"], "us", "the default filled in");
    assert_eq!(made.config["team"], "acme");
}

#[tokio::test]
async fn a_link_offers_integrations_to_pick_from() {
    let s = setup(form_connector()).await;
    s.engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app2".parse().unwrap(),
            connector: "prov".parse().unwrap(),
            client_id: None,
            client_secret: None,
            scopes: vec![],
        })
        .await
        .unwrap();
    let connect = s.engine.connect();
    let pick = |choices: &[&str]| NewConnectSession {
        choices: choices.iter().map(|c| c.parse().unwrap()).collect(),
        ..NewConnectSession::new("ignored".parse().unwrap())
    };
    // One: straight to it.
    let (one, _) = connect.create_session(pick(&["app2"])).await.unwrap();
    assert!(one.choices.is_empty());
    assert_eq!(one.integration, "app2");
    // Several: a picker.
    let (several, _) = connect.create_session(pick(&["app", "app2"])).await.unwrap();
    assert_eq!(several.choices, ["app", "app2"]);
    let choices = connect.session_choices(&several).await.unwrap();
    assert_eq!(choices.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Prov", "Prov"]);
    assert_eq!(field(connect.choose(&several, "other").await.unwrap_err()), "integration");
    let chosen = connect.choose(&several, "app2").await.unwrap();
    assert_eq!(connect.session(&several.id).await.unwrap().integration, "app2");
    assert_eq!(chosen.integration, "app2");
    // Refused: an unknown integration, a duplicate, config that belongs to one connector.
    assert!(matches!(
        connect.create_session(pick(&["app", "nope"])).await.unwrap_err(),
        EngineError::IntegrationNotFound(_)
    ));
    assert_eq!(
        field(connect.create_session(pick(&["app", "app"])).await.unwrap_err()),
        "integrations"
    );
    let with_config = NewConnectSession {
        config: BTreeMap::from([("team".to_string(), "acme".to_string())]),
        ..pick(&["app", "app2"])
    };
    assert_eq!(field(connect.create_session(with_config).await.unwrap_err()), "integrations");
}

#[tokio::test]
async fn a_full_page_flow_returns_only_to_the_apps_origin() {
    let s = setup(form_connector()).await;
    let connect = s.engine.connect();
    let back = |origin: Option<&str>, url: &str| NewConnectSession {
        allowed_origin: origin.map(str::to_string),
        return_url: Some(url.to_string()),
        ..NewConnectSession::new("app".parse().unwrap())
    };
    for (origin, url) in [
        (None, "https://app.example/done"),
        (Some("https://app.example"), "https://evil.example/done"),
        (Some("https://app.example"), "javascript:alert(1)"),
        (Some("https://app.example"), "https://user:pw@app.example/done"),
    ] {
        let refused = connect.create_session(back(origin, url)).await.unwrap_err();
        assert_eq!(field(refused), "return_url", "{url}");
    }
    let (session, _) = connect
        .create_session(back(Some("https://app.example"), "https://app.example/done?x=1"))
        .await
        .unwrap();
    assert_eq!(session.return_url.as_deref(), Some("https://app.example/done?x=1"));
}
