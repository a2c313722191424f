//! Hook calls run on their caller's own thread ([`crate::ScriptEngine::run_here`]), sparing the
//! two thread hand-offs of the worker path (the job to a worker, the answer back), which cost
//! most of a small hook's time.
//!
//! Each thread keeps, per engine, one sandbox in a thread-local slot, taken out for a call and
//! put back after it. Sandboxes are never built on the caller's thread (building one takes
//! milliseconds): they come from a small stock that the engine's builder thread fills, and a
//! call that finds neither a sandbox in its slot nor one in the stock is not run here (its
//! caller takes the worker path) and asks the builder for more. A sandbox can move between
//! threads because rquickjs is built with `parallel` (its runtime sits behind a lock) and
//! `Context::with` moves QuickJS's stack limit to the thread it runs on; the CPU limit's clock
//! is read on the thread running the call.
//!
//! Isolation is the [`crate::sandbox`] module's, unchanged: the same [`Sandbox::run`], with the
//! same limits and the same rules for keeping or replacing a sandbox. One that served a failed or
//! dirty call, or its 1,024th, goes to the builder to be dropped and replaced (with the scripts
//! it used last compiled in its replacement); one due a garbage collection goes to the builder to
//! be collected and put back in the stock, and the thread takes a spare from the stock in its
//! place (so a collection costs no build). Neither happens on the caller's thread.
//!
//! Which calls are not run here:
//! - A script that calls the host (`http_request`, `cyclr_storage_*`). Its caller is usually an
//!   async runtime's thread: waiting there on the host would stall the runtime for up to the
//!   wall-clock limit, and `block_in_place`, which avoids that, hands the runtime's core to
//!   another thread — the very hop this path is meant to spare. So the first host call stops the
//!   call, as a broken limit does (a `catch` does not keep it going); the call had no effect
//!   outside its sandbox (its `console.log` lines are dropped, the sandbox is replaced), and the
//!   caller runs it again on the worker path, where the host answers. The source is remembered:
//!   its later calls go to the worker path at once. The usual `before_action`, which sets a
//!   header, calls no host function and stays here.
//! - A script that ran out of CPU or wall-clock time here: a runaway loop holds its caller's
//!   thread for its CPU limit once; its source then goes to the worker path too.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use parking_lot::Mutex;

use crate::sandbox::{HostLink, Sandbox, Verdicts};
use crate::worker::{WARM_SCRIPTS, redact};
use crate::{HookOutcome, Limits, ScriptError, ScriptHost};

/// The most source text the remembered sources may add up to (least recently used forgotten).
const ELSEWHERE_BYTES_MAX: u64 = 2 * 1024 * 1024;

// A sandbox is built on the builder thread and used on its callers'.
const _: fn() = || {
    fn must_be_send<T: Send>() {}
    must_be_send::<Sandbox>();
};

