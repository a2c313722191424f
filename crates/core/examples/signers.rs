//! Micro-benchmark of each signing strategy against the plain Bearer strategy, in one run.
//! Run with `bench/signers.sh` (release build). Prints the median cost per signed request and
//! the ratio to the baseline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use latchkey_core::auth::digest::{Challenge, respond};
use latchkey_core::auth::{AuthContext, apply, jwt};
use latchkey_core::connector::{AuthMethod, DigestAuth, parse_connector};
use latchkey_core::{OutgoingRequest, Secret};

/// Throwaway keys for the benchmark only.
const RSA_KEY: &str = include_str!("bench_rsa_key.pem");
const EC_KEY: &str = include_str!("bench_ec_key.pem");
const ED25519_KEY: &str = include_str!("bench_ed25519_key.pem");

fn method(yaml: &str) -> AuthMethod {
    parse_connector(
        &format!("id: b\nname: B\nbase_url: https://api.example.com\nauth:\n{yaml}"),
        "b.yaml",
    )
    .unwrap()
    .auth
    .remove(0)
}

fn request() -> OutgoingRequest {
    let mut r = OutgoingRequest::new(
        http::Method::POST,
        "https://api.example.com/v1/items?page=2&q=caf%C3%A9".parse().unwrap(),
    );
    r.headers.insert("content-type", "application/json".parse().unwrap());
    r.body = br#"{"name":"widget","count":3}"#.to_vec().into();
    r
}

/// Median of `rounds` batches of `batch` calls, per call.
fn measure(mut f: impl FnMut()) -> Duration {
    let (rounds, batch) = (31, 200);
    for _ in 0..batch {
        f();
    }
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed() / batch
        })
        .collect();
    samples.sort();
    samples[rounds as usize / 2]
}

fn main() {
    let creds: BTreeMap<String, Secret> = [
        ("token", "tok-0123456789"),
        ("username", "user"),
        ("password", "pass"),
        ("access_key_id", "AKIDEXAMPLE"),
        ("secret_access_key", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ("consumer_key", "ck"),
        ("consumer_secret", "cs"),
        ("token_secret", "ts"),
        ("secret", "hs-secret-0123456789abcdef0123456789"),
        ("private_key", RSA_KEY),
        ("ec_key", EC_KEY),
        ("ed_key", ED25519_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Secret::new(v)))
    .collect();
    let config = BTreeMap::new();
    let ctx = AuthContext {
        credentials: &creds,
        config: &config,
        now: std::time::SystemTime::now(),
        nonce: "nonce-0123456789",
    };
    let cases: Vec<(&str, AuthMethod)> = vec![
        ("bearer (baseline)", method("  - type: bearer\n")),
        ("basic", method("  - type: basic\n")),
        (
            "aws_sigv4",
            method("  - type: aws_sigv4\n    service: execute-api\n    region: us-east-1\n"),
        ),
        ("oauth1 HMAC-SHA1", method("  - type: oauth1\n")),
        ("oauth1 HMAC-SHA256", method("  - type: oauth1\n    signature_method: HMAC-SHA256\n")),
        ("oauth1 RSA-SHA1", method("  - type: oauth1\n    signature_method: RSA-SHA1\n")),
        (
            "jwt HS256",
            method("  - type: jwt\n    algorithm: HS256\n    claims: { iss: latchkey }\n"),
        ),
        (
            "jwt RS256",
            method("  - type: jwt\n    algorithm: RS256\n    claims: { iss: latchkey }\n"),
        ),
        (
            "jwt ES256",
            method(
                "  - type: jwt\n    algorithm: ES256\n    fields: [{ key: ec_key, label: K }]\n    claims: { iss: latchkey }\n",
            ),
        ),
        (
            "jwt EdDSA",
            method(
                "  - type: jwt\n    algorithm: EdDSA\n    fields: [{ key: ed_key, label: K }]\n    claims: { iss: latchkey }\n",
            ),
        ),
    ];
    let template = request();
    let mut baseline = None;
    println!("{:<22} {:>12} {:>10}", "strategy", "median/req", "ratio");
    for (name, m) in &cases {
        let cost = measure(|| {
            let mut r = template.clone();
            apply(m, &mut r, ctx).unwrap();
            std::hint::black_box(&r);
        });
        let base = *baseline.get_or_insert(cost);
        println!("{name:<22} {:>10.2?} {:>9.1}x", cost, cost.as_secs_f64() / base.as_secs_f64());
    }
    let base = baseline.unwrap_or_default();
    let report = |name: &str, cost: Duration| {
        println!("{name:<22} {:>10.2?} {:>9.1}x", cost, cost.as_secs_f64() / base.as_secs_f64());
    };
    // `sign: per_lifetime`: the engine places a kept token; signing happens once per lifetime.
    let AuthMethod::Jwt(kept_method) =
        method("  - type: jwt\n    algorithm: RS256\n    sign: per_lifetime\n")
    else {
        unreachable!()
    };
    let kept = jwt::sign(&kept_method, ctx).unwrap();
    report(
        "jwt RS256 kept token",
        measure(|| {
            let mut r = template.clone();
            jwt::place(&kept_method, &kept, &mut r, ctx).unwrap();
            std::hint::black_box(&r);
        }),
    );
    // What part of an RSA signature is reading the key (both signers read it on every call).
    report(
        "RSA key parse alone",
        measure(|| {
            use rsa::pkcs8::DecodePrivateKey;
            std::hint::black_box(rsa::RsaPrivateKey::from_pkcs8_pem(RSA_KEY).unwrap());
        }),
    );
    let challenge = Challenge::parse(
        r#"Digest realm="r", qop="auth", algorithm=SHA-256, nonce="abcdef0123456789", opaque="o""#,
    )
    .unwrap();
    let digest = DigestAuth::default();
    let cost = measure(|| {
        let mut c = challenge.clone();
        let mut r = template.clone();
        respond(&digest, &mut c, &mut r, ctx, Some("cnonce")).unwrap();
        std::hint::black_box(&r);
    });
    report("digest SHA-256", cost);
}
