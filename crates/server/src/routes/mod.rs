//! The REST API's route groups, one file each.

pub mod agent_tokens;
pub mod api_keys;
pub mod audit;
pub mod branding;
pub mod connect_sessions;
pub mod connections;
pub mod connectors;
pub mod environments;
pub mod integrations;
pub mod operations;
pub mod webhook_deliveries;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// The query parameter `name` as an RFC 3339 time, if given; a malformed one is 400
/// `invalid_request` naming it.
pub(crate) fn time_param(
    value: Option<&str>,
    name: &str,
) -> Result<Option<time::OffsetDateTime>, ApiError> {
    value
        .map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::invalid_request(format!(
                        "`{name}` must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"
                    ))
                    .with_field(name)
                })
        })
        .transpose()
}

/// A timestamp as the API shows it: RFC 3339, UTC.
pub(crate) fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The query parameters each `/v1` route takes, by method and route template (without `/v1`);
/// a route not listed takes none. A name ending in `[*]` stands for that prefix with any
/// non-empty key in brackets (`tags[*]`: `tags[org]`, `tags[plan]`, …). Keep in step with the
/// handlers' `Query` types.
const QUERY_PARAMETERS: &[(&str, &str, &[&str])] = &[
    ("POST", "/connections", &["test"]),
    (
        "GET",
        "/connections",
        &["integration", "status", "health", "end_user", "tags[*]", "limit", "cursor"],
    ),
    ("GET", "/integrations", &["limit", "cursor"]),
    ("DELETE", "/integrations/{id}", &["force"]),
    ("GET", "/audit", &["actor", "action", "object", "since", "until", "cursor", "limit"]),
    ("GET", "/webhook-deliveries", &["status", "event", "connection", "limit", "cursor"]),
    (
        "GET",
        "/operations",
        &[
            "connection",
            "integration",
            "kind",
            "outcome",
            "status",
            "since",
            "until",
            "limit",
            "cursor",
        ],
    ),
];

/// Whether the query parameter `name` is the known parameter `known` (see `QUERY_PARAMETERS`).
fn parameter_matches(known: &str, name: &str) -> bool {
    match known.strip_suffix("[*]") {
        Some(prefix) => name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|key| !key.is_empty() && !key.contains(['[', ']'])),
        None => known == name,
    }
}

/// Refuses a query parameter the route does not know with 400 `invalid_request` (`field` names
/// it), instead of ignoring it: `GET /v1/connections?end_user_id=…` once listed every user's
/// connections (the filter is `end_user`). Runs as a route layer, so it sees the matched route's template.
pub async fn refuse_unknown_query(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query().filter(|q| !q.is_empty()) {
        let route = request.extensions().get::<MatchedPath>().map_or("", |p| p.as_str());
        let route = route.strip_prefix("/v1").unwrap_or(route);
        let method = request.method().as_str();
        let known = QUERY_PARAMETERS
            .iter()
            .find(|(m, r, _)| *m == method && *r == route)
            .map_or(&[][..], |(_, _, known)| *known);
        for (key, _) in url::form_urlencoded::parse(query.as_bytes()) {
            if !known.iter().any(|k| parameter_matches(k, &key)) {
                let takes = if known.is_empty() {
                    "takes no query parameters".to_string()
                } else {
                    let names: Vec<String> = known
                        .iter()
                        .map(|k| format!("`{}`", k.replace("[*]", "[<key>]")))
                        .collect();
                    format!("takes only {}", names.join(", "))
                };
                let shown: String = key.chars().take(64).collect();
                return ApiError::invalid_request(format!(
                    "unknown query parameter `{shown}`: {method} /v1{route} {takes}"
                ))
                .with_field(shown)
                .into_response();
            }
        }
    }
    next.run(request).await
}
