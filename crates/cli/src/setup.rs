//! Start-up shared by every command: logging, the data directory and its keys, the catalog, the
//! outbound client, the engine.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine};
use tracing_subscriber::EnvFilter;

use crate::args::Global;
use crate::data_dir::{DataDir, Database, KeySource};

/// Logs go to stderr, as text or JSON lines, coloured only on a terminal and without `NO_COLOR`.
/// `serve` logs at `info` by default; the other commands print their result, so they log only
/// warnings unless `--log` says otherwise. `access_log: false` silences the per-request lines.
pub fn init_logging(global: &Global, serve: bool, access_log: bool) {
    let default = if serve { "info" } else { "warn" };
    let mut directives = global.log.clone().unwrap_or_else(|| default.to_owned());
    if !access_log {
        directives.push_str(&format!(",{}=off", latchkey_server::telemetry::ACCESS_LOG));
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")));
    if global.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Colour when the output is a terminal and `NO_COLOR` is unset or empty (no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Where the API key comes from, as said at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `LATCHKEY_API_KEY`.
    Environment,
    /// The file named by `LATCHKEY_API_KEY_FILE`.
    File(std::path::PathBuf),
    /// `api.key` in the data directory, from an earlier start.
    DataDir(std::path::PathBuf),
    /// Generated now into `api.key` in the data directory.
    Generated(std::path::PathBuf),
}

impl std::fmt::Display for ApiKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => f.write_str("environment (LATCHKEY_API_KEY)"),
            Self::File(path) => write!(f, "file {} (LATCHKEY_API_KEY_FILE)", path.display()),
            Self::DataDir(path) => write!(f, "file {} (data directory)", path.display()),
            Self::Generated(path) => write!(f, "generated into {}", path.display()),
        }
    }
}

/// Keys shorter than this draw a warning at start-up (a generated key has 35 characters).
pub const SHORT_API_KEY: usize = 32;

/// The API key given by `LATCHKEY_API_KEY` or `LATCHKEY_API_KEY_FILE`, and which one.
pub fn api_key_from_env() -> anyhow::Result<Option<(Secret, ApiKeySource)>> {
    let source = if std::env::var_os("LATCHKEY_API_KEY").is_some_and(|v| !v.is_empty()) {
        ApiKeySource::Environment
    } else if let Some(path) = std::env::var_os("LATCHKEY_API_KEY_FILE") {
        ApiKeySource::File(path.into())
    } else {
        return Ok(None);
    };
    Ok(secret_from_env("LATCHKEY_API_KEY")?.map(|key| (key, source)))
}

/// Where the master key comes from: `LATCHKEY_MASTER_KEY`, `LATCHKEY_MASTER_KEY_FILE`, or the
/// data directory.
fn key_source() -> KeySource {
    if let Some(value) = std::env::var_os("LATCHKEY_MASTER_KEY") {
        return KeySource::Value(Secret::new(value.to_string_lossy().into_owned()));
    }
    if let Some(path) = std::env::var_os("LATCHKEY_MASTER_KEY_FILE") {
        return KeySource::File(path.into());
    }
    KeySource::DataDir
}

/// Previous master keys, to open what they sealed until `latchkey keys rotate` re-seals it:
/// `LATCHKEY_MASTER_KEY_PREVIOUS` (base64 keys separated by commas or white space) and the
/// file named by `LATCHKEY_MASTER_KEY_PREVIOUS_FILE` (the same, typically one key per line).
pub fn previous_keys() -> anyhow::Result<Vec<Secret>> {
    let mut texts = Vec::new();
    if let Some(value) = std::env::var_os("LATCHKEY_MASTER_KEY_PREVIOUS") {
        texts.push(Secret::new(value.to_string_lossy().into_owned()));
    }
    if let Some(path) = std::env::var_os("LATCHKEY_MASTER_KEY_PREVIOUS_FILE") {
        texts.push(Secret::new(std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read LATCHKEY_MASTER_KEY_PREVIOUS_FILE ({})", path.to_string_lossy())
        })?));
    }
    Ok(texts
        .iter()
        .flat_map(|text| {
            text.expose()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|key| !key.is_empty())
                .map(Secret::new)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The configured store alone (PostgreSQL, or SQLite in the data directory), opened with the
/// current and previous master keys.
pub async fn store(global: &Global) -> anyhow::Result<Arc<dyn latchkey_store::Store>> {
    let data_dir = DataDir::new(&global.data_dir)?;
    let database = Database::from_url(global.database_url.as_ref())?;
    Ok(data_dir.open_store(&key_source(), &previous_keys()?, &database).await?)
}

/// A secret from `NAME`, or from the file named by `NAME_FILE`.
pub fn secret_from_env(name: &str) -> anyhow::Result<Option<Secret>> {
    if let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) {
        return Ok(Some(Secret::new(value.to_string_lossy().into_owned())));
    }
    if let Some(path) = std::env::var_os(format!("{name}_FILE")) {
        let text =
            Secret::new(std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {name}_FILE ({})", path.to_string_lossy())
            })?);
        return Ok(Some(Secret::new(text.expose().trim())));
    }
    Ok(None)
}

/// The engine over the configured store (PostgreSQL, or SQLite in the data directory).
pub async fn engine(global: &Global) -> anyhow::Result<(Arc<Engine>, DataDir)> {
    engine_with(global, |builder| builder).await
}

/// The engine, with what `configure` adds to its builder (`serve`'s webhook and schedules).
pub async fn engine_with(
    global: &Global,
    configure: impl FnOnce(latchkey_engine::EngineBuilder) -> latchkey_engine::EngineBuilder,
) -> anyhow::Result<(Arc<Engine>, DataDir)> {
    let data_dir = DataDir::new(&global.data_dir)?;
    let database = Database::from_url(global.database_url.as_ref())?;
    let store = data_dir.open_store(&key_source(), &previous_keys()?, &database).await?;
    let catalog = Catalog::load(&global.connectors);
    let extra_root_certificates = match &global.ca_file {
        Some(path) => {
            vec![std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?]
        }
        None => Vec::new(),
    };
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig {
        block_private_addresses: global.block_private_addresses,
        max_streamed_response_bytes: global.proxy_max_response_bytes,
        extra_root_certificates,
        ..latchkey_net::ClientConfig::default()
    })
    .context("cannot build the HTTP client")?;
    let limits = latchkey_engine::ScriptLimits {
        cpu_time: std::time::Duration::from_millis(global.script_cpu_ms.max(1)),
        memory_bytes: global.script_memory_mib.max(1).saturating_mul(1024 * 1024),
        wall_time: std::time::Duration::from_millis(global.script_wall_ms.max(1)),
        http_requests: global.script_http_requests,
    };
    let builder = configure(Engine::builder(store, catalog, net).script_limits(limits));
    Ok((builder.build().await?, data_dir))
}

/// The catalog alone, for commands that need no store.
pub fn catalog(global: &Global) -> Catalog {
    Catalog::load(&global.connectors)
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
