//! Who is signed in to the console. Sign-in takes an API key holding `admin` (the bootstrap
//! key too); a live key starts a server-side session ([`latchkey_engine::Console`]: 256-bit
//! opaque id, stored as its digest, [`CONSOLE_SESSION_LIFETIME`]) whose id goes to the
//! browser in an HttpOnly, SameSite=Strict cookie scoped to `/console` (and `Secure` when the
//! public URL is https). Each request re-reads the session; one whose key has since been
//! revoked, has expired or lost `admin` ends there. Failed sign-ins share the API's per-address
//! back-off.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_core::Secret;
use latchkey_engine::{CONSOLE_SESSION_LIFETIME, EnvironmentId, NewConsoleSession};
use latchkey_store::{ConsoleSessionRecord, Scope};

use super::{Page, audit, csrf, field, see_other};
use crate::AppState;

/// The cookie that holds the session id.
pub const SESSION_COOKIE: &str = "latchkey_console";
/// The cookie that holds the sign-in form's double-submit token.
const SIGN_IN_COOKIE: &str = "latchkey_console_sign_in";
/// Where cookies of the console are sent.
const COOKIE_PATH: &str = "/console";

/// The operator of a console request: their live session, the environment it shows and
/// those it may show. Extracting it from a request without a live session answers with a
/// redirect to the sign-in page.
#[derive(Debug)]
pub struct Operator {
    /// The session.
    pub session: ConsoleSessionRecord,
    /// The session id (the cookie's value), for the CSRF token.
    id: Secret,
    /// The environment the console shows.
    pub environment: EnvironmentId,
    /// The environments the switcher offers.
    pub environments: Vec<String>,
    /// Where the request came from.
    pub address: Option<IpAddr>,
}

impl Operator {
    /// Their name, as shown in the header.
    pub fn name(&self) -> &str {
        &self.session.actor_name
    }

    /// Whether the session may show another environment.
    pub fn may_switch(&self) -> bool {
        self.session.bound.is_none() && self.environments.len() > 1
    }

    /// The token this session's forms carry.
    pub fn csrf(&self) -> String {
        csrf::token(&self.id)
    }
}

pub(crate) fn address(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The address a request came from, when the server knows it (not through `oneshot`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(address(parts)))
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(id) = jar.get(SESSION_COOKIE).map(|c| Secret::new(c.value())) else {
            return Err(to_sign_in());
        };
        let console = state.engine.console();
        let session = match console.session(&id).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(to_sign_in()),
            Err(e) => return Err(unavailable(&e)),
        };
        if !signer_still_admin(state, &session).await {
            let _ = console.sign_out(&id).await;
            return Err(to_sign_in());
        }
        let environment = EnvironmentId::new(&session.environment).map_err(|_| to_sign_in())?;
        let environments = match &session.bound {
            Some(bound) => vec![bound.clone()],
            None => match state.engine.access().environments().await {
                Ok(all) => all.into_iter().map(|e| e.id).collect(),
                Err(e) => return Err(unavailable(&e)),
            },
        };
        Ok(Operator { session, id, environment, environments, address: address(parts) })
    }
}

/// Whether the key a session was signed in with is still live and holds `admin` (sessions of
/// the bootstrap key and of OpenID Connect operators have no key to lose).
async fn signer_still_admin(state: &AppState, session: &ConsoleSessionRecord) -> bool {
    if !session.actor_id.starts_with("key_") {
        return true;
    }
    let now = state.engine.clock().now();
    match state.engine.access().keys().await {
        Ok(keys) => keys.iter().any(|k| {
            k.id == session.actor_id
                && k.revoked_at.is_none()
                && k.expires_at.is_none_or(|at| now < at)
                && k.scopes.contains(&Scope::Admin)
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot read API keys for a console session");
            false
        }
    }
}

pub(crate) fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "console session lookup failed");
    (StatusCode::SERVICE_UNAVAILABLE, "The console cannot read its sessions; try again.")
        .into_response()
}

/// A console form, posted by a signed-in operator with the session's CSRF token: anything
/// else is refused (403) before the handler runs.
#[derive(Debug)]
pub struct Submitted {
    /// Who posted it.
    pub operator: Operator,
    /// Its fields (the token removed).
    pub fields: BTreeMap<String, String>,
}

impl FromRequest<AppState> for Submitted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let operator = Operator::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let Form(mut fields) =
            Form::<BTreeMap<String, String>>::from_request(request, state).await.map_err(|e| {
                (StatusCode::BAD_REQUEST, format!("cannot read the form: {}", e.body_text()))
                    .into_response()
            })?;
        let token = fields.remove(csrf::FIELD);
        if !csrf::matches(&operator.id, token.as_deref()) {
            return Err(refused_form());
        }
        Ok(Submitted { operator, fields })
    }
}

/// 403: a form without this session's token (forged, or from a session that has ended).
fn refused_form() -> Response {
    Page::new(
        "sign-in.html",
        minijinja::context! {
            error => "This form was refused: it did not carry this session's token. \
                      Open the page again and resubmit.",
            token => "",
        },
    )
    .status(StatusCode::FORBIDDEN)
    .render_anonymous()
}

pub(crate) fn cookie(state: &AppState, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(state.public_url.scheme() == "https")
        .same_site(SameSite::Strict)
        .build()
}

