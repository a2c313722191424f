//! An OAuth2 method with a base URL of its own (Atlassian's 3LO tokens work only at
//! `api.atlassian.com/ex/jira/{cloud id}`): its connections go there, and only there; the
//! connector's other methods keep the connector's base URL.

mod common;

use std::collections::BTreeMap;

use common::engine;
use latchkey_core::Secret;
use latchkey_engine::{ApiRequest, NewConnection};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn an_oauth2_method_with_its_own_base_url_sends_its_token_there_only() {
    let site = MockServer::start().await;
    let gateway = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ex/jira/cloud-1/rest/api/3/myself"))
        .and(header("authorization", "Bearer at-1"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&gateway)
        .await;
    Mock::given(method("GET"))
        .and(path("/site/rest/api/3/myself"))
        .and(header("authorization", "Basic dTpw"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&site)
        .await;
    let yaml = format!(
        "id: prov\nname: Prov\nbase_url: {site}/site/rest/api/3\nconfig: [{{key: cloud_id, optional: true}}]\nauth:\n  - type: basic\n  - type: oauth2\n    base_url: '{gateway}/ex/jira/{{{{ config.cloud_id }}}}/rest/api/3'\n    authorize_url: {gateway}/authorize\n    token_url: {gateway}/token\n",
        site = site.uri(),
        gateway = gateway.uri(),
    );
    let engine = engine(&yaml).await;
    let new = |id: &str, method: &str, credentials: &[(&str, &str)], config: &[(&str, &str)]| {
        NewConnection {
            id: Some(id.parse().unwrap()),
            integration: Some("app".parse().unwrap()),
            auth: Some(method.into()),
            credentials: credentials
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(*v)))
                .collect::<BTreeMap<_, _>>(),
            config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..NewConnection::new("prov".parse().unwrap())
        }
    };
    let oauth = engine
        .connections()
        .create(new("o", "oauth2", &[("access_token", "at-1")], &[("cloud_id", "cloud-1")]))
        .await
        .unwrap();
    let basic = engine
        .connections()
        .create(new("b", "basic", &[("username", "u"), ("password", "p")], &[]))
        .await
        .unwrap();
    let get = || ApiRequest { path: "/myself".into(), ..ApiRequest::default() };
    assert_eq!(
        engine.dispatch().request(&oauth.id.parse().unwrap(), get()).await.unwrap().status,
        200
    );
    assert_eq!(
        engine.dispatch().request(&basic.id.parse().unwrap(), get()).await.unwrap().status,
        200
    );
    assert_eq!(gateway.received_requests().await.unwrap().len(), 1);
    assert_eq!(site.received_requests().await.unwrap().len(), 1);

    // The OAuth token never goes to the connector's base host, even when asked for a full URL.
    let escape = ApiRequest { path: format!("{}/site/x", site.uri()), ..ApiRequest::default() };
    assert!(engine.dispatch().request(&oauth.id.parse().unwrap(), escape).await.is_err());
    assert_eq!(site.received_requests().await.unwrap().len(), 1);
}
