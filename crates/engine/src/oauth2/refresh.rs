//! Single-flight token refresh. Within one process, callers for one connection queue on an
//! async mutex; across processes they share a lease in the store, renewed by a heartbeat while
//! the exchange is in flight, so no other instance sends the same refresh token meanwhile.
//! Whoever gets through re-reads the connection first: someone may have refreshed already. The
//! write is fenced by the connection's version, a rotated refresh token is stored in the same
//! transaction, and a response without one keeps the old one. Transient failures are retried a
//! bounded number of times with jitter.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use latchkey_core::oauth2::TokenGrant;
use latchkey_store::{ConnectionRecord, ConnectionStatus, CredentialUpdate};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::auth::session::SESSION_TOKEN;
use latchkey_core::connector::OAuth2Auth;

use super::{expiry, oauth_method};
use crate::events::Event;
use crate::operations::Timed;
use crate::refresh_health;
use crate::session::session_method;
use crate::telemetry::{self, RenewalOutcome};
use crate::{ConnectionId, Engine, EngineError, Renewal};
use latchkey_store::OperationKind;

/// Why a refresh is wanted; decides whether it is still needed after re-reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// The token expires within this margin (proactive or before a request).
    Expiring(Duration),
    /// The API refused the token of this connection version (401, or the connector's list).
    Rejected {
        /// The version whose token was refused.
        seen_version: i64,
    },
    /// Asked for explicitly (`connection refresh`), against this version.
    Forced {
        /// The version read when the refresh was asked for.
        seen_version: i64,
    },
}

impl RefreshReason {
    /// Whether `record` still needs the refresh this reason asks for, at `now`.
    pub fn still_needed(self, record: &ConnectionRecord, now: OffsetDateTime) -> bool {
        match self {
            Self::Expiring(margin) => record.expires_at.is_some_and(|at| {
                // A credential that lives shorter than twice the margin is renewed at half its
                // life, not on every request.
                let lifetime = (at - record.updated_at).max(time::Duration::ZERO);
                let margin = time::Duration::try_from(margin)
                    .unwrap_or(time::Duration::MAX)
                    .min(lifetime / 2);
                at <= now + margin
            }),
            Self::Rejected { seen_version } | Self::Forced { seen_version } => {
                record.version == seen_version
            }
        }
    }
}

/// What a refresh or a new login gives: the credentials to replace, their expiry, config to keep.
struct Renewed {
    credentials: BTreeMap<String, Secret>,
    expires_at: Option<OffsetDateTime>,
    config: BTreeMap<String, String>,
}

/// How long a refresh lease lasts unless renewed; the holder renews it every third of that.
pub const LEASE: Duration = Duration::from_secs(30);
/// The longest an exchange (endpoint resolution, hooks, the token call and its retries) may
/// take, in leases: a provider that takes 35 s still succeeds with the default lease.
const EXCHANGE_LEASES: u32 = 3;
/// Retries after a transient failure (5xx, 429, `temporarily_unavailable`, timeout, connection
/// error), with these base delays; each is jittered to between half and all of it.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(2000)];
/// The lease name prefix; a lease row left behind after a crash marks an interrupted refresh.
pub(crate) const LEASE_PREFIX: &str = "refresh:";

/// Makes refreshes happen once per connection, however many callers ask at once.
#[derive(Debug)]
pub struct RefreshCoordinator {
    holder: String,
    in_flight: Mutex<HashMap<String, Weak<Flight>>>,
    lease: Duration,
}

/// One connection's line of callers in this process. The lock holds the record the last refresh
/// in the line stored, so the callers queued behind it take that record instead of each reading
/// the store again (1,000 waiters on one expired token would otherwise read it 1,000 times, one
/// after the other). It lives as long as someone is in the line.
type Flight = tokio::sync::Mutex<Option<ConnectionRecord>>;

impl Default for RefreshCoordinator {
    fn default() -> Self {
        Self::with_lease(LEASE)
    }
}

impl RefreshCoordinator {
    /// A coordinator (one per process: its holder id is random) whose leases last `lease`.
    pub fn with_lease(lease: Duration) -> Self {
        Self { holder: crate::random_token(12), in_flight: Mutex::default(), lease }
    }

