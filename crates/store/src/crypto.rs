//! Envelope encryption of secrets at rest: AES-256-GCM with a fresh random nonce per value,
//! associated data binding each ciphertext to its owner and field, and a versioned keyring.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Secret;
use rand::RngCore as _;
use zeroize::Zeroizing;

/// Length of a master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes (96 bits, NIST SP 800-38D §8.2).
pub const NONCE_LEN: usize = 12;

/// Why a master key could not be read. The messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not standard (padded) base64.
    #[error("the master key is not valid base64 (expected 44 characters of standard base64)")]
    NotBase64,
    /// The text decodes to the wrong number of bytes.
    #[error("the master key must decode to exactly 32 bytes, but decodes to {len}")]
    WrongLength {
        /// How many bytes it decoded to.
        len: usize,
    },
}

/// Why a sealed value could not be opened. The messages never contain key or plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value was sealed with a key version this keyring does not hold.
    #[error("no key with version {0} in the keyring")]
    UnknownKeyVersion(u32),
    /// Authentication failed: wrong key, or the ciphertext, nonce or associated data changed
    /// (for example a ciphertext copied to another record or field).
    #[error(
        "decryption failed: wrong key, or the ciphertext was altered or moved to another record"
    )]
    Decrypt,
    /// The stored value is not shaped like a sealed value (e.g. a nonce of the wrong length).
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
}

