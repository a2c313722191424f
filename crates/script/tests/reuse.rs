//! Sandbox reuse: calls on an engine with one worker share its sandbox, and nothing one call does
//! is observable in the next. Each test checks with `sandboxes_built` that the calls it expects to
//! share a sandbox did (or that one was replaced), so that none passes only because a fresh
//! sandbox happened to serve the second call.

mod common;

use std::time::Duration;

use common::{RecordingHost, action_globals, globals};
use latchkey_script::{Limits, ScriptEngine, ScriptError};
use serde_json::{Value, json};

fn one_worker() -> ScriptEngine {
    ScriptEngine::with_workers(
        Limits {
            cpu_time: Duration::from_millis(500),
            memory_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        },
        1,
    )
}

/// Runs `before_action` with `result` as a global; its value afterwards.
fn result_of(engine: &ScriptEngine, script: &str) -> Value {
    let out = engine
        .run(
            script,
            "before_action",
            globals(json!({"result": null, "method_auth_value": "tokenB-5f3a9c"})),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    assert!(out.defined, "{script}");
    out.globals["result"].clone()
}

/// `script` runs cleanly and the sandbox is kept for the next call.
fn run_kept(engine: &ScriptEngine, script: &str, auth: &str) {
    let before = engine.sandboxes_built();
    let mut g = action_globals();
    g.insert("method_auth_value".into(), json!(auth));
    g.insert("result".into(), Value::Null);
    let out = engine.run(script, "before_action", g, &RecordingHost::default(), None);
    assert!(out.is_ok(), "{script}: {out:?}");
    // The next call must be served by the same sandbox: checked by `assert_same_sandbox`.
    assert_eq!(engine.sandboxes_built(), before);
}

fn warmed() -> (ScriptEngine, u64) {
    let engine = one_worker();
    // The first call waits for the worker's first sandbox.
    result_of(&engine, "function before_action() { result = 1; }");
    let built = engine.sandboxes_built();
    (engine, built)
}

fn assert_same_sandbox(engine: &ScriptEngine, built: u64) {
    assert_eq!(engine.sandboxes_built(), built, "the calls did not share a sandbox");
}

#[test]
fn prototype_pollution_does_not_reach_the_next_call() {
    let (engine, built) = warmed();
    let polluter = r#"
        Object.prototype.polluted = 1;
        Object.prototype.toString = function () { return 'hijacked'; };
        Object.prototype.hasOwnProperty = function () { return 'hijacked'; };
        Array.prototype.push = function () { return 'hijacked'; };
        Array.prototype.extra = 1;
        String.prototype.trim = function () { return 'hijacked'; };
        String.prototype.polluted = 1;
        Function.prototype.call = function () { return 'hijacked'; };
        Function.prototype.polluted = 1;
        Error.prototype.toString = function () { return 'hijacked'; };
        Error.prototype.name = 'hijacked';
        TypeError.prototype.message = 'hijacked';
        [].values().__proto__.next = function () { return { done: true }; };
        Object.getPrototypeOf(Object.getPrototypeOf([].values())).map = 'hijacked';
        Object.getPrototypeOf(function* () {}).prototype.next = function () { return 'hijacked'; };
        Object.getPrototypeOf(async function () {}).polluted = 1;
        new Map().entries().__proto__.next = function () { return 'hijacked'; };
        Object.getPrototypeOf(Int8Array).prototype.fill = function () { return 'hijacked'; };
        Promise.prototype.then = function () { return 'hijacked'; };
        Map.prototype.get = function () { return 'hijacked'; };
        JSON.stringify = function () { return '{}'; };
        Math.max = function () { return -1; };
        Error.prepareStackTrace = function () { return 'hijacked'; };
        Error.stackTraceLimit = 0;
        console.log = function () {};
        btoa = function () { return 'hijacked'; };
        Object.freeze = function (o) { return o; };
        for (const o of [Object.prototype, Array.prototype, Function.prototype]) {
          try { Object.defineProperty(o, 'defined', { value: 1 }); } catch (e) {}
          try { Object.setPrototypeOf(o, { polluted: 1 }); } catch (e) {}
        }
        function before_action() { result = 'polluted'; }"#;
    run_kept(&engine, polluter, "tokenA-1d2e3f");
    let checker = r#"function before_action() {
        var a = []; a.push(1);
        var it = [1, 2].values();
        result = [
          ({}).polluted === undefined, String({}), ({ a: 1 }).hasOwnProperty('a'),
          a.length, [].extra === undefined, ' x '.trim(), ''.polluted === undefined,
          Math.max.call(null, 1, 2), (function () {}).polluted === undefined,
          String(new Error('e')), new TypeError().message, it.next().value,
          typeof Iterator.prototype.map, (function* () { yield 1; })().next().value,
          new Map([[1, 2]]).entries().next().value, Array.from(new Int8Array(2).fill(3)),
          typeof Promise.prototype.then, new Map([[1, 2]]).get(1), JSON.stringify({ b: 2 }),
          Math.max(1, 2), new Error('s').stack.indexOf('hijacked'), Error.stackTraceLimit,
          btoa('a'), Object.isFrozen(Object.freeze({})), Object.prototype.defined,
          Object.getPrototypeOf(Array.prototype) === Object.prototype,
        ];
      }"#;
    assert_eq!(
        result_of(&engine, checker),
        json!([
            true,
            "[object Object]",
            true,
            1,
            true,
            "x",
            true,
            2,
            true,
            "Error: e",
            "",
            1,
            "function",
            1,
            [1, 2],
            [3, 3],
            "function",
            2,
            "{\"b\":2}",
            2,
            -1,
            null,
            "YQ==",
            true,
            null,
            true
        ])
    );
    assert_same_sandbox(&engine, built);
}

