//! Joins a connector's base URL with a caller-supplied path, refusing any path that could move the
//! request to another host or out of the base URL's path prefix.
//!
//! Written by hand rather than with `Url::join`, whose RFC 3986 §5.2 reference resolution is
//! exactly what lets `//evil.example` or `https:evil.example` change the host.

use url::Url;

use crate::NetError;

/// Builds the upstream URL for `path` (which may carry a `?query`) under `base`.
///
/// Guarantees: the result has `base`'s scheme, user info, host and port, and its path starts
/// with `base`'s path (so `https://api.example.com/v2` + `/users?page=2` gives
/// `https://api.example.com/v2/users?page=2`). A path without a leading `/` gets one. A query in
/// `base` is kept, followed by the caller's. An empty path is `base` itself (an endpoint such as
/// an MCP server's `https://mcp.example.com/mcp` is the base URL, not a prefix); `/` adds the
/// slash.
///
/// Refused with [`NetError::UnsafePath`]: control characters and whitespace, backslashes (raw or
/// `%5C`), fragments, `//` at the start (protocol-relative), a scheme (`http:`, `https:/`,
/// `javascript:`) or `@` in a first segment without a leading `/`, percent-encoded slashes
/// that could act as separators (`%2F%2F`, a leading `%2F`, `..%2F`; `group%2Fproject` is kept), `.`/`..` segments (also as `%2E`), and malformed percent escapes in the path. `:`
/// and `@` later in a path are allowed (`/v1/models/x:generate`, `/users/@me`).
pub fn join(base: &Url, path: &str) -> Result<Url, NetError> {
    if base.cannot_be_a_base() || base.host().is_none() {
        return Err(NetError::InvalidUrl("base URL has no host".to_owned()));
    }
    check_characters(path)?;
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    check_path(path_part)?;

    let prefix = base.path().trim_end_matches('/');
    let relative = path_part.strip_prefix('/').unwrap_or(path_part);
    let mut url = base.clone();
    url.set_fragment(None);
    if path_part.is_empty() {
        url.set_path(base.path());
    } else {
        url.set_path(&format!("{prefix}/{relative}"));
    }
    let query = match (base.query(), query) {
        (Some(b), Some(q)) if !b.is_empty() && !q.is_empty() => Some(format!("{b}&{q}")),
        (Some(b), Some(q)) => Some(if b.is_empty() { q } else { b }.to_owned()),
        (b, q) => b.or(q).map(str::to_owned),
    };
    url.set_query(query.as_deref());

    verify_same_origin(base, &url, prefix)?;
    Ok(url)
}

const fn unsafe_path(reason: &'static str) -> NetError {
    NetError::UnsafePath { reason }
}

fn check_characters(path: &str) -> Result<(), NetError> {
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(unsafe_path("control character or whitespace"));
    }
    if path.contains('\\') {
        return Err(unsafe_path("backslash"));
    }
    if path.contains('#') {
        return Err(unsafe_path("fragment"));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), NetError> {
    if path.starts_with("//") {
        return Err(unsafe_path("protocol-relative path"));
    }
    if !path.starts_with('/') {
        let first = path.split('/').next().unwrap_or_default();
        if first.contains(':') {
            return Err(unsafe_path("absolute URL or scheme"));
        }
        if first.contains('@') {
            return Err(unsafe_path("user info in path"));
        }
    }
    for segment in path.split('/') {
        let decoded = percent_decode(segment)?;
        // An encoded slash inside a segment is how some APIs name nested things (GitLab's
        // `group%2Fproject`); it stays only if it cannot form `//`, a leading or trailing slash,
        // a backslash, or a dot segment once an upstream decodes it.
        if decoded.contains(&b'\\')
            || (decoded.contains(&b'/')
                && (decoded.starts_with(b"/")
                    || decoded.ends_with(b"/")
                    || decoded
                        .split(|b| *b == b'/')
                        .any(|s| s.is_empty() || s == b"." || s == b"..")))
        {
            return Err(unsafe_path("percent-encoded slash or backslash"));
        }
        if decoded == b"." || decoded == b".." {
            return Err(unsafe_path("dot segment"));
        }
        if decoded.iter().any(|b| b.is_ascii_control()) {
            return Err(unsafe_path("percent-encoded control character"));
        }
    }
    Ok(())
}

