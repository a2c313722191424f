//! Self-signed JWTs ([RFC 7519](https://www.rfc-editor.org/rfc/rfc7519)), through
//! `jsonwebtoken`: a token with the connector's header and claims, `iat` now and `exp` after the
//! lifetime, signed with the connection's secret (HS*) or private key (RS*, PS*, ES*, EdDSA).

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::{AuthContext, AuthError};
use crate::Secret;
use crate::connector::JwtAuth;
use crate::request::OutgoingRequest;
use crate::template::render_secret;

pub(super) fn apply(
    method: &JwtAuth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let token = sign(method, ctx)?;
    place(method, &token, request, ctx)
}

/// Puts a token already signed (kept for its lifetime) on `request`.
pub fn place(
    method: &JwtAuth,
    token: &Secret,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    super::oauth2::place_token(&method.apply, "access_token", token, request, ctx)
}

/// Signs a JWT for `ctx.now`.
pub fn sign(method: &JwtAuth, ctx: AuthContext<'_>) -> Result<Secret, AuthError> {
    let algorithm: Algorithm = method
        .algorithm
        .parse()
        .map_err(|_| AuthError::Signing(format!("unknown JWT algorithm `{}`", method.algorithm)))?;
    let key_field = method
        .fields
        .first()
        .map(|f| f.key.as_str())
        .unwrap_or(if method.algorithm.starts_with("HS") { "secret" } else { "private_key" });
    let material = ctx.credential(key_field)?;
    let bad_key = |kind: &str| {
        AuthError::Signing(format!("`{key_field}` is not a valid {kind} for {}", method.algorithm))
    };
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(material.expose().as_bytes()).map_err(|_| bad_key("secret"))?
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(material.expose().as_bytes())
            .map_err(|_| bad_key("PEM RSA private key"))?,
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(material.expose().as_bytes())
                .map_err(|_| bad_key("PEM EC private key (PKCS#8)"))?
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(material.expose().as_bytes())
            .map_err(|_| bad_key("PEM Ed25519 private key"))?,
        _ => {
            return Err(AuthError::Signing(format!(
                "JWT algorithm `{}` is not supported",
                method.algorithm
            )));
        }
    };
    let scope = ctx.scope();
    let render = |v: &String| {
        render_secret(v, scope).map(|s| s.expose().to_string()).map_err(AuthError::Template)
    };
    let mut header = Header::new(algorithm);
    for (name, value) in &method.header {
        let value = Some(render(value)?);
        match name.as_str() {
            "kid" => header.kid = value,
            "typ" => header.typ = value,
            "cty" => header.cty = value,
            _ => {}
        }
    }
    let now = ctx.now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut claims: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (name, value) in &method.claims {
        claims.insert(name.clone(), serde_json::Value::String(render(value)?));
    }
    claims.entry("iat".into()).or_insert(now.into());
    claims.entry("exp".into()).or_insert((now + method.lifetime).into());
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| AuthError::Signing(format!("cannot sign the JWT: {:?}", e.kind())))
}
