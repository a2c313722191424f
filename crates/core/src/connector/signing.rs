//! Settings of the signature families: AWS Signature V4 and HTTP Digest. (OAuth 1.0a and JWT
//! live beside them as they arrive.)

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::BasicPart;

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
