//! Catalog lint: the rules a connector must follow beyond parsing. Its id matches its file
//! name, it has a credential test, a category and docs, its allowed hosts cover its base URL,
//! its templates refer only to declared fields, and no literal looks like a secret.

use std::collections::BTreeSet;

use regex::Regex;

use super::{AuthMethod, Connector};
use crate::template::{is_template, referenced_names};

/// The categories of the built-in catalog.
pub const CATEGORIES: &[&str] = &[
    "crm",
    "accounting",
    "payments",
    "ecommerce",
    "developer-tools",
    "communication",
    "email-marketing",
    "support",
    "hr",
    "file-storage",
    "productivity",
    "analytics",
    "cloud",
];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintIssue {
    /// The field concerned.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn issue(field: impl Into<String>, message: impl Into<String>) -> LintIssue {
    LintIssue { field: field.into(), message: message.into() }
}

/// Checks `connector`, loaded from a file named `file_stem.yaml`.
pub fn lint(connector: &Connector, file_stem: &str) -> Vec<LintIssue> {
    let mut out = Vec::new();
    if connector.id != file_stem {
        out.push(issue(
            "id",
            format!("`{}` differs from the file name `{file_stem}`", connector.id),
        ));
    }
    if connector.test.is_none() {
        out.push(issue("test", "a credential test request is required"));
    }
    match connector.category.as_deref() {
        Some(c) if CATEGORIES.contains(&c) => {}
        Some(c) => {
            out.push(issue("category", format!("`{c}` is not one of {}", CATEGORIES.join(", "))))
        }
        None => out.push(issue("category", "a category is required")),
    }
    if connector.docs.is_none() {
        out.push(issue("docs", "the provider's documentation URL is required"));
    }
    check_hosts(connector, &mut out);
    check_templates(connector, &mut out);
    check_secrets(connector, &mut out);
    out
}

fn check_hosts(connector: &Connector, out: &mut Vec<LintIssue>) {
    if connector.allowed_hosts.is_empty() || is_template(&connector.base_url) {
        return;
    }
    let Ok(base) = url::Url::parse(&connector.base_url) else { return };
    let host = base.host_str().unwrap_or_default().to_ascii_lowercase();
    let covered = connector.allowed_hosts.iter().any(|pattern| {
        let pattern = pattern.split(':').next().unwrap_or_default().to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => pattern == host,
        }
    });
    if !covered {
        out.push(issue("allowed_hosts", format!("does not cover the base URL's host `{host}`")));
    }
}

