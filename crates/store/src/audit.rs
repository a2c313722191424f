//! The audit log's records and its hash chain: who did what to which object, when, from where,
//! in which environment, and the outcome; never a secret.
//!
//! Each entry's `hash` is HMAC-SHA256, under the audit key, of the previous entry's hash
//! followed by the entry's canonical encoding ([`RawEntry::canonical`]): every field,
//! length-prefixed, with the sequence number. Editing, deleting, inserting or reordering a row
//! breaks the chain at that row, and without the audit key (sealed in `secrets` like every
//! secret) no one can write a hash that fits. The chain starts from 32 zero bytes, or from the
//! anchor a retention trim left ([`crate::AuditStore::trim_audit`]).

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::StoreError;
use crate::rows::{Columns, nanos, timestamp};

/// The action a retention trim records ([`crate::AuditStore::trim_audit`]).
pub const TRIM_ACTION: &str = "audit.trim";

/// The actor of entries Latchkey writes on its own (a retention trim).
pub const SYSTEM_ACTOR: &str = "latchkey";

/// The most entries one [`crate::AuditStore::list_audit`] call returns.
pub const MAX_PAGE: u32 = 1000;

/// How a request turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done (a 2xx or 3xx answer).
    Success,
    /// Refused: the caller may not do this (403).
    Denied,
    /// Failed with another 4xx or 5xx answer (the status says which).
    Failed,
}

impl AuditOutcome {
    /// The outcome of an HTTP answer with this status.
    pub fn of_status(status: u16) -> Self {
        match status {
            403 => Self::Denied,
            s if s >= 400 => Self::Failed,
            _ => Self::Success,
        }
    }

    /// The stored form: `success`, `denied` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditOutcome {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Self::Success),
            "denied" => Ok(Self::Denied),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Database(format!("unknown audit outcome {other:?}"))),
        }
    }
}

/// The object an action was about: its kind (`connection`, `integration`, …) and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditObject {
    /// `connection`, `integration`, `connector`, `connect_session`, ….
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// What one audit entry says. Holds no secret by construction: identifiers, names, an address,
/// an outcome and a status only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it happened (UTC), as the appender's clock says.
    pub at: OffsetDateTime,
    /// The acting API key's id (`bootstrap` for `LATCHKEY_API_KEY`), or [`SYSTEM_ACTOR`].
    pub actor_id: String,
    /// The acting key's name.
    pub actor_name: String,
    /// What was done: `connection.create`, `connection.token_read`, ….
    pub action: String,
    /// Which object it was done to, when there is one.
    pub object: Option<AuditObject>,
    /// The environment it was done in.
    pub environment: Option<String>,
    /// The address the request came from.
    pub address: Option<String>,
    /// How it turned out.
    pub outcome: AuditOutcome,
    /// The HTTP status answered, for requests.
    pub status: Option<u16>,
    /// What came of it beyond the status, in safe words (a deleted connection's revocation:
    /// `revocation: revoked`).
    pub detail: Option<String>,
}

/// One entry of the log: its sequence number (1, 2, … without gaps), what it says, and its
/// chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its place in the chain.
    pub seq: i64,
    /// What it says.
    pub record: AuditRecord,
    /// HMAC-SHA256 of the previous hash and this entry (32 bytes, unless a row was edited).
    pub hash: Vec<u8>,
}

/// Which entries a listing returns; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The acting key's id.
    pub actor: Option<String>,
    /// The action, exactly; or, ending in `.*`, every action that starts with what precedes
    /// the `*` (`connection.*`).
    pub action: Option<String>,
    /// The object: `kind:id`, or an id of any kind.
    pub object: Option<String>,
    /// The environment; entries of no environment (Latchkey's own, such as a retention trim)
    /// match every environment.
    pub environment: Option<String>,
    /// Entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Entries before this time.
    pub until: Option<OffsetDateTime>,
}

/// One page of a listing: its order, where it starts and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPage {
    /// Newest first (the default) or oldest first.
    pub newest_first: bool,
    /// Starts after this sequence number in the page's order (a cursor: the last `seq` of
    /// the previous page); `None` starts at the newest, or the oldest, entry.
    pub after: Option<i64>,
    /// At most this many entries (1 to [`MAX_PAGE`]; larger is taken as [`MAX_PAGE`]).
    pub limit: u32,
}

impl AuditPage {
    /// The newest `limit` entries, newest first.
    pub fn newest(limit: u32) -> Self {
        Self { newest_first: true, after: None, limit }
    }

    /// The oldest `limit` entries, oldest first.
    pub fn oldest(limit: u32) -> Self {
        Self { newest_first: false, after: None, limit }
    }

    /// The same page, starting after the entry `seq` (in the page's order).
    pub fn after(self, seq: i64) -> Self {
        Self { after: Some(seq), ..self }
    }
}

