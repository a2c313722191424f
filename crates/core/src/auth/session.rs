//! Session logins: the login request built from a connection's credentials, the session token
//! read from its answer, and the token applied to requests. The engine sends the login and
//! decides when to renew it.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use url::Url;

use super::{AuthContext, AuthError};
use crate::Secret;
use crate::connector::{BodyFormat, SessionAuth, SessionTokenFrom};
use crate::oauth2::lookup;
use crate::request::OutgoingRequest;
use crate::template::render_secret;

/// The credential key the session token is stored under (and the template variable name).
pub const SESSION_TOKEN: &str = "session_token";

pub(super) fn apply(
    method: &SessionAuth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let token = ctx.credential(SESSION_TOKEN)?;
    super::oauth2::place_token(&method.apply, SESSION_TOKEN, token, request, ctx)
}

/// The login request: `login.url` (absolute, or a path under `base`), its headers and its body,
/// every string rendered over the connection's credentials and config.
pub fn login_request(
    method: &SessionAuth,
    base: &Url,
    ctx: AuthContext<'_>,
) -> Result<OutgoingRequest, AuthError> {
    let render = |field: &str, template: &str| {
        render_secret(template, ctx.scope())
            .map_err(|m| AuthError::Template(format!("{field}: {m}")))
    };
    let login = &method.login;
    let http_method =
        Method::from_bytes(login.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            AuthError::Template(format!("login.method `{}` is not a method", login.method))
        })?;
    let url = render("login.url", &login.url)?;
    let url = if url.expose().starts_with("http://") || url.expose().starts_with("https://") {
        Url::parse(url.expose())
    } else {
        let mut base = base.clone();
        let path = format!(
            "{}/{}",
            base.path().trim_end_matches('/'),
            url.expose().trim_start_matches('/')
        );
        base.set_path(&path);
        Ok(base)
    }
    .map_err(|e| AuthError::Template(format!("login.url is not a URL: {e}")))?;
    let mut request = OutgoingRequest::new(http_method, url);
    for (name, template) in &login.headers {
        let value = render(&format!("login.headers.{name}"), template)?;
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| AuthError::InvalidHeaderValue(name.clone()))?;
        request.set_sensitive_header(header, super::header_value(name, &value)?);
    }
    if let Some(body) = &login.body {
        let mut rendered = serde_json::Map::new();
        for (key, value) in body {
            rendered
                .insert(key.clone(), render_value(&format!("login.body.{key}"), value, &render)?);
        }
        let (bytes, content_type) = match login.format {
            BodyFormat::Json => (
                serde_json::to_vec(&rendered).map_err(|e| AuthError::Body(e.to_string()))?,
                "application/json",
            ),
            BodyFormat::Form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (key, value) in &rendered {
                    match value {
                        serde_json::Value::String(text) => form.append_pair(key, text),
                        other => form.append_pair(key, &other.to_string()),
                    };
                }
                (form.finish().into_bytes(), "application/x-www-form-urlencoded")
            }
        };
        request.body = bytes.into();
        if !request.headers.contains_key(http::header::CONTENT_TYPE) {
            request
                .headers
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
    }
    Ok(request)
}

fn render_value(
    field: &str,
    value: &serde_json::Value,
    render: &dyn Fn(&str, &str) -> Result<Secret, AuthError>,
) -> Result<serde_json::Value, AuthError> {
    Ok(match value {
        serde_json::Value::String(template) => {
            serde_json::Value::String(render(field, template)?.expose().to_string())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items.iter().map(|v| render_value(field, v, render)).collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(&format!("{field}.{k}"), v, render)?)))
                .collect::<Result<_, AuthError>>()?,
        ),
        other => other.clone(),
    })
}

/// A session a login answered with.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token to apply.
    pub token: Secret,
    /// How long it lives, when the connector or the response says.
    pub lifetime: Option<Duration>,
}

/// Why a login's answer holds no usable session. Messages never hold a value of the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The login was refused (a status outside 2xx).
    #[error("the login was refused with HTTP {0}")]
    Refused(u16),
    /// The answer has no token where the connector says it is.
    #[error("the login response has no session token in {0}")]
    NoToken(String),
}

impl SessionError {
    /// Whether the credentials themselves were refused (400–403), as opposed to a passing fault.
    pub fn is_refused_credentials(&self) -> bool {
        matches!(self, SessionError::Refused(400..=403))
    }
}

/// Reads the session from a login response.
pub fn read_session(
    method: &SessionAuth,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Session, SessionError> {
    if !(200..300).contains(&status) {
        return Err(SessionError::Refused(status));
    }
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let name = method.token.name.as_deref();
    let token = match method.token.source {
        SessionTokenFrom::Json => {
            let path = name.unwrap_or("token");
            json.as_ref()
                .and_then(|doc| lookup(doc, path))
                .and_then(text)
                .ok_or_else(|| SessionError::NoToken(format!("the JSON field `{path}`")))?
        }
        SessionTokenFrom::Header => {
            let header = name.unwrap_or("Authorization");
            headers
                .get(header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| SessionError::NoToken(format!("the header `{header}`")))?
        }
        SessionTokenFrom::Cookie => {
            let cookies: Vec<(String, String)> = headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let found = match name {
                Some(name) => cookies.into_iter().find(|(k, _)| k == name).map(|(_, v)| v),
                None if cookies.is_empty() => None,
                None => Some(
                    cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "),
                ),
            };
            found.ok_or_else(|| {
                SessionError::NoToken(match name {
                    Some(name) => format!("the cookie `{name}`"),
                    None => "its cookies".into(),
                })
            })?
        }
    };
    if token.is_empty() {
        return Err(SessionError::NoToken("an empty value".into()));
    }
    let lifetime = method.lifetime.as_ref().and_then(|lifetime| {
        let from_field = lifetime.field.as_deref().and_then(|path| {
            let value = lookup(json.as_ref()?, path)?;
            value.as_u64().or_else(|| value.as_str()?.trim().parse().ok())
        });
        from_field.or(lifetime.seconds).map(Duration::from_secs)
    });
    Ok(Session { token: Secret::new(token), lifetime })
}

fn text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
