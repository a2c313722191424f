//! `{{ … }}` templates in connector values, rendered with minijinja over `credentials.*`,
//! `config.*`, `response.*` and, for OAuth, `access_token`. An undefined name is an error, never an empty
//! string, so a typo in a connector cannot silently send a blank credential. URL templates
//! render through [`render_url`] / [`render_host`], which keep config values in their place.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior, Value};
use parking_lot::RwLock;

use crate::Secret;

mod url;

pub use url::{UrlTemplateError, check_url, render_host, render_url};

/// The environment every template renders in: strict about undefined names, no auto-escaping,
/// the `base64` filter.
fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("base64", |value: String| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(value)
    });
    env
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(base_env)
}

/// Templates compiled once and kept, by source text: a connector's templates are rendered on
/// every request, and compiling (lexing, parsing) cost more than rendering. Sources are
/// connector definitions, so few; past [`Compiled::CAPACITY`] (connectors edited again and
/// again) the cache starts afresh.
struct Compiled {
    env: RwLock<Environment<'static>>,
    make: fn() -> Environment<'static>,
}

impl Compiled {
    const CAPACITY: usize = 4096;

    fn new(make: fn() -> Environment<'static>) -> Self {
        Self { env: RwLock::new(make()), make }
    }

    /// Renders `source` over `ctx`, compiling it on first use.
    fn render(&self, source: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        if let Ok(template) = self.env.read().get_template(source) {
            return template.render(ctx);
        }
        let mut env = self.env.write();
        if env.get_template(source).is_err() {
            if env.templates().count() >= Self::CAPACITY {
                *env = (self.make)();
            }
            env.add_template_owned(source.to_owned(), source.to_owned())?;
        }
        let env = parking_lot::RwLockWriteGuard::downgrade(env);
        env.get_template(source)?.render(ctx)
    }
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| Compiled::new(base_env))
}

/// Whether `source` holds any template syntax (otherwise it is used as is).
pub fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%")
}

/// Checks that `source` parses; the error names the problem and its line.
pub fn check_syntax(source: &str) -> Result<(), String> {
    if !is_template(source) {
        return Ok(());
    }
    env()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| format!("template error: {}", describe(&e)))
}

/// The dotted names a template refers to, e.g. `credentials.api_key`.
pub fn referenced_names(source: &str) -> Vec<String> {
    if !is_template(source) {
        return Vec::new();
    }
    env()
        .template_from_str(source)
        .map(|t| {
            let mut names: Vec<_> = t.undeclared_variables(true).into_iter().collect();
            names.sort();
            names
        })
        .unwrap_or_default()
}

/// The values a template may refer to.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scope<'a> {
    /// The connection's credentials (`credentials.*`).
    pub credentials: Option<&'a BTreeMap<String, Secret>>,
    /// The connection's config (`config.*`).
    pub config: Option<&'a BTreeMap<String, String>>,
    /// A JSON response (`response.*`), for labels.
    pub response: Option<&'a serde_json::Value>,
}

impl Scope<'_> {
    fn to_value(self) -> Value {
        let mut ctx = BTreeMap::new();
        if let Some(credentials) = self.credentials {
            let plain: BTreeMap<&str, &str> =
                credentials.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
            ctx.insert("credentials", Value::from_serialize(&plain));
            // OAuth placements write `{{ access_token }}`.
            if let Some(token) = plain.get("access_token") {
                ctx.insert("access_token", Value::from(*token));
            }
            // Session placements write `{{ session_token }}`.
            if let Some(token) = plain.get("session_token") {
                ctx.insert("session_token", Value::from(*token));
            }
        }
        if let Some(config) = self.config {
            ctx.insert("config", Value::from_serialize(config));
        }
        if let Some(response) = self.response {
            ctx.insert("response", Value::from_serialize(response));
        }
        Value::from_serialize(ctx)
    }
}

/// Renders a template whose result may hold a secret. Errors name the template problem but
/// never a value.
pub fn render_secret(source: &str, scope: Scope<'_>) -> Result<Secret, String> {
    if !is_template(source) {
        return Ok(Secret::new(source));
    }
    compiled()
        .render(source, &scope.to_value())
        .map(Secret::new)
        .map_err(|e| format!("template error: {}", describe(&e)))
}

/// Renders a template over non-secret values (config, a response) into plain text.
pub fn render(source: &str, scope: Scope<'_>) -> Result<String, String> {
    if !is_template(source) {
        return Ok(source.to_string());
    }
    let scope = Scope { credentials: None, ..scope };
    compiled()
        .render(source, &scope.to_value())
        .map_err(|e| format!("template error: {}", describe(&e)))
}

/// The error's kind and line, without the rendered source (which may hold values).
fn describe(err: &minijinja::Error) -> String {
    let mut out = err.kind().to_string();
    if let Some(detail) = err.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let Some(line) = err.line() {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_credentials_and_config() {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new("k1"))]);
        let config = BTreeMap::from([("sub".to_string(), "acme".to_string())]);
        let scope = Scope { credentials: Some(&creds), config: Some(&config), response: None };
        let out =
            render_secret("Token {{ credentials.api_key }} for {{ config.sub }}", scope).unwrap();
        assert_eq!(out.expose(), "Token k1 for acme");
    }

    #[test]
    fn undefined_names_are_errors() {
        let err = render("https://{{ config.missing }}.x", Scope::default()).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn plain_render_cannot_see_credentials() {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new("k1"))]);
        let scope = Scope { credentials: Some(&creds), ..Scope::default() };
        assert!(render("{{ credentials.api_key }}", scope).is_err());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = check_syntax("a\n{{ config.x ").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn base64_filter() {
        let creds = BTreeMap::from([("k".to_string(), Secret::new("a:b"))]);
        let scope = Scope { credentials: Some(&creds), ..Scope::default() };
        assert_eq!(render_secret("{{ credentials.k | base64 }}", scope).unwrap().expose(), "YTpi");
    }

    #[test]
    fn lists_referenced_names() {
        let names = referenced_names("{{ credentials.api_key }}:{{ config.sub }}");
        assert_eq!(names, vec!["config.sub".to_string(), "credentials.api_key".to_string()]);
    }
}
