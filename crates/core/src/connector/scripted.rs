//! Connector settings for scripts and for the two script-era auth methods: `custom` (applied
//! entirely by the connector's `before_action` script) and `session` (a login request whose
//! answer is a session token, renewed when it lapses).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{BodyFormat, CredentialField};
use super::oauth2::TokenPlacement;

/// Lower limits for one connector's scripts than the server's defaults (never higher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimits {
    /// CPU time per hook call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Memory per hook call, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Wall-clock time per hook call, waits on `http_request` included, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// `http_request` calls per hook call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_requests: Option<u32>,
}

/// `type: custom`: the connector declares the fields; its `before_action` script applies them
/// (e.g. an HMAC signature in a header). Nothing is applied without the script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomAuth {
    /// Name the user picks this method by; default `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The credential fields (at least one). Scripts read them as `method_auth_value` (the
    /// first, or `auth_value`) and `script_parameters` never holds them.
    pub fields: Vec<CredentialField>,
    /// Template over `credentials.*` and `config.*` for `method_auth_value`; default the first
    /// field's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_value: Option<String>,
}

/// `type: session`: a login request made with the connection's credentials returns a session
/// token, which is stored encrypted and applied to every request until it lapses; then the login
/// runs again (once, however many requests notice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionAuth {
    /// Name the user picks this method by; default `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Label shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The credential fields the login uses; default `username` and a secret `password`.
    #[serde(default = "default_session_fields")]
    pub fields: Vec<CredentialField>,
    /// The login request.
    pub login: SessionLogin,
    /// Where the session token is in the login response.
    pub token: SessionTokenSource,
    /// How the token goes on requests: a header (default `Authorization: Bearer
    /// {{ session_token }}`), a query parameter or a cookie. The value is a template over
    /// `session_token`, `credentials.*` and `config.*`.
    #[serde(default)]
    pub apply: TokenPlacement,
    /// How long a session lives. Without it, a session lives until a status in `expire_on`
    /// comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<SessionLifetime>,
    /// Statuses that mean the session has ended: log in again once and retry once. Default
    /// `[401]`.
    #[serde(default = "default_expire_on")]
    pub expire_on: Vec<u16>,
}

/// The login request of a `session` method. Every string is a template over `credentials.*` and
/// `config.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLogin {
    /// HTTP method; default `POST`.
    #[serde(default = "default_post")]
    pub method: String,
    /// An absolute URL, or a path under the connector's base URL. Its host must be allowed.
    pub url: String,
    /// Headers of the login request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body encoding: `json` (default) or `form`.
    #[serde(default)]
    pub format: BodyFormat,
    /// The body: an object whose string leaves are templates. No body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Where the session token is in the login response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionTokenSource {
    /// `json` (default): a dotted path into the JSON body; `header`: a response header;
    /// `cookie`: a cookie the response sets.
    #[serde(default, rename = "from")]
    pub source: SessionTokenFrom,
    /// The JSON path (e.g. `data.token`), header name or cookie name. For `cookie` without a
    /// name, every cookie the response sets, as a `Cookie` header value (`a=1; b=2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where a session token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionTokenFrom {
    /// The JSON body.
    #[default]
    Json,
    /// A response header.
    Header,
    /// `Set-Cookie` headers.
    Cookie,
}

/// How long a session lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLifetime {
    /// A fixed lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// A dotted path into the login's JSON response giving the lifetime in seconds (used
    /// before `seconds`, which is then the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

fn default_session_fields() -> Vec<CredentialField> {
    vec![
        CredentialField {
            key: "username".into(),
            label: Some("Username".into()),
            secret: false,
            pattern: None,
            help: None,
            example: None,
            docs_url: None,
            optional: false,
        },
        CredentialField {
            key: "password".into(),
            label: Some("Password".into()),
            secret: true,
            pattern: None,
            help: None,
            example: None,
            docs_url: None,
            optional: false,
        },
    ]
}

fn default_expire_on() -> Vec<u16> {
    vec![401]
}

fn default_post() -> String {
    "POST".into()
}
