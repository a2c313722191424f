//! The pure auth strategies: each takes a request and a connection's credentials and changes the
//! request. No I/O; time and randomness come in through [`AuthContext`].
//!
//! Credentials are applied in two steps around the connector's `before_action` hook:
//! [`place`] puts keys, tokens and Basic credentials on the request before the hook, and
//! [`sign`] signs the final request after it (OAuth 1.0a, SigV4, per-request JWTs).

mod api_key;
pub mod aws_sigv4;
mod basic;
mod bearer;
pub mod digest;
pub mod jwt;
pub mod oauth1;
pub(crate) mod oauth2;
pub mod session;

use std::collections::BTreeMap;

use crate::Secret;
use crate::connector::{AuthMethod, compile_pattern};
use crate::request::OutgoingRequest;

/// A strategy could not apply the credentials. Messages never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A credential the method needs is not stored.
    #[error("credential `{0}` is missing")]
    MissingCredential(String),
    /// A template in the connector failed.
    #[error("{0}")]
    Template(String),
    /// A rendered value cannot be a header value (e.g. it holds a newline).
    #[error("the value for header `{0}` is not a valid header value")]
    InvalidHeaderValue(String),
    /// The key cannot be placed in this body.
    #[error("{0}")]
    Body(String),
    /// A signature could not be computed (bad key format, bad parameters).
    #[error("{0}")]
    Signing(String),
}

/// What a strategy reads besides the request.
#[derive(Debug, Clone, Copy)]
pub struct AuthContext<'a> {
    /// The connection's credentials.
    pub credentials: &'a BTreeMap<String, Secret>,
    /// The connection's config.
    pub config: &'a BTreeMap<String, String>,
    /// The time signatures are made at.
    pub now: std::time::SystemTime,
    /// A fresh random value for schemes that need a nonce (OAuth 1.0a).
    pub nonce: &'a str,
}

impl<'a> AuthContext<'a> {
    fn credential(&self, key: &str) -> Result<&'a Secret, AuthError> {
        self.credentials.get(key).ok_or_else(|| AuthError::MissingCredential(key.to_string()))
    }

    fn scope(&self) -> crate::template::Scope<'a> {
        crate::template::Scope {
            credentials: Some(self.credentials),
            config: Some(self.config),
            response: None,
        }
    }
}

/// Applies `method` to `request`: [`place`], then [`sign`]. The engine runs the connector's
/// `before_action` hook between the two.
pub fn apply(
    method: &AuthMethod,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    place(method, request, ctx)?;
    sign(method, request, ctx)
}

/// Puts the credentials of a method that does not sign on `request`: an API key, a bearer or
/// access token, Basic credentials, a session token. Signing methods change nothing here.
///
/// This runs before the connector's `before_action` hook, so a script sees the credentials in
/// place and has the last word on them, as in Cyclr.
pub fn place(
    method: &AuthMethod,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    match method {
        AuthMethod::None(_) => Ok(()),
        AuthMethod::Basic(m) => basic::apply(m, request, ctx),
        AuthMethod::ApiKey(m) => api_key::apply(m, request, ctx),
        AuthMethod::Bearer(_) => bearer::apply(request, ctx),
        AuthMethod::OAuth2(m) => oauth2::apply(m, request, ctx),
        // The connector's `before_action` script applies it.
        AuthMethod::Custom(_) => Ok(()),
        AuthMethod::Session(m) => session::apply(m, request, ctx),
        AuthMethod::AwsSigV4(_)
        | AuthMethod::Digest(_)
        | AuthMethod::OAuth1(_)
        | AuthMethod::Jwt(_) => Ok(()),
    }
}

/// Signs the final request for a method whose credential is a signature over it (OAuth 1.0a,
/// AWS SigV4, a JWT signed per request). Runs after the `before_action` hook, so the signature
/// covers what the script changed. Other methods change nothing here.
pub fn sign(
    method: &AuthMethod,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    match method {
        AuthMethod::AwsSigV4(m) => aws_sigv4::apply(m, request, ctx),
        // Digest answers a challenge: the engine calls `digest::respond` after the first 401.
        AuthMethod::Digest(_) => Ok(()),
        AuthMethod::OAuth1(m) => oauth1::apply(m, request, ctx),
        AuthMethod::Jwt(m) => jwt::apply(m, request, ctx),
        AuthMethod::None(_)
        | AuthMethod::Basic(_)
        | AuthMethod::ApiKey(_)
        | AuthMethod::Bearer(_)
        | AuthMethod::OAuth2(_)
        | AuthMethod::Custom(_)
        | AuthMethod::Session(_) => Ok(()),
    }
}

