//! The `latchkey` binary: `serve` and every local command, on the same configuration and store.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

// mimalloc instead of the system allocator: the proxy allocates per request (headers, URLs,
// bodies), and glibc's malloc was ~10% of the proxy's profile under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod commands;
mod config;
mod data_dir;
mod setup;

fn main() -> std::process::ExitCode {
    let cli = match config::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(config::ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (serve, access_log) = match &cli.command {
        args::Command::Serve(serve) => (true, serve.access_log),
        _ => (false, true),
    };
    setup::init_logging(&cli.global, serve, access_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message before it
/// already holds (many errors quote their source).
fn describe(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