/// What a retention trim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTrim {
    /// How many entries it removed.
    pub removed: u64,
    /// The sequence number verification now starts after (the last removed entry's).
    pub anchor_seq: i64,
    /// The entry that records the trim, when it removed anything.
    pub recorded: Option<AuditEntry>,
}

/// What [`crate::AuditStore::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every entry from the anchor to the head is there, unchanged and in order.
    Intact {
        /// How many entries were checked.
        entries: u64,
        /// Verification started after this sequence number (0, or where a trim left off).
        anchor_seq: i64,
        /// The last entry's sequence number.
        head_seq: i64,
        /// The last entry's hash: kept outside the database, it shows later whether entries at
        /// the end were removed together with the head (which the chain alone cannot show).
        head_hash: Vec<u8>,
    },
    /// The first entry at which the chain does not hold.
    Broken(Box<AuditBreak>),
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    /// The sequence number of the first broken entry.
    pub seq: i64,
    /// What is wrong with it.
    pub problem: AuditProblem,
    /// The entry stored at `seq`; for a missing one, the next entry there is (if any); `None`
    /// when there is none or the row does not decode.
    pub entry: Option<AuditEntry>,
    /// How many entries before it verified.
    pub verified: u64,
}

/// Why an entry breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditProblem {
    /// Its hash does not fit its fields and the entry before it: it was edited, moved, or
    /// inserted.
    Altered,
    /// It is gone: deleted (the entries around it are not contiguous, or the log ends before
    /// the head it recorded).
    Missing,
    /// The entries are sound up to here, but the recorded head names another last entry (the
    /// head row was edited).
    HeadMismatch,
    /// There are entries, but the audit key that chains them is gone from `secrets`.
    KeyMissing,
}

impl AuditProblem {
    /// A short description, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Altered => "altered (edited, moved or inserted)",
            Self::Missing => "missing (deleted)",
            Self::HeadMismatch => "the chain's head does not match its last entry",
            Self::KeyMissing => "the audit key is missing",
        }
    }
}

/// An `audit_log` row as stored: what is hashed is exactly this, so verification never depends
/// on decoding a (possibly edited) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub seq: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub environment: Option<String>,
    pub address: Option<String>,
    pub outcome: String,
    pub status: Option<i64>,
    pub detail: Option<String>,
    pub hash: Vec<u8>,
}

impl RawEntry {
    /// The row an append writes for `record` at `seq` (its hash not yet set).
    pub fn new(seq: i64, record: &AuditRecord) -> Result<Self, StoreError> {
        Ok(Self {
            seq,
            at: nanos(record.at)?,
            actor_id: record.actor_id.clone(),
            actor_name: record.actor_name.clone(),
            action: record.action.clone(),
            object_kind: record.object.as_ref().map(|o| o.kind.clone()),
            object_id: record.object.as_ref().map(|o| o.id.clone()),
            environment: record.environment.clone(),
            address: record.address.clone(),
            outcome: record.outcome.as_str().to_owned(),
            status: record.status.map(i64::from),
            detail: record.detail.clone(),
            hash: Vec::new(),
        })
    }

    /// Reads a row of `audit_log` (every column).
    pub fn from_row(row: &impl Columns) -> Result<Self, StoreError> {
        Ok(Self {
            seq: row.int("seq")?,
            at: row.int("at")?,
            actor_id: row.text("actor_id")?,
            actor_name: row.text("actor_name")?,
            action: row.text("action")?,
            object_kind: row.opt_text("object_kind")?,
            object_id: row.opt_text("object_id")?,
            environment: row.opt_text("environment")?,
            address: row.opt_text("address")?,
            outcome: row.text("outcome")?,
            status: row.opt_int("status")?,
            detail: row.opt_text("detail")?,
            hash: row.bytes("hash")?,
        })
    }

