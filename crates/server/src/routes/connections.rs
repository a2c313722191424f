//! `/v1/connections`: create (after a credential test), list, read without secrets, test and
//! delete.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Secret;
use latchkey_engine::{ConnectionId, ConnectorId, IntegrationId, NewConnection, TestOutcome};
use latchkey_store::ConnectionSummary;
use serde::Deserialize;

use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, Principal};

/// `POST /v1/connections`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Connection id; generated when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub id: Option<ConnectionId>,
    /// The connector's id.
    #[schema(value_type = String)]
    pub connector: ConnectorId,
    /// The auth method; the connector's default when absent.
    #[serde(default)]
    pub auth: Option<String>,
    /// The integration it belongs to.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub integration: Option<IntegrationId>,
    /// Credential fields (write-only).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub credentials: BTreeMap<String, Secret>,
    /// Per-connection config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The app's id for its end user.
    #[serde(default)]
    pub end_user_id: Option<String>,
}

/// Query of `POST /v1/connections`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Run the connector's credential test first (default true).
    #[serde(default = "yes")]
    pub test: bool,
}

fn yes() -> bool {
    true
}

/// Creates a connection; stores it only if the credential test passes (unless `?test=false`).
#[utoipa::path(post, path = "/v1/connections", request_body = CreateConnection, params(CreateParams),
    responses((status = 201, description = "the connection, without secrets"),
              (status = 400, body = crate::ErrorBody), (status = 502, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<CreateParams>,
    Json(body): Json<CreateConnection>,
) -> Result<(StatusCode, Json<ConnectionSummary>), ApiError> {
    let record = state
        .engine
        .connections()
        .create(NewConnection {
            environment: principal.environment,
            id: body.id,
            connector: body.connector,
            integration: body.integration,
            auth: body.auth,
            credentials: body.credentials,
            config: body.config,
            end_user_id: body.end_user_id,
            run_test: params.test,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(record.summary())))
}

/// Query of `GET /v1/connections`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only the connections of this end user (the app's id for them).
    #[serde(default)]
    pub end_user_id: Option<String>,
}

/// Lists connections, without secrets.
#[utoipa::path(get, path = "/v1/connections", params(ListParams), responses((status = 200, description = "connections without secrets")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<ConnectionSummary>>, ApiError> {
    let mut all = state.engine.connections().list(&principal.environment).await?;
    if let Some(user) = &params.end_user_id {
        all.retain(|c| c.end_user_id.as_ref() == Some(user));
    }
    Ok(Json(all))
}

/// One connection, without secrets.
#[utoipa::path(get, path = "/v1/connections/{id}", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200), (status = 404, body = crate::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<Json<ConnectionSummary>, ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    Ok(Json(connections.get(&id).await?.summary()))
}

/// Deletes a connection and its credentials.
#[utoipa::path(delete, path = "/v1/connections/{id}", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<StatusCode, ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    connections.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the connector's credential test on a stored connection.
#[utoipa::path(post, path = "/v1/connections/{id}/test", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200), (status = 502, body = crate::ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<Json<TestOutcome>, ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    Ok(Json(connections.test(&id).await?))
}

/// A fresh access token.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The access token.
    pub access_token: String,
    /// When it expires (RFC 3339), if known.
    pub expires_at: Option<String>,
}

/// A fresh access token for an OAuth2 connection (refreshed first if it is about to expire).
#[utoipa::path(get, path = "/v1/connections/{id}/token", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200, body = TokenView), (status = 409, body = crate::ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    state.engine.connections().check_environment(&principal.environment, &id).await?;
    let (token, expires_at) = state.engine.renewal().fresh_token(&id).await?;
    let view = TokenView {
        access_token: token.expose().to_string(),
        expires_at: expires_at
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
    };
    let mut response = Json(view).into_response();
    response
        .headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Refreshes the connection's token now.
#[utoipa::path(post, path = "/v1/connections/{id}/refresh", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200), (status = 409, body = crate::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<Json<ConnectionSummary>, ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    let current = connections.get(&id).await?;
    let record = state
        .engine
        .renewal()
        .refresh(&id, latchkey_engine::RefreshReason::Forced { seen_version: current.version })
        .await?;
    Ok(Json(record.summary()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use latchkey_core::Secret;
    use latchkey_engine::{Catalog, Engine, Origin};
    use latchkey_store::{Keyring, MasterKey, SqliteStore};
    use tower::ServiceExt;

    use crate::{AppState, app};

    const CONNECTOR: &str = "id: tmpl\nname: T\nbase_url: \"https://{{ config.sub }}.example.com/v1/{{ config.team }}\"\nconfig:\n  - { key: sub }\n  - { key: team }\nauth:\n  - type: bearer\n";

    async fn state() -> AppState {
        let store =
            SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
        let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
        let catalog = Catalog::default();
        catalog.add_source(CONNECTOR, "t.yaml", Origin::Custom).unwrap();
        let engine = Engine::builder(Arc::new(store), catalog, net).build().await.unwrap();
        AppState::new(engine, Secret::new("k"), "http://127.0.0.1:1".parse().unwrap())
    }

    async fn create(state: &AppState, body: serde_json::Value) -> (u16, serde_json::Value) {
        let request = http::Request::post("/v1/connections?test=false")
            .header("authorization", "Bearer k")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn control_bytes_and_unsafe_url_values_are_refused_when_stored() {
        let state = state().await;
        for (credential, sub, team, field) in [
            ("canary\r\nX-Evil: 1", "eu", "t", "`token`"),
            ("canary\0", "eu", "t", "`token`"),
            ("ok", "eu\n", "t", "config `sub`"),
            ("ok", "eu", "../..", "config `team`"),
            ("ok", "evil.com/x", "t", "config `sub`"),
        ] {
            let (status, body) = create(
                &state,
                serde_json::json!({
                    "connector": "tmpl",
                    "credentials": { "token": credential },
                    "config": { "sub": sub, "team": team },
                }),
            )
            .await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["code"], "invalid_request");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(field) && !message.contains("canary"), "{message}");
        }
        let default = latchkey_engine::EnvironmentId::default_environment();
        assert!(state.engine.connections().list(&default).await.unwrap().is_empty(), "none stored");
        let (status, body) = create(
            &state,
            serde_json::json!({
                "connector": "tmpl",
                "credentials": { "token": "ok" },
                "config": { "sub": "eu", "team": "a b" },
            }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}
