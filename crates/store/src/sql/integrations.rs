//! [`IntegrationStore`]: integrations with their sealed client secrets, and custom connectors.

use time::OffsetDateTime;

use super::pages::PageQuery;
use super::secrets::delete_secrets;
use super::{Dialect, SqlStore, assembled, sql};
use crate::listing::{Cursor, IntegrationFilter, Page, PageRequest};
use crate::model::{CustomConnector, IntegrationRecord};
use crate::rows::{self, Columns as _, nanos, to_json};
use crate::secret_rows::{CLIENT_SECRET, INTEGRATION, integration_owner};
use crate::{IntegrationStore, StoreError};

#[async_trait::async_trait]
impl<D: Dialect> IntegrationStore for SqlStore<D> {
    async fn put_integration(&self, i: &IntegrationRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        sql::<D>(
            "INSERT INTO integrations (id, connector, client_id, scopes, settings, created_at,
                updated_at, environment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (environment, id) DO UPDATE SET
                connector = excluded.connector, client_id = excluded.client_id,
                scopes = excluded.scopes, settings = excluded.settings,
                created_at = excluded.created_at, updated_at = excluded.updated_at,
                misconfigured_since = NULL, misconfigured_seen_at = NULL,
                misconfigured_message = NULL",
        )
        .bind(&i.id)
        .bind(&i.connector)
        .bind(&i.client_id)
        .bind(to_json(&i.scopes, "integration scopes")?)
        .bind(i.settings.to_string())
        .bind(nanos(i.created_at)?)
        .bind(nanos(i.updated_at)?)
        .bind(&i.environment)
        .execute(&mut tx)
        .await?;
        let owner = integration_owner(&i.environment, &i.id);
        delete_secrets::<D>(&mut tx, INTEGRATION, &owner).await?;
        if let Some(secret) = &i.client_secret {
            self.write_secret(&mut tx, INTEGRATION, &owner, CLIENT_SECRET, secret).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_integration(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<Option<IntegrationRecord>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let row = sql::<D>(concat!(
            "SELECT ",
            integration_columns!(),
            " FROM integrations WHERE environment = $1 AND id = $2"
        ))
        .bind(environment)
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let owner = integration_owner(environment, id);
        let mut secrets = self.read_secrets(&mut tx, INTEGRATION, Some(&owner)).await?;
        tx.commit().await?;
        let own = secrets.remove(&owner).unwrap_or_default();
        rows::integration(&row, own).map(Some)
    }

    async fn list_integrations(
        &self,
        filter: &IntegrationFilter,
        page: &PageRequest,
    ) -> Result<Page<IntegrationRecord>, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let mut found = PageQuery::environment(&filter.environment)
            .page::<D>(integration_columns!(), "integrations", page)
            .fetch_all(&mut tx)
            .await?;
        let more = found.len() > page.size() as usize;
        found.truncate(page.size() as usize);
        let mut secrets = self.read_secrets(&mut tx, INTEGRATION, None).await?;
        tx.commit().await?;
        let items = found
            .iter()
            .map(|row| {
                let owner = integration_owner(&filter.environment, &row.text("id")?);
                rows::integration(row, secrets.remove(&owner).unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = match items.last() {
            Some(last) if more => Some(
                Cursor::after(last.created_at, &last.id)
                    .map_err(|_| StoreError::Database("stored timestamp out of range".into()))?,
            ),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn delete_integration(&self, environment: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let deleted = sql::<D>("DELETE FROM integrations WHERE environment = $1 AND id = $2")
            .bind(environment)
            .bind(id)
            .execute(&mut tx)
            .await?;
        delete_secrets::<D>(&mut tx, INTEGRATION, &integration_owner(environment, id)).await?;
        sql::<D>("DELETE FROM brandings WHERE environment = $1 AND integration = $2")
            .bind(environment)
            .bind(id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn get_branding(
        &self,
        environment: &str,
        integration: Option<&str>,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row =
            sql::<D>("SELECT branding FROM brandings WHERE environment = $1 AND integration = $2")
                .bind(environment)
                .bind(integration.unwrap_or_default())
                .fetch_optional(&mut *self.pool.acquire().await?)
                .await?;
        row.as_ref().map(|r| crate::rows::json(r, "branding")).transpose()
    }

    async fn put_branding(
        &self,
        environment: &str,
        integration: Option<&str>,
        branding: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        // The environment's own branding is the row whose integration is empty.
        let integration = integration.unwrap_or_default();
        let statement = match branding {
            Some(value) => sql::<D>(
                "INSERT INTO brandings (environment, integration, branding) VALUES ($1, $2, $3)
                 ON CONFLICT (environment, integration) DO UPDATE SET branding = excluded.branding",
            )
            .bind(environment)
            .bind(integration)
            .bind(crate::rows::to_json(value, "branding")?),
            None => sql::<D>("DELETE FROM brandings WHERE environment = $1 AND integration = $2")
                .bind(environment)
                .bind(integration),
        };
        statement.execute(&mut *self.pool.acquire().await?).await?;
        Ok(())
    }

    async fn flag_integration_misconfigured(
        &self,
        environment: &str,
        id: &str,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let row = sql::<D>(assembled(&[
            "SELECT misconfigured_since FROM integrations WHERE environment = $1 AND id = $2",
            D::FOR_UPDATE,
        ]))
        .bind(environment)
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let first = row.opt_int("misconfigured_since")?.is_none();
        sql::<D>(
            "UPDATE integrations SET misconfigured_since = COALESCE(misconfigured_since, $1),
                misconfigured_seen_at = $1, misconfigured_message = $2
             WHERE environment = $3 AND id = $4",
        )
        .bind(nanos(at)?)
        .bind(message)
        .bind(environment)
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(first)
    }

    async fn clear_integration_misconfigured(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let cleared = sql::<D>(
            "UPDATE integrations SET misconfigured_since = NULL, misconfigured_seen_at = NULL,
                misconfigured_message = NULL
             WHERE environment = $1 AND id = $2 AND misconfigured_since IS NOT NULL",
        )
        .bind(environment)
        .bind(id)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(cleared > 0)
    }

    async fn put_custom_connector(&self, id: &str, source: &str) -> Result<(), StoreError> {
        sql::<D>(
            "INSERT INTO custom_connectors (id, source, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET source = excluded.source,
                updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(source)
        .bind(nanos(OffsetDateTime::now_utc())?)
        .execute(&mut *self.pool.acquire().await?)
        .await?;
        Ok(())
    }

    async fn list_custom_connectors(&self) -> Result<Vec<CustomConnector>, StoreError> {
        sql::<D>("SELECT id, source, updated_at FROM custom_connectors ORDER BY id")
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(rows::custom_connector)
            .collect()
    }

    async fn delete_custom_connector(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = sql::<D>("DELETE FROM custom_connectors WHERE id = $1")
            .bind(id)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(deleted > 0)
    }
}
