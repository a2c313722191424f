//! Master-key rotation, the same on both backends: what a store reports about the key versions
//! in use, and the outcome of re-sealing every secret row under the current key.
//!
//! Re-sealing goes through the `secrets` table in key order, a batch per transaction, and
//! writes each row back only if it still holds the sealed value that was read (same key version
//! and nonce, and every seal draws a fresh nonce): a row a running instance changed meanwhile
//! keeps that instance's value, and is counted instead. Re-running after an interruption simply
//! carries on, because rows already under the current version are not selected again.

/// Which secret row: its owner and field. Names only, never a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRowKey {
    /// `connection`, `integration`, `script_storage` or `oauth_state`.
    pub owner_kind: String,
    /// The owner's id (for an OAuth state, the hash of the state).
    pub owner_id: String,
    /// The field.
    pub field: String,
}

impl std::fmt::Display for SecretRowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} field {}", self.owner_kind, self.owner_id, self.field)
    }
}

/// One master-key version as the database and this process see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    /// The version.
    pub version: u32,
    /// Whether it is the version this process seals new values with.
    pub current: bool,
    /// Whether this process holds its key.
    pub key_given: bool,
    /// Whether the database keeps a key check for it (it is not retired).
    pub checked: bool,
    /// How many secret rows are sealed with it.
    pub rows: u64,
}

/// What one [`KeyAdmin::reseal_batch`](crate::KeyAdmin::reseal_batch) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealBatch {
    /// Rows written back under the current key version.
    pub resealed: u64,
    /// Rows changed or deleted by another writer between the read and the write (left as that
    /// writer left them).
    pub changed_concurrently: u64,
    /// Rows sealed with a version whose key this process does not hold.
    pub without_key: u64,
    /// Rows whose key is held but which do not open (altered or moved ciphertext).
    pub unreadable: Vec<SecretRowKey>,
    /// The last row looked at, to continue after; `None` when there was nothing left.
    pub last: Option<SecretRowKey>,
}

/// The outcome of [`KeyAdmin::rotate_keys`](crate::KeyAdmin::rotate_keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// The version every row was re-sealed under.
    pub current_version: u32,
    /// Rows re-sealed.
    pub resealed: u64,
    /// Rows another writer changed meanwhile (each pass picks up those still on an old
    /// version; see [`RotationReport::rows_on_old_versions`]).
    pub changed_concurrently: u64,
    /// Rows left on versions whose key was not given, in the last pass.
    pub without_key: u64,
    /// Rows that did not open, in the last pass.
    pub unreadable: Vec<SecretRowKey>,
    /// Every key version afterwards.
    pub versions: Vec<KeyVersion>,
}

impl RotationReport {
    /// Rows still sealed with a version other than the current one. When zero, the old
    /// versions can be retired ([`KeyAdmin::retire_old_keys`](crate::KeyAdmin::retire_old_keys)).
    pub fn rows_on_old_versions(&self) -> u64 {
        self.versions.iter().filter(|v| !v.current).map(|v| v.rows).sum()
    }
}

/// How many times [`KeyAdmin::rotate_keys`](crate::KeyAdmin::rotate_keys) goes through the table
/// when running instances keep changing rows under it.
pub(crate) const MAX_PASSES: usize = 3;

/// Builds the per-version view from the database's counts, its key checks and the keyring.
pub(crate) fn key_versions(
    keyring: &crate::Keyring,
    rows_per_version: &[(i64, i64)],
    checked: &[i64],
) -> Vec<KeyVersion> {
    let mut versions: std::collections::BTreeMap<u32, KeyVersion> = Default::default();
    fn entry<'a>(
        versions: &'a mut std::collections::BTreeMap<u32, KeyVersion>,
        keyring: &crate::Keyring,
        version: i64,
    ) -> &'a mut KeyVersion {
        // Versions are written from a u32; anything else would be a hand-edited row.
        let version = u32::try_from(version).unwrap_or(u32::MAX);
        versions.entry(version).or_insert_with(|| KeyVersion {
            version,
            current: version == keyring.current_version(),
            key_given: keyring.has_version(version),
            checked: false,
            rows: 0,
        })
    }
    for &(version, rows) in rows_per_version {
        entry(&mut versions, keyring, version).rows = u64::try_from(rows).unwrap_or(0);
    }
    for &version in checked {
        entry(&mut versions, keyring, version).checked = true;
    }
    for version in keyring.versions() {
        entry(&mut versions, keyring, i64::from(version));
    }
    versions.into_values().collect()
}
