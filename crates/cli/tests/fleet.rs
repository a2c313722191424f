//! A fleet: three `latchkey serve` processes on one PostgreSQL database (and one Redis), as
//! behind a load balancer. 200 concurrent proxied requests spread over the three on one expired
//! token make exactly one token call; a connector's 10 requests/s limit holds for the fleet
//! with `--redis-url`; SIGKILL of the instance holding a refresh lease mid-exchange loses no
//! refresh token: another instance takes over once the lease lapses, and the connection ends
//! `ok` with a working refresh token, or `needs_reauth` when the provider had already spent it.
//!
//! Needs the PostgreSQL server at `LATCHKEY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`; each test works in a schema of its own) and the
//! Redis at `LATCHKEY_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). Counts only: nothing
//! here asserts how fast anything is.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::postgres::Schema;
use support::{Home, MockOAuth, Running, http};

const API_KEY: &str = "lk_fleet_test_key_5f1d0c";
const AUTH: &str = "Bearer lk_fleet_test_key_5f1d0c";
/// One master key for the whole fleet, as every instance of a deployment is given.
const MASTER_KEY: &str = "bGF0Y2hrZXktZmxlZXQtdGVzdC1tYXN0ZXIta2V5ISE=";

fn redis_url() -> String {
    std::env::var("LATCHKEY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Three `serve` instances on one schema. Fields drop in order: the instances are killed
/// before their schema goes.
struct Fleet {
    instances: Vec<Running>,
    home: Home,
    _schema: Schema,
}

impl Fleet {
    /// Writes `connectors` (id, YAML), then starts three instances one after another (each
    /// polled until healthy), all given `extra` options.
    fn start(connectors: &[(&str, String)], extra: &[&str]) -> Self {
        let schema = Schema::create("fleet");
        let mut home = Home::new();
        home.extra_env.push(("LATCHKEY_DATABASE_URL".into(), schema.url()));
        home.extra_env.push(("LATCHKEY_MASTER_KEY".into(), MASTER_KEY.into()));
        for (id, yaml) in connectors {
            home.connector(id, yaml);
        }
        let instances = (0..3).map(|_| home.serve(API_KEY, extra)).collect();
        Self { instances, home, _schema: schema }
    }

    fn base(&self, i: usize) -> String {
        self.instances[i % self.instances.len()].base.clone()
    }

    /// Adds the OAuth integration `app` of `connector` through the CLI, on the shared database.
    fn integration(&self, connector: &str) {
        let secret = self.home.dir.path().join("client-secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        self.home.ok(&[
            "integration",
            "add",
            "app",
            "--connector",
            connector,
            "--client-id",
            "cid",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ]);
    }

    /// Creates a connection through instance `i` from its `POST /v1/connections` body.
    fn connection(&self, i: usize, body: serde_json::Value) {
        let (status, text) = self.call(i, "POST", "/v1/connections?test=false", &body);
        assert_eq!(status, 201, "{text}");
    }

    fn call(&self, i: usize, method: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        http(
            method,
            &format!("{}{path}", self.base(i)),
            &[("Authorization", AUTH), ("Content-Type", "application/json")],
            &body,
        )
        .unwrap()
    }

    fn get(&self, i: usize, path: &str) -> (u16, String) {
        self.call(i, "GET", path, &serde_json::Value::Null)
    }

    /// A connection as instance `i` reads it.
    fn connection_json(&self, i: usize, id: &str) -> serde_json::Value {
        let (status, text) = self.get(i, &format!("/v1/connections/{id}"));
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// `GET` through instance `i`'s proxy, `threads` at once, spread round-robin over the fleet.
fn proxied_at_once(
    fleet: &Fleet,
    connection: &str,
    path: &str,
    threads: usize,
) -> Vec<(u16, String)> {
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let url = format!("{}/v1/proxy/{connection}{path}", fleet.base(i));
            std::thread::spawn(move || http("GET", &url, &[("Authorization", AUTH)], b"").unwrap())
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// One parsed request to a [`Peer`].
struct Request {
    method: String,
    path: String,
    headers: String,
    body: String,
}

impl Request {
    /// The value of form field `name` in the body.
    fn form(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.body.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The bearer token of the `Authorization` header.
    fn bearer(&self) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("authorization") {
                return None;
            }
            value.trim().strip_prefix("Bearer ")
        })
    }
}

/// What a [`Peer`]'s handler answers: a status and a JSON body, or nothing at all (the
/// connection is closed unanswered).
type Answer = Option<(u16, String)>;

/// A small HTTP/1.1 server on a free port, one thread per connection, one request per
/// connection: the provider or API of a test. Written here because the test needs handlers that
/// block until the test says so (a token endpoint that stalls until the instance asking is
/// killed), which a canned-response mock does not express.
struct Peer {
    base: String,
}

impl Peer {
    fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || serve_one(stream, &*handler));
            }
        });
        Self { base }
    }
}

