//! Connector scripts in the engine: when each hook runs, what it sees, and what its answer
//! changes. The sandbox itself is `latchkey_script`; this module builds the globals, runs the
//! hook off the async threads (each connector's hooks in a group of their own, so that one
//! connector's slow API can not take every script worker) unless it can run on the request's own
//! thread (a hook that calls no host function), and gives scripts their host (HTTP
//! to allowed hosts until the hook's deadline, encrypted per-connection storage, redacted
//! logs).

mod action;
mod host;
mod revoke;
mod token;

use std::collections::BTreeMap;
use std::time::Duration;

use latchkey_core::{Connector, Secret};
use latchkey_net::HostPolicy;
use latchkey_script::{HookOutcome, Limits, Signal};
use serde_json::{Map, Value};

pub(crate) use token::TokenEvent;

use crate::{Engine, EngineError};

/// What a hook may reach beyond its globals.
#[derive(Clone)]
pub(crate) struct HookScope {
    /// The connection whose storage `cyclr_storage_*` reads and writes; `None` while a
    /// connection is being made, when storage lasts for that one hook call.
    pub connection: Option<String>,
    /// The hosts `http_request` may call.
    pub policy: HostPolicy,
    /// `method_auth_value`, when the auth method has one.
    pub auth_value: Option<Secret>,
    /// `method_credentials`: every field of a `custom` method, for scripts that sign with more
    /// than one value.
    pub credentials: Option<BTreeMap<String, Secret>>,
    /// The connection's config, added to the connector's `script_parameters`.
    pub config: BTreeMap<String, String>,
    /// Values never to show in logs or errors: the connection's credentials.
    pub secrets: Vec<Secret>,
}

impl HookScope {
    /// Replaces every secret of the scope in `text` with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter().chain(&self.auth_value) {
            if secret.expose().len() >= 4 {
                out = out.replace(secret.expose(), "[redacted]");
            }
        }
        out
    }
}

/// Checks that a connector's script parses. `file` is the connector's YAML, named `origin` in
/// the error; the line is the file's line when the script is a `scripts: |` block.
pub fn check_connector_scripts(
    connector: &Connector,
    file: &str,
    origin: &str,
) -> Result<(), latchkey_core::connector::ConnectorError> {
    let Some(source) = &connector.scripts else { return Ok(()) };
    let (line, message) = match latchkey_script::check(source) {
        Err(latchkey_script::ScriptError::TooLarge { bytes }) => {
            let line = file
                .lines()
                .position(|l| l.trim_start().starts_with("scripts:"))
                .map(|i| i as u64 + 1);
            let message = format!(
                "the script is {bytes} bytes; scripts may be at most {} KiB",
                latchkey_script::MAX_SCRIPT_BYTES / 1024
            );
            (line, message)
        }
        Ok(()) => return Ok(()),
        Err(latchkey_script::ScriptError::Syntax { line, message }) => {
            let block = file
                .lines()
                .position(|l| l.trim_end() == "scripts: |" || l.trim_end() == "scripts: |-");
            let at = block.map(|i| (i + 1 + line as usize) as u64);
            (at, format!("syntax error on script line {line}: {message}"))
        }
        Err(other) => (None, other.to_string()),
    };
    Err(latchkey_core::connector::ConnectorError {
        file: origin.to_string(),
        line,
        column: None,
        field: Some("scripts".into()),
        message,
    })
}

