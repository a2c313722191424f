//! The JWT bearer grant (RFC 7523 §2.1) as service accounts use it, against a token endpoint
//! that verifies the assertion with PyJWT (`tests/peers/jwt_bearer_server.py`): connect, call
//! the API, renew, and refuse a key the server does not trust. Needs the PyPI packages `pyjwt
//! cryptography` (`scripts/test --prepare` installs them).

mod support;

use support::{Home, Running};

fn token_server(home: &Home) -> Running {
    token_server_with_skew(home, 0)
}

fn token_server_with_skew(home: &Home, skew: i64) -> Running {
    let dir = home.dir.path().to_str().unwrap();
    support::python_peer(
        "jwt_bearer_server.py",
        "http",
        &[dir, &skew.to_string()],
        "pyjwt cryptography",
    )
}

fn connector(base: &str) -> String {
    format!(
        "id: sa\nname: Service account\nbase_url: {base}/api\nauth:\n  - type: oauth2\n    grant: jwt_bearer\n    token_url: {base}/token\n    scopes: [read, write]\n    assertion: {{ claims: {{ sub: '{{{{ credentials.client_email }}}}' }} }}\ntest: {{ path: /whoami, label: '{{{{ response.iss }}}}' }}\n"
    )
}

#[test]
fn a_service_account_connects_calls_and_renews_with_signed_assertions() {
    let home = Home::new();
    let server = token_server(&home);
    home.connector("sa", &connector(&server.base));
    let key = std::fs::read_to_string(home.dir.path().join("service.pem")).unwrap();
    // Keys pasted from a JSON key file keep `\n` escapes; both forms work.
    let escaped = key.replace('\n', "\\n");
    home.ok(&[
        "connect",
        "sa",
        "--id",
        "svc",
        "--set",
        "client_email=robot@example.iam",
        "--set",
        &format!("private_key={escaped}"),
        "--set",
        "private_key_id=key-1",
    ]);
    let out = home.ok(&["request", "svc", "GET", "/whoami"]);
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["iss"], "robot@example.iam");
    assert_eq!(body["sub"], "robot@example.iam", "a claim from the connector's template");
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["kid"], "key-1");

    // Renewal signs a new assertion (a fresh jti) and gets a new token.
    home.ok(&["connection", "refresh", "svc"]);
    home.ok(&["request", "svc", "GET", "/whoami"]);
    let (_, stats) = support::http("GET", &format!("{}/stats", server.base), &[], b"").unwrap();
    assert!(stats.contains("\"issued\": 2"), "{stats}");

    let listed = home.ok(&["connection", "list"]);
    assert!(!listed.contains("BEGIN PRIVATE KEY"), "{listed}");
}

#[test]
fn an_untrusted_or_malformed_key_is_refused_and_nothing_is_stored() {
    let home = Home::new();
    let server = token_server(&home);
    home.connector("sa", &connector(&server.base));
    let other = std::fs::read_to_string(home.dir.path().join("other.pem")).unwrap();
    let out = home.run(&[
        "connect",
        "sa",
        "--id",
        "svc",
        "--set",
        "client_email=robot@example.iam",
        "--set",
        &format!("private_key={other}"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let out = home.run(&[
        "connect",
        "sa",
        "--id",
        "svc",
        "--set",
        "client_email=robot@example.iam",
        "--set",
        "private_key=not a key",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a PEM private key"), "{err}");
    assert!(!home.ok(&["connection", "list"]).contains("svc"));
}

#[test]
fn a_refusal_from_a_server_with_a_far_clock_says_so() {
    let home = Home::new();
    let server = token_server_with_skew(&home, 7200);
    home.connector("sa", &connector(&server.base));
    let key = std::fs::read_to_string(home.dir.path().join("service.pem")).unwrap();
    let out = home.run(&[
        "connect",
        "sa",
        "--id",
        "svc",
        "--set",
        "client_email=robot@example.iam",
        "--set",
        &format!("private_key={key}"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(err.contains("the server's clock differs from ours by 7"), "{err}");
    assert_eq!(err.matches("invalid_grant").count(), 1, "said once: {err}");
    assert!(!home.ok(&["connection", "list"]).contains("svc"));
}
