//! What the engine keeps in memory about each connection, and the one call that drops it when
//! the connection is written. Every cache is a bounded `moka` cache with its own lifetime:
//!
//! | cache | key | bound | lifetime |
//! | --- | --- | --- | --- |
//! | recent connections (`recent.rs`) | connection | 10,000 | 1 s; 30 s with a change feed |
//! | API keys by digest (`access.rs`) | digest | 10,000 | 2 s; 30 s with a change feed |
//! | kept JWTs (`signed_tokens.rs`) | connection (+ version, method) | 10,000 | until shortly before `exp` |
//! | Digest challenges (`send.rs`) | connection | 10,000 | 5 min unused |
//! | mTLS clients (`mtls.rs`) | integration (+ `updated_at`) | 1,000 | 1 h unused |
//! | discovery documents (`oauth2/discovery.rs`) | issuer | 1,000 | 1 h |
//!
//! On PostgreSQL the store's change feed (`changes.rs`) drops entries as other instances write
//! the rows behind them. The script sandbox keeps its own caches of compiled hooks and parse
//! verdicts, keyed by the script's source text (see `latchkey_script`).

use crate::Engine;

impl Engine {
    /// Drops everything this engine keeps about `connection`: the record read in the last
    /// second, its kept JWT and its Digest challenge. The engine calls it after every write of
    /// a connection (created, re-authorised, credentials renewed, status changed, deleted); an
    /// in-process caller that writes the store directly calls it too, or waits a second.
    pub fn forget(&self, connection: &str) {
        self.recent.forget(connection);
        self.signed_tokens.forget(connection);
        self.digest.forget(connection);
    }
}
