//! The `oauth2` auth method's settings: grants, endpoints and every declarative quirk a provider
//! may need (extra parameters, client authentication, token request format, where the token
//! fields are in the response, how the token is applied).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::KeyLocation;

/// `type: oauth2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    /// Name the user picks this method by; default `oauth2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The grant used to obtain the first token.
    #[serde(default)]
    pub grant: Grant,
    /// An issuer whose discovery document (`/.well-known/openid-configuration` or
    /// `/.well-known/oauth-authorization-server`) supplies the endpoints not given here, and
    /// against which the callback's `iss` is checked (RFC 9207).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The API's base URL for connections made with this method, when its tokens go elsewhere
    /// than the connector's `base_url` (Atlassian's OAuth 2.0 tokens work only at
    /// `api.atlassian.com/ex/jira/{cloud id}`, not at the site). Template over `config`.
    /// Credentials then go only to this URL's host, whatever `allowed_hosts` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Authorization endpoint (template over `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Token endpoint (template over `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Device authorization endpoint (RFC 8628 §3.1), for `grant: device_code` (template over
    /// `config`; with `issuer`, read from its discovery document when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// A separate refresh endpoint; default the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_url: Option<String>,
    /// The token revocation endpoint (RFC 7009 §2), where deleting a connection revokes its
    /// refresh and access tokens (template over `config`; with `issuer`, the discovery
    /// document's `revocation_endpoint` when absent). Without one, nothing is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    /// Default scopes, used when the integration names none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// How scopes are joined; default a space.
    #[serde(default = "space", skip_serializing_if = "is_space")]
    pub scope_separator: String,
    /// PKCE with S256 (RFC 7636) on the authorization-code grant; default on.
    #[serde(default = "yes")]
    pub pkce: bool,
    /// How the client authenticates at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Signing algorithm of the `private_key_jwt` assertion (default `RS256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<String>,
    /// The assertion of the `jwt_bearer` grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<JwtAssertion>,
    /// Extra query parameters on the authorization request (e.g. `access_type: offline`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// Extra parameters on every token request (code, client credentials, password).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_params: BTreeMap<String, String>,
    /// Extra parameters on refresh requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refresh_params: BTreeMap<String, String>,
    /// How token requests are encoded and which headers they carry.
    #[serde(default)]
    pub token_request: TokenRequestFormat,
    /// Where the token fields are in the token response.
    #[serde(default)]
    pub token_response: TokenResponseFields,
    /// What the provider's redirect back carries besides `state`: where the code is, and
    /// which other parameters to keep (authorization-code grant only).
    #[serde(default, skip_serializing_if = "OAuth2Callback::is_default")]
    pub callback: OAuth2Callback,
    /// Deprecated spelling of `callback.keep` (config key → parameter), still read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub callback_keep: BTreeMap<String, String>,
    /// How the access token is applied to requests; default `Authorization: Bearer <token>`.
    #[serde(default)]
    pub apply: TokenPlacement,
    /// Statuses that mean the token was refused: refresh once and retry once. Default `[401]`.
    #[serde(default = "default_refresh_on")]
    pub refresh_on: Vec<u16>,
}

impl OAuth2Auth {
    /// The callback parameters kept into config, as (config key, parameter): `callback.keep`
    /// and the deprecated `callback_keep`.
    pub fn kept_callback_params(&self) -> impl Iterator<Item = (&String, &String)> {
        self.callback.keep.iter().chain(&self.callback_keep)
    }
}

/// The authorization response (RFC 6749 §4.1.2) as a provider sends it back. Most send the
/// code as `code`; Amazon's Selling Partner API sends `spapi_oauth_code` beside
/// `selling_partner_id`, QuickBooks adds `realmId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Callback {
    /// The query parameter that carries the authorization code; default `code`.
    #[serde(default = "code_param", skip_serializing_if = "is_code_param")]
    pub code_param: String,
    /// Callback query parameters kept into the connection's config: a list of names (each
    /// kept under its own name, e.g. `[selling_partner_id]`) or a map of config key →
    /// parameter (e.g. `{ realm_id: realmId }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "kept_params")]
    #[schemars(with = "KeptParams")]
    pub keep: BTreeMap<String, String>,
    /// The authorization server always sends `iss` (its metadata sets
    /// `authorization_response_iss_parameter_supported`, RFC 9207 §2.4): a callback without it
    /// is refused like one with another issuer. Needs the method's `issuer`. Default false;
    /// with `issuer` and no endpoints, the discovery document decides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_iss: bool,
}

impl Default for OAuth2Callback {
    fn default() -> Self {
        Self { code_param: code_param(), keep: BTreeMap::new(), require_iss: false }
    }
}

impl OAuth2Callback {
    /// True when nothing differs from the standard response.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `callback.keep` as written: names, or config key → parameter.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum KeptParams {
    /// Parameters kept under their own names.
    Names(Vec<String>),
    /// Config key → parameter.
    Renamed(BTreeMap<String, String>),
}

fn kept_params<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(match KeptParams::deserialize(deserializer)? {
        KeptParams::Names(names) => names.into_iter().map(|n| (n.clone(), n)).collect(),
        KeptParams::Renamed(map) => map,
    })
}

fn code_param() -> String {
    "code".into()
}

