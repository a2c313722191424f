//! Decoding rows of either backend into records, and the column encodings both backends share:
//! timestamps as unix nanoseconds (UTC) in a 64-bit integer, maps and lists as JSON text.

use std::collections::BTreeMap;

use latchkey_core::Secret;
use time::OffsetDateTime;

use crate::StoreError;
use crate::model::{
    ConnectSession, ConnectionRecord, ConnectionSummary, CustomConnector, EndUser,
    IntegrationRecord, Misconfiguration, OAuthState, SessionFailure, SessionStatus,
};
use crate::secret_rows::CLIENT_SECRET;

/// The `connections` columns that [`connection`] reads, as a literal for `concat!`.
macro_rules! connection_columns {
    () => {
        "id, environment, connector, integration, auth_method, config, status, label, end_user_id, \
         end_user_email, end_user_display_name, tags, metadata, health, expires_at, version, \
         created_at, updated_at"
    };
}

/// The `integrations` columns that [`integration`] reads, as a literal for `concat!`.
macro_rules! integration_columns {
    () => {
        "environment, id, connector, client_id, scopes, settings, created_at, updated_at, \
         misconfigured_since, misconfigured_seen_at, misconfigured_message"
    };
}

/// The `connect_sessions` columns that [`connect_session`] reads, as a literal for `concat!`.
macro_rules! session_columns {
    () => {
        "id, environment, token_hash, integration, connection_id, end_user_id, end_user_email, \
         end_user_display_name, tags, metadata, allowed_origin, config, status, \
         result_connection, error, error_code, expires_at, created_at, auth_method, choices, lang, \
         return_url"
    };
}

/// The `secrets` columns that `SecretRow::from_row` reads, joined with the columns of the
/// connection a credential row belongs to (NULL for other rows), as a literal for `concat!`.
/// Add `WHERE …` on the unqualified `secrets` columns.
macro_rules! secret_select {
    () => {
        "SELECT s.owner_kind, s.owner_id, s.field, s.key_version, s.aad_version, s.nonce, \
                s.ciphertext, c.connector AS bound_connector, \
                c.integration AS bound_integration, c.auth_method AS bound_auth_method, \
                c.config AS bound_config \
         FROM secrets s LEFT JOIN connections c \
            ON s.owner_kind = 'connection' AND c.id = s.owner_id "
    };
}

/// The typed columns a row of either backend gives up. Both schemas use the same column
/// types (text, 64-bit integers, bytes), so one decoder serves both.
pub trait Columns: sqlx::Row {
    /// A non-null text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A non-null 64-bit integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable 64-bit integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A non-null byte column (`BLOB` / `BYTEA`).
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    /// A non-null boolean (an integer on SQLite), such as an `EXISTS (…)`.
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
}

macro_rules! impl_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

impl_columns!(sqlx::sqlite::SqliteRow);
impl_columns!(sqlx::postgres::PgRow);

/// A timestamp as stored: unix time in nanoseconds.
pub(crate) fn nanos(at: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| StoreError::Database("timestamp outside 1677..2262".into()))
}

/// A stored timestamp, in UTC.
pub(crate) fn timestamp(nanos: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|_| StoreError::Database("stored timestamp out of range".into()))
}

/// A value as stored in a JSON text column; `what` names it in the error.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| StoreError::Database(format!("cannot encode {what}")))
}

/// A JSON text column, decoded.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
) -> Result<T, StoreError> {
    parse_json(&row.text(column)?, column)
}

/// Stored JSON text, decoded; `column` names it in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    column: &str,
) -> Result<T, StoreError> {
    // serde_json's message may quote the stored value, so it is left out.
    serde_json::from_str(text)
        .map_err(|_| StoreError::Database(format!("column {column} holds invalid JSON")))
}

fn at(row: &impl Columns, column: &str) -> Result<OffsetDateTime, StoreError> {
    timestamp(row.int(column)?)
}

