//! Token requests ([RFC 6749 §4.1.3, §4.3.2, §4.4.2, §6](https://www.rfc-editor.org/rfc/rfc6749))
//! and the parsing of token responses (§5.1, §5.2), with the quirks a connector can declare:
//! JSON or form requests, client authentication in the body or as Basic, nested token fields,
//! form-encoded responses, `expires_in` as a string or in milliseconds, and HTTP 200 with an
//! `error` body.
//!
//! Hand-written rather than through the `oauth2` crate: its typed flows cannot express these
//! quirks, and here every request is a value a test can compare.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue, Method};
use url::Url;

use crate::Secret;
use crate::connector::{BodyFormat, ClientAuth, LifetimeUnit, OAuth2Auth, TokenResponseFields};
use crate::request::OutgoingRequest;

/// The client's identity at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// Client id.
    pub id: &'a str,
    /// Client secret; absent for public clients. For `private_key_jwt`, the PEM private key.
    pub secret: Option<&'a Secret>,
    /// The signed client assertion, for `private_key_jwt` (see [`client_assertion`]).
    pub assertion: Option<&'a Secret>,
}

/// The client assertion of RFC 7523 §2.2 / §3: `iss` = `sub` = client id, `aud` = the token
/// endpoint, a unique `jti`, valid for 60 seconds from `now`.
pub fn client_assertion(
    client_id: &str,
    audience: &str,
    key_pem: &Secret,
    algorithm: &str,
    now: std::time::SystemTime,
    jti: &str,
) -> Result<Secret, String> {
    let (alg, key) = signing_key(algorithm, key_pem)
        .map_err(|m| format!("the integration's client secret: {m}"))?;
    let iat = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience, "jti": jti, "iat": iat, "exp": iat + 60,
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key)
        .map(Secret::new)
        .map_err(|e| format!("cannot sign the client assertion: {:?}", e.kind()))
}

/// A private key (PEM) for an asymmetric JWT algorithm.
fn signing_key(
    algorithm: &str,
    key_pem: &Secret,
) -> Result<(jsonwebtoken::Algorithm, jsonwebtoken::EncodingKey), String> {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let alg: Algorithm =
        algorithm.parse().map_err(|_| format!("unknown JWT algorithm `{algorithm}`"))?;
    // Keys pasted from a JSON key file keep their `\n` escapes.
    let text = key_pem.expose().replace("\\n", "\n");
    let pem = text.as_bytes();
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => return Err(format!("`{algorithm}` is not an asymmetric signing algorithm")),
    }
    .map_err(|_| format!("not a PEM private key for {algorithm}"))?;
    Ok((alg, key))
}

/// The assertion of the JWT bearer grant (RFC 7523 §2.1), signed with the connection's
/// `private_key`; see [`crate::connector::JwtAssertion`] for the claims.
pub fn jwt_bearer_assertion(
    method: &OAuth2Auth,
    audience: &str,
    scopes: &[String],
    scope: crate::template::Scope<'_>,
    now: std::time::SystemTime,
    jti: &str,
) -> Result<Secret, String> {
    let settings = method.assertion.clone().unwrap_or_default();
    let credentials = scope.credentials.ok_or("no credentials")?;
    let key = credentials.get("private_key").ok_or("credential `private_key` is missing")?;
    let (alg, key) = signing_key(&settings.algorithm, key)
        .map_err(|m| format!("credential `private_key`: {m}"))?;
    let iat = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut claims = serde_json::Map::new();
    if let Some(issuer) = credentials.get("client_email") {
        claims.insert("iss".into(), issuer.expose().into());
    }
    if let Some(subject) = credentials.get("subject").filter(|s| !s.is_empty()) {
        claims.insert("sub".into(), subject.expose().into());
    }
    claims.insert("aud".into(), audience.into());
    if !scopes.is_empty() {
        claims.insert("scope".into(), scopes.join(&method.scope_separator).into());
    }
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), (iat + settings.lifetime).into());
    claims.insert("jti".into(), jti.into());
    for (name, template) in &settings.claims {
        let value = crate::template::render_secret(template, scope)
            .map_err(|m| format!("assertion.claims.{name}: {m}"))?;
        claims.insert(name.clone(), value.expose().into());
    }
    if !claims.contains_key("iss") {
        return Err("the assertion has no issuer: give `client_email` or an `iss` claim".into());
    }
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = credentials.get("private_key_id").map(|k| k.expose().to_string());
    jsonwebtoken::encode(&header, &serde_json::Value::Object(claims), &key)
        .map(Secret::new)
        .map_err(|e| format!("cannot sign the assertion: {:?}", e.kind()))
}

