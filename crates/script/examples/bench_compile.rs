//! What the largest script a connector may carry costs to compile: the load-time check
//! (`latchkey_script::check`, run once per upload on a blocking thread) and a first hook call in a
//! worker's sandbox (compiled once per sandbox, then kept), for a script of
//! `latchkey_script::MAX_SCRIPT_BYTES`.
//!
//! `cargo run --release -p latchkey-script --example bench_compile`

use std::time::Instant;

use latchkey_script::{
    HttpRequest, HttpResponse, Limits, MAX_SCRIPT_BYTES, ScriptEngine, ScriptHost,
};

struct NoHost;

impl ScriptHost for NoHost {
    fn http_request(&self, _: HttpRequest, _: Instant) -> Result<HttpResponse, String> {
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

fn main() {
    // Function definitions, as a large connector script has them.
    let mut source = String::new();
    let mut i = 0;
    loop {
        let f = format!(
            "function f{i}(a, b) {{ var x = a + b * {i}; return x > 10 ? 'big' : 'small'; }}\n"
        );
        if source.len() + f.len() + 40 > MAX_SCRIPT_BYTES {
            break;
        }
        source.push_str(&f);
        i += 1;
    }
    source.push_str("function before_action() { return true; }\n");
    println!("script: {} bytes ({i} functions)", source.len());

    let started = Instant::now();
    latchkey_script::check(&source).unwrap();
    println!("check (load time): {:?}", started.elapsed());

    let engine = ScriptEngine::with_workers(Limits::default(), 1);
    let globals = serde_json::Map::new();
    for call in ["first call (compiles)", "second call (kept)"] {
        let started = Instant::now();
        engine.run(&source, "before_action", globals.clone(), &NoHost, None).unwrap();
        println!("{call}: {:?}", started.elapsed());
    }
}
