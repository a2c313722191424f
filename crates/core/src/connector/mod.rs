//! Connectors: the file format, its parsing, and what the rest of Latchkey asks of a connector.

mod lint;
mod model;
mod oauth2;
mod parse;
mod rate_limit;
mod scripted;
mod signing;

use schemars::JsonSchema;
use serde::Serialize;

pub use lint::{CATEGORIES, LintIssue, lint};
pub use model::*;
pub use oauth2::*;
pub use parse::{ConnectorError, compile_pattern, parse_connector};
pub use rate_limit::*;
pub use scripted::*;
pub use signing::*;

/// The JSON Schema of the connector format (what `latchkey connector schema` prints).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Connector)).unwrap_or_default()
}

/// A field the user fills in when connecting, whatever auth method it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FieldSpec {
    /// Key under `credentials.*`.
    pub key: String,
    /// Label shown to the user.
    pub label: String,
    /// Hidden input; encrypted at rest (every credential is, this only drives the input).
    pub secret: bool,
    /// Anchored regular expression the value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Help text: what the value is and where to find it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An example value (a placeholder, never a real secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
    /// The API's documentation page where the user finds the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// The value the field starts with (a config field's connector default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// May be left empty.
    pub optional: bool,
}

impl FieldSpec {
    /// A required field with only a key, a label and whether it is secret.
    pub fn new(key: impl Into<String>, label: impl Into<String>, secret: bool) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            secret,
            pattern: None,
            help: None,
            example: None,
            docs_url: None,
            default: None,
            optional: false,
        }
    }

    /// Why `value` is not acceptable for this field (`Err` holds the pattern's compile error,
    /// a connector mistake), or `Ok(None)` when it is: an empty value of a required field, or a
    /// value that does not match the whole `pattern`.
    pub fn problem(&self, value: &str) -> Result<Option<FieldProblem>, String> {
        if value.is_empty() {
            return Ok((!self.optional && self.default.is_none()).then_some(FieldProblem::Missing));
        }
        match &self.pattern {
            Some(pattern) if !compile_pattern(pattern)?.is_match(value) => {
                Ok(Some(FieldProblem::Mismatch))
            }
            _ => Ok(None),
        }
    }
}

/// Why a value was refused for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldProblem {
    /// A required field was left empty.
    Missing,
    /// The value does not match the field's `pattern`.
    Mismatch,
}

impl From<&ConfigField> for FieldSpec {
    fn from(f: &ConfigField) -> Self {
        FieldSpec {
            pattern: f.pattern.clone(),
            help: f.help.clone(),
            example: f.example.clone(),
            docs_url: f.docs_url.clone(),
            default: f.default.clone(),
            optional: f.optional,
            ..FieldSpec::new(&f.key, f.label.clone().unwrap_or_else(|| f.key.clone()), false)
        }
    }
}

impl From<&CredentialField> for FieldSpec {
    fn from(f: &CredentialField) -> Self {
        FieldSpec {
            pattern: f.pattern.clone(),
            help: f.help.clone(),
            example: f.example.clone(),
            docs_url: f.docs_url.clone(),
            optional: f.optional,
            ..FieldSpec::new(&f.key, f.label.clone().unwrap_or_else(|| f.key.clone()), f.secret)
        }
    }
}

/// The username and password fields of `basic` and `digest`, minus the fixed ones.
fn user_password_fields(username: &BasicPart, password: &BasicPart) -> Vec<FieldSpec> {
    let field = |key: &str, part: &BasicPart, default: &str, secret| FieldSpec {
        help: part.help.clone(),
        example: part.example.clone(),
        docs_url: part.docs_url.clone(),
        ..FieldSpec::new(key, part.label.clone().unwrap_or_else(|| default.into()), secret)
    };
    let mut out = Vec::new();
    if username.value.is_none() {
        out.push(field("username", username, "Username", false));
    }
    if password.value.is_none() {
        out.push(field("password", password, "Password", true));
    }
    out
}

