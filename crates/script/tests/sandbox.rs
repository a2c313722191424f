//! The sandbox: isolation between calls, what does not exist, CPU, memory and stack limits.

mod common;

use std::time::{Duration, Instant};

use common::{RecordingHost, action_globals, globals};
use latchkey_script::{Limits, ScriptEngine, ScriptError};
use serde_json::json;

fn small_engine() -> ScriptEngine {
    ScriptEngine::new(Limits {
        cpu_time: Duration::from_millis(50),
        memory_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    })
}

fn result_of(engine: &ScriptEngine, script: &str) -> serde_json::Value {
    let out = engine
        .run(
            script,
            "before_action",
            globals(json!({"result": null})),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    out.globals["result"].clone()
}

#[test]
fn nothing_a_script_does_survives_into_the_next_call() {
    let engine = small_engine();
    let polluter = "Object.prototype.polluted = 1; Array.prototype.push = function() { return 'hijacked'; };
        String.prototype.trim = function() { return 'hijacked'; }; JSON.stringify = function() { return '{}'; };
        leaked = 'global'; var leakedVar = 1; globalThis.btoa = function() { return 'hijacked'; };
        Symbol.for('latchkey').leak = 1;
        function before_action() { result = 'polluted'; }";
    // Run on every worker, several times over.
    for _ in 0..40 {
        assert_eq!(result_of(&engine, polluter), json!("polluted"));
    }
    for _ in 0..40 {
        let observed = result_of(&engine, "function before_action() { var a = []; a.push(1);
            result = [({}).polluted === undefined, a.length === 1, ' x '.trim() === 'x', typeof leaked, typeof leakedVar, btoa('a'), Symbol.for('latchkey').leak === undefined]; }");
        assert_eq!(observed, json!([true, true, true, "undefined", "undefined", "YQ==", true]));
    }
}

#[test]
fn no_module_loader_network_process_or_timers() {
    let engine = small_engine();
    let observed = result_of(&engine, "function before_action() {
        result = [typeof require, typeof process, typeof fetch, typeof Deno, typeof std, typeof os, typeof setTimeout,
                  typeof setInterval, typeof XMLHttpRequest, typeof module, typeof exports, eval('typeof require'),
                  (0, eval)('typeof process'), new Function('return typeof os')()]; }");
    assert_eq!(observed, json!(vec!["undefined"; 14]));
    // `import()` has no loader: its promise can only reject, and static imports do not parse.
    let host = RecordingHost::default();
    let out = engine
        .run("function before_action() { import('os').then(function(m) { cyclr_storage_set('os', 'loaded'); }); return true; }", "before_action", action_globals(), &host, None)
        .unwrap();
    assert!(out.defined);
    assert!(matches!(
        engine.run("import * as os from 'os';", "before_action", action_globals(), &host, None),
        Err(ScriptError::Syntax { .. })
    ));
    assert!(host.storage.lock().unwrap().is_empty());
}

#[test]
fn promise_jobs_run_within_their_call_and_never_after() {
    let engine = small_engine();
    let host = RecordingHost::default();
    let script = "function before_action() { Promise.resolve().then(function() { cyclr_storage_increment('late'); }); return true; }";
    engine.run(script, "before_action", action_globals(), &host, None).unwrap();
    let late = || host.storage.lock().unwrap().get("late").cloned();
    // The job ran before the call returned...
    assert_eq!(late(), Some("1".to_owned()));
    // ...and never again, in whichever sandbox the next calls land.
    for _ in 0..40 {
        engine
            .run(
                "function before_action() { return true; }",
                "before_action",
                action_globals(),
                &host,
                None,
            )
            .unwrap();
    }
    assert_eq!(late(), Some("1".to_owned()));
}

fn assert_ends_with(
    engine: &ScriptEngine,
    script: &str,
    limits: Option<Limits>,
    expected: &[ScriptError],
) -> Duration {
    let started = Instant::now();
    let err = engine
        .run(script, "before_action", action_globals(), &RecordingHost::default(), limits)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(expected.contains(&err), "{script}: got {err:?}, expected one of {expected:?}");
    elapsed
}

#[test]
fn an_endless_loop_ends_at_the_cpu_limit() {
    let engine = small_engine();
    let elapsed = assert_ends_with(
        &engine,
        "function before_action() { while (true) {} }",
        None,
        &[ScriptError::CpuLimit],
    );
    // The budget is 50 ms; this bound only catches a limit that does not work.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // A script cannot catch the interrupt and go on.
    assert_ends_with(
        &engine,
        "function before_action() { for (;;) { try { while (true) {} } catch (e) {} } }",
        None,
        &[ScriptError::CpuLimit],
    );
    // At top level too.
    assert_ends_with(&engine, "for (;;) {}", None, &[ScriptError::CpuLimit]);
}

#[test]
fn a_connector_cannot_raise_its_limits_above_the_engine() {
    let engine = small_engine();
    let generous =
        Limits { cpu_time: Duration::from_secs(60), memory_bytes: 1 << 30, ..Limits::default() };
    let elapsed = assert_ends_with(
        &engine,
        "function before_action() { while (true) {} }",
        Some(generous),
        &[ScriptError::CpuLimit],
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let tighter =
        Limits { cpu_time: Duration::from_millis(5), memory_bytes: 8 << 20, ..Limits::default() };
    assert_ends_with(
        &engine,
        "function before_action() { while (true) {} }",
        Some(tighter),
        &[ScriptError::CpuLimit],
    );
}

#[test]
fn catastrophic_regex_ends_at_the_cpu_limit() {
    assert_ends_with(
        &small_engine(),
        "function before_action() { return /(a+)+$/.test('a'.repeat(30) + 'b'); }",
        None,
        &[ScriptError::CpuLimit],
    );
}

#[test]
fn memory_exhaustion_ends_with_a_memory_error() {
    // CPU time enough for the heap to fill even in a debug build.
    let engine = ScriptEngine::new(Limits {
        cpu_time: Duration::from_secs(5),
        memory_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    });
    let limits = [ScriptError::MemoryLimit];
    assert_ends_with(
        &engine,
        "function before_action() { var s = 'x'; while (true) { s = s.repeat(2); } }",
        None,
        &limits,
    );
    assert_ends_with(
        &engine,
        "function before_action() { var s = 'x'; while (true) { s += s; } }",
        None,
        &limits,
    );
    assert_ends_with(
        &engine,
        "function before_action() { var a = []; while (true) { a.push({x: [1, 2, 3]}); } }",
        None,
        &limits,
    );
    assert_ends_with(
        &engine,
        "function before_action() { new ArrayBuffer(64 * 1024 * 1024); }",
        None,
        &limits,
    );
    // A script catching the error gets nowhere: the heap stays full until the CPU limit.
    assert_ends_with(
        &small_engine(),
        "function before_action() { var a = []; for (;;) { try { a.push(new Array(1000).fill(1)); } catch (e) {} } }",
        None,
        &[ScriptError::MemoryLimit, ScriptError::CpuLimit],
    );
}

#[test]
fn deep_recursion_ends_with_a_stack_error() {
    let engine = small_engine();
    assert_ends_with(
        &engine,
        "function f(n) { return f(n + 1) + 1; } function before_action() { f(0); }",
        None,
        &[ScriptError::StackOverflow, ScriptError::MemoryLimit],
    );
    assert_ends_with(
        &engine,
        "function before_action() { var o = {}; o.toString = function() { return '' + this; }; '' + o; }",
        None,
        &[ScriptError::StackOverflow, ScriptError::MemoryLimit],
    );
    // The engine still works afterwards.
    assert_eq!(result_of(&engine, "function before_action() { result = 1; }"), json!(1));
}

#[test]
fn a_thrown_null_is_not_mistaken_for_memory_exhaustion() {
    let err = small_engine()
        .run(
            "function before_action() { throw null; }",
            "before_action",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("null".into()));
}

#[test]
fn the_engine_is_shared_across_threads() {
    let engine = small_engine();
    std::thread::scope(|scope| {
        for i in 0..8 {
            let engine = engine.clone();
            scope.spawn(move || {
                for _ in 0..20 {
                    let script = format!("function before_action() {{ result = {i}; }}");
                    assert_eq!(result_of(&engine, &script), json!(i));
                }
            });
        }
    });
}
