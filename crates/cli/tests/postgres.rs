//! `--database-url` with PostgreSQL: a connection stored by one CLI process is read back and
//! used by another, nothing is written to a SQLite file, and a data directory without the key
//! refuses the database instead of generating a new key over it.
//!
//! Needs the PostgreSQL server at `LATCHKEY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); fails without it. Each run uses a schema of its
//! own, chosen through the URL's `options=-c search_path=…`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;

use support::Home;
use support::postgres::Schema;

const TOKEN: &str = "canary-pg-token-41c9e7";

/// An API on a free port that answers one request and hands back its head.
fn one_request_api() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 16384];
        let mut len = 0;
        while !String::from_utf8_lossy(&buf[..len]).contains("\r\n\r\n") {
            let n = stream.read(&mut buf[len..]).unwrap();
            assert!(n > 0, "the request ended early");
            len += n;
        }
        let body = r#"{"ok":true}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&buf[..len]).into_owned()
    });
    (base, handle)
}

#[test]
fn a_connection_stored_in_postgres_is_read_by_another_process() {
    let schema = Schema::create("cli");
    let url = schema.url();
    let (api, request) = one_request_api();
    let home = Home::new();
    home.connector(
        "plain",
        &format!("id: plain\nname: Plain\nbase_url: {api}\nauth: [{{type: bearer}}]\n"),
    );

    // The first process: an empty data directory and an empty database, so a key is made.
    let out = home.run(&[
        "--database-url",
        &url,
        "connect",
        "plain",
        "--id",
        "p1",
        "--set",
        &format!("token={TOKEN}"),
        "--no-test",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(home.data_dir().join("master.key").exists());
    assert!(!home.data_dir().join("latchkey.db").exists(), "PostgreSQL, not SQLite");

    // A second process, given the URL by environment, reads the connection back and uses its
    // decrypted token.
    let listed = home
        .command()
        .env("LATCHKEY_DATABASE_URL", &url)
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("p1"));
    let out = home
        .command()
        .env("LATCHKEY_DATABASE_URL", &url)
        .args(["request", "p1", "GET", "/me"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let head = request.join().unwrap().to_ascii_lowercase();
    assert!(head.contains(&format!("authorization: bearer {TOKEN}")), "{head}");

    // Without the data directory's key, the database is refused, not given a new key.
    let stranger = Home::new();
    let out = stranger.run(&["--database-url", &url, "connection", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no master key was given"), "{err}");
    assert!(!err.contains("search_path"), "the URL stays out of the message: {err}");
    assert!(!stranger.data_dir().join("master.key").exists());

    // With the key but not the data directory's SQLite file, the key works on PostgreSQL.
    let key = std::fs::read_to_string(home.data_dir().join("master.key")).unwrap();
    let out = stranger
        .command()
        .env("LATCHKEY_MASTER_KEY", key.trim())
        .args(["--database-url", &url, "connection", "show", "p1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused() {
    let home = Home::new();
    let out = home.run(&["--database-url", "mysql://db/latchkey", "connection", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
}
