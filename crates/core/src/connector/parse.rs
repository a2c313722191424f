//! Reading connector files: YAML into [`Connector`], then the checks serde cannot express.
//!
//! Every error names the file, the line and the field, so a user can fix a connector without
//! guessing.

use std::collections::BTreeSet;
use std::fmt;

use super::model::{AuthMethod, Connector};
use crate::template;

/// The shortest `test.check_interval` a connector may ask for: each check is a call to the
/// provider, for every connection.
pub const MIN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A connector file that could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConnectorError {
    /// The file (or other origin) the connector came from.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Dotted path of the offending field, e.g. `auth[0].apply.in`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Parses and checks one connector file. `origin` names it in errors (usually the path).
pub fn parse_connector(source: &str, origin: &str) -> Result<Connector, ConnectorError> {
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str(source, |de| {
        serde_path_to_error::deserialize::<_, Connector>(de).map_err(|err| {
            path = Some(err.path().to_string());
            err.into_inner()
        })
    });
    let connector = parsed.map_err(|err| {
        let location = err.location();
        let message = strip_location_suffix(&err.without_snippet().to_string());
        let mut line = location.map(|l| l.line());
        let mut column = location.map(|l| l.column());
        // Inside a tagged `auth` item serde buffers the mapping, so the reported place is the
        // item's start; point at the offending key or value when the message names it.
        if let (Some(at), Some(name)) = (line, backticked(&message))
            && let Some(found) = find_token(source, at, name)
        {
            line = Some(found);
            column = None;
        }
        ConnectorError {
            file: origin.to_string(),
            line,
            column,
            field: path.filter(|p| p != "." && !p.is_empty()),
            message,
        }
    })?;
    check(&connector).map_err(|(field, message)| ConnectorError {
        line: field_line(source, &field),
        file: origin.to_string(),
        column: None,
        field: Some(field),
        message,
    })?;
    Ok(connector)
}

/// The serde-saphyr message ends with " at line X column Y"; we report those separately.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The first `…`-quoted name in an error message.
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The first line at or after `from` (1-based) holding `name` as a whole word.
fn find_token(source: &str, from: u64, name: &str) -> Option<u64> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    source.lines().enumerate().skip(from.saturating_sub(1) as usize).find_map(|(i, line)| {
        line.match_indices(name)
            .any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + name.len()..].chars().next();
                !before.is_some_and(is_word) && !after.is_some_and(is_word)
            })
            .then_some(i as u64 + 1)
    })
}

/// Best-effort line of a top-level field, for errors found after parsing.
fn field_line(source: &str, field: &str) -> Option<u64> {
    let top = field.split(['.', '[']).next().unwrap_or(field);
    source.lines().position(|line| line.starts_with(&format!("{top}:"))).map(|i| i as u64 + 1)
}

type CheckError = (String, String);

