//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use latchkey_core::{ConnectionId, ConnectorId, EnvironmentId, IntegrationId, Secret};

/// Latchkey: connect to any HTTP API on behalf of your users.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// A configuration file (TOML) whose keys are these options' long names with `_` for `-`;
    /// environment variables and flags override it. Default: `latchkey.toml` in the data
    /// directory, when there is one.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: the SQLite database and, on the embedded default, the generated keys.
    #[arg(long, global = true, env = "LATCHKEY_DATA_DIR", default_value = "./latchkey-data")]
    pub data_dir: PathBuf,
    /// The database: a `postgres://` or `postgresql://` URL to share one PostgreSQL database
    /// between instances; unset, the SQLite file in the data directory. Also read from the file
    /// named by LATCHKEY_DATABASE_URL_FILE.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_DATABASE_URL",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: Option<Secret>,
    /// The environment integrations, connections and connect sessions are read from and made
    /// in (`latchkey env list`).
    #[arg(long, global = true, env = "LATCHKEY_ENVIRONMENT", default_value = "default")]
    pub environment: EnvironmentId,
    /// A directory of connector files added to the built-in catalog (may repeat).
    #[arg(long = "connectors", global = true, env = "LATCHKEY_CONNECTORS", value_delimiter = ':')]
    pub connectors: Vec<PathBuf>,
    /// Log filter, e.g. `info` or `latchkey=debug`. Default: `info` for `serve`, `warn` for the
    /// other commands (which print their result instead).
    #[arg(long, global = true, env = "LATCHKEY_LOG")]
    pub log: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "LATCHKEY_LOG_JSON")]
    pub log_json: bool,
    /// Refuse outbound connections to private, loopback and link-local addresses.
    #[arg(long, global = true, env = "LATCHKEY_BLOCK_PRIVATE_ADDRESSES")]
    pub block_private_addresses: bool,
    /// A PEM file of certificate authorities to trust besides the built-in web roots (e.g. a
    /// company CA in front of internal APIs).
    #[arg(long, global = true, env = "LATCHKEY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The largest request body the proxy accepts, in bytes (larger: 413 `payload_too_large`).
    #[arg(long, global = true, env = "LATCHKEY_PROXY_MAX_REQUEST_BYTES", default_value_t = 32 << 20)]
    pub proxy_max_request_bytes: usize,
    /// The largest response body the proxy streams, in bytes. Unset: no limit (bodies are
    /// streamed in bounded memory). Over it: 502 `upstream_response_too_large` when the declared
    /// length shows it, an aborted (incomplete) body when it is crossed mid-stream.
    #[arg(long, global = true, env = "LATCHKEY_PROXY_MAX_RESPONSE_BYTES")]
    pub proxy_max_response_bytes: Option<u64>,
    /// The most CPU time a connector script may use per hook, in milliseconds.
    #[arg(long, global = true, env = "LATCHKEY_SCRIPT_CPU_MS", default_value_t = 100)]
    pub script_cpu_ms: u64,
    /// The most memory a connector script may use per hook, in MiB.
    #[arg(long, global = true, env = "LATCHKEY_SCRIPT_MEMORY_MIB", default_value_t = 16)]
    pub script_memory_mib: usize,
    /// The most wall-clock time a connector script may take per hook, waits on `http_request`
    /// included, in milliseconds.
    #[arg(long, global = true, env = "LATCHKEY_SCRIPT_WALL_MS", default_value_t = 10_000)]
    pub script_wall_ms: u64,
    /// The most `http_request` calls a connector script may make per hook.
    #[arg(long, global = true, env = "LATCHKEY_SCRIPT_HTTP_REQUESTS", default_value_t = 20)]
    pub script_http_requests: u32,
}

/// How a list or show command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns under a header row (a list), or `field  value` lines (a show).
    #[default]
    Text,
    /// JSON: an array for a list, an object for a show.
    Json,
}

