//! `latchkey audit` through the real binary: requests to `latchkey serve` leave entries that
//! `audit tail` prints and `audit verify` accepts; after one row of the SQLite file is edited
//! with raw SQL, `audit verify` exits non-zero naming that entry.

mod support;

use serde_json::Value;
use sqlx::Connection as _;
use support::{Home, http};

const KEY: &str = "audit-cli-test-key-0123456789abcdef";

/// Runs one statement on the data directory's SQLite file.
fn edit(home: &Home, statement: &str) {
    let path = home.data_dir().join("latchkey.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "{statement}");
        conn.close().await.unwrap();
    });
}

#[test]
fn verify_passes_then_names_the_entry_edited_in_the_database() {
    let home = Home::new();
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    {
        let running = home.serve(KEY, &[]);
        for (method, path) in [
            ("DELETE", "/v1/connections/first"),
            ("DELETE", "/v1/connections/second"),
            ("DELETE", "/v1/integrations/third"),
        ] {
            let (status, body) =
                http(method, &format!("{}{path}", running.base), &headers, b"").unwrap();
            assert_eq!(status, 404, "{method} {path}: {body}");
        }
        let (status, _) =
            http("GET", &format!("{}/v1/connections", running.base), &headers, b"").unwrap();
        assert_eq!(status, 200, "a read leaves no entry");
    }

    let verified = home.ok(&["audit", "verify"]);
    assert!(verified.starts_with("audit log intact: 3 entries, last 3\nhead hash "), "{verified}");

    let tail: Value =
        serde_json::from_str(&home.ok(&["audit", "tail", "--output", "json"])).unwrap();
    let entries = tail.as_array().unwrap();
    let summary: Vec<(i64, &str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["action"].as_str().unwrap(),
                e["object"]["id"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["actor"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "connection.delete", "first", "failed", "bootstrap"),
            (2, "connection.delete", "second", "failed", "bootstrap"),
            (3, "integration.delete", "third", "failed", "bootstrap"),
        ]
    );
    assert_eq!(entries[0]["address"], "127.0.0.1");
    assert_eq!(entries[0]["status"], 404);
    let second_at = entries[1]["at"].as_str().unwrap().to_owned();
    let text = home.ok(&["audit", "tail", "--limit", "1", "--action", "connection.*"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and the newest matching entry: {text}");
    assert!(lines[1].starts_with("2 ") && lines[1].contains("connection:second"), "{text}");

    // Who did it, rewritten behind Latchkey's back.
    edit(&home, "UPDATE audit_log SET object_id = 'someone-else' WHERE seq = 2");
    let out = home.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "audit log broken at entry 2 ({second_at}, connection.delete): altered"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("1 entries before it verified"), "{stderr}");
    edit(&home, "UPDATE audit_log SET object_id = 'second' WHERE seq = 2");
    home.ok(&["audit", "verify"]);
    edit(&home, "DELETE FROM audit_log WHERE seq = 2");
    let out = home.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("audit log broken at entry 2: missing (deleted); the next entry is 3 ("),
        "{stderr}"
    );
}
