//! What each command does.

mod access;
mod audit;
mod connect;
mod connection;
mod connector;
mod export;
mod import;
mod keys;
mod logs;
mod loopback;
mod output;
mod progress;
mod request;
mod sealed_file;
mod webhook;

use std::process::ExitCode;

use anyhow::Context;
use latchkey_core::Secret;
use latchkey_engine::NewIntegration;

use crate::args::{Cli, Command, IntegrationCommand, ServeArgs};
use crate::setup;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    let action = audit::local_action(&cli.command, &global.environment);
    match cli.command {
        Command::Serve(options) => serve(global, options).await,
        Command::Webhook { command } => {
            let (engine, _) = setup::engine(global).await?;
            let run = webhook::run(&engine, &global.environment, command);
            audit::audited(&engine, action, run).await
        }
        Command::Audit { command } => audit::run(global, command).await,
        Command::Logs(options) => logs::run(global, options).await,
        Command::Connector { command } => connector::run(global, command).await,
        Command::Connect { connector, id, auth, set, integration, no_test, no_browser } => {
            let (engine, _) = setup::engine(global).await?;
            let run = connect::run(
                &engine,
                connect::Options {
                    environment: global.environment.clone(),
                    connector,
                    id,
                    auth,
                    set,
                    integration,
                    test: !no_test,
                    open_browser: !no_browser,
                },
            );
            audit::audited(&engine, action, run).await
        }
        Command::Request { connection, method, path, headers, data, query, include } => {
            let (engine, _) = setup::engine(global).await?;
            let result = request::run(
                &engine,
                request::Options { connection, method, path, headers, data, query, include },
            )
            .await;
            // Written in the background: wait, so the operation log has it before exit.
            engine.operations().flush().await;
            result
        }
        Command::Connection { command } => {
            let (engine, _) = setup::engine(global).await?;
            let run = connection::run(&engine, &global.environment, command);
            audit::audited(&engine, action, run).await
        }
        Command::Integration { command } => {
            let (engine, _) = setup::engine(global).await?;
            let run = integration(&engine, &global.environment, command);
            audit::audited(&engine, action, run).await
        }
        Command::Env { command } => {
            let (engine, _) = setup::engine(global).await?;
            audit::audited(&engine, action, access::environments(&engine, command)).await
        }
        Command::ApiKey { command } => {
            let (engine, _) = setup::engine(global).await?;
            audit::audited(&engine, action, access::api_keys(&engine, command)).await
        }
        Command::Keys { command } => keys::run(global, command).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "latchkey", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let command = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    clap_mangen::generate_to(command, &dir).with_context(|| {
                        format!("cannot write the man pages to {}", dir.display())
                    })?;
                }
                None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The console's OpenID Connect sign-in, when `--console-oidc-issuer` is given: the client id,
/// the secret and at least one allowed operator are then required.
fn console_oidc_config(
    issuer: Option<url::Url>,
    client_id: Option<String>,
    client_secret: Option<String>,
    allowed: Vec<String>,
) -> anyhow::Result<Option<latchkey_engine::OperatorOidc>> {
    let Some(issuer) = issuer else {
        if client_id.is_some() || client_secret.is_some() || !allowed.is_empty() {
            anyhow::bail!(
                "--console-oidc-client-id, -secret and -allow need --console-oidc-issuer"
            );
        }
        return Ok(None);
    };
    let client_id = client_id.context("--console-oidc-issuer needs --console-oidc-client-id")?;
    let client_secret = client_secret.context(
        "--console-oidc-issuer needs the client secret (LATCHKEY_CONSOLE_OIDC_CLIENT_SECRET or _FILE)",
    )?;
    let allowed: Vec<String> =
        allowed.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    if allowed.is_empty() {
        anyhow::bail!(
            "--console-oidc-issuer needs --console-oidc-allow: the subjects or emails of the operators"
        );
    }
    Ok(Some(latchkey_engine::OperatorOidc {
        issuer,
        client_id,
        client_secret: latchkey_core::Secret::new(client_secret),
        allowed,
    }))
}

/// How often the audit log is trimmed to its retention while serving.
const AUDIT_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

