//! `latchkey connection list|show|test|delete`.

use std::process::ExitCode;

use latchkey_engine::Engine;

use crate::args::ConnectionCommand;

pub async fn run(engine: &Engine, command: ConnectionCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectionCommand::List => {
            for c in engine.connections().list().await? {
                println!(
                    "{:<32} {:<20} {:<10} {:<13} {}",
                    c.id,
                    c.connector,
                    c.auth_method,
                    c.status.as_str(),
                    c.label.as_deref().unwrap_or("")
                );
            }
        }
        ConnectionCommand::Show { id } => {
            let summary = engine.connections().get(&id).await?.summary();
            println!("{}", serde_json::to_string_pretty(&summary)?);
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
    }
    Ok(ExitCode::SUCCESS)
}
