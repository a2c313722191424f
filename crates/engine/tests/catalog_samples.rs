//! A sample of catalog entries per auth family, connected and used against a local mock of the
//! provider that checks what the real one would: the header names and values, the token
//! request's form, the scope string. The catalog file is loaded as shipped, with its hosts
//! pointed at the mock.

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_engine::{
    ApiRequest, CallbackParams, Catalog, Engine, NewConnectSession, NewConnection, NewIntegration,
    Origin,
};
use latchkey_store::{Keyring, MasterKey, SqliteStore};
use wiremock::matchers::{body_string_contains, header, header_regex, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The catalog file `id`, every `https://host` pointed at `mock`, and `allowed_hosts` dropped.
fn pointed_at(id: &str, mock: &MockServer) -> String {
    let source = std::fs::read_to_string(format!(
        "{}/../../connectors/{id}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let urls = regex::Regex::new(r#"https://(\{\{[^}]*\}\}|[^/\s"',{])+"#).unwrap();
    assert!(urls.is_match(&source), "connectors/{id}.yaml holds no https URL to point at the mock");
    // Field help links are dropped: they must stay https, and no request goes to them.
    let help_links = regex::Regex::new(r"(, )?docs_url: '[^']*'").unwrap();
    let source = help_links.replace_all(&source, "");
    let hosts = regex::Regex::new(r"(?m)^allowed_hosts:.*$").unwrap();
    hosts.replace_all(&urls.replace_all(&source, mock.uri().as_str()), "").into_owned()
}

/// `yaml` with every `from` replaced by `to`. Panics naming `from` when the connector does not
/// hold it: a shipped file that changed must fail the test, not leave it testing an unedited
/// connector.
fn edit(yaml: &str, from: &str, to: &str) -> String {
    assert!(yaml.contains(from), "the connector no longer holds {from:?}: update this test");
    yaml.replace(from, to)
}

/// Where `pattern` starts in `yaml`; panics naming it when it is missing.
fn find(yaml: &str, pattern: &str) -> usize {
    yaml.find(pattern)
        .unwrap_or_else(|| panic!("the connector no longer holds {pattern:?}: update this test"))
}

async fn engine(yaml: &str) -> Arc<Engine> {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let catalog = Catalog::default();
    catalog.add_source(yaml, "sample.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    Engine::builder(Arc::new(store), catalog, net).build().await.unwrap()
}

fn method_of_kind(engine: &Engine, connector: &str, kind: &str) -> String {
    engine
        .connectors()
        .get(&connector.parse().unwrap())
        .unwrap()
        .connector
        .auth
        .iter()
        .find(|m| m.kind() == kind)
        .unwrap()
        .id()
        .to_string()
}

fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
}

#[tokio::test]
async fn api_key_in_a_renamed_header_anthropic() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": []})))
        .mount(&mock)
        .await;
    let engine = engine(&pointed_at("anthropic", &mock)).await;
    engine
        .connections()
        .create(NewConnection {
            credentials: creds(&[("api_key", "sk-ant-test")]),
            run_test: true,
            ..NewConnection::new("anthropic".parse().unwrap())
        })
        .await
        .unwrap();
    // A wrong key fails the test and stores nothing.
    let err = engine
        .connections()
        .create(NewConnection {
            id: Some("bad".parse().unwrap()),
            credentials: creds(&[("api_key", "wrong")]),
            run_test: true,
            ..NewConnection::new("anthropic".parse().unwrap())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("credential test failed"), "{err}");
    assert!(engine.connections().get(&"bad".parse().unwrap()).await.is_err());
}

#[tokio::test]
async fn basic_with_a_fixed_password_freshdesk() {
    let mock = MockServer::start().await;
    // Freshdesk takes the API key as the username and "X" as the password.
    Mock::given(method("GET"))
        .and(path("/api/v2/agents/me"))
        .and(header("authorization", "Basic a2V5LTEyMzpY"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"contact": {"email": "ada@acme.example"}})),
        )
        .mount(&mock)
        .await;
    let yaml = pointed_at("freshdesk", &mock);
    let engine = engine(&yaml).await;
    engine
        .connections()
        .create(NewConnection {
            credentials: creds(&[("username", "key-123")]),
            config: BTreeMap::from([("subdomain".to_string(), "acme".to_string())]),
            run_test: true,
            ..NewConnection::new("freshdesk".parse().unwrap())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn bearer_with_default_headers_github() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header("authorization", "Bearer ghp_test"))
        .and(header("accept", "application/vnd.github+json"))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"login": "octocat"})),
        )
        .mount(&mock)
        .await;
    let engine = engine(&pointed_at("github", &mock)).await;
    let auth = method_of_kind(&engine, "github", "bearer");
    let record = engine
        .connections()
        .create(NewConnection {
            auth: Some(auth),
            credentials: creds(&[("token", "ghp_test")]),
            run_test: true,
            ..NewConnection::new("github".parse().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(record.label.as_deref(), Some("octocat"));
}

#[tokio::test]
async fn oauth2_user_token_slack() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/oauth.v2.access"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=the-code"))
        .and(body_string_contains("client_id=cid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ok": true, "access_token": "xoxb-bot", "authed_user": {"id": "U1", "access_token": "xoxp-user"}
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/auth.test"))
        .and(header("authorization", "Bearer xoxp-user"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"team": "Acme", "user": "ada"})),
        )
        .mount(&mock)
        .await;
    let yaml = edit(
        &pointed_at("slack", &mock),
        "  - type: oauth2\n    label: Bot token (OAuth)",
        "  - type: oauth2\n    id: bot\n    label: Bot token (OAuth)",
    );
    // The user-token method is the one under test: make it the default.
    let yaml = move_user_method_first(&yaml);
    let engine = engine(&yaml).await;
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "slack".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("cs")),
            scopes: vec![],
        })
        .await
        .unwrap();
    let (session, _) = engine
        .connect()
        .create_session(NewConnectSession { ..NewConnectSession::new("app".parse().unwrap()) })
        .await
        .unwrap();
    let binding = Secret::new("b");
    let url = engine
        .connect()
        .begin_authorization(&session, "https://lk.example/oauth/callback", &binding)
        .await
        .unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        query["user_scope"], "channels:read,users:read",
        "Slack's comma-separated user scopes"
    );
    assert!(!query.contains_key("code_challenge"), "PKCE is off for Slack");
    let params = CallbackParams::from_pairs([
        ("state".to_string(), query["state"].clone()),
        ("code".to_string(), "the-code".to_string()),
    ]);
    let (_, record) =
        engine.connect().complete_authorization(params, Some(&binding)).await.unwrap();
    assert_eq!(
        record.credentials["access_token"].expose(),
        "xoxp-user",
        "the user token under authed_user"
    );
    assert_eq!(record.label.as_deref(), Some("Acme (ada)"));

    // Deleting it revokes the token with Slack's auth.revoke, authenticated with the token.
    Mock::given(method("POST"))
        .and(path("/api/auth.revoke"))
        .and(header("authorization", "Bearer xoxp-user"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"ok": true, "revoked": true})),
        )
        .mount(&mock)
        .await;
    let id = record.id.parse().unwrap();
    assert_eq!(
        engine.connections().delete(&id).await.unwrap(),
        latchkey_engine::Revocation::Revoked
    );
}

