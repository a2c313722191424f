//! The integrations page: list (with the callback URL to copy), create, edit and delete. The
//! client secret is write-only: a page says whether one is stored, and an edit that leaves the
//! field empty keeps it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::Secret;
use latchkey_engine::{
    ConnectorId, EngineError, IntegrationFilter, IntegrationId, NewIntegration, PageRequest,
};
use latchkey_store::IntegrationRecord;
use serde::Serialize;

use super::session::Submitted;
use super::{Operator, Page, audit, failed, field, see_other};
use crate::{ApiError, AppState};

/// An integration as the console shows it: never its secret.
#[derive(Debug, Serialize)]
struct IntegrationRow {
    id: String,
    connector: String,
    client_id: Option<String>,
    has_client_secret: bool,
    scopes: String,
    misconfigured: Option<String>,
}

fn row(record: &IntegrationRecord) -> IntegrationRow {
    IntegrationRow {
        id: record.id.clone(),
        connector: record.connector.clone(),
        client_id: record.client_id.clone(),
        has_client_secret: record.client_secret.is_some(),
        scopes: record.scopes.join(" "),
        misconfigured: record.misconfigured.as_ref().map(|m| m.message.clone()),
    }
}

/// Every connector in the catalog, by id, for the form's list.
fn connectors(state: &AppState) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = state
        .engine
        .connectors()
        .catalog()
        .list()
        .iter()
        .map(|e| (e.connector.id.clone(), e.connector.name.clone()))
        .collect();
    all.sort();
    all
}

/// Every integration of the operator's environment (all pages).
pub(crate) async fn all(
    state: &AppState,
    operator: &Operator,
) -> Result<Vec<IntegrationRecord>, EngineError> {
    let filter = IntegrationFilter::in_environment(operator.environment.as_str());
    let mut page = PageRequest { limit: latchkey_store::MAX_PAGE_SIZE, after: None };
    let mut out = Vec::new();
    loop {
        let found = state.engine.integrations().list(&filter, &page).await?;
        out.extend(found.items);
        match found.next {
            Some(next) => page.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// `GET /console/integrations`.
pub async fn list(State(state): State<AppState>, operator: Operator) -> Response {
    match all(&state, &operator).await {
        Ok(records) => {
            let rows: Vec<IntegrationRow> = records.iter().map(row).collect();
            Page::new(
                "integrations.html",
                minijinja::context! {
                    integrations => rows,
                    connectors => connectors(&state),
                    callback_url => state.callback_url(),
                },
            )
            .render(&operator, "integrations")
        }
        Err(e) => failed(&operator, "Cannot list integrations", e.into(), "/console"),
    }
}

/// `GET /console/integrations/{id}`: the edit form.
pub async fn edit(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Response {
    let found = match IntegrationId::new(id) {
        Ok(id) => state.engine.integrations().get(&operator.environment, &id).await,
        Err(e) => Err(e.into()),
    };
    match found {
        Ok(record) => Page::new(
            "integration.html",
            minijinja::context! {
                integration => row(&record),
                connectors => connectors(&state),
                callback_url => state.callback_url(),
            },
        )
        .render(&operator, "integrations"),
        Err(e) => {
            failed(&operator, "Cannot open the integration", e.into(), "/console/integrations")
        }
    }
}

/// `POST /console/integrations`: creates an integration, or replaces one (`replace=1`, from
/// the edit form, where an empty secret keeps the stored one).
pub async fn save(State(state): State<AppState>, form: Submitted) -> Response {
    let Submitted { operator, fields } = form;
    let result = save_fields(&state, &operator, &fields).await;
    let id = field(&fields, "id").unwrap_or_default().to_owned();
    match result {
        Ok(record) => {
            audit::record(
                &state,
                &operator,
                "integration.create",
                Some(("integration", &record.id)),
                StatusCode::CREATED,
            )
            .await;
            see_other("/console/integrations")
        }
        Err(e) => {
            let error = ApiError::from(e);
            let object = (!id.is_empty()).then_some(("integration", id.as_str()));
            audit::record(&state, &operator, "integration.create", object, error.status()).await;
            failed(&operator, "Cannot save the integration", error, "/console/integrations")
        }
    }
}

async fn save_fields(
    state: &AppState,
    operator: &Operator,
    fields: &std::collections::BTreeMap<String, String>,
) -> Result<IntegrationRecord, EngineError> {
    let id = IntegrationId::new(field(fields, "id").unwrap_or_default())?;
    let connector = ConnectorId::new(field(fields, "connector").unwrap_or_default())?;
    let replace = field(fields, "replace") == Some("1");
    let mut client_secret = field(fields, "client_secret").map(Secret::new);
    if replace {
        let existing = state.engine.integrations().get(&operator.environment, &id).await?;
        if client_secret.is_none() {
            client_secret = existing.client_secret;
        }
    } else if state.engine.integrations().get(&operator.environment, &id).await.is_ok() {
        return Err(EngineError::Conflict(format!(
            "integration `{id}` exists; open it to edit it"
        )));
    }
    let scopes = field(fields, "scopes")
        .map(|s| s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    state
        .engine
        .integrations()
        .put(NewIntegration {
            environment: operator.environment.clone(),
            id,
            connector,
            client_id: field(fields, "client_id").map(str::to_owned),
            client_secret,
            scopes,
        })
        .await
}

/// `POST /console/integrations/{id}/delete`: refused while connections use it, unless
/// `force` is ticked (they become `needs_reauth`).
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Submitted,
) -> Response {
    let Submitted { operator, fields } = form;
    let force = field(&fields, "force") == Some("1");
    let result = match IntegrationId::new(id.as_str()) {
        Ok(iid) if force => {
            state.engine.integrations().delete_forced(&operator.environment, &iid).await.map(drop)
        }
        Ok(iid) => state.engine.integrations().delete(&operator.environment, &iid).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => {
            audit::record(
                &state,
                &operator,
                "integration.delete",
                Some(("integration", &id)),
                StatusCode::NO_CONTENT,
            )
            .await;
            see_other("/console/integrations")
        }
        Err(e) => {
            let error = ApiError::from(e);
            audit::record(
                &state,
                &operator,
                "integration.delete",
                Some(("integration", &id)),
                error.status(),
            )
            .await;
            failed(&operator, "Cannot delete the integration", error, "/console/integrations")
        }
    }
}
