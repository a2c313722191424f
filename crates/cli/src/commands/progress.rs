//! Progress for long work, shown only to a person: on standard error, and only when it is a
//! terminal. Piped output, scripts and tests see none of it (indicatif's hidden bars draw
//! nothing).

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether standard error is a terminal, where progress may be drawn.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `total` units (unknown: a spinner with the count), drawn only when `shown`.
pub fn bar(total: Option<u64>, unit: &str, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(style(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{msg}}"
        ))),
        None => ProgressBar::new_spinner().with_style(style(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{pos}} {unit} {{msg}}"
        ))),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over the bytes of a file, with the rate, drawn only when `shown`.
pub fn bytes_bar(total: Option<u64>, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(style(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )),
        None => ProgressBar::new_spinner()
            .with_style(style("{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec}) {msg}")),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner with the elapsed time and `message`, drawn only when `shown`.
pub fn spinner(message: &str, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner()
        .with_style(style("{spinner} {msg} ({elapsed})"))
        .with_message(message.to_string());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// The style from `template`; the templates here are fixed, so a bad one is a bug that falls
/// back to indicatif's default rather than stopping the command.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}