async fn serve(global: &crate::args::Global, options: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs {
        listen,
        public_url,
        webhook_url,
        refresh_interval,
        refresh_rate,
        check_interval,
        audit_retention,
        refresh_exhausted_after,
        webhook_retention,
        operation_log,
        operation_retention,
        operation_max_rows,
        otlp,
        access_log: _,
        redis_url,
        console_oidc,
    } = options;
    let crate::args::ConsoleOidcArgs {
        console_oidc_issuer,
        console_oidc_client_id,
        console_oidc_client_secret,
        console_oidc_allow,
    } = *console_oidc;
    let console_oidc = console_oidc_config(
        console_oidc_issuer,
        console_oidc_client_id,
        console_oidc_client_secret,
        console_oidc_allow,
    )?;
    let crate::args::OtlpArgs { otlp_endpoint, otlp_headers } = *otlp;
    let webhook = match webhook_url {
        Some(url) => {
            let secret = setup::secret_from_env("LATCHKEY_WEBHOOK_SECRET")?
                .context("--webhook-url needs LATCHKEY_WEBHOOK_SECRET (or _FILE) to sign events")?;
            let previous = setup::secret_from_env("LATCHKEY_WEBHOOK_PREVIOUS_SECRET")?;
            Some((latchkey_engine::WebhookConfig { url, secret }, previous))
        }
        None => None,
    };
    let exhausted_after = std::time::Duration::from_secs(refresh_exhausted_after * 3600);
    let (engine, data_dir) = setup::engine_with(global, |builder| {
        let builder = builder
            .refresh_exhausted_after(exhausted_after)
            .operation_log(operation_log)
            .refresh_rate(refresh_rate)
            .check_interval(check_interval);
        let builder = match redis_url {
            Some(url) => builder.redis_url(url),
            None => builder,
        };
        let builder = match otlp_endpoint {
            Some(endpoint) => builder.otlp(latchkey_engine::OtlpConfig {
                endpoint,
                headers: otlp_headers.into_iter().map(|h| (h.name, h.value)).collect(),
            }),
            None => builder,
        };
        match webhook {
            Some((webhook, Some(previous))) => {
                builder.webhook(webhook).webhook_previous_secret(previous)
            }
            Some((webhook, None)) => builder.webhook(webhook),
            None => builder,
        }
    })
    .await?;
    let given = setup::api_key_from_env()?;
    let key_file = data_dir.path().join("api.key");
    let (api_key, source) = match given {
        Some((key, source)) => {
            if key_file.exists() {
                tracing::warn!(
                    ignored = %key_file.display(),
                    "the API key comes from {source}: the key in {} is not accepted; delete \
                     the file or give its key instead",
                    key_file.display()
                );
            }
            (key, source)
        }
        None => match data_dir.api_key(None)? {
            (key, true) => (key, setup::ApiKeySource::Generated(key_file.clone())),
            (key, false) => (key, setup::ApiKeySource::DataDir(key_file.clone())),
        },
    };
    tracing::info!(source = %source, "API key from {source}");
    let length = api_key.expose().chars().count();
    if length < setup::SHORT_API_KEY {
        tracing::warn!(
            length,
            "the API key is short ({length} characters): use at least {} random characters, e.g. \
             `openssl rand -base64 32`",
            setup::SHORT_API_KEY
        );
    }
    if matches!(source, setup::ApiKeySource::Generated(_)) {
        eprintln!(
            "Generated an API key (kept in {}): {}\nCallers send it as `Authorization: Bearer <key>`. It is printed only this once.",
            data_dir.path().join("api.key").display(),
            api_key.expose()
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let public_url = match public_url {
        Some(url) => url,
        None => url::Url::parse(&format!("http://{local}"))?,
    };
    tracing::info!(address = %local, %public_url, connectors = engine.connectors().catalog().list().len(), "latchkey listening");
    let tick = std::time::Duration::from_secs(refresh_interval.max(1));
    tokio::spawn(engine.renewal().run_scheduler(tick));
    if check_interval.get().is_some() {
        tracing::info!(every = %check_interval, "scheduled health checks every {check_interval}");
        tokio::spawn(engine.connections().run_check_scheduler(tick));
    } else {
        tracing::info!("scheduled health checks are off");
    }
    if audit_retention > 0 {
        tokio::spawn(trim_audit_log(engine.clone(), audit_retention));
    }
    tokio::spawn(trim_operations(engine.clone(), operation_retention, operation_max_rows));
    tokio::spawn(engine.webhooks().run_deliverer(latchkey_engine::DeliveryOptions {
        retention: std::time::Duration::from_secs(u64::from(webhook_retention) * 24 * 60 * 60),
        ..latchkey_engine::DeliveryOptions::default()
    }));
    let mut state = latchkey_server::AppState::new(engine, api_key, public_url);
    if let Some(oidc) = console_oidc {
        tracing::info!(issuer = %oidc.issuer, operators = oidc.allowed.len(), "console sign-in with OpenID Connect");
        state = state.with_console_oidc(oidc);
    }
    let limits = latchkey_server::BodyLimits {
        proxy: global.proxy_max_request_bytes,
        ..latchkey_server::BodyLimits::default()
    };
    latchkey_server::serve_with_limits(listener, state, limits).await?;
    Ok(ExitCode::SUCCESS)
}

/// How often the operation log is trimmed while serving.
const OPERATION_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Trims the operation log to `days` and `max_rows` now and then every ten minutes; a failure
/// is logged and tried again the next time.
async fn trim_operations(
    engine: std::sync::Arc<latchkey_engine::Engine>,
    days: u32,
    max_rows: u64,
) {
    let retention = std::time::Duration::from_secs(u64::from(days) * 24 * 60 * 60);
    let mut every = tokio::time::interval(OPERATION_TRIM_EVERY);
    loop {
        every.tick().await;
        match engine.operations().trim(retention, max_rows).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "trimmed the operation log"),
            Err(error) => tracing::warn!(%error, "cannot trim the operation log"),
        }
    }
}

