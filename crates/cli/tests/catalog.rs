//! The built-in catalog: every file parses and passes the lint, loads the same in two other YAML
//! parsers, `docs/catalog.md` is current, and every entry that the reference table
//! (`tests/data/api-providers.tsv`) also describes offers the auth method the table lists and has
//! the same URLs, or says in the file why not (`# differs from reference: …`).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use latchkey_core::connector::{AuthMethod, lint, parse_connector};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn catalog_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("connectors"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_catalog_file_passes_the_lint() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["connector", "lint"])
        .arg(repo().join("connectors"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // The lint catches what it claims to.
    let bad = parse_connector(
        "id: other\nname: X\nbase_url: https://api.x.example\nallowed_hosts: [evil.example]\nheaders: { X-Key: sk_live_abcdefghijklmnop }\nauth:\n  - type: api_key\n    apply: { value: '{{ credentials.nope }}' }\n",
        "x.yaml",
    )
    .unwrap();
    let issues: Vec<String> =
        lint(&bad, "x").into_iter().map(|i| format!("{}: {}", i.field, i.message)).collect();
    for expected in [
        "id:",
        "test:",
        "category:",
        "docs:",
        "allowed_hosts:",
        "headers.X-Key:",
        "credentials.nope",
    ] {
        assert!(issues.iter().any(|i| i.contains(expected)), "missing `{expected}` in {issues:?}");
    }
}

#[test]
fn catalog_doc_is_current() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["connector", "catalog-doc"])
        .env_remove("LATCHKEY_CONNECTORS")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(repo().join("docs/catalog.md")).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/catalog.md is out of date: run `cargo run -p latchkey -- connector catalog-doc > docs/catalog.md`"
    );
}

/// `${connectionConfig.x}` → `{{ config.x }}`, trailing slashes dropped.
fn normalize(url: &str) -> String {
    to_template(url).replace("{{config.", "{{ config.").trim_end_matches('/').to_string()
}

fn to_template(url: &str) -> String {
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).unwrap_or(rest.len() - 1);
        let name = &rest[start + 2..end];
        let name = name.strip_prefix("connectionConfig.").unwrap_or(name);
        out.push_str(&format!("{{{{ config.{name} }}}}"));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The Latchkey auth method kind that offers what the reference's `auth` column names, for the
/// kinds Latchkey supports; `None` for the reference's own schemes (MCP, app installs, …).
fn latchkey_kind(reference: &str) -> Option<&'static str> {
    Some(match reference {
        "OAUTH2" | "OAUTH2_CC" => "oauth2",
        "OAUTH1" | "TBA" => "oauth1",
        "API_KEY" => "api_key",
        "BASIC" => "basic",
        "JWT" => "jwt",
        "AWS_SIGV4" => "aws_sigv4",
        "NONE" => "none",
        _ => return None,
    })
}

/// The method kind the reference offers and `connector` lacks, if any. An API key may be
/// offered as `api_key`, `bearer` (a key sent as `Authorization: Bearer`), `basic` (a key as
/// the username) or `custom`; Basic credentials as `basic` or an `api_key` whose value renders
/// them.
fn missing_method(
    connector: &latchkey_core::connector::Connector,
    reference: &str,
) -> Option<&'static str> {
    let wanted = latchkey_kind(reference)?;
    let offered = |kinds: &[&str]| connector.auth.iter().any(|m| kinds.contains(&m.kind()));
    let present = match wanted {
        "api_key" => offered(&["api_key", "bearer", "basic", "custom"]),
        "basic" => offered(&["basic", "api_key"]),
        other => offered(&[other]),
    };
    (!present).then_some(wanted)
}

/// Whether the file says why it lacks `kind`: a comment `# differs from reference: no KIND …`.
fn says_why_not(source: &str, kind: &str) -> bool {
    source.lines().any(|line| {
        line.trim_start().starts_with('#')
            && line.contains("differs from reference")
            && line.contains(&format!("no {kind} method"))
    })
}