/// What scripts see as `method_auth_value`: the API key, token, access token or session token
/// the method applies, or `None` for methods without a single such value.
pub fn auth_value(method: &AuthMethod, ctx: AuthContext<'_>) -> Result<Option<Secret>, AuthError> {
    let stored = |key: &str| ctx.credentials.get(key).cloned();
    Ok(match method {
        AuthMethod::ApiKey(m) => m.fields.first().and_then(|f| stored(&f.key)),
        AuthMethod::Bearer(_) => stored("token"),
        AuthMethod::OAuth2(_) => stored("access_token"),
        AuthMethod::Session(_) => stored(session::SESSION_TOKEN),
        AuthMethod::Custom(m) => match &m.auth_value {
            Some(template) => Some(
                crate::template::render_secret(template, ctx.scope())
                    .map_err(|e| AuthError::Template(format!("auth_value: {e}")))?,
            ),
            None => m.fields.first().and_then(|f| stored(&f.key)),
        },
        AuthMethod::OAuth1(_) => stored("token"),
        AuthMethod::None(_)
        | AuthMethod::Basic(_)
        | AuthMethod::AwsSigV4(_)
        | AuthMethod::Digest(_)
        | AuthMethod::Jwt(_) => None,
    })
}

/// Adds `name=value` (or `value` alone, already `a=b; c=d`, when there is no name) to the
/// request's `Cookie` header.
fn add_cookie(
    request: &mut OutgoingRequest,
    name: Option<&str>,
    value: &Secret,
) -> Result<(), AuthError> {
    let pair = match name {
        Some(name) => format!("{name}={}", value.expose()),
        None => value.expose().to_string(),
    };
    let joined = match request.headers.get(http::header::COOKIE).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}; {pair}"),
        _ => pair,
    };
    let value = header_value("Cookie", &Secret::new(joined))?;
    request.set_sensitive_header(http::header::COOKIE, value);
    Ok(())
}

/// Checks credentials a user supplied against the method's fields: required ones present,
/// patterns matched, no unknown keys. Errors name the field, never the value.
pub fn check_credentials(
    method: &AuthMethod,
    credentials: &BTreeMap<String, Secret>,
) -> Result<(), String> {
    let fields = method.fields();
    for key in credentials.keys() {
        if !fields.iter().any(|f| &f.key == key) {
            return Err(format!("`{key}` is not a field of auth method `{}`", method.id()));
        }
    }
    for field in &fields {
        match credentials.get(&field.key) {
            None if field.optional => {}
            Some(v) if v.is_empty() && field.optional => {}
            None => return Err(format!("`{}` ({}) is required", field.key, field.label)),
            Some(v) if v.is_empty() => {
                return Err(format!("`{}` ({}) is required", field.key, field.label));
            }
            Some(value) => {
                if let Some(pattern) = &field.pattern {
                    let re = compile_pattern(pattern)?;
                    if !re.is_match(value.expose()) {
                        return Err(format!("`{}` does not match the expected format", field.key));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The username and password of a `basic` or `digest` method: a fixed value where the connector
/// gives one, else the connection's credential.
fn username_password(
    username: &crate::connector::BasicPart,
    password: &crate::connector::BasicPart,
    ctx: &AuthContext<'_>,
) -> Result<(Secret, Secret), AuthError> {
    let part = |part: &crate::connector::BasicPart, key: &str| match &part.value {
        Some(value) => Ok(Secret::new(value.as_str())),
        None => ctx.credential(key).cloned(),
    };
    Ok((part(username, "username")?, part(password, "password")?))
}

fn header_value(name: &str, value: &Secret) -> Result<http::HeaderValue, AuthError> {
    http::HeaderValue::from_str(value.expose())
        .map_err(|_| AuthError::InvalidHeaderValue(name.to_string()))
}
