//! Environments and API keys, from [`Engine::access`]: creating and listing environments,
//! making keys (shown once, stored as a SHA-256 digest), revoking them, and finding the key a
//! request presents. Found keys are cached in this process; a revocation here drops the cache
//! at once, and reaches other processes sharing the database through the store's change feed
//! (PostgreSQL) or within two seconds (SQLite; see [`crate::changes::Lifetimes`]).

use std::collections::BTreeSet;
use std::time::Duration;

use latchkey_core::Secret;
use latchkey_store::{ApiKeyRecord, EnvironmentRecord, Scope};
use moka::sync::Cache;
use time::OffsetDateTime;

use crate::{Engine, EngineError, EnvironmentId, WebhookConfig};

/// A key's `last_used_at` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Every key starts with this, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "lk_";

/// What a caller supplies to make an API key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// A name to recognise it by (`billing-backend`).
    pub name: String,
    /// The environment it acts in; `None` for a key that spans every environment.
    pub environment: Option<EnvironmentId>,
    /// What it may do; at least one.
    pub scopes: BTreeSet<Scope>,
    /// How long it works; forever when `None`.
    pub expires_in: Option<Duration>,
}

/// What a caller supplies to add an environment.
#[derive(Debug, Clone)]
pub struct NewEnvironment {
    /// Its id.
    pub id: EnvironmentId,
    /// Where its connection events go, instead of the server-wide webhook; `None`: there.
    pub webhook: Option<WebhookConfig>,
}

impl NewEnvironment {
    /// An environment with this id, whose events go to the server-wide webhook.
    pub fn new(id: EnvironmentId) -> Self {
        Self { id, webhook: None }
    }
}

/// The shortest webhook signing secret accepted.
pub const MIN_WEBHOOK_SECRET: usize = 16;

/// The longest overlap a webhook secret rotation may give the secret it replaces: 7 days.
pub const MAX_WEBHOOK_OVERLAP: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Ok if `secret` can sign webhooks: 16-1024 printable characters; one that starts with
/// `whsec_` must carry a base64 key of at least 16 bytes after it (as Standard Webhooks
/// libraries decode it).
fn check_webhook_secret(secret: &Secret) -> Result<(), EngineError> {
    let text = secret.expose();
    if text.chars().count() < MIN_WEBHOOK_SECRET
        || text.len() > 1024
        || text.chars().any(char::is_control)
    {
        return Err(EngineError::invalid(
            "webhook_secret",
            format!("webhook_secret is {MIN_WEBHOOK_SECRET}-1024 printable characters"),
        ));
    }
    if text.starts_with(crate::webhooks::SECRET_PREFIX)
        && crate::webhooks::signing::encoded_key(secret).is_none_or(|key| key.len() < 16)
    {
        return Err(EngineError::invalid(
            "webhook_secret",
            "a webhook_secret starting with `whsec_` is followed by a base64 key of at least 16 \
             bytes",
        ));
    }
    Ok(())
}

/// Ok if `config` can be used: an `http`/`https` URL without credentials in it, and a secret
/// that [`check_webhook_secret`] accepts.
fn check_webhook(config: &WebhookConfig) -> Result<(), EngineError> {
    let url = &config.url;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(EngineError::invalid("webhook_url", "webhook_url is an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EngineError::invalid(
            "webhook_url",
            "webhook_url must not hold credentials; the secret signs each event",
        ));
    }
    check_webhook_secret(&config.secret)
}

/// Caches for [`Access`]: keys by digest (found or not), environments known to exist (they
/// are never deleted), and when each key's use was last written.
#[derive(Debug)]
pub(crate) struct AccessCaches {
    keys: Cache<String, Option<ApiKeyRecord>>,
    environments: Cache<String, ()>,
    touched: Cache<String, ()>,
    /// Agent tokens' path globs, compiled once per token (a token's grants never change).
    pub(crate) agent_paths: Cache<String, std::sync::Arc<globset::GlobSet>>,
}

impl AccessCaches {
    /// Caches whose found keys are trusted for `key_lifetime` without asking the store again.
    pub(crate) fn new(key_lifetime: Duration) -> Self {
        Self {
            keys: Cache::builder().max_capacity(10_000).time_to_live(key_lifetime).build(),
            environments: Cache::builder().max_capacity(10_000).build(),
            touched: Cache::builder().max_capacity(10_000).time_to_live(TOUCH_EVERY).build(),
            agent_paths: Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// Drops every cached key verdict.
    pub(crate) fn forget_keys(&self) {
        self.keys.invalidate_all();
    }
}

/// The engine's environments and API keys, from [`Engine::access`].
#[derive(Debug, Clone, Copy)]
pub struct Access<'e> {
    pub(crate) engine: &'e Engine,
}

impl Access<'_> {
    /// Adds an environment; [`EngineError::Conflict`] if it exists.
    pub async fn create_environment(
        &self,
        new: NewEnvironment,
    ) -> Result<EnvironmentRecord, EngineError> {
        if let Some(webhook) = &new.webhook {
            check_webhook(webhook)?;
        }
        let (webhook_url, webhook_secret) = match new.webhook {
            Some(w) => (Some(w.url.to_string()), Some(w.secret)),
            None => (None, None),
        };
        let record = EnvironmentRecord {
            id: new.id.into_string(),
            webhook_url,
            webhook_secret,
            webhook_previous_secret: None,
            webhook_previous_expires_at: None,
            created_at: self.engine.clock.now(),
        };
        self.engine.store.create_environment(&record).await.map_err(|e| match e {
            latchkey_store::StoreError::Conflict { id, .. } => {
                EngineError::Conflict(format!("environment `{id}`"))
            }
            other => other.into(),
        })?;
        tracing::info!(environment = %record.id, "environment created");
        Ok(record)
    }

