//! The sandboxed engine for connector scripts: JavaScript hooks following Cyclr's scripting model
//! (events such as `before_action` that read and change `method_*` globals, `return false` to
//! abort, `AuthRefreshException`/`AuthSessionException` to ask for a refresh or a new session).
//!
//! A few worker threads each own a QuickJS-NG runtime and context, hardened once when built and
//! then reused for many calls, one at a time; nothing a script does in one call is observable in
//! a later one (another connection's especially). In short (details in the `sandbox` module):
//! every object a script can reach without creating it is frozen, and `WeakRef`,
//! `FinalizationRegistry` and the context-wide `Error.prepareStackTrace`/`stackTraceLimit` are
//! gone; a script is compiled as the body of a function, so its top-level declarations belong to
//! the call; after the call its promise jobs have run and every global it added is deleted; and a
//! sandbox is replaced, after answering, whenever a call failed or left the global object
//! otherwise than it was, and after 1,024 calls. Calls a script makes to the [`ScriptHost`]
//! (HTTP, storage, logs) are sent back to the caller's thread, which is the only one holding the
//! host.
//!
//! A call may instead run on the caller's own thread ([`ScriptEngine::run_here`], see the `here`
//! module), sparing the two thread hand-offs, in a sandbox that thread keeps, built on another
//! thread and handed over, with the same hardening, cleanup, limits and replacement rules. A
//! script that calls the host is not run there: its first host call stops the call (with no
//! effect outside its sandbox) and it runs again on a worker, because answering the host on the
//! caller's thread would mean waiting there, and the caller is usually an async runtime's thread.
//!
//! No call can hold the engine: besides CPU time and memory, each has a wall-clock limit that
//! covers its waits on the host (and its time queued for a worker) and a cap on `http_request`
//! calls, both failing the call even when the script catches the exception; calls belong to
//! groups (connectors), each holding at most its share of the worker threads, which grow on
//! demand (see the `worker` module); and sources over [`MAX_SCRIPT_BYTES`] are refused unread.
//!
//! What a script sees differs from a plain global script in a few ways: its top-level `var` and
//! `function` declarations are not properties of `globalThis` (assigning an undeclared name still
//! creates a global, and globals passed in are globals, but a top-level `var method_response`
//! now declares a variable of the script's that hides the global of that name); built-in objects and prototypes cannot
//! be changed or extended (assigning an inherited property such as `toString` or `name` on an
//! object of the script's own still works); the built-in globals are properties of the global
//! object's prototype rather than of the global object; and promise jobs (`then`, `await`) run
//! before the call ends, an `async` event's settled value counting as its return value.
//!
//! Functions a script sees: `http_request`, `btoa`/`atob` with charsets, `cyclr_sign`/`sign`,
//! `cyclr_storage_*`, `console.log`, and the two exception classes. There is no `require`,
//! module loader, `fetch`, timer, file system or environment.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod bindings;
mod charset;
mod here;
mod host;
mod sandbox;
mod signing;
mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use host::{HttpRequest, HttpResponse, ScriptHost};

/// The longest script source an engine runs or a connector may carry: 256 KiB. Compiling one
/// that size takes tens of milliseconds; a 1.9 MB one took seconds.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// Per-call budgets. [`ScriptEngine::new`] takes the maximum; a connector may ask for less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time the script may spend running JavaScript (host calls excluded). Default 100 ms.
    pub cpu_time: Duration,
    /// Memory of the whole JavaScript heap, including its ~0.5 MiB of built-ins and the scripts
    /// its sandbox keeps compiled. Default 16 MiB.
    pub memory_bytes: usize,
    /// Time the whole call may take, from [`ScriptEngine::run`] until its answer: waiting for a
    /// worker, running, and waiting on `http_request` and storage. Default 10 s.
    pub wall_time: Duration,
    /// `http_request` calls one hook call may make; the next one fails the call. Default 20.
    pub http_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_time: Duration::from_millis(100),
            memory_bytes: 16 * 1024 * 1024,
            wall_time: Duration::from_secs(10),
            http_requests: 20,
        }
    }
}

impl Limits {
    /// Each field of `self`, but never above `max`.
    pub fn clamp_to(self, max: Limits) -> Limits {
        Limits {
            cpu_time: self.cpu_time.min(max.cpu_time),
            memory_bytes: self.memory_bytes.min(max.memory_bytes),
            wall_time: self.wall_time.min(max.wall_time),
            http_requests: self.http_requests.min(max.http_requests),
        }
    }
}