/// `--output`, on every list and show command.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: REST API, proxy, health.
    Serve(ServeArgs),
    /// Inspect and check connectors.
    Connector {
        /// What to do with connectors.
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Create a connection: ask for (or take) its credentials, test them, store them encrypted.
    Connect {
        /// The connector's id.
        connector: ConnectorId,
        /// Connection id (generated when absent).
        #[arg(long)]
        id: Option<ConnectionId>,
        /// Auth method (the connector's first when absent).
        #[arg(long)]
        auth: Option<String>,
        /// A credential or config value, `KEY=VALUE` (`config.KEY=VALUE` to force config).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The integration the connection belongs to.
        #[arg(long)]
        integration: Option<IntegrationId>,
        /// Store without running the connector's credential test.
        #[arg(long)]
        no_test: bool,
        /// For OAuth2: print the authorization URL but do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Make an authenticated request through a connection.
    Request {
        /// Connection id.
        connection: ConnectionId,
        /// HTTP method.
        method: String,
        /// Path under the connector's base URL (may hold a query string).
        path: String,
        /// Extra header, `Name: value` (may repeat).
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Request body; `@FILE` reads a file, `@-` reads stdin.
        #[arg(short = 'd', long = "data")]
        data: Option<String>,
        /// Query parameter, `KEY=VALUE` (may repeat).
        #[arg(long = "query", value_name = "KEY=VALUE")]
        query: Vec<String>,
        /// Print the status line and headers too.
        #[arg(short = 'i', long = "include")]
        include: bool,
    },
    /// Manage connections.
    Connection {
        /// What to do with connections.
        #[command(subcommand)]
        command: ConnectionCommand,
    },
    /// Manage integrations (OAuth clients).
    Integration {
        /// What to do with integrations.
        #[command(subcommand)]
        command: IntegrationCommand,
    },
    /// Environments: separate spaces of integrations, connections and connect sessions.
    Env {
        /// What to do with environments.
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// API keys with scopes, bound to an environment or spanning all of them.
    ApiKey {
        /// What to do with API keys.
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Master keys: generate one, see which versions are in use, rotate, retire old ones.
    ///
    /// The current key is LATCHKEY_MASTER_KEY (or _FILE, or master.key in the data directory);
    /// old keys are LATCHKEY_MASTER_KEY_PREVIOUS (base64 keys separated by commas or spaces)
    /// or LATCHKEY_MASTER_KEY_PREVIOUS_FILE (one key per line).
    Keys {
        /// What to do with master keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Webhooks: the delivery log of this environment's events.
    Webhook {
        /// What to do with webhooks.
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// The operation log: requests, refreshes, checks, connect steps, webhook deliveries and
    /// revocations, newest last; `--follow` keeps printing new ones.
    Logs(LogsOptions),
    /// The audit log: who did what through the REST API, hash-chained so edits show.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a shell completion script, e.g. `latchkey completions bash > /etc/bash_completion.d/latchkey`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        /// Write `latchkey.1`, `latchkey-serve.1`, … into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `latchkey keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (base64 of 32 bytes), or write it to a new file.
    Generate {
        /// Write the key to this new file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List key versions: which is current, which keys were given, which still have a key
    /// check in the database, and how many secret rows each seals.
    Status {
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Re-seal every secret under the current key, in batches; safe to run while `serve`
    /// instances run, and to run again after an interruption. Exits non-zero while rows remain
    /// on older versions.
    Rotate {
        /// Rows re-sealed per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
        /// When no row is left on an older version, retire those versions at once (as
        /// `latchkey keys retire` does).
        #[arg(long)]
        retire: bool,
    },
    /// Drop the key checks of every version but the current one, after which the old keys are
    /// no longer needed or accepted. Refused while any secret row still uses an old version.
    Retire,
}

/// `latchkey audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest entries, oldest of them first; with `--follow`, then every new one.
    Tail {
        /// How many entries to print first (1 to 1000).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Keep printing new entries as they are appended, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only entries by this API key id.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, or with a trailing `.*` every action it starts (`connection.*`).
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this object: `kind:id` or an id.
        #[arg(long)]
        object: Option<String>,
        /// Entries of every environment (default: only those of `--environment`, and Latchkey's
        /// own, which have none).
        #[arg(long)]
        all_environments: bool,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long, value_parser = rfc3339)]
        since: Option<time::OffsetDateTime>,
        /// Only entries before this time (RFC 3339).
        #[arg(long, value_parser = rfc3339)]
        until: Option<time::OffsetDateTime>,
        /// Output format (JSON: an array; with `--follow`, one object per line).
        #[command(flatten)]
        output: OutputArg,
    },
    /// Check the hash chain from its start (or where retention cut it) to its last entry.
    /// Exits non-zero, naming the first broken entry, if a row was edited, deleted or moved.
    Verify,
}

/// What `latchkey logs` prints.
#[derive(Debug, clap::Args)]
pub struct LogsOptions {
    /// How many operations to print first (1 to 1000).
    #[arg(long, short = 'n', default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Keep printing new operations as they are written, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this connection's operations.
    #[arg(long)]
    pub connection: Option<String>,
    /// Only this integration's.
    #[arg(long)]
    pub integration: Option<String>,
    /// Only this kind: request, refresh, check, connect, webhook, revocation.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this outcome: success or failure.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only those whose upstream answered in this class: 2xx, 3xx, 4xx or 5xx.
    #[arg(long)]
    pub status: Option<String>,
    /// Only operations at or after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<time::OffsetDateTime>,
    /// Only operations before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// Output format (JSON: an array; with `--follow`, one object per line).
    #[command(flatten)]
    pub output: OutputArg,
}

fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 time, e.g. 2026-01-31T12:00:00Z".to_owned())
}

/// `latchkey connector …`.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// List connectors.
    List {
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// Only connectors offering this auth type.
        #[arg(long = "auth")]
        auth_type: Option<String>,
        /// Only names or ids containing this text.
        #[arg(long)]
        search: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a connector in full (YAML; JSON with `--output json`).
    Show {
        /// Connector id.
        id: String,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Check connector files; prints each error with its file, line and field.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the connector format.
    Schema,
    /// Check connector files against the catalog rules (ids match file names and are unique,
    /// a test request, category and docs, allowed hosts, declared template names, no secrets).
    Lint {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the catalog as Markdown (what `docs/catalog.md` holds).
    CatalogDoc,
}

/// A `--tag key=value`.
/// A duration: a whole number with `s`, `m`, `h` or `d` (seconds without a unit).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err("expected a number with s, m, h or d (e.g. 24h)".into()),
    };
    let number: u64 =
        number.parse().map_err(|_| "expected a number with s, m, h or d (e.g. 24h)".to_string())?;
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| "too long".to_string())
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// `latchkey connection …`.
#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// List connections, oldest first, a page at a time (filters are ANDed).
    List {
        /// Only connections made through this integration.
        #[arg(long)]
        integration: Option<String>,
        /// Only connections with this status.
        #[arg(long, value_parser = ["ok", "needs_reauth", "error"])]
        status: Option<String>,
        /// Only connections in this health state.
        #[arg(long, value_parser = ["healthy", "unhealthy", "unknown"])]
        health: Option<String>,
        /// Only the connections of this end user (the app's id for them).
        #[arg(long)]
        end_user: Option<String>,
        /// Only connections with this tag (`key=value`); repeat for several.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Rows per page (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Where the page starts: the cursor the page before printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show a connection (never its secrets).
    Show {
        /// Connection id.
        id: ConnectionId,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Run the connector's credential test.
    Test {
        /// Connection id.
        id: ConnectionId,
    },
    /// Delete a connection and its credentials.
    Delete {
        /// Connection id.
        id: ConnectionId,
    },
    /// Refresh an OAuth2 connection's token now.
    Refresh {
        /// Connection id.
        id: ConnectionId,
    },
    /// Import connections from a JSON Lines file: one `POST /v1/connections` body per line.
    ///
    /// The file is read as a stream. Each line is stored whole or not at all; a bad line is
    /// reported with its number and reason while the others go in, and the exit code is
    /// non-zero if any line failed. A file written by `connection export --with-credentials`
    /// (age-encrypted) is decrypted with `--identity` or a passphrase.
    Import {
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// Run each connection's credential test before storing it.
        #[arg(long)]
        test: bool,
        /// Count a line whose connection id exists as skipped, not failed.
        #[arg(long)]
        skip_existing: bool,
        /// An age identity file (`AGE-SECRET-KEY-1…` lines) for a file encrypted to its
        /// recipient.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// A file whose first line is the passphrase of a passphrase-encrypted file (without
        /// it, the passphrase is asked for on the terminal).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Lines written per database transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
        /// Summary format: text counts, or one JSON object with every failed line.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Export connections as JSON Lines, one `POST /v1/connections` body per line, which
    /// `connection import` reads back. Without credentials unless `--with-credentials`, which
    /// encrypts the file (age, armored) to a passphrase or to `--recipient` keys.
    Export {
        /// Write to this file (created with mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Include every connection's credentials (and OAuth2 token expiry and scopes); the
        /// output is then encrypted.
        #[arg(long)]
        with_credentials: bool,
        /// Encrypt to this age recipient (`age1…`; may repeat) instead of a passphrase.
        #[arg(long = "recipient", value_name = "AGE1…", requires = "with_credentials")]
        recipients: Vec<String>,
        /// A file whose first line is the passphrase to encrypt with (without it, and without
        /// `--recipient`, the passphrase is asked for on the terminal).
        #[arg(
            long,
            value_name = "FILE",
            requires = "with_credentials",
            conflicts_with = "recipients"
        )]
        passphrase_file: Option<PathBuf>,
    },
}

/// `latchkey env …`.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Add an environment.
    Create {
        /// Its id: 1-64 characters of `a-z 0-9 - _`.
        id: EnvironmentId,
        /// Send its connection events here instead of to the server's `--webhook-url`; signed
        /// with LATCHKEY_WEBHOOK_SECRET (or _FILE) when set, else with a new secret that is
        /// printed once.
        #[arg(long)]
        webhook_url: Option<url::Url>,
    },
    /// Send an environment's connection events to its own webhook, or with `--clear` to the
    /// server's again; `--rotate` replaces its signing secret.
    ///
    /// With `--url`, events are signed with LATCHKEY_WEBHOOK_SECRET (or _FILE) when set, else
    /// with the secret the environment has, else with a new one that is printed once.
    Webhook {
        /// The environment's id.
        id: EnvironmentId,
        /// The webhook URL.
        #[arg(long, required_unless_present_any = ["clear", "rotate"], conflicts_with_all = ["clear", "rotate"])]
        url: Option<url::Url>,
        /// Remove the environment's own webhook.
        #[arg(long, conflicts_with = "rotate")]
        clear: bool,
        /// Replace the signing secret with a new one (printed once); the old one keeps
        /// signing for `--overlap`.
        #[arg(long)]
        rotate: bool,
        /// How long the replaced secret keeps signing too: `90s`, `30m`, `24h`, `7d` (at most
        /// 7 days; `0` stops it at once).
        #[arg(long, requires = "rotate", default_value = "24h", value_parser = parse_duration)]
        overlap: std::time::Duration,
    },
    /// List environments.
    List {
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
}

/// `latchkey webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// List the environment's webhook deliveries, newest first, a page at a time.
    Deliveries {
        /// Only deliveries in this status.
        #[arg(long, value_parser = ["pending", "delivered", "failed"])]
        status: Option<String>,
        /// Only events of this type (`connection.created`, …).
        #[arg(long)]
        event: Option<String>,
        /// Only events about this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Rows per page (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Where the page starts: the cursor the page before printed.
        #[arg(long)]
        cursor: Option<String>,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one delivery, with its body.
    Show {
        /// The delivery's id (`msg_…`).
        id: String,
    },
    /// Queue a failed delivery again; a running `latchkey serve` sends it.
    Retry {
        /// The delivery's id (`msg_…`).
        id: String,
    },
}

/// `latchkey api-key …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make an API key; prints the key, once.
    Create {
        /// A name to recognise it by.
        name: String,
        /// The scopes it holds (may repeat): proxy, connections:read, connections:write,
        /// credentials:read, connect_sessions:write, integrations:write, admin.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<latchkey_store::Scope>,
        /// Bind it to this environment (unset: it spans every environment, and picks one per
        /// request with `X-Latchkey-Environment`).
        #[arg(long = "for-environment", value_name = "ENVIRONMENT")]
        for_environment: Option<EnvironmentId>,
        /// Seconds until it stops working (unset: it does not expire).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// List API keys (never the keys themselves).
    List {
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Revoke an API key: it stops working at once.
    Revoke {
        /// The key's id (`key_…`).
        id: String,
    },
}

/// `latchkey integration …`.
#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Add or replace an integration.
    Add {
        /// Integration id.
        id: IntegrationId,
        /// The connector it enables.
        #[arg(long)]
        connector: ConnectorId,
        /// OAuth client id.
        #[arg(long)]
        client_id: Option<String>,
        /// A file holding the OAuth client secret (for `private_key_jwt`, the PEM private key;
        /// for `tls_client_auth`, the PEM client certificate and key).
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        /// Scope (may repeat).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List integrations.
    List {
        /// Output format.
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete an integration. Refused while connections use it, unless `--force`.
    Delete {
        /// Integration id.
        id: IntegrationId,
        /// Delete it even though connections use it; they become `needs_reauth`.
        #[arg(long)]
        force: bool,
    },
}

/// `latchkey serve`'s own options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// The base URL browsers and providers reach this server at; the OAuth redirect URI is
    /// `{public-url}/oauth/callback`. Default: `http://{listen}`.
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Send signed connection events (Standard Webhooks) to this URL, for environments
    /// without their own webhook; signed with LATCHKEY_WEBHOOK_SECRET (or _FILE), and also
    /// with LATCHKEY_WEBHOOK_PREVIOUS_SECRET (or _FILE) while that is set.
    #[arg(long, env = "LATCHKEY_WEBHOOK_URL")]
    pub webhook_url: Option<url::Url>,
    /// Keep delivered and failed webhook deliveries in the delivery log this many days.
    #[arg(long, env = "LATCHKEY_WEBHOOK_RETENTION", default_value_t = 7, value_name = "DAYS")]
    pub webhook_retention: u32,
    /// Write requests, refreshes, checks, webhook deliveries and revocations to the
    /// operation log (`GET /v1/operations`, `latchkey logs`); `false` turns it off.
    #[arg(
        long,
        env = "LATCHKEY_OPERATION_LOG",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub operation_log: bool,
    /// Keep operations (requests, refreshes, checks, …) in the operation log this many days.
    #[arg(long, env = "LATCHKEY_OPERATION_RETENTION", default_value_t = 7, value_name = "DAYS")]
    pub operation_retention: u32,
    /// Keep at most this many operations in the operation log (the oldest go first).
    #[arg(
        long,
        env = "LATCHKEY_OPERATION_MAX_ROWS",
        default_value_t = 1_000_000,
        value_name = "ROWS"
    )]
    pub operation_max_rows: u64,
    /// The operation log's OpenTelemetry export.
    #[command(flatten)]
    pub otlp: Box<OtlpArgs>,
    /// The console's OpenID Connect sign-in.
    #[command(flatten)]
    pub console_oidc: Box<ConsoleOidcArgs>,
    /// Seconds between proactive refresh passes (and passes of the health checker).
    #[arg(long, env = "LATCHKEY_REFRESH_INTERVAL", default_value = "30")]
    pub refresh_interval: u64,
    /// At most this many scheduled token refreshes a second to one connector's token
    /// endpoint (a connector's connector-wide `rate_limit` may lower it); `0`: no pace.
    /// Refreshes before a request are never paced.
    #[arg(long, env = "LATCHKEY_REFRESH_RATE", default_value_t = latchkey_engine::DEFAULT_REFRESH_RATE, value_name = "PER_SECOND")]
    pub refresh_rate: u32,
    /// How often each connection's credential test runs in the background, e.g. `24h`,
    /// `6h`, `30m`; `off` (or `0`) turns scheduled checks off. A connector's
    /// `test.check_interval` overrides it.
    #[arg(long, env = "LATCHKEY_CHECK_INTERVAL", default_value = "24h", value_name = "INTERVAL")]
    pub check_interval: latchkey_core::Interval,
    /// Log one line per HTTP request at info (method, route template, status, latency,
    /// connection id); `false` turns it off.
    #[arg(
        long,
        env = "LATCHKEY_ACCESS_LOG",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub access_log: bool,
    /// Keep audit entries this many days; older ones are removed at start-up and daily,
    /// leaving the chain verifiable from where they were cut. `0` keeps them forever.
    #[arg(long, env = "LATCHKEY_AUDIT_RETENTION", default_value_t = 365, value_name = "DAYS")]
    pub audit_retention: u32,
    /// A connection whose scheduled refreshes have failed without a break for this many
    /// hours becomes unhealthy (`refresh_exhausted`); the refresher keeps trying.
    #[arg(
        long,
        env = "LATCHKEY_REFRESH_EXHAUSTED_AFTER",
        default_value_t = 96,
        value_name = "HOURS"
    )]
    pub refresh_exhausted_after: u64,
    /// Share connectors' outbound rate limits across every instance through this Redis
    /// (`redis://[user:password@]host:port[/db]`). While it cannot be reached, each instance
    /// falls back to its share of each limit.
    #[arg(long, env = "LATCHKEY_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
}

