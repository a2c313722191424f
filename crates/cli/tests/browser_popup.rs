//! The connect popup in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core. A test app page calls `Latchkey.connect`, the popup goes through login and
//! consent at oidc-provider and closes, and the promise resolves; when the user closes the popup
//! early, it rejects with `window_closed`; when the user cancels at the provider (which sends
//! `error=access_denied` back), it rejects with `access_denied` and the session reads failed.
//! Screenshots go to `target/browser-artifacts/`.

mod support;

use std::process::Command;

fn peers() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers").to_string()
}

#[test]
fn popup_resolves_after_consent_and_rejects_when_closed_or_denied() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium} (apt-get install chromium; .ci/run does)"
    );
    let browser_dir = format!("{}/browser", peers());
    assert!(
        std::path::Path::new(&browser_dir).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run scripts/test --prepare (it runs `npm ci` in {browser_dir})"
    );
    let (_home, server, _op) = support::oidc_served("browser-key");
    let base = server.base.clone();
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/browser-artifacts");
    for mode in ["approve", "close-early", "deny"] {
        let out = Command::new("node")
            .arg("connect-popup.js")
            .current_dir(&browser_dir)
            .env("LATCHKEY_URL", &base)
            .env("LATCHKEY_API_KEY", "browser-key")
            .env("INTEGRATION", "op")
            .env("ARTIFACTS", artifacts)
            .env("MODE", mode)
            .env("CHROMIUM", &chromium)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if mode == "approve" {
            assert_eq!(outcome["result"]["ok"], true, "{outcome}");
            assert_eq!(outcome["result"]["connection"]["connector"], "oidc");
            assert_eq!(outcome["result"]["connection"]["label"], "alice");
        } else if mode == "close-early" {
            assert_eq!(outcome["result"]["ok"], false, "{outcome}");
            assert_eq!(outcome["result"]["code"], "window_closed", "{outcome}");
        } else {
            assert_eq!(outcome["result"]["code"], "access_denied", "{outcome}");
            assert_eq!(outcome["session"]["status"], "failed", "{outcome}");
            assert_eq!(outcome["session"]["error"]["code"], "access_denied", "{outcome}");
        }
    }
}
