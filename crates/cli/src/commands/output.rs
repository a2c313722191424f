//! Printing lists and shows: aligned columns under a header row, `field  value` lines, or JSON.

use std::io::Write;

use serde_json::Value;

use crate::args::Format;

/// A list: text prints `header` and each row's cells aligned (by `tabwriter`, which measures
/// display width); JSON prints the array of each row's object.
pub fn list(
    format: Format,
    header: &[&str],
    rows: Vec<(Vec<String>, Value)>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let items: Vec<Value> = rows.into_iter().map(|(_, json)| json).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
        }
        Format::Text => {
            let mut table = tabwriter::TabWriter::new(out).padding(2);
            writeln!(table, "{}", header.join("\t"))?;
            for (cells, _) in rows {
                let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
                writeln!(table, "{}", cells.join("\t"))?;
            }
            table.flush()?;
        }
    }
    Ok(())
}

/// One object: text prints each top-level field and its value aligned (strings as they are,
/// `-` for null, anything else as compact JSON); JSON prints the object.
pub fn show(format: Format, value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match (format, value) {
        (Format::Text, Value::Object(fields)) => {
            let mut table = tabwriter::TabWriter::new(out).padding(2);
            for (name, value) in fields {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                writeln!(table, "{name}\t{}", cell(&text))?;
            }
            table.flush()?;
        }
        _ => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
    }
    Ok(())
}

/// A cell on one line: tabs and line breaks would break the columns.
fn cell(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    text.replace(['\t', '\n', '\r'], " ")
}
