//! Latchkey's `aws_sigv4` strategy and botocore's `SigV4Auth` (a real implementation no one here
//! wrote) produce the same `Authorization` header for the same inputs and fixed time.
//! Needs the PyPI packages `botocore` (`scripts/test --prepare` installs them) (the test script installs it).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use latchkey_core::auth::{AuthContext, apply};
use latchkey_core::connector::parse_connector;
use latchkey_core::{OutgoingRequest, Secret};

const TIME: &str = "2026-11-28T10:20:30Z";
const EPOCH_SECS: u64 = 1_795_861_230; // TIME as Unix seconds

struct Case {
    method: &'static str,
    url: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    service: &'static str,
    region: &'static str,
    token: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let c = |method, url, headers, body, service, region, token| Case {
        method,
        url,
        headers,
        body,
        service,
        region,
        token,
    };
    vec![
        c(
            "GET",
            "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            vec![],
            "",
            "sts",
            "us-east-1",
            None,
        ),
        c(
            "POST",
            "https://dynamodb.eu-west-1.amazonaws.com/",
            vec![
                ("Content-Type", "application/x-amz-json-1.0"),
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
            ],
            "{}",
            "dynamodb",
            "eu-west-1",
            None,
        ),
        c(
            "GET",
            "https://abc123.execute-api.us-west-2.amazonaws.com/prod/items?b=2&a=1&a=0",
            vec![("Accept", "application/json")],
            "",
            "execute-api",
            "us-west-2",
            Some("FQoGZXIvYXdzEXAMPLETOKEN"),
        ),
        c(
            "PUT",
            "https://api.example.com/v1/things/%C3%A9t%C3%A9?q=caf%C3%A9",
            vec![("Content-Type", "application/json; charset=utf-8")],
            r#"{"name":"Zoë"}"#,
            "execute-api",
            "ap-southeast-2",
            None,
        ),
        c(
            "DELETE",
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-fn",
            vec![],
            "",
            "lambda",
            "us-east-1",
            Some("session-token-2"),
        ),
    ]
}

#[test]
fn same_authorization_header_as_botocore() {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let input: Vec<serde_json::Value> = cases()
        .iter()
        .map(|c| {
            serde_json::json!({
                "method": c.method, "url": c.url,
                "headers": c.headers.iter().cloned().collect::<BTreeMap<_, _>>(),
                "body": c.body, "service": c.service, "region": c.region,
                "access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "session_token": c.token, "timestamp": TIME,
            })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/botocore_sign.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "botocore failed (needs botocore: run scripts/test --prepare, which installs it into .venv-test/): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    for (case, expected) in cases().iter().zip(expected) {
        let connector = parse_connector(
            &format!(
                "id: aws\nname: AWS\nbase_url: https://x.amazonaws.com\nauth:\n  - type: aws_sigv4\n    service: {}\n    region: {}\n",
                case.service, case.region
            ),
            "aws.yaml",
        )
        .unwrap();
        let mut credentials = BTreeMap::from([
            ("access_key_id".to_string(), Secret::new("AKIDEXAMPLE")),
            (
                "secret_access_key".to_string(),
                Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            ),
        ]);
        if let Some(token) = case.token {
            credentials.insert("session_token".into(), Secret::new(token));
        }
        let mut request =
            OutgoingRequest::new(case.method.parse().unwrap(), case.url.parse().unwrap());
        for (k, v) in &case.headers {
            request.headers.insert(*k, v.parse().unwrap());
        }
        request.body = case.body.as_bytes().to_vec().into();
        let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(EPOCH_SECS);
        let config = BTreeMap::new();
        apply(
            &connector.auth[0],
            &mut request,
            AuthContext { credentials: &credentials, config: &config, now, nonce: "n" },
        )
        .unwrap();
        assert_eq!(
            request.headers["authorization"].to_str().unwrap(),
            expected["authorization"].as_str().unwrap(),
            "{} {}",
            case.method,
            case.url
        );
        if let Some(token) = case.token {
            assert_eq!(request.headers["x-amz-security-token"], token);
        }
    }
}
