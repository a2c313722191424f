//! The connectors this Latchkey knows: the built-in catalog (embedded at build time from
//! `connectors/`), directories given with `--connectors`, and custom connectors stored through
//! the API. Later sources override earlier ones by id. A malformed file is reported and skipped;
//! the rest still load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use include_dir::{Dir, include_dir};
use latchkey_core::connector::{Connector, ConnectorError, parse_connector};

static BUILTIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../connectors");

/// Where a connector came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Shipped in the binary.
    Builtin,
    /// A file in a `--connectors` directory.
    File(String),
    /// Stored through the API.
    Custom,
}

/// A parsed connector and where it came from.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The connector.
    pub connector: Arc<Connector>,
    /// Its origin.
    pub origin: Origin,
}

/// All known connectors, by id.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: RwLock<BTreeMap<String, CatalogEntry>>,
    errors: RwLock<Vec<ConnectorError>>,
}

impl Catalog {
    /// The built-in catalog plus each directory in `dirs`, in order.
    pub fn load(dirs: &[impl AsRef<Path>]) -> Self {
        let catalog = Self::default();
        let mut files: Vec<_> = BUILTIN
            .files()
            .filter(|f| is_yaml(f.path()))
            .map(|f| (f.path().display().to_string(), f.contents_utf8().unwrap_or("")))
            .collect();
        files.sort();
        for (name, source) in files {
            // A failure is recorded in `errors()`; the rest still load.
            let _ = catalog.add_source(source, &format!("connectors/{name}"), Origin::Builtin);
        }
        for dir in dirs {
            catalog.load_dir(dir.as_ref());
        }
        catalog
    }

    fn load_dir(&self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.push_error(ConnectorError {
                    file: dir.display().to_string(),
                    line: None,
                    column: None,
                    field: None,
                    message: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        let mut paths: Vec<_> =
            entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_yaml(p)).collect();
        paths.sort();
        for path in paths {
            let origin = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(source) => {
                    let _ = self.add_source(&source, &origin, Origin::File(origin.clone()));
                }
                Err(e) => self.push_error(ConnectorError {
                    file: origin,
                    line: None,
                    column: None,
                    field: None,
                    message: format!("cannot read file: {e}"),
                }),
            }
        }
    }

    /// Parses and adds one connector; on error records it and returns it.
    pub fn add_source(
        &self,
        source: &str,
        file: &str,
        origin: Origin,
    ) -> Result<Arc<Connector>, ConnectorError> {
        let parsed = parse_connector(source, file).and_then(|connector| {
            crate::scripts::check_connector_scripts(&connector, source, file).map(|()| connector)
        });
        match parsed {
            Ok(connector) => {
                let connector = Arc::new(connector);
                self.insert(CatalogEntry { connector: connector.clone(), origin });
                Ok(connector)
            }
            Err(err) => {
                tracing::warn!(error = %err, "connector skipped");
                self.push_error(err.clone());
                Err(err)
            }
        }
    }

    /// Adds or replaces a connector.
    pub fn insert(&self, entry: CatalogEntry) {
        let mut entries = self.entries.write();
        entries.insert(entry.connector.id.clone(), entry);
    }

    /// Removes a connector; true when it existed.
    pub fn remove(&self, id: &str) -> bool {
        let mut entries = self.entries.write();
        entries.remove(id).is_some()
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<CatalogEntry> {
        self.entries.read().get(id).cloned()
    }

    /// Every connector, by id.
    pub fn list(&self) -> Vec<CatalogEntry> {
        self.entries.read().values().cloned().collect()
    }

    /// Files that failed to load.
    pub fn errors(&self) -> Vec<ConnectorError> {
        self.errors.read().clone()
    }

    fn push_error(&self, err: ConnectorError) {
        self.errors.write().push(err);
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_does_not_stop_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.yaml"),
            "id: good\nname: Good\nbase_url: https://good.example\nauth: [{type: none}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "id: bad\nname: Bad\nbase_url: 3\nauth: nope\n",
        )
        .unwrap();
        let catalog = Catalog::load(&[dir.path()]);
        assert!(catalog.get("good").is_some());
        assert!(catalog.get("bad").is_none());
        let errors = catalog.errors();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].file.ends_with("bad.yaml"));
    }
}
