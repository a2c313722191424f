//! `latchkey connection import` and `export` through the real binary: 100,000 lines with a few
//! bad ones (timed), standard input and a clean summary, `--skip-existing`, and an export with
//! credentials encrypted to a passphrase and to an age recipient that holds no secret in plain
//! text and brings the connections back, working, into a fresh data directory.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::Instant;

use support::Home;

const CANARY: &str = "canary-export-5f1c0a9d3e";
const TOKEN_CANARY: &str = "canary-token-8b2e4d6f10";

/// A one-thread HTTP server that answers every request with the request's head as its body.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                raw.len()
            );
            let _ = stream.write_all(reply.as_bytes());
            let _ = stream.write_all(&raw);
        }
    });
    base
}

/// Neither canary is in `sealed`, in plain text nor base64 at any alignment (armor is base64).
fn assert_absent(sealed: &str) {
    use base64::Engine as _;
    let joined: String = sealed.lines().collect();
    for canary in [CANARY, TOKEN_CANARY] {
        assert!(!sealed.contains(canary), "{canary} in plain text");
        for shift in 0..3 {
            let padded = format!("{}{canary}", "x".repeat(shift));
            let encoded = base64::engine::general_purpose::STANDARD.encode(padded);
            // The middle of the encoding does not depend on what precedes the canary.
            let middle = &encoded[4..encoded.len() - 4];
            assert!(!joined.contains(middle), "{canary} in base64");
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A home whose `echo` connector (API key in `X-Key`) and `prov` connector (OAuth2, with the
/// integration `app`) both send to `upstream`.
fn home_with_connectors(upstream: &str) -> Home {
    let home = Home::new();
    home.connector(
        "echo",
        &format!(
            "id: echo\nname: Echo\nbase_url: {upstream}\nauth:\n  - type: api_key\n    \
             apply: {{in: header, name: X-Key}}\n"
        ),
    );
    home.connector(
        "prov",
        &format!(
            "id: prov\nname: Prov\nbase_url: {upstream}\nauth:\n  - type: oauth2\n    \
             authorize_url: {upstream}/authorize\n    token_url: {upstream}/token\n"
        ),
    );
    home.ok(&["integration", "add", "app", "--connector", "prov", "--client-id", "cid"]);
    home
}

#[test]
fn a_hundred_thousand_lines_with_a_few_bad_ones() {
    const LINES: usize = 100_000;
    let home = home_with_connectors("http://127.0.0.1:9");
    let file = home.dir.path().join("connections.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for n in 1..=LINES {
        let line = match n {
            10 => "{not json".to_string(),
            50_000 => r#"{"id":"c50000","connector":"nope","credentials":{"api_key":"k"}}"#.into(),
            77_777 => {
                r#"{"id":"c77777","connector":"echo","credentials":{"api_key":"k"},"colour":"red"}"#
                    .into()
            }
            99_999 => r#"{"id":"c1","connector":"echo","credentials":{"api_key":"again"}}"#.into(),
            n => format!(
                r#"{{"id":"c{n}","connector":"echo","credentials":{{"api_key":"key-{n}"}}}}"#
            ),
        };
        writeln!(out, "{line}").unwrap();
        if n == 20 {
            writeln!(out).unwrap(); // a blank line is passed over
        }
    }
    out.flush().unwrap();
    drop(out);

    let started = Instant::now();
    let result = home.run(&["connection", "import", file.to_str().unwrap(), "--output", "json"]);
    let elapsed = started.elapsed();
    eprintln!("imported {LINES} lines in {:.1} s", elapsed.as_secs_f64());
    assert_eq!(result.status.code(), Some(1), "a failed line fails the run:\n{}", text(&result));
    assert!(result.stderr.is_empty(), "--output json keeps stderr clean:\n{}", text(&result));
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["imported"], LINES - 4);
    assert_eq!(summary["failed"], 4);
    assert_eq!(summary["skipped_existing"], 0);
    let errors: Vec<(u64, String, String)> = summary["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let places: Vec<(u64, &str)> = errors.iter().map(|(l, c, _)| (*l, c.as_str())).collect();
    assert_eq!(
        places,
        [
            (10, "invalid_request"),
            (50_001, "connector_not_found"),
            (77_778, "invalid_request"),
            (100_000, "conflict"),
        ],
        "line numbers count the blank line"
    );
    assert!(errors[2].2.contains("unknown field `colour`"), "{}", errors[2].2);
    assert!(!text(&result).contains("key-"), "no credential in the output");

    let shown = home.ok(&["connection", "show", "c77776", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["secret_fields"], serde_json::json!(["api_key"]));
    // Export pages through every stored connection: one line each.
    let exported = home.ok(&["connection", "export"]);
    assert_eq!(exported.lines().count(), LINES - 4);
}

#[test]
fn standard_input_and_skip_existing_with_a_plain_summary() {
    let upstream = echo_server();
    let home = home_with_connectors(&upstream);
    let lines = format!(
        "{{\"id\":\"a\",\"connector\":\"echo\",\"credentials\":{{\"api_key\":\"{CANARY}\"}}}}\n\
         {{\"id\":\"b\",\"connector\":\"echo\",\"credentials\":{{\"api_key\":\"k\"}},\"config\":{{}}}}\n"
    );
    let import = |extra: &[&str]| {
        let mut child = home
            .command()
            .args(["connection", "import", "-"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let first = import(&[]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "imported: 2\nfailed: 0\nskipped (existing): 0\n"
    );
    assert_eq!(String::from_utf8_lossy(&first.stderr), "", "no progress when not a terminal");

    let again = import(&[]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("line 1: ") && stderr.contains("--skip-existing"), "{stderr}");
    let skipped = import(&["--skip-existing"]);
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert_eq!(
        String::from_utf8_lossy(&skipped.stdout),
        "imported: 0\nfailed: 0\nskipped (existing): 2\n"
    );

    let echoed = home.ok(&["request", "a", "GET", "/whoami"]);
    assert!(echoed.to_ascii_lowercase().contains(&format!("x-key: {CANARY}")), "{echoed}");
}

/// Stores an API-key connection and an OAuth2 connection with imported tokens in `home`.
fn seed(home: &Home) {
    let file = home.dir.path().join("seed.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"id\":\"key-conn\",\"connector\":\"echo\",\"credentials\":{{\"api_key\":\"{CANARY}\"}},\"end_user\":{{\"id\":\"u-1\"}},\"tags\":{{\"org\":\"acme\"}}}}\n\
             {{\"id\":\"oauth-conn\",\"connector\":\"prov\",\"integration\":\"app\",\
             \"credentials\":{{\"access_token\":\"{TOKEN_CANARY}\",\"refresh_token\":\"rt-{TOKEN_CANARY}\"}},\
             \"expires_at\":\"2035-06-07T08:09:10Z\",\"scopes\":[\"read\",\"write\"]}}\n"
        ),
    )
    .unwrap();
    home.ok(&["connection", "import", file.to_str().unwrap()]);
}

/// The connections in `home` work with their secrets, and the OAuth2 one kept its expiry and
/// scopes.
fn assert_restored(home: &Home) {
    let echoed = home.ok(&["request", "key-conn", "GET", "/whoami"]).to_ascii_lowercase();
    assert!(echoed.contains(&format!("x-key: {CANARY}")), "{echoed}");
    let echoed = home.ok(&["request", "oauth-conn", "GET", "/me"]).to_ascii_lowercase();
    assert!(echoed.contains(&format!("authorization: bearer {TOKEN_CANARY}")), "{echoed}");
    let shown = home.ok(&["connection", "show", "oauth-conn", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["expires_at"], "2035-06-07T08:09:10Z");
    assert_eq!(shown["config"]["granted_scopes"], "read write");
    assert_eq!(shown["secret_fields"], serde_json::json!(["access_token", "refresh_token"]));
    let shown = home.ok(&["connection", "show", "key-conn", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["end_user"]["id"], "u-1");
    assert_eq!(shown["tags"]["org"], "acme");
}

#[test]
fn an_export_without_credentials_holds_none_and_says_what_each_connection_is() {
    let home = home_with_connectors("http://127.0.0.1:9");
    seed(&home);
    let exported = home.ok(&["connection", "export"]);
    assert!(!exported.contains("canary"), "{exported}");
    let lines: Vec<serde_json::Value> =
        exported.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"id": "key-conn", "connector": "echo", "auth": "api_key", "end_user": {"id": "u-1"}, "tags": {"org": "acme"}}),
            serde_json::json!({"id": "oauth-conn", "connector": "prov", "auth": "oauth2", "integration": "app"}),
        ]
    );
    let refused = home.run(&["connection", "export", "--recipient", "age1x"]);
    assert!(!refused.status.success(), "a recipient without --with-credentials is refused");
}

#[test]
fn an_export_with_credentials_is_encrypted_and_imports_into_a_fresh_data_dir() {
    let upstream = echo_server();
    let home = home_with_connectors(&upstream);
    seed(&home);

    // To a passphrase.
    let passphrase = home.dir.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let export = home.dir.path().join("export.age");
    let out = home.run(&[
        "connection",
        "export",
        "--with-credentials",
        "--passphrase-file",
        passphrase.to_str().unwrap(),
        "--output",
        export.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("canary"), "{}", text(&out));
    let sealed = std::fs::read_to_string(&export).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
    assert_absent(&sealed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let fresh = home_with_connectors(&upstream);
    let wrong = fresh.dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let refused = fresh.run(&[
        "connection",
        "import",
        export.to_str().unwrap(),
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("wrong passphrase"), "{}", text(&refused));
    let imported = fresh.ok(&[
        "connection",
        "import",
        export.to_str().unwrap(),
        "--passphrase-file",
        passphrase.to_str().unwrap(),
    ]);
    assert_eq!(imported, "imported: 2\nfailed: 0\nskipped (existing): 0\n");
    assert_restored(&fresh);

    // To a recipient key.
    let identity = age::x25519::Identity::generate();
    let identity_file = home.dir.path().join("identity.txt");
    std::fs::write(
        &identity_file,
        format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&identity.to_string())),
    )
    .unwrap();
    let recipient = identity.to_public().to_string();
    let sealed =
        home.ok(&["connection", "export", "--with-credentials", "--recipient", recipient.as_str()]);
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
    assert_absent(&sealed);
    let export = home.dir.path().join("export-recipient.age");
    std::fs::write(&export, &sealed).unwrap();
    let third = home_with_connectors(&upstream);
    let missing = third.run(&["connection", "import", export.to_str().unwrap()]);
    assert!(text(&missing).contains("--identity"), "{}", text(&missing));
    third.ok(&[
        "connection",
        "import",
        export.to_str().unwrap(),
        "--identity",
        identity_file.to_str().unwrap(),
    ]);
    assert_restored(&third);
}

/// `scripts/nango-to-latchkey.py` on a sample of Nango connections (OAuth2, API key, Basic,
/// and a type it does not convert): its lines import, and each connection then works.
#[test]
fn nango_connections_convert_and_import() {
    let upstream = echo_server();
    let home = home_with_connectors(&upstream);
    home.connector(
        "keyed",
        &format!(
            "id: keyed\nname: Keyed\nbase_url: {upstream}\nconfig:\n  - {{ key: region }}\n\
             auth:\n  - type: api_key\n    apply: {{in: header, name: X-Key}}\n"
        ),
    );
    home.connector(
        "basic-echo",
        &format!("id: basic-echo\nname: Basic\nbase_url: {upstream}\nauth:\n  - type: basic\n"),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let converted = std::process::Command::new(python)
        .arg(root.join("scripts/nango-to-latchkey.py"))
        .args(["--map", "github-app=prov:app", "--map", "echo-keys=keyed"])
        .arg(root.join("crates/cli/tests/data/nango-connections.json"))
        .output()
        .expect("python3 runs the converter");
    assert_eq!(converted.status.code(), Some(1), "one connection is not converted");
    let stderr = String::from_utf8_lossy(&converted.stderr);
    assert_eq!(stderr, "connection 4 (app-user-4): credentials of type 'APP' are not converted\n");
    let lines = String::from_utf8(converted.stdout).unwrap();
    let bodies: Vec<serde_json::Value> =
        lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        bodies,
        [
            serde_json::json!({
                "id": "gh-user-1", "connector": "prov", "auth": "oauth2", "integration": "app",
                "credentials": {"access_token": "canary-nango-at-7d1e", "refresh_token": "canary-nango-rt-9a0b"},
                "expires_at": "2035-06-07T08:09:10Z", "scopes": ["repo", "read:user"],
                "end_user": {"id": "user-42", "email": "ada@example.com", "display_name": "Ada"},
                "metadata": {"plan": "pro"},
            }),
            serde_json::json!({
                "id": "key-user-2", "connector": "keyed", "auth": "api_key",
                "credentials": {"api_key": "canary-nango-key-5c3f"}, "config": {"region": "eu"},
            }),
            serde_json::json!({
                "id": "basic-user-3", "connector": "basic-echo", "auth": "basic",
                "credentials": {"username": "ada", "password": "canary-nango-pw-2e8d"},
            }),
        ]
    );
    let file = home.dir.path().join("from-nango.jsonl");
    std::fs::write(&file, &lines).unwrap();
    let imported = home.ok(&["connection", "import", file.to_str().unwrap()]);
    assert_eq!(imported, "imported: 3\nfailed: 0\nskipped (existing): 0\n");
    let echoed = home.ok(&["request", "gh-user-1", "GET", "/user"]).to_ascii_lowercase();
    assert!(echoed.contains("authorization: bearer canary-nango-at-7d1e"), "{echoed}");
    let echoed = home.ok(&["request", "key-user-2", "GET", "/"]).to_ascii_lowercase();
    assert!(echoed.contains("x-key: canary-nango-key-5c3f"), "{echoed}");
    let echoed = home.ok(&["request", "basic-user-3", "GET", "/"]);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("ada:canary-nango-pw-2e8d");
    assert!(echoed.contains(&basic), "{echoed}");
    let shown = home.ok(&["connection", "show", "gh-user-1", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["config"]["granted_scopes"], "repo read:user");
    assert_eq!(shown["end_user"]["id"], "user-42");
    assert_eq!(shown["end_user"]["email"], "ada@example.com");
    assert_eq!(shown["metadata"]["plan"], "pro");
}
