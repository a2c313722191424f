//! The hosted connect page for a non-OAuth connector: a form built from the connector's fields,
//! a wrong credential shown again with the reason, the result posted to the exact allowed origin,
//! the session single-use and pollable, and the pages' security headers.

mod support;

use support::{Home, http, http_full, httpbin};

const KEY: &str = "connect-page-key";

#[test]
fn form_flow_creates_the_connection_and_reports_to_the_opener() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "hb",
        &format!(
            "id: hb\nname: Httpbin Basic\nbase_url: {}\nauth:\n  - type: basic\n    username: {{ label: Account e-mail }}\n    password: {{ label: API token, hint: Settings → Tokens }}\ntest: {{ path: /basic-auth/ann/tok-1, label: \"{{{{ response.user }}}}\" }}\n",
            bin.base
        ),
    );
    home.ok(&["integration", "add", "hb-app", "--connector", "hb"]);
    let server = home.serve(KEY, &[]);
    let auth = format!("Bearer {KEY}");
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];

    let (status, body) = http(
        "POST",
        &format!("{}/v1/connect-sessions", server.base),
        &h,
        br#"{"integration":"hb-app","connection_id":"ann-hb","allowed_origin":"http://app.example:8080"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let session: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = session["token"].as_str().unwrap();
    assert!(session["url"].as_str().unwrap().ends_with(&format!("/connect/{token}")));
    let page_url = format!("{}/connect/{token}", server.base);

    let (status, head, html) = http_full("GET", &page_url, &[], b"").unwrap();
    assert_eq!(status, 200, "{html}");
    let head = head.to_ascii_lowercase();
    for expected in [
        "cache-control: no-store",
        "referrer-policy: no-referrer",
        "content-security-policy: default-src 'none'",
    ] {
        assert!(head.contains(expected), "missing {expected}: {head}");
    }
    assert!(
        html.contains("Account e-mail")
            && html.contains("API token")
            && html.contains("Settings → Tokens")
    );
    assert!(html.contains(r#"type="password""#), "secret fields are hidden");
    assert!(!html.contains("http://") || !html.contains("<script src"), "no third-party resources");

    let form = "username=ann&password=wrong";
    let (status, html) = http(
        "POST",
        &page_url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(
        html.contains("401") && html.contains("<form"),
        "the form comes back with the reason: {html}"
    );
    assert!(!html.contains("wrong"), "the submitted secret is not echoed");

    let form = "username=ann&password=tok-1";
    let (status, html) = http(
        "POST",
        &page_url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#""http://app.example:8080""#), "posts to the exact origin: {html}");
    assert!(html.contains("postMessage") && !html.contains(r#"postMessage(result, "*")"#));
    assert!(html.contains("ann-hb"));

    let (_, body) = http(
        "GET",
        &format!("{}/v1/connect-sessions/{}", server.base, session["id"].as_str().unwrap()),
        &h,
        b"",
    )
    .unwrap();
    let polled: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(polled["status"], "done");
    assert_eq!(polled["connection_id"], "ann-hb");
    let (_, body) = http("GET", &format!("{page_url}/status"), &[], b"").unwrap();
    assert!(body.contains("\"done\""), "{body}");

    // Single use.
    let (status, _) = http("GET", &page_url, &[], b"").unwrap();
    assert_eq!(status, 410);
    // The connection works through the proxy.
    let (status, body) = http(
        "GET",
        &format!("{}/v1/proxy/ann-hb/basic-auth/ann/tok-1", server.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // latchkey.js is served.
    let (status, js) = http("GET", &format!("{}/latchkey.js", server.base), &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(js.contains("Latchkey") && js.contains("window.open"));
}

#[test]
fn sessions_refuse_paths_and_bad_origins() {
    let home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    home.ok(&["integration", "add", "p", "--connector", "plain"]);
    let server = home.serve(KEY, &[]);
    let auth = format!("Bearer {KEY}");
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let url = format!("{}/v1/connect-sessions", server.base);
    for origin in ["*", "https://app.example/path", "javascript:alert(1)", "null"] {
        let body = format!(r#"{{"integration":"p","allowed_origin":"{origin}"}}"#);
        let (status, text) = http("POST", &url, &h, body.as_bytes()).unwrap();
        assert_eq!(status, 400, "{origin}: {text}");
    }
    let (status, _) =
        http("GET", &format!("{}/connect/not-a-real-token", server.base), &[], b"").unwrap();
    assert_eq!(status, 410);
    let (status, html) =
        http("GET", &format!("{}/oauth/callback?state=forged&code=x", server.base), &[], b"")
            .unwrap();
    assert_eq!(status, 400);
    assert!(html.contains("does not match a flow"), "{html}");
}
