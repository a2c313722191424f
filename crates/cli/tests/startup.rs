//! Start-up: an empty data directory gets a master key (0600) and an API key; a wrong or missing
//! key on a database that holds secrets stops with a clear error.

mod support;

use support::Home;

fn store_one(home: &Home) {
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    home.ok(&["connect", "plain", "--id", "p1", "--set", "token=t", "--no-test"]);
}

#[test]
fn first_start_generates_a_private_master_key() {
    let home = Home::new();
    let out = home.run(&["connection", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key_file = home.data_dir().join("master.key");
    assert!(key_file.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("generated a new master key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The second start reuses it and says nothing about generating.
    let out = home.run(&["connection", "list"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("generated"));
}

#[test]
fn serve_generates_and_prints_an_api_key_once() {
    let home = Home::new();
    let log = home.dir.path().join("serve.log");
    let mut child = home
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let address = support::listening_address(&mut child, &log, std::time::Duration::from_secs(30));
    let base = format!("http://{address}");
    assert!(support::wait_healthy(&base, std::time::Duration::from_secs(30)));
    let key = std::fs::read_to_string(home.data_dir().join("api.key")).unwrap();
    let key = key.trim();
    assert!(key.len() > 30);
    let (status, _) = support::http(
        "GET",
        &format!("{base}/v1/connections"),
        &[("Authorization", &format!("Bearer {key}"))],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        std::fs::read_to_string(&log).unwrap().contains(key),
        "the key is printed on first start"
    );
}

#[test]
fn wrong_key_stops_start_up() {
    let home = Home::new();
    store_one(&home);
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let out = home
        .command()
        .env("LATCHKEY_MASTER_KEY", wrong)
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
}

#[test]
fn missing_key_stops_start_up() {
    let home = Home::new();
    store_one(&home);
    std::fs::remove_file(home.data_dir().join("master.key")).unwrap();
    let out = home.run(&["connection", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no master key was given"), "{err}");
    assert!(!home.data_dir().join("master.key").exists(), "must not generate over existing data");
}

#[test]
fn malformed_key_is_a_clear_error() {
    let home = Home::new();
    let out = home
        .command()
        .env("LATCHKEY_MASTER_KEY", "short")
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key"));
}

#[test]
fn key_from_env_and_file_work() {
    let home = Home::new();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let key_file = home.dir.path().join("k");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let out = home
        .command()
        .env("LATCHKEY_MASTER_KEY", key)
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!home.data_dir().join("master.key").exists());
    let out = home
        .command()
        .env("LATCHKEY_MASTER_KEY_FILE", &key_file)
        .args(["connection", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_harness_reads_the_listening_address_from_the_log_line() {
    let log = "2026-01-01T00:00:00Z  INFO latchkey: latchkey listening address=127.0.0.1:40123 public_url=http://127.0.0.1:40123/ connectors=170\n";
    assert_eq!(support::address_in_log(log).as_deref(), Some("127.0.0.1:40123"));
    assert_eq!(support::address_in_log("INFO latchkey: starting\n"), None);
    let coloured = "\x1b[32m INFO\x1b[0m latchkey listening \x1b[3maddress\x1b[0m\x1b[2m=\x1b[0m127.0.0.1:39989 \x1b[3mpublic_url\x1b[0m";
    assert_eq!(support::address_in_log(coloured).as_deref(), Some("127.0.0.1:39989"));
}
