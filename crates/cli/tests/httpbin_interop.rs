//! Basic, Bearer and API-key placements against a real httpbin, through the CLI and the proxy.

mod support;

use support::{Home, http, httpbin};

const API_KEY: &str = "test-api-key-0123456789";

fn connector(id: &str, base: &str, auth: &str) -> String {
    format!("id: {id}\nname: {id}\nbase_url: {base}\nauth:\n{auth}\n")
}

#[test]
fn basic_auth_through_cli_and_proxy() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "hb-basic",
        &format!(
            "{}test: {{ path: /basic-auth/alice/s3cret, label: \"{{{{ response.user }}}}\" }}\n",
            connector("hb-basic", &bin.base, "  - type: basic")
        ),
    );
    // A wrong password fails the test and stores nothing.
    let out = home.run(&[
        "connect",
        "hb-basic",
        "--id",
        "bad",
        "--set",
        "username=alice",
        "--set",
        "password=nope",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(home.run(&["connection", "show", "bad"]).status.code() != Some(0));

    let out = home.ok(&[
        "connect",
        "hb-basic",
        "--id",
        "c1",
        "--set",
        "username=alice",
        "--set",
        "password=s3cret",
    ]);
    assert_eq!(out.trim(), "c1\talice");
    let body = home.ok(&["request", "c1", "GET", "/basic-auth/alice/s3cret"]);
    assert!(body.contains("\"authenticated\": true"), "{body}");
    // Status >= 400 exits non-zero.
    assert!(!home.run(&["request", "c1", "GET", "/status/404"]).status.success());
    let with_head = home.ok(&["request", "c1", "GET", "/basic-auth/alice/s3cret", "-i"]);
    assert!(with_head.starts_with("HTTP/1.1 200 OK"), "{with_head}");
    // Each request is in the operation log, with its status and a redacted query.
    home.ok(&["request", "c1", "GET", "/get?token=query-canary"]);
    let logs: serde_json::Value = serde_json::from_str(&home.ok(&[
        "logs",
        "--connection",
        "c1",
        "--kind",
        "request",
        "--output",
        "json",
    ]))
    .unwrap();
    let seen: Vec<(&str, u64)> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["path"].as_str().unwrap(), o["upstream_status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/basic-auth/alice/s3cret", 200),
            ("/status/404", 404),
            ("/basic-auth/alice/s3cret", 200),
            ("/get?token=…", 200),
        ]
    );
    assert!(!logs.to_string().contains("query-canary"), "{logs}");
    // The credential test `connect` ran is a check; the failed one of `bad` too.
    let checks: serde_json::Value =
        serde_json::from_str(&home.ok(&["logs", "--kind", "check", "--output", "json"])).unwrap();
    let checks: Vec<(&str, u64)> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["connection"].as_str().unwrap(), o["upstream_status"].as_u64().unwrap()))
        .collect();
    assert_eq!(checks, [("bad", 401), ("c1", 200)]);
    let failures = home.ok(&["logs", "--outcome", "failure", "--kind", "request"]);
    assert!(failures.contains("/status/404") && !failures.contains("/get"), "{failures}");

    let server = home.serve(API_KEY, &[]);
    let auth = format!("Bearer {API_KEY}");
    let (status, body) = http(
        "GET",
        &format!("{}/v1/proxy/c1/basic-auth/alice/s3cret", server.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"user\": \"alice\""), "{body}");
    // Without our API key the proxy refuses.
    let (status, _) =
        http("GET", &format!("{}/v1/proxy/c1/basic-auth/alice/s3cret", server.base), &[], b"")
            .unwrap();
    assert_eq!(status, 401);
}

