//! Change notifications between instances that share one database. On PostgreSQL, triggers
//! (migration `0018_change_notifications`) `NOTIFY` every change to a connection (its row or its
//! sealed credentials) and every change to what an API key may do, on the channel
//! [`CHANNEL`]; a [`ChangeFeed`] `LISTEN`s and yields them, so an instance drops what it cached
//! within milliseconds of another instance's write. SQLite has no feed: its processes share a
//! file on one machine and rely on short cache lifetimes.

use sqlx::postgres::PgListener;

use crate::StoreError;

/// The PostgreSQL channel the triggers notify on.
pub const CHANNEL: &str = "latchkey_changes";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A connection's row or credentials were updated, or it was deleted.
    Connection(String),
    /// An API key was revoked, deleted, or its scopes or expiry changed.
    ApiKeys,
    /// The feed lost its database connection and reconnected: changes made meanwhile were not
    /// seen, so everything cached may be stale.
    Everything,
}

/// A stream of [`Change`]s made by any writer of this store's schema, this process included.
#[derive(Debug)]
pub struct ChangeFeed {
    listener: PgListener,
    schema: String,
}

impl ChangeFeed {
    pub(crate) fn new(listener: PgListener, schema: String) -> Self {
        Self { listener, schema }
    }

    /// The next change. After a lost connection the listener reconnects and listens again by
    /// itself; the changes in between are unknown, so that yields [`Change::Everything`].
    /// An error means the database could not be reached again (the caller retries later).
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            let Some(notification) = self.listener.try_recv().await? else {
                return Ok(Change::Everything);
            };
            if let Some(change) = parse(notification.payload(), &self.schema) {
                return Ok(change);
            }
        }
    }
}

/// A payload `<schema> <kind> <id>`, for this schema only; anything else is ignored.
fn parse(payload: &str, schema: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ' ');
    if parts.next()? != schema {
        return None;
    }
    match (parts.next()?, parts.next()?) {
        ("connection", id) if !id.is_empty() => Some(Change::Connection(id.to_owned())),
        ("api_keys", _) => Some(Change::ApiKeys),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_other_schemas_or_kinds_are_ignored() {
        assert_eq!(
            parse("public connection c_1", "public"),
            Some(Change::Connection("c_1".into()))
        );
        assert_eq!(parse("public api_keys -", "public"), Some(Change::ApiKeys));
        assert_eq!(parse("tenant_b connection c_1", "public"), None);
        assert_eq!(parse("public integration x", "public"), None);
        assert_eq!(parse("public connection ", "public"), None);
        assert_eq!(parse("garbage", "public"), None);
    }
}
