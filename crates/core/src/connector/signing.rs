//! Settings of the signature families: AWS Signature V4, HTTP Digest, OAuth 1.0a and
//! self-signed JWTs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::model::{BasicPart, CredentialField};
use super::oauth2::TokenPlacement;

/// `type: aws_sigv4`: AWS Signature Version 4. Credential fields: `access_key_id`,
/// `secret_access_key` and optionally `session_token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSigV4Auth {
    /// Name the user picks this method by; default `aws_sigv4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The signing name of the service, e.g. `s3`, `execute-api`, `sts` (template over `config`).
    pub service: String,
    /// The region, e.g. `us-east-1` (template over `config`).
    pub region: String,
    /// `signed` (default): the body's SHA-256 is signed; `unsigned`: `UNSIGNED-PAYLOAD`.
    #[serde(default)]
    pub payload: PayloadSigning,
    /// Send `x-amz-content-sha256` (S3 requires it; on by default for `service: s3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256_header: Option<bool>,
}

/// Whether the payload is part of the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadSigning {
    /// The body's hash is signed.
    #[default]
    Signed,
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
}

/// `type: digest`: HTTP Digest (RFC 7616). Credential fields `username` and `password`, whose
/// labels the connector may rename (as for `basic`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestAuth {
    /// Name the user picks this method by; default `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The username field.
    #[serde(default)]
    pub username: BasicPart,
    /// The password field.
    #[serde(default)]
    pub password: BasicPart,
}

/// `type: oauth1`: OAuth 1.0a request signing (RFC 5849). Credential fields: `consumer_key`,
/// `consumer_secret` (or `private_key`, PEM, for RSA-SHA1), and `token` / `token_secret` for
/// three-legged access (absent for two-legged, consumer-only signing).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth1Auth {
    /// Name the user picks this method by; default `oauth1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `HMAC-SHA1` (default), `HMAC-SHA256`, `RSA-SHA1` or `PLAINTEXT`.
    #[serde(default)]
    pub signature_method: OAuth1SignatureMethod,
    /// Where the protocol parameters go: `header` (default) or `query`.
    #[serde(default)]
    pub placement: OAuth1Placement,
    /// `realm` in the Authorization header (template over `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Two-legged: sign with the consumer credentials only (no token fields asked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub two_legged: bool,
    /// The three-legged flow (RFC 5849 §2): the temporary-credentials endpoint. With
    /// `authorize_url` and `access_token_url`, connections are made through the browser like
    /// OAuth2 (the integration holds the consumer key and secret) instead of pasted tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_token_url: Option<String>,
    /// The resource-owner authorization endpoint (§2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// The token-credentials endpoint (§2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_url: Option<String>,
    /// Fields of the token-credentials response kept into the connection's config (config key
    /// → response field), e.g. `{ user_id: user_id }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_keep: BTreeMap<String, String>,
}

impl OAuth1Auth {
    /// Whether connections are made through the three-legged flow.
    pub fn three_legged(&self) -> bool {
        self.access_token_url.is_some()
    }
}

/// An OAuth 1.0a signature method (RFC 5849 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum OAuth1SignatureMethod {
    /// HMAC-SHA1 (§3.4.2).
    #[default]
    #[serde(rename = "HMAC-SHA1")]
    HmacSha1,
    /// HMAC-SHA256 (a common extension).
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
    /// RSA-SHA1 (§3.4.3), PKCS#1 v1.5.
    #[serde(rename = "RSA-SHA1")]
    RsaSha1,
    /// PLAINTEXT (§3.4.4); only over TLS.
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
}

impl OAuth1SignatureMethod {
    /// The `oauth_signature_method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC-SHA1",
            Self::HmacSha256 => "HMAC-SHA256",
            Self::RsaSha1 => "RSA-SHA1",
            Self::Plaintext => "PLAINTEXT",
        }
    }
}

/// Where OAuth 1.0a protocol parameters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuth1Placement {
    /// `Authorization: OAuth …` (§3.5.1).
    #[default]
    Header,
    /// The query string (§3.5.3).
    Query,
}

/// `type: jwt`: a JWT signed by Latchkey for each request, or once per lifetime (APIs that take
/// a short-lived token signed with an API secret or a private key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// Name the user picks this method by; default `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `HS256`/`HS384`/`HS512` (with a `secret` field), `RS*`/`PS*` (RSA), `ES256`/`ES384`
    /// (EC) or `EdDSA` (Ed25519), the last three with a PEM `private_key` field.
    pub algorithm: String,
    /// The credential fields; default `secret` (HS*) or `private_key` (others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<CredentialField>,
    /// Header values (`kid`, `typ`, `cty`), templates over `credentials` and `config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, String>,
    /// Claims, templates over `credentials` and `config`; `iat` and `exp` are added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// Lifetime in seconds (`exp - iat`); default 300.
    #[serde(default = "default_jwt_lifetime")]
    pub lifetime: u64,
    /// When a new token is signed: for every request (default), or once per lifetime and
    /// reused until shortly before it expires.
    #[serde(default, skip_serializing_if = "JwtSigning::is_per_request")]
    pub sign: JwtSigning,
    /// How the token goes on requests (`{{ access_token }}` is the JWT); default
    /// `Authorization: Bearer <jwt>`.
    #[serde(default)]
    pub apply: TokenPlacement,
}

/// When a self-signed JWT is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JwtSigning {
    /// A new token (new `iat`, `exp`) on every request.
    #[default]
    PerRequest,
    /// One token per connection, reused until `min(lifetime / 4, 60 s)` before it expires,
    /// and signed again at once when the API answers 401 to a reused one.
    PerLifetime,
}

impl JwtSigning {
    fn is_per_request(&self) -> bool {
        *self == Self::PerRequest
    }
}

fn default_jwt_lifetime() -> u64 {
    300
}
