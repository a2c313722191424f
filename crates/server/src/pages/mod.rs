//! The hosted pages: the connect page (a picker when a link offers several integrations, a
//! form from the connector's fields, or a redirect to the provider), the OAuth callback page,
//! the JSON the SDK's headless mode reads, and `latchkey.js` with its TypeScript types. Pages
//! speak the session's language (see [`i18n`]), wear the environment's and integration's
//! branding (see [`branding`]), load nothing from third parties, and carry a strict
//! Content-Security-Policy with a per-response nonce, `Referrer-Policy: no-referrer` and
//! `Cache-Control: no-store`.

mod branding;
mod i18n;
mod view;

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_core::Secret;
use latchkey_engine::{CallbackParams, EngineError, Fault, SessionForm};
use latchkey_store::{ConnectSession, ConnectionRecord};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{Class, status_of};
pub use i18n::Messages;
use view::{Screen, render};

const SDK: &str = include_str!("../../../../web/latchkey.js");
const SDK_TYPES: &str = include_str!("../../../../web/latchkey.d.ts");
/// The cookie that binds an authorization request to the browser that started it.
const BINDING_COOKIE: &str = "latchkey_flow";

/// Whether the connect page speaks `lang`.
pub fn is_supported_language(lang: &str) -> bool {
    i18n::is_supported(lang)
}

/// The languages the connect page speaks, for messages: `en, fr, de, es, ja`.
pub fn language_list() -> String {
    i18n::LANGUAGES.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(", ")
}

/// `?integration=` on a connect link: the end user's pick among the link's integrations.
#[derive(Debug, Default, Deserialize)]
pub struct Pick {
    integration: Option<String>,
}

/// The request a page answers: its language and whether the SDK's headless mode asks (JSON).
struct Asker {
    accept_language: Option<String>,
    json: bool,
}

impl Asker {
    fn of(headers: &HeaderMap) -> Self {
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        Self {
            accept_language: text(header::ACCEPT_LANGUAGE).map(str::to_string),
            json: text(header::ACCEPT).is_some_and(|a| a.starts_with("application/json")),
        }
    }

    fn messages(&self, session: Option<&ConnectSession>) -> Messages {
        Messages::choose(session.and_then(|s| s.lang.as_deref()), self.accept_language.as_deref())
    }
}

/// `GET /latchkey.js`.
pub async fn sdk() -> Response {
    script(SDK, "text/javascript; charset=utf-8")
}

/// `GET /latchkey.d.ts`: the SDK's TypeScript types.
pub async fn sdk_types() -> Response {
    script(SDK_TYPES, "application/typescript; charset=utf-8")
}

fn script(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The session a connect link opens, with the end user's pick applied (`?integration=`).
async fn session_for(
    state: &AppState,
    token: &Secret,
    pick: &Pick,
) -> Result<ConnectSession, EngineError> {
    let session = state.engine.connect().open_session(token).await?;
    crate::telemetry::name_session(&session);
    match &pick.integration {
        Some(id) if !session.choices.is_empty() => {
            state.engine.connect().choose(&session, id).await
        }
        _ => Ok(session),
    }
}

/// Whether the page shows the picker: the link offers several integrations, none picked yet.
fn picking(session: &ConnectSession, pick: &Pick) -> bool {
    !session.choices.is_empty() && pick.integration.is_none()
}

/// `GET /connect/{token}`: the picker, the form, or a redirect to the provider.
pub async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(pick): Query<Pick>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&headers);
    let token = Secret::new(token);
    let session = match session_for(&state, &token, &pick).await {
        Ok(s) => s,
        Err(e) => return failure_page(&state, &asker, None, &e).await,
    };
    if picking(&session, &pick) {
        return view::picker(&state, &asker, &session, token.expose()).await;
    }
    let form = match state.engine.connect().session_form(&session).await {
        Ok(form) => form,
        Err(e) => return failure_page(&state, &asker, Some(&session), &e).await,
    };
    if form.redirect && form.fields.is_empty() {
        return to_provider(&state, &asker, &session).await;
    }
    view::form(
        &state,
        &asker.messages(Some(&session)),
        &session,
        &form,
        &pick,
        &BTreeMap::new(),
        None,
    )
    .await
}