/// A 256-bit master key. Zeroized on drop; `Debug` is redacted; not `Clone`.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl MasterKey {
    /// A new random key from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// Reads a key written as standard base64 (surrounding whitespace and newlines ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let decoded =
            Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| KeyError::NotBase64)?);
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength { len: decoded.len() })?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// The key as standard base64, for writing to a key file.
    pub fn to_base64(&self) -> Secret {
        Secret::new(STANDARD.encode(self.0.as_ref()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }

    /// Decrypts `sealed` with this key whatever version it names: how a key whose version is
    /// not known yet is matched against the database's key checks.
    pub(crate) fn open_as_any_version(
        &self,
        sealed: &Sealed,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.cipher()
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Master keys as an operator gives them, without versions: the current key, which seals new
/// values, and previous keys, which only open values sealed before a rotation. A store opened
/// with them finds each key's version by the key check it opens; a current key that opens none
/// becomes a new version (the highest + 1), but only if a previous key opens one, so a wrong
/// key still stops start-up ([`StoreError::WrongKey`](crate::StoreError::WrongKey)).
#[derive(Debug)]
pub struct MasterKeys {
    /// The key new values are sealed with.
    pub current: MasterKey,
    /// Older keys, to open what they sealed until it is re-sealed (`latchkey keys rotate`).
    pub previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// Only a current key.
    pub fn new(current: MasterKey) -> Self {
        Self { current, previous: Vec::new() }
    }

    /// Adds a previous key.
    pub fn with_previous(mut self, key: MasterKey) -> Self {
        self.previous.push(key);
        self
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// A value encrypted by [`Keyring::seal`]: the key version, the nonce and the ciphertext with its
/// 16-byte authentication tag appended. None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Version of the keyring key that sealed it.
    pub key_version: u32,
    /// The random 96-bit nonce used for this value only.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the GCM tag.
    pub ciphertext: Vec<u8>,
}

/// Master keys by version. New values are sealed with the current key; values sealed with any
/// key the ring holds can be opened, which is what lets keys rotate.
#[derive(Debug)]
pub struct Keyring {
    current: u32,
    keys: BTreeMap<u32, MasterKey>,
}

impl Keyring {
    /// A keyring whose current key is `key` at `version`.
    pub fn new(version: u32, key: MasterKey) -> Self {
        Self { current: version, keys: BTreeMap::from([(version, key)]) }
    }

    /// A keyring with one key, version 1.
    pub fn single(key: MasterKey) -> Self {
        Self::new(1, key)
    }

    /// Adds a key used only to open values sealed with `version` (e.g. before a rotation).
    /// The current key does not change; a key given for the current version is ignored.
    pub fn with_key(mut self, version: u32, key: MasterKey) -> Self {
        if version != self.current {
            self.keys.insert(version, key);
        }
        self
    }

    /// The version new values are sealed with.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Whether the ring holds a key with this version.
    pub fn has_version(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    /// Encrypts `plaintext` with the current key and a fresh random nonce, authenticating `aad`
    /// (build it with [`aad`]) alongside.
    #[allow(clippy::expect_used, reason = "AES-GCM only refuses plaintexts over 64 GiB")]
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Sealed {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = key
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            // AES-GCM only refuses plaintexts longer than 64 GiB.
            .expect("AES-GCM encryption of an in-memory value");
        Sealed { key_version: self.current, nonce, ciphertext }
    }

    /// Decrypts and authenticates a sealed value; `aad` must equal the one it was sealed with.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self
            .keys
            .get(&sealed.key_version)
            .ok_or(CryptoError::UnknownKeyVersion(sealed.key_version))?;
        key.open_as_any_version(sealed, aad)
    }

    /// The versions of the keys the ring holds, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }
}

/// Associated data binding a ciphertext to one field of one owner, e.g. `("connection", id,
/// "access_token")`. Each part is length-prefixed, so ids containing `:` cannot collide:
/// `latchkey:v1:10:connection:4:c_12:12:access_token`.
pub fn aad(owner_kind: &str, owner_id: &str, field: &str) -> Vec<u8> {
    let mut out = b"latchkey:v1".to_vec();
    for part in [owner_kind, owner_id, field] {
        out.extend_from_slice(format!(":{}:", part.len()).as_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Associated data of a connection credential (format 2): [`aad`]'s owner, id and field, and
/// the digest of what decides where the credential may be sent ([`connection_binding`]), so a
/// database edit of the connection's connector, integration, auth method or config makes the
/// credential fail to open instead of going to another host.
pub fn bound_aad(owner_kind: &str, owner_id: &str, field: &str, binding: &[u8; 32]) -> Vec<u8> {
    let mut out = b"latchkey:v2".to_vec();
    for part in [owner_kind.as_bytes(), owner_id.as_bytes(), field.as_bytes(), binding.as_slice()] {
        out.extend_from_slice(format!(":{}:", part.len()).as_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// SHA-256 of what decides where a connection's credentials may go: the connector id, the
/// integration (absent or its id), the auth method and every per-connection config value (the
/// base URL and allowed hosts may be templated over any of them). Each part is
/// length-prefixed and the config is taken in key order, so the digest is canonical.
pub fn connection_binding(
    connector: &str,
    integration: Option<&str>,
    auth_method: &str,
    config: &BTreeMap<String, String>,
) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(b"latchkey connection binding v1");
    part(connector.as_bytes());
    match integration {
        None => part(b"-"),
        Some(id) => {
            part(b"+");
            part(id.as_bytes());
        }
    }
    part(auth_method.as_bytes());
    part(&(config.len() as u64).to_be_bytes());
    for (key, value) in config {
        part(key.as_bytes());
        part(value.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::single(MasterKey::generate())
    }

    #[test]
    fn seal_then_open_roundtrips() {
        let ring = ring();
        let ad = aad("connection", "c1", "api_key");
        let sealed = ring.seal(b"hunter2", &ad);
        assert_eq!(sealed.key_version, 1);
        assert_ne!(sealed.ciphertext.as_slice(), b"hunter2");
        assert_eq!(ring.open(&sealed, &ad).unwrap().as_slice(), b"hunter2");
    }

    #[test]
    fn wrong_key_fails() {
        let ad = aad("connection", "c1", "api_key");
        let sealed = ring().seal(b"hunter2", &ad);
        assert_eq!(ring().open(&sealed, &ad), Err(CryptoError::Decrypt));
    }

    #[test]
    fn unknown_key_version_is_its_own_error() {
        let ad = aad("connection", "c1", "api_key");
        let sealed = Keyring::new(7, MasterKey::generate()).seal(b"x", &ad);
        assert_eq!(ring().open(&sealed, &ad), Err(CryptoError::UnknownKeyVersion(7)));
    }

    #[test]
    fn older_key_still_opens_after_rotation() {
        let old = MasterKey::generate();
        let old_copy = MasterKey::from_base64(old.to_base64().expose()).unwrap();
        let ad = aad("integration", "i1", "client_secret");
        let sealed = Keyring::single(old).seal(b"s3cret", &ad);
        let rotated = Keyring::new(2, MasterKey::generate()).with_key(1, old_copy);
        assert_eq!(rotated.open(&sealed, &ad).unwrap().as_slice(), b"s3cret");
        assert_eq!(rotated.seal(b"new", &ad).key_version, 2);
    }

    #[test]
    fn other_owner_or_field_fails() {
        let ring = ring();
        let sealed = ring.seal(b"hunter2", &aad("connection", "c1", "api_key"));
        for other in [
            aad("connection", "c2", "api_key"),
            aad("connection", "c1", "password"),
            aad("integration", "c1", "api_key"),
        ] {
            assert_eq!(ring.open(&sealed, &other), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn aad_is_unambiguous_with_colons() {
        assert_ne!(aad("connection", "a:b", "c"), aad("connection", "a", "b:c"));
        assert_eq!(
            aad("connection", "c_12", "access_token"),
            b"latchkey:v1:10:connection:4:c_12:12:access_token"
        );
    }

    fn binding(connector: &str, config: &[(&str, &str)]) -> [u8; 32] {
        let config = config.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        connection_binding(connector, Some("i1"), "api_key", &config)
    }

    #[test]
    fn bound_value_fails_when_what_it_is_bound_to_changes() {
        let ring = ring();
        let bound = binding("github", &[("subdomain", "acme")]);
        let sealed = ring.seal(b"hunter2", &bound_aad("connection", "c1", "api_key", &bound));
        let open = |b: [u8; 32]| ring.open(&sealed, &bound_aad("connection", "c1", "api_key", &b));
        assert_eq!(open(bound).unwrap().as_slice(), b"hunter2");
        let config = BTreeMap::from([("subdomain".to_owned(), "acme".to_owned())]);
        for other in [
            binding("gitlab", &[("subdomain", "acme")]),
            binding("github", &[("subdomain", "evil.example")]),
            binding("github", &[("subdomain", "acme"), ("region", "eu")]),
            binding("github", &[]),
            connection_binding("github", None, "api_key", &config),
            connection_binding("github", Some("i2"), "api_key", &config),
            connection_binding("github", Some("i1"), "basic", &config),
        ] {
            assert_eq!(open(other), Err(CryptoError::Decrypt));
        }
        // Nor does it open with the unbound (format 1) associated data.
        assert_eq!(
            ring.open(&sealed, &aad("connection", "c1", "api_key")),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn binding_parts_cannot_run_into_each_other() {
        assert_ne!(binding("ab", &[("c", "d")]), binding("a", &[("bc", "d")]));
        assert_ne!(binding("g", &[("a", "bc")]), binding("g", &[("ab", "c")]));
        assert_ne!(binding("g", &[("a", ""), ("b", "")]), binding("g", &[("a", "b")]));
    }

    #[test]
    fn nonce_is_fresh_per_seal() {
        let ring = ring();
        let ad = aad("connection", "c1", "api_key");
        let a = ring.seal(b"same", &ad);
        let b = ring.seal(b"same", &ad);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let ring = ring();
        let ad = aad("connection", "c1", "api_key");
        let mut sealed = ring.seal(b"hunter2", &ad);
        sealed.ciphertext[0] ^= 1;
        assert_eq!(ring.open(&sealed, &ad), Err(CryptoError::Decrypt));
    }

    #[test]
    fn master_key_debug_is_redacted() {
        let key = MasterKey::generate();
        let encoded = key.to_base64();
        let debug = format!("{key:?}");
        let debug = format!("{debug} {:?}", Keyring::single(key));
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains(encoded.expose()));
        assert_eq!(format!("{encoded:?}"), "[redacted]");
    }

    #[test]
    fn master_key_base64_roundtrips_and_trims() {
        let key = MasterKey::generate();
        let text = format!("  {}\n", key.to_base64().expose());
        let again = MasterKey::from_base64(&text).unwrap();
        assert_eq!(again.to_base64(), key.to_base64());
    }

    #[test]
    fn master_key_rejects_bad_input() {
        assert_eq!(MasterKey::from_base64("not base64!").unwrap_err(), KeyError::NotBase64);
        assert_eq!(
            MasterKey::from_base64(&STANDARD.encode([0u8; 16])).unwrap_err(),
            KeyError::WrongLength { len: 16 }
        );
        assert_eq!(MasterKey::from_base64("").unwrap_err(), KeyError::WrongLength { len: 0 });
    }
}
