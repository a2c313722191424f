//! `latchkey connection export`: every connection of the environment as a `POST /v1/connections` body, one JSON
//! line each, the format `connection import` reads. Credentials only with
//! `--with-credentials`, and then the whole output is an age file: no credential is ever
//! written in plain text.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use latchkey_core::ConnectionId;
use latchkey_engine::{ConnectionFilter, Engine, EnvironmentId, MAX_PAGE_SIZE, PageRequest};
use latchkey_server::CreateConnection;

use super::progress;
use super::sealed_file::{Seal, SealedWriter};

/// What `connection export` was asked to do.
pub struct Options {
    pub environment: EnvironmentId,
    pub output: Option<PathBuf>,
    pub with_credentials: bool,
    pub recipients: Vec<String>,
    pub passphrase_file: Option<PathBuf>,
}

pub async fn run(engine: &Engine, options: Options) -> anyhow::Result<ExitCode> {
    // The passphrase is settled before anything is written.
    let seal = if options.with_credentials {
        Some(Seal::choose(&options.recipients, options.passphrase_file.as_deref())?)
    } else {
        None
    };
    let sink: Box<dyn Write> = match &options.output {
        Some(path) => Box::new(create_private(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let sink = BufWriter::new(sink);
    let mut out: Box<dyn FinishWrite> = match seal {
        Some(seal) => Box::new(SealedWriter::new(sink, seal)?),
        None => Box::new(sink),
    };
    let connections = every_connection(engine, &options.environment).await?;
    let bar = progress::bar(
        Some(connections.len() as u64),
        "connections",
        options.output.is_some() && progress::on_terminal(),
    );
    let mut written = 0u64;
    for summary in &connections {
        let body = if options.with_credentials {
            let id = ConnectionId::new(summary.id.as_str())?;
            match engine.connections().get(&id).await {
                Ok(mut record) => {
                    if is_session(engine, &record) {
                        // Not a credential the user gave: the import logs in again.
                        record.credentials.remove(latchkey_core::auth::session::SESSION_TOKEN);
                    }
                    CreateConnection::from_record(&record)?
                }
                // Deleted since the list was read.
                Err(latchkey_engine::EngineError::ConnectionNotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            CreateConnection::from_summary(summary)?
        };
        serde_json::to_writer(&mut out, &body.to_json()?)?;
        out.write_all(b"\n")?;
        written += 1;
        bar.inc(1);
    }
    out.finish()?;
    bar.finish_and_clear();
    if let Some(path) = &options.output {
        eprintln!("exported {written} connections to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every connection of `environment`, read a page at a time.
async fn every_connection(
    engine: &Engine,
    environment: &EnvironmentId,
) -> anyhow::Result<Vec<latchkey_engine::ConnectionSummary>> {
    let filter = ConnectionFilter::in_environment(environment.as_str());
    let mut page = PageRequest::first(MAX_PAGE_SIZE);
    let mut all = Vec::new();
    loop {
        let found = engine.connections().list(&filter, &page).await?;
        all.extend(found.items);
        match found.next {
            Some(next) => page.after = Some(next),
            None => return Ok(all),
        }
    }
}

/// Whether the connection logs in with a session method (its `session_token` is derived).
fn is_session(engine: &Engine, record: &latchkey_engine::store::ConnectionRecord) -> bool {
    let Ok(connector) = latchkey_core::ConnectorId::new(record.connector.as_str()) else {
        return false;
    };
    engine.connectors().get(&connector).is_ok_and(|entry| {
        matches!(
            entry.connector.auth_method(Some(&record.auth_method)),
            Some(latchkey_core::AuthMethod::Session(_))
        )
    })
}

/// A writer that has an end to write (the age file's last chunk and armor), or only a flush.
trait FinishWrite: Write {
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

impl<W: Write> FinishWrite for BufWriter<W> {
    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        self.flush()?;
        Ok(())
    }
}

impl<W: Write> FinishWrite for SealedWriter<W> {
    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        let mut inner = SealedWriter::finish(*self)?;
        inner.flush()?;
        Ok(())
    }
}

/// Creates (or truncates) `path` readable by its owner alone.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("cannot create {}", path.display()))
}
