//! The connector format, version 1: one API, how to reach it and how to authenticate to it.
//!
//! Every struct rejects unknown keys, so a typo in a connector file is an error, not a silently
//! ignored setting. `latchkey connector schema` prints the JSON Schema derived from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One API: base URL, allowed hosts, default headers, auth methods, per-connection settings and a
/// credential test. Holds no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// Unique id: lowercase letters, digits, `-` and `_`; the file name without `.yaml`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What the API is, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Catalog category, e.g. `crm`, `payments`, `developer-tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Base URL of the API. May be a template over per-connection `config`, e.g.
    /// `https://{{ config.subdomain }}.example.com/api`.
    pub base_url: String,
    /// Hosts credentials may be sent to. Default: the host of the base URL. `*.example.com`
    /// matches subdomains; a template over `config` is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Headers sent with every request (values may be templates over `config`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Auth methods; the first is the default, the user may pick another by its `id`.
    pub auth: Vec<AuthMethod>,
    /// Per-connection, non-secret settings (a subdomain, a region, an account id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigField>,
    /// The request that checks a connection's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestRequest>,
    /// The provider's API documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// JavaScript hooks run on every request and token exchange (`before_action`,
    /// `after_error`, …; see `docs/scripting.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scripts: Option<String>,
    /// Values scripts read in `script_parameters`; a connection's config adds to them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub script_parameters: BTreeMap<String, String>,
    /// Lower CPU and memory limits for this connector's scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_limits: Option<super::scripted::ScriptLimits>,
    /// How fast Latchkey may call the API, and how it answers the API's `Retry-After` (see
    /// `docs/connectors.md`). Without it, no limit and every 429 goes to the caller as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<super::rate_limit::RateLimit>,
}

/// One way to authenticate to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthMethod {
    /// No authentication.
    None(NoneAuth),
    /// HTTP Basic (RFC 7617).
    Basic(BasicAuth),
    /// An API key (or several key fields) placed in a header, the query string or the body.
    ApiKey(ApiKeyAuth),
    /// A bearer token (RFC 6750 §2.1).
    Bearer(BearerAuth),
    /// OAuth 2.0 (RFC 6749): a consent flow or a client grant, tokens refreshed automatically.
    #[serde(rename = "oauth2")]
    OAuth2(Box<super::oauth2::OAuth2Auth>),
    /// AWS Signature Version 4.
    #[serde(rename = "aws_sigv4")]
    AwsSigV4(super::signing::AwsSigV4Auth),
    /// HTTP Digest (RFC 7616): answered after the server's challenge.
    Digest(super::signing::DigestAuth),
    /// OAuth 1.0a request signing (RFC 5849).
    #[serde(rename = "oauth1")]
    OAuth1(super::signing::OAuth1Auth),
    /// A JWT signed by Latchkey for each request.
    Jwt(super::signing::JwtAuth),
    /// Fields the connector declares, applied by its `before_action` script.
    Custom(super::scripted::CustomAuth),
    /// A login request that returns a session token, renewed when the session lapses.
    Session(Box<super::scripted::SessionAuth>),
}

/// `type: none`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoneAuth {
    /// Name the user picks this method by; default `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `type: basic`: `Authorization: Basic base64(username:password)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// Name the user picks this method by; default `basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The username field: rename its label, or fix its value.
    #[serde(default)]
    pub username: BasicPart,
    /// The password field: rename its label, or fix its value (e.g. `X` for APIs that take the
    /// key as the username).
    #[serde(default)]
    pub password: BasicPart,
}

/// One half of a Basic credential.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicPart {
    /// Label shown to the user instead of "Username" / "Password".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A fixed value: the user is not asked for this half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Help text shown under the field: what the value is and where the user finds it
    /// (`hint` is accepted as its older name).
    #[serde(default, alias = "hint", skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An example value, shown as the field's placeholder (never a real secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// A page of the API's own documentation where the user finds this value (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
}

/// `type: api_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Name the user picks this method by; default `api_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The credential fields; default one secret field `api_key`.
    #[serde(default = "default_api_key_fields")]
    pub fields: Vec<CredentialField>,
    /// Where each value goes. Default: the first field in the `Authorization` header.
    #[serde(default)]
    pub apply: OneOrMany<Placement>,
}

/// `type: bearer`: `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// Name the user picks this method by; default `bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Label of the token field (the field's key is `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// Help text for the token field: what the value is and where the user finds it
    /// (`hint` is accepted as its older name).
    #[serde(default, alias = "hint", skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An example value, shown as the token field's placeholder (never a real secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// A page of the API's own documentation where the user finds this value (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
}

/// A value the user supplies when connecting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialField {
    /// Key under `credentials.*` in templates.
    pub key: String,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Hidden when typed and encrypted at rest (default `true`).
    #[serde(default = "yes")]
    pub secret: bool,
    /// Regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Help text shown under the field: what the value is and where the user finds it
    /// (`hint` is accepted as its older name).
    #[serde(default, alias = "hint", skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An example value, shown as the field's placeholder (never a real secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// A page of the API's own documentation where the user finds this value (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// The user may leave it empty.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// Where an API key goes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// `header` (default), `query`, `body` or `cookie`.
    #[serde(default, rename = "in")]
    pub location: KeyLocation,
    /// Header name, query parameter or body field. Default `Authorization` for a header;
    /// required for `query` and `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value template, e.g. `Token {{ credentials.api_key }}`. Default: the first field's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Body encoding when `in: body`: `json` (default) or `form`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<BodyFormat>,
}

/// Where a credential is placed in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    /// A request header.
    #[default]
    Header,
    /// A query-string parameter.
    Query,
    /// A field of the request body.
    Body,
    /// A cookie (added to the `Cookie` header).
    Cookie,
}

/// A request body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// A per-connection, non-secret setting, available as `config.<key>` in templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    /// Key under `config.*`.
    pub key: String,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Value used when the user gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Help text shown under the field: what the value is and where the user finds it
    /// (`hint` is accepted as its older name).
    #[serde(default, alias = "hint", skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An example value, shown as the field's placeholder (never a real secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// A page of the API's own documentation where the user finds this value (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// The user may leave it empty (and it has no default).
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
}

/// The request that checks a connection's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// HTTP method, default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path under the base URL (may hold a query string).
    pub path: String,
    /// Extra headers for this request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body for this request (e.g. a JSON-RPC call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Template for the connection's label, over `response.*` (the JSON body) and `config.*`,
    /// e.g. `{{ response.login }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How often Latchkey runs this test on each connection in the background, e.g. `6h`, or
    /// `off`; the server's `--check-interval` (default `24h`) when absent. At least `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub check_interval: Option<crate::Interval>,
}

/// One value or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

/// Hand-written so the inner error (e.g. "unknown variant `cookie`") reaches the user; serde's
/// `untagged` would replace it with "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping or a list of mappings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

fn default_api_key_fields() -> Vec<CredentialField> {
    vec![CredentialField {
        key: "api_key".into(),
        label: Some("API key".into()),
        secret: true,
        pattern: None,
        help: None,
        example: None,
        docs_url: None,
        optional: false,
    }]
}

fn default_method() -> String {
    "GET".into()
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !value
}