/// The rules a connector must follow beyond its shape.
fn check(c: &Connector) -> Result<(), CheckError> {
    if crate::ConnectorId::new(c.id.as_str()).is_err() {
        return Err(("id".into(), "must be 1-64 characters of a-z, 0-9, `-` or `_`".into()));
    }
    template::check_syntax(&c.base_url).map_err(|m| ("base_url".to_string(), m))?;
    if !template::is_template(&c.base_url) {
        let url = url::Url::parse(&c.base_url)
            .map_err(|e| ("base_url".to_string(), format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(("base_url".into(), "must be an http(s) URL with a host".into()));
        }
    }
    if c.auth.is_empty() {
        return Err(("auth".into(), "at least one auth method is required".into()));
    }
    let mut ids = BTreeSet::new();
    for (i, method) in c.auth.iter().enumerate() {
        if !ids.insert(method.id().to_string()) {
            return Err((
                format!("auth[{i}].id"),
                format!("two auth methods are both named `{}`; give one an `id`", method.id()),
            ));
        }
        check_method(method).map_err(|(f, m)| (format!("auth[{i}].{f}"), m))?;
        if matches!(method, AuthMethod::Custom(_))
            && !c.scripts.as_deref().is_some_and(|s| s.contains("before_action"))
        {
            return Err((
                format!("auth[{i}]"),
                "a `custom` method is applied by the connector's `before_action` script; `scripts` defines none".into(),
            ));
        }
    }
    if let Some(limits) = &c.script_limits
        && (limits.cpu_ms == Some(0) || limits.memory_mib == Some(0) || limits.wall_ms == Some(0))
    {
        return Err(("script_limits".into(), "limits must be above zero".into()));
    }
    if let Some(limit) = &c.rate_limit {
        limit.check().map_err(|(f, m)| (format!("rate_limit.{f}"), m))?;
    }
    let mut config_keys = BTreeSet::new();
    for (i, field) in c.config.iter().enumerate() {
        if !config_keys.insert(field.key.as_str()) {
            return Err((format!("config[{i}].key"), format!("duplicate key `{}`", field.key)));
        }
        check_help(&format!("config[{i}]"), &field.pattern, &field.example, &field.docs_url)?;
    }
    for (name, value) in &c.headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (format!("headers.{name}"), "not a valid header name".into()))?;
        template::check_syntax(value).map_err(|m| (format!("headers.{name}"), m))?;
    }
    if let Some(test) = &c.test {
        http::Method::from_bytes(test.method.as_bytes())
            .map_err(|_| ("test.method".to_string(), "not an HTTP method".to_string()))?;
        if let Some(label) = &test.label {
            template::check_syntax(label).map_err(|m| ("test.label".to_string(), m))?;
        }
        if let Some(every) = test.check_interval.and_then(crate::Interval::get)
            && every < MIN_CHECK_INTERVAL
        {
            return Err((
                "test.check_interval".to_string(),
                "at least `1m` (or `off`): checks are calls to the provider".to_string(),
            ));
        }
    }
    Ok(())
}

fn check_method(method: &AuthMethod) -> Result<(), CheckError> {
    match method {
        AuthMethod::None(_) | AuthMethod::Bearer(_) | AuthMethod::Basic(_) => Ok(()),
        AuthMethod::Custom(m) => {
            check_fields(&m.fields)?;
            match &m.auth_value {
                Some(value) => template::check_syntax(value).map_err(|e| ("auth_value".into(), e)),
                None => Ok(()),
            }
        }
        AuthMethod::Session(m) => check_session(m),
        AuthMethod::OAuth2(m) => check_oauth2(m),
        AuthMethod::Digest(_) => Ok(()),
        AuthMethod::OAuth1(m) => {
            if let Some(realm) = &m.realm {
                template::check_syntax(realm).map_err(|e| ("realm".to_string(), e))?;
            }
            let urls = [
                ("request_token_url", &m.request_token_url),
                ("authorize_url", &m.authorize_url),
                ("access_token_url", &m.access_token_url),
            ];
            let given = urls.iter().filter(|(_, v)| v.is_some()).count();
            if given != 0 && given != urls.len() {
                let missing = urls.iter().find(|(_, v)| v.is_none()).map_or("", |(f, _)| *f);
                return Err((
                    missing.to_string(),
                    "the three-legged flow needs request_token_url, authorize_url and access_token_url".into(),
                ));
            }
            if given != 0 && m.two_legged {
                return Err(("two_legged".into(), "a two-legged method has no token flow".into()));
            }
            for (field, value) in urls {
                if let Some(value) = value {
                    template::check_syntax(value).map_err(|e| (field.to_string(), e))?;
                }
            }
            Ok(())
        }
        AuthMethod::Jwt(m) => {
            if m.apply.location == super::model::KeyLocation::Body {
                return Err((
                    "apply.in".into(),
                    "a JWT goes in a header, the query or a cookie".into(),
                ));
            }
            if let Some(value) = &m.apply.value {
                template::check_syntax(value).map_err(|e| ("apply.value".to_string(), e))?;
            }
            m.algorithm.parse::<jsonwebtoken::Algorithm>().map_err(|_| {
                ("algorithm".to_string(), format!("unknown JWT algorithm `{}`", m.algorithm))
            })?;
            for key in m.header.keys() {
                if !matches!(key.as_str(), "kid" | "typ" | "cty") {
                    return Err((
                        format!("header.{key}"),
                        "only kid, typ and cty can be set".into(),
                    ));
                }
            }
            for (key, value) in m.header.iter().chain(m.claims.iter()) {
                template::check_syntax(value).map_err(|e| (key.clone(), e))?;
            }
            Ok(())
        }
        AuthMethod::AwsSigV4(m) => {
            template::check_syntax(&m.service).map_err(|e| ("service".to_string(), e))?;
            template::check_syntax(&m.region).map_err(|e| ("region".to_string(), e))
        }
        AuthMethod::ApiKey(key) => {
            check_fields(&key.fields)?;
            for (i, placement) in key.apply.as_slice().iter().enumerate() {
                let at = |f: &str| format!("apply[{i}].{f}");
                if placement.location != super::model::KeyLocation::Header
                    && placement.name.is_none()
                {
                    return Err((at("name"), "required unless the key goes in a header".into()));
                }
                if let Some(name) = &placement.name
                    && placement.location == super::model::KeyLocation::Header
                {
                    http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| (at("name"), "not a valid header name".into()))?;
                }
                if let Some(value) = &placement.value {
                    template::check_syntax(value).map_err(|m| (at("value"), m))?;
                }
            }
            Ok(())
        }
    }
}

