//! OAuth 1.0a against a protected resource built on oauthlib (a real implementation no one here
//! wrote): every signature method, header and query placement, query and form parameters, and
//! non-ASCII values, through the CLI and the proxy. Needs the PyPI packages `oauthlib cryptography` (`scripts/test --prepare` installs them).

mod support;

use support::{Home, Running, http};

fn provider(home: &Home) -> (Running, String) {
    let key_file = home.dir.path().join("rsa.pem");
    let running = support::python_peer(
        "oauth1_provider.py",
        "http",
        &[key_file.to_str().unwrap()],
        "oauthlib cryptography",
    );
    (running, std::fs::read_to_string(key_file).unwrap())
}

#[test]
fn every_signature_method_verifies_at_oauthlib() {
    let home = Home::new();
    let (peer, private_key) = provider(&home);
    let key_file = home.dir.path().join("key.pem");
    std::fs::write(&key_file, &private_key).unwrap();
    let cases = [
        ("hs1", "HMAC-SHA1", "header"),
        ("hs256", "HMAC-SHA256", "header"),
        ("rsa", "RSA-SHA1", "header"),
        ("plain", "PLAINTEXT", "header"),
        ("hs1q", "HMAC-SHA1", "query"),
    ];
    for (id, method, placement) in cases {
        home.connector(
            id,
            &format!(
                "id: {id}\nname: {id}\nbase_url: {}\nauth:\n  - type: oauth1\n    signature_method: {method}\n    placement: {placement}\n    realm: Example\n",
                peer.base
            ),
        );
        let secret = if method == "RSA-SHA1" {
            format!("private_key={private_key}")
        } else {
            "consumer_secret=consumer-secret-äöü".to_string()
        };
        home.ok(&[
            "connect",
            id,
            "--id",
            id,
            "--no-test",
            "--set",
            "consumer_key=latchkey-consumer-key-0001",
            "--set",
            &secret,
            "--set",
            "token=latchkey-access-token-0001",
            "--set",
            "token_secret=token-secret-0001",
        ]);
        // GET with query parameters, some non-ASCII and reserved.
        let out = home.ok(&[
            "request",
            id,
            "GET",
            "/photos?size=original&name=Zo%C3%AB%20%26%20co",
            "--query",
            "city=Zürich",
        ]);
        assert!(out.contains("\"valid\": true"), "{method} {placement} GET: {out}");
        // POST with a form body.
        let out = home.ok(&[
            "request",
            id,
            "POST",
            "/photos?x=1",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "-d",
            "title=Caf%C3%A9+%C3%A0+Paris&tags=a&tags=b",
        ]);
        assert!(out.contains("\"valid\": true"), "{method} {placement} POST: {out}");
        assert!(out.contains("Café à Paris"), "the form parameters were signed and seen: {out}");
    }
    let server = home.serve("oauth1-key", &[]);
    for (id, method, placement) in cases {
        let (status, body) = http(
            "GET",
            &format!("{}/v1/proxy/{id}/photos?q=%C3%A9t%C3%A9", server.base),
            &[("Authorization", "Bearer oauth1-key")],
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{method} {placement} proxy: {body}");
    }
    // A wrong secret is refused by oauthlib: the test can fail.
    home.connector(
        "wrong",
        &format!("id: wrong\nname: wrong\nbase_url: {}\nauth:\n  - type: oauth1\n", peer.base),
    );
    home.ok(&[
        "connect",
        "wrong",
        "--id",
        "wrong",
        "--no-test",
        "--set",
        "consumer_key=latchkey-consumer-key-0001",
        "--set",
        "consumer_secret=nope",
        "--set",
        "token=latchkey-access-token-0001",
        "--set",
        "token_secret=token-secret-0001",
    ]);
    assert!(!home.run(&["request", "wrong", "GET", "/photos"]).status.success());
}
