//! PKCE, [RFC 7636](https://www.rfc-editor.org/rfc/rfc7636): a code verifier and its S256
//! challenge. Written here because it is two lines over `sha2`, and the randomness comes in as a
//! parameter so tests can use the RFC's vector.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::Secret;

/// A code verifier (RFC 7636 §4.1). Not `Clone`: it is used once.
#[derive(Debug)]
pub struct PkceVerifier(Secret);

impl PkceVerifier {
    /// A verifier from 32 random octets: 43 characters of base64url (§4.1 recommends this).
    pub fn from_random(octets: [u8; 32]) -> Self {
        Self(Secret::new(URL_SAFE_NO_PAD.encode(octets)))
    }

    /// A verifier given as text (e.g. read back from the store). Must be 43–128 characters of
    /// the unreserved set.
    pub fn from_text(text: Secret) -> Result<Self, &'static str> {
        let ok = (43..=128).contains(&text.expose().len())
            && text
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok { Ok(Self(text)) } else { Err("a PKCE verifier is 43-128 unreserved characters") }
    }

    /// The S256 challenge: `BASE64URL(SHA256(ASCII(verifier)))` (§4.2).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.expose().as_bytes()))
    }

    /// The verifier itself, for the token request.
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc7636_appendix_b() {
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = PkceVerifier::from_random(octets);
        assert_eq!(verifier.secret().expose(), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(verifier.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn text_verifier_is_checked() {
        assert!(PkceVerifier::from_text(Secret::new("short")).is_err());
        assert!(PkceVerifier::from_text(Secret::new("a".repeat(43))).is_ok());
        assert!(PkceVerifier::from_text(Secret::new("a".repeat(129))).is_err());
        assert!(PkceVerifier::from_text(Secret::new(format!("{}!", "a".repeat(43)))).is_err());
    }
}
