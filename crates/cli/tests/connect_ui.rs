//! The connect page screen by screen in a real browser (headless Chromium through
//! playwright-core, `peers/browser/connect-ui.js`): picker, field help and validation, a failed
//! credential test, the success screen, every language, dark mode, a branded page, the
//! full-page flow, `access_denied`, a reconnect link, the SDK's events and headless mode, with
//! axe-core on every screen. The screenshots it takes are the ones `docs/connect-ui.md` shows.

mod support;

use std::process::Command;

#[test]
fn the_connect_page_in_a_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium} (apt-get install chromium; .ci/run does)"
    );
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/browser");
    assert!(
        std::path::Path::new(browser_dir).join("node_modules/axe-core").exists(),
        "axe-core is not installed: run scripts/test --prepare (it runs `npm ci` in {browser_dir})"
    );
    let bin = support::httpbin();
    let (_home, server, _op) = support::oidc_served("connect-ui-key");
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/connect-ui");
    let out = Command::new("node")
        .arg("connect-ui.js")
        .current_dir(browser_dir)
        .env("LATCHKEY_URL", &server.base)
        .env("LATCHKEY_API_KEY", "connect-ui-key")
        .env("HTTPBIN", &bin.base)
        .env("OAUTH_INTEGRATION", "op")
        .env("SCREENSHOTS", screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains(r#""ok":false"#)).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "failed checks:\n{}\n\nall:\n{stdout}\n{}",
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every screen was checked, not just some.
    for step in [
        "picker: axe",
        "lang ja: axe",
        "dark mode: axe",
        "branded: axe",
        "access_denied: axe",
        "sdk headless: connected",
    ] {
        assert!(stdout.contains(&format!(r#""step":"{step}""#)), "{step} did not run:\n{stdout}");
    }
}
