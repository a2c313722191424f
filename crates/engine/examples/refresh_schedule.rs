//! The background refresher under load: `N` OAuth2 connections (default 10 000) on SQLite over
//! `PROVIDERS` token endpoints (default 3), whose tokens expire spread at random over one hour,
//! with the refresh margin (5 minutes) and the per-provider pace (`RATE`, default 10 a second)
//! of a real deployment. The hour runs `SPEEDUP` times faster (default 60: one minute): the
//! window, the margin and the scheduler's tick are divided by it and the pace multiplied by it,
//! so every ratio (calls against the limit, refreshes against expiries) is the real one's.
//! Engine and token endpoints (wiremock, counting each call with its time) share the process.
//!
//! `WINDOW` (scenario seconds, default 3600) narrows the window, e.g. to see a burst.
//!
//! Reports per provider the token calls per second (peak and mean, and the peak against the
//! pace), how many tokens expired before their refresh and how many were never refreshed, how
//! long before expiry refreshes came, and refreshes per (scenario) minute.
//!
//!     N=100000 SPEEDUP=6 cargo run --release -p latchkey-engine --example refresh_schedule

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_engine::store::{
    ConnectionRecord, ConnectionStatus, Keyring, MasterKey, SqliteStore, Store,
};
use latchkey_engine::{Catalog, Engine, NewIntegration, Origin, Secret};
use time::OffsetDateTime;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One token call: provider, connection index, when (real time since the start, and the time).
type Call = (usize, usize, Duration, OffsetDateTime);

#[derive(Clone)]
struct TokenEndpoint {
    start: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let provider: usize = request
            .url
            .path()
            .trim_start_matches("/p")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(usize::MAX);
        let token = form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let index = token.trim_start_matches("rt-").parse().unwrap_or(usize::MAX);
        self.calls.lock().unwrap().push((
            provider,
            index,
            self.start.elapsed(),
            OffsetDateTime::now_utc(),
        ));
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": format!("at-{index}-renewed"),
            "token_type": "Bearer",
            "expires_in": 30 * 86_400,
        }))
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env("N", 10_000);
    let providers: usize = env("PROVIDERS", 3);
    let speedup: f64 = env("SPEEDUP", 60.0);
    let rate: u32 = env("RATE", latchkey_engine::DEFAULT_REFRESH_RATE);
    let window_secs: u64 = env("WINDOW", 3600);
    let window = Duration::from_secs(window_secs).div_f64(speedup);
    let margin = latchkey_engine::DEFAULT_REFRESH_MARGIN.div_f64(speedup);
    let tick = Duration::from_secs(30).div_f64(speedup).max(Duration::from_millis(50));
    let pace = (f64::from(rate) * speedup).round() as u32;

    let server = MockServer::start().await;
    let start = Instant::now();
    let endpoint = TokenEndpoint { start, calls: Arc::default() };
    Mock::given(method("POST")).respond_with(endpoint.clone()).mount(&server).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&db, Keyring::single(MasterKey::generate())).await.unwrap());
    let catalog = Catalog::default();
    for p in 0..providers {
        let yaml = format!(
            "id: p{p}\nname: P{p}\nbase_url: {uri}/p{p}/api\nauth:\n  - type: oauth2\n    authorize_url: {uri}/p{p}/authorize\n    token_url: {uri}/p{p}/token\n",
            uri = server.uri()
        );
        catalog.add_source(&yaml, "bench.yaml", Origin::Custom).unwrap();
    }
    let net = latchkey_engine::Client::new(latchkey_engine::ClientConfig::default()).unwrap();
    let engine = Engine::builder(store.clone(), catalog, net)
        .refresh_margin(margin)
        .refresh_rate(pace)
        .build()
        .await
        .unwrap();
    for p in 0..providers {
        engine
            .integrations()
            .put(NewIntegration {
                environment: latchkey_engine::EnvironmentId::default_environment(),
                id: format!("app-p{p}").parse().unwrap(),
                connector: format!("p{p}").parse().unwrap(),
                client_id: Some("cid".into()),
                client_secret: Some(Secret::new("csecret")),
                scopes: Vec::new(),
            })
            .await
            .unwrap();
    }

    // Expiries at random over the window. Seeded from a placeholder start, then moved (one
    // UPDATE) to start once seeding is done, a lead and a half after the scheduler starts.
    let seeding = Instant::now();
    let offsets: Vec<Duration> =
        (0..n).map(|_| window.mul_f64(rand::random_range(0.0..1.0))).collect();
    let placeholder = OffsetDateTime::now_utc() + time::Duration::days(1);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<ConnectionRecord> =
            chunk.iter().map(|&i| record(i, providers, placeholder + offsets[i])).collect();
        store.insert_connections(&batch).await.unwrap();
    }
    let seeded = seeding.elapsed();
    let base = OffsetDateTime::now_utc() + margin.mul_f64(1.5) + Duration::from_secs(1);
    let shift = i64::try_from((base - placeholder).whole_nanoseconds()).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query(
        "UPDATE connections SET expires_at = expires_at + ?1, updated_at = updated_at + ?1,
            created_at = created_at + ?1",
    )
    .bind(shift)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let expiries: Vec<OffsetDateTime> = offsets.iter().map(|o| base + *o).collect();
    let now = OffsetDateTime::now_utc();
    eprintln!(
        "seeded {n} connections in {seeded:.1?}; expiries start in {:.1} s",
        (base - now).as_seconds_f64()
    );

    let t0 = Instant::now() - start;
    let scheduler = tokio::spawn(engine.renewal().run_scheduler(tick));
    let deadline = Instant::now() + (base - now).unsigned_abs() + window + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let calls = endpoint.calls.lock().unwrap().len();
        if calls >= n || Instant::now() > deadline {
            break;
        }
    }
    scheduler.abort();
    let calls = endpoint.calls.lock().unwrap().clone();
    let run = Run { n, providers, speedup, pace, window_secs, base, t0, seeded };
    report(&calls, &expiries, &run);
}

