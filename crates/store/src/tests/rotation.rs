//! Master-key rotation on every backend (bodies for `on_every_backend!` in `tests.rs`): keys
//! given without versions find theirs, every sealed row is re-sealed, an interrupted rotation
//! completes on a re-run, running instances lose no write, a retired key opens nothing, and no
//! secret is ever in the database in plain form.

use latchkey_core::Secret;

use super::{Backend, assert_absent, connection, creds, integration, oauth_state, update};
use crate::crypto::{Keyring, MasterKey, MasterKeys};
use crate::{Store, StoreError};

/// A copy of a key (keys are not `Clone`).
fn copy(key: &MasterKey) -> MasterKey {
    MasterKey::from_base64(key.to_base64().expose()).unwrap()
}

/// `(version, rows)` of every key version, and which one is current.
async fn versions(store: &dyn Store) -> (Vec<(u32, u64)>, u32) {
    let all = store.key_versions().await.unwrap();
    let current = all.iter().find(|v| v.current).unwrap().version;
    (all.iter().map(|v| (v.version, v.rows)).collect(), current)
}

/// One secret of every kind the store seals, under the store's current key: two credentials,
/// a client secret, a script value and a PKCE verifier.
async fn store_one_of_each(store: &dyn Store, values: [&str; 5]) {
    store
        .insert_connection(&connection("c1", &[("api_key", values[0]), ("password", values[1])]))
        .await
        .unwrap();
    store.put_integration(&integration("i1", Some(values[2]))).await.unwrap();
    store.put_script_value("c1", "session", &Secret::new(values[3])).await.unwrap();
    let mut state = oauth_state("h1");
    state.pkce_verifier = Some(Secret::new(values[4]));
    store.put_oauth_state(&state).await.unwrap();
}

/// Reads back what [`store_one_of_each`] stored.
async fn read_one_of_each(store: &dyn Store, values: [&str; 5]) {
    let c1 = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(c1.credentials, creds(&[("api_key", values[0]), ("password", values[1])]));
    let i1 = store.get_integration("default", "i1").await.unwrap().unwrap();
    assert_eq!(i1.client_secret, Some(Secret::new(values[2])));
    assert_eq!(store.script_value("c1", "session").await.unwrap(), Some(Secret::new(values[3])));
    let state = store.take_oauth_state("h1").await.unwrap().unwrap();
    assert_eq!(state.pkce_verifier, Some(Secret::new(values[4])));
}

pub(crate) async fn keys_given_without_versions_find_theirs(b: &impl Backend) {
    b.store().insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    // The key alone finds version 1, as the store was opened with it.
    let same = b.reopen(MasterKeys::new(b.key())).await.unwrap();
    assert_eq!(versions(&*same).await, (vec![(1, 1)], 1));
    // A key that opens nothing stops start-up, with or without a previous key that does not
    // open anything either.
    let wrong = b.reopen(MasterKeys::new(MasterKey::generate())).await;
    assert!(matches!(wrong, Err(StoreError::WrongKey)), "{wrong:?}");
    let unproven = MasterKeys::new(MasterKey::generate()).with_previous(MasterKey::generate());
    assert!(matches!(b.reopen(unproven).await, Err(StoreError::WrongKey)));
    // A new key with the old one as previous becomes version 2; a second instance given the
    // same keys agrees, and the new key alone now finds version 2 too.
    let new = MasterKey::generate();
    let first = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    let second = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    assert_eq!(versions(&*first).await, (vec![(1, 1), (2, 0)], 2));
    assert_eq!(versions(&*second).await, (vec![(1, 1), (2, 0)], 2));
    assert_eq!(
        second.get_connection("c1").await.unwrap().unwrap().credentials["api_key"].expose(),
        "k"
    );
    let alone = b.reopen(MasterKeys::new(copy(&new))).await.unwrap();
    assert_eq!(versions(&*alone).await.1, 2);
    // The old key is still the current key of an instance given only it.
    let old = b.reopen(MasterKeys::new(b.key()).with_previous(new)).await.unwrap();
    assert_eq!(versions(&*old).await.1, 1);
}

