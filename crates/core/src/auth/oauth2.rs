//! Applying an OAuth 2.0 access token: `Authorization: Bearer <token>`
//! ([RFC 6750 §2.1](https://www.rfc-editor.org/rfc/rfc6750#section-2.1)) by default, or another
//! header, or a query parameter (§2.3), as the connector says. Without a `value` template, only
//! the `Authorization` header gets the `Bearer ` prefix; another header gets the bare token.

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

/// Whether the token goes in the `Authorization` header (the default).
fn is_authorization(placement: &TokenPlacement) -> bool {
    matches!(placement.location, KeyLocation::Header | KeyLocation::Body)
        && placement.name.as_deref().is_none_or(|n| n.eq_ignore_ascii_case("authorization"))
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
        // `Authorization` (the default header) gets `Bearer <token>`; any other header, the
        // query and a cookie get the bare token, as an API key does.
        None if is_authorization(placement) => Secret::new(format!("Bearer {}", token.expose())),
        None => token.clone(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn placed(apply: &str) -> OutgoingRequest {
        let placement: TokenPlacement = serde_saphyr::from_str(apply).unwrap();
        let credentials = BTreeMap::from([("access_token".to_string(), Secret::new("tok-1"))]);
        let config = BTreeMap::new();
        let ctx = AuthContext {
            credentials: &credentials,
            config: &config,
            now: std::time::SystemTime::UNIX_EPOCH,
            nonce: "n",
        };
        let mut request =
            OutgoingRequest::new(http::Method::GET, "https://api.example/v1".parse().unwrap());
        place_token(&placement, "access_token", &credentials["access_token"], &mut request, ctx)
            .unwrap();
        request
    }

    #[test]
    fn the_authorization_header_gets_bearer_and_any_other_header_the_bare_token() {
        assert_eq!(placed("{}").headers["authorization"], "Bearer tok-1");
        assert_eq!(placed("{in: header}").headers["authorization"], "Bearer tok-1");
        assert_eq!(
            placed("{in: header, name: authorization}").headers["authorization"],
            "Bearer tok-1"
        );
        let custom = placed("{in: header, name: X-Session}");
        assert_eq!(custom.headers["x-session"], "tok-1");
        assert!(custom.headers.get("authorization").is_none());
        let explicit = placed("{in: header, name: X-Session, value: 'Bearer {{ access_token }}'}");
        assert_eq!(explicit.headers["x-session"], "Bearer tok-1");
        assert_eq!(placed("{in: query, name: t}").url.query(), Some("t=tok-1"));
    }
}
