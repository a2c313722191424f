//! Median cost of a small `before_action` hook through the engine (a hardened sandbox reused per
//! worker), of the same call on the caller's thread (`run_here`, the engine's path for hooks that
//! call no host function), of the same call without the thread hop, of building a sandbox, and of an unisolated
//! reused context for comparison.
//!
//! `cargo run --release -p latchkey-script --example bench_hook`

use std::time::{Duration, Instant};

use latchkey_script::{HttpRequest, HttpResponse, Limits, ScriptEngine, ScriptHost};
use rquickjs::{Context, Function, Runtime, Value};
use serde_json::json;

const BEARER: &str = "function before_action() {\n  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value;\n  return true;\n}";

#[derive(Debug)]
struct NoHost;

impl ScriptHost for NoHost {
    fn http_request(&self, _: HttpRequest, _: std::time::Instant) -> Result<HttpResponse, String> {
        Err("no network in the benchmark".into())
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

fn globals() -> serde_json::Map<String, serde_json::Value> {
    match json!({
        "method_request_headers": {"Accept": "application/json"},
        "method_request_parameters": {"page": "1"},
        "method_request": {"name": "x"},
        "method_endpoint": "https://api.example.com/v1/items",
        "method_auth_value": "s3cr3t-token",
        "script_parameters": {},
        "action_data": null,
    }) {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn paced_and_back_to_back(engine: &ScriptEngine, iterations: usize) -> (Duration, Duration) {
    let mut paced = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        let out = engine.run(BEARER, "before_action", g, &NoHost, None).unwrap();
        paced.push(started.elapsed());
        assert!(out.defined);
        std::thread::sleep(Duration::from_micros(500)); // requests arrive apart
    }
    let mut back_to_back = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        engine.run(BEARER, "before_action", g, &NoHost, None).unwrap();
        back_to_back.push(started.elapsed());
    }
    (median(paced), median(back_to_back))
}

/// The same calls through `run_here`, on this thread, once this thread has its sandbox.
fn here_paced_and_back_to_back(engine: &ScriptEngine, iterations: usize) -> (Duration, Duration) {
    engine.prepare_here();
    // The sandboxes are built on the engine's builder thread: poll until this thread has one.
    while engine.run_here(BEARER, "before_action", &globals(), &NoHost, None).is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = engine.calls_run_here();
    let mut paced = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        let out = engine.run_here(BEARER, "before_action", &g, &NoHost, None);
        paced.push(started.elapsed());
        assert!(out.expect("run on this thread").unwrap().defined);
        std::thread::sleep(Duration::from_micros(500));
    }
    let mut back_to_back = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        let out = engine.run_here(BEARER, "before_action", &g, &NoHost, None);
        back_to_back.push(started.elapsed());
        out.expect("run on this thread").unwrap();
    }
    // Every call above ran here; none fell back to a worker.
    assert_eq!(engine.calls_run_here(), before + 2 * iterations as u64);
    (median(paced), median(back_to_back))
}

fn main() {
    let iterations = 2000;
    let engine = ScriptEngine::new(Limits::default());
    std::thread::sleep(Duration::from_millis(50)); // let the workers prepare
    let (paced, back_to_back) = paced_and_back_to_back(&engine, iterations);
    let (here_paced, here_back_to_back) = here_paced_and_back_to_back(&engine, iterations);
    let single = ScriptEngine::with_workers(Limits::default(), 1);
    std::thread::sleep(Duration::from_millis(50));
    let (single_paced, single_back_to_back) = paced_and_back_to_back(&single, iterations);

    // The thread hop alone: a call the worker refuses before any JavaScript (the event name is
    // not an identifier).
    let mut hop = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        let _ = single.run(BEARER, "-", g, &NoHost, None).unwrap_err();
        hop.push(started.elapsed());
        std::thread::sleep(Duration::from_micros(500));
    }

    // What the machine itself charges for the same two wake-ups: a bare channel round trip to
    // a thread that was waiting.
    let (to_thread, from_main) = std::sync::mpsc::channel::<Instant>();
    let (to_main, from_thread) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for started in from_main {
            let _ = to_main.send(started);
        }
    });
    let mut round_trip = Vec::new();
    for _ in 0..iterations {
        to_thread.send(Instant::now()).unwrap();
        round_trip.push(from_thread.recv().unwrap().elapsed());
        std::thread::sleep(Duration::from_micros(500));
    }

    // The same calls made directly in one sandbox on this thread: no worker, no thread hop.
    let g = globals();
    let mut in_place =
        latchkey_script::measure_in_place(BEARER, "before_action", &g, iterations, Duration::ZERO)
            .unwrap();
    let in_place_paced = latchkey_script::measure_in_place(
        BEARER,
        "before_action",
        &g,
        iterations,
        Duration::from_micros(500),
    )
    .unwrap();
    let in_place_first = in_place.remove(0);

    let mut fresh = Vec::new();
    let mut teardown = Vec::new();
    for _ in 0..200 {
        let (built, dropped) = latchkey_script::measure_fresh_sandbox(Limits::default()).unwrap();
        fresh.push(built);
        teardown.push(dropped);
    }

    // For comparison: one context reused with no isolation at all, globals re-created per call.
    let runtime = Runtime::new().unwrap();
    let context = Context::full(&runtime).unwrap();
    let mut reused = Vec::new();
    for _ in 0..iterations {
        let g = globals();
        let started = Instant::now();
        context.with(|ctx| {
            let global = ctx.globals();
            for (k, v) in &g {
                let value = ctx.json_parse(serde_json::to_string(v).unwrap()).unwrap();
                global.set(k.as_str(), value).unwrap();
            }
            ctx.eval::<(), _>(BEARER).unwrap();
            let f: Function = global.get("before_action").unwrap();
            f.call::<_, Value>(()).unwrap();
            for k in g.keys() {
                let v: Value = global.get(k.as_str()).unwrap();
                let _ = ctx.json_stringify(v).unwrap();
            }
        });
        reused.push(started.elapsed());
    }

    println!("hook through the engine, requests 0.5 ms apart:  median {paced:?}");
    println!("hook through the engine, back to back:            median {back_to_back:?}");
    println!("same hook on the caller's thread (run_here), 0.5 ms apart: median {here_paced:?}");
    println!(
        "same hook on the caller's thread (run_here), back to back: median {here_back_to_back:?}"
    );
    println!(
        "run_here / engine: {:.2} paced, {:.2} back to back",
        here_paced.as_secs_f64() / paced.as_secs_f64(),
        here_back_to_back.as_secs_f64() / back_to_back.as_secs_f64()
    );
    println!("same, engine with one worker, 0.5 ms apart:       median {single_paced:?}");
    println!("same, engine with one worker, back to back:       median {single_back_to_back:?}");
    println!("thread hop alone (no JavaScript), 0.5 ms apart:  median {:?}", median(hop));
    println!("bare channel round trip to a thread, 0.5 ms apart: median {:?}", median(round_trip));
    println!(
        "same, no thread hop, 0.5 ms apart:                 median {:?}",
        median(in_place_paced)
    );
    println!(
        "hook in one reused hardened sandbox, no thread hop: median {:?} (first call, compiling: {in_place_first:?})",
        median(in_place)
    );
    println!(
        "fresh sandbox (runtime, context, functions, hardening): median {:?} to build, {:?} to drop",
        median(fresh),
        median(teardown)
    );
    println!("same hook in one reused context (not isolated):   median {:?}", median(reused));
}