    /// The longest the holder may spend on one exchange.
    fn exchange_timeout(&self) -> Duration {
        self.lease * EXCHANGE_LEASES
    }

    /// How long a caller waits for another process's refresh before giving up (it never takes
    /// over a lease that is still renewed): the holder's longest exchange and one lease more.
    fn wait(&self) -> Duration {
        self.exchange_timeout() + self.lease
    }

    fn local_lock(&self, id: &str) -> Arc<Flight> {
        let mut map = self.in_flight.lock();
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(lock) = map.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(None));
        map.insert(id.to_string(), Arc::downgrade(&lock));
        lock
    }
}

impl Renewal<'_> {
    /// Refreshes the connection's token if `reason` still holds once this caller is first in
    /// line; returns the connection as it is afterwards. The refresh runs in a task of its own,
    /// so it completes (and stores what the provider answered) even if this future is dropped.
    pub async fn refresh(
        &self,
        id: &ConnectionId,
        reason: RefreshReason,
    ) -> Result<ConnectionRecord, EngineError> {
        self.engine.refresh_record(id.as_str(), reason).await
    }

    /// Checks at once every connection whose refresh was interrupted (a lease row left behind,
    /// by a crash between taking the lease and releasing it): it is refreshed, or marked
    /// `needs_reauth` if its refresh token was spent on an exchange whose answer was lost. A
    /// lease still held by a live instance is waited for; when that instance finishes, its
    /// result is kept. Returns how many connections were checked.
    pub async fn check_interrupted(&self) -> Result<usize, EngineError> {
        let names = self.engine.store.locks_named(LEASE_PREFIX, false).await?;
        let mut checked = 0;
        for name in names {
            if let Some(id) = name.strip_prefix(LEASE_PREFIX) {
                self.engine.check_interrupted_refresh(id).await?;
                checked += 1;
            }
        }
        Ok(checked)
    }
}

