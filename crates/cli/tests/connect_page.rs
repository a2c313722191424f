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
    assert!(html.contains("does not belong to a connection started in this browser"), "{html}");
    assert!(!html.contains("postMessage"), "a refused callback tells no opener: {html}");
}

/// A connector with a consent flow first and a form method second: the app picks the method
/// per session; an unknown method is refused; re-authorising keeps the connection's method.
#[test]
fn a_session_connects_with_the_method_the_app_picks() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "two",
        &format!(
            "id: two\nname: Two ways\nbase_url: {}\nauth:\n  - type: oauth2\n    authorize_url: https://id.example/authorize\n    token_url: https://id.example/token\n  - type: basic\n    username: {{ label: Account e-mail }}\n    password: {{ label: API token }}\ntest: {{ path: /basic-auth/ann/tok-1 }}\n",
            bin.base
        ),
    );
    home.ok(&["integration", "add", "two-app", "--connector", "two", "--client-id", "cid"]);
    let server = home.serve(KEY, &[]);
    let auth = format!("Bearer {KEY}");
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let sessions = format!("{}/v1/connect-sessions", server.base);
    let open = |body: &str| {
        let (status, text) = http("POST", &sessions, &h, body.as_bytes()).unwrap();
        assert_eq!(status, 201, "{text}");
        let session: serde_json::Value = serde_json::from_str(&text).unwrap();
        format!("{}/connect/{}", server.base, session["token"].as_str().unwrap())
    };

    let (status, text) =
        http("POST", &sessions, &h, br#"{"integration":"two-app","auth":"api_key"}"#).unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("auth_method_not_found") && text.contains("oauth2, basic"), "{text}");

    // By default the first method: the page sends the browser to the provider.
    let (status, head, _) =
        http_full("GET", &open(r#"{"integration":"two-app"}"#), &[], b"").unwrap();
    assert!((300..400).contains(&status), "{status}");
    assert!(head.contains("id.example/authorize"), "{head}");

    // Picked: the basic form, and the connection records the method.
    let page = open(r#"{"integration":"two-app","connection_id":"ann-two","auth":"basic"}"#);
    let (status, html) = http("GET", &page, &[], b"").unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Account e-mail") && html.contains("API token"), "{html}");
    let form = "username=ann&password=tok-1";
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, html) = http("POST", &page, &form_type, form.as_bytes()).unwrap();
    assert_eq!(status, 200, "{html}");
    let shown = home.ok(&["connection", "show", "ann-two"]);
    assert!(shown.contains("basic"), "{shown}");

    // Re-authorising without naming a method keeps the connection's.
    let page = open(r#"{"integration":"two-app","connection_id":"ann-two"}"#);
    let (status, html) = http("GET", &page, &[], b"").unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Account e-mail"), "{html}");
}
