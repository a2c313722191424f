//! CSRF tokens. Each form carries one, bound to its session: HMAC-SHA256 of a fixed label
//! keyed by the session id, so it needs no storage, cannot be made without the session id
//! (which the browser keeps HttpOnly), and tells nothing of it. Every POST is checked before
//! anything else happens. The sign-in form, before any session exists, uses a double-submit
//! token instead: a random value in a SameSite=Strict cookie that the form must repeat.

use hmac::{Hmac, Mac};
use latchkey_core::Secret;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The form field every console form sends its token in.
pub const FIELD: &str = "csrf";

/// The token the forms of the session whose id is `session_id` carry.
pub fn token(session_id: &Secret) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(session_id.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(b"latchkey console csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the session's token (compared in constant time).
pub fn matches(session_id: &Secret, presented: Option<&str>) -> bool {
    let Some(presented) = presented else { return false };
    let expected = token(session_id);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether a double-submitted value (cookie and form) is present and the same in both.
pub fn same(cookie: Option<&str>, form: Option<&str>) -> bool {
    match (cookie, form) {
        (Some(c), Some(f)) if c.len() >= 32 => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_belongs_to_its_session_alone() {
        let one = Secret::new("session-one-0123456789abcdef");
        let two = Secret::new("session-two-0123456789abcdef");
        let token_one = token(&one);
        assert_eq!(token_one.len(), 64);
        assert!(!token_one.contains("session"));
        assert!(matches(&one, Some(&token_one)));
        assert!(!matches(&two, Some(&token_one)));
        assert!(!matches(&one, None));
        assert!(!matches(&one, Some("")));
        assert!(!matches(&one, Some(&token_one[..63])));
    }

    #[test]
    fn a_double_submit_needs_both_halves_equal_and_long() {
        let value = "a".repeat(43);
        assert!(same(Some(&value), Some(&value)));
        assert!(!same(Some(&value), Some("b")));
        assert!(!same(None, Some(&value)));
        assert!(!same(Some("short"), Some("short")));
    }
}
