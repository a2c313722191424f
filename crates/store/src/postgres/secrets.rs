//! The `secrets` and `keyring_check` tables on PostgreSQL: sealing each secret field into its
//! own row, opening rows again, and checking at start-up that the keyring is the one the
//! database was sealed with.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::StoreError;
use crate::crypto::Keyring;
use crate::crypto::Sealed;
use crate::rotation::{KeyVersion, ResealBatch, SecretRowKey, key_versions as versions_view};
use crate::secret_rows::{
    AAD_BOUND, AAD_OWNER, CONNECTION, Keys, Reseal, SecretRow, in_use_error, reseal,
    retired_versions, seal, seal_credential, settle_keyring,
};

/// Finds the keys' versions (or takes the keyring's), verifies the key check of every version
/// the keyring holds, falling back to one stored secret when there is no check row; then
/// records a check for the current version and returns the keyring to use. The table lock
/// makes instances starting at once take turns, so the first one's check is the one the others
/// are held to, and two instances given the same new key agree on its version.
pub(super) async fn check_keyring(
    conn: &mut PgConnection,
    keys: Keys,
) -> Result<Keyring, StoreError> {
    let mut tx = conn.begin().await?;
    sqlx::query("LOCK TABLE keyring_check IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let checks: Vec<SecretRow> = sqlx::query(
        "SELECT 'keyring' AS owner_kind, 'check' AS owner_id, key_version::text AS field,
                key_version, 1::bigint AS aad_version, nonce, ciphertext,
                NULL::text AS bound_connector, NULL::text AS bound_integration,
                NULL::text AS bound_auth_method, NULL::text AS bound_config
         FROM keyring_check",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(SecretRow::from_row)
    .collect::<Result<_, _>>()?;
    let evidence = if checks.is_empty() {
        sqlx::query(concat!(secret_select!(), "LIMIT 1"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(SecretRow::from_row)
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let (keyring, check) = settle_keyring(keys, &checks, &evidence)?;
    if let Some(sealed) = check {
        sqlx::query(
            "INSERT INTO keyring_check (key_version, nonce, ciphertext) VALUES ($1, $2, $3)",
        )
        .bind(i64::from(sealed.key_version))
        .bind(sealed.nonce.as_slice())
        .bind(sealed.ciphertext)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(keyring)
}

/// Seals `value` for (kind, id, field) and inserts or replaces its row, unless its key version
/// was retired meanwhile ([`StoreError::KeyRetired`]). Not for connection credentials, which
/// [`write_credential`] binds to their connection.
pub(super) async fn write_secret(
    conn: &mut PgConnection,
    kind: &str,
    id: &str,
    field: &str,
    value: &Secret,
    keyring: &Keyring,
) -> Result<(), StoreError> {
    let sealed = seal(keyring, kind, id, field, value);
    insert_sealed(conn, kind, id, field, AAD_OWNER, sealed).await
}

/// Seals one credential of connection `id` bound to `binding` (the connection's connector,
/// integration, auth method and config as they are written in the same transaction) and
/// inserts or replaces its row.
pub(super) async fn write_credential(
    conn: &mut PgConnection,
    id: &str,
    field: &str,
    value: &Secret,
    binding: &[u8; 32],
    keyring: &Keyring,
) -> Result<(), StoreError> {
    let sealed = seal_credential(keyring, id, field, binding, value);
    insert_sealed(conn, CONNECTION, id, field, AAD_BOUND, sealed).await
}

/// Inserts or replaces one sealed row, unless its key version was retired meanwhile.
/// A retirement holds a lock on `secrets` that makes this wait, and then see its outcome.
async fn insert_sealed(
    conn: &mut PgConnection,
    kind: &str,
    id: &str,
    field: &str,
    aad_version: i64,
    sealed: Sealed,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "INSERT INTO secrets (owner_kind, owner_id, field, key_version, aad_version, nonce,
            ciphertext)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE EXISTS (SELECT 1 FROM keyring_check WHERE key_version = $4)
         ON CONFLICT (owner_kind, owner_id, field) DO UPDATE SET
            key_version = excluded.key_version,
            aad_version = excluded.aad_version,
            nonce = excluded.nonce,
            ciphertext = excluded.ciphertext",
    )
    .bind(kind)
    .bind(id)
    .bind(field)
    .bind(i64::from(sealed.key_version))
    .bind(aad_version)
    .bind(sealed.nonce.as_slice())
    .bind(sealed.ciphertext)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::KeyRetired { version: sealed.key_version });
    }
    Ok(())
}

/// Reads and opens the credentials of connection `id`, each checked against the binding of
/// the connection row as it is now ([`StoreError::CredentialsUnreadable`] otherwise).
pub(super) async fn read_credentials(
    conn: &mut PgConnection,
    id: &str,
    keyring: &Keyring,
) -> Result<BTreeMap<String, Secret>, StoreError> {
    let rows = sqlx::query(concat!(secret_select!(), "WHERE owner_kind = $1 AND owner_id = $2"))
        .bind(CONNECTION)
        .bind(id)
        .fetch_all(conn)
        .await?;
    let mut out = BTreeMap::new();
    for row in &rows {
        let row = SecretRow::from_row(row)?;
        let secret = row.open_credential(keyring)?;
        out.insert(row.field, secret);
    }
    Ok(out)
}

/// Reads and opens every secret of `kind`, or only those of one owner.
pub(super) async fn read_secrets(
    conn: &mut PgConnection,
    kind: &str,
    id: Option<&str>,
    keyring: &Keyring,
) -> Result<BTreeMap<String, BTreeMap<String, Secret>>, StoreError> {
    let rows = sqlx::query(concat!(
        secret_select!(),
        "WHERE owner_kind = $1 AND ($2::text IS NULL OR owner_id = $2)"
    ))
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
    conn: &mut PgConnection,
    kind: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM secrets WHERE owner_kind = $1 AND owner_id = $2")
        .bind(kind)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Re-seals every connection credential written before credentials were bound to their
/// connection ([`AAD_OWNER`]) with its connection's binding, in one transaction, when the store
/// opens; a row changed meanwhile (compare-and-swap on its nonce) is left to its writer. Rows
/// whose key this process does not hold, or whose connection row is gone, stay as they are and
/// cannot be read as credentials. Returns how many were re-sealed.
pub(super) async fn bind_credentials(
    conn: &mut PgConnection,
    keyring: &Keyring,
) -> Result<u64, StoreError> {
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(concat!(secret_select!(), "WHERE owner_kind = $1 AND aad_version = $2"))
        .bind(CONNECTION)
        .bind(AAD_OWNER)
        .fetch_all(&mut *tx)
        .await?;
    let (mut bound, mut left) = (0u64, 0u64);
    for row in &rows {
        let row = SecretRow::from_row(row)?;
        let Some(sealed) = row.bound_upgrade(keyring) else {
            left += 1;
            continue;
        };
        let done = sqlx::query(
            "UPDATE secrets SET key_version = $1, aad_version = $2, nonce = $3, ciphertext = $4
             WHERE owner_kind = $5 AND owner_id = $6 AND field = $7 AND aad_version = $8
                AND nonce = $9",
        )
        .bind(i64::from(sealed.key_version))
        .bind(AAD_BOUND)
        .bind(sealed.nonce.as_slice())
        .bind(sealed.ciphertext)
        .bind(&row.owner_kind)
        .bind(&row.owner_id)
        .bind(&row.field)
        .bind(AAD_OWNER)
        .bind(row.nonce())
        .execute(&mut *tx)
        .await?;
        bound += done.rows_affected();
    }
    tx.commit().await?;
    if bound > 0 {
        tracing::info!(rows = bound, "bound stored credentials to their connections");
    }
    if left > 0 {
        tracing::warn!(
            rows = left,
            "connection credentials sealed before binding could not be bound (key not given, \
             connection missing, or unreadable); they are refused until re-authorised"
        );
    }
    Ok(bound)
}

/// [`Store::key_versions`](crate::Store::key_versions) on PostgreSQL, from one snapshot.
pub(super) async fn key_versions(
    conn: &mut PgConnection,
    keyring: &Keyring,
) -> Result<Vec<KeyVersion>, StoreError> {
    let mut tx = conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT key_version, COUNT(*) FROM secrets GROUP BY key_version")
            .fetch_all(&mut *tx)
            .await?;
    let checked: Vec<i64> =
        sqlx::query_scalar("SELECT key_version FROM keyring_check").fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(versions_view(keyring, &rows, &checked))
}

/// [`Store::reseal_batch`](crate::Store::reseal_batch) on PostgreSQL: one READ COMMITTED
/// transaction whose compare-and-swap `UPDATE`s re-check a row that a concurrent writer
/// changed against its committed value, and so leave it alone.
pub(super) async fn reseal_batch(
    conn: &mut PgConnection,
    keyring: &Keyring,
    after: Option<&SecretRowKey>,
    limit: u32,
) -> Result<ResealBatch, StoreError> {
    let after = after.cloned().unwrap_or_else(|| SecretRowKey {
        owner_kind: String::new(),
        owner_id: String::new(),
        field: String::new(),
    });
    let current = i64::from(keyring.current_version());
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(concat!(
        secret_select!(),
        "WHERE key_version <> $1 AND (owner_kind, owner_id, field) > ($2, $3, $4)
         ORDER BY owner_kind, owner_id, field LIMIT $5",
    ))
    .bind(current)
    .bind(&after.owner_kind)
    .bind(&after.owner_id)
    .bind(&after.field)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let mut batch = ResealBatch::default();
    for row in &rows {
        let row = SecretRow::from_row(row)?;
        batch.last = Some(row.key());
        let sealed = match reseal(&row, keyring) {
            Reseal::Sealed(sealed) => sealed,
            Reseal::NoKey => {
                batch.without_key += 1;
                continue;
            }
            Reseal::Unreadable => {
                batch.unreadable.push(row.key());
                continue;
            }
        };
        let done = sqlx::query(
            "UPDATE secrets SET key_version = $1, nonce = $2, ciphertext = $3
             WHERE owner_kind = $4 AND owner_id = $5 AND field = $6 AND key_version = $7
                AND nonce = $8",
        )
        .bind(i64::from(sealed.key_version))
        .bind(sealed.nonce.as_slice())
        .bind(sealed.ciphertext)
        .bind(&row.owner_kind)
        .bind(&row.owner_id)
        .bind(&row.field)
        .bind(row.key_version)
        .bind(row.nonce())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            batch.resealed += 1;
        } else {
            batch.changed_concurrently += 1;
        }
    }
    tx.commit().await?;
    Ok(batch)
}

/// [`Store::retire_old_keys`](crate::Store::retire_old_keys) on PostgreSQL. `secrets` is
/// locked against writes for the moment it takes, so no instance can seal a row with a version
/// between the check that none uses it and the drop of its key check.
pub(super) async fn retire_old_keys(
    conn: &mut PgConnection,
    keyring: &Keyring,
) -> Result<Vec<u32>, StoreError> {
    let current = i64::from(keyring.current_version());
    let mut tx = conn.begin().await?;
    sqlx::query("LOCK TABLE keyring_check IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    sqlx::query("LOCK TABLE secrets IN SHARE MODE").execute(&mut *tx).await?;
    let own: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM keyring_check WHERE key_version = $1)")
            .bind(current)
            .fetch_one(&mut *tx)
            .await?;
    if !own {
        return Err(StoreError::KeyRetired { version: keyring.current_version() });
    }
    let in_use: Option<(i64, i64)> = sqlx::query_as(
        "SELECT key_version, COUNT(*) FROM secrets WHERE key_version < $1
         GROUP BY key_version ORDER BY key_version LIMIT 1",
    )
    .bind(current)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((version, rows)) = in_use {
        return Err(in_use_error(version, rows));
    }
    let retired: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM keyring_check WHERE key_version < $1 RETURNING key_version",
    )
    .bind(current)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(retired_versions(retired))
}
