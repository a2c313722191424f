//! Connections read in the last moment, so a burst of proxied requests does not read and decrypt
//! the same row each time. This process drops an entry on every write it makes
//! ([`Engine::forget`](crate::Engine::forget)) and replaces it after a refresh. Another
//! process's write is seen through the store's change feed at once (PostgreSQL), or when the
//! entry's lifetime ends (a second on SQLite; see [`crate::changes::Lifetimes`]); a token it
//! rotated meanwhile is caught by the refresh-on-401 path, which always re-reads.

use std::sync::Arc;
use std::time::Duration;

use latchkey_store::ConnectionRecord;
use moka::sync::Cache;

/// The most connections kept.
const CAPACITY: u64 = 10_000;

/// Connections by id, each for a lifetime.
#[derive(Debug)]
pub(crate) struct RecentConnections(Cache<String, Arc<ConnectionRecord>>);

impl RecentConnections {
    /// Connections each kept for `lifetime`.
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self(Cache::builder().max_capacity(CAPACITY).time_to_live(lifetime).build())
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ConnectionRecord>> {
        self.0.get(id)
    }

    pub(crate) fn put(&self, record: Arc<ConnectionRecord>) {
        self.0.insert(record.id.clone(), record);
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.invalidate(id);
    }

    /// How long an entry is kept.
    pub(crate) fn lifetime(&self) -> Duration {
        self.0.policy().time_to_live().unwrap_or_default()
    }

    pub(crate) fn forget_all(&self) {
        self.0.invalidate_all();
    }
}
