//! The published AWS SigV4 test suite (`tests/vectors/aws-sigv4`): every case whose request can
//! be expressed as a valid HTTP request (a target without raw spaces, raw UTF-8 or dot segments,
//! header values without line breaks) must produce exactly the published `Authorization` header.

use std::path::Path;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SessionTokenMode, SigningSettings, UriPathNormalizationMode,
};
use latchkey_core::OutgoingRequest;
use latchkey_core::auth::aws_sigv4::sign_request;
use latchkey_core::connector::PayloadSigning;

struct Case {
    name: String,
    request: OutgoingRequest,
    expected: String,
    context: serde_json::Value,
}

fn load(dir: &Path) -> Option<Case> {
    let context: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("context.json")).ok()?).ok()?;
    let raw = std::fs::read_to_string(dir.join("request.txt")).ok()?;
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let first = lines.next()?;
    let method = first.split(' ').next()?;
    let target = first.strip_prefix(method)?.trim_start().strip_suffix(" HTTP/1.1")?;
    let mut headers = http::HeaderMap::new();
    let mut host = String::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            return None; // a folded (multi-line) header value cannot be an HTTP header value
        }
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("host") {
            host = value.to_string();
        }
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).ok()?,
            http::HeaderValue::from_str(value).ok()?,
        );
    }
    let url = url::Url::parse(&format!("https://{host}{target}")).ok()?;
    // Cases whose raw target is not a valid request target (spaces, raw UTF-8, dot segments
    // left in) cannot reach the signer unchanged through a URL type; they are reported as
    // skipped.
    let sent = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let raw_ok = target.bytes().all(|b| b.is_ascii_graphic());
    let normalizing = context["normalize"] == true;
    if !raw_ok || (sent != target && !normalizing) {
        return None;
    }
    let mut request = OutgoingRequest::new(http::Method::from_bytes(method.as_bytes()).ok()?, url);
    request.headers = headers;
    request.body = body.as_bytes().to_vec().into();
    let signed = std::fs::read_to_string(dir.join("header-signed-request.txt")).ok()?;
    let expected = signed.lines().find_map(|l| l.strip_prefix("Authorization:"))?.to_string();
    Some(Case { name: dir.file_name()?.to_string_lossy().into(), request, expected, context })
}

#[test]
fn published_sigv4_vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aws-sigv4");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let (mut passed, mut skipped, mut failed) = (0, Vec::new(), Vec::new());
    for dir in &dirs {
        // This vector expects single encoding of path segments; AWS services other than S3 take
        // them encoded twice, as `aws-sigv4` does (its own suite ignores the case for this reason).
        if dir.ends_with("get-space-normalized") {
            skipped.push("get-space-normalized (single-encoding vector)".to_string());
            continue;
        }
        let Some(mut case) = load(dir) else {
            skipped.push(dir.file_name().unwrap().to_string_lossy().to_string());
            continue;
        };
        let c = &case.context;
        let creds = &c["credentials"];
        let identity = Credentials::new(
            creds["access_key_id"].as_str().unwrap(),
            creds["secret_access_key"].as_str().unwrap(),
            creds["token"].as_str().map(str::to_string),
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        if c["normalize"] == false {
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        if c["sign_body"] == true {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        if c["omit_session_token"] == true {
            settings.session_token_mode = SessionTokenMode::Exclude;
        }
        let time = time::OffsetDateTime::parse(
            c["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let now = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(time.unix_timestamp() as u64);
        sign_request(
            &mut case.request,
            &identity,
            c["service"].as_str().unwrap(),
            c["region"].as_str().unwrap(),
            settings,
            PayloadSigning::Signed,
            now,
        )
        .unwrap();
        let got = case
            .request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if got == case.expected {
            passed += 1;
        } else {
            failed.push(format!("{}:\n  got      {got}\n  expected {}", case.name, case.expected));
        }
    }
    assert!(failed.is_empty(), "{} failed:\n{}", failed.len(), failed.join("\n"));
    assert!(passed >= 29, "only {passed} cases ran (skipped: {skipped:?})");
    eprintln!("AWS SigV4 suite: {passed} passed, skipped {skipped:?}");
}
