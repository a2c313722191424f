//! AWS Signature Version 4
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>), through the
//! `aws-sigv4` crate. The signing time comes from the context, so the published test suite
//! checks this exactly.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::{AuthContext, AuthError};
use crate::connector::{AwsSigV4Auth, PayloadSigning};
use crate::request::OutgoingRequest;
use crate::template::{self, Scope};

pub(super) fn apply(
    method: &AwsSigV4Auth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let scope = Scope { credentials: None, config: Some(ctx.config), response: None };
    let service = template::render(&method.service, scope).map_err(AuthError::Template)?;
    let region = template::render(&method.region, scope).map_err(AuthError::Template)?;
    let credentials = Credentials::new(
        ctx.credential("access_key_id")?.expose(),
        ctx.credential("secret_access_key")?.expose(),
        ctx.credentials
            .get("session_token")
            .filter(|t| !t.is_empty())
            .map(|t| t.expose().to_string()),
        None,
        "latchkey",
    );
    let s3 = service == "s3";
    let mut settings = SigningSettings::default();
    if method.content_sha256_header.unwrap_or(s3) {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    if s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    sign_request(request, &credentials.into(), &service, &region, settings, method.payload, ctx.now)
}

/// Signs `request` in place: adds `X-Amz-Date`, `Authorization` and, as the settings say,
/// `x-amz-content-sha256` and `X-Amz-Security-Token`.
pub fn sign_request(
    request: &mut OutgoingRequest,
    identity: &Identity,
    service: &str,
    region: &str,
    settings: SigningSettings,
    payload: PayloadSigning,
    now: std::time::SystemTime,
) -> Result<(), AuthError> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| AuthError::Signing(format!("AWS signing parameters: {e}")))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let body = match payload {
        PayloadSigning::Signed => SignableBody::Bytes(&request.body),
        PayloadSigning::Unsigned => SignableBody::UnsignedPayload,
    };
    let signable = SignableRequest::new(
        request.method.as_str(),
        request.url.as_str(),
        headers.into_iter(),
        body,
    )
    .map_err(|e| AuthError::Signing(format!("AWS signing: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| AuthError::Signing(format!("AWS signing: {e}")))?
        .into_parts();
    let (new_headers, new_query) = instructions.into_parts();
    for header in new_headers {
        let mut value = http::HeaderValue::from_str(header.value())
            .map_err(|_| AuthError::InvalidHeaderValue(header.name().to_string()))?;
        value.set_sensitive(header.sensitive());
        let name = http::HeaderName::from_bytes(header.name().as_bytes())
            .map_err(|_| AuthError::InvalidHeaderValue(header.name().to_string()))?;
        request.headers.insert(name, value);
    }
    if !new_query.is_empty() {
        let mut pairs = request.url.query_pairs_mut();
        for (k, v) in new_query {
            pairs.append_pair(k, &v);
        }
    }
    Ok(())
}
