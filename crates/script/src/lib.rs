//! The sandboxed engine for connector scripts: JavaScript hooks following Cyclr's scripting model
//! (events such as `before_action` that read and change `method_*` globals, `return false` to
//! abort, `AuthRefreshException`/`AuthSessionException` to ask for a refresh or a new session).
//!
//! Every call runs in a QuickJS-NG runtime of its own, used once and dropped, so nothing a script
//! does can reach the next call. To keep that off the hot path, a few worker threads each hold one
//! runtime prepared in advance (intrinsics, our functions, limits installed) and prepare the next
//! one after answering. Calls a script makes to the [`ScriptHost`] (HTTP, storage, logs) are sent
//! back to the caller's thread, which is the only one holding the host.
//!
//! Functions a script sees: `http_request`, `btoa`/`atob` with charsets, `cyclr_sign`/`sign`,
//! `cyclr_storage_*`, `console.log`, and the two exception classes. There is no `require`,
//! module loader, `fetch`, timer, file system or environment.

mod bindings;
mod charset;
mod host;
mod sandbox;
mod signing;
mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use host::{HttpRequest, HttpResponse, ScriptHost};

/// Per-call budgets. [`ScriptEngine::new`] takes the maximum; a connector may ask for less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time the script may spend running JavaScript (host calls excluded). Default 100 ms.
    pub cpu_time: Duration,
    /// Memory of the whole JavaScript heap, including its ~0.3 MiB of built-ins. Default 16 MiB.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cpu_time: Duration::from_millis(100), memory_bytes: 16 * 1024 * 1024 }
    }
}

impl Limits {
    /// Each field of `self`, but never above `max`.
    pub fn clamp_to(self, max: Limits) -> Limits {
        Limits {
            cpu_time: self.cpu_time.min(max.cpu_time),
            memory_bytes: self.memory_bytes.min(max.memory_bytes),
        }
    }
}

/// What a hook call did.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOutcome {
    /// `false`: the script defines no function named after the event; its top level ran, the
    /// event did not, and `globals` are those passed in.
    pub defined: bool,
    /// The function returned `false` (strictly): the caller aborts the operation.
    pub aborted: bool,
    /// Every global passed in, read back after the call (`null` if the script deleted it).
    pub globals: serde_json::Map<String, serde_json::Value>,
    /// The script threw `AuthRefreshException` or `AuthSessionException`.
    pub signal: Option<Signal>,
}

/// What a script asks of the platform by throwing one of Cyclr's exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `throw new AuthRefreshException()`: refresh the access token and retry.
    AuthRefresh,
    /// `throw new AuthSessionException()`: run the session login again.
    AuthSession,
}

/// Why a script did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The source does not parse; `line` is 1-based.
    #[error("syntax error on line {line}: {message}")]
    Syntax { line: u32, message: String },
    /// The script threw: the `message` of an Error, or the thrown value as a string. The
    /// connection's `method_auth_value` is replaced with `[redacted]`.
    #[error("script error: {0}")]
    Thrown(String),
    #[error("script exceeded its CPU time limit")]
    CpuLimit,
    #[error("script exceeded its memory limit")]
    MemoryLimit,
    #[error("script exceeded its stack limit")]
    StackOverflow,
    /// The host failed in a way the script could not see (reserved for the caller's wiring).
    #[error("script host error: {0}")]
    Host(String),
    /// A fault of the engine itself, not of the script.
    #[error("script engine error: {0}")]
    Internal(String),
}

/// Runs connector scripts. Cheap to clone (an `Arc`); `Send + Sync`.
///
/// Dropping the last clone lets the worker threads end once they finish their current call.
#[derive(Debug, Clone)]
pub struct ScriptEngine {
    inner: Arc<worker::Pool>,
}

impl ScriptEngine {
    /// Starts the worker threads, each preparing a runtime, with `limits` as the maximum any call
    /// may use.
    pub fn new(limits: Limits) -> Self {
        ScriptEngine { inner: Arc::new(worker::Pool::start(limits)) }
    }

    /// The maximum limits this engine was built with.
    pub fn limits(&self) -> Limits {
        self.inner.limits()
    }

    /// Checks that `source` parses, without running it (for connector validation).
    pub fn check(&self, source: &str) -> Result<(), ScriptError> {
        sandbox::check(source, self.inner.limits())
    }

    /// Runs the script's top level, then `event` if the script defines a function of that name,
    /// with `globals` set as JavaScript globals before and read back after.
    ///
    /// Blocks until the script ends (run it in `spawn_blocking`); host calls are made on this
    /// thread. `limits` is clamped to the engine's maximum.
    pub fn run(
        &self,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Option<Limits>,
    ) -> Result<HookOutcome, ScriptError> {
        let max = self.inner.limits();
        let limits = limits.map_or(max, |l| l.clamp_to(max));
        self.inner.run(source, event, globals, host, limits)
    }
}

/// Checks that `source` parses, without an engine (for validating connector files).
pub fn check(source: &str) -> Result<(), ScriptError> {
    sandbox::check(source, Limits::default())
}

/// For `examples/bench_hook.rs` only: the time to build one sandbox (runtime, context, our
/// functions) and the time to drop it.
#[doc(hidden)]
pub fn measure_fresh_sandbox(limits: Limits) -> Result<(Duration, Duration), ScriptError> {
    let started = std::time::Instant::now();
    let sandbox = sandbox::Sandbox::new(limits)?;
    let built = started.elapsed();
    let started = std::time::Instant::now();
    drop(sandbox);
    Ok((built, started.elapsed()))
}
