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
    // The finished flow is a `connect` operation (written in the background: poll a little).
    let mut connects = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, page) =
            http("GET", &format!("{}/v1/operations?kind=connect", server.base), &json, b"")
                .unwrap();
        connects = serde_json::from_str(&page).unwrap();
        if !connects["operations"].as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let connect = &connects["operations"][0];
    assert_eq!(connect["outcome"], "success", "{connects}");
    assert_eq!(
        (&connect["connection"], &connect["integration"]),
        (&"alice-op".into(), &"op".into())
    );
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
    // The audit log records what became of the tokens.
    let (status, body) = http(
        "GET",
        &format!("{}/v1/audit?action=connection.revocation", server.base),
        &[("Authorization", auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = &audit["entries"][0];
    assert_eq!(entry["object"]["id"], "alice-op", "{body}");
    assert_eq!((&entry["outcome"], &entry["detail"]), (&"success".into(), &"revoked".into()));
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

/// `POST` (or another method) with the API key and a JSON body; the status and parsed body.
fn call(
    server: &support::Running,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http(
        method,
        &format!("{}{path}", server.base),
        &[("Authorization", "Bearer oidc-key"), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Refresh failures against oidc-provider are classified: a client secret the provider refuses
/// (`invalid_client`) flags the integration once and holds its refreshes back (no token
/// request reaches the provider until a probe is due or the integration is fixed); fixing it
/// clears the flag and a refresh heals the connection; a refresh token the provider does not
/// know (`invalid_grant`) makes the connection `needs_reauth`, unhealthy `invalid_credentials`.
#[test]
fn refresh_failures_are_classified_against_oidc_provider() {
    let (home, op) = support::oidc_setup("http://127.0.0.1:9");
    let mut server = home.serve("oidc-key", &[]);
    let stats = || http("GET", &format!("{}/test/stats", op.base), &[], b"").unwrap().1;

    // An imported connection whose refresh token the provider never issued.
    let import = serde_json::json!({
        "id": "carol-op", "connector": "oidc", "integration": "op",
        "credentials": { "access_token": "not-issued", "refresh_token": "never-issued" },
        "expires_in": 3600,
    });
    let (status, body) = call(&server, "POST", "/v1/connections?test=false", &import.to_string());
    assert_eq!(status, 201, "{body}");

    // A wrong client secret: the provider answers invalid_client.
    let wrong = serde_json::json!({
        "id": "op", "connector": "oidc", "client_id": "latchkey-web", "client_secret": "wrong-secret",
    });
    let (status, body) = call(&server, "POST", "/v1/integrations", &wrong.to_string());
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&server, "POST", "/v1/connections/carol-op/refresh", "");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "integration_misconfigured", "{body}");
    let (_, integration) = call(&server, "GET", "/v1/integrations/op", "");
    let flag = &integration["misconfigured"];
    assert!(flag["message"].as_str().unwrap().contains("invalid_client"), "{integration}");
    assert!(!flag["message"].as_str().unwrap().contains("wrong-secret"), "{integration}");
    let (_, connection) = call(&server, "GET", "/v1/connections/carol-op", "");
    assert_eq!(connection["status"], "ok", "the user's grant is not at fault: {connection}");
    assert_eq!(connection["health"]["state"], "unhealthy", "{connection}");
    assert_eq!(connection["health"]["reason"], "integration_misconfigured", "{connection}");

    // Held back: no token request reaches the provider while the flag is fresh.
    let before = stats();
    let (status, body) = call(&server, "POST", "/v1/connections/carol-op/refresh", "");
    assert_eq!((status, &body["code"]), (422, &"integration_misconfigured".into()));
    assert!(body["message"].as_str().unwrap().contains("held back"), "{body}");
    assert_eq!(stats(), before, "a held-back refresh makes no token request");

    // Fixed: the flag is gone and the next refresh reaches the provider, which now refuses the
    // refresh token it never issued: invalid_grant.
    let right = serde_json::json!({
        "id": "op", "connector": "oidc", "client_id": "latchkey-web", "client_secret": "web-secret",
    });
    let (status, body) = call(&server, "POST", "/v1/integrations", &right.to_string());
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["misconfigured"], serde_json::Value::Null, "{body}");
    let (status, body) = call(&server, "POST", "/v1/connections/carol-op/refresh", "");
    assert_eq!((status, &body["code"]), (409, &"needs_reauth".into()), "{body}");
    assert_ne!(stats(), before, "the refresh reached the provider");
    let (_, connection) = call(&server, "GET", "/v1/connections/carol-op", "");
    assert_eq!(connection["status"], "needs_reauth", "{connection}");
    assert_eq!(connection["health"]["reason"], "invalid_credentials", "{connection}");
    assert_eq!(connection["health"]["last_error"]["code"], "token_refused", "{connection}");
    let (_, integration) = call(&server, "GET", "/v1/integrations/op", "");
    assert_eq!(integration["misconfigured"], serde_json::Value::Null, "{integration}");
    let _ = server.child.kill();
}
