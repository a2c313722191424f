//! `cyclr_sign(algorithm, key, value)`: HMAC-SHA1/256/512 over a UTF-8 key, and RSA PKCS#1 v1.5
//! (RFC 8017 §8.2) with SHA-1/224/256/384/512 over a PEM (PKCS#8 or PKCS#1) private key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// How the signature bytes are returned to the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard base64 with padding: the default.
    Base64,
    /// Lower-case hex.
    Hex,
}

impl Output {
    pub fn from_label(label: Option<&str>) -> Result<Self, String> {
        match label.map(str::to_ascii_lowercase).as_deref() {
            None | Some("base64") => Ok(Output::Base64),
            Some("hex") => Ok(Output::Hex),
            Some(other) => Err(format!("unsupported signature encoding '{other}'")),
        }
    }
}

/// Signs `value` (its UTF-8 bytes). `algorithm` is matched case-insensitively, ignoring `-`/`_`
/// (`HMAC-SHA256`, `hmacsha256`, `RSA_SHA256` are the same).
pub fn sign(algorithm: &str, key: &str, value: &str, output: Output) -> Result<String, String> {
    let name: String =
        algorithm.chars().filter(|c| *c != '-' && *c != '_').flat_map(char::to_uppercase).collect();
    let data = value.as_bytes();
    let bytes = match name.as_str() {
        "HMACSHA1" => hmac::<Hmac<Sha1>>(key, data),
        "HMACSHA256" => hmac::<Hmac<Sha256>>(key, data),
        "HMACSHA512" => hmac::<Hmac<Sha512>>(key, data),
        "RSASHA1" => rsa_sign::<Sha1>(key, data)?,
        "RSASHA224" => rsa_sign::<Sha224>(key, data)?,
        "RSASHA256" => rsa_sign::<Sha256>(key, data)?,
        "RSASHA384" => rsa_sign::<Sha384>(key, data)?,
        "RSASHA512" => rsa_sign::<Sha512>(key, data)?,
        _ => return Err(format!("unsupported signing algorithm '{algorithm}'")),
    };
    Ok(match output {
        Output::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        Output::Hex => hex::encode(bytes),
    })
}

#[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
fn hmac<M: Mac + hmac::digest::KeyInit>(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn rsa_sign<D>(pem: &str, data: &[u8]) -> Result<Vec<u8>, String>
where
    D: Digest + rsa::pkcs8::AssociatedOid,
{
    let pem = pem.trim();
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "the key is not an RSA private key in PEM (PKCS#8 or PKCS#1)".to_owned())?;
    let digest = D::digest(data);
    // Blinded, so the time a signature takes does not depend on the private key.
    key.sign_with_rng(&mut rsa::rand_core::OsRng, Pkcs1v15Sign::new::<D>(), &digest)
        .map_err(|e| format!("RSA signing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc_4231_and_2202_vectors() {
        let (key, data) = ("Jefe", "what do ya want for nothing?");
        // RFC 2202 test case 2 (HMAC-SHA1), RFC 4231 test case 2 (SHA-256, SHA-512).
        assert_eq!(
            sign("HMAC-SHA1", key, data, Output::Hex).unwrap(),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            sign("hmac-sha256", key, data, Output::Hex).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign("HMACSHA512", key, data, Output::Hex).unwrap(),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        assert_eq!(
            sign("HMAC-SHA256", key, data, Output::Base64).unwrap(),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn unknown_algorithm_and_bad_key() {
        assert!(sign("MD5", "k", "v", Output::Base64).is_err());
        assert!(sign("RSA-SHA256", "not a key", "v", Output::Base64).is_err());
    }
}
