//! The data directory: the SQLite database (unless a PostgreSQL URL is given), and on the
//! embedded default the generated master key and API key. Decides which store and master key to
//! use and refuses to start without the right key. This bootstrap belongs to the CLI: an
//! embedder opens its store itself (docs/embedding.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_store::postgres::is_postgres_url;
use latchkey_store::{MasterKey, MasterKeys, PgStore, SqliteStore, Store, StoreError};

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

/// Where the store keeps its data.
#[derive(Debug, Clone, Default)]
pub enum Database {
    /// `latchkey.db` (SQLite) in the data directory: the embedded default.
    #[default]
    DataDir,
    /// A PostgreSQL database, shared by several instances. The URL may hold a password.
    Postgres(Secret),
}

impl Database {
    /// The database `--database-url` / `LATCHKEY_DATABASE_URL` names: a `postgres://` or
    /// `postgresql://` URL selects PostgreSQL; none (or an empty one) the SQLite file in the
    /// data directory. Any other URL is refused rather than silently ignored.
    pub fn from_url(url: Option<&Secret>) -> Result<Self, SetupError> {
        match url.map(|url| url.expose().trim()) {
            None | Some("") => Ok(Self::DataDir),
            Some(text) if is_postgres_url(text) => Ok(Self::Postgres(Secret::new(text))),
            Some(_) => Err(SetupError::UnsupportedDatabase),
        }
    }
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
    /// The database URL names a database Latchkey cannot use.
    #[error(
        "the database URL is not a PostgreSQL URL (postgres://… or postgresql://); leave it \
         unset to use SQLite in the data directory"
    )]
    UnsupportedDatabase,
    /// The database holds data but no key was found.
    #[error(
        "the database {db} holds encrypted secrets but no master key was given: set \
         LATCHKEY_MASTER_KEY or LATCHKEY_MASTER_KEY_FILE, or restore {key_file}"
    )]
    MissingKey {
        /// The database path, or the PostgreSQL server and database (never the URL's password).
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

    /// Opens the store in `database` with the master key from `source`. With neither a key
    /// given nor one in the directory, a key is generated into the directory only when no
    /// database that start-up could reach (the directory's SQLite file, and the PostgreSQL
    /// database if one is named) holds secrets yet; otherwise [`SetupError::MissingKey`].
    ///
    /// `previous` master keys (each the base64 of one key) open values sealed before a
    /// rotation. Each key's version is the one whose key check it opens; a current key that
    /// opens none is a new key (highest version + 1), accepted only when a previous key opens
    /// the database. See `latchkey keys rotate`.
    pub async fn open_store(
        &self,
        source: &KeySource,
        previous: &[Secret],
        database: &Database,
    ) -> Result<Arc<dyn Store>, SetupError> {
        let previous = previous
            .iter()
            .enumerate()
            .map(|(n, text)| {
                MasterKey::from_base64(text.expose())
                    .map_err(|e| SetupError::BadKey(format!("previous key #{}: {e}", n + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = MasterKeys { current: self.master_key(source, database).await?, previous };
        Ok(match database {
            Database::DataDir => Arc::new(SqliteStore::open(&self.database(), keys).await?),
            Database::Postgres(url) => Arc::new(PgStore::connect(url.expose(), keys).await?),
        })
    }

    async fn master_key(
        &self,
        source: &KeySource,
        database: &Database,
    ) -> Result<MasterKey, SetupError> {
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
                let missing = |db: String| SetupError::MissingKey {
                    db,
                    key_file: key_file.display().to_string(),
                };
                let db = self.database();
                if db.exists() && SqliteStore::has_secrets(&db).await? {
                    return Err(missing(db.display().to_string()));
                }
                if let Database::Postgres(url) = database
                    && PgStore::has_secrets(url.expose()).await?
                {
                    return Err(missing(describe_postgres(url.expose())));
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
        let key = Secret::new(format!("lk_{}", latchkey_engine::random_token(32)));
        write_private(&file, key.expose()).map_err(|s| io_err(&file, s))?;
        Ok((key, true))
    }
}

/// Writes `key` (base64) to a new file readable only by its owner (0600); refuses to replace
/// an existing file.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), SetupError> {
    write_private(path, key.to_base64().expose()).map_err(|source| io_err(path, source))
}

/// A PostgreSQL URL without its user, password and parameters, for messages.
fn describe_postgres(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => format!(
            "postgres://{}:{}{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432),
            url.path()
        ),
        Err(_) => "(the PostgreSQL database)".to_owned(),
    }
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
