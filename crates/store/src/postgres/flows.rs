//! Connect sessions, OAuth states and leases on PostgreSQL: the short-lived rows of a connect
//! flow, and the cross-process locks that make a refresh happen once. Each single-use step is
//! one conditional statement, which PostgreSQL re-checks against the newest row version when two
//! instances race, so only one of them sees its row change.

use std::time::Duration;

use sqlx::postgres::PgPool;
use time::OffsetDateTime;

use super::secrets::{delete_secrets, read_secrets, write_secret};
use crate::StoreError;
use crate::crypto::Keyring;
use crate::model::{ConnectSession, OAuthState, SessionStatus};
use crate::rows::{self, SessionKey, nanos, to_json};
use crate::secret_rows::{OAUTH_STATE, PKCE_VERIFIER};

/// The database's clock as unix nanoseconds (microsecond precision). Leases are timed by it,
/// so instances whose clocks disagree still agree on when a lease expires.
macro_rules! db_now_nanos {
    () => {
        "(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000)"
    };
}

pub(super) async fn create_connect_session(
    pool: &PgPool,
    s: &ConnectSession,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connect_sessions (id, token_hash, integration, connection_id, end_user_id,
            allowed_origin, config, status, result_connection, error, expires_at, created_at,
            auth_method)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
    pool: &PgPool,
    key: SessionKey,
    value: &str,
) -> Result<Option<ConnectSession>, StoreError> {
    let sql = match key {
        SessionKey::Id => {
            concat!("SELECT ", session_columns!(), " FROM connect_sessions WHERE id = $1")
        }
        SessionKey::TokenHash => {
            concat!("SELECT ", session_columns!(), " FROM connect_sessions WHERE token_hash = $1")
        }
    };
    let row = sqlx::query(sql).bind(value).fetch_optional(pool).await?;
    row.as_ref().map(rows::connect_session).transpose()
}

pub(super) async fn start_connect_session(pool: &PgPool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connect_sessions SET status = 'started'
         WHERE id = $1 AND status = 'pending' AND expires_at > $2",
    )
    .bind(id)
    .bind(nanos(OffsetDateTime::now_utc())?)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn finish_connect_session(
    pool: &PgPool,
    id: &str,
    status: SessionStatus,
    connection: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connect_sessions SET status = $1, result_connection = $2, error = $3
         WHERE id = $4",
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
    pool: &PgPool,
    s: &OAuthState,
    keyring: &Keyring,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // Expired states are swept as new ones arrive.
    let expired: Vec<String> =
        sqlx::query_scalar("DELETE FROM oauth_states WHERE expires_at < $1 RETURNING state_hash")
            .bind(nanos(OffsetDateTime::now_utc())?)
            .fetch_all(&mut *tx)
            .await?;
    for hash in expired {
        delete_secrets(&mut tx, OAUTH_STATE, &hash).await?;
    }
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, connect_session, browser_hash, redirect_uri,
            expires_at) VALUES ($1, $2, $3, $4, $5)",
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
    pool: &PgPool,
    state_hash: &str,
    keyring: &Keyring,
) -> Result<Option<OAuthState>, StoreError> {
    let mut tx = pool.begin().await?;
    // A second taker blocks on the row until the first commits, then finds it gone.
    let row = sqlx::query(
        "DELETE FROM oauth_states WHERE state_hash = $1
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
    pool: &PgPool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let ttl_nanos = i64::try_from(ttl.as_nanos())
        .map_err(|_| StoreError::Database("lease duration too long".into()))?;
    // A racing insert of the same name waits for the first to commit, then takes the
    // conflict path and its condition.
    let done = sqlx::query(concat!(
        "INSERT INTO locks (name, holder, expires_at) VALUES ($1, $2, ",
        db_now_nanos!(),
        " + $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
            expires_at = excluded.expires_at
         WHERE locks.expires_at < ",
        db_now_nanos!(),
        " OR locks.holder = excluded.holder"
    ))
    .bind(name)
    .bind(holder)
    .bind(ttl_nanos)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn renew_lock(
    pool: &PgPool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let ttl_nanos = i64::try_from(ttl.as_nanos())
        .map_err(|_| StoreError::Database("lease duration too long".into()))?;
    let done = sqlx::query(concat!(
        "UPDATE locks SET expires_at = ",
        db_now_nanos!(),
        " + $3 WHERE name = $1 AND holder = $2"
    ))
    .bind(name)
    .bind(holder)
    .bind(ttl_nanos)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn locks_named(
    pool: &PgPool,
    prefix: &str,
    expired_only: bool,
) -> Result<Vec<String>, StoreError> {
    let names: Vec<(String,)> = sqlx::query_as(concat!(
        "SELECT name FROM locks WHERE left(name, length($1)) = $1 AND (NOT $2 OR expires_at < ",
        db_now_nanos!(),
        ") ORDER BY name"
    ))
    .bind(prefix)
    .bind(expired_only)
    .fetch_all(pool)
    .await?;
    Ok(names.into_iter().map(|(name,)| name).collect())
}

pub(super) async fn unlock(pool: &PgPool, name: &str, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
