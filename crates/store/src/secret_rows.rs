//! Rows of the `secrets` and `keyring_check` tables, the same on both backends: who owns a
//! sealed value, opening it, and the start-up verdict on whether a keyring fits the database.
//!
//! A row says which associated data its value was sealed with (`aad_version`): 1 binds owner
//! kind, id and field ([`aad`]); 2, used for every connection credential, also binds the
//! digest of the connection's connector, integration, auth method and config
//! ([`connection_binding`]), read from the `connections` row in the same statement.

use std::collections::BTreeMap;

use latchkey_core::Secret;

use crate::StoreError;
use crate::crypto::{
    CryptoError, Keyring, MasterKey, MasterKeys, NONCE_LEN, Sealed, aad, bound_aad,
    connection_binding,
};
use crate::model::ConnectionRecord;
use crate::rotation::SecretRowKey;
use crate::rows::Columns;

/// Owner kind of a connection's credential fields.
pub(crate) const CONNECTION: &str = "connection";
/// Owner kind of an integration's client secret.
pub(crate) const INTEGRATION: &str = "integration";

/// The owner id of an integration's secrets: its id in the `default` environment (as before
/// environments existed, so older rows open unchanged), `{environment}/{id}` elsewhere — ids
/// have no `/`, so the two forms never meet.
pub(crate) fn integration_owner(environment: &str, id: &str) -> String {
    if environment == "default" { id.to_owned() } else { format!("{environment}/{id}") }
}
/// Owner kind of an environment's webhook secret.
pub(crate) const ENVIRONMENT: &str = "environment";
/// The field of an environment's webhook secret.
pub(crate) const WEBHOOK_SECRET: &str = "webhook_secret";
/// The field of the webhook secret an environment's last rotation replaced.
pub(crate) const WEBHOOK_PREVIOUS_SECRET: &str = "webhook_previous_secret";
/// Owner kind of the values connector scripts store per connection.
pub(crate) const SCRIPT_STORAGE: &str = "script_storage";
/// Owner kind of an OAuth authorization request's PKCE verifier.
pub(crate) const OAUTH_STATE: &str = "oauth_state";
/// Owner kind of the audit log's chain key (owner id [`AUDIT_CHAIN`], field [`AUDIT_KEY`]).
pub(crate) const AUDIT: &str = "audit";
/// Owner id of the audit log's chain key.
pub(crate) const AUDIT_CHAIN: &str = "chain";
/// Field of the audit log's chain key: 32 random bytes as base64.
pub(crate) const AUDIT_KEY: &str = "hmac_key";
/// The field of an integration's client secret.
pub(crate) const CLIENT_SECRET: &str = "client_secret";
/// The field of an OAuth state's PKCE verifier.
pub(crate) const PKCE_VERIFIER: &str = "pkce_verifier";

/// The plaintext sealed into `keyring_check` for each key version.
const KEY_CHECK: &[u8] = b"latchkey keyring check";

/// `aad_version` of a value sealed with [`aad`] (owner kind, id and field).
pub(crate) const AAD_OWNER: i64 = 1;
/// `aad_version` of a connection credential sealed with [`bound_aad`] (also the binding).
pub(crate) const AAD_BOUND: i64 = 2;

/// One row of `secrets` (or of `keyring_check`, selected in the same shape), with the binding
/// of the connection it belongs to, if it is a connection credential whose connection exists.
#[derive(Debug)]
pub(crate) struct SecretRow {
    pub owner_kind: String,
    pub owner_id: String,
    pub field: String,
    pub key_version: i64,
    /// Which associated data the value was sealed with ([`AAD_OWNER`] or [`AAD_BOUND`]).
    pub aad_version: i64,
    /// [`connection_binding`] of the joined connection row, when there is one that decodes.
    binding: Option<[u8; 32]>,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// The binding of a connection record as it is about to be written.
pub(crate) fn record_binding(c: &ConnectionRecord) -> [u8; 32] {
    connection_binding(&c.connector, c.integration.as_deref(), &c.auth_method, &c.config)
}

impl SecretRow {
    /// Reads a row selected by `secret_select!` (or in its shape): `owner_kind, owner_id,
    /// field, key_version, aad_version, nonce, ciphertext` and the joined connection's
    /// `bound_connector, bound_integration, bound_auth_method, bound_config`.
    pub fn from_row(row: &impl Columns) -> Result<Self, StoreError> {
        let binding = match (row.opt_text("bound_connector")?, row.opt_text("bound_config")?) {
            (Some(connector), Some(config)) => {
                // A config that does not decode binds nothing, so the credential does not open.
                match serde_json::from_str::<BTreeMap<String, String>>(&config) {
                    Ok(config) => Some(connection_binding(
                        &connector,
                        row.opt_text("bound_integration")?.as_deref(),
                        &row.opt_text("bound_auth_method")?.unwrap_or_default(),
                        &config,
                    )),
                    Err(_) => None,
                }
            }
            _ => None,
        };
        Ok(Self {
            owner_kind: row.text("owner_kind")?,
            owner_id: row.text("owner_id")?,
            field: row.text("field")?,
            key_version: row.int("key_version")?,
            aad_version: row.int("aad_version")?,
            binding,
            nonce: row.bytes("nonce")?,
            ciphertext: row.bytes("ciphertext")?,
        })
    }

