//! Self-signed JWTs verified by PyJWT (an implementation no one here wrote) for HS256, RS256,
//! PS256, ES256 and EdDSA, with header and claim templates. Needs the PyPI packages `pyjwt cryptography` (`scripts/test --prepare` installs them).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use latchkey_core::auth::{AuthContext, apply};
use latchkey_core::connector::parse_connector;
use latchkey_core::{OutgoingRequest, Secret};

fn python(args: &[&str], input: Option<&str>) -> serde_json::Value {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyjwt_peer.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyJWT peer failed (needs pyjwt and cryptography: run scripts/test --prepare, which installs them into .venv-test/): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokens_verify_at_pyjwt() {
    let keys = python(&["keys"], None);
    let secret = "hs-secret-0123456789abcdef0123456789";
    let cases = [
        ("HS256", secret.to_string(), secret.to_string()),
        (
            "RS256",
            keys["rsa"]["private"].as_str().unwrap().to_string(),
            keys["rsa"]["public"].as_str().unwrap().to_string(),
        ),
        (
            "PS256",
            keys["rsa"]["private"].as_str().unwrap().to_string(),
            keys["rsa"]["public"].as_str().unwrap().to_string(),
        ),
        (
            "ES256",
            keys["ec"]["private"].as_str().unwrap().to_string(),
            keys["ec"]["public"].as_str().unwrap().to_string(),
        ),
        (
            "EdDSA",
            keys["ed"]["private"].as_str().unwrap().to_string(),
            keys["ed"]["public"].as_str().unwrap().to_string(),
        ),
    ];
    let now = std::time::SystemTime::now();
    let mut checks = Vec::new();
    for (alg, private, public) in &cases {
        let key_field = if alg.starts_with("HS") { "secret" } else { "private_key" };
        let connector = parse_connector(
            &format!(
                "id: j\nname: J\nbase_url: https://api.example\nconfig: [{{key: tenant}}]\nauth:\n  - type: jwt\n    algorithm: {alg}\n    fields: [{{key: {key_field}}}, {{key: key_id, secret: false}}]\n    header: {{ kid: \"{{{{ credentials.key_id }}}}\" }}\n    claims: {{ iss: \"{{{{ credentials.key_id }}}}\", aud: \"https://api.example/{{{{ config.tenant }}}}\" }}\n    lifetime: 120\n"
            ),
            "j.yaml",
        )
        .unwrap();
        let credentials = BTreeMap::from([
            (key_field.to_string(), Secret::new(private.as_str())),
            ("key_id".to_string(), Secret::new("kid-42")),
        ]);
        let config = BTreeMap::from([("tenant".to_string(), "acme".to_string())]);
        let mut request =
            OutgoingRequest::new(http::Method::GET, "https://api.example/x".parse().unwrap());
        apply(
            &connector.auth[0],
            &mut request,
            AuthContext { credentials: &credentials, config: &config, now, nonce: "n" },
        )
        .unwrap();
        let header = request.headers["authorization"].to_str().unwrap();
        let token = header.strip_prefix("Bearer ").unwrap().to_string();
        checks.push(serde_json::json!({"token": token, "algorithm": alg, "key": public, "audience": "https://api.example/acme"}));
    }
    // A token signed with another secret must be refused: the check can fail.
    let mut forged = checks[0].clone();
    forged["key"] = serde_json::json!("another-secret-0123456789abcdef0123");
    checks.push(forged);
    let results = python(&["verify"], Some(&serde_json::to_string(&checks).unwrap()));
    let results = results.as_array().unwrap();
    for ((alg, _, _), result) in cases.iter().zip(results) {
        assert!(result.get("error").is_none(), "{alg}: {result}");
        assert_eq!(result["header"]["kid"], "kid-42", "{alg}");
        assert_eq!(result["header"]["alg"], *alg);
        assert_eq!(result["claims"]["iss"], "kid-42");
        let (iat, exp) =
            (result["claims"]["iat"].as_u64().unwrap(), result["claims"]["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, 120);
    }
    assert_eq!(results.last().unwrap()["error"], "InvalidSignatureError");
}

#[test]
fn a_key_in_the_wrong_format_is_a_clear_error() {
    let connector = parse_connector(
        "id: j\nname: J\nbase_url: https://api.example\nauth:\n  - type: jwt\n    algorithm: RS256\n",
        "j.yaml",
    )
    .unwrap();
    let credentials =
        BTreeMap::from([("private_key".to_string(), Secret::new("not-a-pem-canary"))]);
    let config = BTreeMap::new();
    let mut request =
        OutgoingRequest::new(http::Method::GET, "https://api.example/x".parse().unwrap());
    let err = apply(
        &connector.auth[0],
        &mut request,
        AuthContext {
            credentials: &credentials,
            config: &config,
            now: std::time::SystemTime::now(),
            nonce: "n",
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a valid PEM RSA private key"), "{err}");
    assert!(!err.to_string().contains("canary"));
    let bad = parse_connector("id: j\nname: J\nbase_url: https://api.example\nauth:\n  - type: jwt\n    algorithm: XX999\n", "j.yaml").unwrap_err();
    assert!(bad.to_string().contains("unknown JWT algorithm"), "{bad}");
}
