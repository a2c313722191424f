//! The audit log on every backend (bodies for `on_every_backend!` in `tests.rs`): entries
//! round-trip and filter, the cursor pages in sequence order, an edited, deleted or reordered
//! row is found at exactly that entry, a trim leaves a chain that still verifies, two
//! processes appending at once extend one chain, and the chain key survives key rotation.

use std::sync::Arc;

use super::{Backend, at};
use crate::Store;
use crate::audit::{
    AuditFilter, AuditObject, AuditOutcome, AuditPage, AuditProblem, AuditRecord, AuditVerdict,
    TRIM_ACTION,
};
use crate::crypto::{MasterKey, MasterKeys};

fn record(seconds: i64, actor: &str, action: &str, object: Option<(&str, &str)>) -> AuditRecord {
    AuditRecord {
        at: at(seconds),
        actor_id: actor.into(),
        actor_name: format!("{actor} key"),
        action: action.into(),
        object: object.map(|(kind, id)| AuditObject { kind: kind.into(), id: id.into() }),
        environment: Some("prod".into()),
        address: Some("203.0.113.7".into()),
        outcome: AuditOutcome::Success,
        status: Some(200),
        detail: None,
    }
}

/// Five entries, one second apart from t = 1 800 000 001.
async fn five(store: &dyn Store) -> Vec<AuditRecord> {
    let records = vec![
        record(1_800_000_001, "k1", "connection.create", Some(("connection", "c1"))),
        record(1_800_000_002, "k2", "connection.token_read", Some(("connection", "c1"))),
        AuditRecord {
            environment: Some("dev".into()),
            outcome: AuditOutcome::Denied,
            status: Some(403),
            address: None,
            ..record(1_800_000_003, "k2", "integration.delete", Some(("integration", "c1")))
        },
        record(1_800_000_004, "k1", "connect_session.create", Some(("connect_session", "s1"))),
        AuditRecord {
            object: None,
            environment: None,
            status: None,
            detail: Some("revocation: failed: timed out".into()),
            ..record(1_800_000_005, "k1", "connection.delete", None)
        },
    ];
    for (n, r) in records.iter().enumerate() {
        let entry = store.append_audit(r).await.unwrap();
        assert_eq!(entry.seq, n as i64 + 1);
        assert_eq!(&entry.record, r);
        assert_eq!(entry.hash.len(), 32);
    }
    records
}

async fn seqs(store: &dyn Store, filter: AuditFilter, page: AuditPage) -> Vec<i64> {
    store.list_audit(&filter, &page).await.unwrap().iter().map(|e| e.seq).collect()
}

async fn verdict(store: &dyn Store) -> (i64, AuditProblem) {
    match store.verify_audit().await.unwrap() {
        AuditVerdict::Broken(b) => (b.seq, b.problem),
        intact => panic!("the chain should be broken: {intact:?}"),
    }
}

async fn intact(store: &dyn Store) -> u64 {
    match store.verify_audit().await.unwrap() {
        AuditVerdict::Intact { entries, .. } => entries,
        broken => panic!("the chain should verify: {broken:?}"),
    }
}

