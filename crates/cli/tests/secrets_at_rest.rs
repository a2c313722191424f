//! A canary secret stored through the CLI and through the REST API never appears, in plain,
//! base64 or hex form, in the database file, its WAL, or the logs at trace level.

mod support;

use base64::Engine;
use support::{Home, files_under, http};

const CANARY_CLI: &str = "canary-cli-7f3a9c51e2";
const CANARY_API: &str = "canary-api-b84d20e6f1";
const CANARY_WEBHOOK: &str = "canary-webhook-5d19a0c7e4";
const API_KEY: &str = "test-api-key-secrets";

fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        hex::encode(secret),
        hex::encode_upper(secret),
    ]
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn canaries_never_reach_disk_or_logs_in_plain_form() {
    let upstream = support::httpbin();
    let home = Home::new();
    home.connector(
        "canary",
        &format!(
            "id: canary\nname: Canary\nbase_url: {}\nauth:\n  - type: api_key\n    apply: {{in: header, name: X-Key}}\ntest: {{ path: /headers }}\n",
            upstream.base
        ),
    );
    let logs_dir = home.dir.path().join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();

    let out = home
        .command()
        .env("LATCHKEY_LOG", "trace")
        .args(["connect", "canary", "--id", "cli", "--set", &format!("api_key={CANARY_CLI}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(logs_dir.join("connect.log"), &out.stderr).unwrap();

    let out = home
        .command()
        .env("LATCHKEY_LOG", "trace")
        .args(["request", "cli", "GET", "/headers"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(logs_dir.join("request.log"), &out.stderr).unwrap();

    let mut server = home.serve(API_KEY, &["--log", "trace"]);
    let auth = format!("Bearer {API_KEY}");
    let body = format!(
        r#"{{"id":"api","connector":"canary","credentials":{{"api_key":"{CANARY_API}"}}}}"#
    );
    let (status, text) = http(
        "POST",
        &format!("{}/v1/connections", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");
    let environment = format!(
        r#"{{"id":"prod","webhook_url":"https://hooks.example/p","webhook_secret":"{CANARY_WEBHOOK}"}}"#
    );
    let (status, text) = http(
        "POST",
        &format!("{}/v1/environments", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        environment.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");
    assert!(!text.contains(CANARY_WEBHOOK), "{text}");
    let (status, _) = http(
        "GET",
        &format!("{}/v1/proxy/api/headers", server.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    // Errors do not echo the canary either.
    let bad = format!(
        r#"{{"id":"bad id!","connector":"canary","credentials":{{"api_key":"{CANARY_API}"}}}}"#
    );
    let (_, text) = http(
        "POST",
        &format!("{}/v1/connections", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        bad.as_bytes(),
    )
    .unwrap();
    assert!(!text.contains(CANARY_API), "{text}");
    let _ = server.child.kill();
    let _ = server.child.wait();

    let mut checked = 0;
    let mut files = files_under(&home.data_dir());
    files.extend(files_under(&logs_dir));
    files.push(server.log.clone());
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for canary in [CANARY_CLI, CANARY_API, CANARY_WEBHOOK] {
            for form in forms(canary) {
                assert!(!contains(&bytes, &form), "{} holds the canary as {form}", file.display());
            }
        }
        checked += 1;
    }
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with("latchkey.db")));
    // The trace logs are not empty: the check above looked at real output.
    let server_log = std::fs::read_to_string(&server.log).unwrap();
    assert!(server_log.contains("TRACE") || server_log.contains("DEBUG"), "no trace output");
    assert!(checked >= 4);
}