/// Starts the authorization flow and sends the browser to the provider, binding the flow to
/// this browser with a cookie.
async fn to_provider(state: &AppState, asker: &Asker, session: &ConnectSession) -> Response {
    let binding = Secret::new(latchkey_engine::random_token(32));
    let redirect_uri = state.callback_url();
    match state.engine.connect().begin_authorization(session, &redirect_uri, &binding).await {
        Ok(url) => {
            let secure = state.public_url.scheme() == "https";
            let jar = CookieJar::new().add(binding_cookie(&binding, secure));
            let mut response = (jar, Redirect::to(url.as_str())).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
                .headers_mut()
                .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            response
        }
        Err(e) => failure_page(state, asker, Some(session), &e).await,
    }
}

/// `POST /connect/{token}`: the form's submission: credentials (a connection is made), or the
/// config a consent redirect needs (the browser goes on to the provider). Asked with `Accept:
/// application/json` (the SDK's headless mode), it answers JSON instead of a page.
pub async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(pick): Query<Pick>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let asker = Asker::of(&headers);
    let token = Secret::new(token);
    let session = match session_for(&state, &token, &pick).await {
        Ok(s) => s,
        Err(e) => return failure_page(&state, &asker, None, &e).await,
    };
    let messages = asker.messages(Some(&session));
    let spec = match state.engine.connect().session_form(&session).await {
        Ok(spec) => spec,
        Err(e) => return failure_page(&state, &asker, Some(&session), &e).await,
    };
    let values: BTreeMap<String, Secret> =
        form.iter().map(|(k, v)| (k.clone(), Secret::new(v.as_str()))).collect();
    // Refused fields are shown next to the field, before anything is sent anywhere.
    let problems = match spec.problems(&values) {
        Ok(problems) => problems,
        Err(e) => return failure_page(&state, &asker, Some(&session), &e).await,
    };
    if !problems.is_empty() {
        if asker.json {
            let fields: BTreeMap<_, _> =
                problems.iter().map(|(k, p)| (k.clone(), view::problem_code(*p))).collect();
            return headless(
                &session,
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "error": {"code": "invalid_request",
                    "message": messages.get("form-errors", &[]), "fields": fields}}),
            );
        }
        let errors = view::field_errors(&messages, &spec, &problems);
        return view::form(&state, &messages, &session, &spec, &pick, &form, Some(errors)).await;
    }
    let submitted = Submitted {
        asker: &asker,
        messages: &messages,
        session: &session,
        spec: &spec,
        pick: &pick,
        form: &form,
    };
    if spec.redirect {
        let config: BTreeMap<String, String> = spec
            .fields
            .iter()
            .filter_map(|f| form.get(&f.key).map(|v| (f.key.clone(), v.clone())))
            .collect();
        return match state.engine.connect().add_config(&session, config).await {
            Ok(session) => to_provider(&state, &asker, &session).await,
            Err(e) => submitted.refused(&state, &e).await,
        };
    }
    match state.engine.connect().complete_session_form(&session, values).await {
        Ok(record) => {
            crate::telemetry::name_connector(&record.connector);
            if asker.json {
                return headless(&session, StatusCode::OK, success_message(&record));
            }
            finished(&state, &asker, &session, Ok(&record)).await
        }
        Err(e) => submitted.refused(&state, &e).await,
    }
}

/// A form's submission, as the page answers it.
struct Submitted<'a> {
    asker: &'a Asker,
    messages: &'a Messages,
    session: &'a ConnectSession,
    spec: &'a SessionForm,
    pick: &'a Pick,
    form: &'a BTreeMap<String, String>,
}

impl Submitted<'_> {
    /// A submission the API or Latchkey refused: the form again with the reason in safe
    /// words (what a failed credential test answered, a field at fault), which the end user
    /// can act on.
    async fn refused(&self, state: &AppState, error: &EngineError) -> Response {
        let Submitted { asker, messages, session, spec, pick, form } = *self;
        let (status, public) = failure(error);
        let words = view::failure_words(messages, &spec.name, error, &public);
        if asker.json {
            return headless(
                session,
                status,
                json!({"ok": false, "error": {"code": error.code(), "message": words,
                       "fields": error.field().map(|f| json!({(f): "invalid"}))}}),
            );
        }
        let mut errors = view::FormErrors { summary: Some(words), fields: BTreeMap::new() };
        if let Some(field) = error.field().filter(|f| spec.fields.iter().any(|x| x.key == *f)) {
            errors.fields.insert(field.to_string(), public);
        }
        // A form shown again for the end user to correct is a 400, whatever side failed.
        view::form(state, messages, session, spec, pick, form, Some(errors)).await
    }
}

