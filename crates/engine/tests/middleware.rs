//! The engine as a `reqwest_middleware` layer: requests under the connection's base URL get its
//! credentials; others are refused before anything is sent.

mod common;

use std::collections::BTreeMap;

use common::engine;
use latchkey_core::Secret;
use latchkey_engine::NewConnection;
use latchkey_engine::middleware::{Connection, Latchkey};
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn setup() -> (MockServer, reqwest_middleware::ClientWithMiddleware) {
    let server = MockServer::start().await;
    let yaml =
        format!("id: prov\nname: Prov\nbase_url: {}/api\nauth:\n  - type: bearer\n", server.uri());
    let engine = engine(&yaml).await;
    for (id, token) in [("c1", "tok-one"), ("c2", "tok-two")] {
        engine
            .connections()
            .create(NewConnection {
                id: Some(id.parse().unwrap()),
                credentials: BTreeMap::from([("token".into(), Secret::new(token))]),
                ..NewConnection::new("prov".parse().unwrap())
            })
            .await
            .unwrap();
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Latchkey::new(engine).with_connection("c1".parse().unwrap()))
        .build();
    (server, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_carry_the_connections_credentials() {
    let (server, client) = setup().await;
    Mock::given(method("POST"))
        .and(path("/api/items"))
        .and(query_param("page", "2"))
        .and(header("authorization", "Bearer tok-one"))
        .and(header("x-caller", "yes"))
        .and(body_string(r#"{"n":1}"#))
        .respond_with(ResponseTemplate::new(201).set_body_string("made"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .and(header("authorization", "Bearer tok-two"))
        .respond_with(ResponseTemplate::new(200).set_body_string("two"))
        .mount(&server)
        .await;

    let response = client
        .post(format!("{}/api/items?page=2", server.uri()))
        .header("x-caller", "yes")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), "made");

    let response = client
        .get(format!("{}/api/me", server.uri()))
        .with_extension(Connection("c2".parse().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the extension picks another connection");
    assert_eq!(response.text().await.unwrap(), "two");
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_outside_the_base_url_are_refused_unsent() {
    let (server, client) = setup().await;
    for url in [format!("{}/elsewhere", server.uri()), "http://127.0.0.1:9/api/me".to_string()] {
        let err = client.get(&url).send().await.unwrap_err();
        assert!(err.to_string().contains("is not under connection `c1`'s base URL"), "{err}");
    }
    let err = client
        .get(format!("{}/api/me", server.uri()))
        .with_extension(Connection("nope".parse().unwrap()))
        .send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
