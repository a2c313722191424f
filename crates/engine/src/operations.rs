//! The operation log as the engine writes it: each operation is handed to a background writer
//! through a bounded channel, never awaited on the request path, and written in batches. When
//! the channel is full (the database cannot keep up) operations are dropped and counted
//! ([`OPERATIONS_DROPPED`]), never waited for. See `latchkey_store::operations` for what an
//! operation holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_store::{
    ConnectionRecord, Operation, OperationFilter, OperationKind, OperationOutcome, OperationStore,
    Page, PageRequest,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::otlp::OtlpExport;
use crate::{Engine, EngineError};

/// Operations dropped because the writer could not keep up.
pub const OPERATIONS_DROPPED: &str = "latchkey_operations_dropped_total";

/// Operations waiting for the writer at most.
const QUEUE: usize = 20_000;
/// Operations per write at most.
const BATCH: usize = 500;
/// How long the writer gathers a batch after its first operation.
const GATHER: Duration = Duration::from_millis(100);

enum Message {
    Operation(Box<Operation>),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the log (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct OperationLog {
    queue: Option<mpsc::Sender<Message>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl OperationLog {
    /// A log writing to `store` (when `enabled`) and handing each batch to `export` (when
    /// given) from a task on the current runtime; neither (or no runtime) records nothing.
    pub(crate) fn new(
        store: Arc<dyn OperationStore>,
        enabled: bool,
        export: Option<OtlpExport>,
    ) -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { queue: None };
        };
        if !enabled && export.is_none() {
            return Self { queue: None };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write(enabled.then_some(store), export, rx));
        Self { queue: Some(tx) }
    }

    fn record(&self, operation: Operation) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(Message::Operation(Box::new(operation))).is_err() {
            metrics::counter!(OPERATIONS_DROPPED).increment(1);
        }
    }
}

/// The writer: gathers up to [`BATCH`] operations for up to [`GATHER`], writes them to the
/// store and hands them to the export, and answers flushes once everything sent before them is
/// written and exported.
async fn write(
    store: Option<Arc<dyn OperationStore>>,
    export: Option<OtlpExport>,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut batch: Vec<Operation> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        take(first, &mut batch, &mut flushes);
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH && flushes.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => take(message, &mut batch, &mut flushes),
                _ => break,
            }
        }
        if !batch.is_empty() {
            if let Some(store) = &store
                && let Err(error) = store.insert_operations(&batch).await
            {
                metrics::counter!(OPERATIONS_DROPPED).increment(batch.len() as u64);
                tracing::warn!(%error, operations = batch.len(), "cannot write to the operation log");
            }
            if let Some(export) = &export {
                export.send(&batch);
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            match &export {
                Some(export) => export.flush(done).await,
                None => {
                    let _ = done.send(());
                }
            }
        }
    }
}

fn take(message: Message, batch: &mut Vec<Operation>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Operation(op) => batch.push(*op),
        Message::Flush(done) => flushes.push(done),
    }
}

/// An operation being timed: what it is about, filled in as it goes, and finished with its
/// outcome by [`Engine::record_operation`].
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    started: Instant,
    op: Operation,
}

impl Timed {
    /// An operation of `kind` about `record`, starting now.
    pub(crate) fn about(engine: &Engine, kind: OperationKind, record: &ConnectionRecord) -> Self {
        let mut timed = Self::new(engine, kind, &record.environment);
        timed.op.connection = Some(record.id.clone());
        timed.op.integration = record.integration.clone();
        timed.op.connector = Some(record.connector.clone());
        timed
    }

    /// An operation of `kind` in `environment`, starting now.
    pub(crate) fn new(engine: &Engine, kind: OperationKind, environment: &str) -> Self {
        let at = engine.clock.now();
        let op = Operation {
            id: operation_id(at),
            environment: environment.to_owned(),
            at,
            kind,
            outcome: OperationOutcome::Success,
            connection: None,
            integration: None,
            connector: None,
            upstream_status: None,
            latency_us: 0,
            error_code: None,
            message: None,
            method: None,
            host: None,
            path: None,
        };
        Self { started: Instant::now(), op }
    }

