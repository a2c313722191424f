//! `/v1/connections`: create (after a credential test, or from imported tokens), list (filtered
//! and paged), read without secrets, change tags, metadata, end user and label, test and delete.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use latchkey_core::Secret;
use latchkey_engine::{
    ConnectionDetails, ConnectionFilter, ConnectionId, ConnectorId, EndUser, EngineError,
    EnvironmentId, ImportedTokens, IntegrationId, Metadata, NewConnection, Tags, TestOutcome,
    page_request,
};
use latchkey_store::{ConnectionRecord, ConnectionSummary};
use serde::{Deserialize, Serialize};

use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState, Principal};

/// `POST /v1/connections`, and one line of `latchkey connection import` / `export`.
///
/// Its `Serialize` leaves out the credentials; only [`CreateConnection::to_json`] writes them,
/// for an export that is then encrypted.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Connection id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub id: Option<ConnectionId>,
    /// The connector's id.
    #[schema(value_type = String)]
    pub connector: ConnectorId,
    /// The auth method; the connector's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The integration it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub integration: Option<IntegrationId>,
    /// Credential fields (write-only). For OAuth2, existing tokens: `access_token` and, if
    /// there is one, `refresh_token`; the connection then needs no new consent.
    #[serde(default, skip_serializing)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub credentials: BTreeMap<String, Secret>,
    /// Per-connection config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The end user who owns the connection; one end user may hold several connections, of
    /// one integration too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUserBody>,
    /// Labels for filtering lists: at most 10; keys of 1-64 characters of `a-z 0-9 _ - .`,
    /// values of at most 255 characters.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Free JSON object for the app, at most 16 KiB serialised.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Imported OAuth2 tokens: when the access token expires (RFC 3339). The connection is
    /// refreshed before then with its refresh token; without one it is valid until then.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
    /// Imported OAuth2 tokens: the access token's lifetime in seconds from now (instead of
    /// `expires_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Imported OAuth2 tokens: the scopes the provider granted (kept in config as
    /// `granted_scopes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl CreateConnection {
    /// The engine's input: the connection, in `environment`, and what comes with imported
    /// tokens.
    pub fn into_new(
        self,
        environment: EnvironmentId,
        run_test: bool,
    ) -> (NewConnection, ImportedTokens) {
        let tokens = ImportedTokens {
            expires_at: self.expires_at,
            expires_in: self.expires_in.map(std::time::Duration::from_secs),
            scopes: self.scopes,
        };
        let new = NewConnection {
            environment,
            id: self.id,
            connector: self.connector,
            integration: self.integration,
            auth: self.auth,
            credentials: self.credentials,
            config: self.config,
            end_user: self.end_user.map(Into::into),
            tags: self.tags,
            metadata: self.metadata,
            run_test,
        };
        (new, tokens)
    }

    /// A stored connection as a body that creates it again, without credentials: what
    /// `connection export` writes by default.
    pub fn from_summary(summary: &ConnectionSummary) -> Result<Self, EngineError> {
        let mut config = summary.config.clone();
        config.remove(latchkey_engine::GRANTED_SCOPES);
        Ok(Self {
            id: Some(ConnectionId::new(summary.id.as_str())?),
            connector: ConnectorId::new(summary.connector.as_str())?,
            auth: Some(summary.auth_method.clone()),
            integration: summary.integration.as_deref().map(IntegrationId::new).transpose()?,
            credentials: BTreeMap::new(),
            config,
            end_user: summary.end_user.clone().map(Into::into),
            tags: summary.tags.clone(),
            metadata: summary.metadata.clone(),
            expires_at: None,
            expires_in: None,
            scopes: Vec::new(),
        })
    }

    /// A stored connection as a body that creates it again with its credentials, and for
    /// OAuth2 tokens their expiry and granted scopes: what `connection export
    /// --with-credentials` writes (encrypted).
    pub fn from_record(record: &ConnectionRecord) -> Result<Self, EngineError> {
        let mut body = Self::from_summary(&record.summary())?;
        body.credentials = record.credentials.clone();
        if record.credentials.contains_key("access_token") {
            body.expires_at = record.expires_at;
            body.scopes = latchkey_engine::granted_scopes(&record.config);
        }
        Ok(body)
    }

    /// The body as JSON, credentials included (exposed): for an export that is encrypted
    /// before it is written anywhere.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let value = serde_json::to_value(self)?;
        let serde_json::Value::Object(fields) = value else { return Ok(value) };
        if self.credentials.is_empty() {
            return Ok(serde_json::Value::Object(fields));
        }
        let credentials: serde_json::Map<String, serde_json::Value> = self
            .credentials
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().to_string())))
            .collect();
        // In the field order of the body: after what says which connection it is.
        let mut ordered = serde_json::Map::new();
        let mut credentials = Some(credentials);
        for (key, value) in fields {
            if !matches!(key.as_str(), "id" | "connector" | "auth" | "integration")
                && let Some(credentials) = credentials.take()
            {
                ordered.insert("credentials".into(), serde_json::Value::Object(credentials));
            }
            ordered.insert(key, value);
        }
        if let Some(credentials) = credentials {
            ordered.insert("credentials".into(), serde_json::Value::Object(credentials));
        }
        Ok(serde_json::Value::Object(ordered))
    }

    /// Parses one JSON body (a line of an import file). The error names where the input is
    /// wrong and never holds a value from it (a value may be a secret).
    pub fn from_json(text: &str) -> Result<Self, EngineError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let message = crate::extract::without_values(&e.inner().to_string());
            EngineError::invalid(if path == "." { String::new() } else { path }, message)
        })
    }
}

