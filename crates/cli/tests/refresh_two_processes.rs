//! Two `latchkey serve` processes on one data directory: 200 concurrent proxied requests on a
//! refused token cause exactly one token-endpoint call, and all succeed.

mod support;

use std::time::Duration;

use support::{Home, MockOAuth, http};

#[test]
fn one_refresh_across_two_processes() {
    let provider = MockOAuth::start(Duration::from_millis(300));
    let home = Home::new();
    home.connector(
        "mockprov",
        &format!(
            "id: mockprov\nname: Mock\nbase_url: {0}/api\nauth:\n  - type: oauth2\n    authorize_url: {0}/authorize\n    token_url: {0}/token\n",
            provider.base
        ),
    );
    let secret_file = home.dir.path().join("client-secret");
    std::fs::write(&secret_file, "s3cr3t\n").unwrap();
    home.ok(&[
        "integration",
        "add",
        "app",
        "--connector",
        "mockprov",
        "--client-id",
        "cid",
        "--client-secret-file",
        secret_file.to_str().unwrap(),
    ]);

    let a = home.serve("two-proc-key", &[]);
    let b = home.serve("two-proc-key", &[]);
    let auth = "Bearer two-proc-key";
    let body = br#"{"id":"shared","connector":"mockprov","integration":"app","credentials":{"access_token":"stale","refresh_token":"rt-0"}}"#;
    let (status, text) = http(
        "POST",
        &format!("{}/v1/connections?test=false", a.base),
        &[("Authorization", auth), ("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");

    let bases = [a.base.clone(), b.base.clone()];
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let base = bases[i % 2].clone();
            std::thread::spawn(move || {
                http(
                    "GET",
                    &format!("{base}/v1/proxy/shared/me"),
                    &[("Authorization", "Bearer two-proc-key")],
                    b"",
                )
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        provider.token_requests(),
        1,
        "exactly one token-endpoint call across both processes"
    );

    // The rotated refresh token is what the next refresh sends.
    let out = home.ok(&["connection", "show", "shared"]);
    assert!(out.contains("refresh_token"));
    let (status, text) = http(
        "POST",
        &format!("{}/v1/connections/shared/refresh", b.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(provider.token_requests(), 2);
    let (status, text) = http(
        "GET",
        &format!("{}/v1/connections/shared/token", a.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"access_token\":\"at-2\""), "{text}");
}