/// Strict percent-decoding: a `%` not followed by two hex digits is an error.
fn percent_decode(segment: &str) -> Result<Vec<u8>, NetError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(unsafe_path("malformed percent-encoding"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Belt and braces: re-parse the result and check nothing but the path and query moved.
fn verify_same_origin(base: &Url, joined: &Url, prefix: &str) -> Result<(), NetError> {
    let reparsed = Url::parse(joined.as_str()).map_err(|_| unsafe_path("result does not parse"))?;
    let same = reparsed.scheme() == base.scheme()
        && reparsed.host() == base.host()
        && reparsed.port_or_known_default() == base.port_or_known_default()
        && reparsed.username() == base.username()
        && reparsed.password() == base.password()
        && (reparsed.path().starts_with(&format!("{prefix}/")) || reparsed.path() == base.path());
    if same { Ok(()) } else { Err(unsafe_path("result leaves the base URL")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.example.com/v2").unwrap()
    }

    fn joined(path: &str) -> String {
        join(&base(), path).unwrap().to_string()
    }

    #[test]
    fn joins_under_the_prefix() {
        assert_eq!(joined("/users"), "https://api.example.com/v2/users");
        assert_eq!(joined("users"), "https://api.example.com/v2/users");
        assert_eq!(joined("/users?page=2"), "https://api.example.com/v2/users?page=2");
        assert_eq!(joined("/users/"), "https://api.example.com/v2/users/");
        assert_eq!(joined(""), "https://api.example.com/v2");
        assert_eq!(joined("/"), "https://api.example.com/v2/");
        assert_eq!(joined("?q=1"), "https://api.example.com/v2?q=1");
        let trailing = Url::parse("https://api.example.com/v2/").unwrap();
        assert_eq!(join(&trailing, "/x").unwrap().as_str(), "https://api.example.com/v2/x");
        let root = Url::parse("https://api.example.com").unwrap();
        assert_eq!(join(&root, "x").unwrap().as_str(), "https://api.example.com/x");
        let port = Url::parse("http://api.example.com:8080/a/b").unwrap();
        assert_eq!(join(&port, "/c").unwrap().as_str(), "http://api.example.com:8080/a/b/c");
    }

    #[test]
    fn keeps_harmless_colons_ats_and_query_escapes() {
        assert_eq!(
            joined("/models/gemini:generateContent"),
            "https://api.example.com/v2/models/gemini:generateContent"
        );
        assert_eq!(joined("/users/@me"), "https://api.example.com/v2/users/@me");
        assert_eq!(
            joined("/projects/group%2Fsub%2Fproject/issues"),
            "https://api.example.com/v2/projects/group%2Fsub%2Fproject/issues"
        );
        assert_eq!(joined("users/@me"), "https://api.example.com/v2/users/@me");
        assert_eq!(
            joined("/search?next=%2Fhome&u=a@b.c"),
            "https://api.example.com/v2/search?next=%2Fhome&u=a@b.c"
        );
        assert_eq!(joined("/files/a%20b"), "https://api.example.com/v2/files/a%20b");
        assert_eq!(joined("/a..b/.c/..d"), "https://api.example.com/v2/a..b/.c/..d");
    }

    #[test]
    fn merges_a_base_query() {
        let b = Url::parse("https://api.example.com/v2?key=1#frag").unwrap();
        assert_eq!(join(&b, "/x").unwrap().as_str(), "https://api.example.com/v2/x?key=1");
        assert_eq!(join(&b, "/x?y=2").unwrap().as_str(), "https://api.example.com/v2/x?key=1&y=2");
    }

    #[test]
    fn rejects_each_attack_string() {
        let attacks = [
            ("http://evil.example/", "absolute URL or scheme"),
            ("https://evil.example", "absolute URL or scheme"),
            ("https:/evil.example", "absolute URL or scheme"),
            ("https:evil.example", "absolute URL or scheme"),
            ("HTTPS://evil.example", "absolute URL or scheme"),
            ("javascript:alert(1)", "absolute URL or scheme"),
            ("file:///etc/passwd", "absolute URL or scheme"),
            ("evil.example:443/x", "absolute URL or scheme"),
            ("//evil.example", "protocol-relative path"),
            ("//evil.example/x?y", "protocol-relative path"),
            ("///evil.example", "protocol-relative path"),
            ("@evil.example", "user info in path"),
            ("user:pass@evil.example", "absolute URL or scheme"),
            ("x@evil.example/path", "user info in path"),
            ("\\\\evil.example", "backslash"),
            ("/\\evil.example", "backslash"),
            ("/a\\..\\..\\b", "backslash"),
            ("/%5Cevil.example", "percent-encoded slash or backslash"),
            ("/%5c%5cevil.example", "percent-encoded slash or backslash"),
            ("/%2F%2Fevil.example", "percent-encoded slash or backslash"),
            ("/%2fevil.example", "percent-encoded slash or backslash"),
            ("/a/..%2F..%2Fadmin", "percent-encoded slash or backslash"),
            ("/..", "dot segment"),
            ("/../admin", "dot segment"),
            ("../admin", "dot segment"),
            ("/a/../../admin", "dot segment"),
            ("/a/./b", "dot segment"),
            ("/a/.", "dot segment"),
            ("/%2E%2E/admin", "dot segment"),
            ("/%2e%2e/admin", "dot segment"),
            ("/.%2e/admin", "dot segment"),
            ("/%2E/admin", "dot segment"),
            ("/a/..?x=1", "dot segment"),
            ("/a%00b", "percent-encoded control character"),
            ("/a%0d%0aHost:%20evil", "percent-encoded control character"),
            ("/a%zz", "malformed percent-encoding"),
            ("/a%2", "malformed percent-encoding"),
            ("/a%", "malformed percent-encoding"),
            ("/a b", "control character or whitespace"),
            ("/a\tb", "control character or whitespace"),
            ("/a\nHost: evil", "control character or whitespace"),
            ("/a\r\nb", "control character or whitespace"),
            ("/a\0b", "control character or whitespace"),
            ("/a\u{7f}", "control character or whitespace"),
            ("/a\u{85}b", "control character or whitespace"),
            ("/a\u{3000}b", "control character or whitespace"),
            ("/a?x=1 2", "control character or whitespace"),
            (" /a", "control character or whitespace"),
            ("/a#@evil.example", "fragment"),
            ("#x", "fragment"),
        ];
        for (attack, reason) in attacks {
            match join(&base(), attack) {
                Err(NetError::UnsafePath { reason: got }) => {
                    assert_eq!(got, reason, "wrong reason for {attack:?}");
                }
                other => panic!("{attack:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_a_base_without_host() {
        let b = Url::parse("mailto:someone@example.com").unwrap();
        assert!(matches!(join(&b, "/x"), Err(NetError::InvalidUrl(_))));
    }
}
