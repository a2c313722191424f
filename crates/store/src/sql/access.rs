//! [`AccessStore`]: environments (a webhook secret sealed per environment) and API keys, kept
//! as SHA-256 digests.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use std::collections::BTreeMap;

use latchkey_core::Secret;

use super::secrets::{delete_secret, delete_secrets};
use super::{Dialect, SqlStore, assembled, sql};
use crate::access::{ApiKeyRecord, EnvironmentRecord, Scope};
use crate::agent_tokens::{AgentTokenRecord, AgentTokenUse};
use crate::rows::{Columns, json, nanos, timestamp, to_json};
use crate::secret_rows::{ENVIRONMENT, WEBHOOK_PREVIOUS_SECRET, WEBHOOK_SECRET};
use crate::{AccessStore, StoreError};

/// The `api_keys` columns [`api_key`] reads, as a literal for `concat!`.
/// The `agent_tokens` columns [`agent_token`] reads, in insert order, for `concat!`.
macro_rules! agent_token_columns {
    () => {
        "id, environment, token_hash, connection_id, name, methods, paths, max_requests, \
         used_requests, created_at, expires_at, revoked_at"
    };
}

macro_rules! api_key_columns {
    () => {
        "id, name, environment, scopes, key_hash, hint, created_at, expires_at, last_used_at, \
         revoked_at"
    };
}

/// The `environments` columns [`environment`] reads, as a literal for `concat!`.
macro_rules! environment_columns {
    () => {
        "id, webhook_url, created_at, webhook_previous_expires_at"
    };
}