#[test]
fn globals_a_call_creates_are_gone_in_the_next() {
    let (engine, built) = warmed();
    let keys =
        "function before_action() { result = Reflect.ownKeys(globalThis).map(String).sort(); }";
    let baseline = result_of(&engine, keys);
    let polluter = r#"
        implicit = 1; var declared = 2; let lexical = 3; const constant = 4;
        function declaredFunction() {} class DeclaredClass {}
        globalThis.viaGlobalThis = 5; this.viaThis = 6;
        (0, eval)('var viaIndirectEval = 7; function viaIndirectEvalFunction() {}');
        (0, eval)('let lexicalInEval = 8');
        new Function('viaFunctionConstructor = 9')();
        Object.defineProperty(globalThis, 'hidden', { value: 10, configurable: true });
        globalThis[Symbol.for('latchkey')] = 11;
        globalThis[0] = 12;
        Error.captureStackTrace(globalThis);
        function before_action() { afterTopLevel = 13; result = 1; }"#;
    run_kept(&engine, polluter, "tokenA-1d2e3f");
    let checker = r#"function before_action() {
        result = [typeof implicit, typeof declared, typeof lexical, typeof constant,
          typeof declaredFunction, typeof DeclaredClass, typeof viaGlobalThis, typeof viaThis,
          typeof viaIndirectEval, typeof viaIndirectEvalFunction, typeof lexicalInEval,
          typeof viaFunctionConstructor, typeof hidden, typeof globalThis[Symbol.for('latchkey')],
          typeof globalThis[0], typeof globalThis.stack, typeof afterTopLevel];
      }"#;
    assert_eq!(result_of(&engine, checker), json!(vec!["undefined"; 17]));
    assert_eq!(result_of(&engine, keys), baseline);
    assert_same_sandbox(&engine, built);
}

