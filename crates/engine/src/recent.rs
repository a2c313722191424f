//! Connections read in the last moment, so a burst of proxied requests does not read and decrypt
//! the same row each time. Entries live for a second; this process drops them on every write it
//! makes and replaces them after a refresh. Another process's write is seen within a second, and
//! a token it rotated meanwhile is caught by the refresh-on-401 path, which always re-reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_store::ConnectionRecord;

const LIFETIME: Duration = Duration::from_secs(1);
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct RecentConnections(Mutex<HashMap<String, (Instant, Arc<ConnectionRecord>)>>);

impl RecentConnections {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<ConnectionRecord>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|(at, _)| at.elapsed() < LIFETIME).map(|(_, r)| r.clone())
    }

    pub(crate) fn put(&self, record: Arc<ConnectionRecord>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            map.retain(|_, (at, _)| at.elapsed() < LIFETIME);
        }
        map.insert(record.id.clone(), (Instant::now(), record));
    }

    pub(crate) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}
