//! `latchkey keys …`: generating a master key, the key versions in use, re-sealing every secret
//! under the current key, and retiring old versions. No output holds key material but
//! `keys generate`'s, which is the point of it.

use std::process::ExitCode;

use crate::data_dir::write_key_file;
use latchkey_store::{MasterKey, RotationReport};

use super::output;
use crate::args::{Global, KeysCommand};
use crate::setup;

/// Runs one `keys` command.
pub async fn run(global: &Global, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { output } => {
            let key = MasterKey::generate();
            match output {
                Some(path) => {
                    write_key_file(&path, &key)?;
                    eprintln!("wrote a new master key to {} (mode 0600)", path.display());
                }
                None => println!("{}", key.to_base64().expose()),
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Status { output } => {
            let store = setup::store(global).await?;
            let rows = store
                .key_versions()
                .await?
                .into_iter()
                .map(|v| {
                    let cells = vec![
                        v.version.to_string(),
                        yes_no(v.current).to_owned(),
                        yes_no(v.key_given).to_owned(),
                        if v.checked { "yes" } else { "retired" }.to_owned(),
                        v.rows.to_string(),
                    ];
                    let json = serde_json::json!({
                        "version": v.version,
                        "current": v.current,
                        "key_given": v.key_given,
                        "checked": v.checked,
                        "rows": v.rows,
                    });
                    (cells, json)
                })
                .collect();
            output::list(
                output.output,
                &["VERSION", "CURRENT", "KEY GIVEN", "KEY CHECK", "ROWS"],
                rows,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { batch_size, retire } => {
            let store = setup::store(global).await?;
            let shown = super::progress::on_terminal();
            let old_rows = if shown {
                store.key_versions().await?.iter().filter(|v| !v.current).map(|v| v.rows).sum()
            } else {
                0
            };
            let bar = super::progress::bar(Some(old_rows), "rows re-sealed", shown);
            let report =
                store.rotate_keys_observed(batch_size, &|batch| bar.inc(batch.resealed)).await;
            bar.finish_and_clear();
            let report = report?;
            print_report(&report);
            if report.rows_on_old_versions() > 0 {
                eprintln!(
                    "{} secret rows still use older key versions: give their keys as \
                     LATCHKEY_MASTER_KEY_PREVIOUS, make sure every instance runs with the new \
                     key, and run `latchkey keys rotate` again",
                    report.rows_on_old_versions()
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("no secret row uses an older key version");
            if retire {
                print_retired(&store.retire_old_keys().await?);
            } else if report.versions.iter().any(|v| !v.current && v.checked) {
                println!("retire the old versions with `latchkey keys retire`");
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Retire => {
            let store = setup::store(global).await?;
            print_retired(&store.retire_old_keys().await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn print_report(report: &RotationReport) {
    println!(
        "re-sealed {} secret rows under key version {}",
        report.resealed, report.current_version
    );
    if report.changed_concurrently > 0 {
        println!(
            "{} rows were changed by running instances meanwhile and kept their new values",
            report.changed_concurrently
        );
    }
    for v in report.versions.iter().filter(|v| !v.current && v.rows > 0) {
        let why = if v.key_given { "" } else { " (its key was not given)" };
        println!("key version {}: {} rows left{why}", v.version, v.rows);
    }
    for row in &report.unreadable {
        println!("cannot open {row}: altered, or moved from another row");
    }
}

fn print_retired(versions: &[u32]) {
    if versions.is_empty() {
        println!("no old key version to retire");
    } else {
        let list: Vec<String> = versions.iter().map(u32::to_string).collect();
        println!(
            "retired key versions {}: their keys are no longer needed (nor accepted)",
            list.join(", ")
        );
    }
}
