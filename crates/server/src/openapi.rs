//! The OpenAPI document at `/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::routes::{
    agent_tokens, api_keys, audit, branding, connect_sessions, connections, connectors,
    environments, integrations, operations, webhook_deliveries,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Connect to any HTTP API on behalf of your users."),
    paths(
        connectors::list, connectors::get, connectors::put, connectors::delete,
        integrations::list, integrations::create, integrations::get, integrations::delete,
        integrations::create_mcp,
        connections::list, connections::create, connections::get, connections::update,
        connections::delete,
        connections::test, connections::check, connections::token, connections::refresh,
        connect_sessions::create, connect_sessions::get,
        environments::list, environments::create, environments::get, environments::update,
        environments::rotate_webhook_secret,
        branding::get_environment, branding::put_environment, branding::get_integration,
        branding::put_integration,
        webhook_deliveries::list, webhook_deliveries::get, webhook_deliveries::retry,
        operations::list,
        agent_tokens::create, agent_tokens::list, agent_tokens::revoke,
        api_keys::list, api_keys::create, api_keys::revoke,
        audit::list,
        crate::proxy::forward,
    ),
    components(schemas(crate::ErrorBody, connectors::ConnectorSummary, integrations::CreateIntegration,
        integrations::CreateMcpIntegration,
        integrations::IntegrationView, integrations::MisconfigurationView,
        integrations::IntegrationPage,
        connections::CreateConnection, connections::TokenView, connections::EndUserBody,
        connections::ConnectionPage, connections::UpdateConnection,
        connect_sessions::CreateConnectSession, connect_sessions::CreatedConnectSession,
        connect_sessions::ConnectSessionView, connect_sessions::ConnectSessionError,
        environments::CreateEnvironment,
        environments::EnvironmentView, environments::UpdateEnvironment,
        environments::RotateWebhookSecret, branding::BrandingBody, webhook_deliveries::DeliveryPage,
        operations::OperationPage, operations::OperationView,
        agent_tokens::CreateAgentToken, agent_tokens::AgentTokenView, agent_tokens::AgentTokenList,
        webhook_deliveries::DeliveryView, api_keys::CreateApiKey, api_keys::ApiKeyView,
        api_keys::CreatedApiKey, audit::AuditPageView, audit::AuditEntryView,
        audit::AuditActorView, audit::AuditObjectView)),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(document_value())
}

/// The OpenAPI document.
pub(crate) fn document_value() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented operation has its scope decided in `access::ROUTE_SCOPES` (a route left
    /// out would need `admin`, which is safe but likely not meant).
    #[test]
    fn every_documented_route_has_a_scope() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let proxy = "/v1/proxy/{connection}/{path}";
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let route = if path == proxy { "/v1/proxy/{connection}/{*path}" } else { path };
            for method in ops.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                assert!(
                    crate::access::ROUTE_SCOPES
                        .iter()
                        .any(|(m, r, _)| (*m == method || *m == "*") && *r == route),
                    "{method} {path} is not in ROUTE_SCOPES"
                );
            }
        }
    }

    #[test]
    fn the_proxy_route_is_described_for_every_method() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let proxy = &doc["paths"]["/v1/proxy/{connection}/{path}"];
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            let op = &proxy[method];
            assert!(op.is_object(), "{method} missing: {proxy}");
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(params, ["connection", "path"], "{method}");
            assert!(op["responses"]["default"].is_object());
            assert!(op["responses"]["429"].is_object(), "rate_limited is described");
        }
    }
}
