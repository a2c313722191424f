//! OAuth2 against oidc-provider (npm, OpenID Certified), started on a free port: the connect
//! flow through Latchkey's hosted page (issuer discovery, PKCE S256, state, `iss`), login and
//! consent driven over HTTP, requests carrying the access token, refreshes with rotation, and
//! the revocation of the tokens when the connection is deleted (RFC 7009, endpoint discovered).
//! The test script installs the peer (`npm ci` in `tests/peers/oidc`).

mod support;

use std::collections::BTreeMap;

use support::{header, http, http_full};

/// Follows the provider's redirects with a cookie jar, logging in and consenting, until the
/// redirect leaves the provider; returns that URL.
fn login_and_consent(provider: &str, authorize_url: &str) -> String {
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let mut url = authorize_url.to_string();
    let mut body: Option<&str> = None;
    for _ in 0..12 {
        let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut headers = vec![("Cookie", cookies.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let (status, head, text) = http_full(
            if body.is_some() { "POST" } else { "GET" },
            &url,
            &headers,
            body.unwrap_or("").as_bytes(),
        )
        .unwrap();
        for cookie in header(&head, "set-cookie") {
            if let Some((k, v)) = cookie.split(';').next().and_then(|c| c.split_once('=')) {
                jar.insert(k.to_string(), v.to_string());
            }
        }
        body = None;
        if (300..400).contains(&status) {
            let location = header(&head, "location")[0].to_string();
            let next =
                if location.starts_with('/') { format!("{provider}{location}") } else { location };
            if !next.starts_with(provider) {
                return next;
            }
            url = next;
            continue;
        }
        assert_eq!(status, 200, "{url}: {text}");
        // An interaction page: the login form, then the consent form.
        body = Some(if text.contains("name=\"login\"") {
            "prompt=login&login=alice&password=pass"
        } else {
            "prompt=consent"
        });
    }
    panic!("the provider never redirected back");
}

#[test]
fn authorization_code_pkce_refresh_rotation_against_oidc_provider() {
    // Nothing listens at the public URL (port 9, discard); see below.
    let public = "http://127.0.0.1:9".to_string();
    let (home, op) = support::oidc_setup(&public);
    // The provider redirects to the public URL; the test delivers that callback to the port the
    // server really listens on.
    let mut server = home.serve("oidc-key", &["--public-url", &public]);
    let auth = "Bearer oidc-key";
    let json = [("Authorization", auth), ("Content-Type", "application/json")];

    let (status, body) = http(
        "POST",
        &format!("{}/v1/connect-sessions", server.base),
        &json,
        br#"{"integration":"op","connection_id":"alice-op","allowed_origin":"http://app.example"}"#,
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
        authorize.starts_with(&format!("{}/auth?", op.base)),
        "discovered endpoint: {authorize}"
    );
    assert!(authorize.contains("code_challenge_method=S256"));
    let binding = header(&head, "set-cookie")[0].split(';').next().unwrap().to_string();

    let callback = login_and_consent(&op.base, &authorize);
    assert!(callback.starts_with(&format!("{public}/oauth/callback?")), "{callback}");
    assert!(callback.contains("iss="), "RFC 9207 iss is sent: {callback}");
    // The callback reaches Latchkey (on its real port) with the browser's binding cookie.
    let callback = callback.replace(&public, &server.base);
    let (status, page) = http("GET", &callback, &[("Cookie", &binding)], b"").unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("alice-op") && page.contains("\"http://app.example\""), "{page}");
    let (_, body) = http(
        "GET",
        &format!("{}/v1/connect-sessions/{}", server.base, session["id"].as_str().unwrap()),
        &json,
        b"",
    )
    .unwrap();
    assert!(body.contains("\"done\""), "{body}");
    // Replaying the callback changes nothing and makes no token call.
    let (_, stats_before) = http("GET", &format!("{}/test/stats", op.base), &[], b"").unwrap();
    let (status, _) = http("GET", &callback, &[("Cookie", &binding)], b"").unwrap();
    assert_eq!(status, 400);
    let (_, stats_after) = http("GET", &format!("{}/test/stats", op.base), &[], b"").unwrap();
    assert_eq!(stats_before, stats_after);

    // Requests carry the access token.
    let (status, body) = http(
        "GET",
        &format!("{}/v1/proxy/alice-op/me", server.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sub\":\"alice\""), "{body}");

    // Forced refreshes rotate the refresh token; oidc-provider revokes the grant if an old one
    // is ever presented again, so requests keep working only if the new one was stored.
    for _ in 0..3 {
        let (status, body) = http(
            "POST",
            &format!("{}/v1/connections/alice-op/refresh", server.base),
            &[("Authorization", auth)],
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let (status, body) = http(
            "GET",
            &format!("{}/v1/proxy/alice-op/me", server.base),
            &[("Authorization", auth)],
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = http(
        "GET",
        &format!("{}/v1/connections/alice-op/token", server.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let access = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let userinfo = format!("{}/me", op.base);
    let (status, body) = http("GET", &userinfo, &[("Authorization", &access)], b"").unwrap();
    assert_eq!(status, 200, "the provider accepts the token before the delete: {body}");

    // Deleting the connection revokes its tokens at the provider's discovered endpoint: the
    // old access token is refused by the provider's userinfo endpoint.
    let (status, head, body) = http_full(
        "DELETE",
        &format!("{}/v1/connections/alice-op", server.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(header(&head, "latchkey-revocation"), ["revoked"], "{head}");
    let (status, body) = http("GET", &userinfo, &[("Authorization", &access)], b"").unwrap();
    assert_eq!(status, 401, "the revoked token is refused: {body}");
    let (status, _) = http(
        "GET",
        &format!("{}/v1/connections/alice-op", server.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 404);
    let _ = server.child.kill();
}
