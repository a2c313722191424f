//! The `latchkey` binary: `serve` and every local command, on the same configuration and store.

mod args;
mod commands;
mod setup;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    setup::init_logging(&cli.global);
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
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
