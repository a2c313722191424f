//! `latchkey connect CONNECTOR`: takes credentials from `--set` or prompts for them (secret
//! fields hidden), tests them, stores the connection.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use latchkey_core::{ConnectionId, ConnectorId, IntegrationId, Secret};
use latchkey_engine::{Engine, NewConnection};

pub struct Options {
    pub connector: ConnectorId,
    pub id: Option<ConnectionId>,
    pub auth: Option<String>,
    pub set: Vec<String>,
    pub integration: Option<IntegrationId>,
    pub environment: latchkey_engine::EnvironmentId,
    pub test: bool,
    pub open_browser: bool,
}

pub async fn run(engine: &Engine, options: Options) -> anyhow::Result<ExitCode> {
    let entry = engine.connectors().get(&options.connector)?;
    let connector = &entry.connector;
    let method = connector.auth_method(options.auth.as_deref()).with_context(|| {
        let names: Vec<_> = connector.auth.iter().map(|m| m.id()).collect();
        format!(
            "connector `{}` has no such auth method (it has: {})",
            connector.id,
            names.join(", ")
        )
    })?;
    let browser_flow = match method {
        latchkey_core::AuthMethod::OAuth2(m) => {
            (m.grant == latchkey_core::connector::Grant::AuthorizationCode).then_some("OAuth2")
        }
        latchkey_core::AuthMethod::OAuth1(m) if m.three_legged() => Some("OAuth 1.0a"),
        _ => None,
    };
    if let Some(protocol) = browser_flow {
        let integration = options.integration.as_ref().with_context(|| {
            format!(
                "`{}` connects with {protocol}: pass --integration (see `latchkey integration add`)",
                connector.id
            )
        })?;
        let mut config = BTreeMap::new();
        for pair in &options.set {
            let Some((key, value)) = pair.split_once('=') else { bail!("--set takes KEY=VALUE") };
            config
                .insert(key.strip_prefix("config.").unwrap_or(key).to_string(), value.to_string());
        }
        return crate::commands::loopback::run(
            engine,
            &options.environment,
            integration,
            options.auth.as_deref(),
            options.id,
            config,
            options.open_browser,
        )
        .await;
    }
    if let latchkey_core::AuthMethod::OAuth2(m) = method
        && m.grant == latchkey_core::connector::Grant::DeviceCode
    {
        let integration = options.integration.as_ref().with_context(|| {
            format!("`{}` connects with OAuth2: pass --integration", connector.id)
        })?;
        let flow =
            engine.connect().begin_device_authorization(&options.environment, integration).await?;
        let auth = &flow.authorization;
        println!("Open {} and enter the code {}", auth.verification_uri, auth.user_code);
        if let Some(complete) = &auth.verification_uri_complete {
            println!("(or open {complete})");
        }
        eprintln!("Waiting for approval (checking every {}s)…", auth.interval.as_secs());
        let waiting = super::progress::spinner(
            &format!("Waiting for approval at {}", auth.verification_uri),
            super::progress::on_terminal(),
        );
        let record = engine.connect().complete_device_authorization(flow, options.id).await;
        waiting.finish_and_clear();
        let record = record?;
        match &record.label {
            Some(label) => println!("{}\t{}", record.id, label),
            None => println!("{}", record.id),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let fields = method.fields();

    let mut credentials = BTreeMap::new();
    let mut config = BTreeMap::new();
    for pair in &options.set {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--set takes KEY=VALUE");
        };
        if let Some(key) = key.strip_prefix("config.") {
            config.insert(key.to_string(), value.to_string());
        } else if fields.iter().any(|f| f.key == key) {
            credentials.insert(key.to_string(), Secret::new(value));
        } else if connector.config.iter().any(|f| f.key == key) {
            config.insert(key.to_string(), value.to_string());
        } else {
            let mut known: Vec<_> = fields.iter().map(|f| f.key.as_str()).collect();
            known.extend(connector.config.iter().map(|f| f.key.as_str()));
            bail!("`{key}` is not a field of `{}` (fields: {})", connector.id, known.join(", "));
        }
    }
    if options.set.is_empty() {
        for field in &connector.config {
            let label = field.label.as_deref().unwrap_or(&field.key);
            let value = prompt(label, field.help.as_deref(), field.default.as_deref(), false)?;
            if !value.expose().is_empty() {
                config.insert(field.key.clone(), value.expose().to_string());
            }
        }
        for field in &fields {
            let value = prompt(&field.label, field.help.as_deref(), None, field.secret)?;
            if !value.is_empty() {
                credentials.insert(field.key.clone(), value);
            }
        }
    }
    let checking = super::progress::spinner(
        &format!("Connecting to {} and testing the credentials", connector.name),
        options.test && super::progress::on_terminal(),
    );
    let record = engine
        .connections()
        .create(NewConnection {
            environment: options.environment,
            id: options.id,
            connector: options.connector,
            integration: options.integration,
            auth: Some(method.id().to_string()),
            credentials,
            config,
            end_user: None,
            tags: Default::default(),
            metadata: Default::default(),
            run_test: options.test,
        })
        .await;
    checking.finish_and_clear();
    let record = record?;
    match &record.label {
        Some(label) => println!("{}\t{}", record.id, label),
        None => println!("{}", record.id),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks for one value on the terminal; secret values are not echoed. When standard input is not
/// a terminal (a pipe, a file), each value is its next line, so scripts can feed secrets without
/// putting them on the command line.
fn prompt(
    label: &str,
    hint: Option<&str>,
    default: Option<&str>,
    secret: bool,
) -> anyhow::Result<Secret> {
    let mut text = label.to_string();
    if let Some(hint) = hint {
        text.push_str(&format!(" ({hint})"));
    }
    if let Some(default) = default {
        text.push_str(&format!(" [{default}]"));
    }
    text.push_str(": ");
    let value = if secret && std::io::stdin().is_terminal() {
        Secret::new(rpassword::prompt_password(&text).context("cannot read from the terminal")?)
    } else {
        eprint!("{text}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Secret::new(line.trim_end_matches(['\r', '\n']))
    };
    match (value.is_empty(), default) {
        (true, Some(default)) => Ok(Secret::new(default)),
        _ => Ok(value),
    }
}
