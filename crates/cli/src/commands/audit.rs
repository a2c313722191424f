//! `latchkey audit …`: printing the newest audit entries (and following new ones), and
//! verifying the hash chain, on the configured store opened directly. No entry holds a secret.
//! Also the entries of the CLI's own changes ([`local_action`], [`audited`]).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use latchkey_engine::{Engine, EnvironmentId};
use latchkey_store::{
    AuditEntry, AuditFilter, AuditObject, AuditOutcome, AuditPage, AuditRecord, AuditVerdict, Store,
};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::args::{AuditCommand, Command, Format, Global};
use crate::setup;

/// How often `tail --follow` looks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Runs one `audit` command.
pub async fn run(global: &Global, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = setup::store(global).await?;
    match command {
        AuditCommand::Tail {
            limit,
            follow,
            actor,
            action,
            object,
            all_environments,
            since,
            until,
            output,
        } => {
            let environment = (!all_environments).then(|| global.environment.as_str().to_owned());
            let filter = AuditFilter { actor, action, object, environment, since, until };
            tail(&*store, &filter, limit, follow, output.output).await
        }
        AuditCommand::Verify => verify(&*store).await,
    }
}

async fn tail(
    store: &dyn Store,
    filter: &AuditFilter,
    limit: u32,
    follow: bool,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let mut entries = store.list_audit(filter, &AuditPage::newest(limit)).await?;
    entries.reverse();
    let mut last = entries.last().map(|e| e.seq);
    if !follow {
        if format == Format::Json {
            let items: Vec<Value> = entries.iter().map(entry_json).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        } else {
            print_text(&entries, true)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_batch(&entries, format, true)?;
    let mut header = entries.is_empty();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let page = AuditPage::oldest(latchkey_store::audit::MAX_PAGE);
        let page = match last {
            Some(seq) => page.after(seq),
            None => page,
        };
        let new = store.list_audit(filter, &page).await?;
        if let Some(newest) = new.last() {
            last = Some(newest.seq);
            print_batch(&new, format, header)?;
            header = false;
        }
    }
}

/// Entries as they come while following: JSON lines, or rows (with the header first).
fn print_batch(entries: &[AuditEntry], format: Format, header: bool) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let mut out = std::io::stdout().lock();
            for entry in entries {
                writeln!(out, "{}", entry_json(entry))?;
            }
            out.flush()?;
        }
        Format::Text => print_text(entries, header)?,
    }
    Ok(())
}

