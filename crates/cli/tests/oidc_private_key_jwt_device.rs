//! OAuth2 client authentication with `private_key_jwt` (RFC 7523 §2.2) and the device
//! authorization grant (RFC 8628) against oidc-provider (npm, OpenID Certified), which checks the
//! client assertion's signature, `iss`, `aud`, `exp` and `jti` (replays refused) and runs its own
//! device pages. Endpoints come from the issuer's discovery document; requests go to the peer's
//! `/api/whoami`, which accepts only the access tokens it issued. The test script installs the
//! peer (`npm ci` in `tests/peers/oidc`).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Home, Running, header, http, http_full};

/// oidc-provider; its web client's redirect URI is not used here.
fn provider() -> Running {
    support::oidc_provider("http://127.0.0.1:9/oauth/callback")
}

fn token_requests(op: &Running) -> u64 {
    let (status, body) = http("GET", &format!("{}/test/stats", op.base), &[], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["token_requests"].as_u64().unwrap()
}

/// A home with a client-credentials connector authenticating with `private_key_jwt`, and an
/// integration `op-key` for the provider's `latchkey-pkjwt` client holding `key_pem`.
fn private_key_jwt_home(op: &Running, key_pem: &str) -> Home {
    let home = Home::new();
    home.connector(
        "okey",
        &format!(
            "id: okey\nname: OIDC service\nbase_url: {0}/api\nauth:\n  - type: oauth2\n    grant: client_credentials\n    issuer: {0}\n    client_auth: private_key_jwt\ntest: {{ path: /whoami, label: \"{{{{ response.client_id }}}}\" }}\n",
            op.base
        ),
    );
    let key = home.dir.path().join("client.pem");
    std::fs::write(&key, key_pem).unwrap();
    home.ok(&[
        "integration",
        "add",
        "op-key",
        "--connector",
        "okey",
        "--client-id",
        "latchkey-pkjwt",
        "--client-secret-file",
        key.to_str().unwrap(),
    ]);
    home
}

#[test]
fn private_key_jwt_client_credentials_connect_call_and_renew_against_oidc_provider() {
    let op = provider();
    // The throwaway key pair the provider generated; it knows the public half as the client's
    // `jwks`.
    let (status, key) = http("GET", &format!("{}/test/client-key", op.base), &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(key.contains("BEGIN PRIVATE KEY"), "{key}");
    let home = private_key_jwt_home(&op, &key);

    let out = home.ok(&["connect", "okey", "--id", "svc", "--integration", "op-key"]);
    assert_eq!(out.trim(), "svc\tlatchkey-pkjwt", "the credential test ran with the token");
    let whoami = || -> serde_json::Value {
        serde_json::from_str(&home.ok(&["request", "svc", "GET", "/whoami"])).unwrap()
    };
    let body = whoami();
    assert_eq!(body["kind"], "ClientCredentials", "{body}");
    assert_eq!(body["client_id"], "latchkey-pkjwt", "{body}");

    // Each renewal is a new token request with a new assertion: oidc-provider refuses a `jti`
    // it has seen, so these pass only if every assertion is fresh.
    let before = token_requests(&op);
    for _ in 0..3 {
        home.ok(&["connection", "refresh", "svc"]);
        assert_eq!(whoami()["client_id"], "latchkey-pkjwt");
    }
    assert_eq!(token_requests(&op), before + 3);

    let shown = home.ok(&["connection", "show", "svc"]);
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn a_key_oidc_provider_does_not_trust_is_refused_as_invalid_client_and_nothing_is_stored() {
    let op = provider();
    // A well-formed RSA key, but not the one registered for the client.
    let other = include_str!("../../core/examples/bench_rsa_key.pem");
    let home = private_key_jwt_home(&op, other);

    let before = token_requests(&op);
    let out = home.run(&["connect", "okey", "--id", "svc", "--integration", "op-key"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused: invalid_client"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    assert_eq!(token_requests(&op), before + 1, "the provider itself refused the assertion");

    let listed = home.ok(&["connection", "list"]);
    assert!(!listed.contains("svc"), "{listed}");
    assert!(!home.run(&["connection", "show", "svc"]).status.success());
}

/// The value of the hidden input `name` in an HTML page.
fn hidden_input(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start =
        page.find(&marker).unwrap_or_else(|| panic!("no `{name}` in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Plays the user on another device: opens `verification_uri`, enters `user_code`, confirms it,
/// logs in as alice and consents on oidc-provider's pages, with a cookie jar, until the
/// provider's success page.
fn approve_on_device_pages(provider: &str, verification_uri: &str, user_code: &str) {
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let mut url = verification_uri.to_string();
    let mut form: Option<String> = None;
    for _ in 0..16 {
        let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut headers = vec![("Cookie", cookies.as_str())];
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let method = if form.is_some() { "POST" } else { "GET" };
        let (status, head, text) =
            http_full(method, &url, &headers, form.take().unwrap_or_default().as_bytes())
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for cookie in header(&head, "set-cookie") {
            if let Some((k, v)) = cookie.split(';').next().and_then(|c| c.split_once('=')) {
                jar.insert(k.to_string(), v.to_string());
            }
        }
        if (300..400).contains(&status) {
            let location = header(&head, "location")[0].to_string();
            url =
                if location.starts_with('/') { format!("{provider}{location}") } else { location };
            assert!(url.starts_with(provider), "the device flow never leaves the provider: {url}");
            continue;
        }
        assert_eq!(status, 200, "{method} {url}: {text}");
        // Each page's form posts back to the URL it came from.
        form = Some(if text.contains("op.deviceInputForm") {
            form_encode(&[("xsrf", &hidden_input(&text, "xsrf")), ("user_code", user_code)])
        } else if text.contains("op.deviceConfirmForm") {
            assert!(text.contains(user_code), "the confirmation shows the code: {text}");
            form_encode(&[
                ("xsrf", &hidden_input(&text, "xsrf")),
                ("user_code", &hidden_input(&text, "user_code")),
                ("confirm", "yes"),
            ])
        } else if text.contains("name=\"login\"") {
            "prompt=login&login=alice&password=pass".into()
        } else if text.contains("name=\"prompt\" value=\"consent\"") {
            "prompt=consent".into()
        } else if text.contains("Sign-in Success") {
            return;
        } else {
            panic!("an unexpected page at {url}: {text}");
        });
    }
    panic!("the provider's device pages never finished");
}

#[test]
fn device_flow_connects_through_oidc_providers_pages_then_calls_and_refreshes() {
    let op = provider();
    let home = Home::new();
    home.connector(
        "odev",
        &format!(
            "id: odev\nname: OIDC device\nbase_url: {0}/api\nauth:\n  - type: oauth2\n    grant: device_code\n    issuer: {0}\n    scopes: [openid]\ntest: {{ path: /whoami, label: \"{{{{ response.account_id }}}}\" }}\n",
            op.base
        ),
    );
    // A public client: no secret.
    home.ok(&[
        "integration",
        "add",
        "op-device",
        "--connector",
        "odev",
        "--client-id",
        "latchkey-device",
    ]);

    let stderr_path = home.dir.path().join("connect.stderr");
    let mut child = home
        .command()
        .args(["connect", "odev", "--id", "tv", "--integration", "op-device"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // "Open {verification_uri} and enter the code {user_code}"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(
        words.len() == 7 && words[0] == "Open" && words[2..6] == ["and", "enter", "the", "code"],
        "{line}\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    let (verification_uri, user_code) = (words[1], words[6]);
    assert_eq!(verification_uri, format!("{}/device", op.base), "discovered from the issuer");

    approve_on_device_pages(&op.base, verification_uri, user_code);

    // The CLI, polling meanwhile, gets the tokens and stores the connection. The deadline is
    // only a guard against a hang; the flow needs a few polls a second apart.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("latchkey connect never finished");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{rest}\n{stderr}");
    assert!(rest.contains(&format!("(or open {}/device?user_code=", op.base)), "{rest}");
    assert!(rest.lines().any(|l| l == "tv\talice"), "labelled by the credential test: {rest}");
    assert!(stderr.contains("checking every 1s"), "the server's interval: {stderr}");

    let whoami = || -> serde_json::Value {
        serde_json::from_str(&home.ok(&["request", "tv", "GET", "/whoami"])).unwrap()
    };
    let body = whoami();
    assert_eq!(body["kind"], "AccessToken", "{body}");
    assert_eq!(body["client_id"], "latchkey-device", "{body}");
    assert_eq!(body["account_id"], "alice", "{body}");

    // The refresh token is rotated on every use; oidc-provider revokes the grant if an old one
    // comes back, so this keeps working only if each new one was stored.
    for _ in 0..2 {
        home.ok(&["connection", "refresh", "tv"]);
        assert_eq!(whoami()["account_id"], "alice");
    }
}