    /// Which row this is.
    pub fn key(&self) -> SecretRowKey {
        SecretRowKey {
            owner_kind: self.owner_kind.clone(),
            owner_id: self.owner_id.clone(),
            field: self.field.clone(),
        }
    }

    /// The stored nonce, as it is in the database (the compare-and-swap of a re-seal checks it).
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// The associated data this row's value must have been sealed with.
    pub fn aad(&self) -> Result<Vec<u8>, CryptoError> {
        match self.aad_version {
            AAD_OWNER => Ok(aad(&self.owner_kind, &self.owner_id, &self.field)),
            AAD_BOUND => {
                let binding = self
                    .binding
                    .as_ref()
                    .ok_or(CryptoError::Malformed("its connection row is missing or unreadable"))?;
                Ok(bound_aad(&self.owner_kind, &self.owner_id, &self.field, binding))
            }
            _ => Err(CryptoError::Malformed("unknown associated-data version")),
        }
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
            let plain = keyring.open(&sealed, &self.aad()?)?;
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

    /// Opens a connection credential: only a value sealed with the connection's binding
    /// ([`AAD_BOUND`]) is accepted, so an edit of the connection's connector, integration, auth
    /// method or config, or an unbound value put in its place, makes it fail closed with
    /// [`StoreError::CredentialsUnreadable`].
    pub fn open_credential(&self, keyring: &Keyring) -> Result<Secret, StoreError> {
        let unreadable = |reason| StoreError::CredentialsUnreadable {
            connection: self.owner_id.clone(),
            field: self.field.clone(),
            reason,
        };
        if self.owner_kind != CONNECTION || self.aad_version != AAD_BOUND {
            let reason = CryptoError::Malformed("not sealed with its connection's binding");
            tracing::warn!(
                connection = %self.owner_id,
                field = %self.field,
                aad_version = self.aad_version,
                "a stored credential is not bound to its connection and is refused"
            );
            return Err(unreadable(reason));
        }
        self.open(keyring).map_err(|error| match error {
            StoreError::Crypto(reason) => unreadable(reason),
            other => other,
        })
    }

    /// A connection credential sealed with the owner-only associated data (written before
    /// credentials were bound to their connection), opened and sealed again with its
    /// connection's binding; `None` if it is not such a row, its connection row is missing, or
    /// it does not open.
    pub fn bound_upgrade(&self, keyring: &Keyring) -> Option<Sealed> {
        if self.owner_kind != CONNECTION || self.aad_version != AAD_OWNER {
            return None;
        }
        let binding = self.binding.as_ref()?;
        let secret = self.open(keyring).ok()?;
        Some(keyring.seal(
            secret.expose().as_bytes(),
            &bound_aad(&self.owner_kind, &self.owner_id, &self.field, binding),
        ))
    }
}

/// Seals a connection credential with the connection's binding ([`AAD_BOUND`]).
pub(crate) fn seal_credential(
    keyring: &Keyring,
    id: &str,
    field: &str,
    binding: &[u8; 32],
    value: &Secret,
) -> Sealed {
    keyring.seal(value.expose().as_bytes(), &bound_aad(CONNECTION, id, field, binding))
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
        let plain = keyring.open(&sealed, &row.aad()?).map_err(|_| StoreError::WrongKey)?;
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

/// The keys a store is opened with: a keyring whose versions the caller knows, or keys as an
/// operator gives them, whose versions the database's key checks decide.
#[derive(Debug)]
pub enum Keys {
    /// Versions given by the caller ([`Keyring::new`], [`Keyring::with_key`]).
    Versioned(Keyring),
    /// Versions found by matching the key checks (see [`MasterKeys`]).
    Unversioned(MasterKeys),
}

impl From<Keyring> for Keys {
    fn from(keyring: Keyring) -> Self {
        Self::Versioned(keyring)
    }
}

impl From<MasterKeys> for Keys {
    fn from(keys: MasterKeys) -> Self {
        Self::Unversioned(keys)
    }
}

/// The start-up decision on both backends, inside the transaction that read `checks` and
/// `evidence` (see [`verify_keyring`]): the keyring to use, and the check row to add for its
/// current version, if there is none yet.
pub(crate) fn settle_keyring(
    keys: Keys,
    checks: &[SecretRow],
    evidence: &[SecretRow],
) -> Result<(Keyring, Option<Sealed>), StoreError> {
    let keyring = match keys {
        Keys::Versioned(keyring) => keyring,
        Keys::Unversioned(keys) => resolve_versions(keys, checks, evidence)?,
    };
    let newest = checks.iter().map(|row| row.key_version).max();
    if let Some(newest) = newest.filter(|n| *n > i64::from(keyring.current_version())) {
        tracing::warn!(
            key_version = keyring.current_version(),
            newest_key_version = newest,
            "this process seals with an older master key than the newest one in the database; \
             restart it with the newest key as LATCHKEY_MASTER_KEY and this one as \
             LATCHKEY_MASTER_KEY_PREVIOUS"
        );
    }
    let check = verify_keyring(&keyring, checks, evidence)?;
    Ok((keyring, check))
}

/// The version a key has in this database: the one whose key check (or, without checks, whose
/// stored secret) it opens.
fn version_opened_by(
    key: &MasterKey,
    checks: &[SecretRow],
    evidence: &[SecretRow],
) -> Result<Option<u32>, StoreError> {
    for row in checks.iter().chain(evidence) {
        let sealed = row.sealed()?;
        let Ok(aad) = row.aad() else { continue };
        let Ok(plain) = key.open_as_any_version(&sealed, &aad) else { continue };
        if row.owner_kind != "keyring" || plain.as_slice() == KEY_CHECK {
            return Ok(Some(sealed.key_version));
        }
    }
    Ok(None)
}

/// Gives each key its version. The current key keeps the version whose check it opens; on an
/// empty database it is version 1; otherwise it is a new key, version highest + 1, allowed only
/// when a previous key proves it may open this database. Previous keys that open nothing here
/// are not needed (e.g. retired already) and are left out with a warning.
fn resolve_versions(
    keys: MasterKeys,
    checks: &[SecretRow],
    evidence: &[SecretRow],
) -> Result<Keyring, StoreError> {
    let current = version_opened_by(&keys.current, checks, evidence)?;
    let previous = keys
        .previous
        .iter()
        .map(|key| version_opened_by(key, checks, evidence))
        .collect::<Result<Vec<_>, _>>()?;
    let newest = checks.iter().chain(evidence).map(|row| row.key_version).max();
    let current = match (current, newest) {
        (Some(version), _) => version,
        (None, None) => 1,
        (None, Some(newest)) if previous.iter().any(Option::is_some) => {
            let version = u32::try_from(newest.saturating_add(1))
                .map_err(|_| StoreError::Database("key version out of range".into()))?;
            tracing::info!(
                key_version = version,
                "a new master key was given; it seals new values"
            );
            version
        }
        (None, Some(_)) => return Err(StoreError::WrongKey),
    };
    let mut keyring = Keyring::new(current, keys.current);
    for (n, (key, version)) in keys.previous.into_iter().zip(previous).enumerate() {
        match version {
            Some(version) => keyring = keyring.with_key(version, key),
            None => tracing::warn!(
                previous_key = n + 1,
                "a previous master key opens no key version of this database and is not needed"
            ),
        }
    }
    Ok(keyring)
}

/// What re-sealing one row under the current key comes to, before it is written.
pub(crate) enum Reseal {
    /// The row, opened and sealed again with the current key.
    Sealed(Sealed),
    /// The row's key version is not in the keyring.
    NoKey,
    /// The keyring holds its version but the value does not open (logged with its owner).
    Unreadable,
}

/// Opens `row` and seals its value again with the keyring's current key, same owner and field.
pub(crate) fn reseal(row: &SecretRow, keyring: &Keyring) -> Reseal {
    let Ok(version) = u32::try_from(row.key_version) else { return Reseal::Unreadable };
    if !keyring.has_version(version) {
        return Reseal::NoKey;
    }
    let (Ok(secret), Ok(aad)) = (row.open(keyring), row.aad()) else {
        return Reseal::Unreadable;
    };
    Reseal::Sealed(keyring.seal(secret.expose().as_bytes(), &aad))
}

/// [`StoreError::KeyInUse`] from a `(key_version, rows)` count.
pub(crate) fn in_use_error(version: i64, rows: i64) -> StoreError {
    StoreError::KeyInUse {
        version: u32::try_from(version).unwrap_or(u32::MAX),
        rows: u64::try_from(rows).unwrap_or(0),
    }
}

/// The versions a retirement dropped, sorted.
pub(crate) fn retired_versions(versions: Vec<i64>) -> Vec<u32> {
    let mut out: Vec<u32> = versions.into_iter().filter_map(|v| u32::try_from(v).ok()).collect();
    out.sort_unstable();
    out
}
