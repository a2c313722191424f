//! Connect sessions, OAuth states and leases on SQLite: the short-lived rows of a connect flow,
//! and the cross-process locks that make a refresh happen once.

use std::time::Duration;

use sqlx::Row as _;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use time::OffsetDateTime;

use super::rows::{nanos, timestamp};
use super::secrets::{delete_secrets, read_secrets, write_secret};
use crate::StoreError;
use crate::crypto::Keyring;
use crate::model::{ConnectSession, OAuthState, SessionStatus};

macro_rules! session_select {
    () => {
        "SELECT id, token_hash, integration, connection_id, end_user_id, allowed_origin, config, status,
            result_connection, error, expires_at, created_at FROM connect_sessions"
    };
}

const OAUTH_STATE: &str = "oauth_state";
const PKCE_VERIFIER: &str = "pkce_verifier";

pub(super) async fn create_connect_session(
    pool: &SqlitePool,
    s: &ConnectSession,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connect_sessions (id, token_hash, integration, connection_id, end_user_id,
            allowed_origin, config, status, result_connection, error, expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.id)
    .bind(&s.token_hash)
    .bind(&s.integration)
    .bind(&s.connection_id)
    .bind(&s.end_user_id)
    .bind(&s.allowed_origin)
    .bind(
        serde_json::to_string(&s.config)
            .map_err(|_| StoreError::Database("cannot encode config".into()))?,
    )
    .bind(s.status.as_str())
    .bind(&s.result_connection)
    .bind(&s.error)
    .bind(nanos(s.expires_at)?)
    .bind(nanos(s.created_at)?)
    .execute(pool)
    .await?;
    Ok(())
}

/// Which column a session is found by.
#[derive(Debug, Clone, Copy)]
pub(super) enum SessionKey {
    Id,
    TokenHash,
}

/// One session by id or by token hash.
pub(super) async fn connect_session(
    pool: &SqlitePool,
    key: SessionKey,
    value: &str,
) -> Result<Option<ConnectSession>, StoreError> {
    let sql = match key {
        SessionKey::Id => concat!(session_select!(), " WHERE id = ?"),
        SessionKey::TokenHash => concat!(session_select!(), " WHERE token_hash = ?"),
    };
    let row = sqlx::query(sql).bind(value).fetch_optional(pool).await?;
    row.as_ref().map(session_from_row).transpose()
}

fn session_from_row(row: &SqliteRow) -> Result<ConnectSession, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(ConnectSession {
        id: row.try_get("id")?,
        token_hash: row.try_get("token_hash")?,
        integration: row.try_get("integration")?,
        connection_id: row.try_get("connection_id")?,
        end_user_id: row.try_get("end_user_id")?,
        allowed_origin: row.try_get("allowed_origin")?,
        config: serde_json::from_str(row.try_get::<&str, _>("config")?)
            .map_err(|_| StoreError::Database("column config is not a JSON object".into()))?,
        status: SessionStatus::parse(&status)
            .ok_or_else(|| StoreError::Database(format!("unknown session status {status:?}")))?,
        result_connection: row.try_get("result_connection")?,
        error: row.try_get("error")?,
        expires_at: timestamp(row.try_get("expires_at")?)?,
        created_at: timestamp(row.try_get("created_at")?)?,
    })
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
    Ok(Some(OAuthState {
        state_hash: row.try_get("state_hash")?,
        connect_session: row.try_get("connect_session")?,
        browser_hash: row.try_get("browser_hash")?,
        redirect_uri: row.try_get("redirect_uri")?,
        pkce_verifier: secrets.remove(state_hash).and_then(|mut s| s.remove(PKCE_VERIFIER)),
        expires_at: timestamp(row.try_get("expires_at")?)?,
    }))
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

pub(super) async fn unlock(pool: &SqlitePool, name: &str, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM locks WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
