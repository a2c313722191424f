//! `latchkey env create|list` and `latchkey api-key create|list|revoke`, on the data
//! directory's store (as `POST /v1/environments` and `/v1/api-keys` do through the server).

use std::process::ExitCode;
use std::time::Duration;

use latchkey_engine::time;
use latchkey_engine::{Engine, NewApiKey, NewEnvironment};
use latchkey_store::ApiKeyRecord;

use super::output;
use crate::args::{ApiKeyCommand, EnvCommand, Format};

/// Runs an environment command.
pub async fn environments(engine: &Engine, command: EnvCommand) -> anyhow::Result<ExitCode> {
    match command {
        EnvCommand::Create { id, webhook_url } => {
            let (webhook, generated) = match webhook_url {
                Some(url) => {
                    let (config, generated) = environment_webhook(url)?;
                    (Some(config), generated)
                }
                None => (None, None),
            };
            let record = engine.access().create_environment(NewEnvironment { id, webhook }).await?;
            println!("environment {}", record.id);
            print_secret_once(generated.as_ref());
        }
        EnvCommand::Webhook { id, rotate: true, overlap, .. } => {
            let (record, secret) =
                engine.access().rotate_webhook_secret(&id, None, overlap).await?;
            println!("{}", secret.expose());
            let until = record
                .webhook_previous_expires_at
                .map(|at| format!("; the old one also signs until {}", timestamp(at)))
                .unwrap_or_else(|| "; the old one no longer signs".to_owned());
            eprintln!(
                "environment {} signs its webhooks with the new secret above (shown only this \
                 once){until}",
                record.id
            );
        }
        EnvCommand::Webhook { id, url, clear, .. } => {
            let (record, generated) = match (url, clear) {
                (Some(url), false) => {
                    match crate::setup::secret_from_env("LATCHKEY_WEBHOOK_SECRET")? {
                        Some(secret) => (
                            engine
                                .access()
                                .set_webhook(
                                    &id,
                                    Some(latchkey_engine::WebhookConfig { url, secret }),
                                )
                                .await?,
                            None,
                        ),
                        None => engine.access().set_webhook_url(&id, url).await?,
                    }
                }
                _ => (engine.access().set_webhook(&id, None).await?, None),
            };
            match record.webhook_url {
                Some(url) => println!("environment {} sends its events to {url}", record.id),
                None => {
                    println!("environment {} sends its events to the server's webhook", record.id)
                }
            }
            print_secret_once(generated.as_ref());
        }
        EnvCommand::List { output } => {
            let rows = engine
                .access()
                .environments()
                .await?
                .into_iter()
                .map(|e| {
                    let created = timestamp(e.created_at);
                    let json = serde_json::json!({
                        "id": e.id, "webhook_url": e.webhook_url, "created_at": created,
                    });
                    let webhook = e.webhook_url.unwrap_or_else(|| "-".into());
                    (vec![e.id, webhook, created], json)
                })
                .collect();
            output::list(output.output, &["ID", "WEBHOOK", "CREATED"], rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A webhook at `url`, signed with the secret in LATCHKEY_WEBHOOK_SECRET (or _FILE) when it is
/// set, else with a new one (returned too, to be shown once).
fn environment_webhook(
    url: url::Url,
) -> anyhow::Result<(latchkey_engine::WebhookConfig, Option<latchkey_engine::Secret>)> {
    let given = crate::setup::secret_from_env("LATCHKEY_WEBHOOK_SECRET")?;
    let generated = given.is_none().then(latchkey_engine::webhooks::generate_secret);
    let secret = given.or_else(|| generated.clone()).unwrap_or_default();
    Ok((latchkey_engine::WebhookConfig { url, secret }, generated))
}

/// Prints a generated webhook secret on stdout, with a word on stderr that it is not shown
/// again.
fn print_secret_once(secret: Option<&latchkey_engine::Secret>) {
    if let Some(secret) = secret {
        println!("{}", secret.expose());
        eprintln!(
            "Its webhooks are signed with the new secret above (Standard Webhooks), shown only \
             this once."
        );
    }
}

/// Runs an API-key command.
pub async fn api_keys(engine: &Engine, command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeyCommand::Create { name, scopes, for_environment, expires_in, output } => {
            let (record, key) = engine
                .access()
                .create_key(NewApiKey {
                    name,
                    environment: for_environment,
                    scopes: scopes.into_iter().collect(),
                    expires_in: expires_in.map(Duration::from_secs),
                })
                .await?;
            match output.output {
                Format::Json => {
                    let mut json = view(&record);
                    json["key"] = key.expose().into();
                    println!("{}", serde_json::to_string_pretty(&json)?);
                }
                Format::Text => {
                    println!("{}", key.expose());
                    eprintln!(
                        "API key {} ({}) made. The key above is shown only this once: callers \
                         send it as `Authorization: Bearer <key>`.",
                        record.id, record.name
                    );
                }
            }
        }
        ApiKeyCommand::List { output } => {
            let rows = engine
                .access()
                .keys()
                .await?
                .iter()
                .map(|k| {
                    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                    let state = match (k.revoked_at, k.expires_at) {
                        (Some(_), _) => "revoked".to_owned(),
                        (None, Some(at)) if at <= time::OffsetDateTime::now_utc() => {
                            "expired".to_owned()
                        }
                        _ => "active".to_owned(),
                    };
                    let cells = vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.environment.clone().unwrap_or_else(|| "*".to_owned()),
                        scopes.join(" "),
                        k.hint.clone(),
                        state,
                        k.last_used_at.map(timestamp).unwrap_or_default(),
                    ];
                    (cells, view(k))
                })
                .collect();
            output::list(
                output.output,
                &["ID", "NAME", "ENVIRONMENT", "SCOPES", "KEY", "STATE", "LAST USED"],
                rows,
            )?;
        }
        ApiKeyCommand::Revoke { id } => {
            engine.access().revoke_key(&id).await?;
            println!("revoked API key {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A key as JSON: never the key or its digest.
fn view(k: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "environment": k.environment,
        "scopes": k.scopes,
        "hint": k.hint,
        "created_at": timestamp(k.created_at),
        "expires_at": k.expires_at.map(timestamp),
        "last_used_at": k.last_used_at.map(timestamp),
        "revoked_at": k.revoked_at.map(timestamp),
    })
}

fn timestamp(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