/// The grant a token request carries.
#[derive(Debug, Clone, Copy)]
pub enum TokenGrant<'a> {
    /// Exchange an authorization code (§4.1.3).
    AuthorizationCode {
        /// The code from the callback.
        code: &'a Secret,
        /// The same redirect URI as in the authorization request.
        redirect_uri: &'a str,
        /// The PKCE verifier, when PKCE is on.
        code_verifier: Option<&'a Secret>,
    },
    /// Client credentials (§4.4.2).
    ClientCredentials {
        /// Scopes to request.
        scopes: &'a [String],
    },
    /// Resource owner password (§4.3.2).
    Password {
        /// The user's name.
        username: &'a Secret,
        /// The user's password.
        password: &'a Secret,
        /// Scopes to request.
        scopes: &'a [String],
    },
    /// Device access token request (RFC 8628 §3.4).
    DeviceCode {
        /// The `device_code` from the device authorization response.
        device_code: &'a Secret,
    },
    /// JWT bearer grant (RFC 7523 §2.1).
    JwtBearer {
        /// The signed assertion (see [`jwt_bearer_assertion`]).
        assertion: &'a Secret,
    },
    /// Refresh (§6).
    RefreshToken {
        /// The refresh token.
        refresh_token: &'a Secret,
    },
}

/// Builds a token request. The body is form-encoded (RFC 6749) unless the connector asks for
/// JSON; `Accept: application/json` is sent unless the connector overrides it.
pub fn token_request(
    method: &OAuth2Auth,
    endpoint: &Url,
    client: Client<'_>,
    grant: TokenGrant<'_>,
) -> Result<OutgoingRequest, String> {
    let mut params: Vec<(String, Secret)> = Vec::new();
    let mut push = |k: &str, v: &str| params.push((k.to_string(), Secret::new(v)));
    let scope = |scopes: &[String]| scopes.join(&method.scope_separator);
    let extra = match grant {
        TokenGrant::AuthorizationCode { code, redirect_uri, code_verifier } => {
            push("grant_type", "authorization_code");
            push("code", code.expose());
            push("redirect_uri", redirect_uri);
            if let Some(verifier) = code_verifier {
                push("code_verifier", verifier.expose());
            }
            &method.token_params
        }
        TokenGrant::ClientCredentials { scopes } => {
            push("grant_type", "client_credentials");
            if !scopes.is_empty() {
                push("scope", &scope(scopes));
            }
            &method.token_params
        }
        TokenGrant::Password { username, password, scopes } => {
            push("grant_type", "password");
            push("username", username.expose());
            push("password", password.expose());
            if !scopes.is_empty() {
                push("scope", &scope(scopes));
            }
            &method.token_params
        }
        TokenGrant::DeviceCode { device_code } => {
            push("grant_type", "urn:ietf:params:oauth:grant-type:device_code");
            push("device_code", device_code.expose());
            &method.token_params
        }
        TokenGrant::JwtBearer { assertion } => {
            push("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
            push("assertion", assertion.expose());
            &method.token_params
        }
        TokenGrant::RefreshToken { refresh_token } => {
            push("grant_type", "refresh_token");
            push("refresh_token", refresh_token.expose());
            &method.refresh_params
        }
    };
    for (k, v) in extra {
        push(k, v);
    }
    encode_request(method, endpoint, client, params)
}

/// The device authorization request (RFC 8628 §3.1): the client and the scopes.
pub fn device_authorization_request(
    method: &OAuth2Auth,
    endpoint: &Url,
    client: Client<'_>,
    scopes: &[String],
) -> Result<OutgoingRequest, String> {
    let mut params: Vec<(String, Secret)> = Vec::new();
    if !scopes.is_empty() {
        params.push(("scope".into(), Secret::new(scopes.join(&method.scope_separator))));
    }
    encode_request(method, endpoint, client, params)
}

/// Adds client authentication to `params` and encodes the POST as the connector says.
pub(crate) fn encode_request(
    method: &OAuth2Auth,
    endpoint: &Url,
    client: Client<'_>,
    mut params: Vec<(String, Secret)>,
) -> Result<OutgoingRequest, String> {
    let mut push = |k: &str, v: &str| params.push((k.to_string(), Secret::new(v)));
    let mut request = OutgoingRequest::new(Method::POST, endpoint.clone());
    match (method.client_auth, client.secret) {
        (ClientAuth::PrivateKeyJwt, _) => {
            let assertion =
                client.assertion.ok_or("private_key_jwt needs a signed client assertion")?;
            push("client_id", client.id);
            push("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
            push("client_assertion", assertion.expose());
        }
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = Secret::new(format!("{}:{}", enc(client.id), enc(secret.expose())));
            let value = Secret::new(format!("Basic {}", STANDARD.encode(pair.expose())));
            let value = HeaderValue::from_str(value.expose())
                .map_err(|_| "the client credentials cannot form a header".to_string())?;
            request.set_sensitive_header(http::header::AUTHORIZATION, value);
        }
        // The certificate authenticates the client in the TLS handshake.
        (ClientAuth::TlsClientAuth, _) => push("client_id", client.id),
        // The JWT bearer grant may need no client at all (the assertion identifies the caller).
        (ClientAuth::Basic | ClientAuth::Body, None) if client.id.is_empty() => {}
        (ClientAuth::Basic, None) | (ClientAuth::Body, None) => push("client_id", client.id),
        (ClientAuth::Body, Some(secret)) => {
            push("client_id", client.id);
            push("client_secret", secret.expose());
        }
    }
    let body = match method.token_request.format {
        BodyFormat::Form => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                form.append_pair(k, v.expose());
            }
            request.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            Secret::new(form.finish())
        }
        BodyFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().to_string())))
                .collect();
            request
                .headers
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Secret::new(serde_json::Value::Object(map).to_string())
        }
    };
    request.body = bytes::Bytes::copy_from_slice(body.expose().as_bytes());
    request.headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in &method.token_request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("token request header `{name}` is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("token request header `{name}` has an invalid value"))?;
        request.headers.insert(name, value);
    }
    Ok(request)
}