#[test]
fn a_method_the_reference_offers_must_be_offered_or_explained() {
    let parse = |yaml: &str| parse_connector(yaml, "x.yaml").unwrap();
    let basic_only = "id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: basic\n";
    assert_eq!(missing_method(&parse(basic_only), "OAUTH2"), Some("oauth2"));
    assert_eq!(missing_method(&parse(basic_only), "OAUTH1"), Some("oauth1"));
    assert_eq!(missing_method(&parse(basic_only), "BASIC"), None);
    assert_eq!(missing_method(&parse(basic_only), "API_KEY"), None);
    assert_eq!(missing_method(&parse(basic_only), "MCP_OAUTH2"), None);
    let both = format!(
        "{basic_only}  - type: oauth2\n    authorize_url: https://x.example/a\n    token_url: https://x.example/t\n"
    );
    assert_eq!(missing_method(&parse(&both), "OAUTH2"), None);
    assert!(says_why_not(
        "# differs from reference: no oauth2 method: only keys\nid: x\n",
        "oauth2"
    ));
    assert!(!says_why_not("# differs from reference: base URL\nid: x\n", "oauth2"));
    assert!(!says_why_not("description: no oauth2 method differs from reference\n", "oauth2"));
}

#[test]
fn urls_match_the_reference_or_explain_why() {
    let tsv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/api-providers.tsv"),
    )
    .unwrap();
    let mut reference: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<String> = line.split('\t').map(str::to_string).collect();
        if let Some(id) = cols.first() {
            reference.insert(id.clone(), cols);
        }
    }
    let mut unexplained = Vec::new();
    let mut compared = 0;
    for file in catalog_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        let connector = parse_connector(&source, &file.display().to_string()).unwrap();
        let Some(cols) = reference.get(&connector.id) else { continue };
        compared += 1;
        let explained = source.contains("differs from reference");
        let mut differences = Vec::new();
        let expected_base = cols.get(5).map(|s| normalize(s)).unwrap_or_default();
        if !expected_base.is_empty()
            && normalize(&connector.base_url) != expected_base
            && !normalize(&connector.base_url).starts_with(&expected_base)
        {
            differences.push(format!("base_url {} vs {expected_base}", connector.base_url));
        }
        for method in &connector.auth {
            let urls = match method {
                AuthMethod::OAuth2(m) => {
                    [("authorize_url", &m.authorize_url, 3), ("token_url", &m.token_url, 4)]
                }
                AuthMethod::OAuth1(m) => [
                    ("authorize_url", &m.authorize_url, 3),
                    ("access_token_url", &m.access_token_url, 4),
                ],
                _ => continue,
            };
            {
                for (name, ours, col) in urls {
                    let theirs = cols.get(col).map(|s| normalize(s)).unwrap_or_default();
                    if let Some(ours) = ours
                        && !theirs.is_empty()
                        && normalize(ours) != theirs
                    {
                        differences.push(format!("{name} {ours} vs {theirs}"));
                    }
                }
            }
        }
        if !differences.is_empty() && !explained {
            unexplained.push(format!("{}: {}", connector.id, differences.join("; ")));
        }
        if let Some(missing) = missing_method(&connector, cols.get(2).map_or("", |s| s.as_str()))
            && !says_why_not(&source, missing)
        {
            unexplained.push(format!(
                "{}: the reference offers {} ({missing} here) but the connector has no `{missing}` method; add it, or say why in `# differs from reference: no {missing} method: …`",
                connector.id,
                cols[2],
            ));
        }
    }
    assert!(
        unexplained.is_empty(),
        "differences from the reference without a `# differs from reference` note:\n{}",
        unexplained.join("\n")
    );
    eprintln!("compared {compared} catalog entries with the reference");
}

