//! OAuth 2.0 requests and responses as values: each test asserts the exact request a flow sends
//! and how a (quirky) response is read.

use latchkey_core::Secret;
use latchkey_core::connector::{AuthMethod, OAuth2Auth, parse_connector};
use latchkey_core::oauth2::{
    AuthorizeRequest, Client, PkceVerifier, TokenGrant, authorize_url, parse_token_response,
    token_request,
};

fn method(extra: &str) -> OAuth2Auth {
    let src = format!(
        "id: p\nname: P\nbase_url: https://api.p.example\nauth:\n  - type: oauth2\n    authorize_url: https://p.example/authorize\n    token_url: https://p.example/token\n{extra}"
    );
    match parse_connector(&src, "p.yaml").unwrap().auth.remove(0) {
        AuthMethod::OAuth2(m) => *m,
        other => panic!("{other:?}"),
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[test]
fn authorize_url_carries_state_pkce_scopes_and_extras() {
    let m = method(
        "    scope_separator: \",\"\n    authorize_params: { access_type: offline, prompt: consent }\n",
    );
    let endpoint = "https://p.example/authorize?tenant=1".parse().unwrap();
    let verifier = PkceVerifier::from_random([7; 32]);
    let url = authorize_url(
        &m,
        AuthorizeRequest {
            endpoint: &endpoint,
            client_id: "cid",
            redirect_uri: "https://lk.example/oauth/callback",
            scopes: &["a".into(), "b".into()],
            state: "st",
            code_challenge: Some(&verifier.challenge()),
        },
    );
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("tenant"), Some("1"));
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("client_id"), Some("cid"));
    assert_eq!(get("redirect_uri"), Some("https://lk.example/oauth/callback"));
    assert_eq!(get("scope"), Some("a,b"));
    assert_eq!(get("state"), Some("st"));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(get("code_challenge"), Some(verifier.challenge().as_str()));
    assert_eq!(get("access_type"), Some("offline"));
    assert_eq!(get("prompt"), Some("consent"));
}

#[test]
fn code_exchange_with_client_secret_in_body() {
    let m = method("");
    let secret = Secret::new("shh");
    let code = Secret::new("the-code");
    let verifier = Secret::new("v".repeat(43));
    let req = token_request(
        &m,
        &"https://p.example/token".parse().unwrap(),
        Client { id: "cid", secret: Some(&secret), assertion: None },
        TokenGrant::AuthorizationCode {
            code: &code,
            redirect_uri: "https://cb",
            code_verifier: Some(&verifier),
        },
    )
    .unwrap();
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(req.headers["accept"], "application/json");
    assert!(req.headers.get("authorization").is_none());
    assert_eq!(
        form(&req.body),
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), "the-code".into()),
            ("redirect_uri".into(), "https://cb".into()),
            ("code_verifier".into(), "v".repeat(43)),
            ("client_id".into(), "cid".into()),
            ("client_secret".into(), "shh".into()),
        ]
    );
}

#[test]
fn refresh_with_basic_client_auth_json_body_and_extra_params() {
    let m = method(
        "    client_auth: basic\n    refresh_params: { scope: all }\n    token_request: { format: json, headers: { X-Extra: 'y' } }\n",
    );
    let secret = Secret::new("s p:c");
    let refresh = Secret::new("rt-1");
    let req = token_request(
        &m,
        &"https://p.example/token".parse().unwrap(),
        Client { id: "id:1", secret: Some(&secret), assertion: None },
        TokenGrant::RefreshToken { refresh_token: &refresh },
    )
    .unwrap();
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode("id%3A1:s+p%3Ac");
    assert_eq!(req.headers["authorization"], format!("Basic {expected}").as_str());
    assert!(req.headers["authorization"].is_sensitive());
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["x-extra"], "y");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"grant_type": "refresh_token", "refresh_token": "rt-1", "scope": "all"})
    );
}