/// A cookie that makes the browser forget `name` at `path` (a jar's `remove` only does so for
/// a cookie the request brought).
pub(crate) fn expired(name: &'static str, path: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path(path).max_age(time::Duration::ZERO).build()
}

/// `GET /console/sign-in`: the form, with a fresh double-submit token.
pub async fn sign_in_page(State(state): State<AppState>) -> Response {
    sign_in_form(&state, None, StatusCode::OK)
}

/// The sign-in page, with `error` shown when given.
pub(crate) fn sign_in_form(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let token = latchkey_engine::random_token(32);
    let jar = CookieJar::new().add(cookie(state, SIGN_IN_COOKIE, token.clone()));
    let oidc = state.console_oidc.is_some();
    let page = Page::new("sign-in.html", minijinja::context! { error, token, oidc })
        .status(status)
        .render_anonymous();
    (jar, page).into_response()
}

/// `POST /console/sign-in`: an API key holding `admin` starts a session.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    jar: CookieJar,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    let cookie_token = jar.get(SIGN_IN_COOKIE).map(|c| c.value().to_owned());
    if !csrf::same(cookie_token.as_deref(), fields.get(csrf::FIELD).map(String::as_str)) {
        return sign_in_form(
            &state,
            Some("The sign-in form expired; enter the key again."),
            StatusCode::FORBIDDEN,
        );
    }
    let Some(key) = field(&fields, "key").map(Secret::new) else {
        return sign_in_form(&state, Some("Enter an API key."), StatusCode::BAD_REQUEST);
    };
    let found = if key == *state.api_key {
        Some(("bootstrap".to_owned(), "LATCHKEY_API_KEY".to_owned(), None, true))
    } else {
        match state.engine.access().authenticate(&key).await {
            Ok(Some(k)) => {
                let admin = k.scopes.contains(&Scope::Admin);
                Some((k.id, k.name, k.environment, admin))
            }
            Ok(None) => None,
            Err(e) => return unavailable(&e),
        }
    };
    let Some((actor_id, actor_name, bound, admin)) = found else {
        metrics::counter!(crate::access::AUTH_FAILURES, "reason" => "invalid_key").increment(1);
        let delay = state.auth_throttle.failed(address);
        if !delay.is_zero() {
            metrics::counter!(crate::access::AUTH_DELAYED).increment(1);
            tokio::time::sleep(delay).await;
        }
        return sign_in_form(
            &state,
            Some("That key is not valid (unknown, revoked or expired)."),
            StatusCode::UNAUTHORIZED,
        );
    };
    state.auth_throttle.succeeded(address);
    if !admin {
        return sign_in_form(
            &state,
            Some("That key lacks the `admin` scope the console needs."),
            StatusCode::FORBIDDEN,
        );
    }
    let bound = match bound.map(EnvironmentId::new).transpose() {
        Ok(bound) => bound,
        Err(_) => {
            return sign_in_form(
                &state,
                Some("That key's environment is not valid."),
                StatusCode::FORBIDDEN,
            );
        }
    };
    match start(&state, address, actor_id, actor_name, bound).await {
        Ok(jar) => (jar, see_other("/console")).into_response(),
        Err(response) => response,
    }
}

/// Starts a session for a signed-in operator: the cookies to set.
pub(crate) async fn start(
    state: &AppState,
    address: Option<IpAddr>,
    actor_id: String,
    actor_name: String,
    bound: Option<EnvironmentId>,
) -> Result<CookieJar, Response> {
    let environment = bound.clone().unwrap_or_else(EnvironmentId::default_environment);
    let new = NewConsoleSession { actor_id, actor_name, environment, bound };
    let (session, id) = match state.engine.console().sign_in(new).await {
        Ok(started) => started,
        Err(e) => return Err(unavailable(&e)),
    };
    audit::record_session(state, &session, address, "console.sign_in").await;
    let max_age =
        time::Duration::try_from(CONSOLE_SESSION_LIFETIME).unwrap_or(time::Duration::HOUR);
    let mut session_cookie = cookie(state, SESSION_COOKIE, id.expose().to_owned());
    session_cookie.set_max_age(max_age);
    Ok(CookieJar::new().add(session_cookie).add(expired(SIGN_IN_COOKIE, COOKIE_PATH)))
}

/// `POST /console/sign-out`: ends the session and clears its cookie.
pub async fn sign_out(State(state): State<AppState>, form: Submitted) -> Response {
    let operator = form.operator;
    if let Err(e) = state.engine.console().sign_out(&operator.id).await {
        return unavailable(&e);
    }
    audit::record_session(&state, &operator.session, operator.address, "console.sign_out").await;
    let jar = CookieJar::new().add(expired(SESSION_COOKIE, COOKIE_PATH));
    (jar, see_other("/console/sign-in")).into_response()
}

/// `POST /console/environment`: shows another environment.
pub async fn switch_environment(State(state): State<AppState>, form: Submitted) -> Response {
    let operator = &form.operator;
    let target = field(&form.fields, "environment").unwrap_or_default();
    let result = match EnvironmentId::new(target) {
        Ok(environment) => {
            state.engine.console().switch_environment(&operator.session, &environment).await
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => see_other("/console"),
        Err(e) => super::failed(operator, "Cannot switch environment", e.into(), "/console"),
    }
}
