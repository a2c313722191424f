//! The limits that keep one hook from holding the server: the wall-clock limit (waits on
//! `http_request` included), the cap on `http_request` calls, the per-group share of the worker
//! threads, and the script size cap.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{RecordingHost, action_globals};
use latchkey_script::{
    HttpRequest, HttpResponse, Limits, MAX_SCRIPT_BYTES, PoolSize, ScriptEngine, ScriptError,
    ScriptHost,
};

/// An API that answers every request after `delay`, or fails at the hook's deadline first, as
/// the engine's host does.
struct SlowApi {
    delay: Duration,
    calls: AtomicUsize,
}

impl SlowApi {
    fn new(delay: Duration) -> Self {
        SlowApi { delay, calls: AtomicUsize::new(0) }
    }
}

impl ScriptHost for SlowApi {
    fn http_request(&self, _: HttpRequest, deadline: Instant) -> Result<HttpResponse, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let until = deadline.saturating_duration_since(Instant::now());
        // The upstream's own slowness, not a wait for readiness.
        std::thread::sleep(self.delay.min(until));
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
        Ok(HttpResponse { status_code: 200, ..HttpResponse::default() })
    }
    fn storage_get(&self, _: &str) -> Option<String> {
        None
    }
    fn storage_set(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn storage_delete(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn storage_keys(&self) -> Vec<String> {
        Vec::new()
    }
    fn log(&self, _: &str) {}
}

/// An API whose requests hang until the test opens the gate, counting those that arrived.
#[derive(Default)]
struct GatedApi {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl GatedApi {
    /// Waits (generously bounded, so a regression fails rather than hangs) until `n` requests
    /// are hanging; the count then.
    fn wait_for_arrivals(&self, n: usize) -> usize {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(60), |(_, arrived)| *arrived < n)
            .unwrap();
        state.1
    }

    fn arrivals(&self) -> usize {
        self.state.lock().unwrap().1
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

impl ScriptHost for GatedApi {
    fn http_request(&self, _: HttpRequest, deadline: Instant) -> Result<HttpResponse, String> {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.changed.notify_all();
        let wait = deadline.saturating_duration_since(Instant::now());
        let (state, timeout) =
            self.changed.wait_timeout_while(state, wait, |(open, _)| !*open).unwrap();
        drop(state);
        if timeout.timed_out() {
            return Err("timed out".into());
        }
        Ok(HttpResponse { status_code: 200, ..HttpResponse::default() })
    }
    fn storage_get(&self, _: &str) -> Option<String> {
        None
    }
    fn storage_set(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn storage_delete(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn storage_keys(&self) -> Vec<String> {
        Vec::new()
    }
    fn log(&self, _: &str) {}
}

const LOOPING: &str = "function before_action() {\n  for (;;) {\n    try { http_request({url: 'https://api.example.com/slow'}); } catch (e) {}\n  }\n}";

#[test]
fn a_hook_looping_http_request_against_a_slow_api_stops_at_its_wall_clock_limit() {
    let engine = ScriptEngine::new(Limits::default());
    let api = SlowApi::new(Duration::from_millis(100));
    let limits =
        Limits { wall_time: Duration::from_secs(1), http_requests: 10_000, ..Limits::default() };
    let err = engine.run(LOOPING, "before_action", action_globals(), &api, Some(limits));
    assert_eq!(err.unwrap_err(), ScriptError::WallTimeLimit(Duration::from_secs(1)));
    // About ten calls fit in a second; without the limit the loop goes on for minutes.
    let calls = api.calls.load(Ordering::SeqCst);
    assert!(calls <= 11, "{calls} calls");
    // The engine goes on.
    let ok =
        engine.run("function before_action() {}", "before_action", action_globals(), &api, None);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn one_slow_http_request_ends_at_the_wall_clock_limit() {
    let engine = ScriptEngine::new(Limits::default());
    let api = SlowApi::new(Duration::from_secs(3600));
    let limits = Limits { wall_time: Duration::from_millis(300), ..Limits::default() };
    let script =
        "function before_action() { http_request({url: 'https://api.example.com/slow'}); }";
    let err = engine.run(script, "before_action", action_globals(), &api, Some(limits));
    assert_eq!(err.unwrap_err(), ScriptError::WallTimeLimit(Duration::from_millis(300)));
}

#[test]
fn the_http_request_cap_fails_the_hook_even_when_the_script_catches() {
    let engine = ScriptEngine::new(Limits::default());
    let host = RecordingHost {
        response: Some(HttpResponse { status_code: 200, ..HttpResponse::default() }),
        ..RecordingHost::default()
    };
    let limits = Limits { http_requests: 5, ..Limits::default() };
    let script = "function before_action() {\n  for (var i = 0; i < 100; i++) {\n    try { http_request({url: 'https://api.example.com/n'}); } catch (e) {}\n  }\n}";
    let err = engine.run(script, "before_action", action_globals(), &host, Some(limits));
    assert_eq!(err.unwrap_err(), ScriptError::HttpRequestLimit(5));
    assert_eq!(host.requests.lock().unwrap().len(), 5);
}

#[test]
fn the_default_http_request_cap_is_twenty_calls() {
    let engine = ScriptEngine::new(Limits::default());
    let host = RecordingHost {
        response: Some(HttpResponse { status_code: 200, ..HttpResponse::default() }),
        ..RecordingHost::default()
    };
    let script = "function before_action() {\n  for (var i = 0; i < 20; i++) http_request({url: 'https://api.example.com/n'});\n}";
    let ok = engine.run(script, "before_action", action_globals(), &host, None);
    assert!(ok.is_ok(), "{ok:?}");
    let one_more = script.replace("i < 20", "i < 21");
    let err = engine.run(&one_more, "before_action", action_globals(), &host, None);
    assert_eq!(err.unwrap_err(), ScriptError::HttpRequestLimit(20));
    assert_eq!(host.requests.lock().unwrap().len(), 40);
}

#[test]
fn slow_hooks_of_one_group_do_not_hold_the_workers_another_group_needs() {
    let size = PoolSize::default();
    let engine =
        ScriptEngine::new(Limits { wall_time: Duration::from_secs(120), ..Limits::default() });
    let api = Arc::new(GatedApi::default());
    let slow = "function before_action() { http_request({url: 'https://slow.example.com/'}); }";
    let hooks: Vec<_> = (0..16)
        .map(|_| {
            let (engine, api) = (engine.clone(), Arc::clone(&api));
            std::thread::spawn(move || {
                engine.run_in("slow", slow, "before_action", action_globals(), &*api, None)
            })
        })
        .collect();
    // The slow group holds its share of the threads, every one waiting on the API.
    assert_eq!(api.wait_for_arrivals(size.per_group), size.per_group);

    // Another group's hook runs meanwhile (on this thread: were it queued behind the slow
    // ones it would wait for the gate, which only opens below).
    let fast = "function before_action() { method_request_headers['x-ok'] = '1'; }";
    let outcome = engine
        .run_in("fast", fast, "before_action", action_globals(), &RecordingHost::default(), None)
        .unwrap();
    assert_eq!(outcome.globals["method_request_headers"]["x-ok"], "1");
    // ... while the slow ones are all still blocked, no more of them running than the share.
    assert!(hooks.iter().all(|h| !h.is_finished()));
    assert_eq!(api.arrivals(), size.per_group);

    api.open();
    for hook in hooks {
        assert!(hook.join().unwrap().is_ok());
    }
    assert_eq!(api.arrivals(), 16);
}

#[test]
fn a_call_queued_behind_a_busy_group_ends_at_its_deadline() {
    let engine = ScriptEngine::with_pool(
        Limits::default(),
        PoolSize { workers: 1, max_workers: 1, per_group: 1 },
    );
    let api = Arc::new(GatedApi::default());
    let slow = "function before_action() { http_request({url: 'https://slow.example.com/'}); }";
    let holder = {
        let (engine, api) = (engine.clone(), Arc::clone(&api));
        std::thread::spawn(move || {
            let limits = Limits { wall_time: Duration::from_secs(120), ..Limits::default() };
            engine.run(slow, "before_action", action_globals(), &*api, Some(limits))
        })
    };
    assert_eq!(api.wait_for_arrivals(1), 1);
    let host = RecordingHost::default();
    let limits = Limits { wall_time: Duration::from_millis(200), ..Limits::default() };
    let queued = "function before_action() { console.log('ran'); }";
    let err = engine.run(queued, "before_action", action_globals(), &host, Some(limits));
    assert_eq!(err.unwrap_err(), ScriptError::WallTimeLimit(Duration::from_millis(200)));
    api.open();
    assert!(holder.join().unwrap().is_ok());
    // Its turn came after its caller had given up; the worker goes on with the next call.
    let after =
        engine.run("function before_action() {}", "before_action", action_globals(), &host, None);
    assert!(after.is_ok(), "{after:?}");
}

#[test]
fn a_script_over_the_size_cap_is_refused_without_compiling() {
    let line = "var a = 1;\n";
    let fits = line.repeat(MAX_SCRIPT_BYTES / line.len());
    assert!(latchkey_script::check(&fits).is_ok());
    let big = format!("{fits}{}", line.repeat(2));
    let bytes = big.len();
    assert_eq!(latchkey_script::check(&big), Err(ScriptError::TooLarge { bytes }));
    let engine = ScriptEngine::with_workers(Limits::default(), 1);
    let host = RecordingHost::default();
    let err = engine.run(&big, "before_action", action_globals(), &host, None).unwrap_err();
    assert_eq!(err, ScriptError::TooLarge { bytes });
    assert!(err.to_string().contains("at most 256 KiB"), "{err}");
}

#[test]
fn compiling_a_large_script_is_not_cut_short_by_its_cpu_time() {
    // Parsing ~256 KiB takes longer than 1 ms; only the script's running counts.
    let line = "var a = 1;\n";
    let body = line.repeat((MAX_SCRIPT_BYTES - 100) / line.len());
    let script = format!("{body}function before_action() {{ method_request_headers.x = '1'; }}\n");
    let engine = ScriptEngine::with_workers(Limits::default(), 1);
    let tight = Limits { cpu_time: Duration::from_millis(1), ..Limits::default() };
    let host = RecordingHost::default();
    for _ in 0..2 {
        let outcome = engine.run(&script, "before_action", action_globals(), &host, Some(tight));
        assert_eq!(outcome.unwrap().globals["method_request_headers"]["x"], "1");
    }
}