pub(crate) async fn audit_entries_roundtrip_filter_and_page(b: &impl Backend) {
    let store = b.store();
    assert_eq!(intact(&*store).await, 0, "an empty log verifies");
    let records = five(&*store).await;
    let all = store.list_audit(&AuditFilter::default(), &AuditPage::oldest(10)).await.unwrap();
    assert_eq!(
        all.iter().map(|e| &e.record).collect::<Vec<_>>(),
        records.iter().collect::<Vec<_>>()
    );
    let none = AuditFilter::default;

    // Pages, newest first and oldest first, with the last seq as the cursor.
    assert_eq!(seqs(&*store, none(), AuditPage::newest(2)).await, [5, 4]);
    assert_eq!(seqs(&*store, none(), AuditPage::newest(2).after(4)).await, [3, 2]);
    assert_eq!(seqs(&*store, none(), AuditPage::newest(2).after(2)).await, [1]);
    assert_eq!(seqs(&*store, none(), AuditPage::oldest(2).after(2)).await, [3, 4]);
    assert_eq!(seqs(&*store, none(), AuditPage::oldest(2).after(5)).await, Vec::<i64>::new());

    // Each filter.
    let f = |actor: Option<&str>, action: Option<&str>, object: Option<&str>| AuditFilter {
        actor: actor.map(Into::into),
        action: action.map(Into::into),
        object: object.map(Into::into),
        ..AuditFilter::default()
    };
    let oldest = AuditPage::oldest(100);
    assert_eq!(seqs(&*store, f(Some("k1"), None, None), oldest).await, [1, 4, 5]);
    assert_eq!(seqs(&*store, f(None, Some("connection.delete"), None), oldest).await, [5]);
    assert_eq!(seqs(&*store, f(None, Some("connection.*"), None), oldest).await, [1, 2, 5]);
    assert_eq!(seqs(&*store, f(None, Some("connection"), None), oldest).await, Vec::<i64>::new());
    assert_eq!(seqs(&*store, f(None, None, Some("c1")), oldest).await, [1, 2, 3]);
    assert_eq!(seqs(&*store, f(None, None, Some("connection:c1")), oldest).await, [1, 2]);
    assert_eq!(seqs(&*store, f(Some("k2"), Some("connection.*"), Some("c1")), oldest).await, [2]);
    let env = AuditFilter { environment: Some("dev".into()), ..AuditFilter::default() };
    assert_eq!(seqs(&*store, env, oldest).await, [3, 5], "and those of no environment");
    let window = AuditFilter {
        since: Some(at(1_800_000_002)),
        until: Some(at(1_800_000_004)),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&*store, window.clone(), oldest).await, [2, 3], "since ≤ at < until");
    assert_eq!(seqs(&*store, window, AuditPage::newest(1)).await, [3]);
    assert_eq!(intact(&*store).await, 5);
}

pub(crate) async fn audit_verify_finds_an_edited_row_at_that_entry(b: &impl Backend) {
    let store = b.store();
    five(&*store).await;
    b.execute("UPDATE audit_log SET actor_id = 'mallory' WHERE seq = 3").await;
    let broken = match store.verify_audit().await.unwrap() {
        AuditVerdict::Broken(broken) => broken,
        intact => panic!("{intact:?}"),
    };
    assert_eq!((broken.seq, broken.problem, broken.verified), (3, AuditProblem::Altered, 2));
    let entry = broken.entry.unwrap();
    assert_eq!(
        (entry.record.actor_id.as_str(), entry.record.action.as_str()),
        ("mallory", "integration.delete")
    );
    assert_eq!(entry.record.at, at(1_800_000_003));
    // Put back, the chain holds again: the hash covers the fields, nothing else.
    b.execute("UPDATE audit_log SET actor_id = 'k2' WHERE seq = 3").await;
    assert_eq!(intact(&*store).await, 5);
    // A time moved by one nanosecond, a status dropped: found at that entry.
    b.execute("UPDATE audit_log SET at = at + 1 WHERE seq = 4").await;
    assert_eq!(verdict(&*store).await, (4, AuditProblem::Altered));
    b.execute("UPDATE audit_log SET at = at - 1 WHERE seq = 4").await;
    b.execute("UPDATE audit_log SET status = NULL WHERE seq = 2").await;
    assert_eq!(verdict(&*store).await, (2, AuditProblem::Altered));
}