#[test]
fn a_scripts_top_level_declarations_are_local_to_its_call() {
    let engine = one_worker();
    // `var` at top level no longer makes a property of the global object...
    let script = "var x = 1; function helper() { return x; } function before_action() { result = [x, helper(), typeof globalThis.x, typeof globalThis.helper, this === globalThis]; }";
    assert_eq!(result_of(&engine, script), json!([1, 1, "undefined", "undefined", true]));
    // ...while assigning an undeclared name (sloppy mode) still sets a global, the call's own.
    let script =
        "function before_action() { result = typeof method_auth_value; method_auth_value = 'x'; }";
    assert_eq!(result_of(&engine, script), json!("string"));
    // The event may also be a global the script assigns.
    assert_eq!(
        result_of(&engine, "before_action = function () { result = 'assigned'; };"),
        json!("assigned")
    );
    // One source, two events, in the same sandbox.
    let both = "function before_action() { result = 'before'; } function after_action() { result = 'after'; }";
    assert_eq!(result_of(&engine, both), json!("before"));
    let out = engine
        .run(
            both,
            "after_action",
            globals(json!({"result": null})),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    assert_eq!(out.globals["result"], json!("after"));
    // A 'use strict' directive applies to the whole script, as at top level.
    let strict = "'use strict'; function before_action() { undeclared = 1; }";
    let err = engine
        .run(strict, "before_action", action_globals(), &RecordingHost::default(), None)
        .unwrap_err();
    assert!(matches!(err, ScriptError::Thrown(ref m) if m.contains("undeclared")), "{err:?}");
    // Event names are identifiers.
    let err = engine
        .run(
            "function before_action() {}",
            "before_action; leaked = 1",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, ScriptError::Internal(_)), "{err:?}");
}

#[test]
fn a_script_cannot_escape_the_function_it_is_compiled_in() {
    let (engine, built) = warmed();
    let host = RecordingHost::default();
    let escapes = [
        "}); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "}); escaped = 1; cyclr_storage_set('escaped', '1'); (function () {",
        "} escaped = 1; cyclr_storage_set('escaped', '1'); {",
        "})(); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "//\n}); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "return; }); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "\n;return 1;}); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "'use strict'; }); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
        "x = `${1}`}); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {",
    ];
    for source in escapes {
        let result = engine.run(source, "before_action", action_globals(), &host, None);
        assert!(matches!(result, Err(ScriptError::Syntax { .. })), "{source}: {result:?}");
        assert!(matches!(engine.check(source), Err(ScriptError::Syntax { .. })), "{source}");
    }
    // Sources that look like escapes but parse: they run inside, as strings or comments.
    let inside = [
        "/*/ }); escaped = 1; cyclr_storage_set('escaped', '1'); (() => { /*/",
        "`${`}); escaped = 1; cyclr_storage_set('escaped', '1'); (() => {`}`",
        "'}); escaped = 1; (() => {'",
        "x = /}\\); escaped = 1;/; y = /(() => {)/",
    ];
    for source in inside {
        let result = engine.run(source, "before_action", action_globals(), &host, None);
        assert!(matches!(result, Ok(ref out) if !out.defined), "{source}: {result:?}");
    }
    assert!(host.storage.lock().unwrap().is_empty());
    assert_eq!(
        result_of(&engine, "function before_action() { result = typeof escaped; }"),
        json!("undefined")
    );
    // A script that does not parse leaves the sandbox as it was.
    assert_same_sandbox(&engine, built);
}

#[test]
fn assignments_that_a_frozen_prototype_would_refuse_still_work_on_instances() {
    let (engine, built) = warmed();
    let script = r#"
        class MyError extends Error {
          constructor(message) { super(message); this.name = 'MyError'; this.code = 7; }
        }
        function before_action() {
          'use strict';
          var e = new MyError('boom');
          var o = {};
          o.toString = function () { return 'custom'; };
          o.constructor = 'mine';
          o.valueOf = function () { return 41; };
          var counts = {};
          ['constructor', 'toString', 'hasOwnProperty', '__defineGetter__'].forEach(function (w) { counts[w] = 1; });
          var a = [1];
          a.push = function () { return 'own push'; };
          function f() {}
          f.toString = function () { return 'f'; };
          var err = new Error('x');
          err.message = 'changed';
          err.name = 'Renamed';
          var auth = new AuthRefreshException();
          result = [e.name, String(e), e instanceof Error, e.code, String(o), o.constructor, o + 1,
            JSON.stringify(counts), a.push(), [].push(2), String(f), String(err),
            auth.name, Object.keys(e), ({}).toString(), Object.prototype.hasOwnProperty.call(o, 'toString')];
        }"#;
    assert_eq!(
        result_of(&engine, script),
        json!([
            "MyError",
            "MyError: boom",
            true,
            7,
            "custom",
            "mine",
            42,
            "{\"constructor\":1,\"toString\":1,\"hasOwnProperty\":1,\"__defineGetter__\":1}",
            "own push",
            1,
            "f",
            "Renamed: changed",
            "AuthRefreshException",
            ["name", "code"],
            "[object Object]",
            true
        ])
    );
    // A built-in global's name may be assigned too, for the call.
    let script = "btoa = function () { return 'mine'; }; JSON = 1; function before_action() { result = [btoa('a'), JSON, globalThis.hasOwnProperty('btoa')]; }";
    assert_eq!(result_of(&engine, script), json!(["mine", 1, true]));
    let script = "function before_action() { result = [btoa('a'), typeof JSON.parse, globalThis.hasOwnProperty('btoa')]; }";
    assert_eq!(result_of(&engine, script), json!(["YQ==", "function", false]));
    // The prototypes themselves do not change, silently as a non-writable property would not.
    let script = "function before_action() { Array.prototype.push = 1; Object.prototype.toString = 1; result = [typeof [].push, String({})]; }";
    assert_eq!(result_of(&engine, script), json!(["function", "[object Object]"]));
    assert_same_sandbox(&engine, built);
}

