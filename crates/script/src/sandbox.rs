//! One single-use QuickJS runtime and context: its limits, the globals going in and coming out,
//! and how a JavaScript failure becomes a [`ScriptError`] or a [`Signal`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{Coerced, Context, Ctx, Function, Object, Runtime, Value};

use crate::host::{HostCall, HostReply, ToCaller};
use crate::{HookOutcome, Limits, ScriptError, Signal, bindings};

/// The JavaScript stack a script may use (QuickJS measures it on the worker's C stack).
const JS_STACK: usize = 1024 * 1024;
/// The file name scripts are compiled under; a compile error's stack is exactly `at NAME:L:C`.
const SCRIPT_NAME: &str = "connector-script";

/// The worker's end of the channels to the caller's thread, for one call.
pub(crate) struct HostLink {
    to_caller: Sender<ToCaller>,
    from_caller: Receiver<HostReply>,
}

impl HostLink {
    pub fn new(to_caller: Sender<ToCaller>, from_caller: Receiver<HostReply>) -> Self {
        HostLink { to_caller, from_caller }
    }
}

/// Shared by the runtime's interrupt handler and the functions installed in the context.
#[derive(Default)]
pub(crate) struct State {
    deadline: Cell<Option<Instant>>,
    interrupted: Cell<bool>,
    link: RefCell<Option<HostLink>>,
}

impl State {
    fn should_interrupt(&self) -> bool {
        match self.deadline.get() {
            Some(deadline) if Instant::now() >= deadline => {
                self.interrupted.set(true);
                true
            }
            _ => false,
        }
    }

    /// Asks the caller's thread; the wait is added back to the CPU deadline.
    pub fn call(&self, call: HostCall) -> Result<HostReply, String> {
        let link = self.link.borrow();
        let link = link.as_ref().ok_or("no host is attached")?;
        let started = Instant::now();
        link.to_caller.send(ToCaller::Call(call)).map_err(|_| "the host is gone".to_owned())?;
        let reply = link.from_caller.recv().map_err(|_| "the host is gone".to_owned())?;
        if let Some(deadline) = self.deadline.get() {
            self.deadline.set(Some(deadline + started.elapsed()));
        }
        Ok(reply)
    }

    pub fn log(&self, message: String) {
        if let Some(link) = self.link.borrow().as_ref() {
            let _ = link.to_caller.send(ToCaller::Log(message));
        }
    }
}

/// A runtime with a full context and the script functions installed, used for one call.
pub(crate) struct Sandbox {
    // Fields drop in order: the context before its runtime.
    context: Context,
    runtime: Runtime,
    state: Rc<State>,
}

impl Sandbox {
    pub fn new(max: Limits) -> Result<Self, ScriptError> {
        let runtime = Runtime::new().map_err(internal)?;
        runtime.set_max_stack_size(JS_STACK);
        runtime.set_memory_limit(max.memory_bytes);
        let state = Rc::new(State::default());
        let handler_state = Rc::clone(&state);
        runtime.set_interrupt_handler(Some(Box::new(move || handler_state.should_interrupt())));
        let context = Context::full(&runtime).map_err(internal)?;
        context.with(|ctx| bindings::install(&ctx, &state)).map_err(internal)?;
        Ok(Sandbox { context, runtime, state })
    }

    pub fn run(
        &self,
        source: &str,
        event: &str,
        globals: serde_json::Map<String, serde_json::Value>,
        limits: Limits,
        link: HostLink,
    ) -> Result<HookOutcome, ScriptError> {
        self.runtime.set_memory_limit(limits.memory_bytes);
        *self.state.link.borrow_mut() = Some(link);
        self.state.deadline.set(Some(Instant::now() + limits.cpu_time));
        let result = self.context.with(|ctx| execute(&ctx, &self.state, source, event, globals));
        self.state.deadline.set(None);
        self.state.link.borrow_mut().take();
        result.map_err(|failure| match failure {
            Failure::Error(error) => error,
            Failure::NullThrown => {
                // QuickJS throws `null` when it cannot even allocate the "out of memory" error.
                let usage = self.runtime.memory_usage();
                let limit = usize::try_from(usage.malloc_limit).unwrap_or(usize::MAX);
                let used = usize::try_from(usage.malloc_size).unwrap_or(0);
                if used.saturating_add(256 * 1024) >= limit {
                    ScriptError::MemoryLimit
                } else {
                    ScriptError::Thrown("null".into())
                }
            }
        })
    }
}

/// Checks that `source` parses: compiled as a function body by the `Function` constructor, which
/// compiles without running (its two wrapper lines are taken off the reported line).
pub(crate) fn check(source: &str, limits: Limits) -> Result<(), ScriptError> {
    let runtime = Runtime::new().map_err(internal)?;
    runtime.set_max_stack_size(JS_STACK);
    runtime.set_memory_limit(limits.memory_bytes);
    // A body such as `}); while(1){} (function(){` escapes the wrapper and runs; no function
    // of ours is installed here, and the CPU limit ends it.
    let deadline = Instant::now() + limits.cpu_time;
    runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() >= deadline)));
    let context = Context::full(&runtime).map_err(internal)?;
    context.with(|ctx| {
        let constructor: Function = ctx.globals().get("Function").map_err(internal)?;
        match constructor.call::<_, Value>((source,)) {
            Ok(_) => Ok(()),
            Err(_) => {
                let error = ctx.catch();
                let object = error.as_object();
                let name = object.and_then(|o| o.get::<_, String>("name").ok());
                let message =
                    object.and_then(|o| o.get::<_, String>("message").ok()).unwrap_or_default();
                let stack =
                    object.and_then(|o| o.get::<_, String>("stack").ok()).unwrap_or_default();
                match (name.as_deref(), compile_error_line(&stack, "<input>")) {
                    (Some("SyntaxError"), Some(line)) => {
                        Err(ScriptError::Syntax { line: line.saturating_sub(2).max(1), message })
                    }
                    _ if Instant::now() >= deadline => Err(ScriptError::CpuLimit),
                    _ => Err(ScriptError::Syntax { line: 1, message }),
                }
            }
        }
    })
}

/// How a call failed before it was classified.
enum Failure {
    Error(ScriptError),
    /// `null` was thrown: either the script did, or memory ran out (decided outside the context).
    NullThrown,
}

fn execute<'js>(
    ctx: &Ctx<'js>,
    state: &State,
    source: &str,
    event: &str,
    globals: serde_json::Map<String, serde_json::Value>,
) -> Result<HookOutcome, Failure> {
    let global = ctx.globals();
    for (name, value) in &globals {
        let json = serde_json::to_string(value).map_err(|e| Failure::Error(internal(e)))?;
        let value = ctx.json_parse(json).map_err(|e| fail(ctx, state, e))?;
        global.set(name.as_str(), value).map_err(|e| fail(ctx, state, e))?;
    }

    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(SCRIPT_NAME.into());
    let top_level = ctx.eval_with_options::<(), _>(source, options);
    let mut outcome = HookOutcome {
        defined: false,
        aborted: false,
        globals: serde_json::Map::new(),
        signal: None,
    };
    let result = top_level.and_then(|()| {
        let function: Value = global.get(event)?;
        match function.as_function() {
            Some(function) => {
                outcome.defined = true;
                function.call::<_, Value>(())
            }
            None => Ok(Value::new_undefined(ctx.clone())),
        }
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