/// The tokens a token response carried.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// A (possibly rotated) refresh token; `None` means keep the old one.
    pub refresh_token: Option<Secret>,
    /// Lifetime from now; `None` when neither the response nor the connector gives one.
    pub expires_in: Option<Duration>,
    /// Values the connector keeps into the connection's config.
    pub kept: BTreeMap<String, String>,
}

/// A token response that carries no usable token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The provider answered with an OAuth error (§5.2), whatever the HTTP status.
    #[error("the provider refused: {code}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        /// The `error` code, e.g. `invalid_grant`.
        code: String,
        /// `error_description`, shortened.
        description: Option<String>,
        /// The HTTP status.
        status: u16,
    },
    /// A non-success status without an OAuth error body.
    #[error("the token endpoint answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The body could not be read as a token response.
    #[error("malformed token response: {0}")]
    Malformed(String),
}

impl TokenError {
    /// `invalid_grant`: the refresh token (or code) is dead; the user must reconnect.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Provider { code, .. } if code == "invalid_grant")
    }

    /// `invalid_client` or `unauthorized_client`: the provider refuses the app's client (a wrong
    /// or rotated secret, a disabled client, a grant the client may not use), not the user's
    /// grant: every connection of the integration fails alike until it is fixed.
    pub fn is_client_refused(&self) -> bool {
        matches!(self, Self::Provider { code, .. }
            if code == "invalid_client" || code == "unauthorized_client")
    }

    /// Worth retrying later with the same tokens: 5xx, 429, or a provider's `temporarily_unavailable`.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status } | Self::Provider { status, .. }
                if *status >= 500 || *status == 429 =>
            {
                true
            }
            Self::Provider { code, .. } => code == "temporarily_unavailable",
            _ => false,
        }
    }
}

