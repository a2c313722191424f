//! The worker threads that own QuickJS runtimes. Each keeps one [`Sandbox`] prepared, uses it for
//! exactly one call, drops it, and prepares the next after it has answered, so a call pays for
//! neither creating nor tearing down a runtime unless every worker is busy.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use latchkey_core::Secret;

use crate::host::{HostReply, ToCaller};
use crate::sandbox::{HostLink, Sandbox};
use crate::{HookOutcome, Limits, ScriptError, ScriptHost};

/// C stack of a worker thread; the JavaScript stack limit is set well below it.
const THREAD_STACK: usize = 8 * 1024 * 1024;

/// One hook call handed to a worker.
pub(crate) struct Job {
    pub source: String,
    pub event: String,
    pub globals: serde_json::Map<String, serde_json::Value>,
    pub limits: Limits,
    pub to_caller: Sender<ToCaller>,
    pub from_caller: Receiver<HostReply>,
}

#[derive(Debug)]
pub(crate) struct Pool {
    limits: Limits,
    jobs: Sender<Job>,
}

impl Pool {
    pub fn start(limits: Limits) -> Pool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Host calls (HTTP) keep a worker waiting, so there are more workers than cores.
        let workers = (2 * cores).clamp(4, 16);
        for i in 0..workers {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("latchkey-script-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || work(&queue, limits))
                .expect("spawning a script worker thread");
        }
        Pool { limits, jobs }
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
        self.jobs
            .send(job)
            .map_err(|_| ScriptError::Internal("no script worker is running".into()))?;
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

fn work(queue: &Mutex<Receiver<Job>>, max: Limits) {
    let mut next = Sandbox::new(max).ok();
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return, // the engine was dropped
            }
        };
        let to_caller = job.to_caller.clone();
        let prepared = next.take();
        let mut used = None;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let sandbox = match prepared {
                Some(sandbox) => sandbox,
                None => Sandbox::new(max)?,
            };
            let link = HostLink::new(job.to_caller, job.from_caller);
            let result = sandbox.run(&job.source, &job.event, job.globals, job.limits, link);
            used = Some(sandbox);
            result
        }));
        let result = result
            .unwrap_or_else(|_| Err(ScriptError::Internal("the script engine panicked".into())));
        let _ = to_caller.send(ToCaller::Done(result));
        drop(to_caller);
        // Torn down and replaced after the caller has its answer.
        drop(used);
        next = Sandbox::new(max).ok();
    }
}
