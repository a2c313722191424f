//! `latchkey serve --webhook-url` end to end: its deliverer sends a connection event, signed
//! with `LATCHKEY_WEBHOOK_SECRET` and `LATCHKEY_WEBHOOK_PREVIOUS_SECRET`, to a receiver that
//! verifies it with the `standardwebhooks` library (PyPI), and the delivery log shows it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Home, http};

const KEY: &str = "bootstrap-key-for-webhooks-serve";
const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD: &str = "old-plain-secret-0123";

#[test]
fn serve_delivers_events_signed_with_the_current_and_previous_secrets() {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/peers/standard_webhooks_receiver.py");
    let mut receiver = Command::new(python)
        .arg(script)
        .args([format!("new={NEW}"), format!("old=raw:{OLD}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(receiver.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .expect("the receiver needs the PyPI package standardwebhooks (scripts/test --prepare)")
        .to_owned();
    let hook = format!("http://127.0.0.1:{port}/hook");
    // Killed on drop, even when an assertion fails.
    let _receiver =
        support::Running { child: receiver, base: String::new(), log: Default::default() };

    let mut home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    home.extra_env.push(("LATCHKEY_WEBHOOK_SECRET".into(), NEW.into()));
    home.extra_env.push(("LATCHKEY_WEBHOOK_PREVIOUS_SECRET".into(), OLD.into()));
    let server = home.serve(KEY, &["--webhook-url", &hook]);
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = br#"{"id": "c1", "connector": "plain", "credentials": {"token": "tok-canary"}}"#;
    let (status, _) =
        http("POST", &format!("{}/v1/connections?test=false", server.base), &headers, body)
            .unwrap();
    assert_eq!(status, 201);

    let mut seen = serde_json::Value::Null;
    for _ in 0..400 {
        let (_, log) = http("GET", &format!("http://127.0.0.1:{port}/log"), &[], b"").unwrap();
        seen = serde_json::from_str(&log).unwrap();
        if !seen.as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let first = &seen[0];
    assert_eq!(first["accepted"], serde_json::json!(["new", "old"]), "{seen}");
    assert_eq!(first["type"], "connection.created");

    let mut delivered = serde_json::Value::Null;
    for _ in 0..400 {
        let (_, page) =
            http("GET", &format!("{}/v1/webhook-deliveries", server.base), &headers, b"").unwrap();
        delivered = serde_json::from_str(&page).unwrap();
        if delivered["items"][0]["status"] == "delivered" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let item = &delivered["items"][0];
    assert_eq!((item["status"].as_str(), item["attempts"].as_u64()), (Some("delivered"), Some(1)));
    assert_eq!(item["id"], first["id"]);
    let log = std::fs::read_to_string(&server.log).unwrap();
    for secret in [NEW, OLD, "tok-canary"] {
        assert!(!log.contains(secret), "no secret in the server's log");
    }
}