/// A method's credential fields: at least one, unique keys, valid patterns.
fn check_fields(fields: &[super::model::CredentialField]) -> Result<(), CheckError> {
    if fields.is_empty() {
        return Err(("fields".into(), "at least one field is required".into()));
    }
    let mut keys = BTreeSet::new();
    for (i, field) in fields.iter().enumerate() {
        if !keys.insert(field.key.as_str()) {
            return Err((format!("fields[{i}].key"), format!("duplicate key `{}`", field.key)));
        }
        check_help(&format!("fields[{i}]"), &field.pattern, &field.example, &field.docs_url)?;
    }
    Ok(())
}

/// A field's pattern compiles, its example matches it, and its docs link is an https URL.
fn check_help(
    at: &str,
    pattern: &Option<String>,
    example: &Option<String>,
    docs_url: &Option<String>,
) -> Result<(), CheckError> {
    if let Some(pattern) = pattern {
        let re = compile_pattern(pattern).map_err(|m| (format!("{at}.pattern"), m))?;
        if let Some(example) = example
            && !re.is_match(example)
        {
            return Err((
                format!("{at}.example"),
                format!("the example `{example}` does not match the pattern"),
            ));
        }
    }
    if let Some(link) = docs_url
        && url::Url::parse(link).map_or(true, |u| u.scheme() != "https")
    {
        return Err((format!("{at}.docs_url"), "must be an https URL".into()));
    }
    Ok(())
}

fn check_session(m: &super::scripted::SessionAuth) -> Result<(), CheckError> {
    check_fields(&m.fields)?;
    if m.fields.iter().any(|f| f.key == crate::auth::session::SESSION_TOKEN) {
        return Err(("fields".into(), "`session_token` is reserved for the session".into()));
    }
    http::Method::from_bytes(m.login.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ("login.method".to_string(), "not an HTTP method".to_string()))?;
    template::check_syntax(&m.login.url).map_err(|e| ("login.url".to_string(), e))?;
    for (name, value) in &m.login.headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (format!("login.headers.{name}"), "not a valid header name".into()))?;
        template::check_syntax(value).map_err(|e| (format!("login.headers.{name}"), e))?;
    }
    fn leaves(at: String, value: &serde_json::Value) -> Result<(), CheckError> {
        match value {
            serde_json::Value::String(text) => template::check_syntax(text).map_err(|e| (at, e)),
            serde_json::Value::Array(items) => items.iter().try_for_each(|v| leaves(at.clone(), v)),
            serde_json::Value::Object(map) => {
                map.iter().try_for_each(|(k, v)| leaves(format!("{at}.{k}"), v))
            }
            _ => Ok(()),
        }
    }
    for (key, value) in m.login.body.iter().flatten() {
        leaves(format!("login.body.{key}"), value)?;
    }
    if m.apply.location == super::model::KeyLocation::Body {
        return Err((
            "apply.in".into(),
            "a session token goes in a header, the query or a cookie".into(),
        ));
    }
    if let Some(value) = &m.apply.value {
        template::check_syntax(value).map_err(|e| ("apply.value".to_string(), e))?;
    }
    if m.lifetime.as_ref().is_some_and(|l| l.seconds.is_none() && l.field.is_none()) {
        return Err(("lifetime".into(), "give `seconds`, `field`, or both".into()));
    }
    Ok(())
}

