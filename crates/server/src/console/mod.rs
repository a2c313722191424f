//! The operator console at `/console`: server-rendered pages (minijinja templates from
//! `web/console/`, built into the binary) over the same engine calls the REST API makes. Nothing
//! loads from elsewhere; every page carries a strict Content-Security-Policy with a
//! per-response nonce (for its one inline style sheet and script), `no-store` and
//! `frame-ancestors 'none'`. An operator signs in with an API key holding `admin`
//! ([`session`]); every form carries a CSRF token ([`csrf`]); every change is audited under the
//! same action name as its REST route ([`audit`]). No page ever shows a stored secret.

mod audit;
mod chart;
mod connections;
mod csrf;
mod integrations;
mod keys;
mod links;
mod oidc;
mod operations;
mod overview;
mod session;

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Serialize;

use crate::{ApiError, AppState};

pub use session::Operator;

/// The console's templates, by file name under `web/console/`.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../../../web/console/layout.html")),
    ("sign-in.html", include_str!("../../../../web/console/sign-in.html")),
    ("landing.html", include_str!("../../../../web/console/landing.html")),
    ("message.html", include_str!("../../../../web/console/message.html")),
    ("overview.html", include_str!("../../../../web/console/overview.html")),
    ("integrations.html", include_str!("../../../../web/console/integrations.html")),
    ("integration.html", include_str!("../../../../web/console/integration.html")),
    ("connections.html", include_str!("../../../../web/console/connections.html")),
    ("connection.html", include_str!("../../../../web/console/connection.html")),
    ("operations.html", include_str!("../../../../web/console/operations.html")),
    ("links.html", include_str!("../../../../web/console/links.html")),
    ("api-keys.html", include_str!("../../../../web/console/api-keys.html")),
    ("audit.html", include_str!("../../../../web/console/audit.html")),
    ("operations-table.html", include_str!("../../../../web/console/operations-table.html")),
];
/// The one style sheet, inlined in every page under the page's nonce.
const STYLE: &str = include_str!("../../../../web/console/console.css");
/// The one script (copy buttons, confirmations, the environment switcher), inlined likewise.
const SCRIPT: &str = include_str!("../../../../web/console/console.js");

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("web/console/{name}: {e}"));
        }
        env
    })
}

/// The console's routes, under `/console`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/oidc/start", get(oidc::start_sign_in))
        .route("/console/oidc/callback", get(oidc::callback))
        .route("/console/environment", post(session::switch_environment))
        .route("/console/integrations", get(integrations::list).post(integrations::save))
        .route("/console/integrations/{id}", get(integrations::edit))
        .route("/console/integrations/{id}/delete", post(integrations::delete))
        .route("/console/connections", get(connections::list))
        .route("/console/connections/{id}", get(connections::show))
        .route("/console/connections/{id}/check", post(connections::check))
        .route("/console/connections/{id}/refresh", post(connections::refresh))
        .route("/console/connections/{id}/reconnect", post(connections::reconnect))
        .route("/console/connections/{id}/delete", post(connections::delete))
        .route("/console/operations", get(operations::list))
        .route("/console/links", get(links::page).post(links::create))
        .route("/console/api-keys", get(keys::list).post(keys::create))
        .route("/console/api-keys/{id}/revoke", post(keys::revoke))
        .route("/console/audit", get(keys::audit))
}

/// A page of the console: `template` rendered with `ctx`, the layout's common values added.
pub(crate) struct Page {
    status: StatusCode,
    template: &'static str,
    ctx: minijinja::Value,
}

impl Page {
    /// `template` with `ctx`, answered 200.
    pub(crate) fn new(template: &'static str, ctx: impl Serialize) -> Self {
        Self { status: StatusCode::OK, template, ctx: minijinja::Value::from_serialize(ctx) }
    }

    /// The same page with another status.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The page for a signed-in operator: the layout shows who, where, and the forms' token.
    pub(crate) fn render(self, operator: &Operator, current: &'static str) -> Response {
        let chrome = minijinja::context! {
            operator => operator.name(),
            environment => operator.environment.as_str(),
            environments => &operator.environments,
            may_switch => operator.may_switch(),
            csrf => operator.csrf(),
            current,
        };
        let ctx = minijinja::context! { ..chrome, ..self.ctx.clone() };
        self.finish(ctx)
    }

    /// The page for nobody signed in (the sign-in page).
    pub(crate) fn render_anonymous(self) -> Response {
        let ctx = self.ctx.clone();
        self.finish(ctx)
    }

    fn finish(self, ctx: minijinja::Value) -> Response {
        let nonce = latchkey_engine::random_token(16);
        let ctx = minijinja::context! { nonce => &nonce, style => STYLE, script => SCRIPT, ..ctx };
        let html = templates()
            .get_template(self.template)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template = self.template, "console template failed");
                "<!doctype html><html lang=en><title>Error</title><p>Something went wrong.</p>"
                    .to_string()
            });
        let mut response = (self.status, html).into_response();
        secure_headers(response.headers_mut(), &nonce);
        response
    }
}

/// The headers every console answer carries.
fn secure_headers(headers: &mut HeaderMap, nonce: &str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src 'self' data:; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// An action that failed: the error's status and its public message (never a secret, see
/// [`ApiError`]), on a page with a way back.
pub(crate) fn failed(operator: &Operator, what: &str, error: ApiError, back: &str) -> Response {
    let status = error.status();
    let message = error.body().message.clone();
    Page::new(
        "message.html",
        minijinja::context! { title => what, message, code => error.body().code, back },
    )
    .status(status)
    .render(operator, "")
}

/// After a change: back to `to` (303, so a reload does not post again).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A timestamp as pages show it: `2026-01-31 12:00:00 UTC`.
pub(crate) fn shown(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}:{:02} UTC", at.date(), at.hour(), at.minute(), at.second())
}

/// A form field, trimmed; `None` when empty or absent.
pub(crate) fn field<'a>(
    fields: &'a std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The query string of another page of the same list: `query` with its `cursor` replaced
/// (`None`: the first page).
pub(crate) fn page_link(
    query: &std::collections::BTreeMap<String, String>,
    cursor: Option<String>,
) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query.iter().filter(|(k, _)| *k != "cursor") {
        pairs.append_pair(k, v);
    }
    if let Some(cursor) = &cursor {
        pairs.append_pair("cursor", cursor);
    }
    format!("?{}", pairs.finish())
}
