//! Connect sessions, OAuth states and leases on SQLite: the short-lived rows of a connect flow,
//! and the cross-process locks that make a refresh happen once.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use time::OffsetDateTime;

use super::secrets::{delete_secrets, read_secrets, write_secret};
use crate::StoreError;
use crate::crypto::Keyring;
use crate::model::{ConnectSession, OAuthState, SessionStatus};
use crate::rows::{self, SessionKey, nanos, to_json};
use crate::secret_rows::{OAUTH_STATE, PKCE_VERIFIER};

pub(super) async fn create_connect_session(
    pool: &SqlitePool,
    s: &ConnectSession,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connect_sessions (id, token_hash, integration, connection_id, end_user_id,
            allowed_origin, config, status, result_connection, error, expires_at, created_at,
            auth_method)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.id)
    .bind(&s.token_hash)
    .bind(&s.integration)
    .bind(&s.connection_id)
    .bind(&s.end_user_id)
    .bind(&s.allowed_origin)
    .bind(to_json(&s.config, "config")?)
    .bind(s.status.as_str())
    .bind(&s.result_connection)
    .bind(&s.error)
    .bind(nanos(s.expires_at)?)
    .bind(nanos(s.created_at)?)
    .bind(&s.auth_method)
    .execute(pool)
    .await?;
    Ok(())
}

/// One session by id or by token hash.
pub(super) async fn connect_session(
    pool: &SqlitePool,
    key: SessionKey,
    value: &str,
) -> Result<Option<ConnectSession>, StoreError> {
    let sql = match key {
        SessionKey::Id => {
            concat!("SELECT ", session_columns!(), " FROM connect_sessions WHERE id = ?")
        }
        SessionKey::TokenHash => {
            concat!("SELECT ", session_columns!(), " FROM connect_sessions WHERE token_hash = ?")
        }
    };
    let row = sqlx::query(sql).bind(value).fetch_optional(pool).await?;
    row.as_ref().map(rows::connect_session).transpose()
}

pub(super) async fn start_connect_session(pool: &SqlitePool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connect_sessions SET status = 'started'
         WHERE id = ? AND status = 'pending' AND expires_at > ?",
    )
    .bind(id)
    .bind(nanos(OffsetDateTime::now_utc())?)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn finish_connect_session(
    pool: &SqlitePool,
    id: &str,
    status: SessionStatus,
    connection: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connect_sessions SET status = ?, result_connection = ?, error = ? WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(connection)
    .bind(error)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn put_oauth_state(
    pool: &SqlitePool,
    s: &OAuthState,
    keyring: &Keyring,
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Expired states are swept as new ones arrive.
    let now = nanos(OffsetDateTime::now_utc())?;
    let expired: Vec<String> =
        sqlx::query_scalar("DELETE FROM oauth_states WHERE expires_at < ? RETURNING state_hash")
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
    for hash in expired {
        delete_secrets(&mut tx, OAUTH_STATE, &hash).await?;
    }
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, connect_session, browser_hash, redirect_uri,
            expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&s.state_hash)
    .bind(&s.connect_session)
    .bind(&s.browser_hash)
    .bind(&s.redirect_uri)
    .bind(nanos(s.expires_at)?)
    .execute(&mut *tx)
    .await?;
    if let Some(verifier) = &s.pkce_verifier {
        write_secret(&mut tx, OAUTH_STATE, &s.state_hash, PKCE_VERIFIER, verifier, keyring).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn take_oauth_state(
    pool: &SqlitePool,
    state_hash: &str,
    keyring: &Keyring,
) -> Result<Option<OAuthState>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "DELETE FROM oauth_states WHERE state_hash = ?
         RETURNING state_hash, connect_session, browser_hash, redirect_uri, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let mut secrets = read_secrets(&mut tx, OAUTH_STATE, Some(state_hash), keyring).await?;
    delete_secrets(&mut tx, OAUTH_STATE, state_hash).await?;
    tx.commit().await?;
    let verifier = secrets.remove(state_hash).and_then(|mut s| s.remove(PKCE_VERIFIER));
    rows::oauth_state(&row, verifier).map(Some)
}

pub(super) async fn try_lock(
    pool: &SqlitePool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let now = OffsetDateTime::now_utc();
    let until = now + ttl;
    let done = sqlx::query(
        "INSERT INTO locks (name, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE locks.expires_at < ?4 OR locks.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(nanos(until)?)
    .bind(nanos(now)?)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn renew_lock(
    pool: &SqlitePool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let until = OffsetDateTime::now_utc() + ttl;
    let done = sqlx::query("UPDATE locks SET expires_at = ?1 WHERE name = ?2 AND holder = ?3")
        .bind(nanos(until)?)
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn locks_named(
    pool: &SqlitePool,
    prefix: &str,
    expired_only: bool,
) -> Result<Vec<String>, StoreError> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM locks WHERE substr(name, 1, length(?1)) = ?1
         AND (NOT ?2 OR expires_at < ?3) ORDER BY name",
    )
    .bind(prefix)
    .bind(expired_only)
    .bind(nanos(OffsetDateTime::now_utc())?)
    .fetch_all(pool)
    .await?;
    Ok(names.into_iter().map(|(name,)| name).collect())
}

pub(super) async fn unlock(pool: &SqlitePool, name: &str, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM locks WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