#[test]
fn a_changed_global_object_means_a_fresh_sandbox() {
    let engine = one_worker();
    result_of(&engine, "function before_action() { result = 1; }");
    let changes = [
        "Object.setPrototypeOf(globalThis, { leaked: 'token' });",
        "globalThis.__proto__ = { leaked: 'token' };",
        "leaked = 'token'; Object.preventExtensions(globalThis);",
        "leaked = 'token'; Object.freeze(globalThis);",
        "Object.defineProperty(globalThis, 'leaked', { value: method_auth_value, configurable: false });",
        "Object.defineProperty(globalThis, 'leaked', { get: function () { return 'token'; }, configurable: false });",
    ];
    for change in changes {
        let built = engine.sandboxes_built();
        let script = format!("{change} function before_action() {{ result = 1; }}");
        let out = engine.run(
            &script,
            "before_action",
            globals(json!({"result": null, "method_auth_value": "tokenA-1d2e3f"})),
            &RecordingHost::default(),
            None,
        );
        // Whether the call itself succeeded does not matter; the next one sees none of it.
        let _ = out;
        let observed = result_of(
            &engine,
            "function before_action() { var p = Object.getPrototypeOf(globalThis); result = [typeof leaked, Object.isFrozen(p) && Object.getPrototypeOf(p) === Object.prototype && p.JSON === JSON, Object.isExtensible(globalThis)]; }",
        );
        assert_eq!(observed, json!(["undefined", true, true]), "{change}");
        assert!(engine.sandboxes_built() > built, "{change}: the sandbox was kept");
    }
}

#[test]
fn promise_jobs_and_async_functions_complete_within_their_call() {
    let (engine, built) = warmed();
    let host = RecordingHost::default();
    let script = "Promise.resolve().then(function () { cyclr_storage_increment('top'); });
        function before_action() {
          Promise.resolve().then(function () { cyclr_storage_increment('event'); method_request.then = 'ran'; });
          queueMicrotask(function () { cyclr_storage_increment('microtask'); });
          return true;
        }";
    let out = engine.run(script, "before_action", action_globals(), &host, None).unwrap();
    assert_eq!(out.globals["method_request"], json!({"name": "x", "then": "ran"}));
    let counts = |host: &RecordingHost| {
        let storage = host.storage.lock().unwrap();
        ["top", "event", "microtask"].map(|k| storage.get(k).cloned())
    };
    let one = Some("1".to_owned());
    assert_eq!(counts(&host), [one.clone(), one.clone(), one.clone()]);
    // An async event: its awaits finish, its value counts, a rejection is thrown.
    let script = "async function before_action() { await null; method_request.awaited = true; return false; }";
    let out = engine.run(script, "before_action", action_globals(), &host, None).unwrap();
    assert!(out.aborted);
    assert_eq!(out.globals["method_request"], json!({"name": "x", "awaited": true}));
    let script = "async function before_action() { await null; throw new AuthRefreshException(); }";
    let out = engine.run(script, "before_action", action_globals(), &host, None).unwrap();
    assert_eq!(out.signal, Some(latchkey_script::Signal::AuthRefresh));
    assert_same_sandbox(&engine, built);
    // Nothing runs in the calls after.
    let script = "function before_action() { return true; }";
    engine.run(script, "before_action", action_globals(), &host, None).unwrap();
    assert_eq!(counts(&host), [one.clone(), one.clone(), one]);
    // Endless promise jobs end at the CPU limit.
    let script =
        "function before_action() { (function loop() { Promise.resolve().then(loop); })(); }";
    let err = engine.run(script, "before_action", action_globals(), &host, None).unwrap_err();
    assert_eq!(err, ScriptError::CpuLimit);
}

