//! `latchkey audit …`: printing the newest audit entries (and following new ones), and
//! verifying the hash chain, on the configured store opened directly. No entry holds a secret.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use latchkey_store::{AuditEntry, AuditFilter, AuditPage, AuditVerdict, Store};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::args::{AuditCommand, Format, Global};
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
        let outcome = match r.status {
            Some(status) => format!("{} ({status})", r.outcome),
            None => r.outcome.to_string(),
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
