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

const RATE_BASE: &str = "id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: bearer\n";

#[test]
fn a_rate_limit_loads_with_its_defaults() {
    use latchkey_core::connector::{RatePeriod, RateScope};
    let src =
        format!("{RATE_BASE}rate_limit: {{ requests: 100, per: minute, scope: integration }}\n");
    let limit = parse_connector(&src, "x.yaml").unwrap().rate_limit.unwrap();
    assert_eq!(limit.requests, Some(100));
    assert_eq!(limit.per, Some(RatePeriod::Minute));
    assert_eq!(limit.scope, RateScope::Integration);
    assert_eq!(limit.max_wait_ms, 10_000);
    assert_eq!(limit.retry_after_max_ms, 5_000);
    assert_eq!(limit.retry_methods, ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
    // Only Retry-After handling, no limit of Latchkey's own.
    let only_backoff = format!("{RATE_BASE}rate_limit: {{ retry_after_max_ms: 2000 }}\n");
    let limit = parse_connector(&only_backoff, "x.yaml").unwrap().rate_limit.unwrap();
    assert_eq!(limit.rate(), None);
}

#[test]
fn a_bad_rate_limit_names_its_field_and_line() {
    let zero = error_of(&format!("{RATE_BASE}rate_limit: {{ requests: 0 }}\n"));
    assert!(zero.starts_with("bad.yaml:6"), "{zero}");
    assert!(zero.contains("rate_limit.requests"), "{zero}");
    assert!(zero.contains("at least 1"), "{zero}");
    let period = error_of(&format!("{RATE_BASE}rate_limit: {{ requests: 5, per: day }}\n"));
    assert!(period.contains("day"), "{period}");
    let typo = error_of(&format!("{RATE_BASE}rate_limit: {{ request: 5 }}\n"));
    assert!(typo.contains("request"), "{typo}");
    let wait =
        error_of(&format!("{RATE_BASE}rate_limit: {{ requests: 5, max_wait_ms: 900000 }}\n"));
    assert!(wait.contains("rate_limit.max_wait_ms"), "{wait}");
    let method = error_of(&format!("{RATE_BASE}rate_limit: {{ retry_methods: [get] }}\n"));
    assert!(method.contains("rate_limit.retry_methods[0]"), "{method}");
    let lonely = error_of(&format!("{RATE_BASE}rate_limit: {{ per: hour }}\n"));
    assert!(lonely.contains("need `requests`"), "{lonely}");
}

#[test]
fn the_schema_shows_rate_limit() {
    let text = json_schema().to_string();
    for word in ["rate_limit", "retry_after_max_ms", "max_wait_ms", "RateScope"] {
        assert!(text.contains(word), "schema lacks {word}");
    }
}

#[test]
fn a_check_interval_loads_and_a_short_or_bad_one_names_its_field() {
    use latchkey_core::Interval;
    let with = |value: &str| format!("{RATE_BASE}test: {{ path: /me, check_interval: {value} }}\n");
    let every = |value: &str| parse_connector(&with(value), "x.yaml").unwrap().test.unwrap();
    assert_eq!(every("6h").check_interval, Some("6h".parse::<Interval>().unwrap()));
    assert_eq!(every("off").check_interval, Some(Interval::OFF));
    assert_eq!(every("\"1h30m\"").check_interval.unwrap().get().unwrap().as_secs(), 5400);
    let plain = parse_connector(&format!("{RATE_BASE}test: {{ path: /me }}\n"), "x.yaml").unwrap();
    assert_eq!(plain.test.unwrap().check_interval, None, "the server's default");

    let short = error_of(&with("30s"));
    assert!(short.contains("test.check_interval") && short.contains("at least `1m`"), "{short}");
    let bad = error_of(&with("soon"));
    assert!(bad.contains("check_interval") && bad.contains("invalid interval"), "{bad}");
    assert!(json_schema().to_string().contains("check_interval"));
}

fn oauth2_with(callback: &str, grant: &str) -> String {
    format!(
        "id: x\nname: X\nbase_url: https://x.example\nauth:\n  - type: oauth2\n    grant: {grant}\n    authorize_url: https://x.example/auth\n    token_url: https://x.example/token\n{callback}"
    )
}

#[test]
fn the_callback_names_its_code_parameter_and_what_to_keep() {
    let src = oauth2_with(
        "    callback: {code_param: spapi_oauth_code, keep: [selling_partner_id]}\n",
        "authorization_code",
    );
    let c = parse_connector(&src, "x.yaml").unwrap();
    let AuthMethod::OAuth2(m) = &c.auth[0] else { panic!("oauth2") };
    assert_eq!(m.callback.code_param, "spapi_oauth_code");
    let kept: Vec<_> = m.kept_callback_params().collect();
    assert_eq!(kept, [(&"selling_partner_id".to_string(), &"selling_partner_id".to_string())]);

    // A map renames; the deprecated `callback_keep` is still read.
    let src = oauth2_with(
        "    callback: {keep: {realm_id: realmId}}\n    callback_keep: {shop_domain: shop}\n",
        "authorization_code",
    );
    let c = parse_connector(&src, "x.yaml").unwrap();
    let AuthMethod::OAuth2(m) = &c.auth[0] else { panic!("oauth2") };
    assert_eq!(m.callback.code_param, "code");
    let kept: Vec<_> = m.kept_callback_params().map(|(k, p)| (k.as_str(), p.as_str())).collect();
    assert_eq!(kept, [("realm_id", "realmId"), ("shop_domain", "shop")]);
    assert!(!m.callback.require_iss, "iss is required only when the connector says so");

    let src = oauth2_with(
        "    issuer: https://x.example\n    callback: {require_iss: true}\n",
        "authorization_code",
    );
    let c = parse_connector(&src, "x.yaml").unwrap();
    let AuthMethod::OAuth2(m) = &c.auth[0] else { panic!("oauth2") };
    assert!(m.callback.require_iss);
}

#[test]
fn a_callback_that_would_keep_a_secret_or_misread_the_response_is_refused() {
    let cases = [
        ("    callback: {code_param: state}\n", "authorization_code", "callback.code_param"),
        ("    callback: {code_param: 'a b'}\n", "authorization_code", "callback.code_param"),
        ("    callback: {keep: [code]}\n", "authorization_code", "callback.keep.code"),
        ("    callback: {keep: [state]}\n", "authorization_code", "callback.keep.state"),
        (
            "    callback: {code_param: spapi_oauth_code, keep: {c: spapi_oauth_code}}\n",
            "authorization_code",
            "callback.keep.c",
        ),
        ("    callback_keep: {e: error}\n", "authorization_code", "callback_keep.e"),
        ("    callback: {keep: [realmId]}\n", "client_credentials", "callback"),
        ("    callback: {code_parameter: x}\n", "authorization_code", "code_parameter"),
        // `iss` must equal the method's issuer: without one there is nothing to require.
        ("    callback: {require_iss: true}\n", "authorization_code", "callback.require_iss"),
    ];
    for (callback, grant, field) in cases {
        let err = error_of(&oauth2_with(callback, grant));
        assert!(err.contains(field), "{callback}: {err}");
    }
}

#[test]
fn the_schema_describes_the_callback() {
    let schema = json_schema().to_string();
    assert!(schema.contains("code_param"), "callback.code_param in the schema");
    assert!(!schema.contains("callback_keep"), "the deprecated spelling is not advertised");
}

/// A connector with `field` as its one API-key field.
fn with_field(field: &str) -> String {
    format!(
        "id: help\nname: Help\nbase_url: https://api.help.example\nauth:\n  - type: api_key\n    fields:\n      - {field}\n"
    )
}

#[test]
fn fields_carry_help_an_example_and_a_docs_link() {
    let c = parse_connector(
        &with_field(
            "{key: api_key, label: Key, pattern: 'sk-[a-z0-9]+', help: Settings → Keys, example: sk-abc, docs_url: 'https://help.example/keys'}",
        ),
        "help.yaml",
    )
    .unwrap();
    let field = &c.auth[0].fields()[0];
    assert_eq!(field.help.as_deref(), Some("Settings → Keys"));
    assert_eq!(field.example.as_deref(), Some("sk-abc"));
    assert_eq!(field.docs_url.as_deref(), Some("https://help.example/keys"));
    // `hint` is the older name of `help`.
    let old = parse_connector(&with_field("{key: api_key, hint: Old words}"), "help.yaml").unwrap();
    assert_eq!(old.auth[0].fields()[0].help.as_deref(), Some("Old words"));

    for (field, at) in [
        ("{key: api_key, pattern: 'sk-[a-z]+', example: pk-abc}", "auth[0].fields[0].example"),
        ("{key: api_key, docs_url: 'http://help.example/keys'}", "auth[0].fields[0].docs_url"),
        ("{key: api_key, docs_url: 'not a url'}", "auth[0].fields[0].docs_url"),
    ] {
        let err = parse_connector(&with_field(field), "help.yaml").unwrap_err();
        assert_eq!(err.field.as_deref(), Some(at), "{field}: {err}");
    }
    let schema = json_schema().to_string();
    assert!(schema.contains("docs_url") && schema.contains("example"), "the JSON Schema has them");
}

#[test]
fn a_field_says_why_a_value_is_refused() {
    use latchkey_core::connector::FieldProblem;
    let c =
        parse_connector(&with_field("{key: api_key, pattern: 'sk-[a-z]+'}"), "help.yaml").unwrap();
    let field = &c.auth[0].fields()[0];
    assert_eq!(field.problem("sk-abc"), Ok(None));
    assert_eq!(field.problem(""), Ok(Some(FieldProblem::Missing)));
    assert_eq!(field.problem("sk-abc\nx"), Ok(Some(FieldProblem::Mismatch)), "the whole value");
    assert_eq!(field.problem("xsk-abc"), Ok(Some(FieldProblem::Mismatch)));
}
