//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, the "Signature scheme"
//! section): `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256(key,
//! "{webhook-id}.{webhook-timestamp}.{body}")>`, one per secret that signs.
//!
//! The key is the secret's bytes: for a `whsec_<base64>` secret the base64 after the prefix,
//! decoded (what every Standard Webhooks library does with such a secret); for any other
//! secret its UTF-8 bytes as they are, so secrets set before Latchkey followed the standard
//! keep working (receivers then pass those raw bytes to their library).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use latchkey_core::Secret;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The prefix of a secret Latchkey generates, and which marks a base64-encoded key.
pub const SECRET_PREFIX: &str = "whsec_";

/// The prefix of every delivery's id (`webhook-id`).
pub const MESSAGE_PREFIX: &str = "msg_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> Secret {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::fill(&mut key[..]);
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&key[..])))
}

/// A new message id: `msg_` and 128 random bits (URL-safe base64).
pub fn message_id() -> String {
    format!("{MESSAGE_PREFIX}{}", crate::random_token(16))
}

/// The bytes of a `whsec_` secret's key, if the text after the prefix is base64 (padded or
/// not); `None` for any other secret.
pub(crate) fn encoded_key(secret: &Secret) -> Option<Zeroizing<Vec<u8>>> {
    let encoded = secret.expose().strip_prefix(SECRET_PREFIX)?;
    let encoded = encoded.trim_end_matches('=');
    STANDARD_NO_PAD.decode(encoded).ok().map(Zeroizing::new)
}

/// The HMAC key `secret` stands for (see the module doc).
fn key(secret: &Secret) -> Zeroizing<Vec<u8>> {
    encoded_key(secret).unwrap_or_else(|| Zeroizing::new(secret.expose().as_bytes().to_vec()))
}

/// One signature: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` value: one signature per secret, space-separated, in the order
/// given (the current secret first).
pub fn signature_header<'s>(
    secrets: impl IntoIterator<Item = &'s Secret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets.into_iter().map(|s| sign(s, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference_vector() {
        // The test vector of the Standard Webhooks reference libraries (e.g. the Python one's
        // test_webhooks.py): this secret, id, timestamp and body give this signature.
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_plain_secret_is_used_as_its_bytes_and_a_whsec_one_decoded() {
        // HMAC-SHA256("plain-secret-0123", "msg_1.5.{}"), computed with Python's hmac module.
        let plain = sign(&Secret::new("plain-secret-0123"), "msg_1", 5, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"plain-secret-0123").unwrap();
        mac.update(b"msg_1.5.{}");
        assert_eq!(plain, format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())));

        let generated = generate_secret();
        assert!(generated.expose().starts_with(SECRET_PREFIX));
        assert_eq!(encoded_key(&generated).unwrap().len(), 32);
        let unpadded = Secret::new(generated.expose().trim_end_matches('='));
        assert_eq!(sign(&generated, "m", 1, b"x"), sign(&unpadded, "m", 1, b"x"));
        assert!(encoded_key(&Secret::new("whsec_not base64!")).is_none());
    }

    #[test]
    fn several_secrets_give_space_separated_signatures_current_first() {
        let (new, old) =
            (Secret::new("whsec_bmV3LXNlY3JldC1rZXk="), Secret::new("old-secret-0123456"));
        let header = signature_header([&new, &old], "msg_x", 7, b"{}");
        assert_eq!(
            header,
            format!("{} {}", sign(&new, "msg_x", 7, b"{}"), sign(&old, "msg_x", 7, b"{}"))
        );
        assert!(message_id().starts_with(MESSAGE_PREFIX));
        assert_ne!(message_id(), message_id());
    }
}