/// GitHub's OAuth tokens are revoked with its own call, "Delete an app token": `DELETE
/// /applications/{client_id}/token`, the client's Basic credentials, the token in a JSON body;
/// a personal access token is left alone (`not_supported`).
#[tokio::test]
async fn oauth2_revocation_by_script_github() {
    let mock = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/applications/cid/token"))
        .and(header("authorization", "Basic Y2lkOmNz"))
        .and(body_string_contains("\"access_token\":\"gho_user\""))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    let engine = engine(&pointed_at("github", &mock)).await;
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "github".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("cs")),
            scopes: vec![],
        })
        .await
        .unwrap();
    let oauth = engine
        .connections()
        .create(NewConnection {
            integration: Some("app".parse().unwrap()),
            credentials: creds(&[("access_token", "gho_user")]),
            ..NewConnection::new("github".parse().unwrap())
        })
        .await
        .unwrap();
    let revoked = engine.connections().delete(&oauth.id.parse().unwrap()).await.unwrap();
    assert_eq!(revoked, latchkey_engine::Revocation::Revoked);
    let pat = engine
        .connections()
        .create(NewConnection {
            auth: Some(method_of_kind(&engine, "github", "bearer")),
            credentials: creds(&[("token", "ghp_test")]),
            ..NewConnection::new("github".parse().unwrap())
        })
        .await
        .unwrap();
    let left = engine.connections().delete(&pat.id.parse().unwrap()).await.unwrap();
    assert_eq!(left, latchkey_engine::Revocation::NotSupported);
}