/// `serve`'s options for exporting operations over OTLP (see docs/api.md, "Operations").
#[derive(Debug, Clone, clap::Args)]
pub struct OtlpArgs {
    /// Also export every operation as an OpenTelemetry span, over OTLP/HTTP (protobuf), to
    /// this collector, e.g. `http://collector:4318` (`/v1/traces` is added unless the URL ends
    /// in it). Works with `--operation-log false` too.
    #[arg(long, env = "LATCHKEY_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<url::Url>,
    /// A header sent with every OTLP export, `NAME=VALUE` (may repeat), e.g. the collector's API
    /// key; in the environment, comma-separated like OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(
        long = "otlp-header",
        env = "LATCHKEY_OTLP_HEADERS",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "NAME=VALUE"
    )]
    pub otlp_headers: Vec<OtlpHeader>,
}

/// One `--otlp-header`: a valid HTTP header name and value; the value is kept as a secret.
#[derive(Debug, Clone)]
pub struct OtlpHeader {
    /// The header's name.
    pub name: String,
    /// Its value.
    pub value: latchkey_core::Secret,
}

impl std::str::FromStr for OtlpHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| "expected NAME=VALUE (e.g. x-api-key=…)".to_owned())?;
        let name = name.trim();
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        Ok(Self { name: name.to_owned(), value: latchkey_core::Secret::new(value.trim()) })
    }
}