impl Engine {
    /// [`Renewal::refresh`] for an id read from the store or a lease name.
    pub(crate) async fn refresh_record(
        &self,
        id: &str,
        reason: RefreshReason,
    ) -> Result<ConnectionRecord, EngineError> {
        // Only while the engine is being dropped is there no `Arc` to move into the task.
        let Some(engine) = self.me.upgrade() else {
            return self.refresh_single_flight(id, reason).await;
        };
        let id = id.to_owned();
        match tokio::spawn(async move { engine.refresh_single_flight(&id, reason).await }).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(EngineError::Internal(
                "the refresh was cancelled: the runtime is shutting down".into(),
            )),
        }
    }

    async fn refresh_single_flight(
        &self,
        id: &str,
        reason: RefreshReason,
    ) -> Result<ConnectionRecord, EngineError> {
        let coordinator = self.oauth.refresher.clone();
        let local = coordinator.local_lock(id);
        let mut in_process = local.lock().await;
        if let Some(refreshed) = in_process.as_ref()
            && !reason.still_needed(refreshed, self.clock.now())
        {
            return Ok(refreshed.clone());
        }
        let record = self.connection_record(id).await?;
        if !reason.still_needed(&record, self.clock.now()) {
            return Ok(record);
        }
        let lease = format!("{LEASE_PREFIX}{id}");
        let started = Instant::now();
        while !self.try_lease(id, &lease, &coordinator, started).await? {
            let record = self.connection_record(id).await?;
            if !reason.still_needed(&record, self.clock.now()) {
                return Ok(record);
            }
        }
        let held = Heartbeat::start(self.store.clone(), lease.clone(), &coordinator);
        let outcome = self.refresh_locked(id, reason, &held, &coordinator).await;
        held.stop();
        if let Ok(refreshed) = &outcome {
            *in_process = Some(refreshed.clone());
        }
        if let Err(e) = self.store.unlock(&lease, &coordinator.holder).await {
            tracing::warn!(connection = %id, error = %e, "cannot release the refresh lease");
        }
        outcome
    }

    /// Runs `work` (a deletion) while holding connection `id`'s refresh lease and in-process
    /// lock, after any refresh in flight, here or on another instance, has ended; waits no
    /// longer than a refresh waits for another ([`EngineError::LeaseBusy`]). A refresh fences
    /// its write by the version it read under the lease, and a connection deleted and made
    /// again under the same id starts at version 1 again: without this, a refresh of the
    /// deleted connection could finish on its replacement and overwrite the new tokens.
    pub(crate) async fn without_refresh_in_flight<T>(
        &self,
        id: &str,
        work: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let coordinator = self.oauth.refresher.clone();
        let local = coordinator.local_lock(id);
        let mut in_process = local.lock().await;
        // What a refresh before this stored must not be handed to callers queued behind it.
        *in_process = None;
        let lease = format!("{LEASE_PREFIX}{id}");
        let started = Instant::now();
        while !self.try_lease(id, &lease, &coordinator, started).await? {}
        let outcome = work.await;
        if let Err(e) = self.store.unlock(&lease, &coordinator.holder).await {
            tracing::warn!(connection = %id, error = %e, "cannot release the refresh lease");
        }
        outcome
    }

    /// One try at connection `id`'s refresh `lease` by a caller that began waiting at `started`:
    /// `true` when taken, `false` after a short pause when another instance holds it. Another
    /// instance renews the lease while its exchange is in flight, so waiting longer than an
    /// exchange may take is an error ([`EngineError::LeaseBusy`]), never a take-over.
    async fn try_lease(
        &self,
        id: &str,
        lease: &str,
        coordinator: &RefreshCoordinator,
        started: Instant,
    ) -> Result<bool, EngineError> {
        if self.store.try_lock(lease, &coordinator.holder, coordinator.lease).await? {
            return Ok(true);
        }
        if started.elapsed() > coordinator.wait() {
            return Err(EngineError::LeaseBusy {
                connection: id.to_string(),
                lost: false,
                retry_after: coordinator.lease,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        Ok(false)
    }

    /// The connections whose refresh lease ran out without being released: a refresh that
    /// crashed, panicked or was cancelled mid-exchange (a caller that went away).
    pub(crate) async fn abandoned_refreshes(&self) -> Result<Vec<String>, EngineError> {
        let names = self.store.locks_named(LEASE_PREFIX, true).await?;
        Ok(names.iter().filter_map(|n| n.strip_prefix(LEASE_PREFIX)).map(str::to_string).collect())
    }

    /// Checks one connection whose refresh was interrupted; see
    /// [`Renewal::check_interrupted`]. `false` if the check failed (logged).
    pub(crate) async fn check_interrupted_refresh(&self, id: &str) -> Result<bool, EngineError> {
        let record = match self.connection_record(id).await {
            Ok(record) => record,
            Err(EngineError::ConnectionNotFound(_)) => {
                // Deleted since: nothing to check, only the row to clear.
                let lease = format!("{LEASE_PREFIX}{id}");
                let coordinator = &self.oauth.refresher;
                if self.store.try_lock(&lease, &coordinator.holder, coordinator.lease).await? {
                    self.store.unlock(&lease, &coordinator.holder).await?;
                }
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let reason = RefreshReason::Forced { seen_version: record.version };
        match self.refresh_record(id, reason).await {
            Ok(_) => {
                tracing::info!(connection = %id, "interrupted refresh checked");
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "interrupted refresh checked: failed");
                Ok(false)
            }
        }
    }

    async fn refresh_locked(
        &self,
        id: &str,
        reason: RefreshReason,
        held: &Heartbeat,
        coordinator: &RefreshCoordinator,
    ) -> Result<ConnectionRecord, EngineError> {
        let record = self.connection_record(id).await?;
        if !reason.still_needed(&record, self.clock.now()) {
            return Ok(record);
        }
        let entry = self.connector_entry(&record.connector)?;
        let started = Instant::now();
        let exchange = self.renew_with_retries(id, &entry.connector, &record);
        let result = tokio::select! {
            result = tokio::time::timeout(coordinator.exchange_timeout(), exchange) => {
                result.unwrap_or_else(|_| Err(EngineError::Net(latchkey_net::NetError::Timeout)))
            }
            () = held.lost() => {
                // Another instance may take over now: stop waiting for this exchange. Tokens
                // that would still arrive could only be written through the version fence.
                tracing::warn!(connection = %id, "refresh lease lost during the exchange; abandoned");
                Err(EngineError::LeaseBusy {
                    connection: id.to_string(),
                    lost: true,
                    retry_after: coordinator.lease,
                })
            }
        };
        let timed = Timed::about(self, OperationKind::Refresh, &record).began(started);
        let operation = match &result {
            Ok(_) => timed.succeeded(),
            Err(error) => timed.failed(error),
        };
        self.record_operation(operation);
        self.finish_refresh(id, &record, result, started).await
    }

    /// One renewal, retried after transient failures with jittered delays. The old tokens stay
    /// untouched throughout.
    async fn renew_with_retries(
        &self,
        id: &str,
        connector: &latchkey_core::Connector,
        record: &ConnectionRecord,
    ) -> Result<Renewed, EngineError> {
        let mut attempt = 0;
        loop {
            let result = self.renew_once(id, connector, record).await;
            match result {
                Err(ref err) if attempt < RETRY_DELAYS.len() && is_transient(err) => {
                    let base = RETRY_DELAYS[attempt];
                    let delay = base.mul_f64(rand::random_range(0.5..=1.0));
                    tracing::info!(connection = %id, error = %err, attempt = attempt + 1, ?delay, "transient refresh failure; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn renew_once(
        &self,
        id: &str,
        connector: &latchkey_core::Connector,
        record: &ConnectionRecord,
    ) -> Result<Renewed, EngineError> {
        match (
            oauth_method(connector, Some(&record.auth_method)),
            session_method(connector, Some(&record.auth_method)),
        ) {
            (Some(method), _) => self.refresh_tokens(connector, method, record).await,
            (None, Some(method)) => self
                .session_login(
                    connector,
                    &record.auth_method,
                    method,
                    &record.credentials,
                    &record.config,
                )
                .await
                .map(|session| Renewed {
                    credentials: [(SESSION_TOKEN.to_string(), session.token)].into(),
                    expires_at: expiry(self.clock.now(), session.lifetime),
                    config: BTreeMap::new(),
                }),
            (None, None) => Err(EngineError::invalid(
                "id",
                format!(
                    "connection `{id}` uses neither OAuth2 nor a session login; it has nothing to refresh"
                ),
            )),
        }
    }

    /// Stores a renewal through the version fence, or records why there is none.
    async fn finish_refresh(
        &self,
        id: &str,
        record: &ConnectionRecord,
        result: Result<Renewed, EngineError>,
        started: Instant,
    ) -> Result<ConnectionRecord, EngineError> {
        match result {
            Ok(renewed) => {
                let update = CredentialUpdate {
                    credentials: renewed.credentials,
                    expires_at: renewed.expires_at,
                    config: renewed.config,
                    status: (record.status != ConnectionStatus::Ok).then_some(ConnectionStatus::Ok),
                };
                self.store.update_credentials(id, record.version, &update).await?;
                self.forget(id);
                telemetry::renewal(&record.connector, RenewalOutcome::Ok, started);
                tracing::info!(connection = %id, "credentials renewed");
                let renewed = self.connection_record(id).await?;
                self.refresh_recovered(&renewed).await;
                self.connection_record(id).await
            }
            Err(err) => {
                let dead = matches!(&err, EngineError::Token(t) if t.is_invalid_grant())
                    || matches!(&err, EngineError::Session(s) if s.is_refused_credentials())
                    || matches!(err, EngineError::NeedsReauth(_));
                if dead {
                    // Someone may have refreshed with a newer token in the meantime.
                    let now = self.connection_record(id).await?;
                    if now.version != record.version {
                        return Ok(now);
                    }
                    self.store.set_connection_status(id, ConnectionStatus::NeedsReauth).await?;
                    // Its health says why; the needs_reauth event below is the one sent.
                    let health = refresh_health::after_failure(&now.health, &err, self.clock.now());
                    if let Some(health) = health {
                        self.store.set_connection_health(id, &health).await?;
                    }
                    self.forget(id);
                    telemetry::renewal(&record.connector, RenewalOutcome::NeedsReauth, started);
                    tracing::warn!(connection = %id, error = %err, "refresh refused; connection needs re-authorisation");
                    self.events.emit(Event::needs_reauth(record, &err.to_string()));
                    return Err(EngineError::NeedsReauth(id.to_string()));
                }
                telemetry::renewal(&record.connector, RenewalOutcome::Failed, started);
                tracing::warn!(connection = %id, error = %err, "refresh failed; tokens kept");
                if refresh_health::is_client_refused(&err) {
                    // One integration.misconfigured event was sent for all its connections;
                    // each connection's health says why, without an event of its own.
                    if let Some(health) =
                        refresh_health::after_failure(&record.health, &err, self.clock.now())
                        && health.reason != record.health.reason
                    {
                        self.store.set_connection_health(id, &health).await?;
                    }
                } else {
                    self.events.emit(Event::refresh_failed(record, &err.to_string()));
                }
                Err(err)
            }
        }
    }

    /// A new access token from the refresh token, or from a client grant when there is none.
    async fn refresh_tokens(
        &self,
        connector: &latchkey_core::Connector,
        method: &OAuth2Auth,
        record: &ConnectionRecord,
    ) -> Result<Renewed, EngineError> {
        let id = record.id.as_str();
        let integration = self.oauth_integration(connector, method, record).await?;
        self.hold_back_refresh(&integration)?;
        let oauth = self.resolve_oauth(connector, method, &record.config).await?;
        let tokens = match record.credentials.get("refresh_token") {
            Some(token) => {
                self.call_token_endpoint(
                    &oauth,
                    &oauth.refresh_url,
                    &integration,
                    Some(id),
                    TokenGrant::RefreshToken { refresh_token: token },
                )
                .await
            }
            // No refresh token: grants without a user in the loop just ask again.
            None => self
                .client_grant(&oauth, &integration, Some(id), &record.credentials, &record.config)
                .await
                .unwrap_or_else(|| Err(EngineError::NeedsReauth(id.to_string()))),
        }?;
        let mut credentials = BTreeMap::new();
        credentials.insert("access_token".to_string(), tokens.access_token);
        if let Some(rotated) = tokens.refresh_token {
            credentials.insert("refresh_token".to_string(), rotated);
        }
        let expires_at = expiry(self.clock.now(), tokens.expires_in);
        Ok(Renewed { credentials, expires_at, config: tokens.kept })
    }
}

/// Worth another try with the same tokens: the provider or the network failed for now.
fn is_transient(err: &EngineError) -> bool {
    match err {
        EngineError::Token(t) => t.is_transient(),
        EngineError::Net(n) => matches!(
            n,
            latchkey_net::NetError::Timeout
                | latchkey_net::NetError::Connect(_)
                | latchkey_net::NetError::Transport(_)
        ),
        _ => false,
    }
}

/// Keeps a refresh lease alive while its holder works: renews it every third of its duration
/// (by the store's clock). If a renewal finds the lease taken over, or renewals fail until the
/// last one that worked is two thirds through, the lease counts as lost: the holder abandons the
/// exchange before anyone else can take the lease over. Dropped without [`Heartbeat::stop`]
/// (a panic, a cancelled caller), it stops renewing and the lease runs out by itself, so the
/// lease row marks the interrupted refresh.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Heartbeat {
    fn start(
        store: Arc<dyn latchkey_store::Store>,
        name: String,
        coordinator: &RefreshCoordinator,
    ) -> Self {
        let (tx, lost) = tokio::sync::watch::channel(false);
        let (holder, lease) = (coordinator.holder.clone(), coordinator.lease);
        let every = lease / 3;
        let task = tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let asked = Instant::now();
                match tokio::time::timeout(every, store.renew_lock(&name, &holder, lease)).await {
                    Ok(Ok(true)) => renewed = asked,
                    Ok(Ok(false)) => {
                        tracing::warn!(lease = %name, "refresh lease taken over");
                        let _ = tx.send(true);
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %name, error = %e, "cannot renew the refresh lease")
                    }
                    Err(_) => tracing::warn!(lease = %name, "renewing the refresh lease timed out"),
                }
                if renewed.elapsed() >= every * 2 {
                    let _ = tx.send(true);
                    return;
                }
            }
        });
        Self { task, lost }
    }

    /// Resolves once the lease is lost; never while it is held.
    async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The heartbeat ended without losing the lease (stopped): never resolve.
            std::future::pending::<()>().await;
        }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
