//! Calls run on the caller's own thread (`run_here`): they are taken there (no worker starts),
//! keep the isolation and limits of the worker path, and a script that calls the host moves to
//! the worker path with no effect from its first attempt.

mod common;

use std::time::Duration;

use common::{RecordingHost, action_globals, globals};
use latchkey_script::{
    HttpResponse, Limits, ScriptEngine, ScriptError, calls_run_here_on_this_thread,
};
use serde_json::{Value, json};

const BEARER: &str = "function before_action() {\n  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value;\n}";

fn engine() -> ScriptEngine {
    ScriptEngine::new(Limits { cpu_time: Duration::from_millis(200), ..Limits::default() })
}

/// Polls until a call runs on this thread: the sandboxes it uses are built on another thread.
fn ready(engine: &ScriptEngine) {
    engine.prepare_here();
    for _ in 0..2000 {
        let ran = engine.run_here(BEARER, "before_action", &action_globals(), &host(), None);
        if let Some(result) = ran {
            result.unwrap();
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no sandbox became ready for this thread");
}

fn host() -> RecordingHost {
    RecordingHost::default()
}

/// Runs `before_action` here with `result` as a global; its value afterwards.
fn result_here(engine: &ScriptEngine, script: &str) -> Value {
    let g = globals(json!({"result": null, "method_auth_value": "tokenB-5f3a9c"}));
    let out = engine.run_here(script, "before_action", &g, &host(), None);
    let out = out.expect("run on this thread").unwrap();
    assert!(out.defined, "{script}");
    out.globals["result"].clone()
}

#[test]
fn a_hook_runs_on_the_calling_thread_and_no_worker_starts() {
    let engine = engine();
    ready(&engine);
    let before = calls_run_here_on_this_thread();
    let calls = engine.calls_run_here();
    let out = engine.run_here(BEARER, "before_action", &action_globals(), &host(), None);
    let out = out.expect("run on this thread").unwrap();
    assert_eq!(out.globals["method_request_headers"]["Authorization"], "Bearer s3cr3t-token");
    assert_eq!(calls_run_here_on_this_thread(), before + 1);
    assert_eq!(engine.calls_run_here(), calls + 1);
    assert_eq!(engine.sandboxes_built(), 0, "the worker pool never started");
}

#[test]
fn a_global_set_in_one_call_is_gone_in_the_next_in_the_same_sandbox() {
    let engine = engine();
    ready(&engine);
    let taken = engine.sandboxes_taken_here();
    let first =
        "function before_action() {\n  leaked = 'x';\n  globalThis.also = 1;\n  result = 'set';\n}";
    assert_eq!(result_here(&engine, first), "set");
    let second = "function before_action() {\n  result = typeof leaked + ' ' + typeof also;\n}";
    assert_eq!(result_here(&engine, second), "undefined undefined");
    assert_eq!(engine.sandboxes_taken_here(), taken, "both calls used this thread's sandbox");
}

#[test]
fn a_runaway_loop_is_stopped_by_the_cpu_limit_and_its_source_moves_to_the_workers() {
    let engine = engine();
    ready(&engine);
    let spin = "function before_action() {\n  while (true) {}\n}";
    let before = calls_run_here_on_this_thread();
    let out = engine.run_here(spin, "before_action", &action_globals(), &host(), None);
    assert_eq!(out, Some(Err(ScriptError::CpuLimit)));
    assert_eq!(calls_run_here_on_this_thread(), before + 1);
    // Not here again: the worker path stops it too.
    assert_eq!(engine.run_here(spin, "before_action", &action_globals(), &host(), None), None);
    let worker = engine.run(spin, "before_action", action_globals(), &host(), None);
    assert_eq!(worker, Err(ScriptError::CpuLimit));
    // Other scripts still run here (in a replacement sandbox).
    ready(&engine);
}

#[test]
fn a_script_that_calls_http_request_moves_to_a_worker_and_works_there() {
    let engine = engine();
    ready(&engine);
    let host = RecordingHost {
        response: Some(HttpResponse {
            status_code: 200,
            content: "n-42".into(),
            ..Default::default()
        }),
        ..RecordingHost::default()
    };
    // A `catch` does not keep the call going here.
    let script = "function before_action() {\n  console.log('asking');\n  try { result = http_request({url: 'https://api.example.com/nonce'}).content; } catch (e) { result = 'caught'; }\n}";
    let g = globals(json!({"result": null}));
    assert_eq!(engine.run_here(script, "before_action", &g, &host, None), None);
    assert!(host.requests.lock().unwrap().is_empty(), "nothing reached the host from here");
    assert!(host.logs.lock().unwrap().is_empty(), "nor a log line");

    let out = engine.run(script, "before_action", g.clone(), &host, None).unwrap();
    assert_eq!(out.globals["result"], "n-42");
    assert_eq!(host.requests.lock().unwrap().len(), 1);
    assert_eq!(*host.logs.lock().unwrap(), vec!["asking".to_owned()]);

    // Its later calls go to the workers at once: nothing of it runs here.
    assert_eq!(engine.run_here(script, "before_action", &g, &host, None), None);
    assert_eq!(host.requests.lock().unwrap().len(), 1);
    assert!(host.logs.lock().unwrap().len() == 1);
}

#[test]
fn logs_reach_the_host_redacted_and_a_throw_keeps_its_message() {
    let engine = engine();
    ready(&engine);
    let host = host();
    let script = "function before_action() {\n  console.log('key ' + method_auth_value);\n  throw new Error('bad ' + method_auth_value);\n}";
    let out = engine.run_here(script, "before_action", &action_globals(), &host, None);
    assert_eq!(out, Some(Err(ScriptError::Thrown("bad [redacted]".into()))));
    assert_eq!(*host.logs.lock().unwrap(), vec!["key [redacted]".to_owned()]);
}

#[test]
fn a_sandbox_that_served_a_failed_call_is_not_used_again() {
    let engine = engine();
    ready(&engine);
    let taken = engine.sandboxes_taken_here();
    let throws = "function before_action() {\n  result = 1;\n  throw new Error('no');\n}";
    let g = globals(json!({"result": null}));
    let out = engine.run_here(throws, "before_action", &g, &host(), None);
    assert!(matches!(out, Some(Err(ScriptError::Thrown(_)))), "{out:?}");
    // The next call finds this thread's slot empty and takes a replacement.
    ready(&engine);
    assert!(engine.sandboxes_taken_here() > taken);
}

#[test]
fn the_limits_a_call_asks_for_apply_here() {
    let engine = engine();
    ready(&engine);
    let big = "function before_action() {\n  var a = [];\n  while (true) { a.push('x'.repeat(1024)); }\n}";
    let limits = Limits { memory_bytes: 4 * 1024 * 1024, ..Limits::default() };
    let out = engine.run_here(big, "before_action", &action_globals(), &host(), Some(limits));
    assert_eq!(out, Some(Err(ScriptError::MemoryLimit)));
}

/// An async runtime's thread has a 2 MiB stack (Tokio's default), a worker 8 MiB: deep recursion
/// run there still ends with an error, not a crash.
#[test]
fn deep_recursion_on_a_2_mib_thread_ends_with_a_stack_error() {
    let engine = engine();
    let on_thread = engine.clone();
    let results = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            ready(&on_thread);
            let scripts = [
                "function f(n) { return f(n + 1) + 1; } function before_action() { f(0); }",
                "function before_action() { var o = {}; o.toString = function() { return '' + this; }; '' + o; }",
                "function before_action() { JSON.parse('['.repeat(200000)); }",
            ];
            let mut results = Vec::new();
            for script in scripts {
                ready(&on_thread);
                let before = calls_run_here_on_this_thread();
                let out = on_thread.run_here(script, "before_action", &action_globals(), &host(), None);
                assert_eq!(calls_run_here_on_this_thread(), before + 1, "{script}");
                results.push(out.expect("run on this thread"));
            }
            results
        })
        .unwrap()
        .join()
        .unwrap();
    for result in results {
        let error = result.unwrap_err();
        assert!(
            matches!(error, ScriptError::StackOverflow | ScriptError::MemoryLimit),
            "{error:?}"
        );
    }
}

/// Waits until the builder has built nothing for a while (the stock is full), and says how many
/// it built.
fn settled_builds(engine: &ScriptEngine) -> u64 {
    let mut last = engine.sandboxes_built_here();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = engine.sandboxes_built_here();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[test]
fn a_collected_sandbox_goes_back_to_the_stock_instead_of_being_rebuilt() {
    let engine = engine();
    ready(&engine);
    let built = settled_builds(&engine);
    let taken = engine.sandboxes_taken_here();
    // Ten collections' worth of calls (one every 64), fewer than a sandbox serves before its
    // replacement: each collection swaps this thread's sandbox for a spare and puts the
    // collected one back, so nothing is built.
    for _ in 0..640 {
        let out = engine.run_here(BEARER, "before_action", &action_globals(), &host(), None);
        out.expect("run on this thread").unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(engine.sandboxes_taken_here() >= taken + 5, "collections took spares from the stock");
    assert_eq!(settled_builds(&engine), built, "a collected sandbox was rebuilt, not reused");
}
