//! OAuth2 `tls_client_auth` (RFC 8705): the integration's client certificate authenticates the
//! client at a token endpoint that requires mutual TLS, and is presented again to the API that
//! checks the token is bound to it (`tests/peers/mtls_server.py`, Python's `ssl` and
//! `cryptography`).

mod support;

use support::{Home, Running};

fn server(home: &Home) -> Running {
    let dir = home.dir.path().to_str().unwrap();
    support::python_peer("mtls_server.py", "https", &[dir], "cryptography")
}

fn setup(certificate: &str) -> (Home, Running) {
    let home = Home::new();
    let peer = server(&home);
    home.connector(
        "bank",
        &format!(
            "id: bank\nname: Bank\nbase_url: {base}/api\nauth:\n  - type: oauth2\n    grant: client_credentials\n    token_url: {base}/token\n    client_auth: tls_client_auth\n",
            base = peer.base
        ),
    );
    let ca = home.dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap().to_string();
    let bundle = home.dir.path().join(certificate);
    home.ok(&[
        "--ca-file",
        &ca,
        "integration",
        "add",
        "bank-app",
        "--connector",
        "bank",
        "--client-id",
        "cid",
        "--client-secret-file",
        bundle.to_str().unwrap(),
    ]);
    (home, peer)
}

#[test]
fn the_client_certificate_authenticates_and_binds_the_token() {
    let (home, _peer) = setup("client.pem");
    let ca = home.dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    home.ok(&["--ca-file", ca, "connect", "bank", "--id", "acct", "--integration", "bank-app"]);
    let out = home.ok(&["--ca-file", ca, "request", "acct", "GET", "/me"]);
    assert!(
        out.contains("\"cn\": \"latchkey-client\"") || out.contains("\"cn\":\"latchkey-client\""),
        "{out}"
    );
}

#[test]
fn a_certificate_the_server_does_not_trust_is_refused_and_nothing_is_stored() {
    let (home, _peer) = setup("rogue.pem");
    let ca = home.dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let out = home.run(&[
        "--ca-file",
        ca,
        "connect",
        "bank",
        "--id",
        "acct",
        "--integration",
        "bank-app",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    assert!(!home.ok(&["connection", "list"]).contains("acct"));

    // Without the CA, the server itself is not trusted.
    let (home, _peer) = setup("client.pem");
    let out = home.run(&["connect", "bank", "--id", "acct", "--integration", "bank-app"]);
    assert!(!out.status.success());
}
