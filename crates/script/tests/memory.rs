//! Runaway scripts leave no memory behind: its own test binary, so no other test moves the RSS.

mod common;

use std::time::Duration;

use common::{RecordingHost, action_globals};
use latchkey_script::{Limits, ScriptEngine};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_failing_runs_leave_memory_flat() {
    let engine = ScriptEngine::new(Limits {
        cpu_time: Duration::from_millis(5),
        memory_bytes: 4 * 1024 * 1024,
        ..Limits::default()
    });
    let host = RecordingHost::default();
    let scripts = [
        "function before_action() { var s = 'x'; while (true) { s = s.repeat(2); } }",
        "function before_action() { var a = []; while (true) { a.push({x: [1, 2, 3]}); } }",
        "function f(n) { return f(n + 1) + 1; } function before_action() { f(0); }",
        "function before_action() { return /(a+)+$/.test('a'.repeat(30) + 'b'); }",
    ];
    let run = |n: usize| {
        for i in 0..n {
            let result = engine.run(
                scripts[i % scripts.len()],
                "before_action",
                action_globals(),
                &host,
                None,
            );
            assert!(result.is_err());
        }
    };
    run(40); // warm the allocator and the workers
    let before = rss_kib();
    run(1000);
    let grown = rss_kib().saturating_sub(before);
    eprintln!("RSS before {before} KiB, grew by {grown} KiB over 1,000 runs");
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}
