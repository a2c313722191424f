//! A recording in-memory host for the engine tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use latchkey_script::{HttpRequest, HttpResponse, Limits, ScriptEngine, ScriptHost};
use serde_json::{Map, Value, json};

#[derive(Debug, Default)]
pub struct RecordingHost {
    pub storage: Mutex<BTreeMap<String, String>>,
    pub logs: Mutex<Vec<String>>,
    pub requests: Mutex<Vec<HttpRequest>>,
    pub response: Option<HttpResponse>,
}

impl ScriptHost for RecordingHost {
    fn http_request(
        &self,
        req: HttpRequest,
        _: std::time::Instant,
    ) -> Result<HttpResponse, String> {
        self.requests.lock().unwrap().push(req);
        self.response.clone().ok_or_else(|| "host not allowed".to_owned())
    }
    fn storage_get(&self, key: &str) -> Option<String> {
        self.storage.lock().unwrap().get(key).cloned()
    }
    fn storage_set(&self, key: &str, value: &str) -> Result<(), String> {
        self.storage.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
    fn storage_delete(&self, key: &str) -> Result<(), String> {
        self.storage.lock().unwrap().remove(key);
        Ok(())
    }
    fn storage_keys(&self) -> Vec<String> {
        self.storage.lock().unwrap().keys().cloned().collect()
    }
    fn log(&self, message: &str) {
        self.logs.lock().unwrap().push(message.into());
    }
}

pub fn engine() -> ScriptEngine {
    ScriptEngine::new(Limits::default())
}

pub fn globals(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("globals must be an object"),
    }
}

pub fn action_globals() -> Map<String, Value> {
    globals(json!({
        "method_request_headers": {"Accept": "application/json"},
        "method_request_parameters": {},
        "method_request": {"name": "x"},
        "method_endpoint": "https://api.example.com/v1/items",
        "method_auth_value": "s3cr3t-token",
        "script_parameters": {},
        "action_data": null,
    }))
}
