//! Bearer tokens, [RFC 6750 §2.1](https://www.rfc-editor.org/rfc/rfc6750#section-2.1):
//! `Authorization: Bearer <token>`.

use super::{AuthContext, AuthError, header_value};
use crate::Secret;
use crate::request::OutgoingRequest;

pub(super) fn apply(request: &mut OutgoingRequest, ctx: AuthContext<'_>) -> Result<(), AuthError> {
    let token = ctx.credential("token")?;
    let value = Secret::new(format!("Bearer {}", token.expose()));
    let value = header_value("Authorization", &value)?;
    request.set_sensitive_header(http::header::AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn sets_bearer_header() {
        let creds = BTreeMap::from([("token".to_string(), Secret::new("mF_9.B5f-4.1JqM"))]);
        let config = BTreeMap::new();
        let mut r = OutgoingRequest::new(http::Method::GET, "https://x.example/".parse().unwrap());
        apply(
            &mut r,
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
        .unwrap();
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer mF_9.B5f-4.1JqM");
    }

    #[test]
    fn newline_in_token_is_refused_without_echo() {
        let creds = BTreeMap::from([("token".to_string(), Secret::new("abc\r\nX-Evil: 1"))]);
        let config = BTreeMap::new();
        let mut r = OutgoingRequest::new(http::Method::GET, "https://x.example/".parse().unwrap());
        let err = apply(
            &mut r,
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
        .unwrap_err();
        assert!(!err.to_string().contains("abc"));
    }
}
