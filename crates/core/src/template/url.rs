//! URL templates whose config values are safe by construction: each value substituted into a
//! base URL, token URL or allowed host is checked or encoded for the part of the URL it lands
//! in, whatever pattern the connector declares (or not) for it. A value can choose host labels
//! where the template puts it in the host, and one path segment, query or fragment text where it
//! puts it there; it can never move the URL to another host, port or path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Scope;

/// Marks the start and end of a substituted value in the rendered text (Unicode private-use
/// characters, which a URL cannot hold unencoded).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded, so a
/// value is one path segment or one query/fragment component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a URL template could not be rendered safely. No message holds a config value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlTemplateError {
    /// The template itself fails (syntax, an undefined name).
    #[error("{0}")]
    Template(String),
    /// A config value does not fit where the template puts it.
    #[error("config `{key}` cannot be used in the URL's {part}: {why}")]
    UnsafeValue {
        /// The config key whose value it is (`?` when no single key holds it).
        key: String,
        /// `scheme`, `host`, `port`, `path`, …
        part: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The environment URL templates render in: each substituted value between markers.
fn url_env() -> Environment<'static> {
    let mut env = super::base_env();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, state, value| {
        out.write_char(OPEN)?;
        minijinja::escape_formatter(out, state, value)?;
        out.write_char(CLOSE)?;
        Ok(())
    });
    env
}

fn compiled() -> &'static super::Compiled {
    static COMPILED: OnceLock<super::Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| super::Compiled::new(url_env))
}

/// Which part of a URL the text so far ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Scheme,
    Host,
    Port,
    Path,
    Query,
    Fragment,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Self::Scheme => "scheme",
            Self::Host => "host",
            Self::Port => "port",
            Self::Path => "path",
            Self::Query => "query",
            Self::Fragment => "fragment",
        }
    }
}

/// The part a URL ends in after `text` (literal template text and encoded values).
fn part_after(text: &str) -> Part {
    let Some(scheme_end) = text.find("://") else { return Part::Scheme };
    let rest = &text[scheme_end + 3..];
    let Some(end) = rest.find(['/', '?', '#']) else {
        let host = rest.rsplit('@').next().unwrap_or(rest);
        return if host.contains(':') { Part::Port } else { Part::Host };
    };
    let rest = &rest[end..];
    if rest.contains('#') {
        Part::Fragment
    } else if rest.contains('?') {
        Part::Query
    } else {
        Part::Path
    }
}

/// A value that is a sequence of DNS labels (`a-z A-Z 0-9 -`, dot-separated, none empty, none
/// starting or ending with `-`).
fn check_host_labels(value: &str) -> Result<(), &'static str> {
    let ok = !value.is_empty()
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok { Ok(()) } else { Err("it must be host labels (letters, digits, `-`, separated by `.`)") }
}

/// A value that is a whole authority: host labels, then optionally `:` and a port.
fn check_host_and_port(value: &str) -> Result<(), &'static str> {
    match value.rsplit_once(':') {
        Some((host, port)) => {
            check_host_labels(host)?;
            check_port(port)
        }
        None => check_host_labels(value),
    }
}

fn check_port(value: &str) -> Result<(), &'static str> {
    if !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("it must be a port number")
    }
}

/// A value that is a whole origin, `http(s)://host[:port]` with nothing after (e.g. an OAuth
/// `instance_url`), at the very start of a template.
fn check_origin(value: &str) -> Result<(), &'static str> {
    const WHY: &str = "only a whole origin (http(s)://host[:port], no path) may start a URL";
    let rest =
        value.strip_prefix("https://").or_else(|| value.strip_prefix("http://")).ok_or(WHY)?;
    check_host_and_port(rest).map_err(|_| WHY)
}

/// The value, checked or encoded for the part of the URL that `before` ends in.
fn place(value: &str, before: &str) -> Result<String, (Part, &'static str)> {
    let part = part_after(before);
    let placed = match part {
        Part::Scheme if before.is_empty() => check_origin(value).map(|()| value.to_owned()),
        Part::Host if before.ends_with("://") => {
            check_host_and_port(value).map(|()| value.to_owned())
        }
        other => place_in(value, other),
    };
    placed.map_err(|why| (part, why))
}

