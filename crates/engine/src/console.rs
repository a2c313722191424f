//! The operator console's sessions and overview counts, from [`Engine::console`]. A session
//! id is 256 random bits, handed to the browser once (in a cookie) and kept in the store only
//! as its SHA-256 digest, so a stolen database row signs nobody in; it ends at sign-out or at
//! its expiry, whichever is first. Kept in the store, so several instances share sessions.

use std::time::Duration;

use latchkey_core::Secret;
use latchkey_store::{ConsoleSessionRecord, HealthCount, OperationBucket, OperationKind};
use time::OffsetDateTime;

use crate::{Engine, EngineError, EnvironmentId};

/// How long a console session lasts from sign-in: a working day.
pub const CONSOLE_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Who a new console session is for.
#[derive(Debug, Clone)]
pub struct NewConsoleSession {
    /// As the audit log names them: an API key's id, or `oidc:<subject>`.
    pub actor_id: String,
    /// Their name, to show and to audit.
    pub actor_name: String,
    /// The environment the console opens on.
    pub environment: EnvironmentId,
    /// The only environment it may show (a key bound to one); `None`: any.
    pub bound: Option<EnvironmentId>,
}

/// The operator console's store, from [`Engine::console`].
#[derive(Debug, Clone, Copy)]
pub struct Console<'e> {
    pub(crate) engine: &'e Engine,
}

impl Console<'_> {
    /// Starts a session lasting [`CONSOLE_SESSION_LIFETIME`]; returns it and its id (shown
    /// once). Sessions that have ended are removed first.
    pub async fn sign_in(
        &self,
        new: NewConsoleSession,
    ) -> Result<(ConsoleSessionRecord, Secret), EngineError> {
        let now = self.engine.clock.now();
        self.engine.store.purge_console_sessions(now).await?;
        self.engine.environment(&new.environment).await?;
        let id = Secret::new(crate::random_token(32));
        let record = ConsoleSessionRecord {
            id_hash: crate::oauth2::hash(&id),
            actor_id: new.actor_id,
            actor_name: new.actor_name,
            environment: new.environment.into_string(),
            bound: new.bound.map(EnvironmentId::into_string),
            created_at: now,
            expires_at: now + CONSOLE_SESSION_LIFETIME,
        };
        self.engine.store.create_console_session(&record).await?;
        Ok((record, id))
    }

    /// The live session whose id is `id`, if any (an expired one is not).
    pub async fn session(&self, id: &Secret) -> Result<Option<ConsoleSessionRecord>, EngineError> {
        let digest = crate::oauth2::hash(id);
        let now = self.engine.clock.now();
        let found = self.engine.store.console_session(&digest).await?;
        // The store found it by its digest; compare again in constant time.
        Ok(found.filter(|s| {
            Secret::new(s.id_hash.as_str()) == Secret::new(digest.as_str()) && now < s.expires_at
        }))
    }

    /// Makes the session show `environment`, which must exist and, for a session bound to one
    /// environment, be that one ([`EngineError::EnvironmentNotFound`] otherwise).
    pub async fn switch_environment(
        &self,
        session: &ConsoleSessionRecord,
        environment: &EnvironmentId,
    ) -> Result<(), EngineError> {
        if session.bound.as_deref().is_some_and(|bound| bound != environment.as_str()) {
            return Err(EngineError::EnvironmentNotFound(environment.to_string()));
        }
        self.engine.environment(environment).await?;
        self.engine
            .store
            .set_console_session_environment(&session.id_hash, environment.as_str())
            .await?;
        Ok(())
    }

    /// Ends the session whose id is `id` (nothing if there is none).
    pub async fn sign_out(&self, id: &Secret) -> Result<(), EngineError> {
        Ok(self.engine.store.delete_console_session(&crate::oauth2::hash(id)).await?)
    }

    /// The connections of `environment` counted by integration and health.
    pub async fn health_counts(
        &self,
        environment: &EnvironmentId,
    ) -> Result<Vec<HealthCount>, EngineError> {
        Ok(self.engine.store.connection_health_counts(environment.as_str()).await?)
    }

    /// The operations of `kind` in `environment` over the last `span` (by the engine's clock),
    /// counted by outcome in buckets of `bucket`; also the time bucket 0 starts at.
    pub async fn operation_buckets(
        &self,
        environment: &EnvironmentId,
        kind: OperationKind,
        span: Duration,
        bucket: Duration,
    ) -> Result<(OffsetDateTime, Vec<OperationBucket>), EngineError> {
        let since = self.engine.clock.now() - span;
        let buckets = self
            .engine
            .store
            .operation_buckets(environment.as_str(), kind.as_str(), since, bucket)
            .await?;
        Ok((since, buckets))
    }
}

impl Engine {
    /// The operator console's sessions and counts.
    pub fn console(&self) -> Console<'_> {
        Console { engine: self }
    }
}
