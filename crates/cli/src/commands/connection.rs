//! `latchkey connection list|show|test|refresh|delete|import|export`.

use std::process::ExitCode;

use latchkey_engine::Engine;

use super::output;
use crate::args::ConnectionCommand;

pub async fn run(engine: &Engine, command: ConnectionCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectionCommand::List { output } => {
            let mut rows = Vec::new();
            for c in engine.connections().list().await? {
                let cells = vec![
                    c.id.clone(),
                    c.connector.clone(),
                    c.auth_method.clone(),
                    c.status.as_str().to_owned(),
                    c.label.clone().unwrap_or_default(),
                ];
                rows.push((cells, serde_json::to_value(&c)?));
            }
            output::list(output.output, &["ID", "CONNECTOR", "AUTH", "STATUS", "LABEL"], rows)?;
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
            engine.connections().delete(&id).await?;
            println!("deleted {id}");
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
            let options =
                super::export::Options { output, with_credentials, recipients, passphrase_file };
            return super::export::run(engine, options).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
