//! What a store does, split by role so a caller names what it needs: [`IntegrationStore`],
//! [`ConnectionStore`], [`FlowStore`], [`ScriptStorage`], [`KeyAdmin`], [`AccessStore`] and
//! [`AuditStore`] and [`WebhookStore`]. [`Store`] is all of
//! them at once, what the engine and server share as `Arc<dyn Store>`; an `Arc<dyn Store>`
//! converts to an `Arc<dyn ConnectionStore>` (or any other role) where less is needed.
//!
//! Reads return secrets decrypted; writes seal them.

use std::fmt;
use std::time::Duration;

use latchkey_core::Secret;
use time::OffsetDateTime;

use crate::StoreError;
use crate::access::{ApiKeyRecord, EnvironmentRecord};
use crate::agent_tokens::{AgentTokenRecord, AgentTokenUse};
use crate::audit::{AuditEntry, AuditFilter, AuditPage, AuditRecord, AuditTrim, AuditVerdict};
use crate::changes::ChangeFeed;
use crate::console::{ConsoleSessionRecord, HealthCount, OperationBucket};
use crate::health::Health;
use crate::listing::{ConnectionFilter, IntegrationFilter, Page, PageRequest};
use crate::model::{
    ConnectSession, ConnectionDetails, ConnectionRecord, ConnectionStatus, ConnectionSummary,
    CredentialUpdate, CustomConnector, DueCheck, ExpiringConnection, IntegrationRecord, OAuthState,
    RefreshBackoff, SessionFailure, SessionStatus,
};
use crate::operations::{Operation, OperationFilter};
use crate::rotation::{self, KeyVersion, ResealBatch, RotationReport, SecretRowKey};
use crate::webhooks::{AttemptOutcome, DeliveryFilter, WebhookDelivery};

/// Everything a store does: every role trait. Implemented for every type that implements them
/// all, and shared as `Arc<dyn Store>`.
pub trait Store:
    IntegrationStore
    + ConnectionStore
    + FlowStore
    + ScriptStorage
    + KeyAdmin
    + AccessStore
    + AuditStore
    + WebhookStore
    + OperationStore
    + ChangeFeedStore
    + ConsoleStore
{
}

impl<T> Store for T where
    T: IntegrationStore
        + ConnectionStore
        + FlowStore
        + ScriptStorage
        + KeyAdmin
        + AccessStore
        + AuditStore
        + WebhookStore
        + OperationStore
        + ChangeFeedStore
        + ConsoleStore
        + ?Sized
{
}

/// The operator console: its sessions (stored by the digest of their id) and the counts its
/// overview shows, grouped by the database.
#[async_trait::async_trait]
pub trait ConsoleStore: Send + Sync + fmt::Debug {
    /// Adds a session; [`StoreError::Conflict`] if its digest exists.
    async fn create_console_session(
        &self,
        session: &ConsoleSessionRecord,
    ) -> Result<(), StoreError>;

    /// The session whose id has the SHA-256 digest (hex) `id_hash`, expired or not.
    async fn console_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError>;

    /// Makes `environment` the one session `id_hash` shows; `false` if there is no such session.
    async fn set_console_session_environment(
        &self,
        id_hash: &str,
        environment: &str,
    ) -> Result<bool, StoreError>;

    /// Ends session `id_hash` (nothing if there is none).
    async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError>;

