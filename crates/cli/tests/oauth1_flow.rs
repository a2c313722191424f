//! The OAuth 1.0a three-legged flow (RFC 5849 §2) against a provider built on oauthlib's
//! request-token, access-token and resource endpoints (`tests/peers/oauth1_flow_provider.py`):
//! through the hosted connect page and through `latchkey connect`'s loopback redirect, then
//! signed requests with the token credentials; a refused authorization stores nothing.
//! Needs the PyPI packages `oauthlib` (`scripts/test --prepare` installs them).

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{Home, Running, header, http, http_full};

fn setup() -> (Home, Running) {
    let home = Home::new();
    let peer = support::python_peer("oauth1_flow_provider.py", "http", &[], "oauthlib");
    home.connector(
        "flow",
        &format!(
            "id: flow\nname: Flow\nbase_url: {base}/api\nauth:\n  - type: oauth1\n    request_token_url: {base}/request_token\n    authorize_url: {base}/authorize\n    access_token_url: {base}/access_token\n    token_keep: {{ user_id: user_id }}\ntest: {{ path: /me, label: '{{{{ response.user }}}}' }}\n",
            base = peer.base
        ),
    );
    let secret = home.dir.path().join("consumer-secret");
    std::fs::write(&secret, "flow-consumer-secret-0001").unwrap();
    home.ok(&[
        "integration",
        "add",
        "app",
        "--connector",
        "flow",
        "--client-id",
        "flow-consumer-key-0001",
        "--client-secret-file",
        secret.to_str().unwrap(),
    ]);
    (home, peer)
}

#[test]
fn the_hosted_connect_page_runs_the_three_legged_flow() {
    let (home, peer) = setup();
    // Its public URL is the address it listens on; the callback goes to the provider per flow.
    let server = home.serve("o1-key", &[]);
    let public = server.base.clone();
    // Opens a connect session's page: the provider's authorize URL and the binding cookie; then
    // lets the provider approve: the callback (to the server's real port) it redirects to.
    let start = || {
        let json = [("Authorization", "Bearer o1-key"), ("Content-Type", "application/json")];
        let (status, body) = http(
            "POST",
            &format!("{}/v1/connect-sessions", server.base),
            &json,
            br#"{"integration":"app","connection_id":"ada-flow"}"#,
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
        let session: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (status, head, _) = http_full(
            "GET",
            &format!("{}/connect/{}", server.base, session["token"].as_str().unwrap()),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(status, 303, "{head}");
        let authorize = header(&head, "location")[0].to_string();
        assert!(
            authorize.starts_with(&format!("{}/authorize?oauth_token=", peer.base)),
            "{authorize}"
        );
        let binding = header(&head, "set-cookie")[0].split(';').next().unwrap().to_string();
        let (status, head, _) = http_full("GET", &authorize, &[], b"").unwrap();
        assert_eq!(status, 302);
        let callback = header(&head, "location")[0].to_string();
        assert!(callback.starts_with(&format!("{public}/oauth/callback?")), "{callback}");
        assert!(callback.contains("oauth_verifier="), "{callback}");
        (callback, binding)
    };

    // Without the browser's binding cookie the callback is refused and spends nothing: the
    // browser that started the flow finishes it; a replay is refused.
    let (callback, binding) = start();
    let (status, _) = http("GET", &callback, &[], b"").unwrap();
    assert_eq!(status, 400);
    let (_, stats) = http("GET", &format!("{}/stats", peer.base), &[], b"").unwrap();
    assert!(stats.contains("\"access\": 0"), "no token exchange happened: {stats}");
    let (status, page) = http("GET", &callback, &[("Cookie", &binding)], b"").unwrap();
    assert_eq!(status, 200, "{page}");
    let (status, _) = http("GET", &callback, &[("Cookie", &binding)], b"").unwrap();
    assert_eq!(status, 400, "a state is used once");
    let (_, stats) = http("GET", &format!("{}/stats", peer.base), &[], b"").unwrap();
    assert!(stats.contains("\"access\": 1"), "one token exchange: {stats}");

    // Again, re-authorising the connection it made.
    let (callback, binding) = start();
    let (status, page) = http("GET", &callback, &[("Cookie", &binding)], b"").unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("ada-flow"), "{page}");

    let (status, body) = http(
        "GET",
        &format!("{}/v1/proxy/ada-flow/me", server.base),
        &[("Authorization", "Bearer o1-key")],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"user\": \"ada\"") || body.contains("\"user\":\"ada\""), "{body}");
    let shown = home.ok(&["connection", "show", "ada-flow"]);
    assert!(shown.contains("42"), "user_id kept into config: {shown}");
    assert!(!shown.contains("flow-consumer-secret-0001"), "{shown}");
}

fn run_cli_flow(home: &Home, deny: bool) -> std::process::Output {
    let mut child = home
        .command()
        .args(["connect", "flow", "--integration", "app", "--id", "cli-flow", "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let mut url = url.trim().to_string();
    if deny {
        url.push_str("&deny=1");
    }
    let (status, head, _) = http_full("GET", &url, &[], b"").unwrap();
    assert_eq!(status, 302, "{url}: {head}");
    let callback = header(&head, "location")[0].to_string();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let (status, _) = http("GET", &callback, &[], b"").unwrap();
    assert_eq!(status, 200);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut output = child.wait_with_output().unwrap();
    output.stdout = rest.into_bytes();
    output
}

#[test]
fn latchkey_connect_runs_the_flow_over_a_loopback_redirect() {
    let (home, _peer) = setup();
    let denied = run_cli_flow(&home, true);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("no code"), "{denied:?}");
    assert!(!home.ok(&["connection", "list"]).contains("cli-flow"));

    let out = run_cli_flow(&home, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-flow\tada"), "{out:?}");
    let response = home.ok(&["request", "cli-flow", "GET", "/me"]);
    assert!(response.contains("ada"), "{response}");
}
