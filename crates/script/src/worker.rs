//! The worker threads that own QuickJS runtimes. Each keeps one hardened [`Sandbox`] and runs
//! calls in it one at a time; after answering, it either keeps the sandbox for the next call
//! (collecting cyclic garbage every few calls) or, when the call left any doubt (see
//! [`crate::sandbox`]), drops it and builds a fresh one, compiling in it the scripts the old one
//! had used most recently. A call pays for neither building nor tearing down a sandbox unless
//! every worker is busy.
//!
//! A call goes to the worker that became idle last: its thread and its sandbox's memory are the
//! most likely to still be in the CPU's caches (a call in a cold sandbox takes about three times
//! as long as in a warm one). Calls that find every worker busy wait in a queue, first come
//! first served.
//!
//! Each call still crosses threads twice (the job to a worker, the answer back), because a
//! QuickJS runtime is bound to the thread that runs it and the caller's thread is a short-lived
//! blocking task.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use latchkey_core::Secret;

use crate::host::{HostReply, ToCaller};
use crate::sandbox::{HostLink, Sandbox, Verdicts};
use crate::{HookOutcome, Limits, ScriptError, ScriptHost};

/// C stack of a worker thread; the JavaScript stack limit is set well below it.
const THREAD_STACK: usize = 8 * 1024 * 1024;
/// Scripts a replacement sandbox compiles before its first call.
const WARM_SCRIPTS: usize = 4;

/// One hook call handed to a worker.
pub(crate) struct Job {
    pub source: String,
    pub event: String,
    pub globals: serde_json::Map<String, serde_json::Value>,
    pub limits: Limits,
    pub to_caller: Sender<ToCaller>,
    pub from_caller: Receiver<HostReply>,
}

/// Who takes the next call.
#[derive(Default)]
struct Dispatch {
    /// Idle workers, the most recently idle last.
    idle: Vec<Sender<Job>>,
    /// Calls no worker was idle for, oldest first.
    waiting: VecDeque<Job>,
    /// The engine was dropped: workers end once idle.
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Pool {
    limits: Limits,
    dispatch: Arc<Mutex<Dispatch>>,
    /// Sandboxes the workers have built so far.
    built: Arc<AtomicU64>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("idle", &self.idle.len())
            .field("waiting", &self.waiting.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut dispatch) = self.dispatch.lock() {
            dispatch.closed = true;
            // Idle workers see their channel close; busy ones see `closed` when done.
            dispatch.idle.clear();
        }
    }
}

