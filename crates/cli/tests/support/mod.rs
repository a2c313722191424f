//! Test harness for whole flows: a temporary data directory, the real `latchkey` binary, and
//! real peers (httpbin) on free loopback ports. Every child binds port 0 itself and reports the
//! port it got (peers on their first stdout line, `latchkey serve` in its log), so no port is
//! picked here and released for another process to take first. Readiness is polled, never
//! slept on.

#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Reads a peer's first stdout line, `ready PORT`: the port it bound (port 0 asked the system for
/// a free one). The rest of its stdout is drained on a thread, so a chatty peer never blocks on
/// a full pipe.
pub fn ready_port(child: &mut Child, what: &str) -> u16 {
    let mut stdout = BufReader::new(child.stdout.take().expect("the peer's stdout is piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{what} did not start: its first line was {line:?}"));
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    port
}

/// Polls `url` until it answers (any status) or `timeout` passes.
pub fn wait_http(url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed on drop.
pub struct Running {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/peers/SCRIPT ARGS…` with the test Python and waits for its `ready PORT` line;
/// `install` says what to install when it does not start. `scheme` is `http` or `https`.
pub fn python_peer(script: &str, scheme: &str, args: &[&str], packages: &str) -> Running {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let port = ready_port(
        &mut child,
        &format!(
            "{script} (needs the PyPI packages {packages}: run scripts/test --prepare, which \
             installs them into .venv-test/)"
        ),
    );
    Running { child, base: format!("{scheme}://127.0.0.1:{port}"), log: PathBuf::new() }
}

/// The values of header `name` in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// httpbin (PyPI) on a free port (`tests/peers/httpbin_peer.py`). Fails loudly when it is not
/// installed: the test script installs it (`scripts/test`).
pub fn httpbin() -> Running {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap().keep();
    let log = dir.join("httpbin.log");
    let mut child = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/httpbin_peer.py"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start python3");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let Some(port) = line.trim().strip_prefix("ready ").and_then(|p| p.parse::<u16>().ok()) else {
        let _ = child.kill();
        panic!(
            "httpbin did not start; is it installed? (run scripts/test --prepare, which installs it into \
             it)\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Running { child, base: format!("http://127.0.0.1:{port}"), log }
}

/// A Latchkey data directory with its own connectors directory.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub extra_env: Vec<(String, String)>,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("connectors")).unwrap();
        Self { dir, extra_env: Vec::new() }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn connectors_dir(&self) -> PathBuf {
        self.dir.path().join("connectors")
    }

    /// Writes a connector file into the connectors directory.
    pub fn connector(&self, id: &str, yaml: &str) {
        std::fs::write(self.connectors_dir().join(format!("{id}.yaml")), yaml).unwrap();
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--connectors")
            .arg(self.connectors_dir())
            .env_remove("LATCHKEY_MASTER_KEY")
            .env_remove("LATCHKEY_MASTER_KEY_FILE")
            .env_remove("LATCHKEY_MASTER_KEY_PREVIOUS")
            .env_remove("LATCHKEY_MASTER_KEY_PREVIOUS_FILE")
            .env_remove("LATCHKEY_API_KEY")
            .env_remove("LATCHKEY_DATA_DIR")
            .env_remove("LATCHKEY_CONNECTORS")
            .env_remove("LATCHKEY_DATABASE_URL")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `latchkey ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "latchkey {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `latchkey serve` on a free port with a known API key; logs go to a file. Its
    /// public URL is the address it listens on unless `extra` says `--public-url`.
    pub fn serve(&self, api_key: &str, extra: &[&str]) -> Running {
        self.serve_at(api_key, "127.0.0.1:0", extra)
    }

    /// [`Home::serve`] listening on `listen` (e.g. the address an earlier server of this home
    /// was given, to start it again with other options).
    pub fn serve_at(&self, api_key: &str, listen: &str, extra: &[&str]) -> Running {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.path().join(format!("serve-{n}.log"));
        let child = self
            .command()
            .env("LATCHKEY_API_KEY", api_key)
            .args(["serve", "--listen", listen])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut running = Running { child, base: String::new(), log: log.clone() };
        let address = listening_address(&mut running.child, &log, Duration::from_secs(30));
        running.base = format!("http://{address}");
        assert!(
            wait_healthy(&running.base, Duration::from_secs(30)),
            "latchkey serve did not become healthy:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        running
    }
}

/// The address `latchkey serve` bound, from the `latchkey listening address=…` line of its log
/// (`log`, which its stderr goes to).
pub fn listening_address(child: &mut Child, log: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(address) = address_in_log(&text) {
            return address;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("latchkey serve exited ({status}) before listening:\n{text}");
        }
        assert!(Instant::now() < deadline, "latchkey serve never said where it listens:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `address=` of the `latchkey listening` line in `text`, a text-format log (coloured or
/// not).
pub fn address_in_log(text: &str) -> Option<String> {
    let text = without_colours(text);
    let line = text.lines().find(|line| line.contains("latchkey listening"))?;
    let address = line.split_whitespace().find_map(|word| word.strip_prefix("address="))?;
    Some(address.to_owned())
}

/// Polls `/healthz` until it answers 200.
pub fn wait_healthy(base: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok((200, _)) = http("GET", &format!("{base}/healthz"), &[], b"") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A minimal blocking HTTP/1.1 client for tests, written by hand so that tests send exactly the
/// raw paths they mean (no client-side normalisation of `//`, `..` or `%2F`): returns the status
/// and body.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    http_full(method, url, headers, body).map(|(status, _, body)| (status, body))
}

/// Like [`http`], but also returns the response head (status line and headers) as text.
pub fn http_full(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok((status, head.to_string(), body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A stand-in OAuth provider and API on one port, counting token requests. Every refresh issues
/// `at-N`/`rt-N`; the API accepts only the newest access token.
pub struct MockOAuth {
    pub base: String,
    pub token_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl MockOAuth {
    pub fn start(token_delay: Duration) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(Mutex::new("stale-never-valid".to_string()));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (count, current) = (seen.clone(), current.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    let mut len = 0;
                    loop {
                        let Ok(n) = stream.read(&mut buf[len..]) else { return };
                        if n == 0 {
                            break;
                        }
                        len += n;
                        let text = String::from_utf8_lossy(&buf[..len]).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if len >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let text = String::from_utf8_lossy(&buf[..len]).to_string();
                    let first = text.lines().next().unwrap_or("").to_string();
                    let (status, body) = if first.starts_with("POST /token") {
                        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                        std::thread::sleep(token_delay);
                        let token = format!("at-{n}");
                        *current.lock().unwrap() = token.clone();
                        (
                            200,
                            format!(
                                r#"{{"access_token":"{token}","refresh_token":"rt-{n}","expires_in":3600}}"#
                            ),
                        )
                    } else if first.starts_with("GET /api/me") {
                        let want = format!("authorization: bearer {}", current.lock().unwrap())
                            .to_ascii_lowercase();
                        if text.to_ascii_lowercase().contains(&want) {
                            (200, r#"{"me":"ok"}"#.to_string())
                        } else {
                            (401, String::new())
                        }
                    } else {
                        (404, String::new())
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes());
                });
            }
        });
        Self { base, token_requests: count }
    }

    pub fn token_requests(&self) -> usize {
        self.token_requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// oidc-provider (npm, OpenID Certified) from `tests/peers/oidc`, on a free port, redirecting to
/// `redirect_uri`. Fails loudly when it is not installed (`scripts/test` runs `npm ci`).
pub fn oidc_provider(redirect_uri: &str) -> Running {
    oidc_provider_with(redirect_uri, &[])
}

/// [`oidc_provider`], whose `latchkey-web` client also accepts the `extra` redirect URIs.
pub fn oidc_provider_with(redirect_uri: &str, extra: &[&str]) -> Running {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oidc");
    assert!(
        Path::new(dir).join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run `npm ci` in {dir} (scripts/test does)"
    );
    let mut child = Command::new("node")
        .arg("provider.js")
        .current_dir(dir)
        .env("REDIRECT_URI", redirect_uri)
        .env("EXTRA_REDIRECT_URIS", extra.join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let port = ready_port(&mut child, "oidc-provider");
    Running { child, base: format!("http://127.0.0.1:{port}"), log: dir.into() }
}

/// The `oidc` connector, discovered from the oidc-provider at `base`.
pub fn oidc_connector(base: &str) -> String {
    format!(
        "id: oidc\nname: OIDC\nbase_url: {base}\nauth:\n  - type: oauth2\n    issuer: {base}\n    scopes: [openid]\ntest: {{ path: /me, label: \"{{{{ response.sub }}}}\" }}\n"
    )
}

/// A `latchkey serve` (API key `api_key`, public URL its own address) and an oidc-provider that
/// redirects to it, with the `oidc` connector and the `op` integration added over the REST API
/// (the server had to start first for the provider to know its port).
pub fn oidc_served(api_key: &str) -> (Home, Running, Running) {
    let home = Home::new();
    let server = home.serve(api_key, &[]);
    let op = oidc_provider(&format!("{}/oauth/callback", server.base));
    let auth = format!("Bearer {api_key}");
    let (status, body) = http(
        "PUT",
        &format!("{}/v1/connectors/oidc", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/yaml")],
        oidc_connector(&op.base).as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let integration = serde_json::json!({
        "id": "op", "connector": "oidc", "client_id": "latchkey-web", "client_secret": "web-secret",
    });
    let (status, body) = http(
        "POST",
        &format!("{}/v1/integrations", server.base),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        integration.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    (home, server, op)
}

/// A Latchkey home with an `oidc` connector discovered from a fresh oidc-provider and an `op`
/// integration for its confidential client; the provider redirects to `{public}/oauth/callback`.
pub fn oidc_setup(public: &str) -> (Home, Running) {
    let home = Home::new();
    let op = oidc_provider(&format!("{public}/oauth/callback"));
    home.connector("oidc", &oidc_connector(&op.base));
    let secret = home.dir.path().join("secret");
    std::fs::write(&secret, "web-secret").unwrap();
    home.ok(&[
        "integration",
        "add",
        "op",
        "--connector",
        "oidc",
        "--client-id",
        "latchkey-web",
        "--client-secret-file",
        secret.to_str().unwrap(),
    ]);
    (home, op)
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
