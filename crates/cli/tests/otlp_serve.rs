//! `latchkey serve --otlp-endpoint` end to end: a proxied request becomes a span that an OTLP
//! receiver decodes with the OpenTelemetry project's Python protobuf package
//! (`opentelemetry-proto`, PyPI), with the configured header, the operation's attributes and
//! no secret.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Home, http};

const KEY: &str = "bootstrap-key-for-otlp-serve";
const CANARY: &str = "api-key-canary-5521";
const QUERY_CANARY: &str = "query-canary-7781";

#[test]
fn serve_exports_each_operation_as_a_span_to_the_collector() {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/otlp_collector.py");
    let mut collector = Command::new(python).arg(script).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(collector.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .expect("the receiver needs the PyPI package opentelemetry-proto (scripts/test --prepare)")
        .to_owned();
    let base = format!("http://127.0.0.1:{port}");
    // Killed on drop, even when an assertion fails.
    let _collector =
        support::Running { child: collector, base: String::new(), log: Default::default() };

    let home = Home::new();
    home.connector(
        "keyed",
        &format!(
            "id: keyed\nname: Keyed\nbase_url: {base}/api\nauth:\n  - type: api_key\n    apply: {{ in: header, name: X-Api-Key }}\n"
        ),
    );
    let server = home.serve(
        KEY,
        &["--otlp-endpoint", &base, "--otlp-header", "x-collector-key=collector-secret"],
    );
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let body = format!(
        r#"{{"id": "c1", "connector": "keyed", "credentials": {{"api_key": "{CANARY}"}}}}"#
    );
    let (status, text) = http(
        "POST",
        &format!("{}/v1/connections?test=false", server.base),
        &headers,
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{text}");
    let (status, text) = http(
        "GET",
        &format!("{}/v1/proxy/c1/items?token={QUERY_CANARY}", server.base),
        &headers,
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");

    // The log writer gathers for 100 ms, then the export goes out: poll the receiver.
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, text) = http("GET", &format!("{base}/spans"), &[], b"").unwrap();
        seen = serde_json::from_str(&text).unwrap();
        if !seen["spans"].as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let spans = seen["spans"].as_array().unwrap();
    let request = spans
        .iter()
        .find(|s| s["attributes"]["latchkey.operation.kind"] == "request")
        .unwrap_or_else(|| panic!("no request span among {spans:?}"));
    assert_eq!(request["name"], "request GET");
    assert_eq!(request["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(request["resource"]["service.name"], "latchkey");
    assert_eq!(request["scope"], "latchkey");
    assert_eq!(request["headers"]["x-collector-key"], "collector-secret");
    let attributes = &request["attributes"];
    assert_eq!(attributes["latchkey.connection.id"], "c1");
    assert_eq!(attributes["latchkey.connector.id"], "keyed");
    assert_eq!(attributes["http.request.method"], "GET");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["url.path"], "/items");
    assert_eq!(attributes["url.query"], "token=…");
    assert!(request["end"].as_u64() >= request["start"].as_u64());
    let raw = seen["raw"].as_str().unwrap();
    assert!(!raw.contains(CANARY), "the credential reached the collector");
    assert!(!raw.contains(QUERY_CANARY), "a query value reached the collector");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("exporting operations to the OTLP collector"), "{log}");
    assert!(!log.contains("collector-secret"), "the collector's key reached the log");
}
