//! HTTP Digest against httpbin's `/digest-auth/…`: MD5 and SHA-256, the first request answered
//! after the challenge, later ones with a counted nonce, and a stale nonce answered once.

mod support;

use support::{Home, http, httpbin};

#[test]
fn digest_against_httpbin() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "hb-digest",
        &format!(
            "id: hb-digest\nname: Digest\nbase_url: {}\nauth:\n  - type: digest\ntest: {{ path: /digest-auth/auth/dana/pw-1/MD5, label: \"{{{{ response.user }}}}\" }}\n",
            bin.base
        ),
    );
    let out = home.run(&[
        "connect",
        "hb-digest",
        "--id",
        "bad",
        "--set",
        "username=dana",
        "--set",
        "password=nope",
    ]);
    assert!(!out.status.success(), "a wrong password fails the test");
    assert_eq!(
        home.ok(&[
            "connect",
            "hb-digest",
            "--id",
            "d1",
            "--set",
            "username=dana",
            "--set",
            "password=pw-1"
        ])
        .trim(),
        "d1\tdana"
    );
    for algorithm in ["MD5", "SHA-256"] {
        let body =
            home.ok(&["request", "d1", "GET", &format!("/digest-auth/auth/dana/pw-1/{algorithm}")]);
        assert!(body.contains("\"authenticated\": true"), "{algorithm}: {body}");
    }
    // Through the server, the challenge is kept: later requests answer it with nc=2, 3, … and a
    // nonce httpbin calls stale after 2 uses is answered again, once.
    let server = home.serve("digest-key", &[]);
    for _ in 0..5 {
        let (status, body) = http(
            "GET",
            &format!("{}/v1/proxy/d1/digest-auth/auth/dana/pw-1/SHA-256/2", server.base),
            &[("Authorization", "Bearer digest-key")],
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
}