/// Trims the audit log to `days` now and then daily; a failure is logged and tried again the
/// next day.
async fn trim_audit_log(engine: std::sync::Arc<latchkey_engine::Engine>, days: u32) {
    let retention = std::time::Duration::from_secs(u64::from(days) * 24 * 60 * 60);
    let mut every = tokio::time::interval(AUDIT_TRIM_EVERY);
    loop {
        every.tick().await;
        match engine.audit().trim(retention).await {
            Ok(trim) if trim.removed > 0 => tracing::info!(
                removed = trim.removed,
                anchor = trim.anchor_seq,
                days,
                "trimmed the audit log to its retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot trim the audit log"),
        }
    }
}

async fn integration(
    engine: &latchkey_engine::Engine,
    environment: &latchkey_engine::EnvironmentId,
    command: IntegrationCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationCommand::Add { id, connector, client_id, client_secret_file, scopes } => {
            let client_secret = match client_secret_file {
                Some(path) => {
                    let text = Secret::new(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?,
                    );
                    Some(Secret::new(text.expose().trim()))
                }
                None => None,
            };
            let record = engine
                .integrations()
                .put(NewIntegration {
                    environment: environment.clone(),
                    id,
                    connector,
                    client_id,
                    client_secret,
                    scopes,
                })
                .await?;
            println!("integration {} ({})", record.id, record.connector);
        }
        IntegrationCommand::List { output } => {
            let mut all = Vec::new();
            let mut page = latchkey_engine::PageRequest::first(latchkey_engine::MAX_PAGE_SIZE);
            loop {
                let filter =
                    latchkey_engine::IntegrationFilter::in_environment(environment.as_str());
                let found = engine.integrations().list(&filter, &page).await?;
                all.extend(found.items);
                match found.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            let rows = all
                .into_iter()
                .map(|i| {
                    let cells = vec![
                        i.id.clone(),
                        i.connector.clone(),
                        i.client_id.clone().unwrap_or_default(),
                        i.scopes.join(" "),
                        i.misconfigured.as_ref().map_or_else(String::new, |m| {
                            format!("misconfigured since {}: {}", m.since.date(), m.message)
                        }),
                    ];
                    // Never the client secret: only whether there is one.
                    let json = serde_json::json!({
                        "id": i.id,
                        "connector": i.connector,
                        "client_id": i.client_id,
                        "has_client_secret": i.client_secret.is_some(),
                        "scopes": i.scopes,
                        "misconfigured": i.misconfigured,
                    });
                    (cells, json)
                })
                .collect();
            output::list(
                output.output,
                &["ID", "CONNECTOR", "CLIENT ID", "SCOPES", "PROBLEM"],
                rows,
            )?;
        }
        IntegrationCommand::Delete { id, force: false } => {
            engine.integrations().delete(environment, &id).await?;
            println!("deleted integration {id}");
        }
        IntegrationCommand::Delete { id, force: true } => {
            let marked = engine.integrations().delete_forced(environment, &id).await?;
            println!(
                "deleted integration {id}; {} connection(s) now need re-authorisation",
                marked.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
