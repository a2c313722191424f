//! The worker threads that own QuickJS runtimes. Each keeps one hardened [`Sandbox`] and runs
//! calls in it one at a time; after answering, it either keeps the sandbox for the next call
//! (collecting cyclic garbage every few calls) or, when the call left any doubt (see
//! [`crate::sandbox`]), drops it and builds a fresh one, compiling in it the scripts the old one
//! had used most recently. A call pays for neither building nor tearing down a sandbox unless
//! every worker is busy.
//!
//! A call goes to the worker that became idle last: its thread and its sandbox's memory are the
//! most likely to still be in the CPU's caches (a call in a cold sandbox takes about three times
//! as long as in a warm one).
//!
//! A worker stays busy while its script waits on `http_request`, so the pool must not let one
//! slow API hold every worker. Each call belongs to a group (a connector); at most
//! [`PoolSize::per_group`] calls of a group run at once. When every worker is busy, another
//! thread starts, up to [`PoolSize::max_workers`] (those beyond [`PoolSize::workers`] end after
//! [`IDLE_EXIT`] without a call). Calls that can not run yet wait in a queue, first come first
//! served among the groups under their share; a call whose wall-clock deadline passed while it
//! waited is answered with [`ScriptError::WallTimeLimit`] without running.
//!
//! Each call crosses threads twice (the job to a worker, the answer back): a worker can wait on
//! the host without holding the caller's thread, which is usually an async runtime's. Calls that
//! need no host can skip both hand-offs ([`crate::ScriptEngine::run_here`]).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use latchkey_core::Secret;

use crate::host::{HostReply, ToCaller};
use crate::sandbox::{HostLink, Sandbox, Verdicts};
use crate::{HookOutcome, Limits, PoolSize, ScriptError, ScriptHost};

/// C stack of a worker thread; the JavaScript stack limit is set well below it.
const THREAD_STACK: usize = 8 * 1024 * 1024;
/// Scripts a replacement sandbox compiles before its first call.
pub(crate) const WARM_SCRIPTS: usize = 4;
/// How long a worker beyond [`PoolSize::workers`] waits for a call before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(60);

/// One hook call handed to a worker.
pub(crate) struct Job {
    pub group: String,
    pub source: String,
    pub event: String,
    pub globals: serde_json::Map<String, serde_json::Value>,
    pub limits: Limits,
    /// The end of the call's wall-clock limit, counted from its submission.
    pub deadline: Instant,
    pub to_caller: Sender<ToCaller>,
    pub from_caller: Receiver<HostReply>,
}

/// Who takes the next call.
#[derive(Default)]
struct Dispatch {
    /// Idle workers (by id), the most recently idle last.
    idle: Vec<(u64, Sender<Job>)>,
    /// Calls not running yet, oldest first.
    waiting: VecDeque<Job>,
    /// Calls running (handed to a worker and not answered) per group.
    running: HashMap<String, usize>,
    /// Worker threads alive, and the id the next one gets.
    threads: usize,
    next_id: u64,
    /// The engine was dropped: workers end once idle.
    closed: bool,
    /// The permanent workers were started (by the first call).
    started: bool,
}

impl Dispatch {
    fn has_room(&self, group: &str, size: PoolSize) -> bool {
        self.running.get(group).copied().unwrap_or(0) < size.per_group
    }

    fn start(&mut self, group: &str) {
        *self.running.entry(group.to_owned()).or_default() += 1;
    }

