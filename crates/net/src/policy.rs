//! `HostPolicy`: the hosts a connector may reach. Checked on every request and every redirect hop
//! before any network activity, so credentials never leave for a host the connector does not name.

use url::{Host, Url};

use crate::NetError;

/// An allow-list of host patterns.
///
/// Each pattern is an exact host (`api.example.com`, `10.0.0.1`, `[::1]`) or a leading wildcard
/// (`*.example.com`, which matches subdomains only, never `example.com` itself), optionally
/// followed by `:port`; without a port any port matches. Hosts are compared after `url`'s host
/// parsing, so matching is case-insensitive and internationalised names match their punycode
/// form. There is deliberately no "allow any host" policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    patterns: Vec<HostPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// Exactly this host.
    Exact(Host<String>),
    /// Any strict subdomain of this (ASCII, lowercase) domain.
    SubdomainOf(String),
}

impl HostPolicy {
    /// A policy allowing exactly `url`'s host (and its explicit port, if any): for token
    /// endpoints, discovery documents and webhooks.
    pub fn for_url(url: &Url) -> Result<HostPolicy, NetError> {
        let host = url.host_str().unwrap_or_default();
        match url.port() {
            Some(port) => HostPolicy::new([format!("{host}:{port}")]),
            None => HostPolicy::new([host]),
        }
    }

    /// Parses the patterns; fails on the first malformed one.
    ///
    /// Malformed: empty, containing a scheme, path, query, user info or whitespace, a `*` anywhere
    /// but a leading `*.`, a wildcard over an IP address or over a single label (`*.com`), or a
    /// port that is not a number in `1..=65535`.
    pub fn new<I, S>(patterns: I) -> Result<HostPolicy, NetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| HostPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostPolicy { patterns })
    }

    /// Whether `url`'s host (and port, where a pattern names one) is allowed.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host() else {
            return false;
        };
        let port = url.port_or_known_default();
        self.patterns.iter().any(|p| p.matches(&host, port))
    }
}

impl HostPattern {
    fn parse(pattern: &str) -> Result<HostPattern, NetError> {
        let malformed =
            |why: &str| NetError::InvalidUrl(format!("host pattern {pattern:?}: {why}"));
        if pattern.is_empty() {
            return Err(malformed("empty"));
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed("contains whitespace or control characters"));
        }
        if pattern.contains(['/', '\\', '@', '?', '#']) {
            return Err(malformed("must be a host, optionally with :port"));
        }
        let (host, port) = split_port(pattern).ok_or_else(|| malformed("invalid port"))?;
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if host.contains('*') {
            return Err(malformed("`*` is only allowed as a leading `*.`"));
        }
        let parsed = Host::parse(host).map_err(|e| malformed(&e.to_string()))?;
        let host = match (wildcard, parsed) {
            (false, parsed) => HostMatch::Exact(parsed),
            (true, Host::Domain(domain)) if domain.contains('.') && !domain.ends_with('.') => {
                HostMatch::SubdomainOf(domain)
            }
            (true, Host::Domain(_)) => {
                return Err(malformed("a wildcard must cover at least two labels"));
            }
            (true, _) => return Err(malformed("a wildcard cannot cover an IP address")),
        };
        Ok(HostPattern { host, port })
    }

    fn matches(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        match (&self.host, host) {
            (HostMatch::Exact(Host::Domain(want)), Host::Domain(got)) => want == got,
            (HostMatch::Exact(Host::Ipv4(want)), Host::Ipv4(got)) => want == got,
            (HostMatch::Exact(Host::Ipv6(want)), Host::Ipv6(got)) => want == got,
            (HostMatch::SubdomainOf(suffix), Host::Domain(got)) => got
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
            _ => false,
        }
    }
}