/// `serve`'s options for the console's OpenID Connect sign-in (see docs/console.md).
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleOidcArgs {
    /// Let console operators sign in with OpenID Connect at this issuer (its discovery
    /// document names the endpoints); needs the client id and secret and the allowed list.
    #[arg(long, env = "LATCHKEY_CONSOLE_OIDC_ISSUER", value_name = "URL")]
    pub console_oidc_issuer: Option<url::Url>,
    /// The console's OAuth client id at the OpenID Connect issuer.
    #[arg(long, env = "LATCHKEY_CONSOLE_OIDC_CLIENT_ID", value_name = "ID")]
    pub console_oidc_client_id: Option<String>,
    /// The console's client secret at the issuer (better given as
    /// LATCHKEY_CONSOLE_OIDC_CLIENT_SECRET or _FILE than as a flag).
    #[arg(
        long,
        env = "LATCHKEY_CONSOLE_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub console_oidc_client_secret: Option<String>,
    /// Who may sign in to the console through OpenID Connect, comma-separated: subjects
    /// (`sub:alice`) and verified emails (`ops@example.com`).
    #[arg(
        long,
        env = "LATCHKEY_CONSOLE_OIDC_ALLOW",
        value_delimiter = ',',
        value_name = "SUBJECTS_AND_EMAILS"
    )]
    pub console_oidc_allow: Vec<String>,
}
