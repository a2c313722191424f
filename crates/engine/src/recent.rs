//! Connections read in the last moment, so a burst of proxied requests does not read and decrypt
//! the same row each time. Entries live for a second; this process drops them on every write it
//! makes ([`Engine::forget`](crate::Engine::forget)) and replaces them after a refresh. Another
//! process's write is seen within a second, and a token it rotated meanwhile is caught by the
//! refresh-on-401 path, which always re-reads.

use std::sync::Arc;
use std::time::Duration;

use latchkey_store::ConnectionRecord;
use moka::sync::Cache;

/// How long a read connection is reused.
pub(crate) const LIFETIME: Duration = Duration::from_secs(1);
/// The most connections kept.
const CAPACITY: u64 = 10_000;

/// Connections by id, each for [`LIFETIME`].
#[derive(Debug)]
pub(crate) struct RecentConnections(Cache<String, Arc<ConnectionRecord>>);

impl Default for RecentConnections {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(CAPACITY).time_to_live(LIFETIME).build())
    }
}

impl RecentConnections {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<ConnectionRecord>> {
        self.0.get(id)
    }

    pub(crate) fn put(&self, record: Arc<ConnectionRecord>) {
        self.0.insert(record.id.clone(), record);
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.invalidate(id);
    }
}
