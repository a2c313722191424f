//! [`FlowStore`]: connect sessions, OAuth states and leases — the short-lived rows of a connect
//! flow, and the cross-process locks that make a refresh happen once. Each single-use step is
//! one conditional statement (PostgreSQL re-checks it against the newest row version when two
//! instances race; SQLite runs writers one at a time), so only one of them sees its row change.

use std::time::Duration;

use time::OffsetDateTime;

use super::secrets::delete_secrets;
use super::{Dialect, SqlStore, assembled, sql};
use crate::model::{ConnectSession, OAuthState, SessionFailure, SessionStatus};
use crate::rows::{self, Columns as _, nanos, to_json};
use crate::secret_rows::{OAUTH_STATE, PKCE_VERIFIER};
use crate::{FlowStore, StoreError};

#[async_trait::async_trait]
impl<D: Dialect> FlowStore for SqlStore<D> {
    async fn create_connect_session(&self, s: &ConnectSession) -> Result<(), StoreError> {
        let choices =
            (!s.choices.is_empty()).then(|| to_json(&s.choices, "session choices")).transpose()?;
        sql::<D>(
            "INSERT INTO connect_sessions (id, token_hash, integration, connection_id,
                end_user_id, allowed_origin, config, status, result_connection, error, expires_at,
                created_at, auth_method, end_user_email, end_user_display_name, tags, metadata,
                environment, error_code, choices, lang, return_url)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20, $21, $22)",
        )
        .bind(&s.id)
        .bind(&s.token_hash)
        .bind(&s.integration)
        .bind(&s.connection_id)
        .bind(s.end_user.as_ref().map(|u| u.id.as_str()))
        .bind(&s.allowed_origin)
        .bind(to_json(&s.config, "config")?)
        .bind(s.status.as_str())
        .bind(&s.result_connection)
        .bind(s.error.as_ref().map(|e| e.message.as_str()))
        .bind(nanos(s.expires_at)?)
        .bind(nanos(s.created_at)?)
        .bind(&s.auth_method)
        .bind(s.end_user.as_ref().and_then(|u| u.email.as_deref()))
        .bind(s.end_user.as_ref().and_then(|u| u.display_name.as_deref()))
        .bind(to_json(&s.tags, "session tags")?)
        .bind(to_json(&s.metadata, "session metadata")?)
        .bind(&s.environment)
        .bind(s.error.as_ref().map(|e| e.code.as_str()))
        .bind(&choices)
        .bind(&s.lang)
        .bind(&s.return_url)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(())
    }

    async fn choose_for_connect_session(
        &self,
        id: &str,
        integration: &str,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let chosen = sql::<D>(
            "UPDATE connect_sessions SET integration = $1, config = $2
             WHERE id = $3 AND status <> 'done'",
        )
        .bind(integration)
        .bind(to_json(config, "config")?)
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(chosen == 1)
    }

    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        let row = sql::<D>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM connect_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.as_ref().map(rows::connect_session).transpose()
    }

    async fn find_connect_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError> {
        let row = sql::<D>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM connect_sessions WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.as_ref().map(rows::connect_session).transpose()
    }

    async fn start_connect_session(&self, id: &str) -> Result<bool, StoreError> {
        // A new attempt replaces an abandoned or failed one; a done session stays done.
        let started = sql::<D>(
            "UPDATE connect_sessions SET status = 'started', error = NULL, error_code = NULL
             WHERE id = $1 AND status IN ('pending', 'started', 'failed') AND expires_at > $2",
        )
        .bind(id)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(started == 1)
    }

    async fn finish_connect_session(
        &self,
        id: &str,
        status: SessionStatus,
        connection: Option<&str>,
        error: Option<&SessionFailure>,
    ) -> Result<bool, StoreError> {
        let finished = sql::<D>(
            "UPDATE connect_sessions SET status = $1, result_connection = $2, error = $3,
                error_code = $4
             WHERE id = $5 AND status <> 'done'",
        )
        .bind(status.as_str())
        .bind(connection)
        .bind(error.map(|e| e.message.as_str()))
        .bind(error.map(|e| e.code.as_str()))
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(finished == 1)
    }

    async fn put_oauth_state(&self, s: &OAuthState) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // Expired states are swept as new ones arrive.
        let expired =
            sql::<D>("DELETE FROM oauth_states WHERE expires_at < $1 RETURNING state_hash")
                .bind(nanos(OffsetDateTime::now_utc())?)
                .fetch_all(&mut tx)
                .await?;
        for row in expired {
            delete_secrets::<D>(&mut tx, OAUTH_STATE, &row.text("state_hash")?).await?;
        }
        // One attempt per session is live: a new one cancels the one it replaces.
        let replaced =
            sql::<D>("DELETE FROM oauth_states WHERE connect_session = $1 RETURNING state_hash")
                .bind(&s.connect_session)
                .fetch_all(&mut tx)
                .await?;
        for row in replaced {
            delete_secrets::<D>(&mut tx, OAUTH_STATE, &row.text("state_hash")?).await?;
        }
        sql::<D>(
            "INSERT INTO oauth_states (state_hash, connect_session, browser_hash, redirect_uri,
                expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.state_hash)
        .bind(&s.connect_session)
        .bind(&s.browser_hash)
        .bind(&s.redirect_uri)
        .bind(nanos(s.expires_at)?)
        .execute(&mut tx)
        .await?;
        if let Some(verifier) = &s.pkce_verifier {
            self.write_secret(&mut tx, OAUTH_STATE, &s.state_hash, PKCE_VERIFIER, verifier).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn peek_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError> {
        let row = sql::<D>(
            "SELECT state_hash, connect_session, browser_hash, redirect_uri, expires_at
             FROM oauth_states WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.as_ref().map(|row| rows::oauth_state(row, None)).transpose()
    }

    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // A second taker waits for the first to commit, then finds the row gone.
        let row = sql::<D>(
            "DELETE FROM oauth_states WHERE state_hash = $1
             RETURNING state_hash, connect_session, browser_hash, redirect_uri, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let mut secrets = self.read_secrets(&mut tx, OAUTH_STATE, Some(state_hash)).await?;
        delete_secrets::<D>(&mut tx, OAUTH_STATE, state_hash).await?;
        tx.commit().await?;
        let verifier = secrets.remove(state_hash).and_then(|mut s| s.remove(PKCE_VERIFIER));
        rows::oauth_state(&row, verifier).map(Some)
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        // A racing insert of the same name waits for the first to commit, then takes the
        // conflict path and its condition.
        let taken = sql::<D>(assembled(&[
            "INSERT INTO locks (name, holder, expires_at) VALUES ($1, $2, ",
            D::NOW_NANOS,
            " + $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                expires_at = excluded.expires_at
             WHERE locks.expires_at <= ",
            D::NOW_NANOS,
            " OR locks.holder = excluded.holder",
        ]))
        .bind(name)
        .bind(holder)
        .bind(lease_nanos(ttl)?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(taken == 1)
    }

    async fn renew_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let renewed = sql::<D>(assembled(&[
            "UPDATE locks SET expires_at = ",
            D::NOW_NANOS,
            " + $3 WHERE name = $1 AND holder = $2",
        ]))
        .bind(name)
        .bind(holder)
        .bind(lease_nanos(ttl)?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(renewed == 1)
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sql::<D>("DELETE FROM locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn locks_named(
        &self,
        prefix: &str,
        expired_only: bool,
    ) -> Result<Vec<String>, StoreError> {
        sql::<D>(assembled(&[
            "SELECT name FROM locks WHERE substr(name, 1, length($1)) = $1
             AND (NOT $2 OR expires_at <= ",
            D::NOW_NANOS,
            ") ORDER BY name",
        ]))
        .bind(prefix)
        .bind(expired_only)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?
        .iter()
        .map(|row| row.text("name"))
        .collect()
    }
}

/// A lease's length as stored (nanoseconds).
fn lease_nanos(ttl: Duration) -> Result<i64, StoreError> {
    i64::try_from(ttl.as_nanos())
        .map_err(|_| StoreError::Database("lease duration too long".into()))
}
