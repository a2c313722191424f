//! The `secrets` and `keyring_check` tables on SQLite: sealing each secret field into its own
//! row, opening rows again, and checking at start-up that the keyring is the one the database
//! was sealed with.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::StoreError;
use crate::crypto::Keyring;
use crate::secret_rows::{SecretRow, seal, verify_keyring};

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
    if let Some(sealed) = verify_keyring(keyring, &checks, &evidence)? {
        sqlx::query("INSERT INTO keyring_check (key_version, nonce, ciphertext) VALUES (?, ?, ?)")
            .bind(i64::from(sealed.key_version))
            .bind(sealed.nonce.as_slice())
            .bind(sealed.ciphertext)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
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
    let sealed = seal(keyring, kind, id, field, value);
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
