//! `btoa`/`atob` and `cyclr_sign` checked against implementations no one here wrote: Python's
//! `codecs`, `base64`, `hmac` and `hashlib`, and the `cryptography` package for RSA PKCS#1 v1.5
//! (tests/peers/script_functions.py). Every value comes out of a script run by the engine.
//!
//! Needs Python 3 with the `cryptography` package (`scripts/test --prepare` installs it); the tests fail,
//! never skip, without them. `LATCHKEY_TEST_PYTHON` names another interpreter.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{RecordingHost, globals};
use latchkey_script::{Limits, ScriptEngine};
use serde_json::{Value, json};

/// Texts every charset encodes: non-ASCII Latin, CJK and symbols; characters Latin-1 can only
/// best-fit (ĕ, ō, the Ångström sign) or not hold at all; an astral character (a surrogate pair in
/// UTF-16); a combining mark; the characters UTF-7 treats specially (`+`, `-` after a base64 run,
/// `~`, `\`, `!`); control characters, NUL, a BOM and noncharacters; and the empty string.
const TEXTS: &[&str] = &[
    "Grüße, Zürich — 日本 €",
    "Hĕllō Wōrld: 😀 naïve A\u{30A} \u{212B} Ω ﬁ 한 日-x ~\\ +1 = 2!",
    "plain ASCII a+b=c/d?",
    "\u{FEFF}tab\tCRLF\r\nNUL\u{0} \u{FFFF}\u{10FFFF}",
    "",
];

/// A charset label as a script names it, and the Python codec and encode error handler that
/// implement what charset.rs documents for it.
struct Charset {
    /// `None`: `btoa(text)` / `atob(text)` with no second argument (UTF-8).
    label: Option<&'static str>,
    codec: &'static str,
    /// ASCII: unencodable characters become `?` (Python's `replace`). ISO-8859-1: the base letter
    /// of the canonical decomposition when it is Latin-1, else `?` (a handler in the peer).
    errors: &'static str,
    /// Every text round-trips.
    lossless: bool,
}

const fn cs(
    label: Option<&'static str>,
    codec: &'static str,
    errors: &'static str,
    lossless: bool,
) -> Charset {
    Charset { label, codec, errors, lossless }
}

const BEST_FIT: &str = "latchkey_latin1_best_fit";

/// Every charset charset.rs supports, under each of its labels. Unqualified UTF-16 and UTF-32 are
/// little-endian without a byte-order mark, as in .NET.
const CHARSETS: &[Charset] = &[
    cs(None, "utf-8", "strict", true),
    cs(Some("UTF-8"), "utf-8", "strict", true),
    cs(Some("utf8"), "utf-8", "strict", true),
    cs(Some("ascii"), "ascii", "replace", false),
    cs(Some("US-ASCII"), "ascii", "replace", false),
    cs(Some("iso-8859-1"), "latin-1", BEST_FIT, false),
    cs(Some("Latin1"), "latin-1", BEST_FIT, false),
    cs(Some("l1"), "latin-1", BEST_FIT, false),
    cs(Some("utf-7"), "utf-7", "strict", true),
    cs(Some("UTF-16"), "utf-16-le", "strict", true),
    cs(Some("utf-16le"), "utf-16-le", "strict", true),
    cs(Some("unicode"), "utf-16-le", "strict", true),
    cs(Some("UTF-16BE"), "utf-16-be", "strict", true),
    cs(Some("unicodeFFFE"), "utf-16-be", "strict", true),
    cs(Some("BigEndianUnicode"), "utf-16-be", "strict", true),
    cs(Some("UTF-32"), "utf-32-le", "strict", true),
    cs(Some("utf_32le"), "utf-32-le", "strict", true),
    cs(Some("UTF-32BE"), "utf-32-be", "strict", true),
];

/// The engine's default budgets, but with time to spare: these tests are about values, and RSA
/// signing in a debug build on a busy machine should not hit the CPU limit.
fn engine() -> ScriptEngine {
    ScriptEngine::new(Limits { cpu_time: Duration::from_secs(10), ..Limits::default() })
}

/// Runs `function before_action() { result = <expression>; }` with `args` as globals and returns
/// the string the expression produced.
fn eval(engine: &ScriptEngine, expression: &str, args: Value) -> String {
    let mut g = globals(args);
    g.insert("result".into(), Value::Null);
    let script = format!("function before_action() {{ result = {expression}; }}");
    let out = engine
        .run(&script, "before_action", g.clone(), &RecordingHost::default(), None)
        .unwrap_or_else(|e| panic!("{expression} with {g:?}: {e}"));
    match &out.globals["result"] {
        Value::String(s) => s.clone(),
        other => panic!("{expression} with {g:?} returned {other}"),
    }
}

