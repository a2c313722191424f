//! `GET /v1/audit`: the audit log of the caller's environment, newest first, filtered and paged
//! by a cursor.

use axum::extract::{Extension, State};
use latchkey_store::{AuditEntry, AuditFilter, AuditPage};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::extract::{Json, Query};
use crate::{ApiError, AppState, Principal};

/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only entries by this API key id (`bootstrap` for `LATCHKEY_API_KEY`).
    #[serde(default)]
    pub actor: Option<String>,
    /// Only this action (`connection.delete`), or, ending in `.*`, every action it starts
    /// (`connection.*`).
    #[serde(default)]
    pub action: Option<String>,
    /// Only entries about this object: `kind:id` (`connection:c1`) or an id of any kind.
    #[serde(default)]
    pub object: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// At most this many entries, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPageView {
    /// Entries, newest first.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; `null` when this page is the last (a full
    /// page may be followed by an empty one).
    pub next_cursor: Option<String>,
}

/// One audit entry. Never holds a secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    /// Its place in the hash chain: 1, 2, 3, … without gaps.
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who: the API key's id and name.
    pub actor: AuditActorView,
    /// What: `connection.create`, `connection.token_read`, ….
    pub action: String,
    /// Which object, when there is one.
    pub object: Option<AuditObjectView>,
    /// The environment it happened in.
    pub environment: Option<String>,
    /// The caller's IP address.
    pub address: Option<String>,
    /// `success`, `denied` (403) or `failed` (another 4xx or 5xx).
    pub outcome: String,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// What came of it beyond the status, in safe words: on `connection.revocation`,
    /// `revoked`, `not_supported` or `failed: <reason>`.
    pub detail: Option<String>,
    /// The chain hash (hex): HMAC-SHA256 of the previous entry's hash and this entry.
    pub hash: String,
}

/// Who acted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditActorView {
    /// The API key's id.
    pub id: String,
    /// The API key's name.
    pub name: String,
}

/// The object acted on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditObjectView {
    /// `connection`, `integration`, `connector`, `connect_session`, ….
    pub kind: String,
    /// Its id.
    pub id: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        let record = entry.record;
        Self {
            seq: entry.seq,
            at: record.at.format(&Rfc3339).unwrap_or_default(),
            actor: AuditActorView { id: record.actor_id, name: record.actor_name },
            action: record.action,
            object: record.object.map(|o| AuditObjectView { kind: o.kind, id: o.id }),
            environment: record.environment,
            address: record.address,
            outcome: record.outcome.as_str().to_owned(),
            status: record.status,
            detail: record.detail,
            hash: hex::encode(entry.hash),
        }
    }
}

/// The audit log of the caller's environment (and Latchkey's own entries, which have none),
/// newest first. Needs scope `admin`.
#[utoipa::path(get, path = "/v1/audit", params(AuditParams),
    responses((status = 200, body = AuditPageView), (status = 400, body = crate::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditPageView>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=latchkey_store::audit::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_request("`limit` must be 1 to 1000").with_field("limit"));
    }
    let cursor = params.cursor.as_deref().map(|c| c.parse::<i64>()).transpose().map_err(|_| {
        ApiError::invalid_request("`cursor` is not one this API gave").with_field("cursor")
    })?;
    let filter = AuditFilter {
        actor: params.actor,
        action: params.action,
        object: params.object,
        environment: Some(principal.environment.as_str().to_owned()),
        since: super::time_param(params.since.as_deref(), "since")?,
        until: super::time_param(params.until.as_deref(), "until")?,
    };
    let page = AuditPage { newest_first: true, after: cursor, limit };
    let entries = state.engine.audit().list(&filter, &page).await?;
    let next_cursor = match entries.last() {
        Some(last) if entries.len() == limit as usize => Some(last.seq.to_string()),
        _ => None,
    };
    Ok(Json(AuditPageView {
        entries: entries.into_iter().map(AuditEntryView::from).collect(),
        next_cursor,
    }))
}