thread_local! {
    /// This thread's sandbox for each engine it ran calls for; entries of a dropped engine go
    /// when the thread next takes a sandbox.
    static SLOTS: RefCell<Vec<(Weak<Stock>, Sandbox)>> = const { RefCell::new(Vec::new()) };
    static CALLS_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many calls [`Here::run`] ran on the calling thread (for tests that check the path).
pub(crate) fn calls_on_this_thread() -> u64 {
    CALLS_HERE.with(std::cell::Cell::get)
}

/// Ready sandboxes, and what the builder needs to make more.
struct Stock {
    sandboxes: Mutex<Vec<Sandbox>>,
    /// How many the builder keeps ready.
    target: usize,
    /// A [`Chore::Fill`] was sent and the builder has not started on it: callers that find the
    /// stock short meanwhile need not wake it again.
    fill_asked: AtomicBool,
    /// Sandboxes the builder has built (for tests).
    built: AtomicU64,
    limits: Limits,
    verdicts: Verdicts,
}

impl Stock {
    fn take(&self) -> Option<Sandbox> {
        self.sandboxes.lock().pop()
    }

    /// Keeps a new `sandbox` unless the stock is full (then it is dropped, on the builder's
    /// thread).
    fn put(&self, sandbox: Sandbox) -> Option<Sandbox> {
        let mut sandboxes = self.sandboxes.lock();
        if sandboxes.len() >= self.target {
            return Some(sandbox);
        }
        sandboxes.push(sandbox);
        None
    }

    /// Keeps a sandbox back from its collection, full or not: the thread that sent it took a
    /// spare in its place, so it stands for that one (the stock is over its target only while a
    /// fill raced with the collection, by one per such thread at most).
    fn return_collected(&self, sandbox: Sandbox) {
        self.sandboxes.lock().push(sandbox);
    }

    fn short(&self) -> bool {
        self.sandboxes.lock().len() < self.target
    }
}

/// Work for the builder thread.
enum Chore {
    /// Build sandboxes until the stock is full.
    Fill,
    /// Collect the sandbox's garbage and put it back in the stock, or replace it.
    Tidy(Sandbox),
    /// Drop the sandbox; its replacement compiles the scripts it used last.
    Replace(Sandbox),
}

/// The engine's side of the calls run on their callers' threads.
pub(crate) struct Here {
    stock: Arc<Stock>,
    /// Started by the first call or [`Here::prepare`]; the builder ends when this is dropped.
    builder: OnceLock<Option<Sender<Chore>>>,
    /// Sources that made a host call or ran out of time here: they go to the worker path.
    elsewhere: moka::sync::Cache<String, ()>,
    /// Calls run here, and sandboxes they took from the stock (for tests).
    calls: AtomicU64,
    taken: AtomicU64,
}

impl std::fmt::Debug for Here {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Here")
            .field("target", &self.stock.target)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish()
    }
}

