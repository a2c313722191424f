//! Configuration layering: built-in defaults ← `latchkey.toml` ← `LATCHKEY_*` environment (a
//! `*_FILE` variable reads a secret from a file) ← flags.
//!
//! clap already ranks a flag above its environment variable above its default; the file slots
//! in as the defaults. It is `--config PATH` (or `LATCHKEY_CONFIG`), which must exist, or else
//! `latchkey.toml` in the data directory when there is one. Its keys are the long flag names
//! with `_` for `-` (`listen`, `script_cpu_ms`, …); an unknown key or a value of the wrong type
//! stops start-up with an error naming the file and the key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::args::Cli;

/// The file read from the data directory when no `--config` is given.
pub const FILE_NAME: &str = "latchkey.toml";

/// Everything `latchkey.toml` may set: every global option and every `serve` option. The
/// fields are only checked here (names and types); their values reach the command line as
/// defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read through the TOML table; the struct is the schema
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    environment: Option<String>,
    connectors: Option<Vec<PathBuf>>,
    log: Option<String>,
    log_json: Option<bool>,
    block_private_addresses: Option<bool>,
    ca_file: Option<PathBuf>,
    proxy_max_request_bytes: Option<u64>,
    proxy_max_response_bytes: Option<u64>,
    script_cpu_ms: Option<u64>,
    script_memory_mib: Option<u64>,
    script_wall_ms: Option<u64>,
    script_http_requests: Option<u32>,
    // `serve`
    listen: Option<String>,
    public_url: Option<String>,
    webhook_url: Option<String>,
    refresh_interval: Option<u64>,
    refresh_rate: Option<u32>,
    check_interval: Option<CheckInterval>,
    access_log: Option<bool>,
    audit_retention: Option<u32>,
    refresh_exhausted_after: Option<u64>,
    webhook_retention: Option<u32>,
    operation_log: Option<bool>,
    operation_retention: Option<u32>,
    operation_max_rows: Option<u64>,
    otlp_endpoint: Option<String>,
    otlp_headers: Option<Vec<String>>,
    redis_url: Option<String>,
    console_oidc_issuer: Option<String>,
    console_oidc_client_id: Option<String>,
    console_oidc_client_secret: Option<String>,
    console_oidc_allow: Option<Vec<String>>,
}

/// The keys of [`FileConfig`] that belong to `serve` rather than to every command.
const SERVE_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "webhook_url",
    "refresh_interval",
    "refresh_rate",
    "check_interval",
    "access_log",
    "audit_retention",
    "refresh_exhausted_after",
    "webhook_retention",
    "operation_log",
    "operation_retention",
    "operation_max_rows",
    "otlp_endpoint",
    "otlp_headers",
    "redis_url",
    "console_oidc_issuer",
    "console_oidc_client_id",
    "console_oidc_client_secret",
    "console_oidc_allow",
];

/// `check_interval` in the file: `"24h"`, `"off"`, or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)] // read through the TOML table; the enum is the schema
enum CheckInterval {
    Text(String),
    Seconds(u64),
}

