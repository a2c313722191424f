//! [`ScriptStorage`]: the values connector scripts keep per connection, sealed like every other
//! secret and deleted with their connection.

use latchkey_core::Secret;

use super::{Dialect, SqlStore, sql};
use crate::rows::Columns as _;
use crate::secret_rows::{SCRIPT_STORAGE, SecretRow};
use crate::{ScriptStorage, StoreError};

#[async_trait::async_trait]
impl<D: Dialect> ScriptStorage for SqlStore<D> {
    async fn script_value(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<Secret>, StoreError> {
        let row = sql::<D>(concat!(
            secret_select!(),
            "WHERE owner_kind = $1 AND owner_id = $2 AND field = $3"
        ))
        .bind(SCRIPT_STORAGE)
        .bind(connection)
        .bind(key)
        .fetch_optional(&mut *self.pool.acquire().await?)
        .await?;
        row.map(|row| SecretRow::from_row(&row)?.open(&self.keyring)).transpose()
    }

    async fn put_script_value(
        &self,
        connection: &str,
        key: &str,
        value: &Secret,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.write_secret(&mut conn, SCRIPT_STORAGE, connection, key, value).await
    }

    async fn delete_script_value(&self, connection: &str, key: &str) -> Result<bool, StoreError> {
        let deleted =
            sql::<D>("DELETE FROM secrets WHERE owner_kind = $1 AND owner_id = $2 AND field = $3")
                .bind(SCRIPT_STORAGE)
                .bind(connection)
                .bind(key)
                .execute(&mut *self.pool.acquire().await?)
                .await?;
        Ok(deleted > 0)
    }

    async fn script_keys(&self, connection: &str) -> Result<Vec<String>, StoreError> {
        sql::<D>("SELECT field FROM secrets WHERE owner_kind = $1 AND owner_id = $2 ORDER BY field")
            .bind(SCRIPT_STORAGE)
            .bind(connection)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(|row| row.text("field"))
            .collect()
    }
}
