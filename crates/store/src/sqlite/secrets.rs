//! The `secrets` and `keyring_check` tables: sealing each secret field into its own row, opening
//! rows again, and checking at start-up that the keyring is the one the database was sealed with.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};

use crate::StoreError;
use crate::crypto::{CryptoError, Keyring, NONCE_LEN, Sealed, aad};

/// The plaintext sealed into `keyring_check` for each key version.
const KEY_CHECK: &[u8] = b"latchkey keyring check";

/// One row of `secrets` (or of `keyring_check`, shaped alike).
#[derive(Debug)]
pub(super) struct SecretRow {
    pub owner_kind: String,
    pub owner_id: String,
    pub field: String,
    pub key_version: i64,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SecretRow {
    /// Reads `owner_kind, owner_id, field, key_version, nonce, ciphertext`.
    pub fn from_row(row: &SqliteRow) -> Result<Self, StoreError> {
        Ok(Self {
            owner_kind: row.try_get("owner_kind")?,
            owner_id: row.try_get("owner_id")?,
            field: row.try_get("field")?,
            key_version: row.try_get("key_version")?,
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
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

/// Verifies the key check of every version the keyring holds, falling back to one stored
/// secret when there is no check row; then records a check for the current version.
pub(super) async fn check_keyring(pool: &SqlitePool, keyring: &Keyring) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let checks: Vec<SecretRow> = sqlx::query(
        "SELECT 'keyring' AS owner_kind, 'check' AS owner_id, CAST(key_version AS TEXT) AS field,
                key_version, nonce, ciphertext
         FROM keyring_check",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(SecretRow::from_row)
    .collect::<Result<_, _>>()?;
    // Without a check row (a database from before the check existed, or one edited by
    // hand), one stored secret serves as the check.
    let evidence = if checks.is_empty() {
        sqlx::query(
            "SELECT owner_kind, owner_id, field, key_version, nonce, ciphertext
             FROM secrets LIMIT 1",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(SecretRow::from_row)
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut verified = false;
    for row in checks.iter().chain(&evidence) {
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
    if !checks.iter().any(|row| row.key_version == i64::from(current)) {
        let sealed = keyring.seal(KEY_CHECK, &check_aad(current));
        sqlx::query("INSERT INTO keyring_check (key_version, nonce, ciphertext) VALUES (?, ?, ?)")
            .bind(i64::from(current))
            .bind(sealed.nonce.as_slice())
            .bind(sealed.ciphertext)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Associated data of the key check for one key version.
fn check_aad(version: u32) -> Vec<u8> {
    aad("keyring", "check", &version.to_string())
}

/// Seals `value` for (kind, id, field) and inserts or replaces its row.
pub(super) async fn write_secret(
    conn: &mut SqliteConnection,
    kind: &str,
    id: &str,
    field: &str,
    value: &Secret,
    keyring: &Keyring,
) -> Result<(), StoreError> {
    let sealed = keyring.seal(value.expose().as_bytes(), &aad(kind, id, field));
    sqlx::query(
        "INSERT INTO secrets (owner_kind, owner_id, field, key_version, nonce, ciphertext)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (owner_kind, owner_id, field) DO UPDATE SET
            key_version = excluded.key_version,
            nonce = excluded.nonce,
            ciphertext = excluded.ciphertext",
    )
    .bind(kind)
    .bind(id)
    .bind(field)
    .bind(i64::from(sealed.key_version))
    .bind(sealed.nonce.as_slice())
    .bind(sealed.ciphertext)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads and opens every secret of `kind`, or only those of one owner.
pub(super) async fn read_secrets(
    conn: &mut SqliteConnection,
    kind: &str,
    id: Option<&str>,
    keyring: &Keyring,
) -> Result<BTreeMap<String, BTreeMap<String, Secret>>, StoreError> {
    let rows = sqlx::query(
        "SELECT owner_kind, owner_id, field, key_version, nonce, ciphertext FROM secrets
         WHERE owner_kind = ?1 AND (?2 IS NULL OR owner_id = ?2)",
    )
    .bind(kind)
    .bind(id)
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<String, BTreeMap<String, Secret>> = BTreeMap::new();
    for row in &rows {
        let row = SecretRow::from_row(row)?;
        let secret = row.open(keyring)?;
        out.entry(row.owner_id).or_default().insert(row.field, secret);
    }
    Ok(out)
}

/// Deletes every secret of one owner.
pub(super) async fn delete_secrets(
    conn: &mut SqliteConnection,
    kind: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM secrets WHERE owner_kind = ? AND owner_id = ?")
        .bind(kind)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