pub(crate) async fn rotation_reseals_everything_and_the_old_key_is_then_unnecessary(
    b: &impl Backend,
) {
    let values = [
        "api-1",
        "pw-1",
        "client-secret-1",
        "script-1",
        "pkce-verifier-0123456789abcdef0123456789abc",
    ];
    let old_instance = b.store();
    store_one_of_each(&*old_instance, values).await;
    let new = MasterKey::generate();
    let rotated = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    assert_eq!(versions(&*rotated).await, (vec![(1, 5), (2, 0)], 2));
    // Nothing to retire while rows use version 1.
    assert!(matches!(
        rotated.retire_old_keys().await,
        Err(StoreError::KeyInUse { version: 1, rows: 5 })
    ));

    let report = rotated.rotate_keys(2).await.unwrap();
    assert_eq!((report.resealed, report.current_version), (5, 2));
    assert_eq!((report.changed_concurrently, report.without_key), (0, 0));
    assert!(report.unreadable.is_empty());
    assert_eq!(report.rows_on_old_versions(), 0);
    assert_eq!(versions(&*rotated).await, (vec![(1, 0), (2, 5)], 2));
    // Running it again finds nothing to do.
    assert_eq!(rotated.rotate_keys(2).await.unwrap().resealed, 0);

    assert_eq!(rotated.retire_old_keys().await.unwrap(), [1]);
    assert_eq!(rotated.retire_old_keys().await.unwrap(), Vec::<u32>::new());
    let after = rotated.key_versions().await.unwrap();
    let checked: Vec<_> = after.iter().filter(|v| v.checked).collect();
    assert_eq!(checked.len(), 1);
    assert!(checked[0].current && checked[0].key_given && checked[0].version == 2);
    // Version 1 is still listed: this process holds its key, which is no longer needed.
    assert!(after.iter().any(|v| v.version == 1 && v.key_given && !v.checked && v.rows == 0));
    // An instance still sealing with the retired key writes nothing it could not read back.
    let refused = old_instance.put_script_value("c1", "late", &Secret::new("x")).await;
    assert!(matches!(refused, Err(StoreError::KeyRetired { version: 1 })), "{refused:?}");

    // The new key alone opens everything.
    let only_new = b.reopen(MasterKeys::new(new)).await.unwrap();
    read_one_of_each(&*only_new, values).await;
}

pub(crate) async fn a_retired_key_alone_no_longer_opens_the_database(b: &impl Backend) {
    b.store().insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    let rotated = b.reopen(MasterKeys::new(MasterKey::generate()).with_previous(b.key())).await;
    let rotated = rotated.unwrap();
    assert_eq!(rotated.rotate_keys(100).await.unwrap().rows_on_old_versions(), 0);
    rotated.retire_old_keys().await.unwrap();
    let old = b.reopen(MasterKeys::new(b.key())).await;
    assert!(matches!(old, Err(StoreError::WrongKey)), "{old:?}");
    let old = b.reopen(b.keyring()).await;
    assert!(matches!(old, Err(StoreError::WrongKey)), "{old:?}");
}

pub(crate) async fn rotation_interrupted_half_way_completes_when_run_again(b: &impl Backend) {
    let store = b.store();
    for n in 0..7 {
        let value = format!("key-{n}");
        store
            .insert_connection(&connection(&format!("c{n}"), &[("api_key", &value)]))
            .await
            .unwrap();
    }
    let new = MasterKey::generate();
    let keys = || MasterKeys::new(copy(&new)).with_previous(b.key());
    let first = b.reopen(keys()).await.unwrap();
    let batch = first.reseal_batch(None, 3).await.unwrap();
    assert_eq!(batch.resealed, 3);
    let batch = first.reseal_batch(batch.last.as_ref(), 2).await.unwrap();
    assert_eq!(batch.resealed, 2);
    // The process stops here, half-way.
    drop(first);
    let again = b.reopen(keys()).await.unwrap();
    assert_eq!(versions(&*again).await, (vec![(1, 2), (2, 5)], 2));
    let report = again.rotate_keys(3).await.unwrap();
    assert_eq!((report.resealed, report.rows_on_old_versions()), (2, 0));
    again.retire_old_keys().await.unwrap();
    let only_new = b.reopen(MasterKeys::new(new)).await.unwrap();
    for n in 0..7 {
        let read = only_new.get_connection(&format!("c{n}")).await.unwrap().unwrap();
        assert_eq!(read.credentials["api_key"].expose(), format!("key-{n}"));
    }
}