/// Sends `cases` to the Python peer and returns its results, one per case.
fn python(cases: &[Value]) -> Vec<Value> {
    let python = std::env::var("LATCHKEY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let peer = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/script_functions.py");
    let mut child = Command::new(&python)
        .arg(peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{python}` ({e}): these tests need Python 3 with the `cryptography` \
                 package (run scripts/test --prepare, which installs it into .venv-test/)"
            )
        });
    let input = serde_json::to_vec(cases).unwrap();
    // A peer that exits early (no `cryptography`) closes the pipe: its status and stderr say why.
    let written = child.stdin.take().unwrap().write_all(&input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python peer {peer} failed ({}); it needs Python 3 with the `cryptography` package \
         (run scripts/test --prepare, which installs it into .venv-test/):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    written.expect("sending the cases to the Python peer");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Python peer printed no JSON list ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), cases.len(), "one result per case");
    results
}

fn assert_no_mismatches(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es) with Python:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

fn btoa_expression(label: Option<&str>) -> &'static str {
    if label.is_some() { "btoa(text, charset)" } else { "btoa(text)" }
}

fn atob_expression(label: Option<&str>) -> &'static str {
    if label.is_some() { "atob(encoded, charset)" } else { "atob(encoded)" }
}

#[test]
fn btoa_matches_python_codecs_and_atob_reads_python_back() {
    let engine = engine();
    let mut cases = Vec::new();
    for text in TEXTS {
        for charset in CHARSETS {
            let rust = eval(
                &engine,
                btoa_expression(charset.label),
                json!({"text": text, "charset": charset.label}),
            );
            cases.push(json!({"kind": "btoa", "text": text, "codec": charset.codec,
                "errors": charset.errors, "rust": rust}));
        }
    }
    let results = python(&cases);

    let mut mismatches = Vec::new();
    let charsets = TEXTS.iter().flat_map(|_| CHARSETS);
    for ((case, result), charset) in cases.iter().zip(&results).zip(charsets) {
        let (text, rust) = (case["text"].as_str().unwrap(), &case["rust"]);
        let what = format!("{text:?} in {:?} ({})", charset.label, charset.codec);
        // What the text becomes after a trip through the charset, by Python's reckoning.
        let decoded = &result["decoded"];
        if charset.lossless && decoded != text {
            mismatches.push(format!("{what}: Python itself does not round-trip: {decoded}"));
        }
        // UTF-7 lets an encoder choose which characters to write directly and when to close a
        // base64 run, and Python chooses differently from .NET; its bytes must decode, not match.
        if charset.codec != "utf-7" && rust != &result["base64"] {
            mismatches.push(format!("{what}: btoa gave {rust}, Python {}", result["base64"]));
        }
        if &result["rust_decoded"] != decoded {
            mismatches.push(format!(
                "{what}: Python decodes btoa's {rust} to {} ({}), expected {decoded}",
                result["rust_decoded"],
                result.get("rust_error").unwrap_or(&Value::Null)
            ));
        }
        let back = eval(
            &engine,
            atob_expression(charset.label),
            json!({"encoded": result["base64"], "charset": charset.label}),
        );
        if back != *decoded {
            mismatches.push(format!(
                "{what}: atob of Python's {} gave {back:?}, expected {decoded}",
                result["base64"]
            ));
        }
    }
    assert_no_mismatches(&mismatches);
}

#[test]
fn atob_replaces_malformed_bytes_as_python_does() {
    // Malformed input becomes U+FFFD per Unicode's "maximal subpart" practice, which Python's
    // `replace` handler follows; charset.rs's ASCII decoder writes `?` for bytes above 0x7F.
    let cases: &[(Option<&str>, &str, &str, &str)] = &[
        // A surrogate encoded in UTF-8, a truncated 4-byte sequence, a truncated 2-byte one.
        (None, "utf-8", "replace", "eda080f09f9841c3"),
        // An overlong '/', a stray continuation byte, bytes never valid in UTF-8.
        (Some("utf-8"), "utf-8", "replace", "c0af8041fffe"),
        // A high surrogate followed by 'A'; a lone low surrogate, 'A' and an odd last byte.
        (Some("utf-16"), "utf-16-le", "replace", "00d84100"),
        (Some("utf-16le"), "utf-16-le", "replace", "00dc410041"),
        // Two high surrogates, the second one paired.
        (Some("utf-16le"), "utf-16-le", "replace", "00d800d800dc"),
        (Some("utf-16be"), "utf-16-be", "replace", "d8000041dc0000"),
        // A surrogate code point, one above U+10FFFF, 'A', a truncated last unit.
        (Some("utf-32"), "utf-32-le", "replace", "00d800000000110041000000410000"),
        (Some("utf-32be"), "utf-32-be", "replace", "0000d800001100000000004141"),
        (Some("ascii"), "ascii", "latchkey_question_mark", "48e97f80ff00"),
        (Some("iso-8859-1"), "latin-1", "strict", "48e97f80ff00a4"),
    ];
    let requests: Vec<Value> = cases
        .iter()
        .map(|(_, codec, errors, hex)| {
            json!({"kind": "decode", "codec": codec, "errors": errors, "hex": hex})
        })
        .collect();
    let results = python(&requests);

    let engine = engine();
    let mut mismatches = Vec::new();
    for ((label, codec, _, hex), result) in cases.iter().zip(&results) {
        let back = eval(
            &engine,
            atob_expression(*label),
            json!({"encoded": result["base64"], "charset": label}),
        );
        if back != result["decoded"] {
            mismatches.push(format!(
                "bytes {hex} in {label:?} ({codec}): atob gave {back:?}, Python {}",
                result["decoded"]
            ));
        }
    }
    assert_no_mismatches(&mismatches);
}

#[test]
fn hmac_matches_python_hmac() {
    let long_key = "ключ-🔑-".repeat(20); // 280 bytes: hashed first, for SHA-512's 128 too
    let pairs: Vec<(String, &str)> = vec![
        ("clé secrète 🔑".into(), "Grüße, Zürich — 日本 €"),
        ("Jefe".into(), "what do ya want for nothing?"),
        (String::new(), ""),
        ("a\u{0}b".into(), "x\u{0}y\r\n"),
        ("é".repeat(32), "key of exactly 64 bytes, SHA-1/256's block"), // 64 bytes
        (format!("{}x", "é".repeat(32)), "65 bytes: one past the block"),
        ("é".repeat(64), "128 bytes, SHA-512's block 😀"),
        (long_key, "日本語のテキスト"),
    ];
    // Labels vary in case and separators, as scripts write them.
    let algorithms = [
        ("HMAC-SHA1", "sha1"),
        ("hmac-sha256", "sha256"),
        ("HmacSHA256", "sha256"),
        ("HMAC_SHA512", "sha512"),
    ];
    let encodings = [None, Some("hex"), Some("base64"), Some("HEX")];

    let engine = engine();
    let mut runs = Vec::new();
    let mut cases = Vec::new();
    for (key, value) in &pairs {
        for (label, digest) in algorithms {
            for encoding in encodings {
                let expression = if encoding.is_some() {
                    "cyclr_sign(alg, key, value, encoding)"
                } else {
                    "cyclr_sign(alg, key, value)"
                };
                let args = json!({"alg": label, "key": key, "value": value, "encoding": encoding});
                runs.push((label, encoding, eval(&engine, expression, args)));
                cases.push(json!({"kind": "hmac", "digest": digest, "key": key, "value": value}));
            }
        }
    }
    let results = python(&cases);

    let mut mismatches = Vec::new();
    for ((case, result), (label, encoding, rust)) in cases.iter().zip(&results).zip(&runs) {
        let hex = encoding.is_some_and(|e| e.eq_ignore_ascii_case("hex"));
        let expected = &result[if hex { "hex" } else { "base64" }];
        if expected != rust.as_str() {
            mismatches.push(format!(
                "{label} key {} value {} encoding {encoding:?}: cyclr_sign gave {rust}, Python {expected}",
                case["key"], case["value"]
            ));
        }
    }
    assert_no_mismatches(&mismatches);
}

#[test]
fn rsa_signatures_verify_with_cryptography() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let read = |name: &str| {
        std::fs::read_to_string(format!("{dir}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let algorithms = [
        ("RSA-SHA1", "sha1"),
        ("rsa-sha224", "sha224"),
        ("RSA_SHA256", "sha256"),
        ("RSASHA384", "sha384"),
        ("RSA-SHA512", "sha512"),
    ];
    let values = ["Grüße, Zürich — 日本 € 😀", "GET&/path&a=1", ""];

    let engine = engine();
    let mut cases = Vec::new();
    for key_file in ["rsa_pkcs8.pem", "rsa_pkcs1.pem"] {
        let pem = read(key_file);
        for (label, digest) in algorithms {
            for value in values {
                for encoding in [None, Some("hex")] {
                    let expression = if encoding.is_some() {
                        "cyclr_sign(alg, key, value, encoding)"
                    } else {
                        "cyclr_sign(alg, key, value)"
                    };
                    let args =
                        json!({"alg": label, "key": pem, "value": value, "encoding": encoding});
                    let signature = eval(&engine, expression, args);
                    cases.push(json!({"kind": "rsa", "key_file": key_file, "label": label,
                        "digest": digest, "pem": pem, "value": value, "signature": signature,
                        "encoding": encoding.unwrap_or("base64")}));
                }
            }
        }
    }
    let results = python(&cases);

    let mut mismatches = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        let what = format!(
            "{} {} value {} ({})",
            case["key_file"], case["label"], case["value"], case["encoding"]
        );
        if result["valid"] != true {
            mismatches.push(format!("{what}: cryptography rejects {}", case["signature"]));
        }
        if result["tampered_valid"] != false {
            mismatches.push(format!("{what}: the signature also verifies for value + \"!\""));
        }
        if result["own"] != case["signature"] {
            mismatches.push(format!(
                "{what}: cyclr_sign gave {}, cryptography signs {}",
                case["signature"], result["own"]
            ));
        }
    }
    assert_no_mismatches(&mismatches);
}