#[test]
fn math_random_and_performance_belong_to_the_call() {
    let (engine, built) = warmed();
    let script = "function before_action() {
        var values = []; for (var i = 0; i < 1000; i++) values.push(Math.random());
        var distinct = new Set(values).size;
        var inRange = values.every(function (v) { return v >= 0 && v < 1; });
        var mean = values.reduce(function (a, b) { return a + b; }, 0) / values.length;
        result = [distinct, inRange, mean > 0.4 && mean < 0.6, performance.now() >= 0, performance.now() < 500,
          Math.abs(performance.timeOrigin + performance.now() - Date.now()) < 50, values[0]];
      }";
    let first = result_of(&engine, script);
    let second = result_of(&engine, script);
    assert_eq!(
        first.as_array().unwrap()[..6],
        json!([1000, true, true, true, true, true]).as_array().unwrap()[..]
    );
    assert_eq!(second.as_array().unwrap()[..6], first.as_array().unwrap()[..6]);
    assert_ne!(first[6], second[6]);
    assert_same_sandbox(&engine, built);
}

/// Walks every object reachable from the global object (but the call's globals) and the hidden
/// intrinsics, through property values, getters, setters, what getters return, and prototypes,
/// in JavaScript; `VISIT(object, path)` is called for each.
const WALK: &str = r#"
function walk(skip, VISIT) {
  var seen = new Set([globalThis]);
  var queue = [];
  function add(value, path) {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return;
    if (seen.has(value)) return;
    seen.add(value);
    queue.push([value, path]);
  }
  Reflect.ownKeys(globalThis).forEach(function (key) {
    if (skip.indexOf(key) >= 0) return;
    var d = Object.getOwnPropertyDescriptor(globalThis, key);
    add(d.value, String(key)); add(d.get, String(key) + '.get'); add(d.set, String(key) + '.set');
    if (d.get) { try { add(d.get.call(globalThis), String(key) + ' (got)'); } catch (e) {} }
  });
  add(Object.getPrototypeOf(globalThis), '[[Prototype]](globalThis)');
  [Object.getPrototypeOf(function* () {}), Object.getPrototypeOf(async function () {}),
   Object.getPrototypeOf(async function* () {}), Object.getPrototypeOf([].values()),
   Object.getPrototypeOf(new Map().entries()), Object.getPrototypeOf(new Set().values()),
   Object.getPrototypeOf(''[Symbol.iterator]()), Object.getPrototypeOf('a'.matchAll(/a/g)),
   Object.getPrototypeOf(Iterator.from({ next: function () {} })),
   Object.getPrototypeOf([].values().map(function (x) { return x; })),
   Object.getPrototypeOf(Iterator.concat()),
   Object.getOwnPropertyDescriptor((function () { 'use strict'; return arguments; })(), 'callee').get,
  ].forEach(function (o, i) { add(o, 'hidden' + i); });
  while (queue.length) {
    var next = queue.shift(), object = next[0], path = next[1];
    VISIT(object, path);
    add(Object.getPrototypeOf(object), path + '.[[Prototype]]');
    Reflect.ownKeys(object).forEach(function (key) {
      var d = Object.getOwnPropertyDescriptor(object, key);
      var p = path + '.' + String(key);
      add(d.value, p); add(d.get, p + '.get'); add(d.set, p + '.set');
      // What a getter gives (a converted built-in, most often) is reachable too.
      if (d.get) { try { add(d.get.call(object), p + ' (got)'); } catch (e) {} }
    });
  }
}
"#;