/// Parses a token response (JSON, or form-encoded from providers that answer so).
pub fn parse_token_response(
    fields: &TokenResponseFields,
    status: u16,
    body: &[u8],
) -> Result<TokenSet, TokenError> {
    let doc = parse_body(body);
    if let Some(doc) = &doc
        && let Some(code) = lookup(doc, "error").and_then(as_text)
        && !code.is_empty()
    {
        let description = lookup(doc, "error_description")
            .and_then(as_text)
            .map(|d| d.chars().take(200).collect::<String>());
        return Err(TokenError::Provider { code, description, status });
    }
    if !(200..300).contains(&status) {
        return Err(TokenError::Status { status });
    }
    let doc =
        doc.ok_or_else(|| TokenError::Malformed("the body is neither JSON nor a form".into()))?;
    let access_token =
        lookup(&doc, &fields.access_token).and_then(as_text).filter(|t| !t.is_empty()).ok_or_else(
            || TokenError::Malformed(format!("no `{}` in the response", fields.access_token)),
        )?;
    let refresh_token =
        lookup(&doc, &fields.refresh_token).and_then(as_text).filter(|t| !t.is_empty());
    // A token goes into a header: one holding a control character would be stored and then fail
    // every request, so the response is refused here and the old tokens stay.
    no_control(&fields.access_token, &access_token)?;
    if let Some(token) = &refresh_token {
        no_control(&fields.refresh_token, token)?;
    }
    // A lifetime that cannot be read (`"soon"`, `NaN`, an object) counts as not said: refusing
    // the response would throw away tokens the provider has just rotated.
    let expires_in = lookup(&doc, &fields.expires_in)
        .and_then(|value| match value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .and_then(|n| {
            token_lifetime(match fields.expires_in_unit {
                LifetimeUnit::Seconds => n,
                LifetimeUnit::Milliseconds => n / 1000.0,
            })
        })
        .or(fields.default_lifetime.map(Duration::from_secs));
    let mut kept = BTreeMap::new();
    for (key, path) in &fields.keep {
        if let Some(value) = lookup(&doc, path).and_then(as_text) {
            no_control(path, &value)?;
            kept.insert(key.clone(), value);
        }
    }
    Ok(TokenSet {
        access_token: Secret::new(access_token),
        refresh_token: refresh_token.map(Secret::new),
        expires_in,
        kept,
    })
}

/// The longest token lifetime Latchkey believes: ten years. A provider that claims more (or an
/// absurd `1e300`) gets this; the token is renewed then, or when the API refuses it.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A provider's lifetime in seconds as a duration: clamped to [`MAX_TOKEN_LIFETIME`]; zero or
/// negative means "not said" (some providers answer `0` for a token that does not expire), so
/// the connector's `default_lifetime` applies, else the token is used until it is refused.
pub fn token_lifetime(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds <= 0.0 {
        return None;
    }
    // Compared before converting: `Duration::from_secs_f64` panics on values it cannot hold.
    if seconds >= MAX_TOKEN_LIFETIME.as_secs_f64() {
        return Some(MAX_TOKEN_LIFETIME);
    }
    Some(Duration::from_secs_f64(seconds))
}

fn parse_body(body: &[u8]) -> Option<serde_json::Value> {
    if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_slice(body) {
        return Some(value);
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() || !text.contains('=') || text.starts_with('{') || text.starts_with('<') {
        return None;
    }
    let map: serde_json::Map<_, _> = form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    Some(serde_json::Value::Object(map))
}

/// A dotted path (`authed_user.access_token`, `data.0.token`) into a JSON value.
pub fn lookup<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(doc, |value, part| match value {
        serde_json::Value::Object(map) => map.get(part),
        serde_json::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Refuses a value holding a control character, naming its field (never the value).
fn no_control(field: &str, value: &str) -> Result<(), TokenError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(TokenError::Malformed(format!(
            "`{field}` holds a control character (U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

fn as_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A device authorization response (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// The code Latchkey polls with.
    pub device_code: Secret,
    /// The code the user types.
    pub user_code: String,
    /// Where the user types it.
    pub verification_uri: String,
    /// A URI with the code filled in, if the server gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the codes live.
    pub expires_in: Duration,
    /// Seconds between polls (default 5).
    pub interval: Duration,
}

/// Parses a device authorization response.
pub fn parse_device_authorization(
    status: u16,
    body: &[u8],
) -> Result<DeviceAuthorization, TokenError> {
    let doc = parse_body(body);
    if let Some(doc) = &doc
        && let Some(code) = lookup(doc, "error").and_then(as_text)
    {
        let description = lookup(doc, "error_description")
            .and_then(as_text)
            .map(|d| d.chars().take(200).collect());
        return Err(TokenError::Provider { code, description, status });
    }
    if !(200..300).contains(&status) {
        return Err(TokenError::Status { status });
    }
    let doc = doc.ok_or_else(|| TokenError::Malformed("the body is not JSON".into()))?;
    let text = |k: &str| lookup(&doc, k).and_then(as_text).filter(|s| !s.is_empty());
    let seconds = |k: &str, default: u64| {
        lookup(&doc, k).and_then(as_text).and_then(|s| s.parse::<u64>().ok()).unwrap_or(default)
    };
    Ok(DeviceAuthorization {
        device_code: Secret::new(
            text("device_code").ok_or_else(|| TokenError::Malformed("no device_code".into()))?,
        ),
        user_code: text("user_code").ok_or_else(|| TokenError::Malformed("no user_code".into()))?,
        verification_uri: text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| TokenError::Malformed("no verification_uri".into()))?,
        verification_uri_complete: text("verification_uri_complete"),
        // Both come from the server: bounded so that adding them to a clock cannot overflow.
        expires_in: Duration::from_secs(seconds("expires_in", 600).clamp(1, 24 * 3600)),
        interval: Duration::from_secs(seconds("interval", 5).clamp(1, 3600)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(fields: &TokenResponseFields, expires_in: &str) -> Option<Duration> {
        let body = format!(r#"{{"access_token":"a","expires_in":{expires_in}}}"#);
        parse_token_response(fields, 200, body.as_bytes()).unwrap().expires_in
    }

    /// Absurd lifetimes from a provider used to panic in `Duration::from_secs_f64`.
    #[test]
    fn absurd_lifetimes_are_clamped_and_never_panic() {
        let plain = TokenResponseFields::default();
        for huge in ["1e10", "3e11", "1e300", "\"1e300\"", "1.7976931348623157e308", "\"inf\""] {
            assert_eq!(lifetime(&plain, huge), Some(MAX_TOKEN_LIFETIME), "{huge}");
        }
        let millis =
            TokenResponseFields { expires_in_unit: LifetimeUnit::Milliseconds, ..plain.clone() };
        assert_eq!(lifetime(&millis, "1e300"), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(lifetime(&millis, "1500"), Some(Duration::from_millis(1500)));
        assert_eq!(lifetime(&plain, "3600"), Some(Duration::from_secs(3600)));
        assert_eq!(lifetime(&plain, "0.5"), Some(Duration::from_millis(500)));
    }

    /// Zero, negative or unreadable means "not said": the connector's default applies, else none.
    #[test]
    fn zero_or_negative_lifetimes_mean_unknown() {
        let plain = TokenResponseFields::default();
        let defaulted = TokenResponseFields { default_lifetime: Some(900), ..plain.clone() };
        for none in ["0", "-1", "\"-5\"", "-1e300", "\"-inf\""] {
            assert_eq!(lifetime(&plain, none), None, "{none}");
            assert_eq!(lifetime(&defaulted, none), Some(Duration::from_secs(900)), "{none}");
        }
        assert_eq!(lifetime(&defaulted, "\"NaN\""), Some(Duration::from_secs(900)));
    }

    /// A token that could never be placed in a header is refused, not stored.
    #[test]
    fn tokens_with_control_characters_are_refused() {
        let fields = TokenResponseFields {
            keep: [("instance".to_string(), "instance_url".to_string())].into(),
            ..TokenResponseFields::default()
        };
        for body in [
            r#"{"access_token":"a\r\nX-Injected: 1"}"#,
            r#"{"access_token":"a","refresh_token":"r\u0000"}"#,
            r#"{"access_token":"a","instance_url":"https://x\n.example"}"#,
        ] {
            let err = parse_token_response(&fields, 200, body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("control character"), "{body}: {err}");
            assert!(!err.to_string().contains("X-Injected"), "{err}");
        }
        let ok = parse_token_response(&fields, 200, br#"{"access_token":"a b"}"#).unwrap();
        assert_eq!(ok.access_token.expose(), "a b");
    }

    #[test]
    fn device_lifetimes_are_bounded() {
        let body = br#"{"device_code":"d","user_code":"u","verification_uri":"https://x","expires_in":18446744073709551615,"interval":0}"#;
        let auth = parse_device_authorization(200, body).unwrap();
        assert_eq!(auth.expires_in, Duration::from_secs(24 * 3600));
        assert_eq!(auth.interval, Duration::from_secs(1));
    }
}