    /// The canonical encoding the chain hashes: a version tag, then every field in a fixed
    /// order, integers as 8 big-endian bytes, text length-prefixed, absent values marked, so
    /// no two different entries encode alike.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let text = |out: &mut Vec<u8>, value: Option<&str>| match value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u64).to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
        };
        text(&mut out, Some("latchkey audit v1"));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        text(&mut out, Some(&self.actor_id));
        text(&mut out, Some(&self.actor_name));
        text(&mut out, Some(&self.action));
        text(&mut out, self.object_kind.as_deref());
        text(&mut out, self.object_id.as_deref());
        text(&mut out, self.environment.as_deref());
        text(&mut out, self.address.as_deref());
        text(&mut out, Some(&self.outcome));
        match self.status {
            None => out.push(0),
            Some(status) => {
                out.push(1);
                out.extend_from_slice(&status.to_be_bytes());
            }
        }
        // Added after v1's fields, and only when present, so entries written before the
        // column existed keep their hashes.
        if let Some(detail) = &self.detail {
            text(&mut out, Some("detail"));
            text(&mut out, Some(detail));
        }
        out
    }

    /// HMAC-SHA256 under `key` of `previous` and this entry's canonical encoding.
    pub fn chain_hash(&self, key: &[u8; 32], previous: &[u8]) -> Vec<u8> {
        self.mac(key, previous).finalize().into_bytes().to_vec()
    }

    /// Whether the stored hash is the one `key` gives after `previous` (compared in constant
    /// time).
    pub fn chains_from(&self, key: &[u8; 32], previous: &[u8]) -> bool {
        self.mac(key, previous).verify_slice(&self.hash).is_ok()
    }

    fn mac(&self, key: &[u8; 32], previous: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(previous);
        mac.update(&self.canonical());
        mac
    }

    /// The entry as a caller reads it.
    pub fn entry(self) -> Result<AuditEntry, StoreError> {
        let object = match (self.object_kind, self.object_id) {
            (Some(kind), Some(id)) => Some(AuditObject { kind, id }),
            _ => None,
        };
        let status = self
            .status
            .map(u16::try_from)
            .transpose()
            .map_err(|_| StoreError::Database("audit status out of range".into()))?;
        Ok(AuditEntry {
            seq: self.seq,
            record: AuditRecord {
                at: timestamp(self.at)?,
                actor_id: self.actor_id,
                actor_name: self.actor_name,
                action: self.action,
                object,
                environment: self.environment,
                address: self.address,
                outcome: self.outcome.parse()?,
                status,
                detail: self.detail,
            },
            hash: self.hash,
        })
    }
}

/// The object filter as columns: `kind:id`, or an id of any kind.
pub(crate) fn object_filter(object: Option<&str>) -> (Option<&str>, Option<&str>) {
    match object {
        None => (None, None),
        Some(text) => match text.split_once(':') {
            Some((kind, id)) => (Some(kind), Some(id)),
            None => (None, Some(text)),
        },
    }
}

/// The action filter as columns: an exact action, or a prefix (from `prefix.*`).
pub(crate) fn action_filter(action: Option<&str>) -> (Option<&str>, Option<&str>) {
    match action {
        None => (None, None),
        Some(text) => match text.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix)),
            None => (Some(text), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash before the first entry (as the migrations write it into `audit_head`).
    const GENESIS: [u8; 32] = [0; 32];

    fn raw() -> RawEntry {
        RawEntry {
            seq: 7,
            at: 1_800_000_000_123_456_789,
            actor_id: "k1".into(),
            actor_name: "ci".into(),
            action: "connection.create".into(),
            object_kind: Some("connection".into()),
            object_id: Some("c1".into()),
            environment: Some("prod".into()),
            address: Some("203.0.113.9".into()),
            outcome: "success".into(),
            status: Some(201),
            detail: None,
            hash: Vec::new(),
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let key = [7u8; 32];
        let base = raw().chain_hash(&key, &GENESIS);
        let variants: Vec<RawEntry> = vec![
            RawEntry { seq: 8, ..raw() },
            RawEntry { at: 1_800_000_000_123_456_790, ..raw() },
            RawEntry { actor_id: "k2".into(), ..raw() },
            RawEntry { actor_name: "cj".into(), ..raw() },
            RawEntry { action: "connection.delete".into(), ..raw() },
            RawEntry { object_kind: None, ..raw() },
            RawEntry { object_id: Some("c2".into()), ..raw() },
            RawEntry { environment: None, ..raw() },
            RawEntry { address: Some("203.0.113.8".into()), ..raw() },
            RawEntry { outcome: "failed".into(), ..raw() },
            RawEntry { status: None, ..raw() },
            RawEntry { detail: Some("revocation: revoked".into()), ..raw() },
            // Moving bytes between adjacent fields is not the same entry.
            RawEntry { actor_id: "k1c".into(), actor_name: "i".into(), ..raw() },
        ];
        for variant in variants {
            assert_ne!(variant.chain_hash(&key, &GENESIS), base, "{variant:?}");
        }
        assert_ne!(raw().chain_hash(&[8u8; 32], &GENESIS), base, "the key matters");
        assert_ne!(raw().chain_hash(&key, &[1u8; 32]), base, "the previous hash matters");
        let mut stored = raw();
        stored.hash = base.clone();
        assert!(stored.chains_from(&key, &GENESIS));
        assert!(!stored.chains_from(&key, &[1u8; 32]));
        assert_eq!(base.len(), 32);
    }

    #[test]
    fn filters_split_into_columns() {
        assert_eq!(object_filter(Some("connection:c1")), (Some("connection"), Some("c1")));
        assert_eq!(object_filter(Some("c1")), (None, Some("c1")));
        assert_eq!(action_filter(Some("connection.*")), (None, Some("connection.")));
        assert_eq!(action_filter(Some("connection.create")), (Some("connection.create"), None));
        assert_eq!(AuditOutcome::of_status(403), AuditOutcome::Denied);
        assert_eq!(AuditOutcome::of_status(404), AuditOutcome::Failed);
        assert_eq!(AuditOutcome::of_status(500), AuditOutcome::Failed);
        assert_eq!(AuditOutcome::of_status(204), AuditOutcome::Success);
    }
}
