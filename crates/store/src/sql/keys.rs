//! [`KeyAdmin`]: the master-key versions a database uses, re-sealing rows under the current
//! one, and retiring the older ones (see [`rotation`](crate::rotation)).

use super::{Dialect, SqlStore, sql};
use crate::rotation::{KeyVersion, ResealBatch, SecretRowKey, key_versions as versions_view};
use crate::rows::Columns as _;
use crate::secret_rows::{Reseal, SecretRow, in_use_error, reseal, retired_versions};
use crate::{KeyAdmin, StoreError};

#[async_trait::async_trait]
impl<D: Dialect> KeyAdmin for SqlStore<D> {
    async fn key_versions(&self) -> Result<Vec<KeyVersion>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let rows = sql::<D>("SELECT key_version, COUNT(*) AS n FROM secrets GROUP BY key_version")
            .fetch_all(&mut tx)
            .await?
            .iter()
            .map(|row| Ok((row.int("key_version")?, row.int("n")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let checked = sql::<D>("SELECT key_version FROM keyring_check")
            .fetch_all(&mut tx)
            .await?
            .iter()
            .map(|row| row.int("key_version"))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(versions_view(&self.keyring, &rows, &checked))
    }

    /// One write transaction whose compare-and-swap `UPDATE`s leave alone a row a concurrent
    /// writer changed (on PostgreSQL, READ COMMITTED re-checks it against its committed value;
    /// on SQLite, no writer slips between the read and the swap).
    async fn reseal_batch(
        &self,
        after: Option<&SecretRowKey>,
        limit: u32,
    ) -> Result<ResealBatch, StoreError> {
        let after = after.cloned().unwrap_or_else(|| SecretRowKey {
            owner_kind: String::new(),
            owner_id: String::new(),
            field: String::new(),
        });
        let current = i64::from(self.keyring.current_version());
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let rows = sql::<D>(concat!(
            secret_select!(),
            "WHERE key_version <> $1 AND (owner_kind, owner_id, field) > ($2, $3, $4)
             ORDER BY owner_kind, owner_id, field LIMIT $5",
        ))
        .bind(current)
        .bind(&after.owner_kind)
        .bind(&after.owner_id)
        .bind(&after.field)
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        let mut batch = ResealBatch::default();
        for row in &rows {
            let row = SecretRow::from_row(row)?;
            batch.last = Some(row.key());
            let sealed = match reseal(&row, &self.keyring) {
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
            let swapped = sql::<D>(
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
            .execute(&mut tx)
            .await?;
            if swapped == 1 {
                batch.resealed += 1;
            } else {
                batch.changed_concurrently += 1;
            }
        }
        tx.commit().await?;
        Ok(batch)
    }

    async fn retire_old_keys(&self) -> Result<Vec<u32>, StoreError> {
        let current = i64::from(self.keyring.current_version());
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        for lock in D::LOCK_FOR_RETIREMENT {
            sql::<D>(*lock).execute(&mut tx).await?;
        }
        let own =
            sql::<D>("SELECT EXISTS (SELECT 1 FROM keyring_check WHERE key_version = $1) AS found")
                .bind(current)
                .fetch_one(&mut tx)
                .await?
                .flag("found")?;
        if !own {
            return Err(StoreError::KeyRetired { version: self.keyring.current_version() });
        }
        let in_use = sql::<D>(
            "SELECT key_version, COUNT(*) AS n FROM secrets WHERE key_version < $1
             GROUP BY key_version ORDER BY key_version LIMIT 1",
        )
        .bind(current)
        .fetch_optional(&mut tx)
        .await?;
        if let Some(row) = in_use {
            return Err(in_use_error(row.int("key_version")?, row.int("n")?));
        }
        let retired =
            sql::<D>("DELETE FROM keyring_check WHERE key_version < $1 RETURNING key_version")
                .bind(current)
                .fetch_all(&mut tx)
                .await?
                .iter()
                .map(|row| row.int("key_version"))
                .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(retired_versions(retired))
    }
}