impl AuthMethod {
    /// The name a user picks this method by: its `id`, or its type.
    pub fn id(&self) -> &str {
        let (id, kind) = match self {
            Self::None(m) => (&m.id, "none"),
            Self::Basic(m) => (&m.id, "basic"),
            Self::ApiKey(m) => (&m.id, "api_key"),
            Self::Bearer(m) => (&m.id, "bearer"),
            Self::OAuth2(m) => (&m.id, "oauth2"),
            Self::AwsSigV4(m) => (&m.id, "aws_sigv4"),
            Self::Digest(m) => (&m.id, "digest"),
            Self::OAuth1(m) => (&m.id, "oauth1"),
            Self::Jwt(m) => (&m.id, "jwt"),
            Self::Custom(m) => (&m.id, "custom"),
            Self::Session(m) => (&m.id, "session"),
        };
        id.as_deref().unwrap_or(kind)
    }

    /// The method's type as written in connector files.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None(_) => "none",
            Self::Basic(_) => "basic",
            Self::ApiKey(_) => "api_key",
            Self::Bearer(_) => "bearer",
            Self::OAuth2(_) => "oauth2",
            Self::AwsSigV4(_) => "aws_sigv4",
            Self::Digest(_) => "digest",
            Self::OAuth1(_) => "oauth1",
            Self::Jwt(_) => "jwt",
            Self::Custom(_) => "custom",
            Self::Session(_) => "session",
        }
    }

    /// The fields a user supplies for this method.
    pub fn fields(&self) -> Vec<FieldSpec> {
        let field = |key: &str, label: Option<&String>, default: &str, secret| {
            FieldSpec::new(key, label.cloned().unwrap_or_else(|| default.into()), secret)
        };
        match self {
            Self::None(_) => Vec::new(),
            Self::Basic(m) => user_password_fields(&m.username, &m.password),
            Self::Bearer(m) => {
                vec![FieldSpec {
                    help: m.help.clone(),
                    example: m.example.clone(),
                    docs_url: m.docs_url.clone(),
                    ..field("token", m.token_label.as_ref(), "Token", true)
                }]
            }
            Self::AwsSigV4(_) => vec![
                field("access_key_id", None, "Access key id", false),
                field("secret_access_key", None, "Secret access key", true),
                FieldSpec { optional: true, ..field("session_token", None, "Session token", true) },
            ],
            Self::Jwt(m) if m.fields.is_empty() => {
                if m.algorithm.starts_with("HS") {
                    vec![field("secret", None, "Signing secret", true)]
                } else {
                    vec![field("private_key", None, "Private key (PEM)", true)]
                }
            }
            Self::Jwt(m) => m.fields.iter().map(FieldSpec::from).collect(),
            // The integration holds the consumer credentials; the flow brings the token.
            Self::OAuth1(m) if m.three_legged() => Vec::new(),
            Self::OAuth1(m) => {
                let mut out = vec![field("consumer_key", None, "Consumer key", false)];
                if m.signature_method == OAuth1SignatureMethod::RsaSha1 {
                    out.push(field("private_key", None, "Private key (PEM)", true));
                } else {
                    out.push(field("consumer_secret", None, "Consumer secret", true));
                }
                if !m.two_legged {
                    out.push(field("token", None, "Access token", true));
                    out.push(field("token_secret", None, "Token secret", true));
                }
                out
            }
            Self::Digest(m) => user_password_fields(&m.username, &m.password),
            Self::OAuth2(m) => match m.grant {
                Grant::Password => vec![
                    field("username", None, "Username", false),
                    field("password", None, "Password", true),
                ],
                Grant::JwtBearer => vec![
                    field("client_email", None, "Service account email (issuer)", false),
                    field("private_key", None, "Private key (PEM)", true),
                    FieldSpec {
                        optional: true,
                        ..field("private_key_id", None, "Private key id (kid)", false)
                    },
                    FieldSpec {
                        optional: true,
                        ..field("subject", None, "User to act as (sub)", false)
                    },
                ],
                Grant::AuthorizationCode | Grant::ClientCredentials | Grant::DeviceCode => {
                    Vec::new()
                }
            },
            Self::ApiKey(m) => m.fields.iter().map(FieldSpec::from).collect(),
            Self::Custom(m) => m.fields.iter().map(FieldSpec::from).collect(),
            Self::Session(m) => m.fields.iter().map(FieldSpec::from).collect(),
        }
    }
}

impl Connector {
    /// The auth method named `id`, or the default (first) one when `id` is `None`.
    pub fn auth_method(&self, id: Option<&str>) -> Option<&AuthMethod> {
        match id {
            None => self.auth.first(),
            Some(id) => self.auth.iter().find(|m| m.id() == id),
        }
    }
}