/// Instances keep refreshing tokens while the rotation runs: one restarted with the new key
/// (the old one as previous), and one that still seals with the old key but holds the new one.
/// None of their writes is lost or overwritten with an older value, and what was sealed with
/// the old key meanwhile is picked up (then or on a re-run) until no row uses it.
pub(crate) async fn rotation_keeps_what_running_instances_write(b: &impl Backend) {
    let ids: Vec<String> = (0..12).map(|n| format!("c{n}")).collect();
    for id in &ids {
        b.store().insert_connection(&connection(id, &[("access_token", "at-0")])).await.unwrap();
    }
    let new = MasterKey::generate();
    let rotated = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    let restarted = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    let lagging = b.reopen(Keyring::new(1, b.key()).with_key(2, copy(&new))).await.unwrap();
    let writers: Vec<_> = [restarted, lagging]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let ids: Vec<String> = ids.iter().skip(n).step_by(2).cloned().collect();
            tokio::spawn(async move {
                for round in 1..=5 {
                    for id in &ids {
                        let read = store.get_connection(id).await.unwrap().unwrap();
                        let new = creds(&[("access_token", &format!("at-{round}"))]);
                        store
                            .update_credentials(id, read.version, &update(&new, None))
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    let mut resealed = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        resealed += rotated.rotate_keys(1).await.unwrap().resealed;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let report = rotated.rotate_keys(1).await.unwrap();
    assert!(resealed + report.resealed > 0);
    assert_eq!(report.rows_on_old_versions(), 0);
    rotated.retire_old_keys().await.unwrap();
    let only_new = b.reopen(MasterKeys::new(new)).await.unwrap();
    for id in &ids {
        let read = only_new.get_connection(id).await.unwrap().unwrap();
        assert_eq!(read.credentials["access_token"].expose(), "at-5", "{id}");
        assert_eq!(read.version, 6);
    }
}

/// The database never holds a canary in plain, base64 or hex form: before, between any two
/// batches of, and after a rotation and retirement.
pub(crate) async fn no_canary_in_plain_form_during_or_after_rotation(b: &impl Backend) {
    let canaries = [
        "canary-rot-api-key-51c0ffee",
        "canary-rot-password-7d2a",
        "canary-rot-client-secret-9e1f",
        "canary-rot-script-value-44ab",
        "canary-rot-pkce-verifier-0b5e55ed-0123456789abcdef",
    ];
    store_one_of_each(&*b.store(), canaries).await;
    assert_absent(&b.dump().await, &canaries, "the database before rotation");
    let new = MasterKey::generate();
    let rotated = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    let mut after = None;
    loop {
        let batch = rotated.reseal_batch(after.as_ref(), 1).await.unwrap();
        assert_absent(&b.dump().await, &canaries, "the database during rotation");
        let Some(last) = batch.last else { break };
        after = Some(last);
    }
    rotated.retire_old_keys().await.unwrap();
    let dump = b.dump().await;
    assert_absent(&dump, &canaries, "the database after rotation");
    assert!(dump.windows(10).any(|w| w == b"client-123"), "the dump holds the records");
    read_one_of_each(&*b.reopen(MasterKeys::new(new)).await.unwrap(), canaries).await;
}

pub(crate) async fn retiring_from_an_older_key_leaves_newer_versions_alone(b: &impl Backend) {
    b.store().insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    let new = MasterKey::generate();
    let rotated = b.reopen(MasterKeys::new(copy(&new)).with_previous(b.key())).await.unwrap();
    assert_eq!(versions(&*rotated).await.1, 2);
    // A process still on the old key (the new one as previous) retires nothing newer than its
    // own version, so the new key keeps opening the database.
    let behind = b.reopen(MasterKeys::new(b.key()).with_previous(copy(&new))).await.unwrap();
    assert_eq!(versions(&*behind).await.1, 1);
    assert_eq!(behind.retire_old_keys().await.unwrap(), Vec::<u32>::new());
    let only_new = b.reopen(MasterKeys::new(new)).await;
    assert!(only_new.is_ok(), "{only_new:?}");
}
