//! Rows of the `secrets` and `keyring_check` tables, the same on both backends: who owns a
//! sealed value, opening it, and the start-up verdict on whether a keyring fits the database.

use latchkey_core::Secret;

use crate::StoreError;
use crate::crypto::{CryptoError, Keyring, NONCE_LEN, Sealed, aad};
use crate::rows::Columns;

/// Owner kind of a connection's credential fields.
pub(crate) const CONNECTION: &str = "connection";
/// Owner kind of an integration's client secret.
pub(crate) const INTEGRATION: &str = "integration";
/// Owner kind of the values connector scripts store per connection.
pub(crate) const SCRIPT_STORAGE: &str = "script_storage";
/// Owner kind of an OAuth authorization request's PKCE verifier.
pub(crate) const OAUTH_STATE: &str = "oauth_state";
/// The field of an integration's client secret.
pub(crate) const CLIENT_SECRET: &str = "client_secret";
/// The field of an OAuth state's PKCE verifier.
pub(crate) const PKCE_VERIFIER: &str = "pkce_verifier";

/// The plaintext sealed into `keyring_check` for each key version.
const KEY_CHECK: &[u8] = b"latchkey keyring check";

/// One row of `secrets` (or of `keyring_check`, selected in the same shape).
#[derive(Debug)]
pub(crate) struct SecretRow {
    pub owner_kind: String,
    pub owner_id: String,
    pub field: String,
    pub key_version: i64,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SecretRow {
    /// Reads `owner_kind, owner_id, field, key_version, nonce, ciphertext`.
    pub fn from_row(row: &impl Columns) -> Result<Self, StoreError> {
        Ok(Self {
            owner_kind: row.text("owner_kind")?,
            owner_id: row.text("owner_id")?,
            field: row.text("field")?,
            key_version: row.int("key_version")?,
            nonce: row.bytes("nonce")?,
            ciphertext: row.bytes("ciphertext")?,
        })
    }

    /// The associated data this row's value must have been sealed with.
    pub fn aad(&self) -> Vec<u8> {
        aad(&self.owner_kind, &self.owner_id, &self.field)
    }

    /// The row as a [`Sealed`] value, checking the key version and nonce length.
    pub fn sealed(&self) -> Result<Sealed, CryptoError> {
        Ok(Sealed {
            key_version: u32::try_from(self.key_version)
                .map_err(|_| CryptoError::Malformed("key version out of range"))?,
            nonce: <[u8; NONCE_LEN]>::try_from(self.nonce.as_slice())
                .map_err(|_| CryptoError::Malformed("nonce is not 12 bytes"))?,
            ciphertext: self.ciphertext.clone(),
        })
    }

    /// Decrypts the value; a failure is logged with the owner and field (never the value).
    pub fn open(&self, keyring: &Keyring) -> Result<Secret, StoreError> {
        let opened = self.sealed().and_then(|sealed| {
            let plain = keyring.open(&sealed, &self.aad())?;
            let text = std::str::from_utf8(&plain)
                .map_err(|_| CryptoError::Malformed("plaintext is not UTF-8"))?;
            Ok(Secret::new(text))
        });
        opened.map_err(|error| {
            tracing::warn!(
                owner_kind = %self.owner_kind,
                owner_id = %self.owner_id,
                field = %self.field,
                key_version = self.key_version,
                %error,
                "a stored secret could not be decrypted"
            );
            StoreError::Crypto(error)
        })
    }
}

/// Seals `value` for one field of one owner with the keyring's current key.
pub(crate) fn seal(keyring: &Keyring, kind: &str, id: &str, field: &str, value: &Secret) -> Sealed {
    keyring.seal(value.expose().as_bytes(), &aad(kind, id, field))
}

/// Decides whether `keyring` is the one the database was sealed with. `checks` are the
/// `keyring_check` rows (selected as owner `keyring`/`check`, field = the key version); when
/// there are none (a database from before the check existed, or one edited by hand),
/// `evidence` holds one stored secret that serves as the check instead.
///
/// [`StoreError::WrongKey`] if a key version the ring holds fails to open its check, or if none
/// of the ring's versions was ever used here. Otherwise returns the check row to add for the
/// ring's current version, if there is none yet.
pub(crate) fn verify_keyring(
    keyring: &Keyring,
    checks: &[SecretRow],
    evidence: &[SecretRow],
) -> Result<Option<Sealed>, StoreError> {
    let mut verified = false;
    for row in checks.iter().chain(evidence) {
        let sealed = row.sealed()?;
        if !keyring.has_version(sealed.key_version) {
            continue;
        }
        let plain = keyring.open(&sealed, &row.aad()).map_err(|_| StoreError::WrongKey)?;
        if row.owner_kind == "keyring" && plain.as_slice() != KEY_CHECK {
            return Err(StoreError::WrongKey);
        }
        verified = true;
    }
    let anything_to_verify = !checks.is_empty() || !evidence.is_empty();
    if anything_to_verify && !verified {
        // None of the ring's key versions was ever used here.
        return Err(StoreError::WrongKey);
    }
    let current = keyring.current_version();
    if checks.iter().any(|row| row.key_version == i64::from(current)) {
        return Ok(None);
    }
    Ok(Some(keyring.seal(KEY_CHECK, &aad("keyring", "check", &current.to_string()))))
}
