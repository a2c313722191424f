//! `latchkey webhook deliveries|show|retry`: the environment's webhook delivery log, read from
//! the store (as `GET /v1/webhook-deliveries` does through the server).

use std::process::ExitCode;

use latchkey_engine::{DeliveryFilter, Engine, EnvironmentId, WebhookDelivery, page_request, time};

use super::output;
use crate::args::{Format, WebhookCommand};

/// Runs a webhook command.
pub async fn run(
    engine: &Engine,
    environment: &EnvironmentId,
    command: WebhookCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Deliveries { status, event, connection, limit, cursor, output } => {
            let filter = DeliveryFilter {
                environment: environment.to_string(),
                status: status.map(|s| s.parse()).transpose()?,
                event,
                connection,
            };
            let page = page_request(Some(limit), cursor.as_deref())?;
            let found = engine.webhooks().list(&filter, &page).await?;
            let next = found.next.map(|c| c.token());
            if output.output == Format::Json {
                let items: Vec<_> = found.items.iter().map(|d| view(d, false)).collect();
                let page = serde_json::json!({ "items": items, "next_cursor": next });
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = found
                .items
                .iter()
                .map(|d| {
                    let cells = vec![
                        d.id.clone(),
                        d.event.clone(),
                        d.connection_id.clone().unwrap_or_default(),
                        d.status.as_str().to_owned(),
                        d.attempts.to_string(),
                        d.last_status.map(|s| s.to_string()).unwrap_or_default(),
                        timestamp(d.created_at),
                        d.last_error.clone().unwrap_or_default(),
                    ];
                    (cells, view(d, false))
                })
                .collect();
            output::list(
                output.output,
                &["ID", "EVENT", "CONNECTION", "STATUS", "ATTEMPTS", "HTTP", "CREATED", "ERROR"],
                rows,
            )?;
            if let Some(next) = next {
                eprintln!("more: --cursor {next}");
            }
        }
        WebhookCommand::Show { id } => {
            let found = engine.webhooks().get(environment, &id).await?;
            println!("{}", serde_json::to_string_pretty(&view(&found, true))?);
        }
        WebhookCommand::Retry { id } => {
            engine.webhooks().retry(environment, &id).await?;
            println!("queued webhook delivery {id} again");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A delivery as JSON, as the API shows it.
fn view(d: &WebhookDelivery, with_body: bool) -> serde_json::Value {
    let mut json = serde_json::json!({
        "id": d.id,
        "event": d.event,
        "connection_id": d.connection_id,
        "url": d.url,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": timestamp(d.created_at),
        "next_attempt_at": d.next_attempt_at.map(timestamp),
        "delivered_at": d.delivered_at.map(timestamp),
    });
    if with_body {
        json["body"] = serde_json::from_str(&d.body).unwrap_or_else(|_| d.body.clone().into());
    }
    json
}

fn timestamp(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