/// An integration from its row (see `integration_columns!`) and its opened secrets.
pub(crate) fn integration(
    row: &impl Columns,
    mut secrets: BTreeMap<String, Secret>,
) -> Result<IntegrationRecord, StoreError> {
    Ok(IntegrationRecord {
        environment: row.text("environment")?,
        id: row.text("id")?,
        connector: row.text("connector")?,
        client_id: row.opt_text("client_id")?,
        client_secret: secrets.remove(CLIENT_SECRET),
        scopes: json(row, "scopes")?,
        settings: json(row, "settings")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
        misconfigured: match row.opt_int("misconfigured_since")? {
            Some(since) => Some(Misconfiguration {
                since: timestamp(since)?,
                seen_at: timestamp(row.opt_int("misconfigured_seen_at")?.unwrap_or(since))?,
                message: row.opt_text("misconfigured_message")?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

/// A connection summary from its row (see `connection_columns!`) and its secret field names.
pub(crate) fn connection(
    row: &impl Columns,
    secret_fields: Vec<String>,
) -> Result<ConnectionSummary, StoreError> {
    Ok(ConnectionSummary {
        id: row.text("id")?,
        environment: row.text("environment")?,
        connector: row.text("connector")?,
        integration: row.opt_text("integration")?,
        auth_method: row.text("auth_method")?,
        secret_fields,
        config: json(row, "config")?,
        status: row
            .text("status")?
            .parse()
            .map_err(|e| StoreError::Database(format!("column status: {e}")))?,
        label: row.opt_text("label")?,
        end_user: end_user(row)?,
        tags: json(row, "tags")?,
        metadata: json(row, "metadata")?,
        health: json(row, "health")?,
        expires_at: row.opt_int("expires_at")?.map(timestamp).transpose()?,
        version: row.int("version")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// The end user from the `end_user_*` columns: none without an id.
fn end_user(row: &impl Columns) -> Result<Option<EndUser>, StoreError> {
    let Some(id) = row.opt_text("end_user_id")? else { return Ok(None) };
    Ok(Some(EndUser {
        id,
        email: row.opt_text("end_user_email")?,
        display_name: row.opt_text("end_user_display_name")?,
    }))
}

/// A full connection record from its summary and opened credentials.
pub(crate) fn with_credentials(
    s: ConnectionSummary,
    credentials: BTreeMap<String, Secret>,
) -> ConnectionRecord {
    ConnectionRecord {
        id: s.id,
        environment: s.environment,
        connector: s.connector,
        integration: s.integration,
        auth_method: s.auth_method,
        credentials,
        config: s.config,
        status: s.status,
        label: s.label,
        end_user: s.end_user,
        tags: s.tags,
        metadata: s.metadata,
        health: s.health,
        expires_at: s.expires_at,
        version: s.version,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

/// A connect session from its row (see `session_columns!`).
pub(crate) fn connect_session(row: &impl Columns) -> Result<ConnectSession, StoreError> {
    let status = row.text("status")?;
    Ok(ConnectSession {
        id: row.text("id")?,
        environment: row.text("environment")?,
        token_hash: row.text("token_hash")?,
        integration: row.text("integration")?,
        choices: match row.opt_text("choices")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Database(format!("session choices: {e}")))?,
            None => Vec::new(),
        },
        lang: row.opt_text("lang")?,
        return_url: row.opt_text("return_url")?,
        connection_id: row.opt_text("connection_id")?,
        auth_method: row.opt_text("auth_method")?,
        end_user: end_user(row)?,
        tags: json(row, "tags")?,
        metadata: json(row, "metadata")?,
        allowed_origin: row.opt_text("allowed_origin")?,
        config: json(row, "config")?,
        status: SessionStatus::parse(&status)
            .ok_or_else(|| StoreError::Database(format!("unknown session status {status:?}")))?,
        result_connection: row.opt_text("result_connection")?,
        error: match (row.opt_text("error_code")?, row.opt_text("error")?) {
            (Some(code), message) => {
                Some(SessionFailure { code, message: message.unwrap_or_default() })
            }
            // Failed before codes were stored.
            (None, Some(message)) => Some(SessionFailure { code: "failed".into(), message }),
            (None, None) => None,
        },
        expires_at: at(row, "expires_at")?,
        created_at: at(row, "created_at")?,
    })
}

/// An OAuth state from its row (`state_hash, connect_session, browser_hash, redirect_uri,
/// expires_at`) and its opened PKCE verifier.
pub(crate) fn oauth_state(
    row: &impl Columns,
    pkce_verifier: Option<Secret>,
) -> Result<OAuthState, StoreError> {
    Ok(OAuthState {
        state_hash: row.text("state_hash")?,
        connect_session: row.text("connect_session")?,
        browser_hash: row.opt_text("browser_hash")?,
        redirect_uri: row.text("redirect_uri")?,
        pkce_verifier,
        expires_at: at(row, "expires_at")?,
    })
}

/// A custom connector from its row (`id, source, updated_at`).
pub(crate) fn custom_connector(row: &impl Columns) -> Result<CustomConnector, StoreError> {
    Ok(CustomConnector {
        id: row.text("id")?,
        source: row.text("source")?,
        updated_at: at(row, "updated_at")?,
    })
}