#[test]
fn client_credentials_and_password_grants() {
    let m = method("    token_params: { audience: api }\n");
    let secret = Secret::new("s");
    let url = "https://p.example/token".parse().unwrap();
    let scopes = vec!["read".to_string(), "write".to_string()];
    let req = token_request(
        &m,
        &url,
        Client { id: "c", secret: Some(&secret), assertion: None },
        TokenGrant::ClientCredentials { scopes: &scopes },
    )
    .unwrap();
    let f = form(&req.body);
    assert!(f.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(f.contains(&("scope".into(), "read write".into())));
    assert!(f.contains(&("audience".into(), "api".into())));

    let (user, pass) = (Secret::new("u"), Secret::new("p w"));
    let req = token_request(
        &m,
        &url,
        Client { id: "c", secret: None, assertion: None },
        TokenGrant::Password { username: &user, password: &pass, scopes: &[] },
    )
    .unwrap();
    let f = form(&req.body);
    assert!(f.contains(&("grant_type".into(), "password".into())));
    assert!(f.contains(&("password".into(), "p w".into())));
    assert!(f.contains(&("client_id".into(), "c".into())));
    assert!(!f.iter().any(|(k, _)| k == "client_secret" || k == "scope"));
}

#[test]
fn token_responses_with_quirks() {
    let plain = method("").token_response;
    let t = parse_token_response(
        &plain,
        200,
        br#"{"access_token":"a","refresh_token":"r","expires_in":3600}"#,
    )
    .unwrap();
    assert_eq!(t.access_token.expose(), "a");
    assert_eq!(t.refresh_token.unwrap().expose(), "r");
    assert_eq!(t.expires_in.unwrap().as_secs(), 3600);

    // expires_in as a string; no refresh token.
    let t =
        parse_token_response(&plain, 200, br#"{"access_token":"a","expires_in":"120"}"#).unwrap();
    assert_eq!(t.expires_in.unwrap().as_secs(), 120);
    assert!(t.refresh_token.is_none());

    // Form-encoded answer (providers that ignore Accept).
    let t =
        parse_token_response(&plain, 200, b"access_token=a%20b&scope=x&token_type=bearer").unwrap();
    assert_eq!(t.access_token.expose(), "a b");
    assert!(t.expires_in.is_none());

    // Milliseconds, nested paths, kept fields, default lifetime.
    let nested = method(
        "    token_response:\n      access_token: authed_user.access_token\n      expires_in: data.ttl\n      expires_in_unit: milliseconds\n      keep: { instance_url: instance_url, team: team.id }\n",
    )
    .token_response;
    let t = parse_token_response(
        &nested,
        200,
        br#"{"authed_user":{"access_token":"xoxp"},"data":{"ttl":7200000},"instance_url":"https://na1.example","team":{"id":"T1"}}"#,
    )
    .unwrap();
    assert_eq!(t.access_token.expose(), "xoxp");
    assert_eq!(t.expires_in.unwrap().as_secs(), 7200);
    assert_eq!(t.kept["instance_url"], "https://na1.example");
    assert_eq!(t.kept["team"], "T1");

    let defaulted = method("    token_response: { default_lifetime: 900 }\n").token_response;
    let t = parse_token_response(&defaulted, 200, br#"{"access_token":"a"}"#).unwrap();
    assert_eq!(t.expires_in.unwrap().as_secs(), 900);
}

#[test]
fn error_bodies_are_errors_even_with_200() {
    let plain = method("").token_response;
    let err = parse_token_response(
        &plain,
        200,
        br#"{"error":"invalid_grant","error_description":"expired"}"#,
    )
    .unwrap_err();
    assert!(err.is_invalid_grant());
    assert!(err.to_string().contains("invalid_grant"));
    let err = parse_token_response(&plain, 400, b"error=invalid_client").unwrap_err();
    assert!(!err.is_invalid_grant() && !err.is_transient());
    let err = parse_token_response(&plain, 503, b"<html>down</html>").unwrap_err();
    assert!(err.is_transient());
    let err = parse_token_response(&plain, 200, br#"{"token":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("access_token"));
    // An unreadable lifetime loses nothing: the tokens are kept, the lifetime is not said.
    for odd in [r#""soon""#, r#""NaN""#, "{}", "[]", "true"] {
        let body = format!(r#"{{"access_token":"a","refresh_token":"r2","expires_in":{odd}}}"#);
        let t = parse_token_response(&plain, 200, body.as_bytes()).unwrap();
        assert_eq!(t.access_token.expose(), "a", "{odd}");
        assert_eq!(t.refresh_token.as_ref().map(|r| r.expose()), Some("r2"), "{odd}");
        assert_eq!(t.expires_in, None, "{odd}");
    }
    let err = parse_token_response(&plain, 200, b"").unwrap_err();
    assert!(err.to_string().contains("malformed"));
}

#[test]
fn oauth2_connectors_are_checked() {
    let err = parse_connector(
        "id: p\nname: P\nbase_url: https://a.example\nauth:\n  - type: oauth2\n    token_url: https://p.example/t\n",
        "p.yaml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("authorize_url"), "{err}");
    let ok = parse_connector(
        "id: p\nname: P\nbase_url: https://a.example\nauth:\n  - type: oauth2\n    grant: client_credentials\n    token_url: https://p.example/t\n",
        "p.yaml",
    );
    assert!(ok.is_ok());
}
