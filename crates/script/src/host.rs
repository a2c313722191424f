//! What a script may reach outside its sandbox: the [`ScriptHost`] the caller implements, and the
//! messages that carry its calls from the script's worker thread to the caller's thread.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::{HookOutcome, ScriptError};

/// The caller's side of a script run: outbound HTTP, per-connection storage and logging.
///
/// Every method is called on the thread that called [`crate::ScriptEngine::run`], while the script
/// waits; the time spent here does not count against the script's CPU budget.
pub trait ScriptHost: Send + Sync {
    /// Sends a request for `http_request(...)`. The implementation enforces the connector's
    /// allowed hosts, and gives up at `deadline` (the end of the hook's wall-clock limit: the
    /// script gets no answer after it anyway); an `Err` becomes a JavaScript exception carrying
    /// its message.
    fn http_request(&self, req: HttpRequest, deadline: Instant) -> Result<HttpResponse, String>;
    /// `cyclr_storage_get(key)`: the stored value, or `None` (the script sees `null`).
    fn storage_get(&self, key: &str) -> Option<String>;
    /// `cyclr_storage_set(key, value)`.
    fn storage_set(&self, key: &str, value: &str) -> Result<(), String>;
    /// `cyclr_storage_delete(key)`.
    fn storage_delete(&self, key: &str) -> Result<(), String>;
    /// `cyclr_storage_list_keys()`.
    fn storage_keys(&self) -> Vec<String>;
    /// `console.log(...)`. The engine has already replaced `method_auth_value` with `[redacted]`.
    fn log(&self, message: &str);
}

/// A request a script made with `http_request({method, url, headers, parameters, data})`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Upper-cased; `GET` when the script gave none.
    pub method: String,
    pub url: String,
    /// Values never contain CR or LF (the script gets an exception instead).
    pub headers: BTreeMap<String, String>,
    /// Query-string parameters.
    pub parameters: BTreeMap<String, String>,
    /// The body: a string as given, anything else as JSON.
    pub data: Option<String>,
}

/// What `http_request` returns to the script as `{status_code, headers, content, request}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    pub content: String,
}

/// A call a script makes that only the caller's thread can answer.
#[derive(Debug)]
pub(crate) enum HostCall {
    Http(HttpRequest),
    StorageGet(String),
    StorageSet(String, String),
    StorageDelete(String),
    StorageKeys,
}

#[derive(Debug)]
pub(crate) enum HostReply {
    Http(Result<HttpResponse, String>),
    Value(Option<String>),
    Done(Result<(), String>),
    Keys(Vec<String>),
}

/// From the worker to the caller.
#[derive(Debug)]
pub(crate) enum ToCaller {
    /// Needs a [`HostReply`] before the script goes on.
    Call(HostCall),
    /// Fire and forget.
    Log(String),
    /// The run is over.
    Done(Result<HookOutcome, ScriptError>),
}

impl HostCall {
    pub(crate) fn answer(self, host: &dyn ScriptHost, deadline: Instant) -> HostReply {
        match self {
            HostCall::Http(req) => HostReply::Http(host.http_request(req, deadline)),
            HostCall::StorageGet(key) => HostReply::Value(host.storage_get(&key)),
            HostCall::StorageSet(key, value) => HostReply::Done(host.storage_set(&key, &value)),
            HostCall::StorageDelete(key) => HostReply::Done(host.storage_delete(&key)),
            HostCall::StorageKeys => HostReply::Keys(host.storage_keys()),
        }
    }
}