#[test]
fn bearer_through_cli_and_proxy() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "hb-bearer",
        &format!(
            "{}test: {{ path: /bearer }}\n",
            connector("hb-bearer", &bin.base, "  - type: bearer")
        ),
    );
    home.ok(&["connect", "hb-bearer", "--id", "b1", "--set", "token=tok-abc"]);
    let body = home.ok(&["request", "b1", "GET", "/bearer"]);
    assert!(body.contains("\"token\": \"tok-abc\""), "{body}");

    let server = home.serve(API_KEY, &[]);
    let auth = format!("Bearer {API_KEY}");
    let (status, body) = http(
        "GET",
        &format!("{}/v1/proxy/b1/bearer", server.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // The upstream saw the connection's token, not our API key.
    assert!(body.contains("tok-abc") && !body.contains(API_KEY), "{body}");
}

fn anything(
    home: &Home,
    server: &support::Running,
    id: &str,
    body: &[u8],
    content_type: &str,
) -> serde_json::Value {
    let auth = format!("Bearer {API_KEY}");
    let (status, text) = http(
        "POST",
        &format!("{}/v1/proxy/{id}/anything/x?page=2", server.base),
        &[("Authorization", &auth), ("Content-Type", content_type)],
        body,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let cli = home.ok(&[
        "request",
        id,
        "POST",
        "/anything/x?page=2",
        "-H",
        &format!("Content-Type: {content_type}"),
        "-d",
        std::str::from_utf8(body).unwrap(),
    ]);
    let via_cli: serde_json::Value = serde_json::from_str(&cli).unwrap();
    let via_proxy: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["args", "form", "json", "data"] {
        assert_eq!(via_cli[key], via_proxy[key], "{key} differs between CLI and proxy");
    }
    via_proxy
}

#[test]
fn api_key_placements_show_up_where_the_connector_puts_them() {
    let bin = httpbin();
    let home = Home::new();
    let key_conn = |id: &str, apply: &str| {
        home.connector(
            id,
            &connector(
                id,
                &bin.base,
                &format!(
                    "  - type: api_key\n    fields: [{{key: api_key}}, {{key: account, secret: false}}]\n    apply: {apply}\n"
                ),
            ),
        );
        home.ok(&[
            "connect",
            id,
            "--id",
            id,
            "--set",
            "api_key=k-999",
            "--set",
            "account=acct-7",
            "--no-test",
        ]);
    };
    key_conn(
        "hdr",
        "[{in: header, name: X-Api-Key, value: 'Token {{ credentials.api_key }}'}, {in: header, name: X-Account, value: '{{ credentials.account }}'}]",
    );
    key_conn("qry", "{in: query, name: key}");
    key_conn("jsn", "{in: body, name: apiKey, format: json}");
    key_conn("frm", "{in: body, name: apiKey, format: form}");
    let server = home.serve(API_KEY, &[]);

    let v = anything(&home, &server, "hdr", b"{}", "application/json");
    assert_eq!(v["headers"]["X-Api-Key"], "Token k-999");
    assert_eq!(v["headers"]["X-Account"], "acct-7");
    assert_eq!(v["args"]["page"], "2");
    assert!(v["headers"].get("Authorization").is_none(), "our API key leaked upstream: {v}");

    let v = anything(&home, &server, "qry", b"", "text/plain");
    assert_eq!(v["args"]["key"], "k-999");
    assert_eq!(v["args"]["page"], "2");

    let v = anything(&home, &server, "jsn", br#"{"q": "x"}"#, "application/json");
    assert_eq!(v["json"], serde_json::json!({"q": "x", "apiKey": "k-999"}));

    let v = anything(&home, &server, "frm", b"q=x", "application/x-www-form-urlencoded");
    assert_eq!(v["form"]["apiKey"], "k-999");
    assert_eq!(v["form"]["q"], "x");

    // Metrics count the upstream exchanges per connector, never with a credential in sight.
    let auth = format!("Bearer {API_KEY}");
    let (status, text) =
        http("GET", &format!("{}/metrics", server.base), &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(status, 200, "{text}");
    for id in ["hdr", "qry", "jsn", "frm"] {
        let counted =
            format!(r#"latchkey_upstream_requests_total{{connector="{id}",status="2xx"}} 1"#);
        assert!(text.contains(&counted), "{counted} in {text}");
    }
    assert!(!text.contains("k-999") && !text.contains(API_KEY), "{text}");
}

#[test]
fn rest_api_creates_lists_tests_and_deletes_connections() {
    let bin = httpbin();
    let home = Home::new();
    home.connector(
        "hb-basic",
        &format!(
            "{}test: {{ path: /basic-auth/bob/pw }}\n",
            connector("hb-basic", &bin.base, "  - type: basic")
        ),
    );
    let server = home.serve(API_KEY, &[]);
    let auth = format!("Bearer {API_KEY}");
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let url = format!("{}/v1/connections", server.base);

    let bad = br#"{"id":"r1","connector":"hb-basic","credentials":{"username":"bob","password":"wrong"}}"#;
    let (status, body) = http("POST", &url, &h, bad).unwrap();
    assert_eq!(status, 502, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], "credential_test_failed");
    assert_eq!(err["upstream_status"], 401);
    assert!(!body.contains("wrong"));

    let good =
        br#"{"id":"r1","connector":"hb-basic","credentials":{"username":"bob","password":"pw"}}"#;
    let (status, body) = http("POST", &url, &h, good).unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(!body.contains("\"pw\""), "secret echoed: {body}");
    let (status, _) = http("POST", &url, &h, good).unwrap();
    assert_eq!(status, 409);

    let (status, body) = http("GET", &format!("{url}/r1"), &h, b"").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["secret_fields"], serde_json::json!(["password", "username"]));
    assert!(!body.contains("\"pw\""));

    let (status, body) = http("POST", &format!("{url}/r1/test"), &h, b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = http("DELETE", &format!("{url}/r1"), &h, b"").unwrap();
    assert_eq!(status, 204);
    let (status, body) = http("GET", &format!("{url}/r1"), &h, b"").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("connection_not_found"));

    let (status, body) = http("GET", &format!("{}/openapi.json", server.base), &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("/v1/connections"));
}
