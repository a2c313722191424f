//! The operator console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core through `tests/peers/console/console.js` against `latchkey serve` and
//! oidc-provider. It signs in with an API key, creates an integration, makes a connect link that
//! the end user finishes at oidc-provider, finds the connection (filters, search by id), checks
//! and refreshes it now, opens its operations, deletes it after a confirmation, revokes a key,
//! signs out and signs in again through OpenID Connect; axe-core finds no serious or
//! critical violation on any page, no page breaks its CSP or holds a secret (API keys, the
//! client secret, the connection's access token). Screenshots of every page are written to
//! `docs/console/`, which `docs/console.md` shows.

mod support;

use std::process::Command;

#[test]
fn the_console_works_in_a_browser_and_keeps_its_promises() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium} (apt-get install chromium)"
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/console");
    assert!(
        std::path::Path::new(dir).join("node_modules/axe-core").exists(),
        "playwright-core and axe-core are not installed: run scripts/test --prepare (it runs `npm ci` in {dir})"
    );
    // The provider must know the server's redirect URIs, and the server the provider's issuer:
    // the server starts once to get its address, and again there with the console's sign-in.
    let key = "console-bootstrap-key";
    let home = support::Home::new();
    let first = home.serve(key, &[]);
    let address = first.base.trim_start_matches("http://").to_owned();
    let op = support::oidc_provider_with(
        &format!("{}/oauth/callback", first.base),
        &[&format!("{}/console/oidc/callback", first.base)],
    );
    drop(first);
    let secret = home.dir.path().join("oidc-secret");
    std::fs::write(&secret, "web-secret").unwrap();
    home.connector("oidc", &support::oidc_connector(&op.base));
    let mut home = home;
    home.extra_env
        .push(("LATCHKEY_CONSOLE_OIDC_CLIENT_SECRET_FILE".into(), secret.display().to_string()));
    let server = home.serve_at(
        key,
        &address,
        &[
            "--console-oidc-issuer",
            &op.base,
            "--console-oidc-client-id",
            "latchkey-web",
            "--console-oidc-allow",
            "sub:alice",
        ],
    );
    let auth = format!("Bearer {key}");
    let integration = serde_json::json!({
        "id": "op", "connector": "oidc", "client_id": "latchkey-web", "client_secret": "web-secret",
    });
    let (status, body) = support::http(
        "POST",
        &format!("{}/v1/integrations", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        integration.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/console");
    let out = Command::new("node")
        .arg("console.js")
        .current_dir(dir)
        .env("LATCHKEY_URL", &server.base)
        .env("LATCHKEY_API_KEY", key)
        .env("OIDC_SIGN_IN", "1")
        .env("SCREENSHOTS", screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!("no report: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(out.status.success() && report["ok"] == true, "{report:#}");
    println!("{report:#}");
    for page in [
        "sign-in",
        "overview",
        "integrations",
        "connections",
        "connection",
        "operations",
        "links",
        "api-keys",
        "audit",
    ] {
        assert!(
            report["pages"].as_array().unwrap().iter().any(|p| p == page),
            "{page} was not visited: {report}"
        );
        assert!(std::path::Path::new(screenshots).join(format!("{page}.png")).exists());
    }
}