    fn finish(&mut self, group: &str) {
        if let Some(n) = self.running.get_mut(group) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(group);
            }
        }
    }

    /// The oldest waiting call whose group is under its share, counted as running.
    fn take_waiting(&mut self, size: PoolSize) -> Option<Job> {
        let at = self.waiting.iter().position(|job| self.has_room(&job.group, size))?;
        let job = self.waiting.remove(at)?;
        self.start(&job.group);
        Some(job)
    }

    /// Hands waiting calls that may run to idle workers.
    fn dispatch_waiting(&mut self, size: PoolSize) {
        while !self.idle.is_empty() {
            let Some(job) = self.take_waiting(size) else { return };
            let group = job.group.clone();
            if let Some(job) = self.send_to_idle(job) {
                self.finish(&group);
                self.waiting.push_front(job);
                return;
            }
        }
    }

    /// Sends `job` to the most recently idle worker; gives it back when none is left.
    fn send_to_idle(&mut self, mut job: Job) -> Option<Job> {
        while let Some((_, worker)) = self.idle.pop() {
            match worker.send(job) {
                Ok(()) => return None,
                // That worker is gone (it can only have panicked outside a call): try another.
                Err(mpsc::SendError(returned)) => job = returned,
            }
        }
        Some(job)
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("idle", &self.idle.len())
            .field("waiting", &self.waiting.len())
            .field("threads", &self.threads)
            .field("closed", &self.closed)
            .field("started", &self.started)
            .finish()
    }
}

/// What the workers of one engine share.
#[derive(Debug)]
struct Shared {
    limits: Limits,
    size: PoolSize,
    dispatch: Mutex<Dispatch>,
    verdicts: Verdicts,
    /// Sandboxes the workers have built so far.
    built: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Dispatch> {
        self.dispatch.lock()
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut dispatch = self.shared.lock();
        dispatch.closed = true;
        // Idle workers see their channel close; busy ones see `closed` when done.
        dispatch.idle.clear();
    }
}

impl Pool {
    /// A pool of `size.workers` threads (at least one), started by the first call; more start
    /// on demand. A program whose connectors have no scripts never starts a thread.
    pub fn new(limits: Limits, size: PoolSize) -> Pool {
        let workers = size.workers.max(1);
        let size = PoolSize {
            workers,
            max_workers: size.max_workers.max(workers),
            per_group: size.per_group.max(1),
        };
        let shared = Arc::new(Shared {
            limits,
            size,
            dispatch: Mutex::new(Dispatch::default()),
            verdicts: Verdicts::default(),
            built: AtomicU64::new(0),
        });
        Pool { shared }
    }

    /// On the pool's first call, starts the permanent workers, the first of them with `job`;
    /// gives `job` back when the workers had started already (or none could start).
    fn start_with(&self, job: Job) -> Option<Job> {
        let ids = {
            let mut dispatch = self.shared.lock();
            if dispatch.started {
                return Some(job);
            }
            dispatch.started = true;
            dispatch.start(&job.group);
            let workers = self.shared.size.workers;
            let first = dispatch.next_id + 1;
            dispatch.threads += workers;
            dispatch.next_id += workers as u64;
            first..=dispatch.next_id
        };
        let group = job.group.clone();
        let mut job = Some(job);
        for id in ids {
            if let Err(returned) = spawn(&self.shared, id, true, job.take()) {
                // Calls start threads on demand; this one is not counted.
                self.shared.lock().threads -= 1;
                job = returned.map(|job| *job);
            }
        }
        let job = job?;
        self.shared.lock().finish(&group);
        Some(job)
    }

    /// The parse verdicts the workers keep, for the calls run on their callers' threads.
    pub fn verdicts(&self) -> Verdicts {
        self.shared.verdicts.clone()
    }

