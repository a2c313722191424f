//! `latchkey connector list|show|validate|schema`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::collections::BTreeMap;

use latchkey_core::connector::{json_schema, lint, parse_connector};

use super::output;
use crate::args::{ConnectorCommand, Format, Global};
use crate::setup;

pub async fn run(global: &Global, command: ConnectorCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectorCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&json_schema())?);
        }
        ConnectorCommand::List { category, auth_type, search, output } => {
            let catalog = setup::catalog(global);
            let mut rows = Vec::new();
            let search = search.map(|s| s.to_lowercase());
            for entry in catalog.list() {
                let c = &entry.connector;
                if category.as_deref().is_some_and(|cat| c.category.as_deref() != Some(cat)) {
                    continue;
                }
                if auth_type.as_deref().is_some_and(|t| !c.auth.iter().any(|m| m.kind() == t)) {
                    continue;
                }
                if search
                    .as_deref()
                    .is_some_and(|s| !c.id.contains(s) && !c.name.to_lowercase().contains(s))
                {
                    continue;
                }
                let kinds: Vec<_> = c.auth.iter().map(|m| m.kind()).collect();
                let cells = vec![
                    c.id.clone(),
                    c.name.clone(),
                    c.category.clone().unwrap_or_default(),
                    kinds.join(","),
                ];
                let json = serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "category": c.category,
                    "auth": kinds,
                    "docs": c.docs,
                });
                rows.push((cells, json));
            }
            output::list(output.output, &["ID", "NAME", "CATEGORY", "AUTH"], rows)?;
            for err in catalog.errors() {
                eprintln!("skipped: {err}");
            }
        }
        ConnectorCommand::Show { id, output } => {
            let catalog = setup::catalog(global);
            let entry =
                catalog.get(&id).ok_or_else(|| anyhow::anyhow!("connector `{id}` not found"))?;
            match output.output {
                Format::Text => print!("{}", serde_saphyr::to_string(entry.connector.as_ref())?),
                Format::Json => {
                    output::show(Format::Json, &serde_json::to_value(entry.connector.as_ref())?)?
                }
            }
        }
        ConnectorCommand::Lint { paths } => {
            let mut problems = 0usize;
            let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
            let files = expand(&paths)?;
            for path in &files {
                let source = std::fs::read_to_string(path)?;
                let name = path.display().to_string();
                let connector = match parse_connector(&source, &name) {
                    Ok(c) => c,
                    Err(err) => {
                        problems += 1;
                        println!("{err}");
                        continue;
                    }
                };
                if let Some(first) = ids.insert(connector.id.clone(), path.clone()) {
                    problems += 1;
                    println!(
                        "{name}: field `id`: `{}` is also the id of {}",
                        connector.id,
                        first.display()
                    );
                }
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                for issue in lint(&connector, stem) {
                    problems += 1;
                    println!("{name}: field `{}`: {}", issue.field, issue.message);
                }
            }
            println!("{} files, {problems} problems", files.len());
            if problems > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        ConnectorCommand::CatalogDoc => {
            print!("{}", catalog_markdown(&setup::catalog(global)));
        }
        ConnectorCommand::Validate { paths } => {
            let mut failed = 0usize;
            let mut checked = 0usize;
            for path in expand(&paths)? {
                checked += 1;
                let source = std::fs::read_to_string(&path)?;
                let origin = path.display().to_string();
                let parsed = parse_connector(&source, &origin).and_then(|c| {
                    latchkey_engine::scripts::check_connector_scripts(&c, &source, &origin)
                        .map(|()| c)
                });
                match parsed {
                    Ok(c) => println!("ok    {} ({})", path.display(), c.id),
                    Err(err) => {
                        failed += 1;
                        println!("error {err}");
                    }
                }
            }
            println!("{checked} checked, {failed} with errors");
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Files as given, and the `.yaml` / `.yml` files of directories.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_yaml(p))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// The catalog as a Markdown table, grouped by category.
fn catalog_markdown(catalog: &latchkey_engine::Catalog) -> String {
    let mut by_category: BTreeMap<String, Vec<std::sync::Arc<latchkey_core::Connector>>> =
        BTreeMap::new();
    for entry in catalog.list() {
        if entry.origin == latchkey_engine::Origin::Builtin {
            let category = entry.connector.category.clone().unwrap_or_else(|| "other".into());
            by_category.entry(category).or_default().push(entry.connector.clone());
        }
    }
    let total: usize = by_category.values().map(Vec::len).sum();
    let mut out = String::from(
        "# Connector catalog\n\nGenerated from `connectors/` by `latchkey connector catalog-doc`; CI checks it is current.\n",
    );
    out.push_str(&format!("\n{total} connectors.\n"));
    for (category, connectors) in by_category {
        out.push_str(&format!(
            "\n## {category}\n\n| id | name | auth | docs |\n| --- | --- | --- | --- |\n"
        ));
        for c in connectors {
            let auth: Vec<String> = c.auth.iter().map(|m| m.kind().to_string()).collect();
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.id,
                c.name,
                auth.join(", "),
                c.docs.as_deref().map(|d| format!("[docs]({d})")).unwrap_or_default()
            ));
        }
    }
    out
}
