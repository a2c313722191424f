//! Console sign-in through OpenID Connect (`--console-oidc-issuer`): `/console/oidc/start`
//! sends the browser to the issuer with `state`, `nonce` and PKCE, kept meanwhile in an
//! HttpOnly cookie scoped to `/console/oidc` for ten minutes (SameSite=Lax, since the issuer's
//! redirect back is a cross-site navigation); `/console/oidc/callback` checks them, verifies the
//! ID token and the allowed list ([`latchkey_engine::OperatorOidc`]) and starts a session as
//! `oidc:<sub>`. It then lands on the console through a same-site refresh, so the
//! SameSite=Strict session cookie goes with the first request.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_engine::PendingSignIn;

use super::Page;
use super::session::{ClientAddress, expired, sign_in_form, start};
use crate::AppState;

/// The cookie that carries a sign-in's `state`, `nonce` and PKCE verifier.
const PENDING_COOKIE: &str = "latchkey_console_oidc";
const PENDING_PATH: &str = "/console/oidc";

fn redirect_uri(state: &AppState) -> String {
    format!("{}/console/oidc/callback", state.public_url.as_str().trim_end_matches('/'))
}

fn not_configured(state: &AppState) -> Response {
    sign_in_form(state, Some("Single sign-on is not configured here."), StatusCode::NOT_FOUND)
}

/// `GET /console/oidc/start`.
pub async fn start_sign_in(State(state): State<AppState>) -> Response {
    let Some(config) = state.console_oidc.clone() else { return not_configured(&state) };
    match state.engine.begin_operator_sign_in(&config, &redirect_uri(&state)).await {
        Ok((url, pending)) => {
            let cookie = Cookie::build((PENDING_COOKIE, pending.to_cookie()))
                .path(PENDING_PATH)
                .http_only(true)
                .secure(state.public_url.scheme() == "https")
                .same_site(SameSite::Lax)
                .max_age(time::Duration::minutes(10))
                .build();
            (CookieJar::new().add(cookie), Redirect::to(url.as_str())).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "console OpenID Connect sign-in could not start");
            sign_in_form(&state, Some(&e.to_string()), StatusCode::BAD_GATEWAY)
        }
    }
}

/// `GET /console/oidc/callback`.
pub async fn callback(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    jar: CookieJar,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(config) = state.console_oidc.clone() else { return not_configured(&state) };
    let cleared = expired(PENDING_COOKIE, PENDING_PATH);
    let Some(pending) = jar.get(PENDING_COOKIE).and_then(|c| PendingSignIn::from_cookie(c.value()))
    else {
        let page = sign_in_form(
            &state,
            Some("This sign-in was not started in this browser, or took too long; start again."),
            StatusCode::BAD_REQUEST,
        );
        return (CookieJar::new().add(cleared), page).into_response();
    };
    let finished = state
        .engine
        .finish_operator_sign_in(&config, &pending, &query, &redirect_uri(&state))
        .await;
    let operator = match finished {
        Ok(operator) => operator,
        Err(e) => {
            tracing::warn!(error = %e, "console OpenID Connect sign-in refused");
            let page = sign_in_form(&state, Some(&e.to_string()), StatusCode::FORBIDDEN);
            return (CookieJar::new().add(cleared), page).into_response();
        }
    };
    let name = operator
        .email
        .clone()
        .or(operator.name.clone())
        .unwrap_or_else(|| operator.subject.clone());
    match start(&state, address, format!("oidc:{}", operator.subject), name, None).await {
        Ok(jar) => {
            let landing = Page::new("landing.html", minijinja::context! {}).render_anonymous();
            (jar.add(cleared), landing).into_response()
        }
        Err(response) => response,
    }
}
