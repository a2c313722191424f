//! Configuration layering through the real binary: `latchkey.toml` ← `LATCHKEY_*` ← flags, and
//! a typo in the file stops start-up naming the key.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn connector_dir(root: &Path, id: &str) -> String {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{id}.yaml")),
        format!("id: {id}\nname: {id}\nbase_url: https://{id}.example\nauth: [{{type: bearer}}]\n"),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

/// `latchkey connector list --search=-layer` with `envs` set and no other LATCHKEY_ variable.
fn list(data_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            command.env_remove(name);
        }
    }
    command
        .env("LATCHKEY_DATA_DIR", data_dir)
        .envs(envs.iter().copied())
        .args(args)
        .args(["connector", "list", "--search=-layer"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ids(out: &Output) -> Vec<&'static str> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    ["file-layer", "env-layer", "flag-layer"].into_iter().filter(|id| stdout.contains(id)).collect()
}

#[test]
fn file_then_environment_then_flag() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let from_file = connector_dir(root.path(), "file-layer");
    let from_env = connector_dir(root.path(), "env-layer");
    let from_flag = connector_dir(root.path(), "flag-layer");
    std::fs::write(data.join("latchkey.toml"), format!("connectors = [{from_file:?}]\n")).unwrap();

    assert_eq!(ids(&list(&data, &[], &[])), ["file-layer"], "the data directory's file is read");
    let env = [("LATCHKEY_CONNECTORS", from_env.as_str())];
    assert_eq!(ids(&list(&data, &env, &[])), ["env-layer"], "the environment beats the file");
    let flag = ["--connectors", from_flag.as_str()];
    assert_eq!(ids(&list(&data, &env, &flag)), ["flag-layer"], "a flag beats the environment");

    // `--config` (or LATCHKEY_CONFIG) names another file, which replaces the data directory's.
    let other = root.path().join("other.toml");
    std::fs::write(&other, format!("connectors = [{from_env:?}]\n")).unwrap();
    let config = [("LATCHKEY_CONFIG", other.to_str().unwrap())];
    assert_eq!(ids(&list(&data, &config, &[])), ["env-layer"]);
}

#[test]
fn a_typo_in_the_file_stops_start_up_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("latchkey.toml"), "script_cpu_msec = 10\n").unwrap();
    let out = list(root.path(), &[], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `script_cpu_msec`"), "{stderr}");
    assert!(stderr.contains("latchkey.toml"), "{stderr}");
}
