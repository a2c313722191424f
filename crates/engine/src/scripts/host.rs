//! The engine's side of a script run: `http_request` through the hardened client to the
//! connector's allowed hosts, `cyclr_storage_*` in the store (encrypted, per connection), and
//! `console.log` into Latchkey's log.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use bytes::Bytes;
use latchkey_core::Secret;
use latchkey_net::Client;
use latchkey_script::{HttpRequest, HttpResponse, ScriptHost};
use latchkey_store::Store;

use super::HookScope;

/// The most a script may keep per connection: values of 64 KiB, 256 keys.
const MAX_VALUE: usize = 64 * 1024;
const MAX_KEYS: usize = 256;

pub(crate) struct EngineHost {
    net: Client,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    connector: String,
    scope: HookScope,
    /// Storage of a run with no connection yet (a connect flow).
    flow_storage: Mutex<BTreeMap<String, String>>,
}

impl EngineHost {
    pub fn new(
        net: Client,
        store: Arc<dyn Store>,
        runtime: tokio::runtime::Handle,
        connector: String,
        scope: HookScope,
    ) -> Self {
        EngineHost { net, store, runtime, connector, scope, flow_storage: Mutex::default() }
    }

    fn redact(&self, text: &str) -> String {
        self.scope.redact(text)
    }

    fn flow(&self) -> parking_lot::MutexGuard<'_, BTreeMap<String, String>> {
        self.flow_storage.lock()
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        let mut url = url::Url::parse(&req.url).map_err(|e| format!("invalid url: {e}"))?;
        if !req.parameters.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.parameters {
                pairs.append_pair(k, v);
            }
        }
        let mut builder = http::Request::builder().method(req.method.as_str()).uri(url.as_str());
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(req.data.map(Bytes::from).unwrap_or_default())
            .map_err(|e| format!("invalid request: {e}"))?;
        let response =
            self.net.send(request, &self.scope.policy).await.map_err(|e| e.to_string())?;
        let status_code = response.status.as_u16();
        let headers = response
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status_code,
            headers,
            content: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl ScriptHost for EngineHost {
    fn http_request(&self, req: HttpRequest, deadline: Instant) -> Result<HttpResponse, String> {
        tracing::debug!(connector = %self.connector, method = %req.method, "script http_request");
        let deadline = tokio::time::Instant::from_std(deadline);
        self.runtime
            .block_on(async {
                match tokio::time::timeout_at(deadline, self.send(req)).await {
                    Ok(result) => result,
                    Err(_) => Err("the hook's wall-clock limit ran out".to_owned()),
                }
            })
            .map_err(|message| self.redact(&message))
    }

    fn storage_get(&self, key: &str) -> Option<String> {
        let Some(connection) = &self.scope.connection else { return self.flow().get(key).cloned() };
        match self.runtime.block_on(self.store.script_value(connection, key)) {
            Ok(value) => value.map(|v| v.expose().to_string()),
            Err(error) => {
                tracing::warn!(connection = %connection, %error, "script storage read failed");
                None
            }
        }
    }

    fn storage_set(&self, key: &str, value: &str) -> Result<(), String> {
        if key.is_empty() || key.len() > 200 {
            return Err("storage keys are 1 to 200 characters".into());
        }
        if value.len() > MAX_VALUE {
            return Err(format!("storage values are at most {MAX_VALUE} bytes"));
        }
        let Some(connection) = &self.scope.connection else {
            let mut flow = self.flow();
            if !flow.contains_key(key) && flow.len() >= MAX_KEYS {
                return Err(format!("at most {MAX_KEYS} keys may be stored"));
            }
            flow.insert(key.to_string(), value.to_string());
            return Ok(());
        };
        self.runtime.block_on(async {
            let keys = self.store.script_keys(connection).await.map_err(|e| e.to_string())?;
            if keys.len() >= MAX_KEYS && !keys.iter().any(|k| k == key) {
                return Err(format!("at most {MAX_KEYS} keys may be stored"));
            }
            self.store
                .put_script_value(connection, key, &Secret::new(value))
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn storage_delete(&self, key: &str) -> Result<(), String> {
        let Some(connection) = &self.scope.connection else {
            self.flow().remove(key);
            return Ok(());
        };
        self.runtime
            .block_on(self.store.delete_script_value(connection, key))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn storage_keys(&self) -> Vec<String> {
        let Some(connection) = &self.scope.connection else {
            return self.flow().keys().cloned().collect();
        };
        match self.runtime.block_on(self.store.script_keys(connection)) {
            Ok(keys) => keys,
            Err(e) => {
                // The hook's signature offers no error: it sees no keys, the operator the cause.
                tracing::error!(connector = %self.connector, connection, error = %e, "script storage keys cannot be read");
                Vec::new()
            }
        }
    }

    fn log(&self, message: &str) {
        let connection = self.scope.connection.as_deref().unwrap_or("-");
        tracing::info!(connector = %self.connector, connection, "script: {}", self.redact(message));
    }
}
