//! Random identifiers and nonces.

/// `bytes` random bytes as URL-safe base64 without padding: connection and session ids, OAuth
/// `state`, nonces, API keys.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