fn check_oauth2(m: &super::oauth2::OAuth2Auth) -> Result<(), CheckError> {
    use super::oauth2::Grant;
    for (field, value) in [
        ("base_url", &m.base_url),
        ("authorize_url", &m.authorize_url),
        ("token_url", &m.token_url),
        ("refresh_url", &m.refresh_url),
        ("revocation_url", &m.revocation_url),
        ("issuer", &m.issuer),
    ] {
        if let Some(value) = value {
            template::check_syntax(value).map_err(|e| (field.to_string(), e))?;
            if !template::is_template(value) {
                url::Url::parse(value)
                    .map_err(|e| (field.to_string(), format!("not a URL: {e}")))?;
            }
        }
    }
    if m.issuer.is_none() {
        if m.token_url.is_none() {
            return Err(("token_url".into(), "required unless `issuer` is given".into()));
        }
        if m.grant == Grant::AuthorizationCode && m.authorize_url.is_none() {
            return Err((
                "authorize_url".into(),
                "required for the authorization_code grant unless `issuer` is given".into(),
            ));
        }
    }
    if m.apply.location == super::model::KeyLocation::Body {
        return Err((
            "apply.in".into(),
            "an access token goes in a header, the query or a cookie".into(),
        ));
    }
    if let Some(assertion) = &m.assertion {
        if m.grant != Grant::JwtBearer {
            return Err((
                "assertion".into(),
                "only the jwt_bearer grant takes an assertion".into(),
            ));
        }
        let alg = assertion.algorithm.parse::<jsonwebtoken::Algorithm>().map_err(|_| {
            (
                "assertion.algorithm".to_string(),
                format!("unknown JWT algorithm `{}`", assertion.algorithm),
            )
        })?;
        if matches!(
            alg,
            jsonwebtoken::Algorithm::HS256
                | jsonwebtoken::Algorithm::HS384
                | jsonwebtoken::Algorithm::HS512
        ) {
            return Err((
                "assertion.algorithm".into(),
                "the assertion is signed with a private key: RS, PS, ES or EdDSA".into(),
            ));
        }
        for (name, value) in &assertion.claims {
            template::check_syntax(value).map_err(|e| (format!("assertion.claims.{name}"), e))?;
        }
    }
    if let Some(value) = &m.apply.value {
        template::check_syntax(value).map_err(|e| ("apply.value".to_string(), e))?;
    }
    check_callback(m)
}

/// The callback settings: only for the authorization-code grant; a code parameter that is a
/// plain query name and not one the protocol uses otherwise; kept parameters that are never
/// the code, the state or an error.
fn check_callback(m: &super::oauth2::OAuth2Auth) -> Result<(), CheckError> {
    use super::oauth2::Grant;
    let callback = &m.callback;
    if m.grant != Grant::AuthorizationCode
        && (!callback.is_default() || !m.callback_keep.is_empty())
    {
        return Err((
            "callback".into(),
            "only the authorization_code grant has a callback to read".into(),
        ));
    }
    let plain = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    // Parameters the callback already gives a meaning (RFC 6749 §4.1.2, RFC 9207).
    let reserved =
        |name: &str| matches!(name, "state" | "iss" | "error" | "error_description" | "error_uri");
    let code = callback.code_param.as_str();
    if !plain(code) || reserved(code) {
        return Err((
            "callback.code_param".into(),
            format!(
                "`{code}` cannot carry the code: give a query parameter name (letters, digits,                  `_ - .`) other than state, iss and error*"
            ),
        ));
    }
    if callback.require_iss && m.issuer.is_none() {
        return Err((
            "callback.require_iss".into(),
            "give the method's `issuer`: it is what the callback's `iss` must equal".into(),
        ));
    }
    for (field, (key, param)) in m
        .callback
        .keep
        .iter()
        .map(|kept| ("callback.keep", kept))
        .chain(m.callback_keep.iter().map(|kept| ("callback_keep", kept)))
    {
        if key.trim().is_empty() || !plain(param) {
            return Err((
                format!("{field}.{key}"),
                "give a config key and a query parameter name (letters, digits, `_ - .`)".into(),
            ));
        }
        if reserved(param) || param == code || param == "code" {
            return Err((
                format!("{field}.{key}"),
                format!("`{param}` is never kept: the code, state and errors stay out of config"),
            ));
        }
    }
    Ok(())
}

/// Compiles a field pattern anchored at both ends.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid pattern: {e}"))
}