#[test]
fn the_catalog_is_broad_and_covers_every_auth_family() {
    let mut kinds = std::collections::BTreeSet::new();
    let mut categories = std::collections::BTreeSet::new();
    let files = catalog_files();
    for file in &files {
        let c =
            parse_connector(&std::fs::read_to_string(file).unwrap(), &file.display().to_string())
                .unwrap();
        kinds.extend(c.auth.iter().map(|m| m.kind()));
        categories.extend(c.category);
    }
    assert!(files.len() >= 150, "only {} connectors", files.len());
    for kind in [
        "none",
        "basic",
        "api_key",
        "bearer",
        "oauth2",
        "aws_sigv4",
        "digest",
        "oauth1",
        "jwt",
        "custom",
        "session",
    ] {
        assert!(kinds.contains(kind), "no catalog connector uses `{kind}`");
    }
    assert_eq!(categories.len(), latchkey_core::connector::CATEGORIES.len(), "{categories:?}");
}

/// Every catalog file loads, and loads to the same data as Latchkey reads, with ruamel.yaml (a
/// second YAML 1.2 parser) and with PyYAML's `safe_load` (YAML 1.1, what users' own tools
/// mostly use): a file only Latchkey's parser reads is not portable.
#[test]
fn every_catalog_file_loads_the_same_in_other_yaml_parsers() {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let files = catalog_files();
    let out = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/yaml_load.py"))
        .args(&files)
        .output()
        .expect("cannot start python3");
    assert!(
        out.status.success(),
        "yaml_load.py failed (needs ruamel.yaml and pyyaml: run scripts/test --prepare, which installs them into .venv-test/): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();
    let mut problems = Vec::new();
    for file in &files {
        let ours: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        for (parser, theirs) in &loaded[&file.display().to_string()] {
            if let Some(error) =
                theirs.get("error").filter(|_| theirs.as_object().unwrap().len() == 1)
            {
                problems.push(format!("{name}: {parser} cannot load it: {error}"));
            } else if *theirs != ours {
                problems.push(format!("{name}: {parser} reads other data than Latchkey"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check catches what it claims to: PyYAML refuses a `?` in a flow mapping's plain value.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "test: { path: /a?b=1, label: x }\n").unwrap();
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/yaml_load.py"))
        .arg(&bad)
        .output()
        .unwrap();
    let loaded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(loaded[bad.display().to_string()]["pyyaml"].get("error").is_some(), "{loaded}");
}

/// The catalog's most used API-key connectors tell the end user where each value is: every
/// field they ask has `help`, and a link into the provider's documentation (an https URL whose
/// host belongs to the provider or its documentation site).
#[test]
fn the_most_used_connectors_explain_their_fields() {
    const POPULAR: [&str; 30] = [
        "stripe",
        "openai",
        "anthropic",
        "github",
        "gitlab",
        "sendgrid",
        "twilio",
        "mailchimp",
        "hubspot",
        "shopify",
        "zendesk",
        "jira",
        "notion",
        "airtable",
        "slack",
        "linear",
        "asana",
        "trello",
        "klaviyo",
        "mailgun",
        "postmark",
        "resend",
        "datadog",
        "sentry",
        "pagerduty",
        "cloudflare",
        "vercel",
        "intercom",
        "freshdesk",
        "pipedrive",
    ];
    for id in POPULAR {
        let path = repo().join("connectors").join(format!("{id}.yaml"));
        let source = std::fs::read_to_string(&path).unwrap();
        let connector = parse_connector(&source, &path.display().to_string()).unwrap();
        let asked: Vec<_> = connector
            .auth
            .iter()
            .filter(|m| !matches!(m, AuthMethod::OAuth2(_) | AuthMethod::OAuth1(_)))
            .flat_map(|m| m.fields())
            .collect();
        assert!(!asked.is_empty(), "{id}: no field is asked");
        for field in &asked {
            let explained = field.help.is_some() || field.docs_url.is_some();
            assert!(explained, "{id}: field `{}` has neither help nor docs_url", field.key);
        }
        assert!(
            asked.iter().any(|f| f.docs_url.as_deref().is_some_and(|u| u.starts_with("https://"))),
            "{id}: no field links to the provider's documentation"
        );
    }
}