impl Pool {
    /// Starts `workers` threads, or, with `None`, twice as many as there are cores (4 to 16):
    /// host calls (HTTP) keep a worker waiting.
    pub fn start(limits: Limits, workers: Option<usize>) -> Pool {
        let dispatch = Arc::new(Mutex::new(Dispatch::default()));
        let verdicts = Arc::new(Verdicts::default());
        let built = Arc::new(AtomicU64::new(0));
        let workers = workers.map_or_else(
            || {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                (2 * cores).clamp(4, 16)
            },
            |n| n.max(1),
        );
        for i in 0..workers {
            let dispatch = Arc::clone(&dispatch);
            let verdicts = Arc::clone(&verdicts);
            let built = Arc::clone(&built);
            std::thread::Builder::new()
                .name(format!("latchkey-script-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || work(&dispatch, limits, &verdicts, &built))
                .expect("spawning a script worker thread");
        }
        Pool { limits, dispatch, built }
    }

    pub fn sandboxes_built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Hands `job` to the most recently idle worker, or queues it.
    fn submit(&self, mut job: Job) -> Result<(), ScriptError> {
        loop {
            let worker = {
                let mut dispatch = self
                    .dispatch
                    .lock()
                    .map_err(|_| ScriptError::Internal("the script workers failed".into()))?;
                match dispatch.idle.pop() {
                    Some(worker) => worker,
                    None => {
                        dispatch.waiting.push_back(job);
                        return Ok(());
                    }
                }
            };
            match worker.send(job) {
                Ok(()) => return Ok(()),
                // That worker is gone (it can only have panicked outside a call): try another.
                Err(mpsc::SendError(returned)) => job = returned,
            }
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn run(
        &self,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Limits,
    ) -> Result<HookOutcome, ScriptError> {
        let auth = globals
            .get("method_auth_value")
            .and_then(|v| v.as_str())
            // Shorter values would mangle every message they happen to occur in.
            .filter(|v| v.len() >= 4)
            .map(Secret::new);
        let redact = |text: &str| match &auth {
            Some(secret) => text.replace(secret.expose(), "[redacted]"),
            None => text.to_owned(),
        };
        let (to_caller, from_worker) = mpsc::channel();
        let (to_worker, from_caller) = mpsc::channel();
        let job = Job {
            source: source.to_owned(),
            event: event.to_owned(),
            globals,
            limits,
            to_caller,
            from_caller,
        };
        self.submit(job)?;
        loop {
            match from_worker.recv() {
                Ok(ToCaller::Call(call)) => {
                    // The worker may have died meanwhile; its end of the channel says so next.
                    let _ = to_worker.send(call.answer(host));
                }
                Ok(ToCaller::Log(message)) => host.log(&redact(&message)),
                Ok(ToCaller::Done(Err(ScriptError::Thrown(message)))) => {
                    return Err(ScriptError::Thrown(redact(&message)));
                }
                Ok(ToCaller::Done(result)) => return result,
                Err(_) => {
                    return Err(ScriptError::Internal("the script worker stopped".into()));
                }
            }
        }
    }
}

fn build(max: Limits, built: &AtomicU64) -> Result<Sandbox, ScriptError> {
    let sandbox = Sandbox::new(max)?;
    built.fetch_add(1, Ordering::Relaxed);
    Ok(sandbox)
}

/// The next call for this worker: one already waiting, or else a channel the dispatcher will
/// send one on (this worker is then idle). `None` once the engine is dropped.
fn next_job(dispatch: &Mutex<Dispatch>) -> Option<Result<Job, Receiver<Job>>> {
    let mut dispatch = dispatch.lock().ok()?;
    if dispatch.closed {
        return None;
    }
    Some(match dispatch.waiting.pop_front() {
        Some(job) => Ok(job),
        None => {
            // Only the dispatcher holds the sender: dropping the engine ends the wait.
            let (to_me, jobs) = mpsc::channel::<Job>();
            dispatch.idle.push(to_me);
            Err(jobs)
        }
    })
}

fn work(dispatch: &Mutex<Dispatch>, max: Limits, verdicts: &Verdicts, built: &AtomicU64) {
    let mut ready = build(max, built).ok();
    let mut next = next_job(dispatch);
    loop {
        let job = match next.take() {
            None => return,
            Some(Ok(job)) => job,
            Some(Err(jobs)) => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return, // the engine was dropped
            },
        };
        let to_caller = job.to_caller.clone();
        let prepared = ready.take();
        let mut kept = None;
        let mut discarded = None;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut sandbox = match prepared {
                Some(sandbox) => sandbox,
                None => build(max, built)?,
            };
            let link = HostLink::new(job.to_caller, job.from_caller);
            let (result, reusable) =
                sandbox.run(&job.source, &job.event, job.globals, job.limits, link, verdicts);
            if reusable {
                kept = Some(sandbox);
            } else {
                discarded = Some(sandbox);
            }
            result
        }));
        let result = result
            .unwrap_or_else(|_| Err(ScriptError::Internal("the script engine panicked".into())));
        // A sandbox kept with nothing to collect is ready at once: this worker becomes idle
        // before answering, so that a caller making its calls one after another keeps it.
        if let Some(mut sandbox) = kept.take_if(|s| s.tidy_is_quick()) {
            match catch_unwind(AssertUnwindSafe(|| sandbox.tidy(max))) {
                Ok(true) => {
                    ready = Some(sandbox);
                    next = next_job(dispatch);
                }
                Ok(false) => discarded = Some(sandbox),
                Err(_) => {}
            }
        }
        let _ = to_caller.send(ToCaller::Done(result));
        drop(to_caller);
        if ready.is_some() {
            continue;
        }
        // After the caller has its answer: a collection, or a fresh sandbox.
        ready = catch_unwind(AssertUnwindSafe(|| prepare(kept, discarded, max, verdicts, built)))
            .unwrap_or(None);
        next = next_job(dispatch);
    }
}

/// The sandbox for the next call: `kept` once tidied, or else a fresh one, compiling in it the
/// scripts the replaced one used last.
fn prepare(
    kept: Option<Sandbox>,
    discarded: Option<Sandbox>,
    max: Limits,
    verdicts: &Verdicts,
    built: &AtomicU64,
) -> Option<Sandbox> {
    let mut discarded = discarded;
    if let Some(mut sandbox) = kept {
        if sandbox.tidy(max) {
            return Some(sandbox);
        }
        discarded = Some(sandbox);
    }
    let warm = discarded.as_ref().map(|s| s.recent(WARM_SCRIPTS)).unwrap_or_default();
    drop(discarded);
    let mut sandbox = build(max, built).ok()?;
    sandbox.warm(&warm, verdicts);
    Some(sandbox)
}
