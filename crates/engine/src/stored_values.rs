//! What a connection may store, checked before it is stored: no control bytes in values that end
//! up in headers or URLs (a PEM key the auth type signs with may hold line breaks), and config
//! values that every URL template of the connector renders safely (see
//! [`template::render_url`]).

use std::collections::BTreeMap;

use latchkey_core::connector::Grant;
use latchkey_core::template::{self, Scope, UrlTemplateError};
use latchkey_core::{AuthMethod, Connector, Secret};

use crate::EngineError;

/// Whether credential `field` of `method` is a key the auth type signs with (PEM), which may
/// hold line breaks: `private_key` of a JWT method, of RSA-SHA1 OAuth 1 and of the OAuth 2
/// JWT-bearer grant. Every other credential can be placed in a header, a URL or a body.
pub fn is_multiline_key(method: &AuthMethod, field: &str) -> bool {
    field == "private_key"
        && match method {
            AuthMethod::Jwt(_) | AuthMethod::OAuth1(_) => true,
            AuthMethod::OAuth2(m) => m.grant == Grant::JwtBearer,
            _ => false,
        }
}

/// The control character a value holds that its use cannot carry: any C0 control or DEL; in a
/// multiline key, CR, LF and TAB are allowed.
fn forbidden_control(value: &str, multiline: bool) -> Option<char> {
    value.chars().find(|&c| {
        (c.is_ascii_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
            || matches!(c, '\u{80}'..='\u{9f}')
    })
}

fn describe(c: char) -> String {
    match c {
        '\r' => "a carriage return (CR)".into(),
        '\n' => "a line feed (LF)".into(),
        '\0' => "a NUL byte".into(),
        c => format!("a control character (U+{:04X})", u32::from(c)),
    }
}

/// Refuses credentials holding control bytes, naming the field (never the value).
pub fn check_credential_bytes(
    method: &AuthMethod,
    credentials: &BTreeMap<String, Secret>,
) -> Result<(), EngineError> {
    for (field, value) in credentials {
        if let Some(c) = forbidden_control(value.expose(), is_multiline_key(method, field)) {
            return Err(EngineError::invalid(
                format!("credentials.{field}"),
                format!(
                    "credential `{field}` holds {}; only a PEM private key the auth method signs \
                     with may hold line breaks",
                    describe(c)
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses config values holding control bytes, or that a URL template of the connector (its
/// base URL, allowed hosts, OAuth endpoints) cannot hold safely, naming the key.
pub fn check_config_values(
    connector: &Connector,
    config: &BTreeMap<String, String>,
) -> Result<(), EngineError> {
    for (key, value) in config {
        if let Some(c) = forbidden_control(value, false) {
            return Err(EngineError::invalid(
                format!("config.{key}"),
                format!("config `{key}` holds {}", describe(c)),
            ));
        }
    }
    let scope = Scope { credentials: None, config: Some(config), response: None };
    let unsafe_value = |field: &str, result: Result<String, UrlTemplateError>| match result {
        Err(err @ UrlTemplateError::UnsafeValue { .. }) => {
            let key = match &err {
                UrlTemplateError::UnsafeValue { key, .. } if key != "?" => format!("config.{key}"),
                _ => "config".to_string(),
            };
            Err(EngineError::invalid(key, format!("{err} (in {field})")))
        }
        // A template that fails for other reasons is the connector's problem, reported at use.
        _ => Ok(()),
    };
    unsafe_value("base_url", template::check_url(&connector.base_url, scope))?;
    for host in &connector.allowed_hosts {
        unsafe_value("allowed_hosts", template::render_host(host, scope))?;
    }
    for method in &connector.auth {
        let urls: Vec<(&str, &Option<String>)> = match method {
            AuthMethod::OAuth2(m) => vec![
                ("base_url", &m.base_url),
                ("issuer", &m.issuer),
                ("authorize_url", &m.authorize_url),
                ("token_url", &m.token_url),
                ("device_authorization_url", &m.device_authorization_url),
                ("refresh_url", &m.refresh_url),
            ],
            AuthMethod::OAuth1(m) => vec![
                ("request_token_url", &m.request_token_url),
                ("authorize_url", &m.authorize_url),
                ("access_token_url", &m.access_token_url),
            ],
            _ => Vec::new(),
        };
        for (field, url) in urls {
            if let Some(url) = url {
                unsafe_value(field, template::check_url(url, scope))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(yaml: &str) -> Connector {
        latchkey_core::connector::parse_connector(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn control_bytes_in_header_placed_credentials_are_refused_by_field() {
        let c = connector("id: t\nname: T\nbase_url: https://a.example\nauth:\n  - type: bearer\n");
        for bad in ["canary\r\nX-Evil: 1", "canary\n", "canary\0", "canary\u{7f}"] {
            let creds = BTreeMap::from([("token".to_owned(), Secret::new(bad))]);
            let err = check_credential_bytes(&c.auth[0], &creds).unwrap_err().to_string();
            assert!(err.contains("`token`") && !err.contains("canary"), "{err}");
        }
        let ok = BTreeMap::from([("token".to_owned(), Secret::new("tok en\u{e9}"))]);
        check_credential_bytes(&c.auth[0], &ok).unwrap();
    }

    #[test]
    fn a_pem_key_may_hold_line_breaks_but_not_nul() {
        let c = connector(
            "id: t\nname: T\nbase_url: https://a.example\nauth:\n  - type: jwt\n    algorithm: RS256\n",
        );
        let pem = "-----BEGIN PRIVATE KEY-----\r\nMIIB\n-----END PRIVATE KEY-----\n";
        let creds = BTreeMap::from([("private_key".to_owned(), Secret::new(pem))]);
        check_credential_bytes(&c.auth[0], &creds).unwrap();
        let creds = BTreeMap::from([("private_key".to_owned(), Secret::new("a\0b"))]);
        assert!(check_credential_bytes(&c.auth[0], &creds).is_err());
    }

    #[test]
    fn config_values_are_checked_against_every_url_template() {
        let c = connector(
            "id: t\nname: T\nbase_url: \"https://{{ config.sub }}.example.com/v1/{{ config.team }}\"\n\
             config:\n  - { key: sub }\n  - { key: team }\nauth:\n  - type: bearer\n",
        );
        let config = |sub: &str, team: &str| {
            BTreeMap::from([
                ("sub".to_owned(), sub.to_owned()),
                ("team".to_owned(), team.to_owned()),
            ])
        };
        check_config_values(&c, &config("eu", "a b")).unwrap();
        let err = check_config_values(&c, &config("eu", "a/b")).unwrap_err().to_string();
        assert!(err.contains("config `team`"), "{err}");
        let err = check_config_values(&c, &config("eu", "..")).unwrap_err().to_string();
        assert!(err.contains("config `team`") && err.contains("base_url"), "{err}");
        let err = check_config_values(&c, &config("evil.com/x", "t")).unwrap_err().to_string();
        assert!(err.contains("config `sub`"), "{err}");
        let err = check_config_values(&c, &config("eu\r\n", "t")).unwrap_err().to_string();
        assert!(err.contains("config `sub`") && err.contains("CR"), "{err}");
    }
}
