//! Fuzzes the OAuth2 token-response parser (`parse_token_response`) with hostile bodies, and
//! the connector's `token_response` settings a provider's quirks call for: field paths (nested,
//! indexed, empty), the lifetime's unit, a default lifetime, kept fields, and the HTTP status.
//!
//! Input: one byte choosing the settings, then the response body as the provider sent it (so
//! the corpus and the JSON dictionary stay plain bodies).
#![no_main]

use std::collections::BTreeMap;

use latchkey_core::connector::{LifetimeUnit, TokenResponseFields};
use latchkey_core::oauth2::parse_token_response;
use libfuzzer_sys::fuzz_target;

/// Paths connectors declare (Slack's nested token, indexed arrays) and degenerate ones.
const PATHS: &[(&str, &str, &str)] = &[
    ("access_token", "refresh_token", "expires_in"),
    ("authed_user.access_token", "authed_user.refresh_token", "authed_user.expires_in"),
    ("data.0.token", "data.0.refresh", "data.0.ttl"),
    ("", ".", ".."),
];
const STATUSES: &[u16] = &[200, 200, 201, 400, 401, 429, 500, 302];

fuzz_target!(|data: &[u8]| {
    let Some((&settings, body)) = data.split_first() else { return };
    let (access, refresh, expires) = PATHS[usize::from(settings & 0b11)];
    let status = STATUSES[usize::from((settings >> 2) & 0b111)];
    let mut keep = BTreeMap::new();
    if settings & 0b10_0000 != 0 {
        keep.insert("instance_url".to_owned(), "instance_url".to_owned());
        keep.insert("team".to_owned(), "team.id".to_owned());
    }
    let fields = TokenResponseFields {
        access_token: access.to_owned(),
        refresh_token: refresh.to_owned(),
        expires_in: expires.to_owned(),
        expires_in_unit: if settings & 0b100_0000 != 0 {
            LifetimeUnit::Milliseconds
        } else {
            LifetimeUnit::Seconds
        },
        default_lifetime: (settings & 0b1000_0000 != 0).then_some(3600),
        keep,
    };
    match parse_token_response(&fields, status, body) {
        Ok(tokens) => {
            assert!(!tokens.access_token.expose().is_empty(), "an empty access token was accepted");
            assert!((200..300).contains(&status), "HTTP {status} gave tokens");
            let _ = format!("{tokens:?}");
        }
        Err(error) => {
            let _ = (error.to_string(), error.is_invalid_grant(), error.is_transient());
        }
    }
});
