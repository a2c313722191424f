//! Exports the operation log as OpenTelemetry traces over OTLP/HTTP (protobuf), with the
//! maintained `opentelemetry-otlp` exporter: one span per operation, in the batches the log
//! writer gathers. Export runs in a task of its own behind a bounded queue, so a slow or absent
//! collector never holds up the log or a request: batches it cannot take are dropped and
//! counted ([`OPERATIONS_EXPORT_DROPPED`]).
//!
//! A span carries what the operation log stores and nothing more (query values and secret
//! headers are already redacted there; bodies are never kept), named with OpenTelemetry's
//! semantic conventions where one exists (`http.request.method`, `server.address`, `url.path`,
//! `http.response.status_code`, `error.type`) and `latchkey.*` for the rest. Its trace and span
//! ids are derived from the operation id, so the same operation always has the same ids.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use latchkey_core::Secret;
use latchkey_store::{Operation, OperationKind, OperationOutcome};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::EngineError;

/// Operations exported to the OTLP collector.
pub const OPERATIONS_EXPORTED: &str = "latchkey_operations_exported_total";
/// Operations not exported: the collector refused them or could not be reached, or the
/// export queue was full.
pub const OPERATIONS_EXPORT_DROPPED: &str = "latchkey_operations_export_dropped_total";

/// Batches waiting for the exporter at most (each up to the log writer's batch size).
const QUEUE: usize = 64;
/// How long one export may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The path OTLP/HTTP receivers take traces at, under the collector's base URL.
const TRACES_PATH: &str = "/v1/traces";

/// Where to export: the OTLP/HTTP collector and the headers it wants (e.g. an API key).
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://collector:4318`; [`TRACES_PATH`] is added) or its
    /// full traces URL (ending in `/v1/traces`).
    pub endpoint: url::Url,
    /// Headers sent with every export; values are kept as secrets (never logged).
    pub headers: Vec<(String, Secret)>,
}

impl OtlpConfig {
    /// Exports to `endpoint` with no extra headers.
    pub fn new(endpoint: url::Url) -> Self {
        Self { endpoint, headers: Vec::new() }
    }

    /// The URL the traces are posted to.
    pub fn traces_url(&self) -> String {
        let url = self.endpoint.as_str();
        if self.endpoint.path().ends_with(TRACES_PATH) {
            url.to_owned()
        } else {
            format!("{}{TRACES_PATH}", url.trim_end_matches('/'))
        }
    }
}

pub(crate) enum Message {
    Batch(Vec<Operation>),
    Flush(oneshot::Sender<()>),
}

/// The sending side: hands batches to the export task.
#[derive(Debug, Clone)]
pub(crate) struct OtlpExport {
    queue: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl OtlpExport {
    /// Builds the exporter and starts its task on the current runtime.
    pub(crate) fn start(config: &OtlpConfig) -> Result<Self, EngineError> {
        let invalid = |message: String| EngineError::invalid("otlp_endpoint", message);
        if !matches!(config.endpoint.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the OTLP endpoint must be an http or https URL, not {}:",
                config.endpoint.scheme()
            )));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| invalid("the OTLP export needs a Tokio runtime".to_owned()))?;
        latchkey_net::install_crypto_provider();
        // Not `latchkey_net::Client`: the collector is the operator's own service, often on a
        // private address that the upstream client's address policy may refuse.
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(TIMEOUT)
            .build()
            .map_err(|error| invalid(format!("cannot build its HTTP client: {error}")))?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url())
            .with_timeout(TIMEOUT)
            .with_headers(headers)
            .with_http_client(http)
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        exporter.set_resource(&resource());
        let mut shown = config.endpoint.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        tracing::info!(endpoint = %shown, "exporting operations to the OTLP collector at {shown}");
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(export(exporter, rx));
        Ok(Self { queue: tx })
    }

    /// Queues `batch` for export, or drops and counts it when the queue is full.
    pub(crate) fn send(&self, batch: &[Operation]) {
        if self.queue.try_send(Message::Batch(batch.to_vec())).is_err() {
            metrics::counter!(OPERATIONS_EXPORT_DROPPED).increment(batch.len() as u64);
        }
    }

    /// Answers `done` once every batch sent before it has been exported (or failed).
    pub(crate) async fn flush(&self, done: oneshot::Sender<()>) {
        if let Err(mpsc::error::SendError(Message::Flush(done))) =
            self.queue.send(Message::Flush(done)).await
        {
            let _ = done.send(());
        }
    }
}