    /// Removes every session that ended before `now`; how many.
    async fn purge_console_sessions(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// The connections of `environment`, counted by integration and health state.
    async fn connection_health_counts(
        &self,
        environment: &str,
    ) -> Result<Vec<HealthCount>, StoreError>;

    /// The operations of `environment` of `kind` since `since`, counted by outcome in buckets of
    /// `bucket` (bucket 0 starts at `since`).
    async fn operation_buckets(
        &self,
        environment: &str,
        kind: &str,
        since: OffsetDateTime,
        bucket: Duration,
    ) -> Result<Vec<OperationBucket>, StoreError>;
}

/// Who may do what: environments and API keys (stored as digests).
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + fmt::Debug {
    /// Adds an environment (its webhook secret sealed); [`StoreError::Conflict`] if the id
    /// exists.
    async fn create_environment(&self, environment: &EnvironmentRecord) -> Result<(), StoreError>;

    /// The environment with this id, if any.
    async fn get_environment(&self, id: &str) -> Result<Option<EnvironmentRecord>, StoreError>;

    /// Sets an environment's own webhook URL and its signing secret (sealed), or with `url`
    /// `None` removes both (and any previous secret). With a URL and no `secret`, the secrets
    /// stored are kept; a new `secret` replaces them and ends any rotation overlap.
    /// [`StoreError::NotFound`] if the environment does not exist.
    async fn set_environment_webhook(
        &self,
        id: &str,
        url: Option<&str>,
        secret: Option<&Secret>,
    ) -> Result<(), StoreError>;

    /// Makes `secret` the environment's webhook secret, in one transaction. With
    /// `previous_until`, the secret it replaces stays on record as the previous one (sealed)
    /// until then; without, no previous secret is kept. [`StoreError::NotFound`] if the
    /// environment does not exist.
    async fn rotate_environment_webhook_secret(
        &self,
        id: &str,
        secret: &Secret,
        previous_until: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;

    /// Every environment, by id.
    async fn list_environments(&self) -> Result<Vec<EnvironmentRecord>, StoreError>;

    /// Adds an API key; [`StoreError::Conflict`] if its id or digest exists.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key whose SHA-256 digest (hex) is `key_hash`, revoked or not.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every API key (revoked ones too), oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key at `at`; `false` if there is no such key or it was already revoked.
    async fn revoke_api_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Adds an agent token; [`StoreError::Conflict`] if its id or digest exists.
    async fn create_agent_token(&self, token: &AgentTokenRecord) -> Result<(), StoreError>;

    /// The agent token whose SHA-256 digest (hex) is `token_hash`, revoked or not.
    async fn agent_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AgentTokenRecord>, StoreError>;

    /// The agent tokens of `environment`, newest first (revoked and expired ones too).
    async fn list_agent_tokens(
        &self,
        environment: &str,
    ) -> Result<Vec<AgentTokenRecord>, StoreError>;

    /// Counts one more request of token `id`, atomically across processes, unless its budget
    /// is spent.
    async fn use_agent_token(&self, id: &str) -> Result<AgentTokenUse, StoreError>;

    /// Revokes token `id` of `environment` at `at`; `false` if there is no such token or it was
    /// already revoked.
    async fn revoke_agent_token(
        &self,
        environment: &str,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Records that a key authenticated a request at `at`.
    async fn touch_api_key(&self, id: &str, at: OffsetDateTime) -> Result<(), StoreError>;
}

/// What the app configures: integrations (a connector enabled with the app's OAuth client and
/// settings, the client secret sealed) and custom connectors (connector YAML added by a user,
/// which integrations then use).
#[async_trait::async_trait]
pub trait IntegrationStore: Send + Sync + fmt::Debug {
    /// Inserts or replaces an integration, including its client secret (removed if `None`);
    /// clears its [`misconfigured`](IntegrationRecord::misconfigured) flag.
    async fn put_integration(&self, integration: &IntegrationRecord) -> Result<(), StoreError>;

    /// The integration with this id in `environment`, if any.
    async fn get_integration(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<Option<IntegrationRecord>, StoreError>;

    /// One page of the integrations `filter` selects, oldest first (`(created_at, id)` order).
    async fn list_integrations(
        &self,
        filter: &IntegrationFilter,
        page: &PageRequest,
    ) -> Result<Page<IntegrationRecord>, StoreError>;

    /// Deletes an integration of `environment` and its secrets; `false` if it did not exist.
    async fn delete_integration(&self, environment: &str, id: &str) -> Result<bool, StoreError>;

    /// Flags the integration's client as refused by its provider (`invalid_client`), seen at
    /// `at` with a safe `message`. `true` on the first sighting (it was not flagged), so that
    /// the caller tells the app once; `false` when it was flagged already (only the last
    /// sighting and message move) or the integration does not exist.
    async fn flag_integration_misconfigured(
        &self,
        environment: &str,
        id: &str,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Clears the flag (the provider accepted the client again); `true` if it was set.
    async fn clear_integration_misconfigured(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<bool, StoreError>;

    /// The connect page's branding of `environment` (`integration` `None`) or of one of its
    /// integrations, as the JSON object it was stored as.
    async fn get_branding(
        &self,
        environment: &str,
        integration: Option<&str>,
    ) -> Result<Option<serde_json::Value>, StoreError>;

    /// Sets (`Some`) or removes (`None`) that branding.
    async fn put_branding(
        &self,
        environment: &str,
        integration: Option<&str>,
        branding: Option<&serde_json::Value>,
    ) -> Result<(), StoreError>;

    /// Inserts or replaces a custom connector's YAML source.
    async fn put_custom_connector(&self, id: &str, source: &str) -> Result<(), StoreError>;

    /// All custom connectors, by id.
    async fn list_custom_connectors(&self) -> Result<Vec<CustomConnector>, StoreError>;

    /// Deletes a custom connector; `false` if it did not exist.
    async fn delete_custom_connector(&self, id: &str) -> Result<bool, StoreError>;
}

/// Connections and their credentials. Every write to a connection bumps its `version`, which
/// [`ConnectionStore::update_credentials`] uses as a fence so two refreshes cannot overwrite
/// each other.
#[async_trait::async_trait]
pub trait ConnectionStore: Send + Sync + fmt::Debug {
    /// Inserts a new connection at version 1 (its `version` field is ignored) and returns that
    /// version. [`StoreError::Conflict`] if the id exists.
    async fn insert_connection(&self, connection: &ConnectionRecord) -> Result<i64, StoreError>;

    /// Inserts many new connections in one transaction, each at version 1 with its credentials,
    /// and says for each whether it went in: `false` when its id was taken (by a stored
    /// connection or an earlier one in `connections`), and then nothing of it is written. An
    /// error writes nothing at all. Bulk imports use it: one commit for a batch of rows.
    async fn insert_connections(
        &self,
        connections: &[ConnectionRecord],
    ) -> Result<Vec<bool>, StoreError>;

    /// Inserts or replaces a connection and all its credentials, and returns the new version:
    /// the old version + 1, or 1 for a new connection (its `version` field is ignored).
    async fn put_connection(&self, connection: &ConnectionRecord) -> Result<i64, StoreError>;

    /// The connection with this id and its decrypted credentials, if any.
    async fn get_connection(&self, id: &str) -> Result<Option<ConnectionRecord>, StoreError>;

    /// One page of the connections `filter` selects, without their credentials, oldest first
    /// (`(created_at, id)` order). The filter runs in SQL on indexed columns.
    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> Result<Page<ConnectionSummary>, StoreError>;

    /// Changes a connection's tags, metadata, end user and label as `details` says (bumping its
    /// version) and returns the new version; [`StoreError::NotFound`] if it does not exist.
    async fn update_connection_details(
        &self,
        id: &str,
        details: &ConnectionDetails,
    ) -> Result<i64, StoreError>;

    /// Records a connection's health (leaving its version alone: health is not a credential);
    /// [`StoreError::NotFound`] if it does not exist.
    async fn set_connection_health(&self, id: &str, health: &Health) -> Result<(), StoreError>;

    /// Deletes a connection, its credentials and its script values; `false` if it did not
    /// exist.
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;

    /// Sets a connection's status (bumping its version); `false` if it does not exist.
    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
    ) -> Result<bool, StoreError>;

    /// Replaces the given credential fields (others are kept), sets `expires_at` (`None` clears
    /// it) and bumps the version, in one transaction, only if the stored version is still
    /// `expected_version`. Returns the new version; [`StoreError::VersionConflict`] (with nothing
    /// changed) if another writer came first, [`StoreError::NotFound`] if the connection is gone.
    async fn update_credentials(
        &self,
        id: &str,
        expected_version: i64,
        update: &CredentialUpdate,
    ) -> Result<i64, StoreError>;

    /// The `ok` connections due for a refresh: whose access token expires before `before`, or
    /// up to `spread` later by each connection's own share of it
    /// ([`refresh_spread`](crate::refresh_spread)), soonest due first. Leaves out those whose
    /// refresh backs off past `now` (see [`ConnectionStore::record_refresh_failure`]):
    /// connections that wait never take the places of those that are due. Connections of the
    /// connectors in `skip` are left out too: the refresher has enough of theirs queued, and
    /// the places go to other providers.
    async fn connections_expiring(
        &self,
        before: OffsetDateTime,
        spread: Duration,
        now: OffsetDateTime,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<ExpiringConnection>, StoreError>;

    /// The connections whose scheduled health check is due at `now`, soonest first, never
    /// scheduled ones first of all; connections in `needs_reauth` (never checked) and those of
    /// the connectors in `skip` are left out. Every environment's.
    async fn connections_due_for_check(
        &self,
        now: OffsetDateTime,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<DueCheck>, StoreError>;

    /// Moves connection `id`'s next check to `next`, only if it is still due at `seen` (`None`:
    /// never scheduled). `true` when it moved: the caller has claimed the check, and another
    /// instance that read the same due time gets `false` and leaves it. The version is not
    /// bumped.
    async fn claim_check(
        &self,
        id: &str,
        seen: Option<OffsetDateTime>,
        next: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Sets when each connection's next check is due, whatever it was, in one transaction;
    /// ids that do not exist are skipped. The version is not bumped.
    async fn schedule_checks(&self, due: &[(String, OffsetDateTime)]) -> Result<(), StoreError>;

    /// When connection `id`'s next check is due (`None`: never scheduled); `Ok(None)` too if
    /// it does not exist.
    async fn check_due_at(&self, id: &str) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Records a failed scheduled refresh, with the connection's row locked: one more
    /// consecutive failure, and the next try no earlier than `retry_at(failures)` of the new
    /// count; the run of failures began at `now` unless it had begun before. Returns the
    /// back-off stored; `None` if the connection is gone. The version is not bumped: the credentials did not change. A stored renewal
    /// ([`ConnectionStore::update_credentials`]) or a reconnect ([`ConnectionStore::put_connection`])
    /// clears it.
    async fn record_refresh_failure(
        &self,
        id: &str,
        now: OffsetDateTime,
        retry_at: &(dyn Fn(u32) -> OffsetDateTime + Send + Sync),
    ) -> Result<Option<RefreshBackoff>, StoreError>;

    /// The connection's refresh back-off; `None` if the connection does not exist.
    async fn refresh_backoff(&self, id: &str) -> Result<Option<RefreshBackoff>, StoreError>;
}

/// The short-lived state of flows in progress: connect sessions and OAuth states (each
/// single-use across processes), and the leases that make a refresh happen once.
#[async_trait::async_trait]
pub trait FlowStore: Send + Sync + fmt::Debug {
    /// Stores a new connect session.
    async fn create_connect_session(&self, session: &ConnectSession) -> Result<(), StoreError>;

    /// The connect session with this id.
    async fn get_connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError>;

    /// The connect session whose token hashes to `token_hash`.
    async fn find_connect_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConnectSession>, StoreError>;

    /// Records what the end user chose on the connect page before a flow starts: the
    /// integration (one of the session's `choices`) and the config the flow needs; `false`
    /// when the session is done.
    async fn choose_for_connect_session(
        &self,
        id: &str,
        integration: &str,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, StoreError>;

    /// Moves an unexpired session that is `pending`, `started` (an attempt abandoned) or
    /// `failed` to `started`, clearing its error; `false` if it is done or expired.
    async fn start_connect_session(&self, id: &str) -> Result<bool, StoreError>;

    /// Records a session's outcome; `false` (and nothing changed) when it is already done,
    /// so a success is never overwritten.
    async fn finish_connect_session(
        &self,
        id: &str,
        status: SessionStatus,
        connection: Option<&str>,
        error: Option<&SessionFailure>,
    ) -> Result<bool, StoreError>;

    /// Stores an authorization request in flight (its PKCE verifier sealed), in place of any
    /// earlier one of the same connect session: one attempt per session is live.
    async fn put_oauth_state(&self, state: &OAuthState) -> Result<(), StoreError>;

    /// The state with this hash, left in place and without its PKCE verifier: what a callback
    /// is checked against (the browser binding) before [`FlowStore::take_oauth_state`].
    async fn peek_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError>;

    /// Removes and returns the state with this hash: a state can be taken once.
    async fn take_oauth_state(&self, state_hash: &str) -> Result<Option<OAuthState>, StoreError>;

    /// Takes the lease `name` for `ttl` if it is free or expired; `true` when `holder` has it.
    /// Leases are timed by the database's clock, so processes whose clocks disagree still
    /// agree on when one expires; a lease of `ttl` zero is expired at once.
    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Extends the lease to `ttl` from now if `holder` still has it (even if it has just
    /// expired, as long as nobody took it over); `false` when another holder has it or it is
    /// gone. Measured by the same clock as [`FlowStore::try_lock`].
    async fn renew_lock(&self, name: &str, holder: &str, ttl: Duration)
    -> Result<bool, StoreError>;

    /// Releases the lease if `holder` still has it.
    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// The names of the leases that start with `prefix` and were not released (only the
    /// expired ones with `expired_only`): after a crash, or a holder cancelled mid-work, the work
    /// they guarded was interrupted.
    async fn locks_named(
        &self,
        prefix: &str,
        expired_only: bool,
    ) -> Result<Vec<String>, StoreError>;
}

/// The key-value storage connector scripts use per connection (`cyclr_storage_*`). Values are
/// encrypted at rest like every secret and deleted with their connection.
#[async_trait::async_trait]
pub trait ScriptStorage: Send + Sync + fmt::Debug {
    /// A value a connector script stored for a connection (`cyclr_storage_get`).
    async fn script_value(&self, connection: &str, key: &str)
    -> Result<Option<Secret>, StoreError>;

    /// Stores a script value (`cyclr_storage_set`).
    async fn put_script_value(
        &self,
        connection: &str,
        key: &str,
        value: &Secret,
    ) -> Result<(), StoreError>;

    /// Deletes a script value; `false` if there was none.
    async fn delete_script_value(&self, connection: &str, key: &str) -> Result<bool, StoreError>;

    /// The keys of a connection's script values, sorted.
    async fn script_keys(&self, connection: &str) -> Result<Vec<String>, StoreError>;
}

/// Master-key administration: which key versions seal the database's secrets, re-sealing them
/// under the current one, and retiring the older ones (see [`rotation`]).
#[async_trait::async_trait]
pub trait KeyAdmin: Send + Sync + fmt::Debug {
    /// Every master-key version the database or this process knows: its key check, whether
    /// this process holds its key, and how many secret rows are sealed with it.
    async fn key_versions(&self) -> Result<Vec<KeyVersion>, StoreError>;

    /// Re-seals under the current key version, in one transaction, the secret rows (every
    /// sealed value: credentials, client secrets, script values, PKCE verifiers) that come after
    /// `after` in key order, at most `limit` of them, that are sealed with another version. A
    /// row is written back only if it still holds the value that was read (compare-and-swap
    /// on its key version and nonce), so a concurrent write is never lost or sealed twice.
    async fn reseal_batch(
        &self,
        after: Option<&SecretRowKey>,
        limit: u32,
    ) -> Result<ResealBatch, StoreError>;

    /// Drops the key checks of every version older than the current one, after which their
    /// keys are no longer needed (nor accepted: a key matching no check stops start-up). Newer
    /// versions, which a process already on a newer key uses, are left alone. Refuses with
    /// [`StoreError::KeyInUse`] while any secret row is sealed with an older version, and with
    /// [`StoreError::KeyRetired`] if the current version itself was retired meanwhile.
    /// Returns the versions retired.
    async fn retire_old_keys(&self) -> Result<Vec<u32>, StoreError>;

    /// Re-seals every secret row under the current key version, batch by batch
    /// ([`KeyAdmin::reseal_batch`]), safe to run while other instances serve and to run again
    /// after an interruption. When rows were changed concurrently it goes through the table
    /// again (at most a few times), since a writer holding an old key may have sealed them with
    /// it. The report says what is left on older versions.
    async fn rotate_keys(&self, batch_size: u32) -> Result<RotationReport, StoreError> {
        self.rotate_keys_observed(batch_size, &|_| {}).await
    }

    /// [`KeyAdmin::rotate_keys`], calling `observe` after each batch with what it did (for a
    /// progress bar: `resealed` rows moved to the current version).
    async fn rotate_keys_observed(
        &self,
        batch_size: u32,
        observe: &(dyn for<'b> Fn(&'b ResealBatch) + Send + Sync),
    ) -> Result<RotationReport, StoreError> {
        let mut report = RotationReport::default();
        for _ in 0..rotation::MAX_PASSES {
            let (mut after, mut changed, mut without_key, mut unreadable) = (None, 0, 0, vec![]);
            loop {
                let batch = self.reseal_batch(after.as_ref(), batch_size.max(1)).await?;
                observe(&batch);
                report.resealed += batch.resealed;
                changed += batch.changed_concurrently;
                without_key += batch.without_key;
                unreadable.extend(batch.unreadable);
                match batch.last {
                    Some(last) => after = Some(last),
                    None => break,
                }
                tracing::debug!(resealed = report.resealed, "re-sealing secrets");
            }
            report.changed_concurrently += changed;
            report.without_key = without_key;
            report.unreadable = unreadable;
            if changed == 0 {
                break;
            }
        }
        report.versions = self.key_versions().await?;
        report.current_version =
            report.versions.iter().find(|v| v.current).map_or(0, |v| v.version);
        Ok(report)
    }
}

/// The audit log: an append-only, hash-chained record of who did what to which object (see
/// [`audit`](crate::audit)). Appends from several processes on one database extend one chain;
/// a retention trim removes the oldest entries and leaves an anchor, so what remains still
/// verifies.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + fmt::Debug {
    /// Appends an entry after the last one, chained to it, and returns it with its sequence
    /// number and hash. The first append makes the audit key (sealed like every secret);
    /// refuses with [`StoreError::Database`] when entries exist but the key is gone, rather
    /// than start a second chain.
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry, StoreError>;

    /// The entries that match `filter`, one page of them in sequence order (stable: an
    /// entry's sequence number never changes, so `page.after` is a cursor).
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &AuditPage,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Removes the oldest entries, up to the first one at or after `before`, and records the
    /// last removed entry's sequence number and hash as the anchor verification starts from;
    /// when it removed anything, appends an `audit.trim` entry (at `now`) saying so.
    async fn trim_audit(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<AuditTrim, StoreError>;

    /// Checks the chain from the anchor to the head, in one snapshot: every entry present,
    /// unchanged and in order. Returns the first broken entry, or the count checked.
    async fn verify_audit(&self) -> Result<AuditVerdict, StoreError>;
}

/// The webhook delivery log (see [`webhooks`](crate::webhooks)): events recorded for delivery,
/// claimed by deliverers in any process, and what became of them.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync + fmt::Debug {
    /// Records a delivery; [`StoreError::Conflict`] if its id exists.
    async fn insert_webhook_delivery(&self, delivery: &WebhookDelivery) -> Result<(), StoreError>;

    /// Claims up to `limit` pending deliveries due at `now` (oldest due first), atomically
    /// across processes: each claimed row counts one more attempt and is not due again before
    /// `lease_until`, so no other claim takes it while this one sends. Returns the rows as
    /// claimed (`attempts` is the attempt being made).
    async fn claim_webhook_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// Records what attempt number `attempt` of a delivery came to, only if the row is still
    /// pending at that attempt (a later claim, or a retry, fences out a late answer); `false`
    /// when it was not recorded.
    async fn record_webhook_attempt(
        &self,
        id: &str,
        attempt: u32,
        outcome: &AttemptOutcome,
    ) -> Result<bool, StoreError>;

    /// The delivery with this id, if any.
    async fn get_webhook_delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, StoreError>;

    /// One page of the deliveries `filter` selects, newest first (`(created_at, id)`
    /// descending; the cursor names the last row of the page before).
    async fn list_webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError>;

    /// Queues a failed delivery again, due at `at`, with its attempts counted from zero;
    /// `false` if it is not there or not failed.
    async fn retry_webhook_delivery(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes delivered and failed deliveries created before `before`; returns how many.
    async fn trim_webhook_deliveries(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// The operation log (see [`operations`](crate::operations)).
#[async_trait::async_trait]
pub trait OperationStore: Send + Sync + fmt::Debug {
    /// Writes a batch of operations in one transaction.
    async fn insert_operations(&self, operations: &[Operation]) -> Result<(), StoreError>;

    /// One page of the operations `filter` selects, newest first (`(created_at, id)`
    /// descending; the cursor names the last row of the page before).
    async fn list_operations(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, StoreError>;

    /// Deletes the operations from before `before`, and the oldest beyond the newest
    /// `max_rows`; returns how many.
    async fn trim_operations(
        &self,
        before: OffsetDateTime,
        max_rows: u64,
    ) -> Result<u64, StoreError>;
}

/// Changes made by other writers of the same database (see [`changes`](crate::changes)).
#[async_trait::async_trait]
pub trait ChangeFeedStore: Send + Sync + fmt::Debug {
    /// A feed of the changes any writer makes, or `None` where the store has none (SQLite).
    async fn change_feed(&self) -> Result<Option<ChangeFeed>, StoreError>;
}