/// Every template, with the field it sits in and the names it may use.
fn check_templates(connector: &Connector, out: &mut Vec<LintIssue>) {
    let config: BTreeSet<String> =
        connector.config.iter().map(|f| format!("config.{}", f.key)).collect();
    let mut check = |field: String, source: &str, extra: &BTreeSet<String>, response: bool| {
        for name in referenced_names(source) {
            let ok = config.contains(&name)
                || extra.contains(&name)
                || (response && (name == "response" || name.starts_with("response.")));
            if !ok {
                out.push(issue(
                    field.clone(),
                    format!("refers to `{name}`, which is not declared"),
                ));
            }
        }
    };
    let none = BTreeSet::new();
    check("base_url".into(), &connector.base_url, &none, false);
    for (i, host) in connector.allowed_hosts.iter().enumerate() {
        check(format!("allowed_hosts[{i}]"), host, &none, false);
    }
    for (name, value) in &connector.headers {
        check(format!("headers.{name}"), value, &none, false);
    }
    if let Some(test) = &connector.test
        && let Some(label) = &test.label
    {
        check("test.label".into(), label, &none, true);
    }
    for (i, method) in connector.auth.iter().enumerate() {
        let mut names: BTreeSet<String> =
            method.fields().iter().map(|f| format!("credentials.{}", f.key)).collect();
        let at = |f: &str| format!("auth[{i}].{f}");
        match method {
            AuthMethod::ApiKey(m) => {
                for (j, p) in m.apply.as_slice().iter().enumerate() {
                    if let Some(v) = &p.value {
                        check(at(&format!("apply[{j}].value")), v, &names, false);
                    }
                }
            }
            AuthMethod::OAuth2(m) => {
                names.insert("access_token".into());
                names.insert("credentials.access_token".into());
                for (f, v) in [
                    ("base_url", &m.base_url),
                    ("authorize_url", &m.authorize_url),
                    ("token_url", &m.token_url),
                    ("refresh_url", &m.refresh_url),
                    ("revocation_url", &m.revocation_url),
                    ("issuer", &m.issuer),
                ] {
                    if let Some(v) = v {
                        check(at(f), v, &none, false);
                    }
                }
                if let Some(v) = &m.apply.value {
                    check(at("apply.value"), v, &names, false);
                }
            }
            AuthMethod::Jwt(m) => {
                for (k, v) in m.header.iter().chain(m.claims.iter()) {
                    check(at(k), v, &names, false);
                }
            }
            AuthMethod::OAuth1(m) => {
                if let Some(realm) = &m.realm {
                    check(at("realm"), realm, &none, false);
                }
            }
            AuthMethod::AwsSigV4(m) => {
                check(at("service"), &m.service, &none, false);
                check(at("region"), &m.region, &none, false);
            }
            AuthMethod::Custom(m) => {
                if let Some(v) = &m.auth_value {
                    check(at("auth_value"), v, &names, false);
                }
            }
            AuthMethod::Session(m) => {
                check(at("login.url"), &m.login.url, &names, false);
                for (k, v) in &m.login.headers {
                    check(at(&format!("login.headers.{k}")), v, &names, false);
                }
                names.insert("session_token".into());
                names.insert("credentials.session_token".into());
                if let Some(v) = &m.apply.value {
                    check(at("apply.value"), v, &names, false);
                }
            }
            AuthMethod::None(_)
            | AuthMethod::Basic(_)
            | AuthMethod::Bearer(_)
            | AuthMethod::Digest(_) => {}
        }
    }
}

/// Literals that look like credentials (vendor key prefixes, long high-entropy strings).
fn check_secrets(connector: &Connector, out: &mut Vec<LintIssue>) {
    let patterns = [
        r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{10,}",
        r"\bgh[pousr]_[A-Za-z0-9]{20,}",
        r"\bgithub_pat_[A-Za-z0-9_]{20,}",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"\bAKIA[0-9A-Z]{16}\b",
        r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"\b[A-Za-z0-9+/_-]{40,}={0,2}",
    ];
    let regexes: Vec<Regex> = patterns.iter().filter_map(|p| Regex::new(p).ok()).collect();
    let mut literals: Vec<(String, String)> =
        connector.headers.iter().map(|(k, v)| (format!("headers.{k}"), v.clone())).collect();
    for (i, method) in connector.auth.iter().enumerate() {
        match method {
            AuthMethod::OAuth2(m) => {
                for (k, v) in m
                    .authorize_params
                    .iter()
                    .chain(&m.token_params)
                    .chain(&m.refresh_params)
                    .chain(&m.token_request.headers)
                {
                    literals.push((format!("auth[{i}].{k}"), v.clone()));
                }
            }
            AuthMethod::Basic(m) => {
                for (f, v) in
                    [("username.value", &m.username.value), ("password.value", &m.password.value)]
                {
                    if let Some(v) = v {
                        literals.push((format!("auth[{i}].{f}"), v.clone()));
                    }
                }
            }
            AuthMethod::ApiKey(m) => {
                for (j, p) in m.apply.as_slice().iter().enumerate() {
                    if let Some(v) = &p.value {
                        literals.push((format!("auth[{i}].apply[{j}].value"), v.clone()));
                    }
                }
            }
            AuthMethod::Jwt(m) => {
                for (k, v) in m.header.iter().chain(m.claims.iter()) {
                    literals.push((format!("auth[{i}].{k}"), v.clone()));
                }
            }
            _ => {}
        }
    }
    // Template expressions are references, not literals.
    let expression = Regex::new(r"\{\{.*?\}\}").ok();
    for (field, value) in literals {
        let literal = match &expression {
            Some(r) => r.replace_all(&value, "").into_owned(),
            None => value,
        };
        if regexes.iter().any(|r| r.is_match(&literal)) {
            out.push(issue(field, "holds a literal that looks like a secret"));
        }
    }
}