    pub fn sandboxes_built(&self) -> u64 {
        self.shared.built.load(Ordering::Relaxed)
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Hands `job` to the most recently idle worker, or to a new one, or queues it.
    fn submit(&self, job: Job) {
        let Some(job) = self.start_with(job) else { return };
        let size = self.shared.size;
        let (id, job) = {
            let mut dispatch = self.shared.lock();
            if !dispatch.has_room(&job.group, size) {
                dispatch.waiting.push_back(job);
                return;
            }
            let group = job.group.clone();
            dispatch.start(&group);
            let Some(job) = dispatch.send_to_idle(job) else { return };
            if dispatch.threads >= size.max_workers {
                dispatch.finish(&group);
                dispatch.waiting.push_back(job);
                return;
            }
            dispatch.threads += 1;
            dispatch.next_id += 1;
            (dispatch.next_id, job)
        };
        if let Err(Some(job)) = spawn(&self.shared, id, false, Some(job)) {
            let job = *job;
            let mut dispatch = self.shared.lock();
            dispatch.threads -= 1;
            dispatch.finish(&job.group);
            dispatch.waiting.push_back(job);
            dispatch.dispatch_waiting(size);
        }
    }

    pub fn run(
        &self,
        group: &str,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        host: &dyn ScriptHost,
        limits: Limits,
    ) -> Result<HookOutcome, ScriptError> {
        let deadline = Instant::now() + limits.wall_time;
        let auth = auth_value(&globals);
        let redact = |text: &str| match &auth {
            Some(secret) => text.replace(secret.expose(), "[redacted]"),
            None => text.to_owned(),
        };
        let (to_caller, from_worker) = mpsc::channel();
        let (to_worker, from_caller) = mpsc::channel();
        let job = Job {
            group: group.to_owned(),
            source: source.to_owned(),
            event: event.to_owned(),
            globals,
            limits,
            deadline,
            to_caller,
            from_caller,
        };
        self.submit(job);
        loop {
            // The worker stops the script at the deadline; this wait ends then too, whether the
            // call is still queued or its worker is busy in something it can not interrupt.
            match from_worker.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ToCaller::Call(call)) => {
                    // The worker may have died meanwhile; its end of the channel says so next.
                    let _ = to_worker.send(call.answer(host, deadline));
                }
                Ok(ToCaller::Log(message)) => host.log(&redact(&message)),
                Ok(ToCaller::Done(Err(ScriptError::Thrown(message)))) => {
                    return Err(ScriptError::Thrown(redact(&message)));
                }
                Ok(ToCaller::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ScriptError::WallTimeLimit(limits.wall_time));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(ScriptError::Internal("the script worker stopped".into()));
                }
            }
        }
    }
}

/// The `method_auth_value` a call's messages must not show.
fn auth_value(globals: &serde_json::Map<String, serde_json::Value>) -> Option<Secret> {
    globals
        .get("method_auth_value")
        .and_then(|v| v.as_str())
        // Shorter values would mangle every message they happen to occur in.
        .filter(|v| v.len() >= 4)
        .map(Secret::new)
}

/// `text` with the call's `method_auth_value` replaced by `[redacted]`.
pub(crate) fn redact(globals: &serde_json::Map<String, serde_json::Value>, text: &str) -> String {
    match auth_value(globals) {
        Some(secret) => text.replace(secret.expose(), "[redacted]"),
        None => text.to_owned(),
    }
}

/// Starts worker `id` with `first` as its first call; gives `first` back if the thread can not
/// start.
fn spawn(
    shared: &Arc<Shared>,
    id: u64,
    permanent: bool,
    first: Option<Job>,
) -> Result<(), Option<Box<Job>>> {
    let slot = Arc::new(Mutex::new(first));
    let taken = Arc::clone(&slot);
    let shared = Arc::clone(shared);
    let started = std::thread::Builder::new()
        .name(format!("latchkey-script-{id}"))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let first = taken.lock().take();
            work(&shared, id, permanent, first);
        });
    match started {
        Ok(_) => Ok(()),
        Err(_) => Err(slot.lock().take().map(Box::new)),
    }
}

fn build(max: Limits, built: &AtomicU64) -> Result<Sandbox, ScriptError> {
    let sandbox = Sandbox::new(max)?;
    built.fetch_add(1, Ordering::Relaxed);
    Ok(sandbox)
}

