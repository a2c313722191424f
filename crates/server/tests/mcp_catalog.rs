//! The catalog's remote MCP servers (`connectors/*-mcp.yaml`): every one loads and is recognised
//! as an MCP server connector — its base URL is the resource, sent on the authorization, token
//! and refresh requests, with PKCE S256 — and no other catalog entry is taken for one.

use std::collections::BTreeMap;

use latchkey_engine::Catalog;
use latchkey_engine::core::connector::AuthMethod;
use latchkey_engine::core::oauth2::{AuthorizeRequest, authorize_url};
use latchkey_engine::oauth2::mcp_client::mcp_server_of;

#[test]
fn every_mcp_catalog_entry_is_an_mcp_server_connector_bound_to_its_url() {
    let catalog = Catalog::load(&[] as &[&str]);
    let broken: Vec<_> = catalog.errors().into_iter().filter(|e| e.file.contains("-mcp")).collect();
    assert!(broken.is_empty(), "MCP catalog entries that do not load: {broken:?}");
    let mut servers = Vec::new();
    for entry in catalog.list() {
        let connector = &entry.connector;
        let named = connector.id.ends_with("-mcp");
        let server = mcp_server_of(connector);
        assert_eq!(
            server.is_some(),
            named,
            "`{}`: an MCP server connector is named `*-mcp`, and every `*-mcp` entry is one",
            connector.id
        );
        let Some(server) = server else { continue };
        assert_eq!(
            server.as_str(),
            connector.base_url,
            "{}: the resource is its URL",
            connector.id
        );
        assert_eq!(server.scheme(), "https", "{}", connector.id);
        let Some(AuthMethod::OAuth2(method)) = connector.auth.first() else { unreachable!() };
        let endpoint = url::Url::parse(method.authorize_url.as_deref().unwrap()).unwrap();
        let url = authorize_url(
            method,
            AuthorizeRequest {
                endpoint: &endpoint,
                client_id: "c",
                redirect_uri: "https://latchkey.example.com/oauth/callback",
                scopes: &method.scopes,
                state: "s",
                code_challenge: Some("challenge"),
            },
        );
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["resource"], connector.base_url, "{}", connector.id);
        assert_eq!(query["code_challenge_method"], "S256", "{}", connector.id);
        assert!(method.token_url.is_some(), "{}: documented endpoints", connector.id);
        assert!(connector.docs.is_some(), "{}: the provider's page", connector.id);
        servers.push(connector.id.clone());
    }
    servers.sort();
    assert_eq!(
        servers,
        ["asana-mcp", "canva-mcp", "github-mcp", "linear-mcp", "notion-mcp", "sentry-mcp"],
        "the list in docs/mcp.md"
    );
}
