//! Fuzzes `latchkey_net::join`, the join of a connector's base URL and a caller's path, with the
//! property that matters: whatever the path, the result stays on the base URL's scheme, user
//! info, host and port, under its path prefix, with no dot segment or fragment.
//!
//! Input: one byte choosing a base URL, then the caller's path (`/items?x=1`). With the byte
//! 255 the rest is `base URL\npath`, so bases of the fuzzer's own are covered too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use url::Url;

const BASES: &[&str] = &[
    "https://api.example.com",
    "https://api.example.com/v2",
    "https://api.example.com/v2/",
    "https://user:pw@api.example.com:8443/a/b?key=1",
    "http://127.0.0.1:9/",
    "https://[::1]/x",
    "https://xn--bcher-kva.example/%7Euser",
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let (base, path) = if choice == 255 {
        let Some((base, path)) = rest.split_once('\n') else { return };
        let Ok(base) = Url::parse(base) else { return };
        (base, path)
    } else {
        (Url::parse(BASES[usize::from(choice) % BASES.len()]).unwrap(), rest)
    };
    let Ok(joined) = latchkey_net::join(&base, path) else { return };
    assert_eq!(joined.scheme(), base.scheme(), "scheme changed: {joined}");
    assert_eq!(joined.host(), base.host(), "host changed: {joined}");
    assert_eq!(joined.port_or_known_default(), base.port_or_known_default(), "port changed");
    assert_eq!(joined.username(), base.username(), "user info changed: {joined}");
    assert_eq!(joined.password(), base.password(), "user info changed: {joined}");
    assert!(joined.fragment().is_none(), "a fragment survived: {joined}");
    let prefix = base.path().trim_end_matches('/');
    assert!(joined.path().starts_with(prefix), "left the base path {prefix}: {joined}");
    for segment in joined.path().split('/') {
        let lower = segment.to_ascii_lowercase();
        assert!(
            !matches!(lower.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."),
            "dot segment in {joined}"
        );
    }
    // What the network layer does with it next: a base the `http` crate takes (the `url` crate
    // accepts hosts such as ``a`b`` that it refuses) gives a URL it takes too.
    if base.as_str().parse::<http::Uri>().is_ok() {
        assert!(joined.as_str().parse::<http::Uri>().is_ok(), "not a valid request URI: {joined}");
    }
});