/// Connection `i`: an OAuth2 connection of provider `i % providers`, its token issued an hour
/// before it expires at `expires_at`, as a real one is.
fn record(i: usize, providers: usize, expires_at: OffsetDateTime) -> ConnectionRecord {
    let issued = expires_at - time::Duration::hours(1);
    ConnectionRecord {
        id: format!("conn-{i:06}"),
        environment: "default".into(),
        connector: format!("p{}", i % providers),
        integration: Some(format!("app-p{}", i % providers)),
        auth_method: "oauth2".into(),
        credentials: BTreeMap::from([
            ("access_token".to_string(), Secret::new(format!("at-{i}"))),
            ("refresh_token".to_string(), Secret::new(format!("rt-{i}"))),
        ]),
        config: BTreeMap::new(),
        status: ConnectionStatus::Ok,
        health: Default::default(),
        label: None,
        end_user: None,
        tags: Default::default(),
        metadata: Default::default(),
        expires_at: Some(expires_at),
        version: 0,
        created_at: issued,
        updated_at: issued,
    }
}

/// What the run was, for the report.
struct Run {
    n: usize,
    providers: usize,
    speedup: f64,
    pace: u32,
    window_secs: u64,
    base: OffsetDateTime,
    t0: Duration,
    seeded: Duration,
}

fn report(calls: &[Call], expiries: &[OffsetDateTime], run: &Run) {
    let Run { n, providers, speedup, pace, window_secs, base, t0, seeded } = *run;
    let mut first_call: Vec<Option<OffsetDateTime>> = vec![None; n];
    let mut per_second: Vec<BTreeMap<u64, u32>> = vec![BTreeMap::new(); providers];
    let mut repeated = 0;
    for (provider, index, elapsed, at) in calls {
        if *index >= n || *provider >= providers {
            continue;
        }
        *per_second[*provider].entry((*elapsed - t0.min(*elapsed)).as_secs()).or_default() += 1;
        match &mut first_call[*index] {
            Some(_) => repeated += 1,
            slot => *slot = Some(*at),
        }
    }
    let late = (0..n).filter(|&i| first_call[i].is_some_and(|at| at > expiries[i])).count();
    let never = first_call.iter().filter(|c| c.is_none()).count();
    let leads: Vec<f64> = (0..n)
        .filter_map(|i| first_call[i].map(|at| (expiries[i] - at).as_seconds_f64() * speedup))
        .collect();
    let min_lead = leads.iter().copied().fold(f64::INFINITY, f64::min);
    let mean_lead = leads.iter().sum::<f64>() / leads.len().max(1) as f64;
    let scenario = Duration::from_secs(window_secs).div_f64(speedup);
    println!(
        "### {n} connections expiring within {} min, {providers} providers, pace {} a second per provider ({speedup}x speed-up)\n",
        window_secs / 60,
        f64::from(pace) / speedup,
    );
    println!(
        "seeded in {seeded:.1?}; the scenario's {} min ran in {scenario:.0?}\n",
        window_secs / 60
    );
    println!(
        "| provider | refreshes | peak calls/s (scenario) | mean calls/s (scenario) | peak / pace |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (p, seconds) in per_second.iter().enumerate() {
        let total: u32 = seconds.values().sum();
        let peak = seconds.values().copied().max().unwrap_or(0);
        let span = match (seconds.keys().next(), seconds.keys().last()) {
            (Some(a), Some(b)) => (b - a + 1) as f64,
            _ => 1.0,
        };
        println!(
            "| p{p} | {total} | {:.1} | {:.1} | {:.2} |",
            f64::from(peak) / speedup,
            f64::from(total) / span / speedup,
            f64::from(peak) / f64::from(pace)
        );
    }
    println!(
        "\nexpired before their refresh: **{late}**; not refreshed when the run ended (30 s of real time after the window): **{never}**; refreshed twice: {repeated}"
    );
    println!(
        "refreshed before expiry (scenario seconds): min {min_lead:.0}, mean {mean_lead:.0} (margin 300, spread to 450)\n"
    );
    // Refreshes per scenario minute, counted from the first expiry.
    let mut minutes: BTreeMap<i64, u32> = BTreeMap::new();
    for at in first_call.iter().flatten() {
        let minute = ((*at - base).as_seconds_f64() * speedup / 60.0).floor() as i64;
        *minutes.entry(minute).or_default() += 1;
    }
    println!(
        "refreshes per minute (minute 0 = the first expiry; earlier minutes are refreshes ahead of it), ten minutes a row:\n"
    );
    println!("| from minute | refreshes in each minute |");
    println!("| --- | --- |");
    let (Some(first), Some(last)) = (minutes.keys().next(), minutes.keys().last()) else {
        return;
    };
    let mut row = first.div_euclid(10) * 10;
    while row <= *last {
        let counts: Vec<String> =
            (row..row + 10).map(|m| minutes.get(&m).copied().unwrap_or(0).to_string()).collect();
        println!("| {row} | {} |", counts.join(" "));
        row += 10;
    }
}