/// Splits `host[:port]`, where an IPv6 host is bracketed. `None` if the port is malformed.
fn split_port(pattern: &str) -> Option<(&str, Option<u16>)> {
    let colon = if pattern.starts_with('[') {
        let close = pattern.find(']')?;
        match &pattern[close + 1..] {
            "" => return Some((pattern, None)),
            rest if rest.starts_with(':') => close + 1,
            _ => return None,
        }
    } else {
        match pattern.rfind(':') {
            Some(i) => i,
            None => return Some((pattern, None)),
        }
    };
    let (host, port) = (&pattern[..colon], &pattern[colon + 1..]);
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some((host, Some(port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> HostPolicy {
        HostPolicy::new(patterns).unwrap()
    }

    fn allows(policy: &HostPolicy, url: &str) -> bool {
        policy.allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn exact_host_matches_any_port_and_case() {
        let p = policy(&["api.example.com"]);
        assert!(allows(&p, "https://api.example.com/v1"));
        assert!(allows(&p, "https://API.Example.COM:8443/"));
        assert!(allows(&p, "http://api.example.com/"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(!allows(&p, "https://x.api.example.com/"));
        assert!(!allows(&p, "https://api.example.com.evil.com/"));
        assert!(!allows(&p, "https://evilapi.example.com/"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert!(allows(&p, "https://api.example.com/"));
        assert!(allows(&p, "https://a.b.example.com/"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(!allows(&p, "https://evilexample.com/"));
        assert!(!allows(&p, "https://example.com.evil.com/"));
        assert!(!allows(&p, "https://.example.com/"));
    }

    #[test]
    fn port_restricts_when_given() {
        let p = policy(&["api.example.com:8443", "*.example.org:443"]);
        assert!(allows(&p, "https://api.example.com:8443/"));
        assert!(!allows(&p, "https://api.example.com/"));
        assert!(allows(&p, "https://a.example.org/"), "default port 443 counts");
        assert!(!allows(&p, "http://a.example.org/"), "default port 80 does not");
    }

    #[test]
    fn idna_and_ip_hosts() {
        let p = policy(&["bücher.example", "127.0.0.1:8080", "[::1]"]);
        assert!(allows(&p, "https://xn--bcher-kva.example/"));
        assert!(allows(&p, "https://BÜCHER.example/"));
        assert!(allows(&p, "http://127.0.0.1:8080/"));
        assert!(!allows(&p, "http://127.0.0.1:8081/"));
        assert!(allows(&p, "http://[::1]:9/"));
        assert!(!allows(&p, "http://[::2]/"));
        let p = policy(&["xn--bcher-kva.example"]);
        assert!(allows(&p, "https://bücher.example/"));
    }

    #[test]
    fn ip_patterns_do_not_match_domains_and_vice_versa() {
        let p = policy(&["127.0.0.1"]);
        assert!(!allows(&p, "http://localhost/"));
        let p = policy(&["localhost"]);
        assert!(!allows(&p, "http://127.0.0.1/"));
        // `url` normalises other IPv4 spellings, so they cannot dodge an exact pattern.
        let p = policy(&["127.0.0.1"]);
        assert!(allows(&p, "http://0x7f.1/"));
    }

    #[test]
    fn empty_policy_allows_nothing() {
        let p = HostPolicy::new(Vec::<String>::new()).unwrap();
        assert!(!allows(&p, "https://api.example.com/"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "",
            " ",
            "api.example.com ",
            "https://api.example.com",
            "api.example.com/v1",
            "user@api.example.com",
            "api.example.com?x",
            "api.example.com#x",
            "*",
            "*.",
            "*.com",
            "**.example.com",
            "api.*.example.com",
            "*example.com",
            "*.127.0.0.1",
            "*.[::1]",
            "api.example.com:",
            "api.example.com:0",
            "api.example.com:65536",
            "api.example.com:+80",
            "api.example.com:8o",
            "[::1",
            "[::1]x",
            "::1",
            "exa\\mple.com",
            "exa mple.com",
        ] {
            assert!(HostPolicy::new([bad]).is_err(), "{bad:?} should be rejected");
        }
    }
}
