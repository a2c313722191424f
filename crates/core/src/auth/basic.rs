//! HTTP Basic authentication, [RFC 7617 §2](https://www.rfc-editor.org/rfc/rfc7617#section-2):
//! `Authorization: Basic base64(username ":" password)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{AuthContext, AuthError, header_value};
use crate::Secret;
use crate::connector::BasicAuth;
use crate::request::OutgoingRequest;

pub(super) fn apply(
    method: &BasicAuth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let (username, password) = super::username_password(&method.username, &method.password, &ctx)?;
    let pair = Secret::new(format!("{}:{}", username.expose(), password.expose()));
    let value = Secret::new(format!("Basic {}", STANDARD.encode(pair.expose())));
    let value = header_value("Authorization", &value)?;
    request.set_sensitive_header(http::header::AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::connector::BasicPart;

    fn req() -> OutgoingRequest {
        OutgoingRequest::new(http::Method::GET, "https://api.example.com/x".parse().unwrap())
    }

    #[test]
    fn rfc7617_example() {
        // RFC 7617 §2: user "Aladdin", password "open sesame".
        let creds = BTreeMap::from([
            ("username".to_string(), Secret::new("Aladdin")),
            ("password".to_string(), Secret::new("open sesame")),
        ]);
        let config = BTreeMap::new();
        let mut r = req();
        apply(
            &BasicAuth::default(),
            &mut r,
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
        .unwrap();
        let h = r.headers.get("authorization").unwrap();
        assert_eq!(h, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(h.is_sensitive());
    }

    #[test]
    fn fixed_password() {
        let creds = BTreeMap::from([("username".to_string(), Secret::new("key123"))]);
        let config = BTreeMap::new();
        let method = BasicAuth {
            password: BasicPart { value: Some("X".into()), ..BasicPart::default() },
            ..BasicAuth::default()
        };
        let mut r = req();
        apply(
            &method,
            &mut r,
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
        .unwrap();
        assert_eq!(r.headers.get("authorization").unwrap(), "Basic a2V5MTIzOlg=");
    }

    #[test]
    fn missing_password_is_an_error() {
        let creds = BTreeMap::from([("username".to_string(), Secret::new("u"))]);
        let config = BTreeMap::new();
        let err = apply(
            &BasicAuth::default(),
            &mut req(),
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
        .unwrap_err();
        assert_eq!(err, AuthError::MissingCredential("password".into()));
    }
}
