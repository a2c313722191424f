//! Decoding SQLite rows into records, and the column encodings: timestamps as unix nanoseconds
//! (UTC), maps and lists as JSON text.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::{ConnectionRecord, ConnectionSummary, IntegrationRecord};

/// The `connections` columns that [`connection`] reads, as a literal for `concat!`.
macro_rules! connection_columns {
    () => {
        "id, connector, integration, auth_method, config, status, label, end_user_id, \
         expires_at, version, created_at, updated_at"
    };
}

/// The `integrations` columns that [`integration`] reads, as a literal for `concat!`.
macro_rules! integration_columns {
    () => {
        "id, connector, client_id, scopes, settings, created_at, updated_at"
    };
}

/// A timestamp as stored: unix time in nanoseconds.
pub(super) fn nanos(at: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| StoreError::Database("timestamp outside 1677..2262".into()))
}

/// A stored timestamp, in UTC.
pub(super) fn timestamp(nanos: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|_| StoreError::Database("stored timestamp out of range".into()))
}

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    // serde_json's message may quote the stored value, so it is left out.
    serde_json::from_str(&text)
        .map_err(|_| StoreError::Database(format!("column {column} holds invalid JSON")))
}

/// An integration from its row (see `integration_columns!`) and its opened secrets.
pub(super) fn integration(
    row: &SqliteRow,
    mut secrets: BTreeMap<String, Secret>,
) -> Result<IntegrationRecord, StoreError> {
    Ok(IntegrationRecord {
        id: row.try_get("id")?,
        connector: row.try_get("connector")?,
        client_id: row.try_get("client_id")?,
        client_secret: secrets.remove(super::CLIENT_SECRET),
        scopes: json(row, "scopes")?,
        settings: json(row, "settings")?,
        created_at: timestamp(row.try_get("created_at")?)?,
        updated_at: timestamp(row.try_get("updated_at")?)?,
    })
}

/// A connection summary from its row (see `connection_columns!`) and its secret field names.
pub(super) fn connection(
    row: &SqliteRow,
    secret_fields: Vec<String>,
) -> Result<ConnectionSummary, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(ConnectionSummary {
        id: row.try_get("id")?,
        connector: row.try_get("connector")?,
        integration: row.try_get("integration")?,
        auth_method: row.try_get("auth_method")?,
        secret_fields,
        config: json(row, "config")?,
        status: status.parse().map_err(|e| StoreError::Database(format!("column status: {e}")))?,
        label: row.try_get("label")?,
        end_user_id: row.try_get("end_user_id")?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(timestamp).transpose()?,
        version: row.try_get("version")?,
        created_at: timestamp(row.try_get("created_at")?)?,
        updated_at: timestamp(row.try_get("updated_at")?)?,
    })
}

/// A full connection record from its summary and opened credentials.
pub(super) fn with_credentials(
    s: ConnectionSummary,
    credentials: BTreeMap<String, Secret>,
) -> ConnectionRecord {
    ConnectionRecord {
        id: s.id,
        connector: s.connector,
        integration: s.integration,
        auth_method: s.auth_method,
        credentials,
        config: s.config,
        status: s.status,
        label: s.label,
        end_user_id: s.end_user_id,
        expires_at: s.expires_at,
        version: s.version,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}