fn move_user_method_first(yaml: &str) -> String {
    let start = find(yaml, "  - type: oauth2\n    id: user");
    let end = start + find(&yaml[start..], "  - type: bearer");
    let user = &yaml[start..end];
    let rest = format!("{}{}", &yaml[..start], &yaml[end..]);
    let auth = find(&rest, "auth:\n") + "auth:\n".len();
    format!("{}{}{}", &rest[..auth], user, &rest[auth..])
}

#[tokio::test]
async fn oauth2_instance_url_salesforce() {
    let login = MockServer::start().await;
    let instance = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "00D-token", "refresh_token": "r", "instance_url": instance.uri()
        })))
        .mount(&login)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/oauth2/userinfo"))
        .and(header("authorization", "Bearer 00D-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"preferred_username": "ada@acme.example"})),
        )
        .mount(&instance)
        .await;
    // The login host is a config value; point its default at the mock.
    let host = login.uri().trim_start_matches("http://").to_string();
    let yaml = pointed_at("salesforce", &login);
    let yaml = edit(&yaml, "default: login.salesforce.com", &format!("default: '{host}'"));
    let yaml = edit(
        &yaml,
        &format!("{}/services", login.uri()),
        "http://{{ config.login_host }}/services",
    );
    let yaml =
        edit(&yaml, "pattern: '(login|test)", "pattern: '127\\.0\\.0\\.1:[0-9]+|(login|test)");
    // `pointed_at` has already turned the instance URL's pattern (`https://[a-z0-9.-]+…`) into
    // the login mock's URL; the instance mock listens elsewhere.
    let yaml = edit(&yaml, &format!("pattern: '{}'", login.uri()), "pattern: 'http.*'");
    let engine = engine(&yaml).await;
    engine
        .integrations()
        .put(NewIntegration {
            environment: latchkey_engine::EnvironmentId::default_environment(),
            id: "app".parse().unwrap(),
            connector: "salesforce".parse().unwrap(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("cs")),
            scopes: vec![],
        })
        .await
        .unwrap();
    let (session, _) = engine
        .connect()
        .create_session(NewConnectSession { ..NewConnectSession::new("app".parse().unwrap()) })
        .await
        .unwrap();
    let binding = Secret::new("b");
    let url = engine
        .connect()
        .begin_authorization(&session, "https://lk.example/oauth/callback", &binding)
        .await
        .unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "api offline_access");
    assert_eq!(query["code_challenge_method"], "S256");
    let params = CallbackParams::from_pairs([
        ("state".to_string(), query["state"].clone()),
        ("code".to_string(), "c".to_string()),
    ]);
    let (_, record) =
        engine.connect().complete_authorization(params, Some(&binding)).await.unwrap();
    assert_eq!(record.config["instance_url"], instance.uri());
    assert_eq!(record.label.as_deref(), Some("ada@acme.example"));
    let response = engine
        .dispatch()
        .request(
            &record.id.parse().unwrap(),
            ApiRequest { path: "/services/oauth2/userinfo".into(), ..ApiRequest::default() },
        )
        .await
        .unwrap();
    assert_eq!(response.status.as_u16(), 200, "requests go to the kept instance URL");
}

#[tokio::test]
async fn aws_sigv4_sts() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(header_regex("authorization", r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/sts/aws4_request, SignedHeaders=[a-z0-9;-]*x-amz-date[a-z0-9;-]*, Signature=[0-9a-f]{64}$"))
        .and(header("x-amz-security-token", "session-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "GetCallerIdentityResponse": {"GetCallerIdentityResult": {"Arn": "arn:aws:iam::123456789012:user/ada"}}
        })))
        .mount(&mock)
        .await;
    let engine = engine(&pointed_at("aws-sts", &mock)).await;
    let record = engine
        .connections()
        .create(NewConnection {
            credentials: creds(&[
                ("access_key_id", "AKIDEXAMPLE"),
                ("secret_access_key", "secret"),
                ("session_token", "session-1"),
            ]),
            config: BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]),
            run_test: true,
            ..NewConnection::new("aws-sts".parse().unwrap())
        })
        .await
        .unwrap();
    assert_eq!(record.label.as_deref(), Some("arn:aws:iam::123456789012:user/ada"));
}

#[test]
#[should_panic(expected = "the connector no longer holds \"label: Gone\": update this test")]
fn an_edit_whose_pattern_is_missing_fails_naming_it() {
    let _ = edit("id: x\nname: X\n", "label: Gone", "label: Here");
}
