//! Following other instances' writes. On PostgreSQL the store yields a [`ChangeFeed`] of every
//! change to a connection or to what an API key may do, whoever made it; a task drops what this
//! engine cached about each, so a credential change, a deletion or a key revocation made through
//! one instance holds on every other within milliseconds. With a feed the caches may live longer
//! ([`Lifetimes::FOLLOWED`]); without one (SQLite) they live [`Lifetimes::UNFOLLOWED`].

use std::sync::Weak;
use std::time::Duration;

use latchkey_store::{Change, ChangeFeed};

use crate::Engine;

/// Changes received from the store's feed, by kind (`connection`, `api_keys`, `everything`).
pub const CHANGES_RECEIVED: &str = "latchkey_changes_received_total";

/// How long the caches that another instance's writes can make stale keep an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// A connection read in the last moment.
    pub(crate) connection: Duration,
    /// An API key found (or not) by its digest.
    pub(crate) api_key: Duration,
}

impl Lifetimes {
    /// Without a feed, another process's write is seen within a second or two.
    pub(crate) const UNFOLLOWED: Self =
        Self { connection: Duration::from_secs(1), api_key: Duration::from_secs(2) };
    /// With a feed, changes arrive as they happen; the lifetime only bounds how long an entry
    /// can outlive a notification lost while the feed reconnects (then everything is dropped).
    pub(crate) const FOLLOWED: Self =
        Self { connection: Duration::from_secs(30), api_key: Duration::from_secs(30) };
}

/// Drops what `engine` cached for each change `feed` yields, until the engine is gone. When
/// the database cannot be reached the feed is retried every second, after dropping everything.
pub(crate) async fn follow(engine: Weak<Engine>, mut feed: ChangeFeed) {
    loop {
        let change = feed.next().await;
        let Some(engine) = engine.upgrade() else { return };
        match change {
            Ok(change) => engine.apply(&change),
            Err(error) => {
                tracing::warn!(%error, "the change feed lost the database; dropping every cache and retrying");
                engine.apply(&Change::Everything);
                drop(engine);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl Engine {
    /// Whether this engine follows other instances' writes through the store's change feed
    /// (PostgreSQL), and so keeps its caches for [`Lifetimes::FOLLOWED`].
    pub fn follows_changes(&self) -> bool {
        self.recent.lifetime() == Lifetimes::FOLLOWED.connection
    }

    /// Drops what is cached about `change`.
    fn apply(&self, change: &Change) {
        let kind = match change {
            Change::Connection(id) => {
                self.forget(id);
                "connection"
            }
            Change::ApiKeys => {
                self.access_caches.forget_keys();
                "api_keys"
            }
            Change::Everything => {
                self.recent.forget_all();
                self.signed_tokens.forget_all();
                self.digest.forget_all();
                self.access_caches.forget_keys();
                "everything"
            }
        };
        metrics::counter!(CHANGES_RECEIVED, "kind" => kind).increment(1);
    }
}
