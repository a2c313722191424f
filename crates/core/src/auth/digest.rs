//! HTTP Digest, [RFC 7616](https://www.rfc-editor.org/rfc/rfc7616), through the `digest_auth`
//! crate: MD5, SHA-256, SHA-512-256 and their `-sess` variants, `qop=auth` and `auth-int`.
//! Digest answers a challenge, so the engine sends first, then calls [`respond`] with the
//! server's `WWW-Authenticate` and keeps the [`Challenge`] to count nonces on later requests.

use super::{AuthContext, AuthError};
use crate::Secret;
use crate::connector::DigestAuth;
use crate::request::OutgoingRequest;

/// A server's Digest challenge, with its nonce count.
#[derive(Debug, Clone)]
pub struct Challenge(digest_auth::WwwAuthenticateHeader);

impl Challenge {
    /// Parses a `WWW-Authenticate: Digest …` value. A malformed or non-Digest challenge is an
    /// error that quotes nothing from the header.
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        digest_auth::parse(header)
            .map(Self)
            .map_err(|e| AuthError::Signing(format!("malformed Digest challenge: {}", kind(&e))))
    }

    /// Whether the server said the nonce was merely stale (retry with the new one).
    pub fn is_stale(&self) -> bool {
        self.0.stale
    }

    /// Requests answered with this nonce so far.
    pub fn nonce_count(&self) -> u32 {
        self.0.nc
    }
}

fn kind(err: &digest_auth::Error) -> &'static str {
    // The crate's own messages quote the header; these do not.
    match err {
        digest_auth::Error::BadCharset(_) => "unsupported charset",
        digest_auth::Error::BadQop(_) | digest_auth::Error::BadQopOptions(_) => "unsupported qop",
        digest_auth::Error::MissingRequired(_, _) => "a required parameter is missing",
        digest_auth::Error::InvalidHeaderSyntax(_) => "invalid syntax",
        digest_auth::Error::UnknownAlgorithm(_) => "unknown algorithm",
        digest_auth::Error::NumParseError => "a number does not parse",
    }
}

/// Answers `challenge` for `request`: sets `Authorization: Digest …` and counts the nonce.
/// `cnonce` is for test vectors; `None` draws a random one.
pub fn respond(
    method: &DigestAuth,
    challenge: &mut Challenge,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
    cnonce: Option<&str>,
) -> Result<(), AuthError> {
    let (username, password) = super::username_password(&method.username, &method.password, &ctx)?;
    let uri = match request.url.query() {
        Some(query) => format!("{}?{query}", request.url.path()),
        None => request.url.path().to_string(),
    };
    // `qop=auth` where offered (what servers support best); `auth-int`, which signs the body,
    // when it is the only choice.
    let offers_auth = challenge.0.qop.as_ref().is_none_or(|q| q.contains(&digest_auth::Qop::AUTH));
    let body = (!offers_auth).then_some(&request.body[..]);
    let mut context = digest_auth::AuthContext::new_with_method(
        username.expose(),
        password.expose(),
        uri,
        body,
        digest_auth::HttpMethod::from(request.method.as_str().to_string()),
    );
    if let Some(cnonce) = cnonce {
        context.set_custom_cnonce(cnonce.to_string());
    }
    let answer = challenge.0.respond(&context).map_err(|e| {
        AuthError::Signing(format!("cannot answer the Digest challenge: {}", kind(&e)))
    })?;
    let value = Secret::new(answer.to_header_string());
    let value = super::header_value("Authorization", &value)?;
    request.set_sensitive_header(http::header::AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    #[test]
    fn rfc7616_section_3_9_1() {
        let creds = BTreeMap::from([
            ("username".to_string(), Secret::new("Mufasa")),
            ("password".to_string(), Secret::new("Circle of Life")),
        ]);
        let config = BTreeMap::new();
        let ctx = AuthContext {
            credentials: &creds,
            config: &config,
            now: std::time::SystemTime::UNIX_EPOCH,
            nonce: "n",
        };
        for (algorithm, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let header = format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            );
            let mut challenge = Challenge::parse(&header).unwrap();
            let mut request = OutgoingRequest::new(
                http::Method::GET,
                "http://www.example.org/dir/index.html".parse().unwrap(),
            );
            respond(
                &DigestAuth::default(),
                &mut challenge,
                &mut request,
                ctx,
                Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            )
            .unwrap();
            let auth = request.headers["authorization"].to_str().unwrap().to_string();
            assert!(auth.contains(&format!("response=\"{expected}\"")), "{algorithm}: {auth}");
            assert!(auth.contains("nc=00000001"), "{auth}");
            assert!(auth.contains(r#"uri="/dir/index.html""#), "{auth}");
            assert_eq!(challenge.nonce_count(), 1);
        }
    }

    #[test]
    fn malformed_challenges_are_clear_errors() {
        for bad in [
            "Basic realm=\"x\"",
            "Digest",
            "Digest realm=\"x\"",
            "Digest nonce=\"n\", algorithm=ROT13, realm=\"r\"",
            "",
        ] {
            let err = Challenge::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("malformed Digest challenge"), "{bad}: {err}");
        }
    }
}