/// How many worker threads run scripts, and how many of them one group of calls (a connector)
/// may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Threads started with the engine's first call and kept, each with a sandbox ready.
    pub workers: usize,
    /// The most threads there may be: more start when every worker is busy, and end after a
    /// minute idle.
    pub max_workers: usize,
    /// The most calls of one group that run at once; its further calls wait, so a group whose
    /// hooks wait on a slow API holds at most this many threads and other groups still find one.
    pub per_group: usize,
}

impl Default for PoolSize {
    /// Twice as many workers as there are cores (4 to 16), up to 64 threads, 8 per group.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PoolSize { workers: (2 * cores).clamp(4, 16), max_workers: 64, per_group: 8 }
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
    /// The call took longer than [`Limits::wall_time`] (counting its waits on `http_request`).
    #[error("script exceeded its wall-clock limit of {} ms", .0.as_millis())]
    WallTimeLimit(Duration),
    /// The call tried more `http_request` calls than [`Limits::http_requests`].
    #[error("script made more than {0} http_request calls")]
    HttpRequestLimit(u32),
    /// The source is longer than [`MAX_SCRIPT_BYTES`]; nothing of it was compiled.
    #[error("the script is {bytes} bytes; scripts may be at most {} KiB", MAX_SCRIPT_BYTES / 1024)]
    TooLarge { bytes: usize },
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
    here: Arc<here::Here>,
}

impl ScriptEngine {
    /// An engine whose worker threads ([`PoolSize::default`]) start with its first call, each
    /// building its sandbox, with `limits` as the maximum any call may use. Checking a script
    /// ([`ScriptEngine::check`]) starts none.
    pub fn new(limits: Limits) -> Self {
        Self::with_pool(limits, PoolSize::default())
    }

    /// As [`ScriptEngine::new`], with exactly `workers` threads (at least one), all calls one
    /// group: calls beyond that many at once wait for a worker.
    pub fn with_workers(limits: Limits, workers: usize) -> Self {
        let n = workers.max(1);
        Self::with_pool(limits, PoolSize { workers: n, max_workers: n, per_group: n })
    }

    /// As [`ScriptEngine::new`], with the pool sized by `size`.
    pub fn with_pool(limits: Limits, size: PoolSize) -> Self {
        let inner = worker::Pool::new(limits, size);
        let here = here::Here::new(limits, inner.verdicts());
        ScriptEngine { inner: Arc::new(inner), here: Arc::new(here) }
    }

    /// How many sandboxes the workers have built so far (none before the first call, one per
    /// worker started, then one for each they replaced): for tests that need to know whether two calls shared a sandbox.
    #[doc(hidden)]
    pub fn sandboxes_built(&self) -> u64 {
        self.inner.sandboxes_built()
    }

    /// The maximum limits this engine was built with.
    pub fn limits(&self) -> Limits {
        self.inner.limits()
    }

    /// Checks that `source` parses, without running it (for connector validation).
    pub fn check(&self, source: &str) -> Result<(), ScriptError> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Err(ScriptError::TooLarge { bytes: source.len() });
        }
        sandbox::check(source, self.inner.limits())
    }

    /// Runs the script's top level, then `event` if the script defines a function of that name,
    /// then the promise jobs they left, with `globals` set as JavaScript globals before and read
    /// back after. `event` must be an identifier (`[A-Za-z_][A-Za-z0-9_]*`). The call belongs to
    /// the group `""`; see [`ScriptEngine::run_in`].
    ///
    /// Blocks until the script ends or its wall-clock limit passes (run it in `spawn_blocking`
    /// or `block_in_place`); host calls are made on this thread, and `http_request` is given
    /// the call's deadline. `limits` is clamped to the engine's maximum; the memory limit is
    /// for the whole heap of the sandbox, including its built-ins (about 0.5 MiB once hardened)
    /// and the scripts it has compiled.
    pub fn run(
        &self,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Option<Limits>,
    ) -> Result<HookOutcome, ScriptError> {
        self.run_in("", source, event, globals, host, limits)
    }

    /// As [`ScriptEngine::run`], counting the call against `group` (a connector): at most
    /// [`PoolSize::per_group`] calls of one group run at once, the others waiting (within their
    /// wall-clock limit) while calls of other groups go ahead.
    pub fn run_in(
        &self,
        group: &str,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Option<Limits>,
    ) -> Result<HookOutcome, ScriptError> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Err(ScriptError::TooLarge { bytes: source.len() });
        }
        let max = self.inner.limits();
        let limits = limits.map_or(max, |l| l.clamp_to(max));
        self.inner.run(group, source, event, globals, host, limits)
    }
}