/// What the SDK's headless mode gets: JSON, readable by the session's allowed origin.
fn headless(session: &ConnectSession, status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(origin) =
        session.allowed_origin.as_deref().and_then(|o| HeaderValue::from_str(o).ok())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `GET /connect/{token}/session`: what the SDK's headless mode draws: the integrations to pick
/// from, or (after `?integration=`, or when there is one) the connector's fields and whether
/// the flow goes on to the provider (then the SDK opens the connect link in a popup).
pub async fn describe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(pick): Query<Pick>,
    headers: HeaderMap,
) -> Response {
    let asker = Asker::of(&headers);
    let token = Secret::new(token);
    let session = match session_for(&state, &token, &pick).await {
        Ok(s) => s,
        Err(e) => {
            let (status, message) = failure(&e);
            let body = json!({"error": {"code": e.code(), "message": message}});
            let mut response = (status, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            return response;
        }
    };
    let messages = asker.messages(Some(&session));
    let choices = match state.engine.connect().session_choices(&session).await {
        Ok(c) => c,
        Err(e) => return headless(&session, failure(&e).0, json!({"error": {"code": e.code()}})),
    };
    let choices: Vec<_> = choices
        .iter()
        .map(|c| json!({"integration": c.integration, "connector": c.connector, "name": c.name, "category": c.category}))
        .collect();
    let mut body = json!({"lang": messages.lang(), "choices": choices, "expires_at": crate::routes::rfc3339(session.expires_at)});
    if !picking(&session, &pick) {
        match state.engine.connect().session_form(&session).await {
            Ok(form) => {
                body["integration"] = json!(form.integration);
                body["connector"] = json!(form.connector);
                body["name"] = json!(form.name);
                body["redirect"] = json!(form.redirect);
                body["fields"] = json!(form.fields);
            }
            Err(e) => {
                return headless(&session, failure(&e).0, json!({"error": {"code": e.code()}}));
            }
        }
    }
    headless(&session, StatusCode::OK, body)
}

/// The message a popup posts to its opener when a connection is made.
fn success_message(record: &ConnectionRecord) -> serde_json::Value {
    json!({"type": "latchkey:connect", "ok": true,
           "connection": {"id": record.id, "connector": record.connector, "label": record.label}})
}

/// How a session's flow ends for the browser: back to the app's `return_url` (a full-page
/// flow) with the outcome in its query, or the outcome screen, which also posts the result
/// to the opener at the session's exact origin (never `*`) and closes.
async fn finished(
    state: &AppState,
    asker: &Asker,
    session: &ConnectSession,
    outcome: Result<&ConnectionRecord, &EngineError>,
) -> Response {
    if let Some(url) = session.return_url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
        let mut url = url;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("session_id", &session.id);
            match outcome {
                Ok(record) => {
                    query.append_pair("status", "done").append_pair("connection_id", &record.id)
                }
                Err(error) => {
                    query.append_pair("status", "failed").append_pair("error", error.code())
                }
            };
        }
        let mut response = Redirect::to(url.as_str()).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
            .headers_mut()
            .insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        return response;
    }
    let messages = asker.messages(Some(session));
    let name = view::connector_name(state, session).await;
    let origin = session.allowed_origin.clone();
    let screen = match outcome {
        Ok(record) => Screen::Done {
            message: messages.get("done-message", &[("name", &name)]),
            result: success_message(record),
            origin,
        },
        Err(error) => {
            let (status, message) = failure(error);
            Screen::Failed {
                status,
                message: view::failure_words(&messages, &name, error, &message),
                result: Some(json!({"type": "latchkey:connect", "ok": false,
                                    "error": {"code": error.code(), "message": message}})),
                origin,
            }
        }
    };
    render(state, &messages, Some(session), screen).await
}

/// `GET /connect/{token}/status`: how the session ended, for a popup that lost its opener.
pub async fn status(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let hash_of = Secret::new(token);
    match state.engine.connect().session_by_token(&hash_of).await {
        Ok(Some(s)) => {
            let mut response =
                Json(crate::routes::connect_sessions::view(&state, &s)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
                .headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            response
        }
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({"status": "unknown"}))).into_response(),
        Err(e) => {
            let (status, message) = failure(&e);
            (status, Json(json!({"status": "unknown", "error": message}))).into_response()
        }
    }
}