fn is_code_param(s: &str) -> bool {
    s == "code"
}

/// An OAuth2 grant type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Authorization code (RFC 6749 §4.1), with PKCE by default.
    #[default]
    AuthorizationCode,
    /// Client credentials (RFC 6749 §4.4).
    ClientCredentials,
    /// Resource owner password credentials (RFC 6749 §4.3).
    Password,
    /// Device authorization (RFC 8628) for headless connections: the user enters a code on
    /// another device while Latchkey polls.
    DeviceCode,
    /// The JWT bearer grant (RFC 7523 §2.1), as service accounts use it: an assertion signed
    /// with the connection's private key is exchanged for an access token, again before expiry.
    JwtBearer,
}

/// The assertion of the `jwt_bearer` grant. Default claims: `iss` = `credentials.client_email`,
/// `sub` = `credentials.subject` when given, `aud` = the token endpoint, `scope` = the scopes
/// joined, `iat`, `exp` = `iat` + `lifetime`, a random `jti`; `claims` adds to or replaces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAssertion {
    /// Signing algorithm: RS256 (default), RS384, RS512, PS256…, ES256, ES384 or EdDSA.
    #[serde(default = "rs256")]
    pub algorithm: String,
    /// Claims (templates over `credentials.*` and `config.*`), e.g. `{ sub: "{{ credentials.username }}" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// Seconds the assertion is valid; default 3600 (Google's maximum).
    #[serde(default = "hour")]
    pub lifetime: u64,
}

impl Default for JwtAssertion {
    fn default() -> Self {
        JwtAssertion { algorithm: rs256(), claims: BTreeMap::new(), lifetime: hour() }
    }
}

fn rs256() -> String {
    "RS256".into()
}

fn hour() -> u64 {
    3600
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the request body.
    #[default]
    Body,
    /// HTTP Basic with the URL-encoded client id and secret.
    Basic,
    /// A JWT signed with the client's private key (RFC 7523 §2.2, OpenID `private_key_jwt`):
    /// the integration's client secret holds the PEM key.
    PrivateKeyJwt,
    /// Mutual TLS (RFC 8705 §2.1): the integration's client secret holds a PEM bundle of the
    /// client certificate (and its chain) and private key, presented in the TLS handshake with
    /// the token endpoint and with the API (certificate-bound tokens, RFC 8705 §3); the body
    /// carries `client_id` only.
    TlsClientAuth,
}

/// Token request encoding and headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequestFormat {
    /// `form` (default, RFC 6749) or `json`.
    #[serde(default)]
    pub format: super::model::BodyFormat,
    /// Extra headers, e.g. `Accept: application/json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Default for TokenRequestFormat {
    fn default() -> Self {
        Self { format: super::model::BodyFormat::Form, headers: BTreeMap::new() }
    }
}

/// Where the token fields are in a token response: dotted paths into the JSON (or form) body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenResponseFields {
    /// Path to the access token; default `access_token` (e.g. `authed_user.access_token`).
    #[serde(default = "access_token_path")]
    pub access_token: String,
    /// Path to the refresh token; default `refresh_token`.
    #[serde(default = "refresh_token_path")]
    pub refresh_token: String,
    /// Path to the lifetime; default `expires_in`.
    #[serde(default = "expires_in_path")]
    pub expires_in: String,
    /// Unit of the lifetime: `seconds` (default) or `milliseconds`.
    #[serde(default)]
    pub expires_in_unit: LifetimeUnit,
    /// Lifetime in seconds assumed when the response gives none (then a refused request
    /// triggers a refresh). Default: none, the token is used until refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_lifetime: Option<u64>,
    /// Response fields kept into the connection's config (config key → path), e.g.
    /// `{ instance_url: instance_url }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keep: BTreeMap<String, String>,
}

impl Default for TokenResponseFields {
    fn default() -> Self {
        Self {
            access_token: access_token_path(),
            refresh_token: refresh_token_path(),
            expires_in: expires_in_path(),
            expires_in_unit: LifetimeUnit::Seconds,
            default_lifetime: None,
            keep: BTreeMap::new(),
        }
    }
}

/// Unit of `expires_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifetimeUnit {
    /// Seconds (RFC 6749).
    #[default]
    Seconds,
    /// Milliseconds.
    Milliseconds,
}

/// How an access token goes on a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenPlacement {
    /// `header` (default), `query` or `cookie`.
    #[serde(default, rename = "in")]
    pub location: KeyLocation,
    /// Header, parameter or cookie name; default `Authorization` / `access_token` (a session's
    /// query parameter: `session_token`; a cookie without a name: the value as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value template over `access_token`; default `Bearer {{ access_token }}` in the
    /// `Authorization` header, the bare token in any other header, a query or a cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Default for TokenPlacement {
    fn default() -> Self {
        Self { location: KeyLocation::Header, name: None, value: None }
    }
}

fn space() -> String {
    " ".into()
}

fn is_space(s: &str) -> bool {
    s == " "
}

fn yes() -> bool {
    true
}

fn default_refresh_on() -> Vec<u16> {
    vec![401]
}

fn access_token_path() -> String {
    "access_token".into()
}

fn refresh_token_path() -> String {
    "refresh_token".into()
}

fn expires_in_path() -> String {
    "expires_in".into()
}
