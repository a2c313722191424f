//! The hosted pages: the connect page (a form from the connector's fields, or a redirect to the
//! provider), the OAuth callback page, and `latchkey.js`. Pages load nothing from third parties,
//! carry a strict Content-Security-Policy with a per-response nonce, `Referrer-Policy:
//! no-referrer` and `Cache-Control: no-store`.

use std::sync::OnceLock;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_core::Secret;
use latchkey_core::connector::FieldSpec;
use latchkey_engine::{CallbackParams, EngineError, Fault};
use latchkey_store::{ConnectSession, ConnectionRecord};
use minijinja::{Environment, context};
use serde_json::json;
use std::collections::BTreeMap;

use crate::AppState;
use crate::error::{Class, status_of};

const PAGE: &str = include_str!("../../../web/page.html");
const SDK: &str = include_str!("../../../web/latchkey.js");
/// The cookie that binds an authorization request to the browser that started it.
const BINDING_COOKIE: &str = "latchkey_flow";

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("page.html", PAGE).unwrap_or_else(|e| panic!("web/page.html: {e}"));
        env
    })
}

/// A page, with the security headers every hosted page carries.
fn page(status: StatusCode, ctx: minijinja::Value, nonce: &str) -> Response {
    let html =
        templates().get_template("page.html").and_then(|t| t.render(ctx)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "page template failed");
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
        });
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers, nonce);
    response
}

fn secure_headers(headers: &mut HeaderMap, nonce: &str) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

fn nonce() -> String {
    latchkey_engine::random_token(16)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let n = nonce();
    page(status, context! { title => "Cannot connect", error => message, nonce => n }, &n)
}

/// The page that finishes a session's flow: posts the result to the opener at the session's
/// exact origin (never `*`) and closes. A failure posts `{code, message}` (the code and
/// message the session records) and shows the end user the same in plain words.
fn result_page(
    session: &ConnectSession,
    outcome: Result<&ConnectionRecord, &EngineError>,
) -> Response {
    let n = nonce();
    let origin = session.allowed_origin.clone();
    let (status, title, message, result) = match outcome {
        Ok(record) => (
            StatusCode::OK,
            "Connected",
            "You can close this window.".to_string(),
            json!({"type": "latchkey:connect", "ok": true,
                   "connection": {"id": record.id, "connector": record.connector, "label": record.label}}),
        ),
        Err(error) => {
            let (status, message) = failure(error);
            let code = error.code();
            (
                status,
                "Cannot connect",
                end_user_words(code).map_or(message.clone(), str::to_string),
                json!({"type": "latchkey:connect", "ok": false,
                       "error": {"code": code, "message": message}}),
            )
        }
    };
    let ok = status == StatusCode::OK;
    page(status, context! { title, message, ok, result, origin, nonce => n }, &n)
}

/// What the end user reads for a failed flow, where the API's message would mean little to
/// them; `None`: the public message says it well enough.
fn end_user_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "access_denied" => {
            "Access was not granted, so nothing was connected. You can close this window, and try again from the app if you change your mind."
        }
        "invalid_state" => {
            "This response does not belong to a connection started in this browser. Start again from the app."
        }
        "flow_expired" => "This took too long and the request expired. Start again from the app.",
        "provider_error" | "missing_code" | "issuer_mismatch" => {
            "The provider did not complete the connection. Start again from the app."
        }
        "token_refused"
        | "token_endpoint_unavailable"
        | "token_response_malformed"
        | "integration_misconfigured" => {
            "The provider refused to complete the connection. Try again later; if it keeps failing, contact the app's support."
        }
        "credential_test_failed" => {
            "The connection was authorised, but the service refused it when checked. Try again, or contact the app's support."
        }
        _ => return None,
    })
}

/// `GET /latchkey.js`.
pub async fn sdk() -> Response {
    let mut response = SDK.into_response();
    let headers = response.headers_mut();
    headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// `GET /connect/{token}`: a redirect to the provider (OAuth2) or the credential form.
pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let token = Secret::new(token);
    let session = match state.engine.connect().open_session(&token).await {
        Ok(s) => s,
        Err(e) => return failure_page(&e),
    };
    crate::telemetry::name_session(&session);
    match state.engine.connect().session_uses_redirect(&session).await {
        Ok(true) => {
            let binding = Secret::new(latchkey_engine::random_token(32));
            let redirect_uri = state.callback_url();
            match state
                .engine
                .connect()
                .begin_authorization(&session, &redirect_uri, &binding)
                .await
            {
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
                Err(e) => failure_page(&e),
            }
        }
        Ok(false) => match state.engine.connect().session_form(&session).await {
            Ok((name, fields)) => form_page(&name, &fields, None),
            Err(e) => failure_page(&e),
        },
        Err(e) => failure_page(&e),
    }
}

fn form_page(name: &str, fields: &[FieldSpec], error: Option<&str>) -> Response {
    let n = nonce();
    page(
        if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        context! { title => format!("Connect {name}"), fields, error, action => "", nonce => n },
        &n,
    )
}

/// `POST /connect/{token}`: the credential form's submission.
pub async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let token = Secret::new(token);
    let session = match state.engine.connect().open_session(&token).await {
        Ok(s) => s,
        Err(e) => return failure_page(&e),
    };
    crate::telemetry::name_session(&session);
    let values: BTreeMap<String, Secret> =
        form.into_iter().map(|(k, v)| (k, Secret::new(v))).collect();
    match state.engine.connect().complete_session_form(&session, values).await {
        Ok(record) => {
            crate::telemetry::name_connector(&record.connector);
            result_page(&session, Ok(&record))
        }
        Err(e) => match state.engine.connect().session_form(&session).await {
            // A wrong key can be corrected: show the form again with the reason.
            Ok((name, fields)) => form_page(&name, &fields, Some(&failure(&e).1)),
            Err(again) => {
                tracing::warn!(error = %again, "connect form cannot be shown again");
                failure_page(&e)
            }
        },
    }
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
/// and reports to the opener.
pub async fn callback(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let binding = jar.get(BINDING_COOKIE).map(|c| Secret::new(c.value()));
    let params = CallbackParams::from_pairs(query);
    match state.engine.connect().complete_authorization(params, binding.as_ref()).await {
        Ok((session, record)) => {
            crate::telemetry::name_session(&session);
            crate::telemetry::name_connector(&record.connector);
            result_page(&session, Ok(&record))
        }
        Err((Some(session), error)) => {
            crate::telemetry::name_session(&session);
            tracing::info!(error = %error, code = error.code(), "connect flow failed");
            result_page(&session, Err(&error))
        }
        // No session's flow was touched (a forged or replayed callback, another browser): the
        // page says so, tells no opener and does not close, so nobody's flow ends by it.
        Err((None, error)) => {
            tracing::info!(error = %error, "callback refused");
            let (status, message) = failure(&error);
            error_page(status, end_user_words(error.code()).unwrap_or(&message))
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

/// The error page for `error`, with its status and public message.
fn failure_page(error: &EngineError) -> Response {
    let (status, message) = failure(error);
    error_page(status, &message)
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
