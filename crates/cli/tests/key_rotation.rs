//! Rotating the master key through the real binary on SQLite: a connection stored under the
//! generated key is re-sealed under a new one, the old key is retired, and the connection is
//! then used with the new key alone; the old key alone no longer opens the database. The
//! credential appears in no output and no file along the way.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;

use base64::Engine as _;
use support::{Home, files_under};

const CANARY: &str = "canary-rotation-3e8b1d07c2";

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

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `keys status` with its aligned columns joined by single tabs; the header row first.
fn tabbed(status: &str) -> String {
    let lines: Vec<String> =
        status.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join("\t")).collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("VERSION\tCURRENT\tKEY\tGIVEN\tKEY\tCHECK\tROWS")
    );
    lines.join("\n")
}

fn run_ok(home: &Home, env: &[(&str, &str)], args: &[&str], outputs: &mut Vec<String>) -> String {
    let out = home.command().envs(env.iter().copied()).args(args).output().unwrap();
    outputs.push(text(&out));
    assert!(out.status.success(), "latchkey {args:?} failed:\n{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rotate_to_a_new_key_then_use_it_alone_after_retiring_the_old() {
    let home = Home::new();
    let upstream = echo_server();
    home.connector(
        "echo",
        &format!(
            "id: echo\nname: Echo\nbase_url: {upstream}\nauth:\n  - type: api_key\n    \
             apply: {{in: header, name: X-Key}}\ntest: {{ path: /whoami }}\n"
        ),
    );
    let mut outputs = Vec::new();
    let set = format!("api_key={CANARY}");
    run_ok(
        &home,
        &[],
        &["connect", "echo", "--id", "c1", "--no-test", "--set", &set],
        &mut outputs,
    );
    let old_key_file = home.data_dir().join("master.key");
    assert!(old_key_file.exists(), "the first start generated master.key");

    // A new key, in a private file.
    let new_key_file = home.dir.path().join("new.key");
    let new_key_path = new_key_file.to_str().unwrap();
    run_ok(&home, &[], &["keys", "generate", "--output", new_key_path], &mut outputs);
    let new_key = std::fs::read_to_string(&new_key_file).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(new_key.trim()).unwrap();
    assert_eq!(decoded.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&new_key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let printed = run_ok(&home, &[], &["keys", "generate"], &mut outputs);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(printed.trim()).unwrap().len(), 32);

    // Two sealed rows: the connection's key, and the audit log's HMAC key (made when `connect`
    // wrote the log's first entry).
    let status = tabbed(&run_ok(&home, &[], &["keys", "status"], &mut outputs));
    assert!(status.contains("1\tyes\tyes\tyes\t2"), "{status}");

    // The new key is current, the old one previous: rotate, then retire.
    let old_key_path = old_key_file.to_str().unwrap();
    let both = [
        ("LATCHKEY_MASTER_KEY_FILE", new_key_path),
        ("LATCHKEY_MASTER_KEY_PREVIOUS_FILE", old_key_path),
    ];
    let status = tabbed(&run_ok(&home, &both, &["keys", "status"], &mut outputs));
    assert!(status.contains("1\tno\tyes\tyes\t2"), "{status}");
    assert!(status.contains("2\tyes\tyes\tyes\t0"), "{status}");
    let rotated = run_ok(&home, &both, &["keys", "rotate", "--batch-size", "1"], &mut outputs);
    assert!(rotated.contains("re-sealed 2 secret rows under key version 2"), "{rotated}");
    assert!(rotated.contains("no secret row uses an older key version"), "{rotated}");
    let again = run_ok(&home, &both, &["keys", "rotate"], &mut outputs);
    assert!(again.contains("re-sealed 0 secret rows"), "{again}");
    let retired = run_ok(&home, &both, &["keys", "retire"], &mut outputs);
    assert!(retired.contains("retired key versions 1"), "{retired}");

    // The old key alone (master.key in the data directory) no longer opens the database.
    let out = home.run(&["connection", "list"]);
    outputs.push(text(&out));
    assert!(!out.status.success());
    assert!(text(&out).contains("master key does not match"), "{}", text(&out));

    // The new key alone makes the request, with the stored credential.
    let only_new = [("LATCHKEY_MASTER_KEY", new_key.trim())];
    let echoed = run_ok(&home, &only_new, &["request", "c1", "GET", "/whoami"], &mut outputs);
    assert!(echoed.to_ascii_lowercase().contains(&format!("x-key: {CANARY}")), "{echoed}");
    let status = tabbed(&run_ok(&home, &only_new, &["keys", "status"], &mut outputs));
    assert_eq!(status.lines().skip(1).collect::<Vec<_>>(), ["2\tyes\tyes\tyes\t2"], "{status}");

    // The credential is in no output but the echoed request, and in no file.
    let echoed_at = outputs.len() - 2;
    for (n, output) in outputs.iter().enumerate() {
        assert!(n == echoed_at || !output.contains(CANARY), "output {n} holds the canary");
        assert!(!output.contains(new_key.trim()), "output {n} holds the new key");
    }
    for file in files_under(&home.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{}", file.display());
    }
}

#[test]
fn a_malformed_previous_key_is_named_but_not_shown() {
    let home = Home::new();
    let bad = "not-a-key-but-a-secret-looking-value";
    let out = home
        .command()
        .env("LATCHKEY_MASTER_KEY_PREVIOUS", format!("{},{bad}", "A".repeat(43) + "="))
        .args(["keys", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = text(&out);
    assert!(text.contains("previous key #2"), "{text}");
    assert!(!text.contains(bad), "{text}");
}
