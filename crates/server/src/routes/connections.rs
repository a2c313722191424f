//! `/v1/connections`: create (after a credential test), list (filtered and paged), read without
//! secrets, change tags, metadata, end user and label, test and delete.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use latchkey_core::Secret;
use latchkey_engine::{
    ConnectionDetails, ConnectionFilter, ConnectionId, ConnectorId, EndUser, IntegrationId,
    Metadata, NewConnection, Tags, TestOutcome, page_request,
};
use latchkey_store::ConnectionSummary;
use serde::{Deserialize, Serialize};

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
    /// The end user who owns the connection; one end user may hold several connections, of
    /// one integration too.
    #[serde(default)]
    pub end_user: Option<EndUserBody>,
    /// Labels for filtering lists: at most 10; keys of 1-64 characters of `a-z 0-9 _ - .`,
    /// values of at most 255 characters.
    #[serde(default)]
    pub tags: Tags,
    /// Free JSON object for the app, at most 16 KiB serialised.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// The end user who owns a connection, in the app's own terms.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndUserBody {
    /// The app's id for the end user (1-255 characters).
    pub id: String,
    /// Their email address.
    #[serde(default)]
    pub email: Option<String>,
    /// A name to show for them (at most 255 characters).
    #[serde(default)]
    pub display_name: Option<String>,
}

impl From<EndUserBody> for EndUser {
    fn from(body: EndUserBody) -> Self {
        EndUser { id: body.id, email: body.email, display_name: body.display_name }
    }
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
            end_user: body.end_user.map(Into::into),
            tags: body.tags,
            metadata: body.metadata,
            run_test: params.test,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(record.summary())))
}

/// Query of `GET /v1/connections` (for the OpenAPI document: [`ListQuery::parse`] reads it,
/// since `tags[<key>]` names are open-ended).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only connections made through this integration.
    integration: Option<String>,
    /// Only connections with this status: `ok`, `needs_reauth` or `error`.
    status: Option<String>,
    /// Only the connections of this end user (the app's id for them).
    end_user: Option<String>,
    /// `tags[<key>]=<value>`: only connections with this tag; several are ANDed.
    #[param(style = DeepObject, explode, value_type = Option<Object>)]
    tags: Option<BTreeMap<String, String>>,
    /// Rows per page: 1-1000, default 100.
    limit: Option<u32>,
    /// Where the page starts: the `next_cursor` of the page before (opaque).
    cursor: Option<String>,
}

/// What `GET /v1/connections` asks for, read from its query string.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// The filter.
    pub filter: ConnectionFilter,
    /// The page size.
    pub limit: Option<u32>,
    /// The cursor token.
    pub cursor: Option<String>,
}

impl ListQuery {
    /// Reads `integration`, `status`, `end_user`, `tags[<key>]`, `limit` and `cursor`; each at
    /// most once. (Unknown names were refused before, by `refuse_unknown_query`.)
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut out = ListQuery::default();
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !seen.insert(key.to_string()) {
                let shown: String = key.chars().take(80).collect();
                return Err(ApiError::invalid_request(format!(
                    "query parameter `{shown}` is given more than once"
                ))
                .with_field(shown));
            }
            let value = value.into_owned();
            match key.as_ref() {
                "integration" => out.filter.integration = Some(value),
                "end_user" => out.filter.end_user = Some(value),
                "status" => {
                    out.filter.status = Some(value.parse().map_err(|_| {
                        ApiError::invalid_request("status must be ok, needs_reauth or error")
                            .with_field("status")
                    })?);
                }
                "limit" => out.limit = Some(parse_limit(&value)?),
                "cursor" => out.cursor = Some(value),
                other => {
                    let Some(tag) = routes_tag_key(other) else { continue };
                    out.filter.tags.insert(tag.to_owned(), value);
                }
            }
        }
        Ok(out)
    }
}

/// The `<key>` of a `tags[<key>]` parameter name.
fn routes_tag_key(name: &str) -> Option<&str> {
    name.strip_prefix("tags[")?.strip_suffix(']')
}

/// A `limit` parameter: a whole number (its range is the engine's to check).
pub(crate) fn parse_limit(value: &str) -> Result<u32, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid_request("limit must be a whole number between 1 and 1000")
            .with_field("limit")
    })
}

/// One page of connections.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionPage {
    /// The connections, without secrets, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub connections: Vec<ConnectionSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Lists connections, without secrets: filtered, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/connections", params(ListParams), responses((status = 200, body = ConnectionPage), (status = 400, body = crate::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<ConnectionPage>, ApiError> {
    let mut query = ListQuery::parse(query.as_deref())?;
    query.filter.environment = principal.environment.to_string();
    let page = page_request(query.limit, query.cursor.as_deref())?;
    let found = state.engine.connections().list(&query.filter, &page).await?;
    Ok(Json(ConnectionPage {
        connections: found.items,
        next_cursor: found.next.map(|c| c.token()),
    }))
}

/// `PATCH /v1/connections/{id}`: each field given replaces the stored one; one left out is
/// kept. `end_user` and `label` may be `null` to clear them.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// New tags, replacing all of them (`{}` removes them all).
    #[serde(default)]
    pub tags: Option<Tags>,
    /// New metadata, replacing it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// A new end user, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<EndUserBody>)]
    pub end_user: Option<Option<EndUserBody>>,
    /// A new label, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
}

/// A field that is present, `null` or not: absent stays `None` through `#[serde(default)]`.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes a connection's tags, metadata, end user or label.
#[utoipa::path(patch, path = "/v1/connections/{id}", request_body = UpdateConnection, params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200, description = "the connection, without secrets"), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
    Json(body): Json<UpdateConnection>,
) -> Result<Json<ConnectionSummary>, ApiError> {
    state.engine.connections().check_environment(&principal.environment, &id).await?;
    let details = ConnectionDetails {
        tags: body.tags,
        metadata: body.metadata,
        end_user: body.end_user.map(|user| user.map(Into::into)),
        label: body.label,
    };
    Ok(Json(state.engine.connections().update(&id, details).await?.summary()))
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
        let connections = state.engine.connections();
        let all = connections.list(&Default::default(), &Default::default()).await.unwrap();
        assert!(all.items.is_empty(), "none stored");
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