/// `GET /oauth/callback`: checks state (and `iss`), swaps the code, stores the connection,
/// and reports to the opener (or returns to the app's `return_url`).
pub async fn callback(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let asker = Asker::of(&headers);
    let binding = jar.get(BINDING_COOKIE).map(|c| Secret::new(c.value()));
    let params = CallbackParams::from_pairs(query);
    match state.engine.connect().complete_authorization(params, binding.as_ref()).await {
        Ok((session, record)) => {
            crate::telemetry::name_session(&session);
            crate::telemetry::name_connector(&record.connector);
            finished(&state, &asker, &session, Ok(&record)).await
        }
        Err((Some(session), error)) => {
            crate::telemetry::name_session(&session);
            tracing::info!(error = %error, code = error.code(), "connect flow failed");
            finished(&state, &asker, &session, Err(&error)).await
        }
        // No session's flow was touched (a forged or replayed callback, another browser): the
        // page says so, tells no opener and does not close, so nobody's flow ends by it.
        Err((None, error)) => {
            tracing::info!(error = %error, "callback refused");
            failure_page(&state, &asker, None, &error).await
        }
    }
}

/// The cookie binding an authorization request to this browser: sent back only to the
/// callback, for the ten minutes a flow lasts, never to scripts, kept on the provider's
/// top-level redirect back (`SameSite=Lax`), and only over TLS when the public URL is https.
fn binding_cookie(binding: &Secret, secure: bool) -> Cookie<'static> {
    Cookie::build((BINDING_COOKIE, binding.expose().to_owned()))
        .path("/oauth/callback")
        .max_age(time::Duration::minutes(10))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// The status and what an end user may see of an error: the API's status and public message
/// (see [`EngineError::public_message`]); internal and configuration errors are logged here, as
/// the API logs them.
fn failure(error: &EngineError) -> (StatusCode, String) {
    let class = error.class();
    match class.fault() {
        Fault::Internal => tracing::error!(error = %error, "connect page: internal error"),
        Fault::Configuration => tracing::warn!(error = %error, "connect page: configuration error"),
        Fault::Caller | Fault::Upstream => {}
    }
    (status_of(Class::Engine(class)), error.public_message())
}

/// The page for an error that ends nothing (a link that does not open, a refused callback):
/// its status and what it means, in the end user's words; JSON for the headless SDK.
async fn failure_page(
    state: &AppState,
    asker: &Asker,
    session: Option<&ConnectSession>,
    error: &EngineError,
) -> Response {
    let (status, message) = failure(error);
    let messages = asker.messages(session);
    if asker.json {
        let body = json!({"ok": false, "error": {"code": error.code(), "message": message}});
        return match session {
            Some(s) => headless(s, status, body),
            None => (status, Json(body)).into_response(),
        };
    }
    let screen = Screen::Failed {
        status,
        message: view::outcome_words(&messages, error.code(), &message),
        result: None,
        origin: None,
    };
    render(state, &messages, session, screen).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_cookie(secure: bool) -> String {
        let jar = CookieJar::new().add(binding_cookie(&Secret::new("b1nd"), secure));
        let response = (jar, Redirect::to("https://id.example/authorize")).into_response();
        let values: Vec<_> = response.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(values.len(), 1);
        values[0].to_str().unwrap().to_owned()
    }

    #[test]
    fn the_binding_cookie_keeps_its_attributes() {
        let cookie = set_cookie(false);
        let mut parts: Vec<&str> = cookie.split("; ").collect();
        assert_eq!(parts.remove(0), "latchkey_flow=b1nd");
        parts.sort_unstable();
        assert_eq!(parts, ["HttpOnly", "Max-Age=600", "Path=/oauth/callback", "SameSite=Lax"]);
        assert!(set_cookie(true).split("; ").any(|p| p == "Secure"), "https adds Secure");
    }

    #[test]
    fn the_binding_is_read_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; latchkey_flow=b1nd; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        let jar = CookieJar::from_headers(&headers);
        assert_eq!(jar.get(BINDING_COOKIE).map(|c| c.value()), Some("b1nd"));
        assert!(CookieJar::from_headers(&HeaderMap::new()).get(BINDING_COOKIE).is_none());
    }
}