#[async_trait::async_trait]
impl<D: Dialect> AccessStore for SqlStore<D> {
    async fn create_environment(&self, e: &EnvironmentRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let inserted = sql::<D>(
            "INSERT INTO environments (id, webhook_url, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&e.id)
        .bind(&e.webhook_url)
        .bind(nanos(e.created_at)?)
        .execute(&mut tx)
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: ENVIRONMENT, id: e.id.clone() });
        }
        if let Some(secret) = &e.webhook_secret {
            self.write_secret(&mut tx, ENVIRONMENT, &e.id, WEBHOOK_SECRET, secret).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_environment(&self, id: &str) -> Result<Option<EnvironmentRecord>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let row = sql::<D>(concat!(
            "SELECT ",
            environment_columns!(),
            " FROM environments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut secrets = self.read_secrets(&mut tx, ENVIRONMENT, Some(id)).await?;
        tx.commit().await?;
        environment(&row, secrets.remove(id).unwrap_or_default()).map(Some)
    }

    async fn set_environment_webhook(
        &self,
        id: &str,
        url: Option<&str>,
        secret: Option<&latchkey_core::Secret>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // A new secret (or no webhook) ends any rotation overlap; a URL alone keeps both.
        let replaced = url.is_none() || secret.is_some();
        let updated = sql::<D>(
            "UPDATE environments SET webhook_url = $1,
                webhook_previous_expires_at = CASE WHEN $2 THEN NULL
                    ELSE webhook_previous_expires_at END
             WHERE id = $3",
        )
        .bind(url)
        .bind(replaced)
        .bind(id)
        .execute(&mut tx)
        .await?;
        if updated == 0 {
            return Err(StoreError::NotFound { kind: ENVIRONMENT, id: id.to_owned() });
        }
        if replaced {
            delete_secrets::<D>(&mut tx, ENVIRONMENT, id).await?;
        }
        if let Some(secret) = secret {
            self.write_secret(&mut tx, ENVIRONMENT, id, WEBHOOK_SECRET, secret).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_environment_webhook_secret(
        &self,
        id: &str,
        secret: &Secret,
        previous_until: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        // Locks the row, so two rotations at once keep a chain of secrets, not a fork.
        let found =
            sql::<D>(assembled(&["SELECT id FROM environments WHERE id = $1", D::FOR_UPDATE]))
                .bind(id)
                .fetch_optional(&mut tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound { kind: ENVIRONMENT, id: id.to_owned() });
        }
        let current = self
            .read_secrets(&mut tx, ENVIRONMENT, Some(id))
            .await?
            .remove(id)
            .and_then(|mut s| s.remove(WEBHOOK_SECRET));
        let previous = previous_until.zip(current);
        match &previous {
            Some((_, old)) => {
                self.write_secret(&mut tx, ENVIRONMENT, id, WEBHOOK_PREVIOUS_SECRET, old).await?
            }
            None => delete_secret::<D>(&mut tx, ENVIRONMENT, id, WEBHOOK_PREVIOUS_SECRET).await?,
        }
        self.write_secret(&mut tx, ENVIRONMENT, id, WEBHOOK_SECRET, secret).await?;
        sql::<D>("UPDATE environments SET webhook_previous_expires_at = $1 WHERE id = $2")
            .bind(previous.map(|(until, _)| nanos(until)).transpose()?)
            .bind(id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_environments(&self) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let found =
            sql::<D>(concat!("SELECT ", environment_columns!(), " FROM environments ORDER BY id"))
                .fetch_all(&mut tx)
                .await?;
        let mut secrets = self.read_secrets(&mut tx, ENVIRONMENT, None).await?;
        tx.commit().await?;
        found
            .iter()
            .map(|row| environment(row, secrets.remove(&row.text("id")?).unwrap_or_default()))
            .collect()
    }

    async fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        let inserted = sql::<D>(
            "INSERT INTO api_keys (id, name, environment, scopes, key_hash, hint, created_at,
                expires_at, last_used_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.environment)
        .bind(to_json(&k.scopes, "api key scopes")?)
        .bind(&k.key_hash)
        .bind(&k.hint)
        .bind(nanos(k.created_at)?)
        .bind(k.expires_at.map(nanos).transpose()?)
        .bind(k.last_used_at.map(nanos).transpose()?)
        .bind(k.revoked_at.map(nanos).transpose()?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: "api key", id: k.id.clone() });
        }
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sql::<D>(concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE key_hash = $1"))
            .bind(key_hash)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sql::<D>(concat!("SELECT ", api_key_columns!(), " FROM api_keys ORDER BY created_at, id"))
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(api_key)
            .collect()
    }

    async fn revoke_api_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let changed =
            sql::<D>("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(nanos(at)?)
                .bind(id)
                .execute(&mut *self.pool.acquire().await?)
                .await?;
        Ok(changed > 0)
    }

    async fn create_agent_token(&self, t: &AgentTokenRecord) -> Result<(), StoreError> {
        let inserted = sql::<D>(concat!(
            "INSERT INTO agent_tokens (",
            agent_token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"
        ))
        .bind(&t.id)
        .bind(&t.environment)
        .bind(&t.token_hash)
        .bind(&t.connection)
        .bind(&t.name)
        .bind(to_json(&t.methods, "agent token methods")?)
        .bind(to_json(&t.paths, "agent token paths")?)
        .bind(t.max_requests.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(i64::try_from(t.used_requests).unwrap_or(i64::MAX))
        .bind(nanos(t.created_at)?)
        .bind(nanos(t.expires_at)?)
        .bind(t.revoked_at.map(nanos).transpose()?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: "agent token", id: t.id.clone() });
        }
        Ok(())
    }

    async fn agent_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AgentTokenRecord>, StoreError> {
        sql::<D>(concat!(
            "SELECT ",
            agent_token_columns!(),
            " FROM agent_tokens WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?
        .as_ref()
        .map(agent_token)
        .transpose()
    }

    async fn list_agent_tokens(
        &self,
        environment: &str,
    ) -> Result<Vec<AgentTokenRecord>, StoreError> {
        sql::<D>(concat!(
            "SELECT ",
            agent_token_columns!(),
            " FROM agent_tokens WHERE environment = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(environment)
        .fetch_all(&mut *self.pool.acquire().await?)
        .await?
        .iter()
        .map(agent_token)
        .collect()
    }

    async fn use_agent_token(&self, id: &str) -> Result<AgentTokenUse, StoreError> {
        // One statement: concurrent requests on every instance count exactly, and none passes
        // a spent budget.
        let counted = sql::<D>(
            "UPDATE agent_tokens SET used_requests = used_requests + 1
             WHERE id = $1 AND (max_requests IS NULL OR used_requests < max_requests)
             RETURNING used_requests",
        )
        .bind(id)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        if let Some(row) = counted {
            return Ok(AgentTokenUse::Counted(
                u64::try_from(row.int("used_requests")?).unwrap_or(0),
            ));
        }
        let exists = sql::<D>("SELECT id FROM agent_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?;
        Ok(if exists.is_some() { AgentTokenUse::Spent } else { AgentTokenUse::Missing })
    }

    async fn revoke_agent_token(
        &self,
        environment: &str,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let revoked = sql::<D>(
            "UPDATE agent_tokens SET revoked_at = $1
             WHERE environment = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(nanos(at)?)
        .bind(environment)
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(revoked > 0)
    }

    async fn touch_api_key(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        sql::<D>("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(nanos(at)?)
            .bind(id)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }
}

/// An agent token from its row (see `agent_token_columns!`).
fn agent_token(row: &impl Columns) -> Result<AgentTokenRecord, StoreError> {
    Ok(AgentTokenRecord {
        id: row.text("id")?,
        environment: row.text("environment")?,
        token_hash: row.text("token_hash")?,
        connection: row.text("connection_id")?,
        name: row.text("name")?,
        methods: json(row, "methods")?,
        paths: json(row, "paths")?,
        max_requests: row.opt_int("max_requests")?.map(|n| u64::try_from(n).unwrap_or(0)),
        used_requests: u64::try_from(row.int("used_requests")?).unwrap_or(0),
        created_at: timestamp(row.int("created_at")?)?,
        expires_at: timestamp(row.int("expires_at")?)?,
        revoked_at: row.opt_int("revoked_at")?.map(timestamp).transpose()?,
    })
}

/// An environment from its row (see `environment_columns!`) and its opened secrets.
fn environment(
    row: &impl Columns,
    mut secrets: BTreeMap<String, Secret>,
) -> Result<EnvironmentRecord, StoreError> {
    let previous_until = row.opt_int("webhook_previous_expires_at")?.map(timestamp).transpose()?;
    let previous = secrets.remove(WEBHOOK_PREVIOUS_SECRET);
    Ok(EnvironmentRecord {
        id: row.text("id")?,
        webhook_url: row.opt_text("webhook_url")?,
        webhook_secret: secrets.remove(WEBHOOK_SECRET),
        webhook_previous_expires_at: previous.as_ref().and(previous_until),
        webhook_previous_secret: previous_until.and(previous),
        created_at: timestamp(row.int("created_at")?)?,
    })
}

fn api_key(row: &impl Columns) -> Result<ApiKeyRecord, StoreError> {
    let at = |column: &str| row.opt_int(column)?.map(timestamp).transpose();
    let scopes: BTreeSet<Scope> = json(row, "scopes")?;
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        environment: row.opt_text("environment")?,
        scopes,
        key_hash: row.text("key_hash")?,
        hint: row.text("hint")?,
        created_at: timestamp(row.int("created_at")?)?,
        expires_at: at("expires_at")?,
        last_used_at: at("last_used_at")?,
        revoked_at: at("revoked_at")?,
    })
}
