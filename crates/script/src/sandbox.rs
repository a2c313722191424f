//! One QuickJS runtime and context, hardened once and then reused for many calls: its limits,
//! the globals going in and coming out, and how a JavaScript failure becomes a [`ScriptError`]
//! or a [`Signal`].
//!
//! # Isolation between calls
//!
//! A sandbox serves up to [`MAX_CALLS`] calls, one at a time, and nothing one call does may be
//! observable in a later one. That rests on four things.
//!
//! **Built hardened** ([`Sandbox::new`], `harden.js`). `WeakRef` and `FinalizationRegistry` are
//! deleted (a callback or a dereference at a later collection would carry one call's data into
//! another), and so are `Error.prepareStackTrace` and `Error.stackTraceLimit` (accessors that keep
//! their value in the context, where freezing `Error` does not reach). Every object reachable from
//! the global object, through values, getters, setters and prototypes, or from the intrinsics only
//! instances lead to (generator, async and iterator prototypes, `%TypedArray%`,
//! `%ThrowTypeError%`...), is frozen; before that, each writable data property of a prototype
//! becomes an accessor whose setter defines an own property on the object assigned to, so that
//! `this.name = 'X'` in an `Error` subclass or `obj.toString = f` still work (SES's answer to the
//! "override mistake"). The global object's own properties move, made such accessors too, to a
//! frozen object that becomes its prototype: the global object keeps only `undefined`, `NaN` and
//! `Infinity`, and a call's globals. `Math.random`, `performance.now` and
//! `performance.timeOrigin` are ours, with no state a call could advance or read back.
//!
//! **A script's declarations are local to its call.** The source is compiled once per sandbox
//! and event as the body of an arrow function, `(() => {SOURCE\n;return typeof EVENT ===
//! 'function' ? EVENT : void 0;})`, frozen and kept ([`Wrappers`]); each call only invokes it, so
//! top-level `var`/`let`/`const`/`function`/`class` live in that call's scope. Line numbers are
//! kept (nothing precedes the source on its line) and so is sloppy mode: assigning an undeclared
//! name still sets a global (the call's own, deleted after it). The source cannot close the
//! arrow's brace and run outside it: it is first checked to parse as a script on its own, which
//! means its brackets balance. The check compiles `throw 0;SOURCE` in a throwaway context, so
//! nothing of the source runs there either; its verdict is kept per source text for the engine
//! ([`Verdicts`]).
//!
//! **Cleaned after the call**, within its CPU deadline: pending promise jobs run (after the top
//! level and after the event; async code completes as part of its call, and an `async` event's
//! settled value is its result), the call's globals are read back, and every own property of the
//! global object that was not there when the sandbox was built is deleted.
//!
//! **Discarded when in doubt.** The sandbox serves no further call if that call failed in any way
//! (a thrown error, a limit, an engine fault), a global could not be deleted, the global object
//! has another prototype or is no longer extensible, a promise job is still pending, its heap kept
//! more than [`RETAINED_MAX`] beyond its built size, or it has served [`MAX_CALLS`] calls. The
//! worker then builds a fresh one after answering (for a call run on its caller's thread, the
//! engine's builder thread does; see the `here` module). A call run on its caller's thread that
//! makes a host call is stopped there and counts as failed. A script that does not parse leaves
//! it as it was (nothing ran in it).
//!
//! What remains shared between calls is either frozen (the built-ins, the compiled arrow, the
//! template objects a compiled script holds) or not reachable from JavaScript (the compiled
//! functions' cache, the garbage a collection every [`GC_EVERY`] calls frees). Timing is not
//! isolated: a call can tell, by how long things take, whether its script was compiled already.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use rquickjs::context::{EvalOptions, intrinsic};
use rquickjs::object::Property;
use rquickjs::{Coerced, Context, Ctx, Function, Object, Runtime, Value};

use crate::host::{HostCall, HostReply, ToCaller};
use crate::{HookOutcome, Limits, ScriptError, Signal, bindings};

