//! What the CLI prints: lists with a header row and aligned columns, `--output json`, no colour
//! off a terminal, no INFO line repeating a result, completions and the man page, grouped help,
//! the API-key source at start-up, and the access log.

mod support;

use std::time::Duration;

use support::Home;

fn home_with_two() -> Home {
    let home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\ncategory: dev\nauth: [{type: bearer}]\n",
    );
    home.ok(&["connect", "plain", "--id", "p1", "--set", "token=t-canary-1", "--no-test"]);
    home.ok(&[
        "connect",
        "plain",
        "--id",
        "a-much-longer-connection-id",
        "--set",
        "token=t",
        "--no-test",
    ]);
    home
}

/// The column each header name starts at, and each data line's cells' start columns.
fn starts(line: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c != ' ' && previous == ' ' {
            out.push(i);
        }
        previous = c;
    }
    out
}

#[test]
fn lists_print_a_header_and_align_their_columns() {
    let home = home_with_two();
    let listed = home.ok(&["connection", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("CONNECTOR"), "{listed}");
    assert!(!listed.contains('\t'), "{listed}");
    let header = starts(lines[0]);
    for line in &lines[1..] {
        assert_eq!(starts(line)[..4], header[..4], "columns line up:\n{listed}");
    }
    assert!(!listed.contains("t-canary-1"), "{listed}");

    let connectors = home.ok(&["connector", "list", "--search", "plain"]);
    assert!(connectors.lines().next().unwrap().starts_with("ID"), "{connectors}");
    assert!(connectors.contains("plain") && connectors.contains("bearer"), "{connectors}");

    let integrations = home.ok(&["integration", "list"]);
    assert_eq!(integrations.lines().count(), 1, "a header even when empty: {integrations}");
    assert!(integrations.starts_with("ID"), "{integrations}");
}

#[test]
fn connection_list_filters_and_pages() {
    let home = home_with_two();
    let rows = |out: &str| -> Vec<String> {
        out.lines().skip(1).map(|l| l.split_whitespace().next().unwrap().to_owned()).collect()
    };
    let first = home.run(&["connection", "list", "--limit", "1"]);
    assert!(first.status.success());
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert_eq!(rows(&stdout), ["p1"], "{stdout}");
    let stderr = String::from_utf8(first.stderr).unwrap();
    let cursor = stderr
        .lines()
        .find_map(|l| l.strip_prefix("more: --cursor "))
        .unwrap_or_else(|| panic!("no cursor: {stderr}"));
    let second = home.ok(&["connection", "list", "--limit", "1", "--cursor", cursor]);
    assert_eq!(rows(&second), ["a-much-longer-connection-id"], "{second}");

    // Connections made by `connect` have no end user or tags: the filters select none.
    for filter in [["--tag", "org=acme"], ["--end-user", "u1"], ["--integration", "nope"]] {
        let out = home.ok(&[&["connection", "list"][..], &filter[..]].concat());
        assert!(rows(&out).is_empty(), "{filter:?}: {out}");
    }
    let ok = home.ok(&["connection", "list", "--status", "ok", "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ok).unwrap()["connections"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let shown = home.ok(&["connection", "show", "p1"]);
    for field in ["tags", "metadata", "end_user"] {
        assert!(shown.lines().any(|l| l.starts_with(field)), "{field}: {shown}");
    }

    for (args, message) in [
        (&["connection", "list", "--limit", "0"][..], "limit must be between 1 and 1000"),
        (&["connection", "list", "--limit", "1001"][..], "limit must be between 1 and 1000"),
        (&["connection", "list", "--cursor", "zzz"][..], "cursor"),
        (&["connection", "list", "--tag", "Org=acme"][..], "tag key"),
        (&["connection", "list", "--tag", "org"][..], "KEY=VALUE"),
    ] {
        let out = home.run(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn every_list_and_show_speaks_json() {
    let home = home_with_two();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = home.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
    };
    let connections = json(&["connection", "list", "--output", "json"]);
    assert_eq!(connections["next_cursor"], serde_json::Value::Null, "{connections}");
    let ids: Vec<&str> = connections["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"p1"));
    let shown = json(&["connection", "show", "p1", "--output", "json"]);
    assert_eq!(shown["connector"], "plain");
    assert!(!shown.to_string().contains("t-canary-1"));
    let connectors = json(&["connector", "list", "--search", "plain", "--output", "json"]);
    assert_eq!(connectors[0]["id"], "plain");
    assert_eq!(connectors[0]["auth"][0], "bearer");
    let connector = json(&["connector", "show", "plain", "--output", "json"]);
    assert_eq!(connector["base_url"], "https://plain.example");
    std::fs::write(home.dir.path().join("secret.txt"), "client-secret-canary\n").unwrap();
    let secret_file = home.dir.path().join("secret.txt");
    home.ok(&[
        "integration",
        "add",
        "i1",
        "--connector",
        "plain",
        "--client-id",
        "cid",
        "--client-secret-file",
        secret_file.to_str().unwrap(),
    ]);
    let integrations = json(&["integration", "list", "--output", "json"]);
    assert_eq!(integrations[0]["id"], "i1");
    assert_eq!(integrations[0]["has_client_secret"], true);
    assert!(!integrations.to_string().contains("client-secret-canary"));
    let keys = json(&["keys", "status", "--output", "json"]);
    assert_eq!(keys[0]["version"], 1);
    assert_eq!(keys[0]["current"], true);

    // Text show: aligned `field  value` lines.
    let text = home.ok(&["connection", "show", "p1"]);
    let line = text.lines().find(|l| l.starts_with("connector")).unwrap();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["connector", "plain"], "{text}");
}

#[test]
fn no_colour_off_a_terminal_and_no_info_line_repeating_the_result() {
    let home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    let out = home.run(&["connect", "plain", "--id", "p1", "--set", "token=t", "--no-test"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("INFO"), "no INFO line by default: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no colour into a pipe: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("p1"), "the result is printed once: {stdout}");
    // `--log info` brings the engine's lines back, still without colour.
    let out = home.run(&["--log", "info", "connection", "delete", "p1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO") && stderr.contains("connection deleted"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn completions_and_man_page_come_from_the_argument_definitions() {
    let home = Home::new();
    let bash = home.ok(&["completions", "bash"]);
    assert!(bash.contains("_latchkey()") && bash.contains("--access-log"), "bash");
    let zsh = home.ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef latchkey"), "{}", &zsh[..40]);
    let fish = home.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c latchkey") && fish.contains("integration"), "fish");
    assert!(!home.run(&["completions", "tcsh"]).status.success());
    let man = home.ok(&["man"]);
    assert!(man.contains(".TH latchkey 1"), "{}", &man[..200.min(man.len())]);
    assert!(man.contains("LATCHKEY_DATA_DIR"), "the man page names the variables");
    let dir = home.dir.path().join("man");
    home.ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(dir.join("latchkey.1").exists());
    assert!(dir.join("latchkey-serve.1").exists());
    assert!(dir.join("latchkey-connection-list.1").exists());
}

#[test]
fn subcommand_help_shows_its_own_options_before_the_global_ones() {
    let home = Home::new();
    let help = home.ok(&["serve", "--help"]);
    let own = help.find("--listen").unwrap();
    let global = help.find("Global options:").unwrap_or_else(|| panic!("{help}"));
    assert!(own < global, "{help}");
    assert!(help.find("--data-dir").unwrap() > global, "{help}");
    for variable in ["LATCHKEY_LOG", "LATCHKEY_LISTEN", "LATCHKEY_ACCESS_LOG"] {
        let count = help.matches(variable).count() - help.matches(&format!("{variable}_")).count();
        assert_eq!(count, 1, "{variable} named once:\n{help}");
    }
    let list = home.ok(&["connection", "list", "--help"]);
    assert!(list.find("--output").unwrap() < list.find("Global options:").unwrap(), "{list}");
}

fn log_of(running: &support::Running) -> String {
    std::fs::read_to_string(&running.log).unwrap()
}

#[test]
fn start_up_names_the_api_key_source_and_warns_of_a_short_or_shadowing_key() {
    let home = Home::new();
    // First start: generated into the data directory.
    let mut first = home.command();
    let log = home.dir.path().join("first.log");
    let mut child = first
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    support::listening_address(&mut child, &log, Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("API key from generated into"), "{text}");
    assert!(!text.contains("is short"), "{text}");

    // The environment wins, and the ignored file is named; a short key is warned about.
    let running = home.serve("short-key", &[]);
    let text = log_of(&running);
    assert!(text.contains("API key from environment (LATCHKEY_API_KEY)"), "{text}");
    assert!(text.contains("the key in") && text.contains("api.key is not accepted"), "{text}");
    assert!(
        text.contains("WARN") && text.contains("the API key is short (9 characters)"),
        "{text}"
    );
    assert!(!text.contains("short-key"), "the key itself is never logged: {text}");
}

#[test]
fn one_access_log_line_per_request_without_secrets_and_switchable_off() {
    let home = home_with_two();
    let key = "an-api-key-long-enough-for-no-warning-0001";
    let running = home.serve(key, &[]);
    let auth = format!("Bearer {key}");
    let (status, _) = support::http(
        "GET",
        &format!("{}/v1/connections/p1", running.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    // A query the route does not take is refused (400), and its value is not logged either.
    let (status, _) = support::http(
        "GET",
        &format!("{}/v1/connections/p1?token=query-canary", running.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 400);
    let (status, _) =
        support::http("GET", &format!("{}/connect/session-token-canary", running.base), &[], b"")
            .unwrap();
    assert!(status >= 400, "{status}");
    std::thread::sleep(Duration::from_millis(200));
    let text = log_of(&running);
    let line = text
        .lines()
        .find(|l| l.contains("latchkey::access") && l.contains("/v1/connections/{id}"))
        .unwrap_or_else(|| panic!("no access line:\n{text}"));
    for part in ["method=GET", "status=200", "latency_ms=", "connection=\"p1\"", "INFO"] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(text.contains("route=/connect/{token}"), "{text}");
    for secret in [key, "query-canary", "session-token-canary", "t-canary-1"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
    drop(running);

    let running = home.serve(key, &["--access-log", "false"]);
    support::http(
        "GET",
        &format!("{}/v1/connections", running.base),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let text = log_of(&running);
    assert!(!text.contains("latchkey::access"), "{text}");
    assert!(text.contains("latchkey listening"), "{text}");
}

#[test]
fn an_integration_in_use_is_deleted_only_with_force() {
    let home = Home::new();
    home.connector(
        "plain",
        "id: plain\nname: Plain\nbase_url: https://plain.example\nauth: [{type: bearer}]\n",
    );
    home.ok(&["integration", "add", "i1", "--connector", "plain", "--client-id", "cid"]);
    home.ok(&[
        "connect",
        "plain",
        "--id",
        "p1",
        "--integration",
        "i1",
        "--set",
        "token=t",
        "--no-test",
    ]);
    let refused = home.run(&["integration", "delete", "i1"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("used by 1 connection"), "{stderr}");
    let out = home.ok(&["integration", "delete", "i1", "--force"]);
    assert!(out.contains("1 connection(s) now need re-authorisation"), "{out}");
    let shown: serde_json::Value =
        serde_json::from_str(&home.ok(&["connection", "show", "p1", "--output", "json"])).unwrap();
    assert_eq!(shown["status"], "needs_reauth", "{shown}");
}

/// A connect flow that fails names its connect session and integration in the log line.
#[test]
fn error_lines_name_the_session_integration_and_connection() {
    let home = Home::new();
    home.connector(
        "oauthy",
        "id: oauthy\nname: OAuthy\nbase_url: https://api.oauthy.example\nauth:\n  - type: oauth2\n    \
         authorize_url: https://auth.oauthy.example/authorize\n    \
         token_url: https://auth.oauthy.example/token\n",
    );
    home.ok(&["integration", "add", "oauthy-app", "--connector", "oauthy", "--client-id", "cid"]);
    let key = "an-api-key-long-enough-for-no-warning-0002";
    let running = home.serve(key, &[]);
    let auth = format!("Bearer {key}");
    let (status, body) = support::http(
        "POST",
        &format!("{}/v1/connect-sessions", running.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        br#"{"integration": "oauthy-app"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let session = created["id"].as_str().unwrap().to_owned();
    let url = created["url"].as_str().unwrap();
    let (status, head, _) = support::http_full("GET", url, &[], b"").unwrap();
    assert!((300..400).contains(&status), "a redirect to the provider: {head}");
    let location = support::header(&head, "location")[0].to_owned();
    let state = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let cookie = support::header(&head, "set-cookie")[0].split(';').next().unwrap().to_owned();
    // The provider sends the user back refusing consent, in the browser that started the flow.
    let (status, _) = support::http(
        "GET",
        &format!("{}/oauth/callback?state={state}&error=access_denied", running.base),
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap();
    assert!(status >= 400, "{status}");
    std::thread::sleep(Duration::from_millis(200));
    let text = log_of(&running);
    let failed = text
        .lines()
        .find(|l| l.contains("connect flow failed"))
        .unwrap_or_else(|| panic!("no flow failure line:\n{text}"));
    for part in [format!("session=\"{session}\""), "integration=\"oauthy-app\"".to_owned()] {
        assert!(failed.contains(&part), "{part} in {failed}");
    }
    assert!(!failed.contains(&state), "the state is not logged: {failed}");
    assert!(!text.contains(url.rsplit('/').next().unwrap()), "the session token is not logged");
}

/// Without a terminal, `connect` reads the values it would prompt for from standard input, one
/// a line, so a script can feed a secret without putting it on the command line.
#[test]
fn connect_reads_prompted_values_from_a_pipe() {
    use std::io::Write as _;
    let home = Home::new();
    home.connector(
        "keyed",
        "id: keyed\nname: Keyed\nbase_url: https://keyed.example\nauth:\n  - type: api_key\n    \
         fields: [{ key: api_key, label: API key }]\n    apply: { in: header, name: X-Key }\n",
    );
    let mut child = home
        .command()
        .args(["connect", "keyed", "--id", "piped", "--no-test"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped-canary-key\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = home.ok(&["connection", "show", "piped", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["secret_fields"], serde_json::json!(["api_key"]));
    let all =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("piped-canary-key"), "the value is not echoed: {all}");
}