/// Whether `source` may define a function named `event`: a cheap test that lets requests skip
/// the sandbox (and keep streaming) when the script cannot have that hook.
pub(crate) fn mentions(connector: &Connector, event: &str) -> bool {
    connector.scripts.as_deref().is_some_and(|source| {
        source.match_indices(event).any(|(at, _)| {
            let after = source[at + event.len()..].chars().next();
            !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// The connector's limits, in the sandbox's terms (clamped to the engine's by the sandbox).
fn limits(connector: &Connector, max: Limits) -> Limits {
    let Some(asked) = connector.script_limits else { return max };
    Limits {
        cpu_time: asked.cpu_ms.map_or(max.cpu_time, Duration::from_millis),
        memory_bytes: asked
            .memory_mib
            .and_then(|m| usize::try_from(m.saturating_mul(1024 * 1024)).ok())
            .unwrap_or(max.memory_bytes),
        wall_time: asked.wall_ms.map_or(max.wall_time, Duration::from_millis),
        http_requests: asked.http_requests.unwrap_or(max.http_requests),
    }
}

impl Engine {
    /// Runs `event` of the connector's script with `globals` (plus `script_parameters` and
    /// `method_auth_value`). `None` when the script does not define the event. A `return false`
    /// is [`EngineError::ScriptAborted`]; any failure of the script is [`EngineError::Script`].
    pub(crate) async fn run_hook(
        &self,
        connector: &Connector,
        event: &'static str,
        scope: HookScope,
        mut globals: Map<String, Value>,
    ) -> Result<Option<HookRun>, EngineError> {
        let Some(source) = connector.scripts.clone() else { return Ok(None) };
        if !mentions(connector, event) {
            return Ok(None);
        }
        let mut parameters: Map<String, Value> = connector
            .script_parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        for (k, v) in &scope.config {
            parameters.insert(k.clone(), Value::String(v.clone()));
        }
        globals.insert("script_parameters".into(), Value::Object(parameters));
        if let Some(credentials) = &scope.credentials {
            let map = credentials
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.expose().to_string())))
                .collect();
            globals.insert("method_credentials".into(), Value::Object(map));
        }
        globals.insert(
            "method_auth_value".into(),
            scope
                .auth_value
                .as_ref()
                .map_or(Value::Null, |v| Value::String(v.expose().to_string())),
        );
        let redactor = scope.clone();
        let host = host::EngineHost::new(
            self.net.clone(),
            self.store.clone(),
            tokio::runtime::Handle::current(),
            connector.id.clone(),
            scope,
        );
        let scripts = self.scripts.clone();
        let limits = limits(connector, scripts.limits());
        // First on this very thread, with no hand-off: a hook that calls no host function (the
        // usual `before_action`) runs here for at most its CPU limit, without waiting on
        // anything. Otherwise (no sandbox ready on this thread yet, or a script that calls the
        // host) it takes the worker path below; see `latchkey_script::ScriptEngine::run_here`.
        let here = scripts.run_here(&source, event, &globals, &host, Some(limits));
        let run = match here {
            Some(run) => run,
            None => {
                let group = connector.id.clone();
                let run =
                    move || scripts.run_in(&group, &source, event, globals, &host, Some(limits));
                // The call blocks this thread while the sandbox runs (and answers its host calls
                // here), for at most the hook's wall-clock limit. On the multi-threaded runtime
                // that happens in place, sparing a thread hand-off; on a current-thread runtime it
                // must move to the blocking pool. Either way the thread is one of the runtime's
                // blocking threads, not one the runtime needs for other requests, and the script
                // worker it waits for is one of the connector's share (see
                // `latchkey_script::PoolSize`).
                match tokio::runtime::Handle::current().runtime_flavor() {
                    tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
                    _ => tokio::task::spawn_blocking(run).await.map_err(|e| {
                        script_error(
                            connector,
                            event,
                            latchkey_script::ScriptError::Internal(e.to_string()),
                        )
                    })?,
                }
            }
        };
        let outcome = run.map_err(|error| {
            let error = match error {
                latchkey_script::ScriptError::Thrown(message) => {
                    latchkey_script::ScriptError::Thrown(redactor.redact(&message))
                }
                other => other,
            };
            script_error(connector, event, error)
        })?;
        if !outcome.defined && outcome.signal.is_none() {
            return Ok(None);
        }
        if outcome.aborted {
            return Err(EngineError::ScriptAborted {
                connector: connector.id.clone(),
                event: event.to_string(),
            });
        }
        Ok(Some(HookRun { outcome }))
    }
}

fn script_error(
    connector: &Connector,
    event: &str,
    error: latchkey_script::ScriptError,
) -> EngineError {
    tracing::warn!(connector = %connector.id, event, %error, "connector script failed");
    EngineError::Script { connector: connector.id.clone(), event: event.to_string(), error }
}

/// A hook that ran.
pub(crate) struct HookRun {
    pub outcome: HookOutcome,
}

impl HookRun {
    /// The global `name` after the call, if the script changed it from `before`.
    pub fn changed<'a>(&'a self, name: &str, before: &Value) -> Option<&'a Value> {
        self.outcome.globals.get(name).filter(|after| *after != before)
    }

    /// The signal the script threw, if any.
    pub fn signal(&self) -> Option<Signal> {
        self.outcome.signal
    }
}

/// A JSON view of a body: parsed JSON when it is JSON, text when it is UTF-8, else `null`.
pub(crate) fn body_value(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(_) => std::str::from_utf8(body).map_or(Value::Null, |t| Value::String(t.to_string())),
    }
}

/// The bytes of a body a script set: text as is, `null` as nothing, anything else as JSON.
pub(crate) fn body_bytes(value: &Value) -> bytes::Bytes {
    match value {
        Value::Null => bytes::Bytes::new(),
        Value::String(text) => bytes::Bytes::from(text.clone()),
        other => bytes::Bytes::from(other.to_string()),
    }
}

/// Headers as a JSON object (repeated headers joined with `, `; values that are not text are
/// left out).
pub(crate) fn headers_value(headers: &http::HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> =
            headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() {
            map.insert(name.as_str().to_string(), Value::String(values.join(", ")));
        }
    }
    Value::Object(map)
}

/// Headers from the object a script set. A name or value that cannot be a header fails. Names
/// differing only in case are one header: the last one set wins.
pub(crate) fn headers_from(
    connector: &Connector,
    event: &str,
    value: &Value,
) -> Result<http::HeaderMap, EngineError> {
    let bad = |message: String| EngineError::Script {
        connector: connector.id.clone(),
        event: event.to_string(),
        error: latchkey_script::ScriptError::Thrown(message),
    };
    let mut headers = http::HeaderMap::new();
    let Value::Object(map) = value else {
        return Err(bad("method_request_headers must be an object".into()));
    };
    for (name, value) in map {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("`{}` is not a header name", name.escape_debug())))?;
        let value = http::HeaderValue::from_str(&text)
            .map_err(|_| bad(format!("the value of header `{name}` is not a header value")))?;
        headers.insert(header, value);
    }
    Ok(headers)
}

/// A query string as a JSON object (a repeated name keeps its last value).
pub(crate) fn query_value(url: &url::Url) -> Value {
    Value::Object(
        url.query_pairs().map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect(),
    )
}

/// Replaces `url`'s query with the object a script set.
pub(crate) fn set_query(url: &mut url::Url, value: &Value) {
    url.set_query(None);
    if let Value::Object(map) = value
        && !map.is_empty()
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in map {
            match v {
                Value::Null => {}
                Value::String(text) => {
                    pairs.append_pair(k, text);
                }
                other => {
                    pairs.append_pair(k, &other.to_string());
                }
            }
        }
    }
}
