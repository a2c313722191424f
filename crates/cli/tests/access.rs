//! Environments and API keys through the binary: `latchkey env`, `latchkey api-key`, the
//! global `--environment`, and a key made by the CLI used against `latchkey serve`.

mod support;

use support::{Home, http};

#[test]
fn environments_and_keys_made_by_the_cli_work_against_the_server() {
    let home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    home.ok(&["env", "create", "prod"]);
    let envs = home.ok(&["env", "list", "--output", "json"]);
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&envs)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["default", "prod"]);
    let again = home.run(&["env", "create", "prod"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("environment `prod` already exists"));

    home.ok(&["connect", "plain", "--id", "d1", "--set", "token=t", "--no-test"]);
    home.ok(&[
        "--environment",
        "prod",
        "connect",
        "plain",
        "--id",
        "p1",
        "--set",
        "token=t",
        "--no-test",
    ]);
    let listed = home.ok(&["--environment", "prod", "connection", "list", "--output", "json"]);
    assert!(listed.contains("\"p1\"") && !listed.contains("\"d1\""), "{listed}");
    let hidden = home.run(&["--environment", "prod", "connection", "show", "d1"]);
    assert!(!hidden.status.success(), "a default connection shows in prod");

    let made = home.ok(&[
        "api-key",
        "create",
        "reader",
        "--scope",
        "connections:read",
        "--for-environment",
        "prod",
        "--output",
        "json",
    ]);
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("lk_"), "{made}");
    let keys = home.ok(&["api-key", "list"]);
    assert!(keys.lines().next().unwrap().starts_with("ID"), "{keys}");
    assert!(keys.contains("reader") && keys.contains("prod") && !keys.contains(&key), "{keys}");
    let bad = home.run(&["api-key", "create", "x", "--scope", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"), "{bad:?}");

    let server = home.serve("bootstrap-key-for-access-test", &[]);
    let bearer = format!("Bearer {key}");
    let (status, body) =
        http("GET", &format!("{}/v1/connections", server.base), &[("authorization", &bearer)], b"")
            .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"p1\"") && !body.contains("\"d1\""), "{body}");
    let (status, body) = http(
        "POST",
        &format!("{}/v1/connections/p1/test", server.base),
        &[("authorization", &bearer)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("insufficient_scope") && body.contains("connections:write"), "{body}");

    // Revoked by the CLI while the server runs: refused within the server's key cache (2 s).
    home.ok(&["api-key", "revoke", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = http(
            "GET",
            &format!("{}/v1/connections", server.base),
            &[("authorization", &bearer)],
            b"",
        )
        .unwrap();
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the revoked key still works");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An environment's own webhook set and cleared from the CLI, and every CLI change — and a
/// credential export — in the audit log under the actor `cli`.
#[test]
fn environment_webhooks_and_the_cli_own_audit_entries() {
    let mut home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    // Without LATCHKEY_WEBHOOK_SECRET, a secret is generated and printed once.
    let generated = home.run(&["env", "create", "dev", "--webhook-url", "https://hooks.example/d"]);
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let printed = String::from_utf8_lossy(&generated.stdout);
    assert!(printed.lines().any(|l| l.starts_with("whsec_")), "{printed}");
    assert!(String::from_utf8_lossy(&generated.stderr).contains("only this once"));
    // Its events are recorded in the delivery log before the command exits.
    home.ok(&[
        "--environment",
        "dev",
        "connect",
        "plain",
        "--id",
        "d1",
        "--set",
        "token=canary-token",
        "--no-test",
    ]);
    let deliveries: serde_json::Value = serde_json::from_str(&home.ok(&[
        "--environment",
        "dev",
        "webhook",
        "deliveries",
        "--output",
        "json",
    ]))
    .unwrap();
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{deliveries}");
    assert_eq!(
        (items[0]["event"].as_str(), items[0]["status"].as_str()),
        (Some("connection.created"), Some("pending"))
    );
    let shown =
        home.ok(&["--environment", "dev", "webhook", "show", items[0]["id"].as_str().unwrap()]);
    assert!(shown.contains("\"connection_id\": \"d1\""), "{shown}");
    assert!(!shown.contains("canary-token"));

    home.extra_env.push(("LATCHKEY_WEBHOOK_SECRET".into(), "canary-webhook-secret-1234".into()));
    home.ok(&["env", "create", "prod", "--webhook-url", "https://hooks.example/p"]);
    let webhook_of = |home: &Home| -> serde_json::Value {
        let envs: serde_json::Value =
            serde_json::from_str(&home.ok(&["env", "list", "--output", "json"])).unwrap();
        let prod = envs.as_array().unwrap().iter().find(|e| e["id"] == "prod").unwrap().clone();
        prod["webhook_url"].clone()
    };
    assert_eq!(webhook_of(&home), "https://hooks.example/p");
    home.ok(&["env", "webhook", "prod", "--url", "https://hooks.example/q"]);
    assert_eq!(webhook_of(&home), "https://hooks.example/q");
    let rotated = home.ok(&["env", "webhook", "prod", "--rotate", "--overlap", "1h"]);
    assert!(rotated.trim().starts_with("whsec_"), "{rotated}");
    home.ok(&["env", "webhook", "prod", "--clear"]);
    assert_eq!(webhook_of(&home), serde_json::Value::Null);

    home.ok(&[
        "--environment",
        "prod",
        "connect",
        "plain",
        "--id",
        "p1",
        "--set",
        "token=canary-token",
        "--no-test",
    ]);
    let key = home.ok(&["api-key", "create", "ci", "--scope", "proxy", "--output", "json"]);
    let key_id =
        serde_json::from_str::<serde_json::Value>(&key).unwrap()["id"].as_str().unwrap().to_owned();
    home.ok(&["api-key", "revoke", &key_id]);
    let pass = home.dir.path().join("pass.txt");
    std::fs::write(&pass, "a passphrase for the test\n").unwrap();
    let out = home.dir.path().join("backup.age");
    home.ok(&[
        "--environment",
        "prod",
        "connection",
        "export",
        "--with-credentials",
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    home.ok(&["--environment", "prod", "connection", "delete", "p1"]);
    let failed = home.run(&["--environment", "prod", "connection", "delete", "p1"]);
    assert!(!failed.status.success(), "deleted already");

    let tail: serde_json::Value = serde_json::from_str(&home.ok(&[
        "audit",
        "tail",
        "--all-environments",
        "--output",
        "json",
    ]))
    .unwrap();
    let entries: Vec<(String, String, String, String)> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            // Latchkey itself records what became of a deleted connection's tokens.
            let actor = if e["action"] == "connection.revocation" { "latchkey" } else { "cli" };
            assert_eq!(e["actor"]["id"], actor, "{e}");
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object"]["id"].as_str().unwrap_or("-").to_owned(),
                e["environment"].as_str().unwrap_or("-").to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = [
        ("environment.create", "dev", "-", "success"),
        ("connection.create", "d1", "dev", "success"),
        ("environment.create", "prod", "-", "success"),
        ("environment.update", "prod", "-", "success"),
        ("environment.webhook_secret_rotate", "prod", "-", "success"),
        ("environment.update", "prod", "-", "success"),
        ("connection.create", "p1", "prod", "success"),
        ("api_key.create", "-", "-", "success"),
        ("api_key.revoke", key_id.as_str(), "-", "success"),
        ("connection.export_credentials", "-", "prod", "success"),
        ("connection.revocation", "p1", "prod", "success"),
        ("connection.delete", "p1", "prod", "success"),
        ("connection.delete", "p1", "prod", "failed"),
    ]
    .iter()
    .map(|(a, o, e, r)| (a.to_string(), o.to_string(), e.to_string(), r.to_string()))
    .collect();
    assert_eq!(entries, expected);
    assert!(!tail.to_string().contains("canary"), "no secret in the audit log");
    assert!(!tail.to_string().contains("whsec_"), "no webhook secret in the audit log");
    home.ok(&["audit", "verify"]);
}
