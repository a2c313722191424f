//! [`AuditStore`]: appending to the hash-chained audit log under the lock of its head row,
//! listing it, trimming it by age behind an anchor, and verifying the chain.
//!
//! Appends serialise on the `audit_head` row (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
//! `SELECT … FOR UPDATE`), so two processes on one database extend one chain. The audit key is
//! 32 random bytes made by the first append, kept as a sealed `secrets` row (owner `audit`), so
//! it is encrypted at rest and re-sealed by key rotation like every secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Secret;
use rand::RngCore as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{Dialect, SqlStore, assembled, sql};
use crate::audit::{
    AuditBreak, AuditEntry, AuditFilter, AuditObject, AuditOutcome, AuditPage, AuditProblem,
    AuditRecord, AuditTrim, AuditVerdict, MAX_PAGE, RawEntry, SYSTEM_ACTOR, TRIM_ACTION,
    action_filter, object_filter,
};
use crate::crypto::Keyring;
use crate::rows::{Columns as _, nanos};
use crate::secret_rows::{AUDIT, AUDIT_CHAIN, AUDIT_KEY, SecretRow};
use crate::{AuditStore, StoreError};

/// Every `audit_log` column, as a literal for `concat!`.
macro_rules! audit_columns {
    () => {
        "seq, at, actor_id, actor_name, action, object_kind, object_id, environment, address, \
         outcome, status, detail, hash"
    };
}

/// The listing's filters over `$1`…`$8` (see [`list`]), as a literal for `concat!`.
macro_rules! audit_filtered {
    () => {
        concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log
             WHERE (CAST($1 AS TEXT) IS NULL OR actor_id = $1)
               AND (CAST($2 AS TEXT) IS NULL OR action = $2)
               AND (CAST($3 AS TEXT) IS NULL OR substr(action, 1, length($3)) = $3)
               AND (CAST($4 AS TEXT) IS NULL OR object_kind = $4)
               AND (CAST($5 AS TEXT) IS NULL OR object_id = $5)
               AND (CAST($6 AS TEXT) IS NULL OR environment = $6 OR environment IS NULL)
               AND (CAST($7 AS BIGINT) IS NULL OR at >= $7)
               AND (CAST($8 AS BIGINT) IS NULL OR at < $8) "
        )
    };
}

/// Rows read per statement while verifying.
const VERIFY_BATCH: i64 = 1000;

/// The chain's head row: the last entry appended, and where a trim left the anchor.
struct Head {
    seq: i64,
    hash: Vec<u8>,
    anchor_seq: i64,
    anchor_hash: Vec<u8>,
}

/// Reads the head row; with `lock`, holds it until the transaction ends (on SQLite the write
/// transaction already excludes other writers).
async fn head<D: Dialect>(conn: &mut D::Connection, lock: bool) -> Result<Head, StoreError> {
    let lock = if lock { D::FOR_UPDATE } else { "" };
    let row = sql::<D>(assembled(&[
        "SELECT seq, hash, anchor_seq, anchor_hash FROM audit_head WHERE id = 1",
        lock,
    ]))
    .fetch_one(conn)
    .await?;
    Ok(Head {
        seq: row.int("seq")?,
        hash: row.bytes("hash")?,
        anchor_seq: row.int("anchor_seq")?,
        anchor_hash: row.bytes("anchor_hash")?,
    })
}

/// The audit key, opened, if there is one.
async fn chain_key<D: Dialect>(
    conn: &mut D::Connection,
    keyring: &Keyring,
) -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
    let row = sql::<D>(concat!(
        secret_select!(),
        "WHERE owner_kind = $1 AND owner_id = $2 AND field = $3"
    ))
    .bind(AUDIT)
    .bind(AUDIT_CHAIN)
    .bind(AUDIT_KEY)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let secret = SecretRow::from_row(&row)?.open(keyring)?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(secret.expose())
            .map_err(|_| StoreError::Database("the audit key is malformed".into()))?,
    );
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Database("the audit key is not 32 bytes".into()))?;
    Ok(Some(Zeroizing::new(key)))
}