/// Secrets that may also be given as `NAME_FILE` (a file holding the value), by argument id.
const SECRET_FILES: &[(&str, &str)] = &[
    ("database_url", "LATCHKEY_DATABASE_URL"),
    ("console_oidc_client_secret", "LATCHKEY_CONSOLE_OIDC_CLIENT_SECRET"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line itself is wrong (or asks for help): clap prints it.
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or holds an unknown key or a wrong value.
    #[error("configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A `*_FILE` variable names a file that cannot be read.
    #[error("cannot read {variable} ({path}): {source}")]
    SecretFile {
        /// The variable, e.g. `LATCHKEY_DATABASE_URL_FILE`.
        variable: String,
        /// The file it names.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Parses `args` (the program name first) over the configuration file and the environment.
pub fn load<I, T>(args: I) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    load_with(args, |name| std::env::var_os(name))
}

/// [`load`] with the environment given as a lookup, for tests. (Flags and plain variables are
/// still read by clap from the process environment; `env` serves the `*_FILE` variables.)
fn load_with<I, T>(args: I, env: impl Fn(&str) -> Option<OsString>) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // First pass: only to learn where the file is (`--config`, or the data directory).
    let first = Cli::try_parse_from(&args)?;
    let (path, required) = match &first.global.config {
        Some(path) => (path.clone(), true),
        None => (first.global.data_dir.join(FILE_NAME), false),
    };
    let mut defaults = match read_file(&path, required)? {
        Some(table) => table_defaults(table),
        None => Vec::new(),
    };
    for (id, variable) in SECRET_FILES {
        if env(variable).is_some() {
            continue; // the variable itself wins over its file
        }
        let file_variable = format!("{variable}_FILE");
        if let Some(file) = env(&file_variable) {
            let file = PathBuf::from(file);
            let text = std::fs::read_to_string(&file).map_err(|source| {
                ConfigError::SecretFile { variable: file_variable.clone(), path: file, source }
            })?;
            defaults.retain(|(key, _)| key != id);
            defaults.push(((*id).to_string(), vec![text.trim().to_string()]));
        }
    }
    let mut command = Cli::command();
    for (key, values) in defaults {
        let set = move |arg: clap::Arg| arg.default_values(values.clone());
        command = if SERVE_KEYS.contains(&key.as_str()) {
            command.mut_subcommand("serve", |serve| serve.mut_arg(&key, set))
        } else {
            command.mut_arg(&key, set)
        };
    }
    let matches = command.try_get_matches_from(&args)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The file's table, checked against [`FileConfig`]; `None` when it is optional and absent.
fn read_file(path: &Path, required: bool) -> Result<Option<toml::Table>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
    };
    let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
    toml::from_str::<FileConfig>(&text)
        .map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
    let table = toml::from_str::<toml::Table>(&text).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(table))
}

/// Each key of the file as the default value(s) of the argument of the same id.
fn table_defaults(table: toml::Table) -> Vec<(String, Vec<String>)> {
    table
        .into_iter()
        .map(|(key, value)| {
            let values = match value {
                toml::Value::Array(items) => items.into_iter().map(scalar).collect(),
                other => vec![scalar(other)],
            };
            (key, values)
        })
        .collect()
}

