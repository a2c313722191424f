//! Finding the authorization server of an OAuth protected resource, as the MCP authorization
//! specification (2025-11-25, "Authorization Server Discovery") orders it: the `WWW-Authenticate`
//! challenge of a 401 (RFC 6750 §3, with RFC 9728 §5.1's `resource_metadata`), the resource's
//! metadata locations (RFC 9728 §3.1), then the authorization server's metadata locations
//! (RFC 8414 §3.1 and OpenID Connect Discovery 1.0 §4, path insertion first). Pure: they parse
//! and build values; the engine fetches.

use url::Url;

/// What a `Bearer` challenge says (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `resource_metadata`: where the resource's metadata document is.
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the resource asks for (space-separated in the header).
    pub scope: Vec<String>,
    /// `error`: `invalid_token`, `insufficient_scope`, …
    pub error: Option<String>,
}

impl BearerChallenge {
    /// The `Bearer` challenge in a `WWW-Authenticate` value, if there is one. Parameters are
    /// `name=token` or `name="quoted string"` (RFC 9110 §11.2); other schemes' challenges in the
    /// same value are skipped, and so is what cannot be parsed.
    pub fn parse(header: &str) -> Option<BearerChallenge> {
        let mut rest = header;
        loop {
            rest = skip_separators(rest);
            let (word, after) = split_token(rest);
            // Nothing left, or nothing this parser reads: every step consumes input.
            if word.is_empty() {
                return None;
            }
            if let Some(value) = after.trim_start().strip_prefix('=') {
                // A parameter of another scheme's challenge: skipped.
                rest = split_value(value.trim_start()).1;
            } else if word.eq_ignore_ascii_case("bearer") {
                return Some(Self::parameters(after));
            } else {
                rest = after;
            }
        }
    }

    /// The parameters after `Bearer`, up to the next scheme or the end.
    fn parameters(mut rest: &str) -> BearerChallenge {
        let mut challenge = BearerChallenge::default();
        loop {
            rest = skip_separators(rest);
            let (name, after) = split_token(rest);
            let Some(value) = after.trim_start().strip_prefix('=').filter(|_| !name.is_empty())
            else {
                return challenge;
            };
            let (value, after) = split_value(value.trim_start());
            match name.to_ascii_lowercase().as_str() {
                "resource_metadata" => challenge.resource_metadata = Some(value),
                "scope" => challenge.scope = value.split_whitespace().map(str::to_owned).collect(),
                "error" => challenge.error = Some(value),
                _ => {}
            }
            rest = after;
        }
    }
}

fn skip_separators(text: &str) -> &str {
    text.trim_start_matches(|c: char| c == ',' || c.is_whitespace())
}

/// A token (RFC 9110 §5.6.2) at the start of `text`, and what follows it.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A parameter value at the start of `text` (a token or a quoted string, unescaped), and what
/// follows it.
fn split_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let (token, rest) = split_token(text);
        return (token.to_owned(), rest);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    // No closing quote: what there was.
    (value, "")
}

/// Where a resource's metadata may be (RFC 9728 §3.1): the well-known suffix inserted before the
/// resource's path, then (for a resource with a path) at the root.
pub fn protected_resource_metadata_urls(resource: &Url) -> Vec<Url> {
    well_known(resource, "oauth-protected-resource")
}

/// Where an authorization server's metadata may be, in the MCP specification's order: for an
/// issuer with a path, RFC 8414 with path insertion, OpenID Connect with path insertion, then
/// OpenID Connect with the path appended; for one without, RFC 8414 then OpenID Connect.
pub fn authorization_server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut urls = Vec::new();
    let at = |p: &str| {
        let mut url = issuer.clone();
        url.set_path(p);
        url.set_query(None);
        url.set_fragment(None);
        url
    };
    if path.is_empty() {
        urls.push(at("/.well-known/oauth-authorization-server"));
        urls.push(at("/.well-known/openid-configuration"));
    } else {
        urls.push(at(&format!("/.well-known/oauth-authorization-server{path}")));
        urls.push(at(&format!("/.well-known/openid-configuration{path}")));
        urls.push(at(&format!("{path}/.well-known/openid-configuration")));
    }
    urls
}

/// `/.well-known/{name}` inserted before `base`'s path, then at the root.
fn well_known(base: &Url, name: &str) -> Vec<Url> {
    let path = base.path().trim_end_matches('/');
    let at = |p: &str| {
        let mut url = base.clone();
        url.set_path(p);
        url.set_query(None);
        url.set_fragment(None);
        url
    };
    let mut urls = Vec::new();
    if !path.is_empty() {
        urls.push(at(&format!("/.well-known/{name}{path}")));
    }
    urls.push(at(&format!("/.well-known/{name}")));
    urls
}

/// Whether `a` and `b` name the same resource or issuer: equal after `url`'s normalisation,
/// ignoring one trailing slash (RFC 9728 §3.3, RFC 8414 §3.3 ask for identical values; a
/// trailing slash is the one difference servers commonly introduce).
pub fn same_identifier(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_challenge_is_read_among_others() {
        let header = r#"Basic realm="x", Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#;
        let challenge = BearerChallenge::parse(header).unwrap();
        assert_eq!(
            challenge.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(challenge.scope, ["files:read", "files:write"]);
        assert_eq!(challenge.error.as_deref(), Some("insufficient_scope"));
        let bare = BearerChallenge::parse("Bearer").unwrap();
        assert_eq!(bare, BearerChallenge::default());
        assert_eq!(
            BearerChallenge::parse(r#"bearer error=invalid_token, scope="a\"b""#).unwrap().scope,
            [r#"a"b"#]
        );
        assert!(BearerChallenge::parse(r#"Basic realm="x""#).is_none());
        assert!(BearerChallenge::parse("").is_none());
        // Malformed input ends the parse; it never loops or panics.
        assert!(BearerChallenge::parse(r#"Bearer resource_metadata="unterminated"#).is_some());
        assert!(BearerChallenge::parse("Bearer ,,, ===").is_some());
    }

    #[test]
    fn metadata_locations_follow_the_specifications_order() {
        let mcp = Url::parse("https://mcp.example.com/public/mcp?x=1").unwrap();
        let urls: Vec<String> =
            protected_resource_metadata_urls(&mcp).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let issuer = Url::parse("https://auth.example.com/tenant1").unwrap();
        let urls: Vec<String> =
            authorization_server_metadata_urls(&issuer).iter().map(Url::to_string).collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = Url::parse("https://auth.example.com").unwrap();
        assert_eq!(authorization_server_metadata_urls(&root).len(), 2);
        assert!(same_identifier("https://a.example/mcp", "https://A.example/mcp/"));
        assert!(!same_identifier("https://a.example/mcp", "https://a.example/other"));
    }
}