#[test]
fn everything_a_script_can_reach_is_frozen() {
    let engine = one_worker();
    let script = format!(
        r#"{WALK}
        function before_action() {{
          var notFrozen = [], count = 0;
          walk(['result', 'method_auth_value'], function (object, path) {{
            count++;
            if (!Object.isFrozen(object)) notFrozen.push(path);
          }});
          var writableGlobals = Reflect.ownKeys(globalThis).filter(function (key) {{
            var d = Object.getOwnPropertyDescriptor(globalThis, key);
            return key !== 'result' && key !== 'method_auth_value' && (d.configurable || d.writable);
          }}).map(String);
          result = [count > 500, notFrozen, writableGlobals, typeof WeakRef, typeof FinalizationRegistry,
            'prepareStackTrace' in Error, 'stackTraceLimit' in Error];
        }}"#
    );
    assert_eq!(
        result_of(&engine, &script),
        json!([true, [], [], "undefined", "undefined", false, false])
    );
}

#[test]
fn the_previous_calls_auth_value_cannot_be_found() {
    let (engine, built) = warmed();
    let stash = r#"
        var token = method_auth_value;
        stashed = token;
        globalThis[token] = token;
        try { Object.prototype.stash = token; } catch (e) {}
        try { Object.defineProperty(Object.prototype, 'stash', { get: function () { return token; } }); } catch (e) {}
        try { Array.prototype.flat = function () { return token; }; } catch (e) {}
        try { Object.getPrototypeOf([].values()).toArray = function () { return token; }; } catch (e) {}
        try { Math.stash = token; JSON.stash = token; console.stash = token; btoa.stash = token; performance.stash = token; } catch (e) {}
        try { Error.stackTraceLimit = { token: token }; Error.prepareStackTrace = function () { return token; }; } catch (e) {}
        try { Error.captureStackTrace(Object.prototype); Error.captureStackTrace(Error.prototype); } catch (e) {}
        try { throw Error.prototype; } catch (e) {}
        try { Symbol.for(token); } catch (e) {}
        try { new WeakMap().set(Object.prototype, token); } catch (e) {}
        try { Iterator.prototype.constructor = token; } catch (e) {}
        try { Iterator.prototype[Symbol.toStringTag] = token; } catch (e) {}
        try { Object.getOwnPropertyDescriptor(Error.prototype, 'stack').set.call(Error.prototype, token); } catch (e) {}
        try { Date.prototype.setTime.call(Date.prototype, 1); } catch (e) {}
        try { RegExp.prototype.compile.call(RegExp.prototype, token); } catch (e) {}
        try { new RegExp(token).exec(token); } catch (e) {}
        var named = ({ [token]: function () { throw new Error('x'); } })[token];
        try { named(); } catch (e) {}
        Promise.resolve(token).then(function (t) { laterStash = t; });
        function before_action() { eventStash = token; method_request_headers.Authorization = 'Bearer ' + token; return true; }"#;
    run_kept(&engine, stash, "tokenA-1d2e3f");
    let finder = format!(
        r#"{WALK}
        function before_action() {{
          var needle = ['tokenA', '1d2e3f'].join('-'), found = [];
          function look(value, where) {{
            if (typeof value === 'string' && value.indexOf(needle) >= 0) found[found.length] = where;
            if (typeof value === 'symbol' && String(value).indexOf(needle) >= 0) found[found.length] = where;
          }}
          walk(['result', 'method_auth_value'], function (object, path) {{
            Reflect.ownKeys(object).forEach(function (key) {{
              look(key, path + ' key');
              var d = Object.getOwnPropertyDescriptor(object, key);
              look(d.value, path + '.' + String(key));
              if (d.get) {{ try {{ look(d.get.call(object), path + '.' + String(key) + ' getter'); }} catch (e) {{}} }}
            }});
            if (typeof object === 'function') {{ try {{ look(Function.prototype.toString.call(object), path + ' source'); }} catch (e) {{}} }}
          }});
          look(new Error('probe').stack, 'a new stack');
          look([].flat(), '[].flat()');
          look([].values().toArray(), 'toArray()');
          look(Error.stackTraceLimit, 'Error.stackTraceLimit');
          look(Object.prototype.stack, 'Object.prototype.stack');
          look(Error.prototype.stack, 'Error.prototype.stack');
          result = [found, typeof stashed, typeof laterStash, typeof eventStash, typeof globalThis[needle]];
        }}"#
    );
    assert_eq!(
        result_of(&engine, &finder),
        json!([[], "undefined", "undefined", "undefined", "undefined"])
    );
    assert_same_sandbox(&engine, built);
}

