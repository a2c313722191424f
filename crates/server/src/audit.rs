//! The audit middleware: after the handler has answered, one audit entry for every `/v1` request
//! that changes something (any method but GET and HEAD) and for every credential read, named by
//! one table ([`ACTIONS`]) keyed by method and route template. The entry holds who (the
//! [`Principal`]'s key id and name), what, which object, when, from where, in which environment
//! and the outcome; never a body, a query value or a header value. Not for `/v1/proxy/*`.

use std::borrow::Cow;

use axum::body::{Body, HttpBody as _};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use latchkey_store::{AuditObject, AuditOutcome, AuditRecord};

use crate::{ApiError, AppState, Principal};

/// Audit entries that could not be written (the request itself was answered as usual, except
/// a credential read, which is refused).
pub const AUDIT_WRITE_FAILURES: &str = "latchkey_audit_write_failures_total";

/// The largest create response read for the created object's id.
const CREATED_BODY_LIMIT: u64 = 64 * 1024;

/// What a route does, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The action's name: `connection.create`, ….
    pub name: Cow<'static, str>,
    /// The kind of object the route is about (its `{id}`, or the created object's `id`).
    pub object: Cow<'static, str>,
    /// Whether the route reads a credential (recorded although it is a GET).
    pub credential_read: bool,
}

const fn write(name: &'static str, object: &'static str) -> Action {
    Action { name: Cow::Borrowed(name), object: Cow::Borrowed(object), credential_read: false }
}

/// Every audited route: (method, route template under `/v1`, action). A write not listed here is
/// still recorded, as `{first path segment}.{method}` (see [`action_of`]); a test checks that
/// every route the OpenAPI document describes is listed.
pub const ACTIONS: &[(&str, &str, Action)] = &[
    ("PUT", "/connectors/{id}", write("connector.put", "connector")),
    ("DELETE", "/connectors/{id}", write("connector.delete", "connector")),
    ("POST", "/integrations", write("integration.create", "integration")),
    ("DELETE", "/integrations/{id}", write("integration.delete", "integration")),
    ("PUT", "/integrations/{id}/branding", write("integration.branding_put", "integration")),
    ("POST", "/mcp-integrations", write("integration.create", "integration")),
    ("POST", "/connections", write("connection.create", "connection")),
    ("PATCH", "/connections/{id}", write("connection.update", "connection")),
    ("DELETE", "/connections/{id}", write("connection.delete", "connection")),
    ("POST", "/connections/{id}/test", write("connection.test", "connection")),
    ("POST", "/connections/{id}/check", write("connection.check", "connection")),
    ("POST", "/connections/{id}/refresh", write("connection.refresh", "connection")),
    (
        "GET",
        "/connections/{id}/token",
        Action {
            name: Cow::Borrowed("connection.token_read"),
            object: Cow::Borrowed("connection"),
            credential_read: true,
        },
    ),
    ("POST", "/connect-sessions", write("connect_session.create", "connect_session")),
    ("POST", "/environments", write("environment.create", "environment")),
    ("PATCH", "/environments/{id}", write("environment.update", "environment")),
    ("PUT", "/environments/{id}/branding", write("environment.branding_put", "environment")),
    (
        "POST",
        "/environments/{id}/webhook-secret/rotate",
        write("environment.webhook_secret_rotate", "environment"),
    ),
    ("POST", "/webhook-deliveries/{id}/retry", write("webhook_delivery.retry", "webhook_delivery")),
    ("POST", "/api-keys", write("api_key.create", "api_key")),
    ("DELETE", "/api-keys/{id}", write("api_key.revoke", "api_key")),
    ("POST", "/agent-tokens", write("agent_token.create", "agent_token")),
    ("DELETE", "/agent-tokens/{id}", write("agent_token.revoke", "agent_token")),
];

/// The action of a request to `route` (a template under `/v1`) with `method`: from [`ACTIONS`];
/// for an unlisted write, `{segment}.{method}` about a `{segment}` object (`-` read as `_`, a
/// plural `s` dropped); `None` for an unlisted GET or HEAD, and for the proxy.
pub fn action_of(method: &Method, route: &str) -> Option<Action> {
    if route.starts_with("/proxy/") {
        return None;
    }
    if let Some((_, _, action)) =
        ACTIONS.iter().find(|(m, r, _)| *m == method.as_str() && *r == route)
    {
        return Some(action.clone());
    }
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let segment = route.trim_start_matches('/').split('/').next().unwrap_or_default();
    let kind = segment.replace('-', "_");
    let kind = kind.strip_suffix('s').unwrap_or(&kind).to_owned();
    let name = format!("{kind}.{}", method.as_str().to_ascii_lowercase());
    Some(Action { name: Cow::Owned(name), object: Cow::Owned(kind), credential_read: false })
}