impl Here {
    pub fn new(limits: Limits, verdicts: Verdicts) -> Here {
        // One for each core's thread, which keeps it, and as many again for the sandboxes being
        // collected or replaced meanwhile.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stock = Stock {
            sandboxes: Mutex::new(Vec::new()),
            target: (2 * cores).clamp(4, 16),
            fill_asked: AtomicBool::new(false),
            built: AtomicU64::new(0),
            limits,
            verdicts,
        };
        Here {
            stock: Arc::new(stock),
            builder: OnceLock::new(),
            elsewhere: moka::sync::Cache::builder()
                .max_capacity(ELSEWHERE_BYTES_MAX)
                .weigher(|source: &String, _| u32::try_from(source.len()).unwrap_or(u32::MAX))
                .build(),
            calls: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// Starts the builder, so that the first calls find sandboxes ready.
    pub fn prepare(&self) {
        self.send(Chore::Fill);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    pub fn built(&self) -> u64 {
        self.stock.built.load(Ordering::Relaxed)
    }

    /// Runs the call on this thread, or `None` when it is not run here (see the module
    /// documentation); the caller then takes the worker path. `limits` is already clamped.
    pub fn run(
        &self,
        source: &str,
        event: &str,
        globals: &serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Limits,
    ) -> Option<Result<HookOutcome, ScriptError>> {
        if self.elsewhere.contains_key(source) {
            return None;
        }
        let Some(mut sandbox) = self.take() else {
            self.ask_for_fill();
            return None;
        };
        let deadline = Instant::now() + limits.wall_time;
        let verdicts = &self.stock.verdicts;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let link = HostLink::here(deadline);
            sandbox.run(source, event, globals.clone(), limits, link, verdicts)
        }));
        let Ok((result, reusable)) = ran else {
            self.send(Chore::Replace(sandbox));
            return Some(Err(ScriptError::Internal("the script engine panicked".into())));
        };
        if sandbox.moved()
            || matches!(result, Err(ScriptError::CpuLimit | ScriptError::WallTimeLimit(_)))
        {
            self.elsewhere.insert(source.to_owned(), ());
        }
        if sandbox.moved() {
            self.send(Chore::Replace(sandbox));
            return None;
        }
        let logs = sandbox.take_logs();
        self.put_back(sandbox, reusable);
        self.calls.fetch_add(1, Ordering::Relaxed);
        CALLS_HERE.with(|n| n.set(n.get() + 1));
        for line in logs {
            host.log(&redact(globals, &line));
        }
        Some(result.map_err(|error| match error {
            ScriptError::Thrown(message) => ScriptError::Thrown(redact(globals, &message)),
            other => other,
        }))
    }

    /// This thread's sandbox for this engine, or one from the stock.
    fn take(&self) -> Option<Sandbox> {
        let mine = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            slots.retain(|(stock, _)| stock.strong_count() > 0);
            let at = slots.iter().position(|(stock, _)| Arc::as_ptr(&self.stock) == stock.as_ptr());
            at.map(|at| slots.swap_remove(at).1)
        });
        let sandbox = mine.or_else(|| {
            let taken = self.stock.take();
            if taken.is_some() {
                self.taken.fetch_add(1, Ordering::Relaxed);
            }
            taken
        });
        if sandbox.is_some() && self.stock.short() {
            self.ask_for_fill();
        }
        sandbox
    }

    /// Wakes the builder to fill the stock, unless it was asked already and has not started.
    fn ask_for_fill(&self) {
        if !self.stock.fill_asked.swap(true, Ordering::AcqRel) {
            self.send(Chore::Fill);
        }
    }

    /// After a call: the sandbox back in this thread's slot when it may serve the next call with
    /// nothing slow to do first; otherwise to the builder.
    fn put_back(&self, mut sandbox: Sandbox, reusable: bool) {
        if !reusable {
            self.send(Chore::Replace(sandbox));
            return;
        }
        if !sandbox.tidy_is_quick()
            && let Some(spare) = self.stock.take()
        {
            // A collection is due: this thread keeps a spare from the stock (taken first, so the
            // stock has room when the collected one comes back) and the builder collects.
            self.taken.fetch_add(1, Ordering::Relaxed);
            self.keep_on_this_thread(spare);
            self.send(Chore::Tidy(sandbox));
            return;
        }
        // With none in the stock, this one serves a few calls more before its collection (which
        // frees only what no script can reach; a call whose heap nears its limit collects
        // anyway).
        let max = self.stock.limits;
        match catch_unwind(AssertUnwindSafe(|| sandbox.tidy_without_collecting(max))) {
            Ok(true) => self.keep_on_this_thread(sandbox),
            _ => self.send(Chore::Replace(sandbox)),
        }
    }

    /// Puts `sandbox` in this thread's slot for this engine, for its next call.
    fn keep_on_this_thread(&self, sandbox: Sandbox) {
        let stock = Arc::downgrade(&self.stock);
        SLOTS.with(|slots| slots.borrow_mut().push((stock, sandbox)));
    }

    /// Hands `chore` to the builder, starting it first if need be. Should its thread fail to
    /// start, a sandbox in `chore` is dropped here and calls keep taking the worker path.
    fn send(&self, chore: Chore) {
        let builder = self.builder.get_or_init(|| {
            let (chores, received) = mpsc::channel();
            let stock = Arc::clone(&self.stock);
            std::thread::Builder::new()
                .name("latchkey-script-builder".into())
                .spawn(move || build(&stock, &received))
                .ok()
                .map(|_| chores)
        });
        if let Some(builder) = builder {
            let _ = builder.send(chore);
        }
    }
}

/// The builder thread: does the chores it is sent, keeping the stock full, until the engine is
/// dropped.
fn build(stock: &Stock, chores: &Receiver<Chore>) {
    let max = stock.limits;
    let mut warm = Vec::new();
    while let Ok(chore) = chores.recv() {
        match chore {
            Chore::Fill => stock.fill_asked.store(false, Ordering::Release),
            Chore::Tidy(mut sandbox) => {
                if let Ok(true) = catch_unwind(AssertUnwindSafe(|| sandbox.tidy(max))) {
                    stock.return_collected(sandbox);
                } else {
                    warm = sandbox.recent(WARM_SCRIPTS);
                }
            }
            Chore::Replace(sandbox) => warm = sandbox.recent(WARM_SCRIPTS),
        }
        while stock.short() {
            let built = catch_unwind(AssertUnwindSafe(|| {
                let mut sandbox = Sandbox::new(max)?;
                sandbox.warm(&warm, &stock.verdicts);
                Ok::<_, ScriptError>(sandbox)
            }));
            match built {
                Ok(Ok(sandbox)) => {
                    stock.built.fetch_add(1, Ordering::Relaxed);
                    drop(stock.put(sandbox));
                }
                // Calls take the worker path meanwhile; the next chore tries again.
                _ => break,
            }
        }
    }
}