/// The JavaScript stack a script may use (QuickJS measures it on the worker's C stack).
const JS_STACK: usize = 1024 * 1024;
/// The file name scripts are compiled under; a compile error's stack is exactly `at NAME:L:C`.
const SCRIPT_NAME: &str = "connector-script";
/// Calls one sandbox serves before it is replaced, whatever happened.
pub(crate) const MAX_CALLS: u32 = 1024;
/// Compiled scripts one sandbox keeps, and the most source text they may add up to.
const WRAPPERS_MAX: usize = 32;
/// Four times [`crate::MAX_SCRIPT_BYTES`]: a script of the largest size is compiled once per
/// sandbox too, not on every call.
const WRAPPER_BYTES_MAX: usize = 4 * crate::MAX_SCRIPT_BYTES;
/// The most source text the parse verdicts an engine keeps may add up to.
const VERDICT_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Calls between two collections of the garbage calls leave (cycles only: everything else is
/// freed as soon as the call lets go of it). The collector also runs during a call whose heap
/// nears its limit.
const GC_EVERY: u32 = 64;
/// What a sandbox may keep beyond its size when built (its compiled scripts) before it is
/// replaced rather than reused.
const RETAINED_MAX: usize = 4 * 1024 * 1024;

/// A thrown `null` is taken for memory exhaustion when the heap came this close to the limit.
const OOM_MARGIN: usize = 256 * 1024;

/// Run once per sandbox: freezes what a script can reach, returns the per-call cleanup.
const HARDEN: &str = include_str!("harden.js");

/// `std::cell::Cell`'s interface over a lock: a sandbox moves between threads (it is built off the
/// request path and handed to the thread that uses it), so what its functions share must be
/// `Sync`. Never contended: one call runs in a sandbox at a time.
pub(crate) struct Cell<T>(parking_lot::Mutex<T>);

impl<T: Copy> Cell<T> {
    pub fn new(value: T) -> Self {
        Cell(parking_lot::Mutex::new(value))
    }

    pub fn get(&self) -> T {
        *self.0.lock()
    }

    pub fn set(&self, value: T) {
        *self.0.lock() = value;
    }
}

impl<T: Copy + Default> Cell<T> {
    pub fn take(&self) -> T {
        std::mem::take(&mut *self.0.lock())
    }
}

/// The worker's end of the channels to the caller's thread, for one call, and when that call's
/// wall-clock limit runs out. A call run on its caller's own thread ([`HostLink::here`]) has no
/// channels: its first host call stops it ([`Sandbox::moved`]) and its logs wait in the sandbox
/// ([`Sandbox::take_logs`]).
pub(crate) struct HostLink {
    channels: Option<(Sender<ToCaller>, Receiver<HostReply>)>,
    deadline: Instant,
}

impl HostLink {
    pub fn new(
        to_caller: Sender<ToCaller>,
        from_caller: Receiver<HostReply>,
        deadline: Instant,
    ) -> Self {
        HostLink { channels: Some((to_caller, from_caller)), deadline }
    }

    /// For a call on the caller's thread, which can not answer a host call while the script
    /// waits for it.
    pub fn here(deadline: Instant) -> Self {
        HostLink { channels: None, deadline }
    }
}

/// Shared by the runtime's interrupt handler and the functions installed in the context.
pub(crate) struct State {
    /// The CPU deadline on this thread's CPU clock ([`thread_cpu`]): the thread's CPU time at the
    /// call's start plus the call's CPU time, moved on by what compiling took. Waiting (for the
    /// host, for the machine's other work) costs no CPU time; the wall-clock limit bounds that.
    deadline: Cell<Option<Duration>>,
    /// The CPU deadline passed.
    interrupted: Cell<bool>,
    /// The wall-clock deadline (fixed when the call was submitted), its length, and whether it
    /// passed: then every host call fails and the interrupt handler stops the script.
    wall_deadline: Cell<Option<Instant>>,
    wall_time: Cell<Duration>,
    wall_exceeded: Cell<bool>,
    /// `http_request` calls this call may still make, of `http_limit`; one more sets
    /// `http_exceeded`, which stops the script as the wall-clock limit does.
    http_left: Cell<u32>,
    http_limit: Cell<u32>,
    http_exceeded: Cell<bool>,
    link: parking_lot::Mutex<Option<HostLink>>,
    /// A call with no channels to its caller made a host call: it was stopped, to be run again
    /// where the host can answer (see the `here` module).
    moved: Cell<bool>,
    /// `console.log` lines of a call with no channels, for its caller once it is over.
    logs: parking_lot::Mutex<Vec<String>>,
    /// `Math.random`: SipHash of a counter under a key no script sees, so values drawn in one call
    /// say nothing about those of another.
    random: RandomState,
    draws: Cell<u64>,
    /// `performance.now()` and `performance.timeOrigin` count from the start of the call.
    started: Cell<Instant>,
    started_unix_ms: Cell<f64>,
    /// Set when the garbage [`GcProbe`] is collected. During a call, the collector only runs once
    /// the heap is within [`OOM_MARGIN`] of the limit, so this says the call came that close even
    /// when what it allocated was freed before its exception reached us.
    gc_ran: Arc<Cell<bool>>,
}

/// The deadlines of a call while it compiles.
struct Paused {
    at: Duration,
    cpu: Option<Duration>,
    wall: Option<Instant>,
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`), the clock of the CPU limit: a
/// script on a busy machine is not charged for the time other threads ran.
fn thread_cpu() -> Duration {
    cpu_time::ThreadTime::try_now().map(|t| t.as_duration()).unwrap_or_else(|_| {
        // Not on this platform: elapsed time stands in, as it did before.
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    })
}

/// Dropped (and so `gc_ran` set) when QuickJS collects the cycle it is kept in.
struct GcProbe(Arc<Cell<bool>>);

impl Drop for GcProbe {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            deadline: Cell::new(None),
            interrupted: Cell::new(false),
            wall_deadline: Cell::new(None),
            wall_time: Cell::new(Duration::ZERO),
            wall_exceeded: Cell::new(false),
            http_left: Cell::new(0),
            http_limit: Cell::new(0),
            http_exceeded: Cell::new(false),
            link: parking_lot::Mutex::new(None),
            moved: Cell::new(false),
            logs: parking_lot::Mutex::new(Vec::new()),
            random: RandomState::new(),
            draws: Cell::new(0),
            started: Cell::new(Instant::now()),
            started_unix_ms: Cell::new(0.0),
            gc_ran: Arc::new(Cell::new(false)),
        }
    }
}

impl State {
    fn should_interrupt(&self) -> bool {
        if self.limit_error().is_some() {
            return true;
        }
        let now = Instant::now();
        if self.wall_deadline.get().is_some_and(|d| now >= d) {
            self.wall_exceeded.set(true);
            return true;
        }
        match self.deadline.get() {
            Some(deadline) if thread_cpu() >= deadline => {
                self.interrupted.set(true);
                true
            }
            _ => false,
        }
    }

    /// The wall-clock or `http_request` limit this call broke, if any. Checked before the CPU
    /// limit: a call stopped for either also looks interrupted.
    fn limit_error(&self) -> Option<ScriptError> {
        if self.moved.get() {
            Some(ScriptError::Internal("a host call needs the caller's thread".into()))
        } else if self.http_exceeded.get() {
            Some(ScriptError::HttpRequestLimit(self.http_limit.get()))
        } else if self.wall_exceeded.get() {
            Some(ScriptError::WallTimeLimit(self.wall_time.get()))
        } else {
            None
        }
    }

    fn begin(&self, link: Option<HostLink>, limits: Limits) {
        let now = Instant::now();
        self.wall_deadline.set(link.as_ref().map(|l| l.deadline));
        self.wall_time.set(limits.wall_time);
        self.wall_exceeded.set(false);
        self.http_left.set(limits.http_requests);
        self.http_limit.set(limits.http_requests);
        self.http_exceeded.set(false);
        *self.link.lock() = link;
        self.moved.set(false);
        self.logs.lock().clear();
        self.interrupted.set(false);
        self.started.set(now);
        let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.started_unix_ms.set(unix.as_secs_f64() * 1000.0);
        self.deadline.set(Some(thread_cpu() + limits.cpu_time));
    }

    fn end(&self) {
        self.deadline.set(None);
        self.wall_deadline.set(None);
        self.link.lock().take();
    }

    /// Stops the interrupt handler until [`State::resume`]; what it needs to resume.
    fn pause(&self) -> Paused {
        Paused { at: thread_cpu(), cpu: self.deadline.take(), wall: self.wall_deadline.take() }
    }

    /// Restores the deadlines, the CPU one moved on by the pause.
    fn resume(&self, paused: Paused) {
        let took = thread_cpu().saturating_sub(paused.at);
        self.deadline.set(paused.cpu.map(|d| d + took));
        self.wall_deadline.set(paused.wall);
    }

    fn out_of_time(&self) -> bool {
        self.interrupted.get() || self.should_interrupt()
    }

    /// Counts one `http_request` against the call's cap; `Err` (and the call fails) past it.
    pub fn count_http_request(&self) -> Result<(), String> {
        match self.http_left.get().checked_sub(1) {
            Some(left) => {
                self.http_left.set(left);
                Ok(())
            }
            None => {
                self.http_exceeded.set(true);
                Err(format!("more than {} calls in one hook", self.http_limit.get()))
            }
        }
    }

    fn heap_was_near_limit(&self) -> bool {
        self.gc_ran.get()
    }

    /// Leaves an unreachable cycle holding a [`GcProbe`] in the heap, for the next collection.
    fn arm_gc_probe(&self, ctx: &Ctx<'_>) -> rquickjs::Result<()> {
        self.gc_ran.set(false);
        let probe = GcProbe(Arc::clone(&self.gc_ran));
        let holder = Object::new(ctx.clone())?;
        holder.set("probe", Function::new(ctx.clone(), move || probe.0.get())?)?;
        holder.set("cycle", holder.clone())?;
        Ok(())
    }

    /// Asks the caller's thread, waiting no longer than the wall-clock deadline (the wait costs
    /// no CPU time). Once a limit is broken, every call fails at once.
    pub fn call(&self, call: HostCall) -> Result<HostReply, String> {
        if let Some(error) = self.limit_error() {
            return Err(error.to_string());
        }
        let link = self.link.lock();
        let link = link.as_ref().ok_or("no host is attached")?;
        let Some((to_caller, from_caller)) = &link.channels else {
            // Stops the script as a broken limit does (a `catch` does not keep it going).
            self.moved.set(true);
            return Err("this call moves to a worker thread".to_owned());
        };
        let started = Instant::now();
        to_caller.send(ToCaller::Call(call)).map_err(|_| "the host is gone".to_owned())?;
        let wait = link.deadline.saturating_duration_since(started);
        let reply = match from_caller.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                // The answer, if it ever comes, goes to this call's channel, dropped with it.
                self.wall_exceeded.set(true);
                return Err(ScriptError::WallTimeLimit(self.wall_time.get()).to_string());
            }
            Err(RecvTimeoutError::Disconnected) => return Err("the host is gone".to_owned()),
        };
        if Instant::now() >= link.deadline {
            // The host gave up at the deadline (or answered just after it).
            self.wall_exceeded.set(true);
            return Err(ScriptError::WallTimeLimit(self.wall_time.get()).to_string());
        }
        Ok(reply)
    }

    pub fn log(&self, message: String) {
        match self.link.lock().as_ref().map(|link| &link.channels) {
            Some(Some((to_caller, _))) => {
                let _ = to_caller.send(ToCaller::Log(message));
            }
            Some(None) => self.logs.lock().push(message),
            None => {}
        }
    }

    /// `Math.random()`: uniform in [0, 1).
    pub fn random(&self) -> f64 {
        let draw = self.draws.get();
        self.draws.set(draw.wrapping_add(1));
        let bits = self.random.hash_one(draw) >> 11;
        // 53 random bits over 2^53.
        bits as f64 / (1u64 << 53) as f64
    }

    /// `performance.now()`: milliseconds since the call started.
    pub fn now_ms(&self) -> f64 {
        self.started.get().elapsed().as_secs_f64() * 1000.0
    }

    /// `performance.timeOrigin`: when the call started, in milliseconds since the Unix epoch.
    pub fn time_origin_ms(&self) -> f64 {
        self.started_unix_ms.get()
    }
}

/// Which sources parse as a script on their own (the guarantee that a source can not escape the
/// function it is compiled in), shared by the workers of an engine. Keyed by the whole source
/// text, weighed by its length (at most [`VERDICT_BYTES_MAX`] in all, least recently used
/// evicted first); only `Ok` and syntax errors are kept.
/// Cheap to clone: clones share their entries.
#[derive(Debug, Clone)]
pub(crate) struct Verdicts(moka::sync::Cache<String, Result<(), ScriptError>>);

impl Default for Verdicts {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(VERDICT_BYTES_MAX as u64)
                .weigher(|source: &String, _| u32::try_from(source.len()).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl Verdicts {
    fn get(&self, source: &str) -> Option<Result<(), ScriptError>> {
        self.0.get(source)
    }

    fn put(&self, source: &str, verdict: &Result<(), ScriptError>) {
        if !matches!(verdict, Ok(()) | Err(ScriptError::Syntax { .. })) {
            return;
        }
        if source.len() > VERDICT_BYTES_MAX / 4 {
            return;
        }
        self.0.insert(source.to_owned(), verdict.clone());
    }
}

/// A function kept for later calls, held in the runtime's user data (a `Vec` in which this is
/// an index) rather than as an `rquickjs::Persistent`, which can not move to another thread:
/// with the runtime holding them, a whole sandbox can (see the `here` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held(usize);

/// The runtime's user data behind [`Held`]: freed slots are `None`.
type Stash<'js> = std::cell::RefCell<Vec<Option<Function<'js>>>>;

impl Held {
    fn save<'js>(ctx: &Ctx<'js>, function: Function<'js>) -> rquickjs::Result<Held> {
        if ctx.userdata::<Stash<'js>>().is_none() {
            ctx.store_userdata::<Stash<'js>>(std::cell::RefCell::new(Vec::new())).map_err(|e| {
                rquickjs::Error::new_from_js_message("stash", "userdata", e.to_string())
            })?;
        }
        let stash = ctx
            .userdata::<Stash<'js>>()
            .ok_or_else(|| rquickjs::Error::new_from_js("stash", "userdata"))?;
        let mut slots = stash.borrow_mut();
        let at = match slots.iter().position(Option::is_none) {
            Some(at) => {
                slots[at] = Some(function);
                at
            }
            None => {
                slots.push(Some(function));
                slots.len() - 1
            }
        };
        Ok(Held(at))
    }

    fn restore<'js>(self, ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
        ctx.userdata::<Stash<'js>>()
            .and_then(|stash| stash.borrow().get(self.0).cloned().flatten())
            .ok_or_else(|| rquickjs::Error::new_from_js("stash", "function"))
    }

    fn release(self, ctx: &Ctx<'_>) {
        if let Some(stash) = ctx.userdata::<Stash<'_>>()
            && let Some(slot) = stash.borrow_mut().get_mut(self.0)
        {
            *slot = None;
        }
    }
}

/// A script compiled in a sandbox for one event: the frozen arrow function.
struct Wrapper {
    event: String,
    function: Held,
    used: u64,
}

/// The scripts a sandbox has compiled, least recently used evicted first. Hand-written rather
/// than a `moka` cache: its values are QuickJS handles bound to the sandbox's thread (not
/// `Send`), and it is bounded by count and by source bytes together.
#[derive(Default)]
struct Wrappers {
    by_source: HashMap<String, Vec<Wrapper>>,
    count: usize,
    bytes: usize,
    clock: u64,
}

impl Wrappers {
    fn get(&mut self, source: &str, event: &str) -> Option<Held> {
        self.clock += 1;
        let wrapper = self.by_source.get_mut(source)?.iter_mut().find(|w| w.event == event)?;
        wrapper.used = self.clock;
        Some(wrapper.function)
    }

    /// Keeps `function`; gives back the functions evicted to make room, for the caller to
    /// release (or `function` itself, when its source is too large to keep).
    fn put(&mut self, source: &str, event: &str, function: Held) -> Vec<Held> {
        if source.len() > WRAPPER_BYTES_MAX / 4 {
            return vec![function]; // compiled again on each call rather than crowding out every other script
        }
        let mut evicted = Vec::new();
        while self.count >= WRAPPERS_MAX || self.bytes + source.len() > WRAPPER_BYTES_MAX {
            match self.evict_oldest() {
                Some(held) => evicted.push(held),
                None => break,
            }
        }
        self.clock += 1;
        let used = self.clock;
        let list = self.by_source.entry(source.to_owned()).or_insert_with(|| {
            self.bytes += source.len();
            Vec::new()
        });
        list.push(Wrapper { event: event.to_owned(), function, used });
        self.count += 1;
        evicted
    }

    fn evict_oldest(&mut self) -> Option<Held> {
        let oldest = self
            .by_source
            .iter()
            .flat_map(|(source, list)| list.iter().map(move |w| (w.used, source)))
            .min_by_key(|(used, _)| *used)
            .map(|(used, source)| (used, source.clone()));
        let (used, source) = oldest?;
        let list = self.by_source.get_mut(&source)?;
        let at = list.iter().position(|w| w.used == used)?;
        let evicted = list.remove(at).function;
        self.count -= 1;
        if list.is_empty() {
            self.by_source.remove(&source);
            self.bytes -= source.len();
        }
        Some(evicted)
    }

    /// The most recently used (source, event) pairs, newest first.
    fn recent(&self, n: usize) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .by_source
            .iter()
            .flat_map(|(source, list)| list.iter().map(move |w| (w.used, source, &w.event)))
            .collect();
        all.sort_by_key(|w| std::cmp::Reverse(w.0));
        all.into_iter().take(n).map(|(_, s, e)| (s.clone(), e.clone())).collect()
    }
}

/// A hardened runtime and context with the script functions installed, reused for calls until
/// something makes it doubtful (see the module documentation).
pub(crate) struct Sandbox {
    // Fields drop in order: the values held for the context, the context, then its runtime.
    wrappers: Wrappers,
    cleanup: Held,
    /// Makes a header object case-insensitive (`headers.js`).
    header_view: Held,
    context: Context,
    runtime: Runtime,
    state: Arc<State>,
    calls: u32,
    calls_since_gc: u32,
    /// Heap size once built, and after the last periodic collection.
    built_bytes: usize,
    collected_bytes: usize,
}

impl Sandbox {
    pub fn new(max: Limits) -> Result<Self, ScriptError> {
        let runtime = Runtime::new().map_err(internal)?;
        runtime.set_max_stack_size(JS_STACK);
        runtime.set_memory_limit(max.memory_bytes);
        let state = Arc::new(State::default());
        let handler_state = Arc::clone(&state);
        runtime.set_interrupt_handler(Some(Box::new(move || handler_state.should_interrupt())));
        let context = Context::full(&runtime).map_err(internal)?;
        let built = context.with(|ctx| -> rquickjs::Result<_> {
            let header_view = bindings::install(&ctx, &state)?;
            let mut options = EvalOptions::default();
            options.global = true;
            options.strict = false;
            let cleanup: Function = ctx.eval_with_options(HARDEN, options)?;
            Ok((Held::save(&ctx, cleanup)?, Held::save(&ctx, header_view)?))
        });
        let (cleanup, header_view) =
            built.map_err(|e| internal(format!("hardening the sandbox: {e}")))?;
        runtime.run_gc();
        context.with(|ctx| state.arm_gc_probe(&ctx)).map_err(internal)?;
        let built_bytes = heap_bytes(&runtime);
        Ok(Sandbox {
            wrappers: Wrappers::default(),
            cleanup,
            header_view,
            context,
            runtime,
            state,
            calls: 0,
            calls_since_gc: 0,
            built_bytes,
            collected_bytes: built_bytes,
        })
    }

    /// Runs one call. The `bool` says whether this sandbox may serve another call.
    pub fn run(
        &mut self,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        limits: Limits,
        link: HostLink,
        verdicts: &Verdicts,
    ) -> (Result<HookOutcome, ScriptError>, bool) {
        if !is_identifier(event) {
            return (Err(ScriptError::Internal(format!("invalid event name {event:?}"))), true);
        }
        self.calls += 1;
        self.calls_since_gc += 1;
        self.runtime.set_memory_limit(limits.memory_bytes);
        // No collection during the call unless the heap nears its limit (see `State::gc_ran`).
        self.runtime.set_gc_threshold(limits.memory_bytes.saturating_sub(OOM_MARGIN));
        self.state.begin(Some(link), limits);
        let wrapper = match self.wrappers.get(source, event) {
            Some(wrapper) => Ok(wrapper),
            None => self.compile(source, event, verdicts),
        };
        let (result, clean) = match wrapper {
            Ok(wrapper) => {
                let state = &self.state;
                let cleanup = &self.cleanup;
                let header_view = &self.header_view;
                let (result, clean) = self.context.with(|ctx| {
                    let result = execute(&ctx, state, &wrapper, header_view, globals);
                    // Only a call that went through leaves a sandbox worth keeping.
                    let clean = result.is_ok() && run_cleanup(&ctx, cleanup);
                    (result, clean)
                });
                (result.map_err(|failure| self.settle(failure)), clean)
            }
            // Nothing ran in this context: a script that does not parse leaves it as it was.
            Err((error, untouched)) => (Err(error), untouched),
        };
        // A script that caught the exception of a broken limit still fails.
        let (result, clean) = match self.state.limit_error() {
            Some(error) => (Err(error), false),
            None => (result, clean),
        };
        self.state.end();
        let reusable = clean && !self.runtime.is_job_pending() && self.calls < MAX_CALLS;
        (result, reusable)
    }

    /// Whether the last call, run with [`HostLink::here`], was stopped at a host call. It then
    /// failed, and the sandbox is not reusable.
    pub fn moved(&self) -> bool {
        self.state.moved.get()
    }

    /// The `console.log` lines of the last call run with [`HostLink::here`].
    pub fn take_logs(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.logs.lock())
    }

    /// Whether [`Sandbox::tidy`] has nothing slow to do after this call.
    pub fn tidy_is_quick(&self) -> bool {
        self.calls_since_gc < GC_EVERY
    }

    /// After a call it kept the sandbox for: collects cyclic garbage every [`GC_EVERY`] calls (off
    /// the hot path, after the caller has its answer), and says whether the sandbox is still
    /// worth keeping.
    pub fn tidy(&mut self, max: Limits) -> bool {
        self.tidy_collecting(max, true)
    }

    /// [`Sandbox::tidy`] without the collection, even when one is due (it then comes with a
    /// later call's tidying).
    pub fn tidy_without_collecting(&mut self, max: Limits) -> bool {
        self.tidy_collecting(max, false)
    }

    fn tidy_collecting(&mut self, max: Limits, collect: bool) -> bool {
        self.runtime.set_memory_limit(max.memory_bytes);
        // Measuring the heap walks all of it (as long as a small call), so it is done only with a
        // collection, every few calls.
        if collect && self.calls_since_gc >= GC_EVERY {
            self.calls_since_gc = 0;
            self.runtime.run_gc();
            self.collected_bytes = heap_bytes(&self.runtime);
        }
        if self.state.gc_ran.get() {
            let state = &self.state;
            if self.context.with(|ctx| state.arm_gc_probe(&ctx)).is_err() {
                return false;
            }
        }
        self.collected_bytes <= self.built_bytes + RETAINED_MAX
    }

    /// Compiles, off the hot path, scripts a sandbox this one replaces had compiled.
    pub fn warm(&mut self, scripts: &[(String, String)], verdicts: &Verdicts) {
        for (source, event) in scripts {
            // Only sources already known to parse: no check is paid here for another.
            if is_identifier(event) && matches!(verdicts.get(source), Some(Ok(()))) {
                let _ = self.compile(source, event, verdicts);
            }
        }
    }

    /// What [`Sandbox::warm`] would want from this sandbox.
    pub fn recent(&self, n: usize) -> Vec<(String, String)> {
        self.wrappers.recent(n)
    }

    /// Checks (or recalls) that `source` parses on its own, then compiles its wrapper here. On
    /// failure, also says whether this context is untouched.
    ///
    /// Compiling is not interrupted, whatever the deadlines: an interrupted parse would read as a
    /// syntax error (and be remembered as one). Its time, bounded by [`crate::MAX_SCRIPT_BYTES`],
    /// is added back to the CPU deadline; the wall-clock deadline stays where it was.
    fn compile(
        &mut self,
        source: &str,
        event: &str,
        verdicts: &Verdicts,
    ) -> Result<Held, (ScriptError, bool)> {
        let paused = self.state.pause();
        let compiled = self.compile_uninterrupted(source, event, verdicts);
        self.state.resume(paused);
        compiled
    }

    fn compile_uninterrupted(
        &mut self,
        source: &str,
        event: &str,
        verdicts: &Verdicts,
    ) -> Result<Held, (ScriptError, bool)> {
        let verdict = match verdicts.get(source) {
            Some(verdict) => verdict,
            None => {
                let verdict = parses_alone(&self.runtime, source);
                verdicts.put(source, &verdict);
                verdict
            }
        };
        // A failed check ran in a context of its own.
        verdict.map_err(|error| (error, true))?;
        let code = format!(
            "(() => {{{source}\n;return typeof {event} === 'function' ? {event} : void 0;}})"
        );
        let state = &self.state;
        let compiled = self.context.with(|ctx| {
            let mut options = EvalOptions::default();
            options.global = true;
            options.strict = false;
            options.filename = Some(SCRIPT_NAME.into());
            let wrapper = ctx
                .eval_with_options::<Function, _>(code, options)
                .and_then(|f| freeze(&ctx, f.clone().into_value()).map(|()| f));
            match wrapper {
                Ok(function) => Held::save(&ctx, function).map_err(|e| fail(&ctx, state, e)),
                Err(error) => Err(fail(&ctx, state, error)),
            }
        });
        match compiled {
            Ok(function) => {
                let evicted = self.wrappers.put(source, event, function);
                self.context.with(|ctx| evicted.into_iter().for_each(|held| held.release(&ctx)));
                Ok(function)
            }
            Err(failure) => {
                let error = self.settle(failure);
                // The source parses alone, so only its wrapper's compilation can have failed:
                // a syntax error (a 'use strict' directive the check did not apply) leaves the
                // context as it was; anything else (memory) does not say.
                let untouched = matches!(error, ScriptError::Syntax { .. });
                Err((error, untouched))
            }
        }
    }

    fn settle(&self, failure: Failure) -> ScriptError {
        match failure {
            Failure::Error(error) => error,
            Failure::NullThrown => {
                // QuickJS throws `null` when it cannot even allocate the "out of memory" error.
                let usage = self.runtime.memory_usage();
                let limit = usize::try_from(usage.malloc_limit).unwrap_or(usize::MAX);
                let used = usize::try_from(usage.malloc_size).unwrap_or(0);
                if used.saturating_add(OOM_MARGIN) >= limit || self.state.heap_was_near_limit() {
                    ScriptError::MemoryLimit
                } else {
                    ScriptError::Thrown("null".into())
                }
            }
        }
    }
}

/// For `examples/bench_hook.rs` only: runs `source` `n` times in one sandbox on this thread (no
/// worker, no host), `pause` apart, returning each call's time.
pub(crate) fn measure_in_place(
    source: &str,
    event: &str,
    globals: &serde_json::Map<String, serde_json::Value>,
    n: usize,
    pause: Duration,
) -> Result<Vec<Duration>, ScriptError> {
    let limits = Limits::default();
    let verdicts = Verdicts::default();
    let mut sandbox = Sandbox::new(limits)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let (to_caller, _from_worker) = std::sync::mpsc::channel();
        let (_to_worker, from_caller) = std::sync::mpsc::channel();
        let link = HostLink::new(to_caller, from_caller, Instant::now() + limits.wall_time);
        let started = Instant::now();
        let (result, reusable) =
            sandbox.run(source, event, globals.clone(), limits, link, &verdicts);
        times.push(started.elapsed());
        result?;
        if !reusable || !sandbox.tidy(limits) {
            sandbox = Sandbox::new(limits)?;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(times)
}

/// Checks that `source` parses, without running it (for connector validation): as a script on
/// its own, and as the body of the function a call compiles it in.
pub(crate) fn check(source: &str, limits: Limits) -> Result<(), ScriptError> {
    let runtime = Runtime::new().map_err(internal)?;
    runtime.set_max_stack_size(JS_STACK);
    runtime.set_memory_limit(limits.memory_bytes);
    parses_alone(&runtime, source)?;
    compiles(&runtime, &format!("throw 0;(() => {{{source}\n}})"))
}

/// Whether `source` parses as a script on its own: then its brackets are balanced and it can not
/// close the function a call wraps it in. Compiled in a throwaway context of `runtime`, behind a
/// `throw 0;` on its first line, so nothing of it runs (global declarations are instantiated in
/// that context only) and its line numbers stay as they are.
fn parses_alone(runtime: &Runtime, source: &str) -> Result<(), ScriptError> {
    compiles(runtime, &format!("throw 0;{source}"))
}

/// Evaluates `code`, which starts with `throw 0;`, in a context of its own: `Ok` if that `0` is
/// what comes out, the syntax error otherwise.
fn compiles(runtime: &Runtime, code: &str) -> Result<(), ScriptError> {
    let context = Context::custom::<(intrinsic::Eval, intrinsic::RegExpCompiler)>(runtime)
        .map_err(|_| ScriptError::MemoryLimit)?;
    context.with(|ctx| {
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(SCRIPT_NAME.into());
        let error = match ctx.eval_with_options::<(), _>(code, options) {
            Ok(()) => return Err(ScriptError::Internal("the parse check ran to its end".into())),
            Err(error) => error,
        };
        let thrown = match error {
            rquickjs::Error::Exception => ctx.catch(),
            rquickjs::Error::Allocation => return Err(ScriptError::MemoryLimit),
            // A NUL character, which QuickJS can not be given.
            other => return Err(ScriptError::Syntax { line: 1, message: other.to_string() }),
        };
        if thrown.as_int() == Some(0) {
            return Ok(());
        }
        let Some(object) = thrown.as_object() else {
            return Err(ScriptError::MemoryLimit); // `null`: no memory left for the error
        };
        let name = string_property(object, "name");
        let message = string_property(object, "message").unwrap_or_default();
        let stack = string_property(object, "stack").unwrap_or_default();
        match (name.as_deref(), message.as_str()) {
            (Some("InternalError"), "out of memory" | "string too long") => {
                Err(ScriptError::MemoryLimit)
            }
            (Some("RangeError"), "Maximum call stack size exceeded") => {
                Err(ScriptError::StackOverflow)
            }
            // Not a verdict on the source (and so never remembered as one).
            (Some("InternalError"), "interrupted") => Err(ScriptError::CpuLimit),
            _ => {
                let line = compile_error_line(&stack, SCRIPT_NAME).unwrap_or(1);
                Err(ScriptError::Syntax { line, message })
            }
        }
    })
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn heap_bytes(runtime: &Runtime) -> usize {
    usize::try_from(runtime.memory_usage().malloc_size).unwrap_or(usize::MAX)
}

fn freeze<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<()> {
    let object: Object = ctx.globals().get("Object")?;
    let freeze: Function = object.get("freeze")?;
    freeze.call::<_, Value>((value,))?;
    Ok(())
}

/// Deletes the call's globals; `false` if the global object is not as it was built.
fn run_cleanup(ctx: &Ctx<'_>, cleanup: &Held) -> bool {
    let Ok(cleanup) = cleanup.restore(ctx) else { return false };
    match cleanup.call::<_, bool>(()) {
        Ok(clean) => clean,
        Err(_) => {
            ctx.catch();
            false
        }
    }
}

/// How a call failed before it was classified.
enum Failure {
    Error(ScriptError),
    /// `null` was thrown: either the script did, or memory ran out (decided outside the context).
    NullThrown,
}

/// The globals that hold headers: their names read and write case-insensitively.
const HEADER_GLOBALS: [&str; 2] = ["method_request_headers", "method_response_headers"];

fn execute<'js>(
    ctx: &Ctx<'js>,
    state: &State,
    wrapper: &Held,
    header_view: &Held,
    globals: serde_json::Map<String, serde_json::Value>,
) -> Result<HookOutcome, Failure> {
    let global = ctx.globals();
    let header_view = header_view.restore(ctx).map_err(|e| Failure::Error(internal(e)))?;
    for (name, value) in &globals {
        let json = serde_json::to_string(value).map_err(|e| Failure::Error(internal(e)))?;
        let mut value = ctx.json_parse(json).map_err(|e| fail(ctx, state, e))?;
        if HEADER_GLOBALS.contains(&name.as_str()) {
            value = header_view.call((value,)).map_err(|e| fail(ctx, state, e))?;
        }
        // Defined, not assigned: the global object's prototype holds the built-ins, frozen.
        let property = Property::from(value).writable().enumerable().configurable();
        global.prop(name.as_str(), property).map_err(|e| fail(ctx, state, e))?;
    }
    let wrapper = wrapper.restore(ctx).map_err(|e| Failure::Error(internal(e)))?;

    let mut outcome = HookOutcome {
        defined: false,
        aborted: false,
        globals: serde_json::Map::new(),
        signal: None,
    };
    // The top level, then its promise jobs, then the event's function, then its jobs.
    let result = wrapper.call::<_, Value>(()).and_then(|function| {
        run_jobs(ctx, state)?;
        let returned = match function.as_function() {
            Some(function) => {
                outcome.defined = true;
                function.call::<_, Value>(())?
            }
            None => Value::new_undefined(ctx.clone()),
        };
        run_jobs(ctx, state)?;
        settled(ctx, returned)
    });
    match result {
        Ok(returned) => outcome.aborted = returned.as_bool() == Some(false),
        Err(error) => match classify(ctx, state, error) {
            Ok(signal) => outcome.signal = Some(signal),
            Err(failure) => return Err(failure),
        },
    }
    if !outcome.defined && outcome.signal.is_none() {
        outcome.globals = globals;
        return Ok(outcome);
    }

    for name in globals.keys() {
        let value: Value = global.get(name.as_str()).map_err(|e| fail(ctx, state, e))?;
        let json = ctx.json_stringify(value).map_err(|e| fail(ctx, state, e))?;
        let value = match json {
            Some(text) => {
                let text = text.to_string().map_err(|e| fail(ctx, state, e))?;
                serde_json::from_str(&text).map_err(|e| Failure::Error(internal(e)))?
            }
            None => serde_json::Value::Null,
        };
        outcome.globals.insert(name.clone(), value);
    }
    check_header_values(&outcome.globals).map_err(Failure::Error)?;
    Ok(outcome)
}

/// Runs the pending promise jobs, within the call's deadline.
fn run_jobs(ctx: &Ctx<'_>, state: &State) -> rquickjs::Result<()> {
    while ctx.execute_pending_job() {
        if state.out_of_time() {
            state.interrupted.set(true);
            return Err(rquickjs::Error::Exception);
        }
    }
    Ok(())
}

/// What an event function gave back: a settled promise (an `async function`) counts as its value
/// or, rejected, as thrown; anything else as it is.
fn settled<'js>(ctx: &Ctx<'js>, returned: Value<'js>) -> rquickjs::Result<Value<'js>> {
    let Some(promise) = returned.as_promise() else { return Ok(returned) };
    match promise.result::<Value>() {
        None => Ok(Value::new_undefined(ctx.clone())),
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(error),
    }
}

/// Header values a script set must not smuggle extra header lines into the request.
fn check_header_values(
    globals: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ScriptError> {
    let Some(serde_json::Value::Object(headers)) = globals.get("method_request_headers") else {
        return Ok(());
    };
    for (name, value) in headers {
        let has_break = match value {
            serde_json::Value::String(text) => text.contains(['\r', '\n']),
            _ => false,
        };
        if has_break || name.contains(['\r', '\n']) {
            return Err(ScriptError::Thrown(format!(
                "header {} contains a line break",
                name.escape_debug()
            )));
        }
    }
    Ok(())
}

fn fail(ctx: &Ctx<'_>, state: &State, error: rquickjs::Error) -> Failure {
    match classify(ctx, state, error) {
        Ok(_) => Failure::Error(ScriptError::Internal(
            "an exception class was thrown outside the script".into(),
        )),
        Err(failure) => failure,
    }
}

/// Turns what the script threw into a signal or an error.
fn classify(ctx: &Ctx<'_>, state: &State, error: rquickjs::Error) -> Result<Signal, Failure> {
    if let Some(error) = state.limit_error() {
        return Err(Failure::Error(error));
    }
    if state.interrupted.get() {
        return Err(Failure::Error(ScriptError::CpuLimit));
    }
    let thrown = match error {
        rquickjs::Error::Exception => ctx.catch(),
        rquickjs::Error::Allocation => return Err(Failure::Error(ScriptError::MemoryLimit)),
        other => return Err(Failure::Error(ScriptError::Thrown(other.to_string()))),
    };
    if thrown.is_null() {
        return Err(Failure::NullThrown);
    }
    if let Some(text) = thrown.as_string() {
        let text = text.to_string().unwrap_or_default();
        return Err(Failure::Error(ScriptError::Thrown(text)));
    }
    let Some(object) = thrown.as_object() else {
        let text = thrown
            .get::<Coerced<String>>()
            .map(|c| c.0)
            .unwrap_or_else(|_| "a value that is not an error".into());
        return Err(Failure::Error(ScriptError::Thrown(text)));
    };
    let name = string_property(object, "name");
    let message = string_property(object, "message");
    // Reading `name` may have run a script getter that the deadline stopped.
    if let Some(error) = state.limit_error() {
        return Err(Failure::Error(error));
    }
    if state.interrupted.get() {
        return Err(Failure::Error(ScriptError::CpuLimit));
    }
    let error = match (name.as_deref(), message.as_deref()) {
        (Some("AuthRefreshException"), _) => return Ok(Signal::AuthRefresh),
        (Some("AuthSessionException"), _) => return Ok(Signal::AuthSession),
        (Some("InternalError"), Some("out of memory" | "string too long")) => {
            ScriptError::MemoryLimit
        }
        (Some("RangeError"), Some("Maximum call stack size exceeded")) => {
            ScriptError::StackOverflow
        }
        (Some("SyntaxError"), Some(message)) => {
            let stack = string_property(object, "stack").unwrap_or_default();
            match compile_error_line(&stack, SCRIPT_NAME) {
                Some(line) => ScriptError::Syntax { line, message: message.to_owned() },
                None => ScriptError::Thrown(message.to_owned()),
            }
        }
        (_, Some(message)) => ScriptError::Thrown(message.to_owned()),
        (_, None) => ScriptError::Thrown(
            ctx.json_stringify(thrown.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| "an object that is not an error".into()),
        ),
    };
    Err(Failure::Error(error))
}

fn string_property(object: &Object<'_>, key: &str) -> Option<String> {
    object.get::<_, Option<String>>(key).ok().flatten()
}

/// A compile error's stack is the single frame `at FILE:LINE:COL`; a runtime one names a function.
fn compile_error_line(stack: &str, file: &str) -> Option<u32> {
    let first = stack.lines().next()?.trim();
    let rest = first.strip_prefix("at ")?.strip_prefix(file)?.strip_prefix(':')?;
    rest.split(':').next()?.parse().ok()
}

fn internal(error: impl std::fmt::Display) -> ScriptError {
    ScriptError::Internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_stay_within_their_byte_bound() {
        let verdicts = Verdicts::default();
        let chunk = VERDICT_BYTES_MAX / 8;
        for i in 0..32 {
            let source = format!("{i:04}{}", " ".repeat(chunk));
            verdicts.put(&source, &Ok(()));
        }
        verdicts.0.run_pending_tasks();
        assert!(verdicts.0.weighted_size() <= VERDICT_BYTES_MAX as u64);
        assert!(verdicts.0.entry_count() <= 8);
        let too_large = " ".repeat(VERDICT_BYTES_MAX / 4 + 1);
        verdicts.put(&too_large, &Ok(()));
        assert!(verdicts.get(&too_large).is_none(), "a source past a quarter is not kept");
    }

    /// The CPU limit's clock does not run while the thread waits (for the host, or for a core).
    #[test]
    fn the_cpu_clock_stands_still_while_the_thread_sleeps() {
        let before = thread_cpu();
        std::thread::sleep(Duration::from_millis(200));
        assert!(thread_cpu() - before < Duration::from_millis(100));
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(thread_cpu() > before);
    }
}
