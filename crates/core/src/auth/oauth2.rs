//! Applying an OAuth 2.0 access token: `Authorization: Bearer <token>`
//! ([RFC 6750 §2.1](https://www.rfc-editor.org/rfc/rfc6750#section-2.1)) by default, or another
//! header, or a query parameter (§2.3), as the connector says.

use super::{AuthContext, AuthError, header_value};
use crate::Secret;
use crate::connector::{KeyLocation, OAuth2Auth, TokenPlacement};
use crate::request::OutgoingRequest;
use crate::template::render_secret;

pub(super) fn apply(
    method: &OAuth2Auth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let token = ctx.credential("access_token")?;
    place_token(&method.apply, "access_token", token, request, ctx)
}

/// Puts a token on a request as `placement` says (shared with self-signed JWTs and sessions);
/// the placement's template sees the token as `{{ <var> }}`.
pub(super) fn place_token(
    placement: &TokenPlacement,
    var: &str,
    token: &Secret,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let value = match &placement.value {
        Some(template) => {
            let mut credentials = ctx.credentials.clone();
            credentials.insert(var.into(), token.clone());
            let scope = crate::template::Scope { credentials: Some(&credentials), ..ctx.scope() };
            render_secret(template, scope).map_err(AuthError::Template)?
        }
        None if matches!(placement.location, KeyLocation::Query | KeyLocation::Cookie) => {
            token.clone()
        }
        None => Secret::new(format!("Bearer {}", token.expose())),
    };
    match placement.location {
        KeyLocation::Query => {
            let name = placement.name.as_deref().unwrap_or(var);
            request.url.query_pairs_mut().append_pair(name, value.expose());
        }
        KeyLocation::Cookie => super::add_cookie(request, placement.name.as_deref(), &value)?,
        KeyLocation::Header | KeyLocation::Body => {
            let name = placement.name.as_deref().unwrap_or("Authorization");
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| AuthError::InvalidHeaderValue(name.to_string()))?;
            let value = header_value(name, &value)?;
            request.set_sensitive_header(header, value);
        }
    }
    Ok(())
}