fn scalar(value: toml::Value) -> String {
    match value {
        toml::Value::String(text) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{self, Command};

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("settings.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn serve_listen(cli: &Cli) -> String {
        match &cli.command {
            Command::Serve(serve) => serve.listen.to_string(),
            other => panic!("not serve: {other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn every_file_key_is_an_option_and_every_serve_option_a_file_key() {
        let keys: Vec<String> = all_keys().keys().cloned().collect();
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        for key in &keys {
            let known = command.get_arguments().any(|a| a.get_id() == key.as_str())
                || serve.get_arguments().any(|a| a.get_id() == key.as_str());
            assert!(known, "file key `{key}` is no option");
            assert_eq!(
                SERVE_KEYS.contains(&key.as_str()),
                !command.get_arguments().any(|a| a.get_id() == key.as_str()),
                "`{key}` is listed under the wrong command"
            );
        }
        let options = command.get_arguments().chain(serve.get_arguments());
        for arg in options {
            let id = arg.get_id().as_str();
            if arg.get_long().is_none() || id == "config" {
                continue;
            }
            assert!(keys.iter().any(|k| k == id), "option `{id}` cannot be set in the file");
        }
    }

    /// A file setting every key, each of its own type, so the test above sees them all.
    fn all_keys() -> toml::Table {
        let text = r#"
            data_dir = "d"
            database_url = "postgres://x"
            environment = "prod"
            connectors = ["a", "b"]
            log = "debug"
            log_json = true
            block_private_addresses = true
            ca_file = "ca.pem"
            proxy_max_request_bytes = 1
            proxy_max_response_bytes = 2
            script_cpu_ms = 3
            script_memory_mib = 4
            script_wall_ms = 5
            script_http_requests = 6
            listen = "127.0.0.1:1"
            public_url = "https://l.example"
            webhook_url = "https://w.example"
            refresh_interval = 7
            refresh_rate = 9
            check_interval = "6h"
            access_log = false
            audit_retention = 8
            refresh_exhausted_after = 9
            webhook_retention = 10
            operation_log = false
            operation_retention = 11
            operation_max_rows = 12
            otlp_endpoint = "http://collector:4318"
            otlp_headers = ["x-api-key=k"]
            redis_url = "redis://127.0.0.1:6379"
            console_oidc_issuer = "https://id.example"
            console_oidc_client_id = "console"
            console_oidc_client_secret = "s"
            console_oidc_allow = ["ops@example.com"]
        "#;
        toml::from_str::<FileConfig>(text).unwrap();
        toml::from_str(text).unwrap()
    }

    #[test]
    fn file_values_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "listen = \"127.0.0.1:9999\"\nscript_cpu_ms = 250\nlog_json = true\nconnectors = [\"x\", \"y\"]\n",
        );
        let cli =
            load_with(["latchkey", "--config", path.to_str().unwrap(), "serve"], no_env).unwrap();
        assert_eq!(serve_listen(&cli), "127.0.0.1:9999");
        assert_eq!(cli.global.script_cpu_ms, 250);
        assert!(cli.global.log_json);
        assert_eq!(cli.global.connectors, [PathBuf::from("x"), PathBuf::from("y")]);
        assert_eq!(cli.global.script_wall_ms, 10_000, "unset keys keep the built-in default");
    }

    #[test]
    fn the_data_directory_file_is_read_when_no_config_is_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "refresh_interval = 5\n").unwrap();
        let cli =
            load_with(["latchkey", "--data-dir", dir.path().to_str().unwrap(), "serve"], no_env)
                .unwrap();
        let Command::Serve(args::ServeArgs {
            refresh_interval, check_interval, refresh_rate, ..
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(refresh_interval, 5);
        assert_eq!(check_interval, "24h".parse().unwrap(), "the default");
        assert_eq!(refresh_rate, latchkey_engine::DEFAULT_REFRESH_RATE);
        std::fs::write(dir.path().join(FILE_NAME), "check_interval = \"off\"\nrefresh_rate = 3\n")
            .unwrap();
        let cli =
            load_with(["latchkey", "--data-dir", dir.path().to_str().unwrap(), "serve"], no_env)
                .unwrap();
        let Command::Serve(args::ServeArgs { check_interval, refresh_rate, .. }) = cli.command
        else {
            panic!()
        };
        assert_eq!((check_interval.get(), refresh_rate), (None, 3));
        let flag = load_with(
            [
                "latchkey",
                "--data-dir",
                dir.path().to_str().unwrap(),
                "serve",
                "--check-interval",
                "6h",
            ],
            no_env,
        )
        .unwrap();
        let Command::Serve(args::ServeArgs { check_interval, .. }) = flag.command else { panic!() };
        assert_eq!(check_interval.get(), Some(std::time::Duration::from_secs(6 * 3600)));
        let bad = load_with(
            [
                "latchkey",
                "--data-dir",
                dir.path().to_str().unwrap(),
                "serve",
                "--check-interval",
                "soon",
            ],
            no_env,
        );
        assert!(bad.unwrap_err().to_string().contains("invalid interval"));
        // And no file there is no error.
        let empty = tempfile::tempdir().unwrap();
        load_with(["latchkey", "--data-dir", empty.path().to_str().unwrap(), "serve"], no_env)
            .unwrap();
    }

    #[test]
    fn a_flag_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "listen = \"127.0.0.1:9999\"\nscript_cpu_ms = 250\n");
        let cli = load_with(
            [
                "latchkey",
                "--config",
                path.to_str().unwrap(),
                "--script-cpu-ms",
                "7",
                "serve",
                "--listen",
                "127.0.0.1:1234",
            ],
            no_env,
        )
        .unwrap();
        assert_eq!(serve_listen(&cli), "127.0.0.1:1234");
        assert_eq!(cli.global.script_cpu_ms, 7);
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "lisen = \"127.0.0.1:9999\"\n");
        let err = load_with(["latchkey", "--config", path.to_str().unwrap(), "serve"], no_env)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lisen") && text.contains("settings.toml"), "{text}");
        let path = write(dir.path(), "script_cpu_ms = \"fast\"\n");
        let err = load_with(["latchkey", "--config", path.to_str().unwrap(), "serve"], no_env)
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err =
            load_with(["latchkey", "--config", "/nonexistent/latchkey.toml", "serve"], no_env)
                .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn a_secret_file_variable_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "database_url = \"postgres://from-file\"\n");
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://from-secret-file\n").unwrap();
        let env = |name: &str| {
            (name == "LATCHKEY_DATABASE_URL_FILE").then(|| secret.clone().into_os_string())
        };
        let cli =
            load_with(["latchkey", "--config", path.to_str().unwrap(), "serve"], env).unwrap();
        assert_eq!(cli.global.database_url.unwrap().expose(), "postgres://from-secret-file");
    }
}
