//! Progress on a terminal, through the real binary under `script(1)` (a pseudo-terminal): the
//! import bar with its counts, the OAuth wait with the URL and the timeout; and none of it with
//! `--output json`, or when standard error is not a terminal (the other tests' clean outputs).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Home;

/// `latchkey ARGS…` for `home`, as one shell command line for `script -c`.
fn command_line(home: &Home, args: &[&str]) -> String {
    let mut words = vec![
        env!("CARGO_BIN_EXE_latchkey").to_string(),
        "--data-dir".into(),
        home.data_dir().display().to_string(),
        "--connectors".into(),
        home.connectors_dir().display().to_string(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
}

/// Runs the command line on a pseudo-terminal (standard input, output and error all on it).
fn on_terminal(line: &str) -> Command {
    let mut command = Command::new("script");
    command
        .args(["-qefc", line, "/dev/null"])
        .env_remove("LATCHKEY_MASTER_KEY")
        .env_remove("LATCHKEY_DATA_DIR")
        .env_remove("LATCHKEY_CONNECTORS")
        .env_remove("LATCHKEY_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

fn new_home() -> Home {
    let home = Home::new();
    home.connector(
        "echo",
        "id: echo\nname: Echo\nbase_url: http://127.0.0.1:9\nauth:\n  - type: api_key\n",
    );
    home.connector(
        "prov",
        "id: prov\nname: Prov\nbase_url: http://127.0.0.1:9\nauth:\n  - type: oauth2\n    \
         authorize_url: http://127.0.0.1:9/authorize\n    token_url: http://127.0.0.1:9/token\n",
    );
    home.ok(&["integration", "add", "app", "--connector", "prov", "--client-id", "cid"]);
    home
}

fn lines_file(home: &Home, count: usize) -> String {
    let path = home.dir.path().join("lines.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for n in 1..=count {
        writeln!(out, r#"{{"id":"c{n}","connector":"echo","credentials":{{"api_key":"k{n}"}}}}"#)
            .unwrap();
    }
    out.flush().unwrap();
    path.display().to_string()
}

#[test]
fn import_draws_a_bar_on_a_terminal_and_not_with_json_output() {
    let home = new_home();
    let file = lines_file(&home, 3000);
    let out = on_terminal(&command_line(&home, &["connection", "import", &file])).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("imported, 0 failed, 0 skipped"), "the bar's counts:\n{shown}");
    assert!(shown.contains("imported: 3000"), "{shown}");

    let json_home = new_home();
    let out = on_terminal(&command_line(
        &json_home,
        &["connection", "import", &file, "--output", "json"],
    ))
    .output()
    .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let summary: serde_json::Value = serde_json::from_str(&shown)
        .unwrap_or_else(|e| panic!("nothing but the JSON on the terminal ({e}):\n{shown:?}"));
    assert_eq!(summary["imported"], 3000);
}

#[test]
fn the_oauth_wait_says_where_and_how_long_on_a_terminal() {
    let home = new_home();
    let mut child = on_terminal(&command_line(
        &home,
        &["connect", "prov", "--integration", "app", "--no-browser"],
    ))
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for chunk in BufReader::new(stdout).split(b'\r') {
            let Ok(chunk) = chunk else { break };
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("gives up after 10 minutes") {
                let _ = tx.send(seen);
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        if let Ok(seen) = rx.recv_timeout(Duration::from_millis(100)) {
            break seen;
        }
        assert!(Instant::now() < deadline, "no waiting message on the terminal");
    };
    let _ = child.kill();
    let _ = child.wait();
    let url_line = seen.lines().find(|l| l.contains("Waiting for the browser")).unwrap();
    assert!(
        url_line.contains("Waiting for the browser to finish at http://127.0.0.1:9/authorize?"),
        "{url_line}"
    );
}
