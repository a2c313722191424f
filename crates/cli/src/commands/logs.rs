//! `latchkey logs`: the newest operations of the environment (requests, refreshes, checks,
//! connect steps, webhook deliveries, revocations), oldest of them first, and with `--follow`
//! every new one, read from the configured store directly. No operation holds a secret.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use latchkey_store::operations::status_class;
use latchkey_store::{Operation, OperationFilter, PageRequest, Store};

use crate::args::{Format, LogsOptions};
use crate::setup;

/// How often `--follow` looks for new operations.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Runs `latchkey logs`.
pub async fn run(global: &crate::args::Global, options: LogsOptions) -> anyhow::Result<ExitCode> {
    let store = setup::store(global).await?;
    let status_class = options.status.as_deref().map(status_class).transpose()?;
    let mut filter = OperationFilter {
        environment: global.environment.as_str().to_owned(),
        connection: options.connection,
        integration: options.integration,
        kind: options.kind.as_deref().map(str::parse).transpose()?,
        outcome: options.outcome.as_deref().map(str::parse).transpose()?,
        status_class,
        since: options.since,
        until: options.until,
    };
    let mut shown = store.list_operations(&filter, &PageRequest::first(options.limit)).await?.items;
    shown.reverse();
    let format = options.output.output;
    if !options.follow && format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&shown, format, true)?;
    if !options.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = shown.is_empty();
    let mut newest = shown.last().map(|o| (o.at, o.id.clone()));
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if let Some((at, _)) = &newest {
            filter.since = Some(*at);
        }
        let new = newer_than(&*store, &filter, newest.as_ref().map(|(_, id)| id.as_str())).await?;
        if let Some(last) = new.last() {
            newest = Some((last.at, last.id.clone()));
            print(&new, format, header)?;
            header = false;
        }
    }
}

/// Every operation `filter` selects, oldest first, leaving out `seen` (the one the last
/// look ended on, which `since` selects again).
async fn newer_than(
    store: &dyn Store,
    filter: &OperationFilter,
    seen: Option<&str>,
) -> anyhow::Result<Vec<Operation>> {
    let mut all = Vec::new();
    let mut page = PageRequest::first(latchkey_store::MAX_PAGE_SIZE);
    loop {
        let found = store.list_operations(filter, &page).await?;
        all.extend(found.items.into_iter().filter(|o| Some(o.id.as_str()) != seen));
        match found.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    all.reverse();
    Ok(all)
}

/// Operations as rows (the header first when asked), or JSON lines.
fn print(operations: &[Operation], format: Format, header: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        for operation in operations {
            writeln!(out, "{}", serde_json::to_string(operation)?)?;
        }
        out.flush()?;
        return Ok(());
    }
    let mut table = tabwriter::TabWriter::new(out).padding(2);
    if header {
        writeln!(table, "TIME\tKIND\tOUTCOME\tCONNECTION\tSTATUS\tMS\tREQUEST\tERROR")?;
    }
    for o in operations {
        let time =
            o.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| "?".into());
        let request = match (&o.method, &o.host, &o.path) {
            (Some(method), host, Some(path)) => {
                format!("{method} {}{path}", host.as_deref().unwrap_or_default())
            }
            _ => "-".into(),
        };
        let error = match (&o.error_code, &o.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.clone(),
            _ => "-".into(),
        };
        let cells = [
            time,
            o.kind.to_string(),
            o.outcome.as_str().to_owned(),
            o.connection.clone().unwrap_or_else(|| "-".into()),
            o.upstream_status.map_or("-".into(), |s| s.to_string()),
            format!("{:.1}", o.latency_us as f64 / 1000.0),
            request,
            error,
        ];
        let cells: Vec<String> = cells.iter().map(|c| c.replace(['\t', '\n', '\r'], " ")).collect();
        writeln!(table, "{}", cells.join("\t"))?;
    }
    table.flush()?;
    Ok(())
}