pub(crate) async fn audit_verify_finds_a_deleted_or_reordered_row(b: &impl Backend) {
    let store = b.store();
    five(&*store).await;
    // Two rows swapped (each keeping its own fields and hash): the first of them breaks.
    let swap = || async {
        b.execute("UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
        b.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
        b.execute("UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
    };
    swap().await;
    assert_eq!(verdict(&*store).await, (2, AuditProblem::Altered));
    swap().await;
    assert_eq!(intact(&*store).await, 5);

    // The last row deleted: the head still names it.
    b.execute("DELETE FROM audit_log WHERE seq = 5").await;
    assert_eq!(verdict(&*store).await, (5, AuditProblem::Missing));
    // With the head moved back to the 4th entry as well, the rows verify: the chain alone
    // cannot see a cut at its end, which is why verify reports the head hash to keep
    // elsewhere. A head that names no entry's hash is found.
    b.execute("UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4)")
        .await;
    assert_eq!(intact(&*store).await, 4);
    b.execute("UPDATE audit_head SET hash = anchor_hash").await;
    assert_eq!(verdict(&*store).await, (4, AuditProblem::HeadMismatch));
    b.execute("UPDATE audit_head SET hash = (SELECT hash FROM audit_log WHERE seq = 4)").await;

    // A row in the middle deleted: missing at exactly its sequence number.
    b.execute("DELETE FROM audit_log WHERE seq = 3").await;
    let broken = match store.verify_audit().await.unwrap() {
        AuditVerdict::Broken(broken) => broken,
        intact => panic!("{intact:?}"),
    };
    assert_eq!((broken.seq, broken.problem, broken.verified), (3, AuditProblem::Missing, 2));
    assert_eq!(broken.entry.map(|e| e.seq), Some(4), "the next entry there is");
}

pub(crate) async fn audit_trim_keeps_the_chain_verifiable(b: &impl Backend) {
    let store = b.store();
    five(&*store).await;
    let nothing = store.trim_audit(at(1_700_000_000), at(1_800_000_010)).await.unwrap();
    assert_eq!((nothing.removed, nothing.anchor_seq, nothing.recorded), (0, 0, None));

    let trim = store.trim_audit(at(1_800_000_003), at(1_800_000_010)).await.unwrap();
    assert_eq!((trim.removed, trim.anchor_seq), (2, 2));
    let recorded = trim.recorded.unwrap();
    assert_eq!((recorded.seq, recorded.record.action.as_str()), (6, TRIM_ACTION));
    assert_eq!(
        recorded.record.object,
        Some(AuditObject { kind: "audit_entry".into(), id: "2".into() })
    );
    assert_eq!(seqs(&*store, AuditFilter::default(), AuditPage::oldest(10)).await, [3, 4, 5, 6]);
    match store.verify_audit().await.unwrap() {
        AuditVerdict::Intact { entries, anchor_seq, head_seq, head_hash } => {
            assert_eq!((entries, anchor_seq, head_seq), (4, 2, 6));
            assert_eq!(head_hash, recorded.hash);
        }
        broken => panic!("{broken:?}"),
    }
    // Appends go on from the head; a deletion at the new start is still found.
    store.append_audit(&record(1_800_000_011, "k1", "connection.create", None)).await.unwrap();
    assert_eq!(intact(&*store).await, 5);
    b.execute("DELETE FROM audit_log WHERE seq = 3").await;
    assert_eq!(verdict(&*store).await, (3, AuditProblem::Missing));
    // Trimming everything leaves an empty, verifiable log but for the trim's own entry.
    let all = store.trim_audit(at(1_900_000_000), at(1_900_000_000)).await.unwrap();
    assert_eq!((all.removed, all.anchor_seq), (4, 7));
    assert_eq!(intact(&*store).await, 1);
}

pub(crate) async fn audit_appenders_in_two_processes_do_not_fork_the_chain(b: &impl Backend) {
    let first = b.store();
    let second: Arc<dyn Store> = b.reopen(b.keyring()).await.unwrap();
    let mut tasks = Vec::new();
    for (n, store) in [first.clone(), second].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let actor = format!("process-{n}");
                store
                    .append_audit(&record(1_800_000_000 + i, &actor, "connection.test", None))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(intact(&*first).await, 50);
    let all = first.list_audit(&AuditFilter::default(), &AuditPage::oldest(100)).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    for n in 0..2 {
        let actor = format!("process-{n}");
        assert_eq!(all.iter().filter(|e| e.record.actor_id == actor).count(), 25);
    }
}

pub(crate) async fn audit_key_is_sealed_and_survives_rotation(b: &impl Backend) {
    let store = b.store();
    assert_eq!(b.count("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'audit'").await, 0);
    five(&*store).await;
    assert_eq!(b.count("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'audit'").await, 1);
    // Rotated to a new master key, the chain still verifies and grows with the old key gone.
    let new = MasterKey::generate();
    let copy = MasterKey::from_base64(new.to_base64().expose()).unwrap();
    let rotated = b.reopen(MasterKeys::new(new).with_previous(b.key())).await.unwrap();
    let report = rotated.rotate_keys(100).await.unwrap();
    assert_eq!(report.rows_on_old_versions(), 0);
    rotated.retire_old_keys().await.unwrap();
    let alone = b.reopen(MasterKeys::new(copy)).await.unwrap();
    assert_eq!(intact(&*alone).await, 5);
    alone.append_audit(&record(1_800_000_006, "k1", "connection.create", None)).await.unwrap();
    assert_eq!(intact(&*alone).await, 6);
    // The key row gone, the log is reported broken and is not extended with a new key.
    b.execute("DELETE FROM secrets WHERE owner_kind = 'audit'").await;
    assert_eq!(verdict(&*alone).await, (1, AuditProblem::KeyMissing));
    let refused = alone.append_audit(&record(1_800_000_007, "k1", "x", None)).await;
    assert!(refused.unwrap_err().to_string().contains("audit key is missing"));
}
