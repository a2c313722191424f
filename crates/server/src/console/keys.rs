//! API keys (list, create — the key shown once — and revoke) and the audit log of the
//! operator's environment, newest first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_engine::{EngineError, EnvironmentId, NewApiKey};
use latchkey_store::{ApiKeyRecord, AuditFilter, AuditPage, Scope};
use serde::Serialize;

use super::session::Submitted;
use super::{Operator, Page, audit, failed, field, see_other, shown};
use crate::{ApiError, AppState};

/// Audit entries per page.
const AUDIT_PAGE: u32 = 50;

/// A key as the list shows it: never the key.
#[derive(Debug, Serialize)]
struct KeyRow {
    id: String,
    name: String,
    environment: Option<String>,
    scopes: String,
    hint: String,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

fn row(k: &ApiKeyRecord) -> KeyRow {
    KeyRow {
        id: k.id.clone(),
        name: k.name.clone(),
        environment: k.environment.clone(),
        scopes: k.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" "),
        hint: k.hint.clone(),
        created_at: shown(k.created_at),
        expires_at: k.expires_at.map(shown),
        last_used_at: k.last_used_at.map(shown),
        revoked_at: k.revoked_at.map(shown),
    }
}

fn page(operator: &Operator, keys: &[ApiKeyRecord], created: Option<(String, String)>) -> Page {
    let rows: Vec<KeyRow> = keys.iter().map(row).collect();
    let scopes: Vec<String> = Scope::ALL.iter().map(|s| s.to_string()).collect();
    let (created_key, created_name) = created.unzip();
    Page::new(
        "api-keys.html",
        minijinja::context! {
            keys => rows, scopes, created_key, created_name,
            key_environments => &operator.environments,
            bound => operator.session.bound.is_some(),
        },
    )
}

/// `GET /console/api-keys`.
pub async fn list(State(state): State<AppState>, operator: Operator) -> Response {
    match state.engine.access().keys().await {
        Ok(keys) => page(&operator, &keys, None).render(&operator, "api-keys"),
        Err(e) => failed(&operator, "Cannot list API keys", e.into(), "/console"),
    }
}

/// `POST /console/api-keys`: makes a key and shows it once. A session bound to one
/// environment makes keys bound to it.
pub async fn create(State(state): State<AppState>, form: Submitted) -> Response {
    let Submitted { operator, fields } = form;
    let result = async {
        let scopes: BTreeSet<Scope> = fields
            .iter()
            .filter(|(k, v)| k.starts_with("scope:") && *v == "1")
            .map(|(k, _)| k["scope:".len()..].parse::<Scope>())
            .collect::<Result<_, _>>()
            .map_err(|e| EngineError::invalid("scopes", e.to_string()))?;
        let environment = match (&operator.session.bound, field(&fields, "environment")) {
            (Some(bound), _) => Some(EnvironmentId::new(bound.as_str())?),
            (None, Some("*") | None) => None,
            (None, Some(env)) => Some(EnvironmentId::new(env)?),
        };
        let expires_in = field(&fields, "expires_in_days")
            .map(|d| {
                d.parse::<u64>()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .map(|d| Duration::from_secs(d * 86_400))
                    .ok_or_else(|| EngineError::invalid("expires_in", "expiry is 1 to 3650 days"))
            })
            .transpose()?;
        let name = field(&fields, "name").unwrap_or_default().to_owned();
        state.engine.access().create_key(NewApiKey { name, environment, scopes, expires_in }).await
    }
    .await;
    match result {
        Ok((record, key)) => {
            audit::record(
                &state,
                &operator,
                "api_key.create",
                Some(("api_key", &record.id)),
                StatusCode::CREATED,
            )
            .await;
            let keys = state.engine.access().keys().await.unwrap_or_default();
            page(&operator, &keys, Some((key.expose().to_owned(), record.name)))
                .status(StatusCode::CREATED)
                .render(&operator, "api-keys")
        }
        Err(e) => {
            let error = ApiError::from(e);
            audit::record(&state, &operator, "api_key.create", None, error.status()).await;
            failed(&operator, "Cannot make the key", error, "/console/api-keys")
        }
    }
}

/// `POST /console/api-keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let operator = form.operator;
    match state.engine.access().revoke_key(&id).await {
        Ok(()) => {
            audit::record(
                &state,
                &operator,
                "api_key.revoke",
                Some(("api_key", &id)),
                StatusCode::NO_CONTENT,
            )
            .await;
            see_other("/console/api-keys")
        }
        Err(e) => {
            let error = ApiError::from(e);
            audit::record(
                &state,
                &operator,
                "api_key.revoke",
                Some(("api_key", &id)),
                error.status(),
            )
            .await;
            failed(&operator, "Cannot revoke the key", error, "/console/api-keys")
        }
    }
}

/// An audit entry as a table row.
#[derive(Debug, Serialize)]
struct AuditRow {
    at: String,
    actor: String,
    action: String,
    object: Option<String>,
    outcome: &'static str,
    status: Option<u16>,
    address: Option<String>,
    detail: Option<String>,
}

/// `GET /console/audit`: newest first, filtered by action and actor, paged.
pub async fn audit(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let cursor = match field(&query, "cursor").map(str::parse::<i64>).transpose() {
        Ok(cursor) => cursor,
        Err(_) => {
            let error = ApiError::invalid_request("`cursor` is not one this page gave");
            return failed(&operator, "Cannot read the audit log", error, "/console/audit");
        }
    };
    let filter = AuditFilter {
        actor: field(&query, "actor").map(str::to_owned),
        action: field(&query, "action").map(str::to_owned),
        object: None,
        environment: Some(operator.environment.as_str().to_owned()),
        since: None,
        until: None,
    };
    let page = AuditPage { newest_first: true, after: cursor, limit: AUDIT_PAGE };
    match state.engine.audit().list(&filter, &page).await {
        Ok(entries) => {
            let next = match entries.last() {
                Some(last) if entries.len() == AUDIT_PAGE as usize => {
                    Some(super::page_link(&query, Some(last.seq.to_string())))
                }
                _ => None,
            };
            let rows: Vec<AuditRow> = entries
                .into_iter()
                .map(|e| {
                    let r = e.record;
                    AuditRow {
                        at: shown(r.at),
                        actor: format!("{} ({})", r.actor_name, r.actor_id),
                        action: r.action,
                        object: r.object.map(|o| format!("{} {}", o.kind, o.id)),
                        outcome: r.outcome.as_str(),
                        status: r.status,
                        address: r.address,
                        detail: r.detail,
                    }
                })
                .collect();
            let first = query.contains_key("cursor").then(|| super::page_link(&query, None));
            Page::new("audit.html", minijinja::context! { entries => rows, next, first, query })
                .render(&operator, "audit")
        }
        Err(e) => failed(&operator, "Cannot read the audit log", e.into(), "/console"),
    }
}
