//! Start-up shared by every command: logging, the data directory and its keys, the catalog, the
//! outbound client, the engine.

use std::sync::Arc;

use anyhow::Context;
use latchkey_core::Secret;
use latchkey_engine::{Catalog, DataDir, Engine, KeySource};
use tracing_subscriber::EnvFilter;

use crate::args::Global;

/// Logs go to stderr, as text or JSON lines.
pub fn init_logging(global: &Global) {
    let filter = EnvFilter::try_new(&global.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if global.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
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

/// The engine over the data directory's store.
pub async fn engine(global: &Global) -> anyhow::Result<(Arc<Engine>, DataDir)> {
    let data_dir = DataDir::new(&global.data_dir)?;
    let store = data_dir.open_store(&key_source()).await?;
    let catalog = Catalog::load(&global.connectors);
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig {
        block_private_addresses: global.block_private_addresses,
        ..latchkey_net::ClientConfig::default()
    })
    .context("cannot build the HTTP client")?;
    let engine = Engine::new(Arc::new(store), catalog, net).await?;
    Ok((Arc::new(engine), data_dir))
}

/// The catalog alone, for commands that need no store.
pub fn catalog(global: &Global) -> Catalog {
    Catalog::load(&global.connectors)
}
