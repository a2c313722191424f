//! Fuzzes the OAuth callback's query parsing: the raw query of `GET /oauth/callback` as the
//! server receives it (URI, then form-decoded pairs as axum's `Query` does), split by
//! `CallbackParams::from_pairs`, the engine's pure function the callback handler calls.
#![no_main]

use latchkey_engine::CallbackParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As it arrives: a request target the HTTP layer accepted.
    let query = match std::str::from_utf8(data) {
        Ok(text) => match format!("/oauth/callback?{text}").parse::<http::Uri>() {
            Ok(uri) => uri.query().unwrap_or_default().to_owned(),
            Err(_) => return,
        },
        Err(_) => return,
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let params = CallbackParams::from_pairs(pairs.clone());
    if let Some(error) = &params.error {
        assert!(error.chars().count() <= 100, "the provider's error is not shortened");
    }
    // Every pair is accounted for: named, or kept in `extra`.
    for (k, _) in &pairs {
        let known = matches!(
            k.as_str(),
            "state" | "code" | "error" | "iss" | "oauth_token" | "oauth_verifier" | "denied"
        );
        assert!(known || params.extra.contains_key(k), "parameter `{k}` was lost");
    }
    let _ = format!("{params:?}");
});