impl ScriptEngine {
    /// Runs the call as [`ScriptEngine::run`] does, with the same isolation and limits, but on
    /// this thread, sparing the hand-off to a worker thread and back; `None` when it is not run
    /// here, and the caller should use [`ScriptEngine::run_in`]. That is the case while this
    /// thread has no sandbox ready (they are built on another thread, never on this one), for a
    /// script that calls the host (its first host call stops it, with no effect, and its source
    /// takes the worker path from then on), and for a script that ran out of CPU or wall-clock
    /// time here before. See the `here` module.
    ///
    /// Blocks this thread for at most the call's CPU limit (plus compiling the script the first
    /// time this thread's sandbox sees it), with no waits: fit for an async runtime's thread.
    /// Logs reach `host` after the call.
    pub fn run_here(
        &self,
        source: &str,
        event: &str,
        globals: &serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Option<Limits>,
    ) -> Option<Result<HookOutcome, ScriptError>> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Some(Err(ScriptError::TooLarge { bytes: source.len() }));
        }
        let max = self.inner.limits();
        let limits = limits.map_or(max, |l| l.clamp_to(max));
        self.here.run(source, event, globals, host, limits)
    }

    /// Starts building the sandboxes [`ScriptEngine::run_here`] uses, on a thread of the
    /// engine's, so that the first calls find them ready.
    pub fn prepare_here(&self) {
        self.here.prepare();
    }

    /// How many calls [`ScriptEngine::run_here`] ran (for tests).
    #[doc(hidden)]
    pub fn calls_run_here(&self) -> u64 {
        self.here.calls()
    }

    /// How many sandboxes [`ScriptEngine::run_here`] took from its stock rather than from the
    /// calling thread's slot: for tests that need to know whether two calls shared a sandbox.
    #[doc(hidden)]
    pub fn sandboxes_taken_here(&self) -> u64 {
        self.here.taken()
    }

    /// How many sandboxes [`ScriptEngine::run_here`]'s builder thread has built: for tests that
    /// check that collected sandboxes are reused rather than replaced.
    #[doc(hidden)]
    pub fn sandboxes_built_here(&self) -> u64 {
        self.here.built()
    }
}

/// How many calls [`ScriptEngine::run_here`] ran on the calling thread (for tests that check
/// which path a call took).
#[doc(hidden)]
pub fn calls_run_here_on_this_thread() -> u64 {
    here::calls_on_this_thread()
}

/// Checks that `source` parses, without an engine (for validating connector files); a source
/// over [`MAX_SCRIPT_BYTES`] is refused without being compiled.
pub fn check(source: &str) -> Result<(), ScriptError> {
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(ScriptError::TooLarge { bytes: source.len() });
    }
    CHECKS_HERE.with(|n| n.set(n.get() + 1));
    sandbox::check(source, Limits::default())
}

thread_local! {
    static CHECKS_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times [`check`] compiled a script on the calling thread: for tests that make sure a
/// compile never runs on an async runtime's thread.
#[doc(hidden)]
pub fn checks_on_this_thread() -> u64 {
    CHECKS_HERE.with(std::cell::Cell::get)
}

/// For `examples/bench_hook.rs` only: the time to build one sandbox (runtime, context, our
/// functions, hardening) and the time to drop it.
#[doc(hidden)]
pub fn measure_fresh_sandbox(limits: Limits) -> Result<(Duration, Duration), ScriptError> {
    let started = std::time::Instant::now();
    let sandbox = sandbox::Sandbox::new(limits)?;
    let built = started.elapsed();
    let started = std::time::Instant::now();
    drop(sandbox);
    Ok((built, started.elapsed()))
}

/// For `examples/bench_hook.rs` only: the time of each of `n` calls of `source`, `pause` apart,
/// made directly in one sandbox on this thread (no worker, so no thread hop, and no host),
/// replaced when a worker would have replaced it.
#[doc(hidden)]
pub fn measure_in_place(
    source: &str,
    event: &str,
    globals: &serde_json::Map<String, serde_json::Value>,
    n: usize,
    pause: Duration,
) -> Result<Vec<Duration>, ScriptError> {
    sandbox::measure_in_place(source, event, globals, n, pause)
}
