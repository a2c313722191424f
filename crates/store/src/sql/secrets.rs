//! The `secrets` and `keyring_check` tables: sealing each secret field into its own row, opening
//! rows again, and checking at start-up that the keyring is the one the database was sealed
//! with.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::Connection as _;

use super::{Dialect, SqlStore, sql};
use crate::StoreError;
use crate::crypto::{Keyring, Sealed};
use crate::secret_rows::{
    AAD_BOUND, AAD_OWNER, CONNECTION, Keys, SecretRow, seal, seal_credential, settle_keyring,
};

/// Finds the keys' versions (or takes the keyring's), verifies the key check of every version
/// the keyring holds, falling back to one stored secret when there is no check row; then
/// records a check for the current version and returns the keyring to use. Instances starting
/// at once take turns ([`Dialect::LOCK_KEY_CHECKS`]), so the first one's check is the one the
/// others are held to, and two instances given the same new key agree on its version.
pub(super) async fn check_keyring<D: Dialect>(
    conn: &mut D::Connection,
    keys: Keys,
) -> Result<Keyring, StoreError> {
    let mut tx = conn.begin_with(D::BEGIN_WRITE).await?;
    for lock in D::LOCK_KEY_CHECKS {
        sql::<D>(*lock).execute(&mut tx).await?;
    }
    let checks: Vec<SecretRow> = sql::<D>(
        "SELECT 'keyring' AS owner_kind, 'check' AS owner_id, CAST(key_version AS TEXT) AS field,
                key_version, CAST(1 AS BIGINT) AS aad_version, nonce, ciphertext,
                CAST(NULL AS TEXT) AS bound_connector, CAST(NULL AS TEXT) AS bound_integration,
                CAST(NULL AS TEXT) AS bound_auth_method, CAST(NULL AS TEXT) AS bound_config
         FROM keyring_check",
    )
    .fetch_all(&mut tx)
    .await?
    .iter()
    .map(SecretRow::from_row)
    .collect::<Result<_, _>>()?;
    let evidence = if checks.is_empty() {
        sql::<D>(concat!(secret_select!(), "LIMIT 1"))
            .fetch_all(&mut tx)
            .await?
            .iter()
            .map(SecretRow::from_row)
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let (keyring, check) = settle_keyring(keys, &checks, &evidence)?;
    if let Some(sealed) = check {
        sql::<D>("INSERT INTO keyring_check (key_version, nonce, ciphertext) VALUES ($1, $2, $3)")
            .bind(i64::from(sealed.key_version))
            .bind(sealed.nonce.as_slice())
            .bind(sealed.ciphertext)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(keyring)
}

/// Re-seals every connection credential written before credentials were bound to their
/// connection ([`AAD_OWNER`]) with its connection's binding, in one transaction, when the store
/// opens; a row changed meanwhile (compare-and-swap on its nonce) is left to its writer. Rows
/// whose key this process does not hold, or whose connection row is gone, stay as they are and
/// cannot be read as credentials. Returns how many were re-sealed.
pub(super) async fn bind_credentials<D: Dialect>(
    conn: &mut D::Connection,
    keyring: &Keyring,
) -> Result<u64, StoreError> {
    let mut tx = conn.begin_with(D::BEGIN_WRITE).await?;
    // Literals (`CONNECTION`, `AAD_OWNER`), not parameters, so that both planners see the
    // partial index `secrets_unbound` applies (its condition is `aad_version = 1`).
    const _: () = assert!(AAD_OWNER == 1);
    let rows =
        sql::<D>(concat!(secret_select!(), "WHERE owner_kind = 'connection' AND aad_version = 1"))
            .fetch_all(&mut tx)
            .await?;
    let (mut bound, mut left) = (0u64, 0u64);
    for row in &rows {
        let row = SecretRow::from_row(row)?;
        let Some(sealed) = row.bound_upgrade(keyring) else {
            left += 1;
            continue;
        };
        bound += sql::<D>(
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
        .execute(&mut tx)
        .await?;
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

impl<D: Dialect> SqlStore<D> {
    /// Seals `value` for (kind, id, field) and inserts or replaces its row, unless its key
    /// version was retired meanwhile ([`StoreError::KeyRetired`]). Not for connection
    /// credentials, which [`SqlStore::write_credential`] binds to their connection.
    pub(super) async fn write_secret(
        &self,
        conn: &mut D::Connection,
        kind: &str,
        id: &str,
        field: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        let sealed = seal(&self.keyring, kind, id, field, value);
        insert_sealed::<D>(conn, kind, id, field, AAD_OWNER, sealed).await
    }

    /// Seals one credential of connection `id` bound to `binding` (the connection's connector,
    /// integration, auth method and config as they are written in the same transaction) and
    /// inserts or replaces its row.
    pub(super) async fn write_credential(
        &self,
        conn: &mut D::Connection,
        id: &str,
        field: &str,
        value: &Secret,
        binding: &[u8; 32],
    ) -> Result<(), StoreError> {
        let sealed = seal_credential(&self.keyring, id, field, binding, value);
        insert_sealed::<D>(conn, CONNECTION, id, field, AAD_BOUND, sealed).await
    }

    /// Reads and opens the credentials of connection `id`, each checked against the binding
    /// of the connection row as it is now ([`StoreError::CredentialsUnreadable`] otherwise).
    pub(super) async fn read_credentials(
        &self,
        conn: &mut D::Connection,
        id: &str,
    ) -> Result<BTreeMap<String, Secret>, StoreError> {
        let rows = sql::<D>(concat!(secret_select!(), "WHERE owner_kind = $1 AND owner_id = $2"))
            .bind(CONNECTION)
            .bind(id)
            .fetch_all(conn)
            .await?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let row = SecretRow::from_row(row)?;
            let secret = row.open_credential(&self.keyring)?;
            out.insert(row.field, secret);
        }
        Ok(out)
    }

    /// Reads and opens every secret of `kind`, or only those of one owner.
    pub(super) async fn read_secrets(
        &self,
        conn: &mut D::Connection,
        kind: &str,
        id: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Secret>>, StoreError> {
        let rows = sql::<D>(concat!(
            secret_select!(),
            "WHERE owner_kind = $1 AND (CAST($2 AS TEXT) IS NULL OR owner_id = $2)"
        ))
        .bind(kind)
        .bind(id)
        .fetch_all(conn)
        .await?;
        let mut out: BTreeMap<String, BTreeMap<String, Secret>> = BTreeMap::new();
        for row in &rows {
            let row = SecretRow::from_row(row)?;
            let secret = row.open(&self.keyring)?;
            out.entry(row.owner_id).or_default().insert(row.field, secret);
        }
        Ok(out)
    }
}

/// Inserts or replaces one sealed row, unless its key version was retired meanwhile. A
/// retirement holds what [`Dialect::LOCK_FOR_RETIREMENT`] takes, so this waits for it and then
/// sees its outcome.
async fn insert_sealed<D: Dialect>(
    conn: &mut D::Connection,
    kind: &str,
    id: &str,
    field: &str,
    aad_version: i64,
    sealed: Sealed,
) -> Result<(), StoreError> {
    let written = sql::<D>(
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
    if written == 0 {
        return Err(StoreError::KeyRetired { version: sealed.key_version });
    }
    Ok(())
}

/// Deletes every secret of one owner.
pub(super) async fn delete_secrets<D: Dialect>(
    conn: &mut D::Connection,
    kind: &str,
    id: &str,
) -> Result<(), StoreError> {
    sql::<D>("DELETE FROM secrets WHERE owner_kind = $1 AND owner_id = $2")
        .bind(kind)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes one secret of one owner, if it is there.
pub(super) async fn delete_secret<D: Dialect>(
    conn: &mut D::Connection,
    kind: &str,
    id: &str,
    field: &str,
) -> Result<(), StoreError> {
    sql::<D>("DELETE FROM secrets WHERE owner_kind = $1 AND owner_id = $2 AND field = $3")
        .bind(kind)
        .bind(id)
        .bind(field)
        .execute(conn)
        .await?;
    Ok(())
}