fn serve_one(mut stream: TcpStream, handler: &(dyn Fn(&Request) -> Answer + Send + Sync)) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body_start) = loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..end]).into_owned(), end + 4);
        }
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    while raw.len() < body_start + length {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let request = Request {
        method: first.next().unwrap_or("").to_owned(),
        path: first.next().unwrap_or("").to_owned(),
        headers: head.clone(),
        body: String::from_utf8_lossy(&raw[body_start..body_start + length]).into_owned(),
    };
    let Some((status, body)) = handler(&request) else { return };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// Polls `done` every 100 ms until it holds; fails with `what` after `patience`.
fn poll_until(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {patience:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_hundred_requests_on_an_expired_token_over_three_instances_make_one_token_call() {
    // The token endpoint takes 300 ms, so the 200 requests meet the refresh in flight.
    let provider = MockOAuth::start(Duration::from_millis(300));
    let connector = format!(
        "id: mockprov\nname: Mock\nbase_url: {0}/api\nauth:\n  - type: oauth2\n    authorize_url: {0}/authorize\n    token_url: {0}/token\n",
        provider.base
    );
    let fleet = Fleet::start(&[("mockprov", connector)], &[]);
    fleet.integration("mockprov");
    fleet.connection(
        0,
        serde_json::json!({
            "id": "shared", "connector": "mockprov", "integration": "app",
            "credentials": {"access_token": "expired-at", "refresh_token": "rt-0"},
            "expires_at": "2020-01-01T00:00:00Z",
        }),
    );

    let answers = proxied_at_once(&fleet, "shared", "/me", 200);
    // The mock API accepts only the newest access token (`at-1`): a request sent with the
    // expired one, or with a second refresh's token, would be refused or refresh again.
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, r#"{"me":"ok"}"#));
    }
    assert_eq!(provider.token_requests(), 1, "one token call for the whole fleet");
    let (status, text) = fleet.get(2, "/v1/connections/shared/token");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""access_token":"at-1""#), "{text}");
}

#[test]
fn a_rate_limit_shared_through_redis_holds_for_the_fleet() {
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let upstream = Peer::start(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Some((200, "{}".into()))
    });
    // A connector id of this run's own: runs sharing the Redis do not share its limit.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let id = format!("limited_{}_{}", std::process::id(), nanos.subsec_nanos());
    let connector = format!(
        "id: {id}\nname: Limited\nbase_url: {}/api\nauth:\n  - type: bearer\nrate_limit: {{requests: 10, per: second, burst: 1, scope: connector, max_wait_ms: 200}}\n",
        upstream.base
    );
    let redis = redis_url();
    let fleet = Fleet::start(&[(&id, connector)], &["--redis-url", &redis]);
    fleet.connection(
        0,
        serde_json::json!({"id": "c1", "connector": id, "credentials": {"token": "tok"}}),
    );

    // Four callers per instance, each sending as fast as it is answered, for two seconds.
    let started = Instant::now();
    let hammer = Duration::from_secs(2);
    let callers: Vec<_> = (0..12)
        .map(|i| {
            let url = format!("{}/v1/proxy/c1/x", fleet.base(i));
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while started.elapsed() < hammer {
                    statuses.push(http("GET", &url, &[("Authorization", AUTH)], b"").unwrap().0);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = callers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let elapsed = started.elapsed();

    let passed = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(passed + refused, statuses.len(), "only 200 and 429: {statuses:?}");
    let upstream_saw = received.load(Ordering::SeqCst);
    assert_eq!(upstream_saw, passed, "every 200 is one request upstream");
    // GCRA with a burst of 1: no two requests leave closer than 100 ms, so within the run's
    // duration at most limit × duration + burst can have reached the API.
    let allowed = (10.0 * elapsed.as_secs_f64()).floor() as usize + 1;
    assert!(
        statuses.len() > allowed,
        "the callers offered only {} requests, within the limit: the test proved nothing",
        statuses.len()
    );
    assert!(
        upstream_saw <= allowed,
        "the upstream saw {upstream_saw} requests in {elapsed:?}; the fleet's limit allows {allowed}"
    );
}

/// A provider with one-time refresh tokens (`rt.<family>.<n>`, access tokens `at.<family>.<n>`)
/// whose first token call per family stalls until the test releases it: for the families in
/// `spend`, after the provider has rotated the token (its answer is then lost with the
/// instance); for the others, before it has looked at the token. With `answer_after`, a first
/// call is instead answered as usual after that long.
#[derive(Default)]
struct Provider {
    state: Mutex<Families>,
    released: (Mutex<bool>, Condvar),
    spend: HashSet<String>,
    answer_after: Option<Duration>,
}

#[derive(Default)]
struct Families {
    current: HashMap<String, u32>,
    revoked: HashSet<String>,
    /// Every refresh token presented, in order.
    presented: Vec<String>,
}

impl Provider {
    fn token(&self, request: &Request) -> Answer {
        let token = request.form("refresh_token").unwrap_or_default();
        let Some((family, n)) = family_of(&token, "rt") else {
            return Some((400, r#"{"error":"invalid_request"}"#.into()));
        };
        let first = {
            let mut state = self.state.lock().unwrap();
            state.presented.push(token.clone());
            state.presented.iter().filter(|t| family_of(t, "rt").unwrap().0 == family).count() == 1
        };
        if let (true, Some(delay)) = (first, self.answer_after) {
            std::thread::sleep(delay);
        } else if first {
            if self.spend.contains(&family) {
                self.rotate(&family, n);
            }
            let (lock, released) = &self.released;
            let _unused = released.wait_while(lock.lock().unwrap(), |r| !*r).unwrap();
            return None;
        }
        Some(match self.rotate(&family, n) {
            Some(next) => (
                200,
                format!(
                    r#"{{"access_token":"at.{family}.{next}","refresh_token":"rt.{family}.{next}","expires_in":3600}}"#
                ),
            ),
            None => (400, r#"{"error":"invalid_grant"}"#.into()),
        })
    }

    /// Spends refresh token `n` of `family`: the next number, or `None` (a spent token revokes
    /// the family, as providers with refresh-token rotation do).
    fn rotate(&self, family: &str, n: u32) -> Option<u32> {
        let mut state = self.state.lock().unwrap();
        let current = *state.current.entry(family.to_owned()).or_default();
        if state.revoked.contains(family) {
            return None;
        }
        if n != current {
            state.revoked.insert(family.to_owned());
            return None;
        }
        state.current.insert(family.to_owned(), n + 1);
        Some(n + 1)
    }

    fn api(&self, request: &Request) -> Answer {
        let accepted = request.bearer().and_then(|t| family_of(t, "at")).is_some_and(|(f, n)| {
            let state = self.state.lock().unwrap();
            !state.revoked.contains(&f) && state.current.get(&f).copied().unwrap_or(0) == n
        });
        Some(if accepted { (200, r#"{"me":"ok"}"#.into()) } else { (401, "{}".into()) })
    }

    fn release(&self) {
        *self.released.0.lock().unwrap() = true;
        self.released.1.notify_all();
    }

    fn presented(&self, family: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.presented.iter().filter(|t| t.split('.').nth(1) == Some(family)).cloned().collect()
    }

    /// Serves `provider` (its token endpoint and `/api/me`) until the peer is dropped; with the
    /// `rotating` connector file that reaches it.
    fn serve(provider: &Arc<Provider>) -> (Peer, String) {
        let handler = provider.clone();
        let peer =
            Peer::start(move |request| match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/token") => handler.token(request),
                ("GET", "/api/me") => handler.api(request),
                _ => Some((404, "{}".into())),
            });
        let connector = format!(
            "id: rotating\nname: Rotating\nbase_url: {0}/api\nauth:\n  - type: oauth2\n    authorize_url: {0}/authorize\n    token_url: {0}/token\n",
            peer.base
        );
        (peer, connector)
    }
}

/// `(family, n)` of a token `<kind>.<family>.<n>`.
fn family_of(token: &str, kind: &str) -> Option<(String, u32)> {
    let mut parts = token.split('.');
    (parts.next()? == kind).then_some(())?;
    let family = parts.next()?.to_owned();
    let n = parts.next()?.parse().ok()?;
    Some((family, n))
}

#[test]
fn sigkill_of_the_lease_holder_mid_refresh_loses_no_refresh_token() {
    let provider =
        Arc::new(Provider { spend: HashSet::from(["spent".into()]), ..Provider::default() });
    let (_peer, connector) = Provider::serve(&provider);
    // A scheduler pass every second, so a lapsed lease is noticed soon after it lapses.
    let mut fleet = Fleet::start(&[("rotating", connector)], &["--refresh-interval", "1"]);
    fleet.integration("rotating");
    for family in ["kept", "spent"] {
        fleet.connection(
            1,
            serde_json::json!({
                "id": family, "connector": "rotating", "integration": "app",
                "credentials": {"access_token": format!("at.{family}.0"), "refresh_token": format!("rt.{family}.0")},
            }),
        );
    }

    // Instance 0 takes both refresh leases and sends both refresh tokens; the provider stalls.
    let holder = fleet.base(0);
    let asked: Vec<_> = ["kept", "spent"]
        .map(|id| {
            let url = format!("{holder}/v1/connections/{id}/refresh");
            std::thread::spawn(move || http("POST", &url, &[("Authorization", AUTH)], b""))
        })
        .into_iter()
        .collect();
    poll_until("both token calls reach the provider", Duration::from_secs(30), || {
        provider.presented("kept").len() == 1 && provider.presented("spent").len() == 1
    });
    let killed = fleet.instances.remove(0);
    drop(killed); // SIGKILL (`Child::kill`), then reaped.
    provider.release();
    for answer in asked {
        let answer = answer.join().unwrap();
        assert!(matches!(answer, Err(_) | Ok((0, _))), "the killed instance answered: {answer:?}");
    }

    // The others notice the lapsed leases (30 s, renewed by nobody) and refresh again.
    poll_until("another instance takes over both refreshes", Duration::from_secs(120), || {
        provider.presented("kept").len() == 2
            && fleet.connection_json(0, "spent")["status"] == "needs_reauth"
            && fleet
                .get(1, "/v1/connections/kept/token")
                .1
                .contains(r#""access_token":"at.kept.1""#)
    });
    // Each refresh token went out once more, by one instance: the provider never saw the one it
    // had rotated come back a third time, nor `kept`'s new one before the check below.
    assert_eq!(provider.presented("kept"), ["rt.kept.0", "rt.kept.0"]);
    assert_eq!(provider.presented("spent"), ["rt.spent.0", "rt.spent.0"]);

    // `kept`: ok, its new access token works, and its rotated refresh token was stored.
    assert_eq!(fleet.connection_json(1, "kept")["status"], "ok");
    let (status, body) = fleet.get(0, "/v1/proxy/kept/me");
    assert_eq!((status, body.as_str()), (200, r#"{"me":"ok"}"#));
    let (status, text) =
        fleet.call(1, "POST", "/v1/connections/kept/refresh", &serde_json::Value::Null);
    assert_eq!(status, 200, "{text}");
    assert_eq!(provider.presented("kept"), ["rt.kept.0", "rt.kept.0", "rt.kept.1"]);
    // `spent`: the provider spent its refresh token on an answer the killed instance never
    // stored, so it is visibly `needs_reauth`, never `ok` with a dead token.
    let (status, text) = fleet.get(0, "/v1/proxy/spent/me");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("needs_reauth"), "{text}");
}

/// The version fence compares a connection's version, and a connection made again under a
/// deleted one's id starts at version 1 again: a deletion therefore waits for a refresh in flight
/// on another instance, or that refresh would write the deleted connection's tokens over the
/// new one's (here, within the provider's 2 s answer, the deletion and the new connection would
/// both be done).
#[test]
fn a_connection_deleted_and_made_again_during_a_refresh_elsewhere_keeps_its_new_tokens() {
    let provider =
        Arc::new(Provider { answer_after: Some(Duration::from_secs(2)), ..Provider::default() });
    let (_peer, connector) = Provider::serve(&provider);
    let fleet = Fleet::start(&[("rotating", connector)], &[]);
    fleet.integration("rotating");
    let body = |family: &str| {
        serde_json::json!({
            "id": "x", "connector": "rotating", "integration": "app",
            "credentials": {"access_token": format!("at.{family}.0"), "refresh_token": format!("rt.{family}.0")},
        })
    };
    fleet.connection(1, body("old"));

    let url = format!("{}/v1/connections/x/refresh", fleet.base(0));
    let refresh = std::thread::spawn(move || http("POST", &url, &[("Authorization", AUTH)], b""));
    poll_until("the token call reaches the provider", Duration::from_secs(30), || {
        provider.presented("old").len() == 1
    });
    // Through another instance while the first waits for the provider's answer.
    let (status, text) = fleet.call(1, "DELETE", "/v1/connections/x", &serde_json::Value::Null);
    assert_eq!(status, 204, "{text}");
    fleet.connection(1, body("new"));
    let (status, text) = refresh.join().unwrap().unwrap();
    assert_eq!(status, 200, "the refresh of the deleted connection ended before it: {text}");

    let (status, text) = fleet.get(2, "/v1/connections/x/token");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""access_token":"at.new.0""#), "the new connection's tokens: {text}");
    let (status, body) = fleet.get(2, "/v1/proxy/x/me");
    assert_eq!((status, body.as_str()), (200, r#"{"me":"ok"}"#));
    assert!(provider.presented("new").is_empty(), "the new connection was never refreshed");
}
