//! `latchkey connection list|show|test|refresh|delete|import|export`: `list` filters and pages
//! like `GET /v1/connections`; `show` prints the summary with its tags, metadata and end user.

use std::process::ExitCode;

use latchkey_engine::{ConnectionFilter, Engine, EnvironmentId, page_request};

use super::output;
use crate::args::{ConnectionCommand, Format};

/// Runs a connection command in `environment`: a connection of another environment is not
/// found, as through the REST API.
pub async fn run(
    engine: &Engine,
    environment: &EnvironmentId,
    command: ConnectionCommand,
) -> anyhow::Result<ExitCode> {
    if let ConnectionCommand::Show { id, .. }
    | ConnectionCommand::Test { id }
    | ConnectionCommand::Refresh { id }
    | ConnectionCommand::Delete { id } = &command
    {
        engine.connections().check_environment(environment, id).await?;
    }
    match command {
        ConnectionCommand::List {
            integration,
            status,
            health,
            end_user,
            tags,
            limit,
            cursor,
            output,
        } => {
            let filter = ConnectionFilter {
                environment: environment.to_string(),
                integration,
                status: status.map(|s| s.parse()).transpose()?,
                health: health.map(|h| h.parse()).transpose()?,
                end_user,
                tags: tags.into_iter().collect(),
            };
            let page = page_request(Some(limit), cursor.as_deref())?;
            let found = engine.connections().list(&filter, &page).await?;
            let next = found.next.map(|c| c.token());
            if output.output == Format::Json {
                let page = serde_json::json!({ "connections": found.items, "next_cursor": next });
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = Vec::new();
            for c in found.items {
                let tags: Vec<String> = c.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let cells = vec![
                    c.id.clone(),
                    c.connector.clone(),
                    c.auth_method.clone(),
                    c.status.as_str().to_owned(),
                    c.end_user.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
                    tags.join(","),
                    c.label.clone().unwrap_or_default(),
                ];
                rows.push((cells, serde_json::to_value(&c)?));
            }
            output::list(
                output.output,
                &["ID", "CONNECTOR", "AUTH", "STATUS", "END USER", "TAGS", "LABEL"],
                rows,
            )?;
            if let Some(next) = next {
                eprintln!("more: --cursor {next}");
            }
        }
        ConnectionCommand::Show { id, output } => {
            let summary = engine.connections().get(&id).await?.summary();
            output::show(output.output, &serde_json::to_value(&summary)?)?;
        }
        ConnectionCommand::Test { id } => {
            let outcome = engine.connections().test(&id).await?;
            match (outcome.ran, outcome.label) {
                (false, _) => println!("{id}: the connector defines no credential test"),
                (true, Some(label)) => println!("{id}: ok ({label})"),
                (true, None) => println!("{id}: ok"),
            }
        }
        ConnectionCommand::Refresh { id } => {
            let current = engine.connections().get(&id).await?;
            let record = engine
                .renewal()
                .refresh(
                    &id,
                    latchkey_engine::RefreshReason::Forced { seen_version: current.version },
                )
                .await?;
            match record.expires_at {
                Some(at) => println!("{id}: refreshed, expires {at}"),
                None => println!("{id}: refreshed"),
            }
        }
        ConnectionCommand::Delete { id } => {
            let revocation = engine.connections().delete(&id).await?;
            println!("deleted {id} (token revocation: {revocation})");
        }
        ConnectionCommand::Import {
            file,
            test,
            skip_existing,
            identity,
            passphrase_file,
            batch_size,
            output,
        } => {
            let options = super::import::Options {
                environment: environment.clone(),
                file,
                test,
                skip_existing,
                identity,
                passphrase_file,
                batch_size,
                output,
            };
            return super::import::run(engine, options).await;
        }
        ConnectionCommand::Export { output, with_credentials, recipients, passphrase_file } => {
            let options = super::export::Options {
                environment: environment.clone(),
                output,
                with_credentials,
                recipients,
                passphrase_file,
            };
            return super::export::run(engine, options).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