impl<D: Dialect> SqlStore<D> {
    /// Appends `record` after the head, inside the caller's write transaction: locks the head,
    /// takes (or, before the first entry, makes) the audit key, chains the entry's hash from
    /// the head's and moves the head to it.
    async fn append_in(
        &self,
        conn: &mut D::Connection,
        record: &AuditRecord,
    ) -> Result<AuditEntry, StoreError> {
        let head = head::<D>(conn, true).await?;
        let key = match chain_key::<D>(conn, &self.keyring).await? {
            Some(key) => key,
            None if head.seq == 0 && head.anchor_seq == 0 => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(key.as_mut());
                let text = Secret::new(STANDARD.encode(key.as_ref()));
                self.write_secret(conn, AUDIT, AUDIT_CHAIN, AUDIT_KEY, &text).await?;
                key
            }
            // A new key would start a second chain that nothing links to the first.
            None => {
                return Err(StoreError::Database(
                    "the audit key is missing from the database, so the audit log cannot be \
                     extended; run `latchkey audit verify`"
                        .into(),
                ));
            }
        };
        let mut raw = RawEntry::new(head.seq + 1, record)?;
        raw.hash = raw.chain_hash(&key, &head.hash);
        sql::<D>(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(raw.seq)
        .bind(raw.at)
        .bind(&raw.actor_id)
        .bind(&raw.actor_name)
        .bind(&raw.action)
        .bind(&raw.object_kind)
        .bind(&raw.object_id)
        .bind(&raw.environment)
        .bind(&raw.address)
        .bind(&raw.outcome)
        .bind(raw.status)
        .bind(&raw.detail)
        .bind(raw.hash.as_slice())
        .execute(conn)
        .await?;
        sql::<D>("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(raw.seq)
            .bind(raw.hash.as_slice())
            .execute(conn)
            .await?;
        raw.entry()
    }
}

#[async_trait::async_trait]
impl<D: Dialect> AuditStore for SqlStore<D> {
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditEntry, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let entry = self.append_in(&mut tx, record).await?;
        tx.commit().await?;
        Ok(entry)
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &AuditPage,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (action, action_prefix) = action_filter(filter.action.as_deref());
        let (object_kind, object_id) = object_filter(filter.object.as_deref());
        let statement = if page.newest_first {
            sql::<D>(concat!(
                audit_filtered!(),
                "AND (CAST($9 AS BIGINT) IS NULL OR seq < $9) ORDER BY seq DESC LIMIT $10"
            ))
        } else {
            sql::<D>(concat!(
                audit_filtered!(),
                "AND (CAST($9 AS BIGINT) IS NULL OR seq > $9) ORDER BY seq ASC LIMIT $10"
            ))
        };
        statement
            .bind(filter.actor.as_deref())
            .bind(action)
            .bind(action_prefix)
            .bind(object_kind)
            .bind(object_id)
            .bind(filter.environment.as_deref())
            .bind(filter.since.map(nanos).transpose()?)
            .bind(filter.until.map(nanos).transpose()?)
            .bind(page.after)
            .bind(i64::from(page.limit.clamp(1, MAX_PAGE)))
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .iter()
            .map(|row| RawEntry::from_row(row)?.entry())
            .collect()
    }

    async fn trim_audit(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<AuditTrim, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
        let head = head::<D>(&mut tx, true).await?;
        // The oldest entries up to the first one at or after `before`: a prefix of the chain,
        // even where appenders' clocks disagree a little.
        let last = sql::<D>(
            "SELECT seq, hash FROM audit_log
             WHERE seq < COALESCE((SELECT MIN(seq) FROM audit_log WHERE at >= $1), $2)
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(nanos(before)?)
        .bind(head.seq + 1)
        .fetch_optional(&mut tx)
        .await?;
        let Some(last) = last else {
            tx.commit().await?;
            return Ok(AuditTrim { removed: 0, anchor_seq: head.anchor_seq, recorded: None });
        };
        let (anchor_seq, anchor_hash) = (last.int("seq")?, last.bytes("hash")?);
        let removed = sql::<D>("DELETE FROM audit_log WHERE seq <= $1")
            .bind(anchor_seq)
            .execute(&mut tx)
            .await?;
        sql::<D>("UPDATE audit_head SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
            .bind(anchor_seq)
            .bind(anchor_hash.as_slice())
            .execute(&mut tx)
            .await?;
        let record = AuditRecord {
            at: now,
            actor_id: SYSTEM_ACTOR.to_owned(),
            actor_name: "retention".to_owned(),
            action: TRIM_ACTION.to_owned(),
            object: Some(AuditObject {
                kind: "audit_entry".to_owned(),
                id: anchor_seq.to_string(),
            }),
            environment: None,
            address: None,
            outcome: AuditOutcome::Success,
            status: None,
            detail: None,
        };
        let recorded = self.append_in(&mut tx, &record).await?;
        tx.commit().await?;
        Ok(AuditTrim { removed, anchor_seq, recorded: Some(recorded) })
    }

    async fn verify_audit(&self) -> Result<AuditVerdict, StoreError> {
        let mut tx = self.pool.begin_with(D::BEGIN_READ).await?;
        let head = head::<D>(&mut tx, false).await?;
        let key = chain_key::<D>(&mut tx, &self.keyring).await?;
        let (mut previous, mut expected, mut verified) =
            (head.anchor_hash.clone(), head.anchor_seq + 1, 0u64);
        let mut after = i64::MIN;
        let broken = |seq, problem, raw: Option<RawEntry>, verified| {
            AuditVerdict::Broken(Box::new(AuditBreak {
                seq,
                problem,
                entry: raw.and_then(|raw| raw.entry().ok()),
                verified,
            }))
        };
        loop {
            let rows = sql::<D>(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after)
            .bind(VERIFY_BATCH)
            .fetch_all(&mut tx)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.int("seq")?;
            for row in &rows {
                let raw = RawEntry::from_row(row);
                let seq = row.int("seq")?;
                let Some(key) = key.as_ref() else {
                    return Ok(broken(expected, AuditProblem::KeyMissing, raw.ok(), verified));
                };
                let raw = match raw {
                    Ok(raw) => raw,
                    // A value of the wrong type: an edit.
                    Err(_) => return Ok(broken(seq, AuditProblem::Altered, None, verified)),
                };
                if seq > expected {
                    return Ok(broken(expected, AuditProblem::Missing, Some(raw), verified));
                }
                if seq < expected || !raw.chains_from(key, &previous) {
                    return Ok(broken(seq, AuditProblem::Altered, Some(raw), verified));
                }
                previous = raw.hash;
                expected += 1;
                verified += 1;
            }
        }
        tx.commit().await?;
        let last = expected - 1;
        if last < head.seq {
            let problem =
                if key.is_none() { AuditProblem::KeyMissing } else { AuditProblem::Missing };
            return Ok(broken(expected, problem, None, verified));
        }
        if last > head.seq || previous != head.hash {
            return Ok(broken(last, AuditProblem::HeadMismatch, None, verified));
        }
        Ok(AuditVerdict::Intact {
            entries: verified,
            anchor_seq: head.anchor_seq,
            head_seq: head.seq,
            head_hash: head.hash,
        })
    }
}