    /// The request it makes: method, host and path (query values redacted).
    pub(crate) fn request(mut self, method: &str, host: Option<&str>, path: &str) -> Self {
        self.op.method = Some(method.to_owned());
        self.op.host = host.map(str::to_owned);
        self.op.path = Some(latchkey_store::operations::redact_query(path));
        self
    }

    /// The integration it is about.
    pub(crate) fn integration(mut self, id: &str) -> Self {
        self.op.integration = Some(id.to_owned());
        self
    }

    /// When it started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// It began at `started`, before it was described.
    pub(crate) fn began(mut self, started: Instant) -> Self {
        let earlier = time::Duration::try_from(started.elapsed()).unwrap_or_default();
        self.op.at -= earlier;
        self.started = started;
        self
    }

    /// Sets the connection it is about, when there is one.
    pub(crate) fn set_connection(&mut self, id: Option<&str>) {
        self.op.connection = id.map(str::to_owned);
    }

    /// Sets the host it went to, once known.
    pub(crate) fn set_host(&mut self, host: Option<&str>) {
        if host.is_some() {
            self.op.host = host.map(str::to_owned);
        }
    }

    /// It ended with the upstream answering `status` (a failure from 400 up).
    pub(crate) fn answered(mut self, status: u16) -> Operation {
        self.op.upstream_status = Some(status);
        if status >= 400 {
            self.op.outcome = OperationOutcome::Failure;
        }
        self.finish()
    }

    /// It succeeded.
    pub(crate) fn succeeded(self) -> Operation {
        self.finish()
    }

    /// It failed with `error`.
    pub(crate) fn failed(mut self, error: &EngineError) -> Operation {
        self.op.outcome = OperationOutcome::Failure;
        self.op.error_code = Some(error.code().to_owned());
        self.op.message = Some(error.public_message());
        self.op.upstream_status = self.op.upstream_status.or_else(|| error.upstream_status());
        self.finish()
    }

    /// It failed for a reason given in safe words (`code`, `message`), with the upstream's
    /// `status` if it answered.
    pub(crate) fn failed_with(
        mut self,
        code: &str,
        message: &str,
        status: Option<u16>,
    ) -> Operation {
        self.op.outcome = OperationOutcome::Failure;
        self.op.error_code = Some(code.to_owned());
        self.op.message = Some(message.to_owned());
        self.op.upstream_status = status;
        self.finish()
    }

    fn finish(mut self) -> Operation {
        self.op.latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.op
    }
}

/// An operation's id: its time (nanoseconds, hex) then random text, so ids grow with time and
/// the log's primary-key index takes each batch at its end instead of at random places.
fn operation_id(at: OffsetDateTime) -> String {
    let nanos = u64::try_from(at.unix_timestamp_nanos()).unwrap_or_default();
    format!("op_{nanos:016x}{}", crate::random_token(8))
}

impl Engine {
    /// Hands a finished operation to the log.
    pub(crate) fn record_operation(&self, operation: Operation) {
        self.operation_log.record(operation);
    }
}

/// The operation log, from [`Engine::operations`].
#[derive(Debug, Clone, Copy)]
pub struct Operations<'e> {
    pub(crate) engine: &'e Engine,
}

impl Operations<'_> {
    /// One page of the operations `filter` selects, newest first.
    pub async fn list(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, EngineError> {
        crate::pages::check_limit(page)?;
        Ok(self.engine.store.list_operations(filter, page).await?)
    }

    /// Waits until every operation recorded before the call is written (tests, the CLI before
    /// it exits).
    pub async fn flush(&self) {
        let Some(queue) = &self.engine.operation_log.queue else { return };
        let (done, written) = oneshot::channel();
        if queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Removes operations older than `retention` (by the engine's clock) and the oldest beyond
    /// `max_rows`; returns how many.
    pub async fn trim(&self, retention: Duration, max_rows: u64) -> Result<u64, EngineError> {
        let now = self.engine.clock.now();
        let before = time::Duration::try_from(retention)
            .ok()
            .and_then(|r| now.checked_sub(r))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(self.engine.store.trim_operations(before, max_rows).await?)
    }
}
