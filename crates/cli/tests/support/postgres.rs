//! The PostgreSQL server the tests use (`LATCHKEY_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and a schema of one's own on it.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection as _;

pub fn server_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs one statement on the test server.
pub fn sql(statement: String) {
    let url = server_url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url} ({e}): start it (`service postgresql \
                 start`) or point LATCHKEY_TEST_POSTGRES_URL at one"
            )
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

/// A fresh schema, dropped with its tables at the end.
pub struct Schema(String);

impl Schema {
    /// `lk_{prefix}_{pid}_{n}`.
    pub fn create(prefix: &str) -> Self {
        static CREATED: AtomicUsize = AtomicUsize::new(0);
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("lk_{prefix}_{}_{n}", std::process::id());
        sql(format!("CREATE SCHEMA {name}"));
        Self(name)
    }

    /// The server URL with this schema as its search path.
    pub fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        sql(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}