#[test]
fn a_sandbox_is_replaced_after_a_failed_call_and_after_many_calls() {
    let (engine, built) = warmed();
    let err = engine
        .run(
            "function before_action() { throw new Error('no'); }",
            "before_action",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("no".into()));
    result_of(&engine, "function before_action() { result = 1; }");
    assert_eq!(engine.sandboxes_built(), built + 1);
    // A sandbox serves at most 1,024 calls.
    for _ in 0..1100 {
        result_of(&engine, "function before_action() { result = 1; }");
    }
    assert!(engine.sandboxes_built() >= built + 2);
}

#[test]
fn what_one_compiled_script_shares_between_its_calls_is_frozen() {
    let (engine, built) = warmed();
    // The same source for two connections: its template objects are created once, when it is
    // compiled, and are the same object in every call.
    let script = r#"
        function tag(strings) { return strings; }
        function before_action() {
          var t = tag`a${1}b`;
          result = [t.stash === undefined && t.raw.stash === undefined, Object.isFrozen(t), Object.isFrozen(t.raw)];
          try { t.stash = method_auth_value; } catch (e) {}
          try { t.raw.stash = method_auth_value; } catch (e) {}
          try { Object.defineProperty(t, 'stash', { value: method_auth_value }); } catch (e) {}
          try { t[0] = method_auth_value; t.length = 0; } catch (e) {}
        }"#;
    let first = run_with_auth(&engine, script, "tokenA-1d2e3f");
    let second = run_with_auth(&engine, script, "tokenB-5f3a9c");
    assert_eq!(first, json!([true, true, true]));
    assert_eq!(second, first);
    assert_same_sandbox(&engine, built);
}

fn run_with_auth(engine: &ScriptEngine, script: &str, auth: &str) -> Value {
    let out = engine
        .run(
            script,
            "before_action",
            globals(json!({"result": null, "method_auth_value": auth})),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    out.globals["result"].clone()
}

#[test]
fn syntax_errors_keep_their_line_in_the_wrapper() {
    let engine = one_worker();
    let host = RecordingHost::default();
    // Found by the standalone parse...
    let err = engine.run("var a = 1;\n\nvar = 2;", "before_action", action_globals(), &host, None);
    assert!(matches!(err, Err(ScriptError::Syntax { line: 3, .. })), "{err:?}");
    // ...and by the wrapper only: a 'use strict' directive at its top applies to the whole body.
    let source = "'use strict';\n\nwith ({}) {}";
    let err = engine.run(source, "before_action", action_globals(), &host, None);
    assert!(matches!(err, Err(ScriptError::Syntax { line: 3, .. })), "{err:?}");
    assert!(matches!(engine.check(source), Err(ScriptError::Syntax { line: 3, .. })));
    // A runtime error on a given line is still thrown, not a syntax error.
    let err = engine.run(
        "\n\nthrow new SyntaxError('x');",
        "before_action",
        action_globals(),
        &host,
        None,
    );
    assert_eq!(err, Err(ScriptError::Thrown("x".into())));
}

#[test]
fn workers_start_with_the_first_call() {
    let engine = ScriptEngine::with_workers(Limits::default(), 2);
    engine.check("function before_action() { return true; }").unwrap();
    assert_eq!(engine.sandboxes_built(), 0, "no worker before the first call");
    assert_eq!(result_of(&engine, "function before_action() { result = 7; }"), json!(7));
    // Both permanent workers started with that call; each builds its sandbox.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while engine.sandboxes_built() < 2 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(engine.sandboxes_built(), 2);
    assert_eq!(result_of(&engine, "function before_action() { result = 8; }"), json!(8));
    assert_eq!(engine.sandboxes_built(), 2, "later calls start no thread");
}
