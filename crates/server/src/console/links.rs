//! Connect links: a shareable link that lets an end user make (or re-authorise) one
//! connection on the hosted connect page. The link holds a single-use token, so it is shown
//! once, right after it is made, and never listed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_engine::{ConnectionId, EndUser, EngineError, IntegrationId, NewConnectSession};

use super::session::Submitted;
use super::{Operator, Page, audit, failed, field, shown};
use crate::{ApiError, AppState};

/// The lifetimes the form offers, in seconds, and how they read.
const LIFETIMES: &[(u64, &str)] =
    &[(600, "10 minutes"), (3600, "1 hour"), (86_400, "1 day"), (604_800, "7 days")];

/// What a link is for.
#[derive(Debug, Default)]
pub struct LinkRequest {
    /// The integration to connect through (a new connection).
    pub integration: Option<String>,
    /// The connection to re-authorise.
    pub reconnect: Option<String>,
    /// The end user's id in the app.
    pub end_user: Option<String>,
    /// Seconds the link stays usable (text from the form).
    pub expires_in: Option<String>,
}

/// `GET /console/links`: the form.
pub async fn page(State(state): State<AppState>, operator: Operator) -> Response {
    let integrations = match super::integrations::all(&state, &operator).await {
        Ok(all) => all.into_iter().map(|i| i.id).collect::<Vec<_>>(),
        Err(e) => return failed(&operator, "Cannot list integrations", e.into(), "/console"),
    };
    Page::new("links.html", minijinja::context! { integrations, lifetimes => LIFETIMES })
        .render(&operator, "links")
}

/// `POST /console/links`: makes a link and shows it (once).
pub async fn create(State(state): State<AppState>, form: Submitted) -> Response {
    let Submitted { operator, fields } = form;
    let request = LinkRequest {
        integration: field(&fields, "integration").map(str::to_owned),
        reconnect: None,
        end_user: field(&fields, "end_user").map(str::to_owned),
        expires_in: field(&fields, "expires_in").map(str::to_owned),
    };
    create_and_show(&state, &operator, request).await
}

/// Makes the link `request` asks for, audits it as `connect_session.create`, and shows it.
pub async fn create_and_show(
    state: &AppState,
    operator: &Operator,
    request: LinkRequest,
) -> Response {
    let back = match &request.reconnect {
        Some(id) => format!("/console/connections/{id}"),
        None => "/console/links".to_owned(),
    };
    match make(state, operator, request).await {
        Ok((id, link, expires_at)) => {
            audit::record(
                state,
                operator,
                "connect_session.create",
                Some(("connect_session", &id)),
                StatusCode::CREATED,
            )
            .await;
            Page::new("links.html", minijinja::context! { link, expires_at, back })
                .status(StatusCode::CREATED)
                .render(operator, "links")
        }
        Err(e) => {
            let error = ApiError::from(e);
            audit::record(state, operator, "connect_session.create", None, error.status()).await;
            failed(operator, "Cannot make the link", error, &back)
        }
    }
}

async fn make(
    state: &AppState,
    operator: &Operator,
    request: LinkRequest,
) -> Result<(String, String, String), EngineError> {
    let environment = operator.environment.clone();
    let expires_in = request
        .expires_in
        .as_deref()
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                EngineError::invalid("expires_in", "expires_in is a number of seconds")
            })
        })
        .transpose()?;
    let through = match (request.integration, request.reconnect) {
        (_, Some(reconnect)) => {
            let id = ConnectionId::new(reconnect)?;
            state.engine.connect().reconnecting(environment.clone(), id).await?
        }
        (Some(integration), None) => NewConnectSession::new(IntegrationId::new(integration)?),
        (None, None) => {
            return Err(EngineError::invalid(
                "integration",
                "choose the integration to connect through",
            ));
        }
    };
    let mut new = NewConnectSession { environment, expires_in, ..through };
    if let Some(id) = request.end_user {
        new.end_user = Some(EndUser { id, email: None, display_name: None });
    }
    let (session, token) = state.engine.connect().create_session(new).await?;
    let link =
        format!("{}/connect/{}", state.public_url.as_str().trim_end_matches('/'), token.expose());
    Ok((session.id, link, shown(session.expires_at)))
}
