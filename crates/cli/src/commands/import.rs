//! `latchkey connection import FILE`: JSON Lines of `POST /v1/connections` bodies, read as a
//! stream on a thread of their own (decrypted there if the file is an age file) and stored in
//! batches, one transaction each. A bad line is reported with its number and reason; the
//! others go in.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use latchkey_engine::{Engine, EngineError, EnvironmentId};
use latchkey_server::CreateConnection;

use super::{progress, sealed_file};
use crate::args::Format;

/// What `connection import` was asked to do.
pub struct Options {
    pub environment: EnvironmentId,
    pub file: PathBuf,
    pub test: bool,
    pub skip_existing: bool,
    pub identity: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub batch_size: u32,
    pub output: Format,
}

/// One line that did not go in.
#[derive(Debug, serde::Serialize)]
struct LineError {
    line: u64,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

impl LineError {
    fn new(line: u64, error: &EngineError) -> Self {
        let field = match error {
            EngineError::InvalidRequest { field, .. } if !field.is_empty() => Some(field.clone()),
            _ => None,
        };
        Self { line, code: error.code(), field, message: error.to_string() }
    }
}

/// The counts the summary shows.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    imported: u64,
    failed: u64,
    skipped_existing: u64,
    errors: Vec<LineError>,
    /// Set when the file could not be read to its end (the lines before were processed).
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<String>,
}

/// What the reading thread sends: parsed lines with their numbers, or why reading stopped.
enum Chunk {
    Lines(Vec<(u64, Result<CreateConnection, EngineError>)>),
    Failed(String),
}

pub async fn run(engine: &Engine, options: Options) -> anyhow::Result<ExitCode> {
    let shown = options.output == Format::Text && progress::on_terminal();
    let (source, total): (Box<dyn Read + Send>, Option<u64>) = if options.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&options.file)
            .with_context(|| format!("cannot open {}", options.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let bar = progress::bytes_bar(total, shown);
    let mut input = BufReader::new(bar.wrap_read(source));
    let head = input.fill_buf().context("cannot read the file")?;
    let lines: Box<dyn BufRead + Send> = if sealed_file::is_age(head) {
        let keys = sealed_file::Keys {
            identity: options.identity.as_deref(),
            passphrase_file: options.passphrase_file.as_deref(),
        };
        sealed_file::open(input, &keys, |text| bar.suspend(|| sealed_file::prompt(text)))?
    } else {
        Box::new(input)
    };

    let batch_size = options.batch_size as usize;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let reader = std::thread::spawn(move || read_lines(lines, batch_size, &tx));

    let mut summary = Summary::default();
    let report = |summary: &mut Summary, error: LineError| {
        if options.output == Format::Text {
            let field = error.field.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
            bar.suspend(|| eprintln!("line {}: {}{field}", error.line, error.message));
        }
        summary.failed += 1;
        summary.errors.push(error);
    };
    while let Some(message) = rx.recv().await {
        let lines = match message {
            Chunk::Lines(lines) => lines,
            Chunk::Failed(why) => {
                summary.unreadable = Some(why);
                break;
            }
        };
        let mut numbers = Vec::with_capacity(lines.len());
        let mut batch = Vec::with_capacity(lines.len());
        for (line, parsed) in lines {
            match parsed {
                Ok(body) => {
                    numbers.push(line);
                    batch.push(body.into_new(options.environment.clone(), options.test));
                }
                Err(e) => report(&mut summary, LineError::new(line, &e)),
            }
        }
        let results = engine.connections().import(batch).await;
        for (line, result) in numbers.into_iter().zip(results) {
            match result {
                Ok(_) => summary.imported += 1,
                Err(EngineError::Conflict(_)) if options.skip_existing => {
                    summary.skipped_existing += 1;
                }
                Err(e @ EngineError::Conflict(_)) => {
                    let mut error = LineError::new(line, &e);
                    error.message.push_str(" (--skip-existing skips such lines)");
                    report(&mut summary, error);
                }
                Err(e) => report(&mut summary, LineError::new(line, &e)),
            }
        }
        bar.set_message(format!(
            "{} imported, {} failed, {} skipped",
            summary.imported, summary.failed, summary.skipped_existing
        ));
    }
    bar.finish_and_clear();
    // The reader ends once its channel is closed or the input is done.
    drop(rx);
    if reader.join().is_err() {
        summary.unreadable = Some("the reading thread panicked".into());
    }
    print_summary(&summary, options.output)?;
    let ok = summary.failed == 0 && summary.unreadable.is_none();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Reads `input` line by line, parses each non-blank line and sends them on in batches.
fn read_lines(
    mut input: Box<dyn BufRead + Send>,
    batch_size: usize,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut buffer = Vec::new();
    let mut number = 0u64;
    loop {
        buffer.clear();
        match input.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send(Chunk::Lines(std::mem::take(&mut batch)));
                let _ = tx.blocking_send(Chunk::Failed(format!(
                    "the file could not be read past line {number}: {e}"
                )));
                return;
            }
        }
        number += 1;
        let parsed = match std::str::from_utf8(&buffer) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => CreateConnection::from_json(text),
            Err(_) => Err(EngineError::invalid("", "the line is not UTF-8")),
        };
        batch.push((number, parsed));
        if batch.len() >= batch_size
            && tx.blocking_send(Chunk::Lines(std::mem::take(&mut batch))).is_err()
        {
            return;
        }
    }
    // Whatever is left, then the end (the channel closes when `tx` is dropped).
    if !batch.is_empty() {
        let _ = tx.blocking_send(Chunk::Lines(batch));
    }
    buffer.fill(0);
}

fn print_summary(summary: &Summary, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(summary)?),
        Format::Text => {
            println!("imported: {}", summary.imported);
            println!("failed: {}", summary.failed);
            println!("skipped (existing): {}", summary.skipped_existing);
            if let Some(why) = &summary.unreadable {
                eprintln!("error: {why}");
            }
        }
    }
    Ok(())
}
