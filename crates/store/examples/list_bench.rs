//! Latency of filtered, paged connection lists (`ConnectionStore::list_connections`) on SQLite
//! and PostgreSQL at several table sizes, against a primary-key lookup of one connection
//! (`get_connection`, which also opens its one sealed credential) measured in the same run.
//! Run by `bench/list.sh`; see BENCHMARKS.md.
//!
//! Rows are seeded in bulk with multi-row `INSERT`s of generated literals (bench only: no
//! value comes from outside), after the store has migrated the schema: 10 integrations, 90%
//! `ok` / 8% `needs_reauth` / 2% `error`, three connections per end user, tags `org` (1,000
//! values) and `plan` (3 values), one credential row each (its ciphertext a placeholder: lists
//! read only field names).
//!
//! Environment: `SIZES` (default `10000 100000`), `BACKENDS` (default `sqlite postgres`),
//! `ROUNDS` (timed calls per query, default 50), `LATCHKEY_TEST_POSTGRES_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::Secret;
use latchkey_store::{
    ConnectionFilter, ConnectionRecord, ConnectionStatus, ConnectionStore, Cursor, Keyring,
    MasterKey, PageRequest, PgStore, SqliteStore, Store,
};
use sqlx::Connection as _;
use time::OffsetDateTime;

const BASE_NANOS: i64 = 1_800_000_000_000_000_000;
const BATCH: usize = 1000;

fn statuses(i: usize) -> &'static str {
    match i % 50 {
        0 => "error",
        1..=4 => "needs_reauth",
        _ => "ok",
    }
}

/// The generated rows `start..end`, as `INSERT` statements for `connections`, `connection_tags`
/// and `secrets`; `bytes` writes a byte-string literal in the backend's syntax.
fn batch(start: usize, end: usize, bytes: fn(&[u8]) -> String) -> [String; 3] {
    let mut connections = String::from(
        "INSERT INTO connections (id, connector, integration, auth_method, config, status, label, \
         end_user_id, end_user_email, end_user_display_name, tags, metadata, expires_at, version, \
         created_at, updated_at) VALUES ",
    );
    let mut tags = String::from("INSERT INTO connection_tags (connection_id, key, value) VALUES ");
    let mut secrets = String::from(
        "INSERT INTO secrets (owner_kind, owner_id, field, key_version, nonce, ciphertext, \
         aad_version) VALUES ",
    );
    let nonce = bytes(&[0; 12]);
    let ciphertext = bytes(&[0; 32]);
    for i in start..end {
        let sep = if i == start { "" } else { "," };
        let id = format!("c{i:08}");
        let org = format!("org-{}", i % 1000);
        let plan = ["free", "pro", "enterprise"][i % 3];
        let at = BASE_NANOS + i as i64 * 1000;
        connections.push_str(&format!(
            "{sep}('{id}', 'bench', 'int-{}', 'api_key', '{{}}', '{}', NULL, 'u{}', NULL, NULL, \
             '{{\"org\":\"{org}\",\"plan\":\"{plan}\"}}', '{{}}', NULL, 1, {at}, {at})",
            i % 10,
            statuses(i),
            i / 3
        ));
        tags.push_str(&format!("{sep}('{id}', 'org', '{org}'), ('{id}', 'plan', '{plan}')"));
        secrets.push_str(&format!(
            "{sep}('connection', '{id}', 'api_key', 1, {nonce}, {ciphertext}, 2)"
        ));
    }
    [connections, tags, secrets]
}

fn sqlite_bytes(b: &[u8]) -> String {
    format!("X'{}'", hex(b))
}

