//! Property-style checks of `join`: thousands of random paths built from hostile fragments never
//! change the scheme, host, port or user info, nor leave the base path prefix.
//!
//! Random paths come from a seeded xorshift generator written here (a few lines) rather than a
//! new dependency, so every run checks the same cases and a failure names its seed.

use latchkey_net::{NetError, join};
use url::Url;

const FRAGMENTS: &[&str] = &[
    "/",
    "//",
    "///",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "@",
    ":",
    "?",
    "#",
    "&",
    "=",
    "%",
    "%25",
    "%40",
    "%3A",
    "%00",
    "%0a",
    " ",
    "\t",
    "\n",
    "\r",
    "\u{0}",
    "\u{a0}",
    "\u{2028}",
    "é",
    "ß",
    "ｅvil",
    "\u{ff0f}",
    "\u{2215}",
    "http:",
    "https:",
    "HTTP:",
    "javascript:",
    "evil.example",
    "evil.example:8080",
    "user:pass@",
    "[::1]",
    "127.0.0.1",
    "localhost",
    "a",
    "users",
    "v2",
    "x-y_z~",
    "1",
    ";",
    ",",
    "!",
    "$",
    "'",
    "(",
    ")",
    "*",
    "+",
    "[",
    "]",
    "{",
    "}",
    "|",
    "^",
    "`",
    "<",
    ">",
    "\"",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_path(rng: &mut XorShift, alphabet: &[&str]) -> String {
    (0..1 + rng.below(12)).map(|_| alphabet[rng.below(alphabet.len())]).collect()
}

fn bases() -> Vec<Url> {
    [
        "https://api.example.com",
        "https://api.example.com/v2",
        "https://api.example.com/v2/",
        "http://user:pw@api.example.com:8080/a/b",
        "https://[2001:db8::1]/api",
        "https://10.0.0.1:444/x?key=1",
    ]
    .iter()
    .map(|b| Url::parse(b).unwrap())
    .collect()
}

fn assert_stays_inside(base: &Url, path: &str, joined: &Url) {
    let prefix = format!("{}/", base.path().trim_end_matches('/'));
    assert_eq!(joined.scheme(), base.scheme(), "{path:?} -> {joined}");
    assert_eq!(joined.host(), base.host(), "{path:?} -> {joined}");
    assert_eq!(
        joined.port_or_known_default(),
        base.port_or_known_default(),
        "{path:?} -> {joined}"
    );
    assert_eq!(joined.username(), base.username(), "{path:?} -> {joined}");
    assert_eq!(joined.password(), base.password(), "{path:?} -> {joined}");
    // Below the base, or (an empty path) the base itself.
    assert!(
        joined.path().starts_with(&prefix) || joined.path() == base.path(),
        "{path:?} -> {joined}"
    );
    assert!(
        !joined.path().split('/').any(|s| s == ".." || s.eq_ignore_ascii_case("%2e%2e")),
        "{path:?} -> {joined}"
    );
    let reparsed = Url::parse(joined.as_str()).unwrap();
    assert_eq!(reparsed.host(), base.host(), "{path:?} -> {joined} reparsed");
}

#[test]
fn hostile_random_paths_never_leave_the_base() {
    let mut accepted = 0;
    for seed in 1..=20_000u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let path = random_path(&mut rng, FRAGMENTS);
        for base in bases() {
            match join(&base, &path) {
                Ok(joined) => {
                    accepted += 1;
                    assert_stays_inside(&base, &path, &joined);
                }
                Err(NetError::UnsafePath { .. }) => {}
                Err(other) => panic!("seed {seed}: {path:?} gave {other:?}"),
            }
        }
    }
    // Not vacuous: a good share of the hostile paths are harmless and must be joined.
    assert!(accepted > 10_000, "only {accepted} joined");
}

#[test]
fn plain_random_paths_are_accepted_verbatim() {
    const SAFE: &[&str] =
        &["/", "a", "users", "v2", "x-y_z~", "1", "%20", "é", ":", "@", "..a", ".b"];
    for seed in 1..=5_000u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let mut path = format!("/s{}", random_path(&mut rng, SAFE));
        while path.contains("//") {
            path = path.replace("//", "/");
        }
        let query = format!("page={}&q=a%2Fb", rng.below(100));
        let base = Url::parse("https://api.example.com/v2").unwrap();
        let joined = join(&base, &format!("{path}?{query}"))
            .unwrap_or_else(|e| panic!("seed {seed}: {path:?} refused: {e}"));
        assert_stays_inside(&base, &path, &joined);
        let expected = Url::parse(&format!("https://api.example.com/v2{path}")).unwrap();
        assert_eq!(joined.path(), expected.path(), "seed {seed}");
        assert_eq!(joined.query(), Some(query.as_str()), "seed {seed}");
    }
}
