//! Test harness for whole flows: a temporary data directory, the real `latchkey` binary, and
//! real peers (httpbin) on free loopback ports. Readiness is polled, never slept on.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// Starts `tests/peers/SCRIPT PORT ARGS…` with the test Python and waits for its `ready` line;
/// `install` says what to install when it does not start. `scheme` is `http` or `https`.
pub fn python_peer(script: &str, scheme: &str, args: &[&str], install: &str) -> Running {
    use std::io::{BufRead, BufReader};
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = free_port();
    let mut child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(script))
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{script} did not start ({install})");
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

/// httpbin (PyPI) on a free port. Fails loudly when it is not installed: the test script
/// installs it (`scripts/test`).
pub fn httpbin() -> Running {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = free_port();
    let dir = tempfile::tempdir().unwrap().keep();
    let log = dir.join("httpbin.log");
    let child = Command::new(&python)
        .args(["-m", "httpbin.core", "--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start python3");
    let base = format!("http://127.0.0.1:{port}");
    let running = Running { child, base: base.clone(), log: log.clone() };
    assert!(
        wait_http(&base, Duration::from_secs(30)),
        "httpbin did not start; is it installed? (pip install httpbin; scripts/test does it)\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    running
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

    /// Starts `latchkey serve` on a free port with a known API key; logs go to a file.
    pub fn serve(&self, api_key: &str, extra: &[&str]) -> Running {
        self.serve_at(free_port(), api_key, extra)
    }

    /// Starts `latchkey serve` on `port` (when a peer must know the address beforehand).
    pub fn serve_at(&self, port: u16, api_key: &str, extra: &[&str]) -> Running {
        let log = self.dir.path().join(format!("serve-{port}.log"));
        let child = self
            .command()
            .env("LATCHKEY_API_KEY", api_key)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let running = Running { child, base: base.clone(), log: log.clone() };
        assert!(
            wait_healthy(&base, Duration::from_secs(30)),
            "latchkey serve did not become healthy:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        running
    }
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
    use std::io::BufRead;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oidc");
    assert!(
        Path::new(dir).join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run `npm ci` in {dir} (scripts/test does)"
    );
    let port = free_port();
    let mut child = Command::new("node")
        .arg("provider.js")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("REDIRECT_URI", redirect_uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Running { child, base: format!("http://127.0.0.1:{port}"), log: dir.into() }
}

/// A Latchkey home with an `oidc` connector discovered from a fresh oidc-provider and an `op`
/// integration for its confidential client; the provider redirects to `{public}/oauth/callback`.
pub fn oidc_setup(public: &str) -> (Home, Running) {
    let home = Home::new();
    let op = oidc_provider(&format!("{public}/oauth/callback"));
    home.connector(
        "oidc",
        &format!(
            "id: oidc\nname: OIDC\nbase_url: {0}\nauth:\n  - type: oauth2\n    issuer: {0}\n    scopes: [openid]\ntest: {{ path: /me, label: \"{{{{ response.sub }}}}\" }}\n",
            op.base
        ),
    );
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