fn pg_bytes(b: &[u8]) -> String {
    format!("'\\x{}'::bytea", hex(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The connection the baseline reads, written through the store (its credential sealed).
fn baseline_record() -> ConnectionRecord {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(BASE_NANOS) - 1).unwrap();
    ConnectionRecord {
        id: "baseline".into(),
        environment: "default".into(),
        connector: "bench".into(),
        integration: Some("int-0".into()),
        auth_method: "api_key".into(),
        credentials: BTreeMap::from([("api_key".into(), Secret::new("k"))]),
        config: BTreeMap::new(),
        status: ConnectionStatus::Ok,
        health: latchkey_store::Health::default(),
        label: None,
        end_user: None,
        tags: BTreeMap::new(),
        metadata: Default::default(),
        expires_at: None,
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

/// The median of `rounds` timed runs of `f` (after three untimed ones), and what it returned.
async fn median<F, Fut>(rounds: usize, mut f: F) -> (Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut got = 0;
    for _ in 0..3 {
        got = f().await;
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        got = f().await;
        times.push(start.elapsed());
    }
    times.sort();
    (times[rounds / 2], got)
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.0} µs") }
}

async fn measure(backend: &str, n: usize, store: Arc<dyn Store>, seed_time: Duration) {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    let (baseline, _) = median(rounds, || {
        let store = store.clone();
        async move { store.get_connection("baseline").await.unwrap().map_or(0, |_| 1) }
    })
    .await;
    let deep_index = n * 9 / 10;
    let deep_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(
        BASE_NANOS + deep_index as i64 * 1000,
    ))
    .unwrap();
    let deep = PageRequest {
        limit: 100,
        after: Some(Cursor::after(deep_at, format!("c{deep_index:08}")).unwrap()),
    };
    let cases: Vec<(&str, ConnectionFilter, PageRequest)> = vec![
        ("first page (100)", ConnectionFilter::default(), PageRequest::first(100)),
        ("page at 90% of the cursor walk", ConnectionFilter::default(), deep),
        (
            "integration + status (`needs_reauth`)",
            ConnectionFilter {
                integration: Some("int-3".into()),
                status: Some(ConnectionStatus::NeedsReauth),
                ..Default::default()
            },
            PageRequest::first(100),
        ),
        (
            "two tags (`org`, `plan`)",
            ConnectionFilter {
                tags: BTreeMap::from([
                    ("org".into(), "org-7".into()),
                    ("plan".into(), "pro".into()),
                ]),
                ..Default::default()
            },
            PageRequest::first(100),
        ),
        (
            "end user",
            ConnectionFilter { end_user: Some(format!("u{}", n / 6)), ..Default::default() },
            PageRequest::first(100),
        ),
    ];
    println!();
    println!("### {backend}, {n} connections (seeded in {:.1} s)", seed_time.as_secs_f64());
    println!();
    println!("| query | rows | median | ratio |");
    println!("| --- | --- | --- | --- |");
    println!("| baseline: `get_connection` by id | 1 | {} | 1.0x |", show(baseline));
    for (name, filter, page) in cases {
        let (time, rows) = median(rounds, || {
            let (store, filter, page) = (store.clone(), filter.clone(), page.clone());
            async move { store.list_connections(&filter, &page).await.unwrap().items.len() }
        })
        .await;
        let ratio = time.as_secs_f64() / baseline.as_secs_f64();
        println!("| {name} | {rows} | {} | {ratio:.1}x |", show(time));
    }
}

async fn sqlite(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let key = MasterKey::generate();
    let store = SqliteStore::open(&path, Keyring::single(key)).await.unwrap();
    store.insert_connection(&baseline_record()).await.unwrap();
    let started = Instant::now();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).foreign_keys(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for start in (0..n).step_by(BATCH) {
        for statement in batch(start, (start + BATCH).min(n), sqlite_bytes) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let seeded = started.elapsed();
    measure("SQLite", n, Arc::new(store), seeded).await;
}

async fn postgres(n: usize) {
    let url = std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let schema = format!("lk_bench_{n}_{:08x}", rand_suffix());
    let mut admin = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let scoped = options.clone().options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(scoped.clone(), Keyring::single(MasterKey::generate()))
        .await
        .unwrap();
    store.insert_connection(&baseline_record()).await.unwrap();
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect_with(&scoped).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for start in (0..n).step_by(BATCH) {
        for statement in batch(start, (start + BATCH).min(n), pg_bytes) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let seeded = started.elapsed();
    measure("PostgreSQL", n, Arc::new(store), seeded).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .unwrap_or_else(|_| "10000 100000".into())
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sqlite postgres".into());
    for n in sizes {
        for backend in backends.split_whitespace() {
            match backend {
                "sqlite" => sqlite(n).await,
                "postgres" => postgres(n).await,
                other => panic!("unknown backend {other}"),
            }
        }
    }
}