/// Latchkey's resource: `service.name` is `latchkey` unless `OTEL_SERVICE_NAME` names another;
/// `OTEL_RESOURCE_ATTRIBUTES` adds to it.
fn resource() -> Resource {
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match std::env::var_os("OTEL_SERVICE_NAME") {
        Some(_) => builder.build(),
        None => builder.with_service_name("latchkey").build(),
    }
}

/// The export task: one OTLP request per batch, one at a time. A failing collector is logged
/// when it starts failing and when it recovers, not on every batch.
async fn export(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<Message>) {
    let scope =
        InstrumentationScope::builder("latchkey").with_version(env!("CARGO_PKG_VERSION")).build();
    let mut failing = false;
    while let Some(message) = rx.recv().await {
        let batch = match message {
            Message::Batch(batch) => batch,
            Message::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let count = batch.len() as u64;
        let spans = batch.iter().map(|op| span(op, &scope)).collect();
        match exporter.export(spans).await {
            Ok(()) => {
                metrics::counter!(OPERATIONS_EXPORTED).increment(count);
                if failing {
                    failing = false;
                    tracing::info!("the OTLP collector takes operations again");
                }
            }
            Err(error) => {
                metrics::counter!(OPERATIONS_EXPORT_DROPPED).increment(count);
                if !failing {
                    failing = true;
                    tracing::warn!(%error, operations = count, "cannot export operations to the OTLP collector; dropping them until it answers");
                }
            }
        }
    }
}

/// One operation as a span.
fn span(op: &Operation, scope: &InstrumentationScope) -> SpanData {
    let digest = Sha256::digest(op.id.as_bytes());
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&digest[..16]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[16..24]);
    let start = SystemTime::from(op.at);
    let end = start + Duration::from_micros(op.latency_us);
    let mut attributes = vec![
        KeyValue::new("latchkey.operation.id", op.id.clone()),
        KeyValue::new("latchkey.operation.kind", op.kind.as_str()),
        KeyValue::new("latchkey.outcome", op.outcome.as_str()),
        KeyValue::new("latchkey.environment", op.environment.clone()),
    ];
    let mut text = |key: &'static str, value: &Option<String>| {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, value.clone()));
        }
    };
    text("latchkey.connection.id", &op.connection);
    text("latchkey.integration.id", &op.integration);
    text("latchkey.connector.id", &op.connector);
    text("latchkey.error.code", &op.error_code);
    text("http.request.method", &op.method);
    text("server.address", &op.host);
    if let Some(target) = &op.path {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target.as_str(), None),
        };
        attributes.push(KeyValue::new("url.path", path.to_owned()));
        if let Some(query) = query {
            attributes.push(KeyValue::new("url.query", query.to_owned()));
        }
    }
    if let Some(status) = op.upstream_status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    let status = match op.outcome {
        OperationOutcome::Success => Status::Unset,
        OperationOutcome::Failure => {
            let kind = match (&op.error_code, op.upstream_status) {
                (Some(code), _) => code.clone(),
                (None, Some(status)) => status.to_string(),
                (None, None) => "_OTHER".to_owned(),
            };
            attributes.push(KeyValue::new("error.type", kind.clone()));
            Status::error(op.message.clone().unwrap_or(kind))
        }
    };
    let name = match &op.method {
        Some(method) => format!("{} {method}", op.kind),
        None => op.kind.as_str().to_owned(),
    };
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(trace),
            SpanId::from_bytes(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind(op.kind),
        name: Cow::Owned(name),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// Operations that call another service are client spans; a connect step (a token exchange and
/// the connection stored, from the provider's redirect) is internal.
fn kind(kind: OperationKind) -> SpanKind {
    match kind {
        OperationKind::Connect => SpanKind::Internal,
        OperationKind::Request
        | OperationKind::Refresh
        | OperationKind::Check
        | OperationKind::Webhook
        | OperationKind::Revocation => SpanKind::Client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_added_to_a_base_url_and_kept_when_given() {
        let url = |s: &str| OtlpConfig::new(s.parse().unwrap()).traces_url();
        assert_eq!(url("http://collector:4318"), "http://collector:4318/v1/traces");
        assert_eq!(url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(url("https://otel.example/api/"), "https://otel.example/api/v1/traces");
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