/// Records the request in the audit log once the handler has answered (see the module doc).
/// Runs inside the API-key check, which puts the [`Principal`] on the request; a scope check
/// must run inside this layer, so that its refusals (403) are recorded as `denied`.
///
/// A failed write is logged at error and counted ([`AUDIT_WRITE_FAILURES`]); the answer stands,
/// since the change is made and a retry would repeat it, except for a credential read, which
/// becomes a 500 and hands out no credential that the log does not show.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let route = route.strip_prefix("/v1").unwrap_or(&route).to_owned();
    let Some(action) = action_of(request.method(), &route) else {
        return next.run(request).await;
    };
    let principal = request.extensions().get::<Principal>().cloned();
    let (mut parts, body) = request.into_parts();
    let path_id = if route.contains("{id}") {
        RawPathParams::from_request_parts(&mut parts, &state)
            .await
            .ok()
            .and_then(|params| params.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_owned()))
    } else {
        None
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    let (response, object_id) = match path_id {
        Some(id) => (response, Some(id)),
        None if status.is_success() => created_id(response).await,
        None => (response, None),
    };
    let Some(principal) = principal else {
        tracing::error!(action = %action.name, "an audited request without a principal");
        return response;
    };
    let record = AuditRecord {
        at: state.engine.clock().now(),
        actor_id: principal.key_id.clone(),
        actor_name: principal.key_name.clone(),
        action: action.name.clone().into_owned(),
        object: object_id.map(|id| AuditObject { kind: action.object.clone().into_owned(), id }),
        environment: Some(principal.environment.as_str().to_owned()),
        address: principal.address.map(|a| a.to_string()),
        outcome: AuditOutcome::of_status(status.as_u16()),
        status: Some(status.as_u16()),
        detail: None,
    };
    match state.engine.audit().append(&record).await {
        Ok(_) => response,
        Err(error) => {
            metrics::counter!(AUDIT_WRITE_FAILURES, "action" => action.name.to_string())
                .increment(1);
            tracing::error!(action = %action.name, %error, "cannot write the audit entry");
            if action.credential_read && status.is_success() {
                ApiError::internal("the credential read could not be audited").into_response()
            } else {
                response
            }
        }
    }
}

/// The `id` of the object a create answered with, read from a small JSON body (other fields,
/// such as a connect session's token, are skipped unread); the response is rebuilt unchanged.
async fn created_id(response: Response) -> (Response, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Created {
        id: String,
    }
    let small = response.body().size_hint().exact().is_some_and(|n| n <= CREATED_BODY_LIMIT);
    if !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, CREATED_BODY_LIMIT as usize).await {
        Ok(bytes) => {
            let id = serde_json::from_slice::<Created>(&bytes).ok().map(|c| c.id);
            (Response::from_parts(parts, Body::from(bytes)), id)
        }
        Err(error) => {
            // A body whose exact size was known does not fail to read; if it does, the
            // answer is lost either way.
            (
                ApiError::internal(format!("cannot read a response body: {error}")).into_response(),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_table_and_unlisted_writes_get_a_name() {
        let token = action_of(&Method::GET, "/connections/{id}/token").unwrap();
        assert_eq!((&*token.name, token.credential_read), ("connection.token_read", true));
        assert_eq!(action_of(&Method::GET, "/connections/{id}"), None);
        assert_eq!(action_of(&Method::HEAD, "/connections"), None);
        assert_eq!(action_of(&Method::POST, "/proxy/{connection}/{*path}"), None);
        let create = action_of(&Method::POST, "/connect-sessions").unwrap();
        assert_eq!((&*create.name, &*create.object), ("connect_session.create", "connect_session"));
        let unlisted = action_of(&Method::PATCH, "/api-keys/{id}").unwrap();
        assert_eq!((&*unlisted.name, &*unlisted.object), ("api_key.patch", "api_key"));
    }

    /// Every route the OpenAPI document describes that changes something, or reads a
    /// credential, has its name in [`ACTIONS`]: a new route needs a decision here.
    #[test]
    fn every_documented_write_has_an_action_name() {
        let doc = serde_json::to_value(crate::openapi::document_value()).unwrap();
        let mut missing = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let route = path.strip_prefix("/v1").unwrap();
            if route.starts_with("/proxy/") {
                continue;
            }
            for method in item.as_object().unwrap().keys() {
                let method = method.to_ascii_uppercase();
                let listed = ACTIONS.iter().any(|(m, r, _)| *m == method && *r == route);
                if !listed && method != "GET" && method != "HEAD" {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "routes without an audit action name: {missing:?}");
    }
}