/// The end user who owns a connection, in the app's own terms.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndUserBody {
    /// The app's id for the end user (1-255 characters).
    pub id: String,
    /// Their email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A name to show for them (at most 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl From<EndUserBody> for EndUser {
    fn from(body: EndUserBody) -> Self {
        EndUser { id: body.id, email: body.email, display_name: body.display_name }
    }
}

impl From<EndUser> for EndUserBody {
    fn from(user: EndUser) -> Self {
        EndUserBody { id: user.id, email: user.email, display_name: user.display_name }
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
/// Existing credentials of any auth method are accepted, OAuth2 tokens included, so connections
/// move in from another system without the users connecting again.
#[utoipa::path(post, path = "/v1/connections", request_body = CreateConnection, params(CreateParams),
    responses((status = 201, description = "the connection, without secrets"),
              (status = 400, body = crate::ErrorBody), (status = 502, body = crate::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<CreateParams>,
    Json(body): Json<CreateConnection>,
) -> Result<(StatusCode, Json<ConnectionSummary>), ApiError> {
    let (new, tokens) = body.into_new(principal.environment, params.test);
    let record = state.engine.connections().create_imported(new, tokens).await?;
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
    /// Reads `integration`, `status`, `health`, `end_user`, `tags[<key>]`, `limit` and `cursor`; each at
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
                "health" => {
                    out.filter.health = Some(value.parse().map_err(|_| {
                        ApiError::invalid_request("health must be healthy, unhealthy or unknown")
                            .with_field("health")
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

/// Deletes a connection and its credentials, then revokes its OAuth2 tokens at the provider
/// where it allows it (RFC 7009; best effort, a few seconds at most). The outcome is in the
/// `Latchkey-Revocation` header and the `connection.deleted` event.
#[utoipa::path(delete, path = "/v1/connections/{id}", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 204, headers(("Latchkey-Revocation" = String, description = "What became of the tokens at the provider: `revoked`, `not_supported` or `failed: <reason>`."))), (status = 404, body = crate::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<(StatusCode, [(http::HeaderName, http::HeaderValue); 1]), ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    let revocation = connections.delete(&id).await?;
    // The reason is built from fixed phrases and host names: a valid header value, or a
    // generic one.
    let value = http::HeaderValue::from_str(&revocation.to_string())
        .unwrap_or_else(|_| http::HeaderValue::from_static("failed"));
    Ok((StatusCode::NO_CONTENT, [(http::HeaderName::from_static("latchkey-revocation"), value)]))
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

/// Checks a stored connection now (its credential test) and answers its health record; a
/// failed test is the answer's `state` and `reason` (or, for a failure that may pass by itself,
/// its `last_error` and `consecutive_failures`), not an error.
#[utoipa::path(post, path = "/v1/connections/{id}/check", params(("id" = String, Path, description = "The connection's id: 1-64 characters of `A-Z a-z 0-9 - _ .`.")), responses((status = 200, description = "the connection's health"), (status = 404, body = crate::ErrorBody), (status = 409, description = "`needs_reauth`: an expiring token could not be renewed before the check.", body = crate::ErrorBody), (status = 422, body = crate::ErrorBody), (status = 429, description = "`rate_limited`: the connector's `rate_limit` kept the check back; nothing was sent.", body = crate::ErrorBody)))]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ConnectionId>,
) -> Result<Json<latchkey_store::Health>, ApiError> {
    let connections = state.engine.connections();
    connections.check_environment(&principal.environment, &id).await?;
    Ok(Json(connections.check(&id).await?))
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

    #[tokio::test]
    async fn oauth2_tokens_are_imported_with_their_expiry_and_scopes() {
        let state = state().await;
        let oauth = "id: prov\nname: P\nbase_url: https://api.example.com\nauth:\n  - type: oauth2\n    authorize_url: https://example.com/a\n    token_url: https://example.com/t\n";
        state.engine.connectors().catalog().add_source(oauth, "p.yaml", Origin::Custom).unwrap();
        state
            .engine
            .integrations()
            .put(latchkey_engine::NewIntegration {
                id: "app".parse().unwrap(),
                connector: "prov".parse().unwrap(),
                client_id: Some("cid".into()),
                client_secret: Some(Secret::new("cs")),
                scopes: vec![],
                environment: latchkey_engine::EnvironmentId::default_environment(),
            })
            .await
            .unwrap();
        let (status, body) = create(
            &state,
            serde_json::json!({
                "id": "c1", "connector": "prov", "integration": "app",
                "credentials": { "access_token": "canary-at", "refresh_token": "canary-rt" },
                "expires_at": "2031-01-02T03:04:05Z",
                "scopes": ["repo", "read:user"],
            }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["expires_at"], "2031-01-02T03:04:05Z");
        assert_eq!(body["config"]["granted_scopes"], "repo read:user");
        assert_eq!(body["secret_fields"], serde_json::json!(["access_token", "refresh_token"]));
        assert!(!body.to_string().contains("canary"));

        for (extra, field) in [
            (serde_json::json!({"expires_at": "tomorrow canary"}), "expires_at"),
            (serde_json::json!({"expires_in": -5}), "expires_in"),
            (serde_json::json!({"scopes": "repo"}), "scopes"),
        ] {
            let mut request = serde_json::json!({
                "id": "c2", "connector": "prov", "integration": "app",
                "credentials": { "access_token": "canary-at" },
            });
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let (status, body) = create(&state, request).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["field"], field, "{body}");
            assert!(!body.to_string().contains("canary"), "{body}");
        }
    }

    #[test]
    fn a_body_goes_out_and_comes_back_the_same() {
        let line = r#"{"id":"c1","connector":"prov","integration":"app","credentials":{"access_token":"at"},"config":{"sub":"eu"},"expires_at":"2031-01-02T03:04:05Z","scopes":["a"]}"#;
        let body = super::CreateConnection::from_json(line).unwrap();
        assert_eq!(body.to_json().unwrap().to_string(), line);
        assert!(
            !serde_json::to_string(&body).unwrap().contains("credentials"),
            "Serialize hides them"
        );
        let err =
            super::CreateConnection::from_json(r#"{"connector":"p","credentials":{"k":12345678}}"#)
                .unwrap_err();
        match err {
            latchkey_engine::EngineError::InvalidRequest { field, message } => {
                assert_eq!(field, "credentials.k");
                assert!(!message.contains("12345678"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