/// The next call for this worker, after counting the one it `finished` as done: one already
/// waiting, or else a channel the dispatcher will send one on (this worker is then idle).
/// `None` once the engine is dropped.
fn next_job(
    shared: &Shared,
    id: u64,
    finished: Option<&str>,
) -> Option<Result<Job, Receiver<Job>>> {
    let mut dispatch = shared.lock();
    if let Some(group) = finished {
        dispatch.finish(group);
    }
    if dispatch.closed {
        dispatch.threads -= 1;
        return None;
    }
    Some(match dispatch.take_waiting(shared.size) {
        Some(job) => Ok(job),
        None => {
            // Only the dispatcher holds the sender: dropping the engine ends the wait.
            let (to_me, jobs) = mpsc::channel::<Job>();
            dispatch.idle.push((id, to_me));
            // Calls of a group that just made room may now go to other idle workers.
            dispatch.dispatch_waiting(shared.size);
            Err(jobs)
        }
    })
}

/// Waits for the dispatcher's call. A worker that is not `permanent` ends after [`IDLE_EXIT`]
/// without one; `None` then, or once the engine is dropped.
fn wait(shared: &Shared, id: u64, permanent: bool, jobs: &Receiver<Job>) -> Option<Job> {
    if permanent {
        return jobs.recv().ok();
    }
    match jobs.recv_timeout(IDLE_EXIT) {
        Ok(job) => Some(job),
        Err(RecvTimeoutError::Disconnected) => {
            shared.lock().threads -= 1;
            None
        }
        Err(RecvTimeoutError::Timeout) => {
            let mut dispatch = shared.lock();
            match dispatch.idle.iter().position(|(w, _)| *w == id) {
                Some(at) => {
                    dispatch.idle.remove(at);
                    dispatch.threads -= 1;
                    None
                }
                // A call was handed to this worker meanwhile.
                None => {
                    drop(dispatch);
                    jobs.recv().ok()
                }
            }
        }
    }
}

fn work(shared: &Shared, id: u64, permanent: bool, first: Option<Job>) {
    let max = shared.limits;
    let verdicts = &shared.verdicts;
    let built = &shared.built;
    let mut ready = build(max, built).ok();
    let mut next = match first {
        Some(job) => Some(Ok(job)),
        None => next_job(shared, id, None),
    };
    loop {
        let job = match next.take() {
            None => return,
            Some(Ok(job)) => job,
            Some(Err(jobs)) => match wait(shared, id, permanent, &jobs) {
                Some(job) => job,
                None => return,
            },
        };
        let group = job.group.clone();
        let to_caller = job.to_caller.clone();
        if Instant::now() >= job.deadline {
            // Its caller has given up: nothing of it runs.
            let _ = to_caller
                .send(ToCaller::Done(Err(ScriptError::WallTimeLimit(job.limits.wall_time))));
            next = next_job(shared, id, Some(&group));
            continue;
        }
        let prepared = ready.take();
        let mut kept = None;
        let mut discarded = None;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut sandbox = match prepared {
                Some(sandbox) => sandbox,
                None => build(max, built)?,
            };
            let link = HostLink::new(job.to_caller, job.from_caller, job.deadline);
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
        let mut counted = false;
        if let Some(mut sandbox) = kept.take_if(|s| s.tidy_is_quick()) {
            match catch_unwind(AssertUnwindSafe(|| sandbox.tidy(max))) {
                Ok(true) => {
                    ready = Some(sandbox);
                    next = next_job(shared, id, Some(&group));
                    counted = true;
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
        if !counted {
            // The call is over for its group, whatever this worker does next: a call of the
            // group that waited for room may go to an idle worker now.
            let mut dispatch = shared.lock();
            dispatch.finish(&group);
            dispatch.dispatch_waiting(shared.size);
        }
        // After the caller has its answer: a collection, or a fresh sandbox.
        ready = catch_unwind(AssertUnwindSafe(|| prepare(kept, discarded, max, verdicts, built)))
            .unwrap_or(None);
        next = next_job(shared, id, None);
    }
}

/// The sandbox for the next call: `kept` once tidied, or else a fresh one, compiling in it the
/// scripts the replaced one used last.
pub(crate) fn prepare(
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