    /// Sends `environment`'s connection events to `webhook` from now on; with `None`, to the
    /// server-wide webhook again. Other processes sharing the database follow within
    /// [`ENVIRONMENT_WEBHOOK_TTL`](crate::events::ENVIRONMENT_WEBHOOK_TTL).
    pub async fn set_webhook(
        &self,
        environment: &EnvironmentId,
        webhook: Option<WebhookConfig>,
    ) -> Result<EnvironmentRecord, EngineError> {
        if let Some(webhook) = &webhook {
            check_webhook(webhook)?;
        }
        let url = webhook.as_ref().map(|w| w.url.to_string());
        let secret = webhook.as_ref().map(|w| &w.secret);
        match self
            .engine
            .store
            .set_environment_webhook(environment.as_str(), url.as_deref(), secret)
            .await
        {
            Ok(()) => {}
            Err(latchkey_store::StoreError::NotFound { .. }) => {
                return Err(EngineError::EnvironmentNotFound(environment.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        self.engine.events.forget_environment(environment.as_str()).await;
        tracing::info!(environment = %environment, webhook = url.is_some(), "environment webhook set");
        self.environment(environment).await
    }

    /// Sends `environment`'s events to `url`, signed with the secret it has; when it has none,
    /// with a new one (`whsec_…`), which is returned: it is not shown again.
    pub async fn set_webhook_url(
        &self,
        environment: &EnvironmentId,
        url: url::Url,
    ) -> Result<(EnvironmentRecord, Option<Secret>), EngineError> {
        let current = self.environment(environment).await?;
        let generated = match current.webhook_secret {
            Some(_) => None,
            None => Some(crate::webhooks::generate_secret()),
        };
        let secret = generated.clone().or(current.webhook_secret).unwrap_or_default();
        check_webhook(&WebhookConfig { url: url.clone(), secret })?;
        match self
            .engine
            .store
            .set_environment_webhook(environment.as_str(), Some(url.as_str()), generated.as_ref())
            .await
        {
            Ok(()) => {}
            Err(latchkey_store::StoreError::NotFound { .. }) => {
                return Err(EngineError::EnvironmentNotFound(environment.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        self.engine.events.forget_environment(environment.as_str()).await;
        tracing::info!(environment = %environment, generated = generated.is_some(), "environment webhook URL set");
        Ok((self.environment(environment).await?, generated))
    }

    /// Replaces `environment`'s webhook secret with `secret` (a new `whsec_…` one when `None`)
    /// and returns the new secret, which is not shown again. For `overlap` (at most
    /// [`MAX_WEBHOOK_OVERLAP`]) the secret replaced signs deliveries too, so receivers holding
    /// either verify them; with zero, it stops at once.
    pub async fn rotate_webhook_secret(
        &self,
        environment: &EnvironmentId,
        secret: Option<Secret>,
        overlap: Duration,
    ) -> Result<(EnvironmentRecord, Secret), EngineError> {
        if overlap > MAX_WEBHOOK_OVERLAP {
            return Err(EngineError::invalid(
                "overlap_seconds",
                format!("overlap_seconds is at most {}", MAX_WEBHOOK_OVERLAP.as_secs()),
            ));
        }
        let secret = secret.unwrap_or_else(crate::webhooks::generate_secret);
        check_webhook_secret(&secret)?;
        let current = self.environment(environment).await?;
        if current.webhook_url.is_none() || current.webhook_secret.is_none() {
            return Err(EngineError::invalid(
                "id",
                format!(
                    "environment `{environment}` has no webhook of its own: set one first (its \
                     events go to the server-wide webhook, whose secret is rotated with \
                     LATCHKEY_WEBHOOK_PREVIOUS_SECRET)"
                ),
            ));
        }
        let until = (!overlap.is_zero())
            .then(|| time::Duration::try_from(overlap).ok().map(|d| self.engine.clock.now() + d))
            .flatten();
        self.engine
            .store
            .rotate_environment_webhook_secret(environment.as_str(), &secret, until)
            .await?;
        self.engine.events.forget_environment(environment.as_str()).await;
        tracing::info!(environment = %environment, overlap_seconds = overlap.as_secs(), "environment webhook secret rotated");
        Ok((self.environment(environment).await?, secret))
    }

    /// Every environment, by id.
    pub async fn environments(&self) -> Result<Vec<EnvironmentRecord>, EngineError> {
        Ok(self.engine.store.list_environments().await?)
    }

    /// The environment with this id.
    pub async fn environment(&self, id: &EnvironmentId) -> Result<EnvironmentRecord, EngineError> {
        self.engine
            .store
            .get_environment(id.as_str())
            .await?
            .ok_or_else(|| EngineError::EnvironmentNotFound(id.to_string()))
    }

    /// Makes a key; returns its record and the key itself, which is never shown again.
    pub async fn create_key(&self, new: NewApiKey) -> Result<(ApiKeyRecord, Secret), EngineError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(EngineError::invalid("name", "name is 1-100 printable characters"));
        }
        if new.scopes.is_empty() {
            return Err(EngineError::invalid("scopes", "scopes lists at least one scope"));
        }
        if let Some(environment) = &new.environment {
            self.engine.environment(environment).await?;
        }
        let now = self.engine.clock.now();
        let expires_at = match new.expires_in {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(EngineError::invalid("expires_in", "expires_in is at least 1 second"));
            }
            Some(d) => Some(
                time::Duration::try_from(d)
                    .ok()
                    .and_then(|d| now.checked_add(d))
                    .ok_or_else(|| EngineError::invalid("expires_in", "expires_in is too large"))?,
            ),
        };
        let key = Secret::new(format!("{KEY_PREFIX}{}", crate::random_token(32)));
        let record = ApiKeyRecord {
            id: format!("key_{}", crate::random_token(9)),
            name: name.to_owned(),
            environment: new.environment.map(String::from),
            scopes: new.scopes,
            key_hash: crate::oauth2::hash(&key),
            hint: format!("{}…", &key.expose()[..KEY_PREFIX.len() + 4]),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.engine.store.create_api_key(&record).await?;
        tracing::info!(key = %record.id, name = %record.name, "API key created");
        Ok((record, key))
    }

    /// Every key (revoked ones too), oldest first; never the keys themselves.
    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>, EngineError> {
        Ok(self.engine.store.list_api_keys().await?)
    }

    /// Revokes a key; it stops working at once in this process.
    pub async fn revoke_key(&self, id: &str) -> Result<(), EngineError> {
        let at = self.engine.clock.now();
        if !self.engine.store.revoke_api_key(id, at).await? {
            let known = self.engine.store.list_api_keys().await?.into_iter().any(|k| k.id == id);
            if !known {
                return Err(EngineError::ApiKeyNotFound(id.to_owned()));
            }
        }
        self.engine.access_caches.forget_keys();
        tracing::info!(key = %id, "API key revoked");
        Ok(())
    }

    /// The live key `presented` is (not revoked, not expired), if any. The store is asked by
    /// the key's SHA-256 digest; the digest found is compared again in constant time.
    pub async fn authenticate(
        &self,
        presented: &Secret,
    ) -> Result<Option<ApiKeyRecord>, EngineError> {
        if !presented.expose().starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let digest = crate::oauth2::hash(presented);
        let caches = &self.engine.access_caches;
        let found = match caches.keys.get(&digest) {
            Some(found) => found,
            None => {
                let found = self.engine.store.api_key_by_hash(&digest).await?;
                caches.keys.insert(digest.clone(), found.clone());
                found
            }
        };
        let now = self.engine.clock.now();
        let live = found.filter(|key| {
            Secret::new(key.key_hash.as_str()) == Secret::new(digest.as_str())
                && key.revoked_at.is_none()
                && key.expires_at.is_none_or(|at| now < at)
        });
        if let Some(key) = &live {
            self.touch(&key.id, now);
        }
        Ok(live)
    }

    /// Writes the key's `last_used_at`, in the background and at most once a minute.
    fn touch(&self, id: &str, now: OffsetDateTime) {
        let caches = &self.engine.access_caches;
        if caches.touched.contains_key(id) {
            return;
        }
        caches.touched.insert(id.to_owned(), ());
        let store = self.engine.store.clone();
        let id = id.to_owned();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.touch_api_key(&id, now).await {
                    tracing::warn!(key = %id, error = %e, "cannot record an API key's last use");
                }
            });
        }
    }
}

impl Engine {
    /// Environments and API keys.
    pub fn access(&self) -> Access<'_> {
        Access { engine: self }
    }

    /// Ok if the environment exists ([`EngineError::EnvironmentNotFound`] if not); cached,
    /// since environments are never deleted.
    pub async fn environment(&self, id: &EnvironmentId) -> Result<(), EngineError> {
        if self.access_caches.environments.contains_key(id.as_str()) {
            return Ok(());
        }
        if self.store.get_environment(id.as_str()).await?.is_none() {
            return Err(EngineError::EnvironmentNotFound(id.to_string()));
        }
        self.access_caches.environments.insert(id.as_str().to_owned(), ());
        Ok(())
    }
}