/// The value, checked or encoded for `part`.
fn place_in(value: &str, part: Part) -> Result<String, &'static str> {
    match part {
        Part::Scheme => Err("a config value cannot choose the scheme"),
        Part::Host => check_host_labels(value).map(|()| value.to_owned()),
        Part::Port => check_port(value).map(|()| value.to_owned()),
        Part::Path => {
            if value.is_empty() {
                return Err("it must not be empty");
            }
            if value.bytes().all(|b| b == b'.') {
                return Err("it must not be `.` or `..`");
            }
            Ok(utf8_percent_encode(value, COMPONENT).to_string())
        }
        Part::Query | Part::Fragment => Ok(utf8_percent_encode(value, COMPONENT).to_string()),
    }
}

fn key_of(value: &str, scope: &Scope<'_>) -> String {
    let keys: Vec<&String> = scope
        .config
        .map(|config: &BTreeMap<String, String>| {
            config.iter().filter(|(_, v)| v.as_str() == value).map(|(k, _)| k).collect()
        })
        .unwrap_or_default();
    match keys.as_slice() {
        [key] => (*key).clone(),
        _ => "?".to_owned(),
    }
}

/// Renders `source` with every substituted piece passed to `place(value, text so far)`.
fn render_placed(
    source: &str,
    scope: Scope<'_>,
    place: impl Fn(&str, &str) -> Result<String, (Part, &'static str)>,
) -> Result<String, UrlTemplateError> {
    if !super::is_template(source) {
        return Ok(source.to_owned());
    }
    let scope = Scope { credentials: None, ..scope };
    let marked = compiled().render(source, &scope.to_value()).map_err(|e| {
        UrlTemplateError::Template(format!("template error: {}", super::describe(&e)))
    })?;
    let mut out = String::with_capacity(marked.len());
    let mut rest = marked.as_str();
    while let Some(start) = rest.find(OPEN) {
        let literal = &rest[..start];
        if literal.contains(CLOSE) {
            return Err(UrlTemplateError::Template("unbalanced value marker".into()));
        }
        out.push_str(literal);
        let after = &rest[start + OPEN.len_utf8()..];
        let end = after
            .find(CLOSE)
            .ok_or_else(|| UrlTemplateError::Template("unbalanced value marker".into()))?;
        let value = &after[..end];
        if value.contains(OPEN) {
            return Err(UrlTemplateError::UnsafeValue {
                key: "?".into(),
                part: part_after(&out).name(),
                why: "it holds characters a URL cannot",
            });
        }
        let placed = place(value, &out).map_err(|(part, why)| UrlTemplateError::UnsafeValue {
            key: key_of(value, &scope),
            part: part.name(),
            why,
        })?;
        out.push_str(&placed);
        rest = &after[end + CLOSE.len_utf8()..];
    }
    if rest.contains(CLOSE) {
        return Err(UrlTemplateError::Template("unbalanced value marker".into()));
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders a URL template (a base URL, an OAuth endpoint) over config: a value in the host must
/// be host labels (`host[:port]` when it is the whole authority), in the port digits, at the very
/// start a whole origin `http(s)://host[:port]` (an OAuth `instance_url`), in the path one non-empty segment (percent-encoded, never
/// `.` or `..`), in the query or fragment percent-encoded; none may choose the scheme. The
/// rendered URL's path holds no `.` or `..` segment.
pub fn render_url(source: &str, scope: Scope<'_>) -> Result<String, UrlTemplateError> {
    let url = render_placed(source, scope, place)?;
    if super::is_template(source) && ::url::Url::parse(&url).is_err() {
        return Err(UrlTemplateError::UnsafeValue {
            key: "?".into(),
            part: "authority",
            why: "the rendered URL does not parse",
        });
    }
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let path_and_more = rest.find('/').map_or("", |i| &rest[i..]);
        let path = path_and_more.split(['?', '#']).next().unwrap_or("");
        let dots = path.split('/').any(|segment| {
            let lower = segment.to_ascii_lowercase().replace("%2e", ".");
            lower == "." || lower == ".."
        });
        if dots && super::is_template(source) {
            return Err(UrlTemplateError::UnsafeValue {
                key: "?".into(),
                part: "path",
                why: "the rendered path holds a `.` or `..` segment",
            });
        }
    }
    Ok(url)
}

/// [`render_url`] as a check before a config value is stored: it also refuses a path value
/// holding `/`, `\`, `?`, `#`, `@` or `..`, which rendering would encode into one harmless
/// segment but which is never a legitimate path segment, so the user learns of it at once.
pub fn check_url(source: &str, scope: Scope<'_>) -> Result<String, UrlTemplateError> {
    render_placed(source, scope, |value, before| {
        let part = part_after(before);
        let suspicious = value.contains(['/', '\\', '?', '#', '@']) || value.contains("..");
        if part == Part::Path && suspicious {
            return Err((part, "it must not hold `/`, `\\`, `?`, `#`, `@` or `..`"));
        }
        place(value, before)
    })?;
    render_url(source, scope)
}

/// Renders a host pattern (an `allowed_hosts` entry) over config: every value must be host
/// labels.
pub fn render_host(source: &str, scope: Scope<'_>) -> Result<String, UrlTemplateError> {
    render_placed(source, scope, |value, _| {
        check_host_labels(value).map(|()| value.to_owned()).map_err(|why| (Part::Host, why))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn url(source: &str, pairs: &[(&str, &str)]) -> Result<String, UrlTemplateError> {
        let config = config(pairs);
        render_url(source, Scope { config: Some(&config), ..Scope::default() })
    }

    #[test]
    fn plain_values_render_as_they_are() {
        assert_eq!(
            url(
                "https://{{ config.sub }}.example.com/v1/{{ config.team }}",
                &[("sub", "eu.acme"), ("team", "t-1_x~y")]
            )
            .unwrap(),
            "https://eu.acme.example.com/v1/t-1_x~y"
        );
        assert_eq!(
            url("http://127.0.0.1:{{ config.port }}/api", &[("port", "8080")]).unwrap(),
            "http://127.0.0.1:8080/api"
        );
        assert_eq!(url("https://a.example/x", &[]).unwrap(), "https://a.example/x");
        assert_eq!(
            url("{{ config.i }}/api", &[("i", "https://na1.example.com")]).unwrap(),
            "https://na1.example.com/api"
        );
        assert_eq!(
            url("http://{{ config.h }}/api", &[("h", "127.0.0.1:8443")]).unwrap(),
            "http://127.0.0.1:8443/api"
        );
    }

    #[test]
    fn path_values_are_one_encoded_segment() {
        assert_eq!(
            url("https://a.example/v1/{{ config.t }}/x", &[("t", "a/b?c#d@e\\f%2e g")]).unwrap(),
            "https://a.example/v1/a%2Fb%3Fc%23d%40e%5Cf%252e%20g/x"
        );
        assert_eq!(
            url("https://a.example/q?x={{ config.t }}", &[("t", "1&y=2#z")]).unwrap(),
            "https://a.example/q?x=1%26y%3D2%23z"
        );
    }

    #[test]
    fn escapes_are_refused_and_name_the_key() {
        for (source, value, part) in [
            ("https://a.example/base/{{ config.t }}", "..", "path"),
            ("https://a.example/base/{{ config.t }}", ".", "path"),
            ("https://a.example/base/{{ config.t }}", "", "path"),
            ("https://a.example/base/.{{ config.t }}/x", ".", "path"),
            ("https://{{ config.t }}.example.com/", "evil.com/", "host"),
            ("https://{{ config.t }}.example.com/", "evil.com#", "host"),
            ("https://{{ config.t }}.example.com/", "evil.com:1", "authority"),
            ("https://{{ config.t }}.example.com/", "a@evil.com", "host"),
            ("https://{{ config.t }}.example.com/", "a..b", "host"),
            ("https://{{ config.t }}.example.com/", "", "host"),
            ("https://a.example:{{ config.t }}/", "80@evil.com", "port"),
            ("{{ config.t }}://a.example/", "javascript", "scheme"),
            ("{{ config.t }}/api", "https://a.example/../x", "scheme"),
            ("{{ config.t }}/api", "https://evil.com@a.example", "scheme"),
            ("{{ config.t }}/api", "file:///etc", "scheme"),
            ("https://{{ config.t }}/api", "a.example:80/x", "host"),
        ] {
            let err = url(source, &[("t", value)]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("URL's {part}")), "{source} {value:?}: {text}");
            assert!(text.contains("config `t`") || text.contains("config `?`"), "{text}");
        }
    }

    #[test]
    fn the_store_time_check_refuses_what_rendering_would_encode() {
        let config = config(&[("t", "../..")]);
        let scope = Scope { config: Some(&config), ..Scope::default() };
        let source = "https://a.example/v1/{{ config.t }}";
        assert_eq!(render_url(source, scope).unwrap(), "https://a.example/v1/..%2F..");
        let err = check_url(source, scope).unwrap_err().to_string();
        assert!(err.contains("config `t`") && err.contains("path"), "{err}");
        let config = self::config(&[("t", "a b")]);
        let scope = Scope { config: Some(&config), ..Scope::default() };
        assert_eq!(check_url(source, scope).unwrap(), "https://a.example/v1/a%20b");
    }

    #[test]
    fn hosts_must_be_labels() {
        let config = config(&[("t", "evil.com/x")]);
        let scope = Scope { config: Some(&config), ..Scope::default() };
        assert!(render_host("{{ config.t }}.example.com", scope).is_err());
        let config = self::config(&[("t", "eu")]);
        let scope = Scope { config: Some(&config), ..Scope::default() };
        assert_eq!(render_host("{{ config.t }}.example.com", scope).unwrap(), "eu.example.com");
    }

    proptest! {
        /// No value can change the host a template fixes, nor leave its base path.
        #[test]
        fn no_config_value_changes_the_host_or_escapes_the_base_path(value in any::<String>()) {
            let source = "https://api.example.com/base/{{ config.v }}/tail?q={{ config.v }}#{{ config.v }}";
            if let Ok(rendered) = url(source, &[("v", &value)]) {
                let parsed = url::Url::parse(&rendered).unwrap();
                prop_assert_eq!(parsed.host_str(), Some("api.example.com"));
                prop_assert_eq!(parsed.port(), None);
                prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
                let segments: Vec<&str> = parsed.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 3, "{}", rendered);
                prop_assert_eq!(segments[0], "base");
                prop_assert_eq!(segments[2], "tail");
                prop_assert_eq!(parsed.query_pairs().count(), 1);
            }
        }

        /// A value in the host can only pick labels in front of the fixed domain.
        #[test]
        fn a_host_value_stays_under_the_fixed_domain(value in any::<String>()) {
            let source = "https://{{ config.v }}.example.com/base";
            if let Ok(rendered) = url(source, &[("v", &value)]) {
                let parsed = url::Url::parse(&rendered).unwrap();
                prop_assert!(parsed.host_str().unwrap().ends_with(".example.com"), "{}", rendered);
                prop_assert_eq!(parsed.path(), "/base");
                prop_assert_eq!(parsed.port(), None);
            }
        }

        /// The same with values drawn from URL-significant characters, which `any` rarely hits.
        #[test]
        fn url_syntax_in_values_never_escapes(value in "[./\\\\?#@:%a-z0-9-]{0,12}") {
            let source = "https://{{ config.v }}.example.com/base/{{ config.v }}";
            if let Ok(rendered) = url(source, &[("v", &value)]) {
                let parsed = url::Url::parse(&rendered).unwrap();
                prop_assert!(parsed.host_str().unwrap().ends_with(".example.com"));
                let segments: Vec<&str> = parsed.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 2, "{}", rendered);
                prop_assert_eq!(segments[0], "base");
            }
        }
    }
}
