//! The data directory: the SQLite database, and on the embedded default the generated master key
//! and API key. Decides which master key to use and refuses to start without the right one.

use std::io::Write;
use std::path::{Path, PathBuf};

use latchkey_core::Secret;
use latchkey_store::{Keyring, MasterKey, SqliteStore, StoreError};

const DB_FILE: &str = "latchkey.db";
const MASTER_KEY_FILE: &str = "master.key";
const API_KEY_FILE: &str = "api.key";

/// Where the master key comes from.
#[derive(Debug, Clone, Default)]
pub enum KeySource {
    /// `LATCHKEY_MASTER_KEY`: base64 of 32 bytes.
    Value(Secret),
    /// `LATCHKEY_MASTER_KEY_FILE`: a file holding the base64 key.
    File(PathBuf),
    /// Neither: use (or on an empty data directory, generate) `master.key` in the data dir.
    #[default]
    DataDir,
}

/// Start-up failures, with the fix in the message.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The data directory cannot be created or read.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The master key is malformed.
    #[error("master key: {0}")]
    BadKey(String),
    /// The database holds data but no key was found.
    #[error(
        "the database {db} exists but no master key was given: set LATCHKEY_MASTER_KEY or \
         LATCHKEY_MASTER_KEY_FILE, or restore {key_file}"
    )]
    MissingKey {
        /// The database path.
        db: String,
        /// Where the generated key would be.
        key_file: String,
    },
    /// The store refused to open (wrong key, migration failure).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A data directory on disk.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Uses `path` (created if missing, mode 0700).
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, SetupError> {
        let path = path.into();
        create_private_dir(&path).map_err(|source| io_err(&path, source))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.path.join(DB_FILE)
    }

    /// Opens the store with the master key from `source`, generating one into the directory
    /// when there is neither a key nor a database yet.
    pub async fn open_store(&self, source: &KeySource) -> Result<SqliteStore, SetupError> {
        let key = self.master_key(source).await?;
        Ok(SqliteStore::open(&self.database(), Keyring::single(key)).await?)
    }

    async fn master_key(&self, source: &KeySource) -> Result<MasterKey, SetupError> {
        let parse = |text: &str| {
            MasterKey::from_base64(text).map_err(|e| SetupError::BadKey(e.to_string()))
        };
        match source {
            KeySource::Value(value) => parse(value.expose()),
            KeySource::File(path) => {
                let text = Secret::new(
                    std::fs::read_to_string(path).map_err(|source| io_err(path, source))?,
                );
                parse(text.expose())
            }
            KeySource::DataDir => {
                let key_file = self.path.join(MASTER_KEY_FILE);
                if key_file.exists() {
                    let text = Secret::new(
                        std::fs::read_to_string(&key_file).map_err(|s| io_err(&key_file, s))?,
                    );
                    return parse(text.expose());
                }
                let db = self.database();
                if db.exists() && SqliteStore::has_secrets(&db).await? {
                    return Err(SetupError::MissingKey {
                        db: db.display().to_string(),
                        key_file: key_file.display().to_string(),
                    });
                }
                let key = MasterKey::generate();
                write_private(&key_file, key.to_base64().expose())
                    .map_err(|s| io_err(&key_file, s))?;
                tracing::warn!(
                    path = %key_file.display(),
                    "generated a new master key; back it up, and in production pass it with \
                     LATCHKEY_MASTER_KEY or LATCHKEY_MASTER_KEY_FILE instead"
                );
                Ok(key)
            }
        }
    }

    /// The server's API key: `given` if set, else the one in the data directory, else a new one
    /// written there. The flag is true when it was just generated (print it once).
    pub fn api_key(&self, given: Option<Secret>) -> Result<(Secret, bool), SetupError> {
        if let Some(key) = given {
            return Ok((key, false));
        }
        let file = self.path.join(API_KEY_FILE);
        if file.exists() {
            let text = std::fs::read_to_string(&file).map_err(|s| io_err(&file, s))?;
            return Ok((Secret::new(text.trim()), false));
        }
        let key = Secret::new(format!("lk_{}", random_token(32)));
        write_private(&file, key.expose()).map_err(|s| io_err(&file, s))?;
        Ok((key, true))
    }
}

/// `bytes` random bytes as URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn io_err(path: &Path, source: std::io::Error) -> SetupError {
    SetupError::Io { path: path.display().to_string(), source }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Writes a new file readable only by its owner (0600); fails if it exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