fn print_text(entries: &[AuditEntry], header: bool) -> anyhow::Result<()> {
    let mut table = tabwriter::TabWriter::new(std::io::stdout().lock()).padding(2);
    if header {
        writeln!(table, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tENVIRONMENT\tADDRESS\tOUTCOME")?;
    }
    for entry in entries {
        let r = &entry.record;
        let object = r.object.as_ref().map_or("-".to_owned(), |o| format!("{}:{}", o.kind, o.id));
        let outcome = match (r.status, &r.detail) {
            (Some(status), _) => format!("{} ({status})", r.outcome),
            (None, Some(detail)) => format!("{} ({detail})", r.outcome),
            (None, None) => r.outcome.to_string(),
        };
        let cells = [
            entry.seq.to_string(),
            time_of(entry),
            format!("{} ({})", r.actor_id, r.actor_name),
            r.action.clone(),
            object,
            r.environment.clone().unwrap_or_else(|| "-".into()),
            r.address.clone().unwrap_or_else(|| "-".into()),
            outcome,
        ];
        let cells: Vec<String> = cells.iter().map(|c| c.replace(['\t', '\n', '\r'], " ")).collect();
        writeln!(table, "{}", cells.join("\t"))?;
    }
    table.flush()?;
    Ok(())
}

fn time_of(entry: &AuditEntry) -> String {
    entry.record.at.format(&Rfc3339).unwrap_or_else(|_| "?".into())
}

/// An entry in the shape `GET /v1/audit` answers with.
fn entry_json(entry: &AuditEntry) -> Value {
    let r = &entry.record;
    json!({
        "seq": entry.seq,
        "at": time_of(entry),
        "actor": { "id": r.actor_id, "name": r.actor_name },
        "action": r.action,
        "object": r.object.as_ref().map(|o| json!({ "kind": o.kind, "id": o.id })),
        "environment": r.environment,
        "address": r.address,
        "outcome": r.outcome.as_str(),
        "status": r.status,
        "detail": r.detail,
        "hash": hex::encode(&entry.hash),
    })
}

async fn verify(store: &dyn Store) -> anyhow::Result<ExitCode> {
    match store.verify_audit().await? {
        AuditVerdict::Intact { entries, anchor_seq, head_seq, head_hash } => {
            let from = if anchor_seq > 0 {
                format!(" (entries up to {anchor_seq} were removed by retention)")
            } else {
                String::new()
            };
            println!("audit log intact: {entries} entries, last {head_seq}{from}");
            println!("head hash {}", hex::encode(head_hash));
            Ok(ExitCode::SUCCESS)
        }
        AuditVerdict::Broken(broken) => {
            let problem = broken.problem.describe();
            let (at, next) = match &broken.entry {
                Some(entry) if entry.seq == broken.seq => {
                    (format!(" ({}, {})", time_of(entry), entry.record.action), String::new())
                }
                Some(next) => (
                    String::new(),
                    format!(
                        "; the next entry is {} ({}, {})",
                        next.seq,
                        time_of(next),
                        next.record.action
                    ),
                ),
                None => (String::new(), String::new()),
            };
            eprintln!(
                "audit log broken at entry {}{at}: {problem}{next}; {} entries before it verified",
                broken.seq, broken.verified
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A change (or credential read) made from the command line on the store directly, for the
/// audit log: the same action names as through the server, by the actor `cli`.
pub struct LocalAction {
    action: &'static str,
    object: Option<AuditObject>,
    environment: Option<String>,
    /// Recorded before the command runs, and the command refused if it cannot be: a
    /// credential read.
    reads_credentials: bool,
}

impl LocalAction {
    fn new(action: &'static str, kind: &str, id: Option<&str>) -> Self {
        let object = id.map(|id| AuditObject { kind: kind.to_owned(), id: id.to_owned() });
        Self { action, object, environment: None, reads_credentials: false }
    }

    fn within(mut self, environment: &EnvironmentId) -> Self {
        self.environment = Some(environment.as_str().to_owned());
        self
    }
}

/// The audited action of `command`, if it changes something or reads credentials.
pub fn local_action(command: &Command, environment: &EnvironmentId) -> Option<LocalAction> {
    use crate::args::{
        ApiKeyCommand, ConnectionCommand, EnvCommand, IntegrationCommand, WebhookCommand,
    };
    let action = match command {
        Command::Connect { id, .. } => {
            LocalAction::new("connection.create", "connection", id.as_ref().map(|id| id.as_str()))
                .within(environment)
        }
        Command::Connection { command } => match command {
            ConnectionCommand::Delete { id } => {
                LocalAction::new("connection.delete", "connection", Some(id.as_str()))
            }
            ConnectionCommand::Test { id } => {
                LocalAction::new("connection.test", "connection", Some(id.as_str()))
            }
            ConnectionCommand::Refresh { id } => {
                LocalAction::new("connection.refresh", "connection", Some(id.as_str()))
            }
            ConnectionCommand::Import { .. } => LocalAction::new("connection.import", "", None),
            ConnectionCommand::Export { with_credentials: true, .. } => LocalAction {
                reads_credentials: true,
                ..LocalAction::new("connection.export_credentials", "", None)
            },
            _ => return None,
        }
        .within(environment),
        Command::Integration { command } => match command {
            IntegrationCommand::Add { id, .. } => {
                LocalAction::new("integration.create", "integration", Some(id.as_str()))
            }
            IntegrationCommand::Delete { id, .. } => {
                LocalAction::new("integration.delete", "integration", Some(id.as_str()))
            }
            _ => return None,
        }
        .within(environment),
        Command::Env { command } => match command {
            EnvCommand::Create { id, .. } => {
                LocalAction::new("environment.create", "environment", Some(id.as_str()))
            }
            EnvCommand::Webhook { id, rotate: true, .. } => LocalAction::new(
                "environment.webhook_secret_rotate",
                "environment",
                Some(id.as_str()),
            ),
            EnvCommand::Webhook { id, .. } => {
                LocalAction::new("environment.update", "environment", Some(id.as_str()))
            }
            EnvCommand::List { .. } => return None,
        },
        Command::ApiKey { command } => match command {
            ApiKeyCommand::Create { .. } => LocalAction::new("api_key.create", "api_key", None),
            ApiKeyCommand::Revoke { id } => {
                LocalAction::new("api_key.revoke", "api_key", Some(id.as_str()))
            }
            ApiKeyCommand::List { .. } => return None,
        },
        Command::Webhook { command: WebhookCommand::Retry { id } } => {
            LocalAction::new("webhook_delivery.retry", "webhook_delivery", Some(id.as_str()))
                .within(environment)
        }
        _ => return None,
    };
    Some(action)
}

/// Runs `run` with `action` in the audit log: a credential read is recorded first (and refused
/// if it cannot be), anything else after, with how it turned out.
pub async fn audited<F>(
    engine: &Engine,
    action: Option<LocalAction>,
    run: F,
) -> anyhow::Result<ExitCode>
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    // The events a command emits are recorded in the background: wait for them, so the
    // delivery log has them before the process exits.
    let run = async {
        let result = run.await;
        engine.webhooks().settle().await;
        engine.operations().flush().await;
        result
    };
    let Some(action) = action else { return run.await };
    if action.reads_credentials {
        append(engine, &action, AuditOutcome::Success)
            .await
            .context("the credential read cannot be recorded in the audit log, so it is refused")?;
        return run.await;
    }
    let result = run.await;
    let outcome = match &result {
        Ok(code) if *code == ExitCode::SUCCESS => AuditOutcome::Success,
        _ => AuditOutcome::Failed,
    };
    if let Err(e) = append(engine, &action, outcome).await {
        tracing::error!(action = action.action, error = %e, "cannot record the command in the audit log");
    }
    result
}

async fn append(
    engine: &Engine,
    action: &LocalAction,
    outcome: AuditOutcome,
) -> anyhow::Result<()> {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let record = AuditRecord {
        at: time::OffsetDateTime::now_utc(),
        actor_id: LOCAL_ACTOR.to_owned(),
        actor_name: if user.is_empty() {
            "latchkey CLI".into()
        } else {
            format!("latchkey CLI ({user})")
        },
        action: action.action.to_owned(),
        object: action.object.clone(),
        environment: action.environment.clone(),
        address: None,
        outcome,
        status: None,
        detail: None,
    };
    engine.audit().append(&record).await?;
    Ok(())
}

/// The actor id of commands run on the store directly.
pub const LOCAL_ACTOR: &str = "cli";
