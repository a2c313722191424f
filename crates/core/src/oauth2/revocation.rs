//! Token revocation ([RFC 7009](https://www.rfc-editor.org/rfc/rfc7009)): the revocation
//! request (§2.1), with the client authentication the connector's token requests use, and the
//! reading of its answer (§2.2). Pure: the engine sends the request and hands back the answer.

use crate::Secret;
use crate::connector::OAuth2Auth;
use crate::oauth2::Client;
use crate::request::OutgoingRequest;
use url::Url;

/// Which kind of token is revoked: the `token_type_hint` of RFC 7009 §2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `access_token`.
    AccessToken,
    /// `refresh_token` (§2.1: revoking it should also invalidate the access tokens of the
    /// same grant).
    RefreshToken,
}

impl TokenTypeHint {
    /// The hint's value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// The revocation request of RFC 7009 §2.1: a POST of `token` and `token_type_hint` to
/// `endpoint`, authenticating the client as the token requests do (`client_auth`), encoded as
/// the connector's token requests are (`token_request`).
pub fn revocation_request(
    method: &OAuth2Auth,
    endpoint: &Url,
    client: Client<'_>,
    token: &Secret,
    hint: TokenTypeHint,
) -> Result<OutgoingRequest, String> {
    let params = vec![
        ("token".to_string(), token.clone()),
        ("token_type_hint".to_string(), Secret::new(hint.as_str())),
    ];
    super::token::encode_request(method, endpoint, client, params)
}

/// What a revocation endpoint answered (RFC 7009 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationAnswer {
    /// HTTP 200: the token is revoked, or was already invalid (both count as done, §2.2).
    Revoked,
    /// `unsupported_token_type` (§2.2.1): the server does not revoke this kind of token.
    UnsupportedTokenType,
    /// Anything else: an OAuth error code (only `[a-z_]`, at most 40 characters, so that it
    /// is safe to log) and the HTTP status; 503 means "try again later" (§2.2.1).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` code, when the body had one that looks like one.
        code: Option<String>,
    },
}

/// Reads a revocation response.
pub fn parse_revocation_response(status: u16, body: &[u8]) -> RevocationAnswer {
    if status == 200 {
        return RevocationAnswer::Revoked;
    }
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| doc.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .filter(|code| {
            !code.is_empty()
                && code.len() <= 40
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
    match code.as_deref() {
        Some("unsupported_token_type") => RevocationAnswer::UnsupportedTokenType,
        _ => RevocationAnswer::Refused { status, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{AuthMethod, parse_connector};

    fn method(extra: &str) -> OAuth2Auth {
        let src = format!(
            "id: p\nname: P\nbase_url: https://api.p.example\nauth:\n  - type: oauth2\n    authorize_url: https://p.example/authorize\n    token_url: https://p.example/token\n    revocation_url: https://p.example/revoke\n{extra}"
        );
        match parse_connector(&src, "p.yaml").unwrap().auth.remove(0) {
            AuthMethod::OAuth2(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    fn form(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_refresh_token_is_revoked_with_the_client_in_the_body() {
        let m = method("");
        assert_eq!(m.revocation_url.as_deref(), Some("https://p.example/revoke"));
        let secret = Secret::new("s&=");
        let url: Url = "https://p.example/revoke".parse().unwrap();
        let client = Client { id: "cid", secret: Some(&secret), assertion: None };
        let token = Secret::new("rt 1");
        let req =
            revocation_request(&m, &url, client, &token, TokenTypeHint::RefreshToken).unwrap();
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.url, url);
        assert_eq!(req.headers[http::header::CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert_eq!(
            form(&req.body),
            pairs(&[
                ("token", "rt 1"),
                ("token_type_hint", "refresh_token"),
                ("client_id", "cid"),
                ("client_secret", "s&="),
            ])
        );
        assert!(req.headers.get(http::header::AUTHORIZATION).is_none());
    }

    #[test]
    fn an_access_token_is_revoked_with_basic_client_authentication() {
        let m = method("    client_auth: basic\n");
        let secret = Secret::new("sec");
        let url: Url = "https://p.example/revoke".parse().unwrap();
        let client = Client { id: "cid", secret: Some(&secret), assertion: None };
        let token = Secret::new("at");
        let req = revocation_request(&m, &url, client, &token, TokenTypeHint::AccessToken).unwrap();
        assert_eq!(form(&req.body), pairs(&[("token", "at"), ("token_type_hint", "access_token")]));
        // base64("cid:sec")
        assert_eq!(req.headers[http::header::AUTHORIZATION], "Basic Y2lkOnNlYw==");
        assert!(req.headers[http::header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn answers_are_read_as_rfc_7009_says() {
        assert_eq!(parse_revocation_response(200, b""), RevocationAnswer::Revoked);
        assert_eq!(parse_revocation_response(200, b"{\"error\":\"x\"}"), RevocationAnswer::Revoked);
        assert_eq!(
            parse_revocation_response(400, br#"{"error":"unsupported_token_type"}"#),
            RevocationAnswer::UnsupportedTokenType
        );
        assert_eq!(
            parse_revocation_response(401, br#"{"error":"invalid_client"}"#),
            RevocationAnswer::Refused { status: 401, code: Some("invalid_client".into()) }
        );
        assert_eq!(
            parse_revocation_response(503, b"<html>down</html>"),
            RevocationAnswer::Refused { status: 503, code: None }
        );
        // A code that could carry anything else (a token, markup) is not kept.
        assert_eq!(
            parse_revocation_response(400, br#"{"error":"bad token abc.def"}"#),
            RevocationAnswer::Refused { status: 400, code: None }
        );
    }
}
