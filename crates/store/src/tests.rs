//! The store's behaviour, written once against [`Store`] and run on every backend: each body
//! here becomes one test per backend (`tests::sqlite::…`, `tests::postgres::…`) through
//! `backend_tests!`. Backend-only tests sit beside each backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latchkey_core::Secret;
use time::OffsetDateTime;

use crate::crypto::{CryptoError, Keyring, MasterKey};
use crate::listing::{ConnectionFilter, IntegrationFilter, PageRequest};
use crate::model::{
    ConnectSession, ConnectionRecord, ConnectionStatus, CredentialUpdate, EndUser,
    IntegrationRecord, OAuthState, RefreshBackoff, SessionStatus,
};
use crate::{
    ConnectionStore, FlowStore, IntegrationStore, KeyAdmin, Keys, ScriptStorage, Store, StoreError,
};

mod agent_tokens;
mod audit;
mod binding;
mod checks;
mod console;
mod flows;
mod listing;
mod operations;
mod rotation;
mod webhooks;
pub(crate) use agent_tokens::*;
pub(crate) use audit::*;
pub(crate) use binding::*;
pub(crate) use checks::*;
pub(crate) use console::*;
pub(crate) use flows::*;
pub(crate) use listing::*;
pub(crate) use operations::*;
pub(crate) use rotation::*;
pub(crate) use webhooks::*;

/// One backend's database for one test: a fresh, empty store, and the means to look under it.
pub(crate) trait Backend: Sized {
    /// The store type's name, as its `Debug` prints it.
    const NAME: &'static str;

    /// A fresh, empty database and a store on it, with a key of its own.
    async fn start() -> Self;

    /// The store opened by [`Backend::start`].
    fn store(&self) -> Arc<dyn Store>;

    /// A copy of the key the store was opened with.
    fn key(&self) -> MasterKey;

    /// That key alone, as a new keyring (version 1).
    fn keyring(&self) -> Keyring {
        Keyring::single(self.key())
    }

    /// Opens the same database again, as a second process would.
    async fn reopen(&self, keys: impl Into<Keys>) -> Result<Arc<dyn Store>, StoreError>;

    /// What the backend's `has_secrets` says about the database.
    async fn has_secrets(&self) -> bool;

    /// Runs one statement without parameters, written in the SQL both backends share.
    async fn execute(&self, sql: &str);

    /// Runs a `SELECT COUNT(*) …` without parameters.
    async fn count(&self, sql: &str) -> i64;

    /// A byte-string literal in this backend's SQL.
    fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("X'{hex}'")
    }

    /// Every byte the database keeps (files, or every row of every table as text), to search
    /// for secrets.
    async fn dump(&self) -> Vec<u8>;

    /// Closes the store and removes the database.
    async fn finish(self);
}

/// One `#[tokio::test]` per body, on the backend `$backend`.
macro_rules! backend_tests {
    ($backend:ty: $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let backend = <$backend as crate::tests::Backend>::start().await;
            crate::tests::$name(&backend).await;
            crate::tests::Backend::finish(backend).await;
        }
    )*};
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            backend_tests!(crate::sqlite::tests::SqliteBackend: $($name),*);
        }
        mod postgres {
            backend_tests!(crate::postgres::tests::PgBackend: $($name),*);
        }
    };
}

on_every_backend!(
    connection_roundtrips_with_credentials,
    batch_insert_skips_taken_ids_and_writes_the_rest,
    integration_roundtrips_with_client_secret,
    delete_removes_the_record_and_its_secrets,
    update_credentials_is_fenced_by_version,
    update_credentials_merges_config_and_sets_status,
    concurrent_refreshes_let_exactly_one_win,
    ciphertext_moved_to_another_row_does_not_decrypt,
    reopening_with_another_key_is_refused,
    no_secret_reaches_the_database,
    custom_connectors_roundtrip,
    script_values_are_sealed_and_go_with_their_connection,
    works_as_a_shared_trait_object,
    a_shared_store_upcasts_to_each_role,
    oauth_states_are_single_use_and_keep_the_verifier_sealed,
    connect_sessions_succeed_once,
    connect_sessions_keep_the_end_users_choice,
    brandings_belong_to_an_environment_or_an_integration,
    single_use_steps_have_one_winner_across_processes,
    leases_exclude_other_holders_until_they_expire,
    leases_have_one_holder_across_processes,
    leases_are_timed_in_nanoseconds_by_the_database_clock,
    leases_are_renewed_only_by_their_holder,
    connections_expiring_lists_ok_connections_soonest_first,
    connections_backing_off_leave_the_expiring_window,
    checks_due_are_listed_soonest_first_without_needs_reauth,
    the_refresh_window_leaves_out_skipped_connectors,
    the_refresh_window_spreads_connections_expiring_together,
    keys_given_without_versions_find_theirs,
    rotation_reseals_everything_and_the_old_key_is_then_unnecessary,
    rotation_interrupted_half_way_completes_when_run_again,
    rotation_keeps_what_running_instances_write,
    a_retired_key_alone_no_longer_opens_the_database,
    retiring_from_an_older_key_leaves_newer_versions_alone,
    no_canary_in_plain_form_during_or_after_rotation,
    editing_where_a_credential_goes_in_the_database_fails_closed,
    an_unbound_credential_put_in_place_is_refused,
    a_config_change_through_the_store_reseals_the_credentials,
    credentials_sealed_before_binding_are_bound_when_the_store_opens,
    audit_entries_roundtrip_filter_and_page,
    audit_verify_finds_an_edited_row_at_that_entry,
    audit_verify_finds_a_deleted_or_reordered_row,
    audit_trim_keeps_the_chain_verifiable,
    audit_appenders_in_two_processes_do_not_fork_the_chain,
    audit_key_is_sealed_and_survives_rotation,
    lists_filter_on_each_field,
    tag_filters_are_anded,
    a_cursor_walk_returns_every_row_once_in_order,
    page_limits_are_bounded,
    details_change_and_the_filters_follow,
    one_end_user_holds_several_connections_of_one_integration,
    integrations_page_in_creation_order,
    connect_sessions_keep_their_end_user_tags_and_metadata,
    lists_keep_to_one_environment,
    deliveries_are_claimed_once_per_lease_and_fenced_by_attempt,
    deliveries_are_claimed_once_across_processes,
    delivery_lists_filter_page_newest_first_and_keep_to_one_environment,
    webhook_secret_rotation_keeps_the_previous_secret_sealed_until_then,
    operations_filter_page_newest_first_and_trim,
    agent_tokens_count_their_budget_exactly_and_revoke_once,
    console_sessions_are_found_by_digest_switched_ended_and_purged,
    console_counts_group_health_and_operations,
);

pub(crate) fn at(seconds: i64) -> OffsetDateTime {
    // Nanoseconds included, to check that timestamps round-trip exactly.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(seconds) * 1_000_000_000 + 123_456_789)
        .unwrap()
}

pub(crate) fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect()
}

pub(crate) fn connection(id: &str, credentials: &[(&str, &str)]) -> ConnectionRecord {
    ConnectionRecord {
        id: id.into(),
        environment: "default".into(),
        connector: "github".into(),
        integration: Some("github-main".into()),
        auth_method: "oauth2".into(),
        credentials: creds(credentials),
        config: BTreeMap::from([("subdomain".into(), "acme".into())]),
        status: ConnectionStatus::Ok,
        health: crate::Health::default(),
        label: Some("octocat".into()),
        end_user: Some(EndUser {
            id: "user-1".into(),
            email: Some("u1@example.com".into()),
            display_name: Some("User One".into()),
        }),
        tags: BTreeMap::from([("org".into(), "acme".into())]),
        metadata: serde_json::json!({ "plan": { "seats": 3 } }).as_object().unwrap().clone(),
        expires_at: Some(at(1_900_000_000)),
        version: 1,
        created_at: at(1_800_000_000),
        updated_at: at(1_800_000_001),
    }
}

pub(crate) fn integration(id: &str, client_secret: Option<&str>) -> IntegrationRecord {
    IntegrationRecord {
        environment: "default".into(),
        id: id.into(),
        connector: "github".into(),
        client_id: Some("client-123".into()),
        client_secret: client_secret.map(Secret::new),
        scopes: vec!["repo".into(), "read:user".into()],
        settings: serde_json::json!({ "base_url": "https://ghe.example.com" }),
        created_at: at(1_800_000_000),
        updated_at: at(1_800_000_002),
        misconfigured: None,
    }
}

pub(crate) fn update(
    credentials: &BTreeMap<String, Secret>,
    expires_at: Option<OffsetDateTime>,
) -> CredentialUpdate {
    CredentialUpdate { credentials: credentials.clone(), expires_at, ..CredentialUpdate::default() }
}

fn session(id: &str, token_hash: &str) -> ConnectSession {
    let now = OffsetDateTime::now_utc();
    ConnectSession {
        id: id.into(),
        environment: "default".into(),
        token_hash: token_hash.into(),
        integration: "i".into(),
        choices: Vec::new(),
        lang: None,
        return_url: None,
        connection_id: None,
        auth_method: Some("api_key".into()),
        end_user: Some(EndUser::new("u-9")),
        tags: BTreeMap::from([("team".to_string(), "blue".to_string())]),
        metadata: serde_json::json!({ "source": "signup" }).as_object().unwrap().clone(),
        allowed_origin: Some("http://app".into()),
        config: BTreeMap::from([("shop".to_string(), "acme".to_string())]),
        status: SessionStatus::Pending,
        result_connection: None,
        error: None,
        expires_at: now + time::Duration::minutes(10),
        created_at: now,
    }
}

fn oauth_state(hash: &str) -> OAuthState {
    OAuthState {
        state_hash: hash.into(),
        connect_session: "cs1".into(),
        browser_hash: Some("b".into()),
        redirect_uri: "http://cb".into(),
        pkce_verifier: Some(Secret::new("v".repeat(43))),
        expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(10),
    }
}

async fn secret_rows(b: &impl Backend, kind: &str, id: &str) -> i64 {
    b.count(&format!(
        "SELECT COUNT(*) FROM secrets WHERE owner_kind = '{kind}' AND owner_id = '{id}'"
    ))
    .await
}

/// The forms a leaked secret could take in a dump.
pub(crate) fn forms(canary: &str) -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        ("plain", canary.as_bytes().to_vec()),
        ("base64", STANDARD.encode(canary).into_bytes()),
        ("base64url", URL_SAFE_NO_PAD.encode(canary).into_bytes()),
        ("hex", hex.clone().into_bytes()),
        ("HEX", hex.to_uppercase().into_bytes()),
    ]
}

/// Fails if any form of any canary occurs in `bytes` (`what` names where they came from).
pub(crate) fn assert_absent(bytes: &[u8], canaries: &[&str], what: &str) {
    for canary in canaries {
        for (form, needle) in forms(canary) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{form} form of a canary found in {what}"
            );
        }
    }
}

pub(crate) async fn connection_roundtrips_with_credentials(b: &impl Backend) {
    let store = b.store();
    let record = connection("c1", &[("access_token", "at-1"), ("refresh_token", "rt-1")]);
    assert_eq!(store.insert_connection(&record).await.unwrap(), 1);
    assert_eq!(store.get_connection("c1").await.unwrap(), Some(record.clone()));
    assert_eq!(store.get_connection("nope").await.unwrap(), None);

    let listed = store
        .list_connections(&ConnectionFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(listed, vec![record.summary()]);
    assert_eq!(listed[0].secret_fields, ["access_token", "refresh_token"]);

    let again = store.insert_connection(&record).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { kind: "connection", .. }));

    // put replaces every field and the whole credential set, and bumps the version.
    let mut changed = connection("c1", &[("api_key", "key-1")]);
    changed.status = ConnectionStatus::Error;
    changed.label = None;
    changed.expires_at = None;
    assert_eq!(store.put_connection(&changed).await.unwrap(), 2);
    changed.version = 2;
    assert_eq!(store.get_connection("c1").await.unwrap(), Some(changed));
    assert_eq!(secret_rows(b, "connection", "c1").await, 1);

    assert_eq!(store.put_connection(&connection("c2", &[])).await.unwrap(), 1);
}

pub(crate) async fn batch_insert_skips_taken_ids_and_writes_the_rest(b: &impl Backend) {
    let store = b.store();
    let stored = connection("c1", &[("api_key", "old")]);
    store.insert_connection(&stored).await.unwrap();
    let batch = [
        connection("c0", &[("api_key", "k0")]),
        connection("c1", &[("api_key", "new")]),
        connection("c2", &[("access_token", "at-2"), ("refresh_token", "rt-2")]),
        connection("c2", &[("api_key", "again")]),
    ];
    assert_eq!(store.insert_connections(&batch).await.unwrap(), [true, false, true, false]);
    assert_eq!(store.get_connection("c0").await.unwrap(), Some(batch[0].clone()));
    assert_eq!(store.get_connection("c1").await.unwrap(), Some(stored), "kept as it was");
    assert_eq!(store.get_connection("c2").await.unwrap(), Some(batch[2].clone()));
    assert_eq!(secret_rows(b, "connection", "c2").await, 2);
    assert_eq!(store.insert_connections(&[]).await.unwrap(), Vec::<bool>::new());
    assert_eq!(
        store
            .list_connections(&ConnectionFilter::default(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

pub(crate) async fn integration_roundtrips_with_client_secret(b: &impl Backend) {
    let store = b.store();
    let record = integration("github-main", Some("cs-1"));
    store.put_integration(&record).await.unwrap();
    store.put_integration(&integration("a-first", None)).await.unwrap();
    assert_eq!(
        store.get_integration("default", "github-main").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.get_integration("default", "nope").await.unwrap(), None);
    let ids: Vec<_> = store
        .list_integrations(&IntegrationFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| (i.id, i.client_secret))
        .collect();
    assert_eq!(
        ids,
        [("a-first".to_owned(), None), ("github-main".to_owned(), Some(Secret::new("cs-1")))]
    );

    store.put_integration(&integration("github-main", None)).await.unwrap();
    let read = store.get_integration("default", "github-main").await.unwrap().unwrap();
    assert_eq!(read.client_secret, None);
    assert_eq!(secret_rows(b, "integration", "github-main").await, 0);
}

pub(crate) async fn delete_removes_the_record_and_its_secrets(b: &impl Backend) {
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    store.insert_connection(&connection("c2", &[("api_key", "k2")])).await.unwrap();
    store.put_script_value("c1", "cursor", &Secret::new("s1")).await.unwrap();
    store.put_script_value("c2", "cursor", &Secret::new("s2")).await.unwrap();
    store.put_integration(&integration("i1", Some("cs"))).await.unwrap();

    assert!(store.delete_connection("c1").await.unwrap());
    assert!(!store.delete_connection("c1").await.unwrap());
    assert_eq!(store.get_connection("c1").await.unwrap(), None);
    assert_eq!(secret_rows(b, "connection", "c1").await, 0);
    assert_eq!(secret_rows(b, "script_storage", "c1").await, 0);
    assert_eq!(secret_rows(b, "connection", "c2").await, 1);
    assert_eq!(store.script_value("c2", "cursor").await.unwrap(), Some(Secret::new("s2")));

    assert!(store.delete_integration("default", "i1").await.unwrap());
    assert!(!store.delete_integration("default", "i1").await.unwrap());
    assert_eq!(secret_rows(b, "integration", "i1").await, 0);
}

pub(crate) async fn update_credentials_is_fenced_by_version(b: &impl Backend) {
    let store = b.store();
    let record = connection("c1", &[("access_token", "at-1"), ("refresh_token", "rt-1")]);
    store.insert_connection(&record).await.unwrap();

    let new = creds(&[("access_token", "at-2")]);
    let v2 =
        store.update_credentials("c1", 1, &update(&new, Some(at(1_900_003_600)))).await.unwrap();
    assert_eq!(v2, 2);
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials, creds(&[("access_token", "at-2"), ("refresh_token", "rt-1")]));
    assert_eq!(read.expires_at, Some(at(1_900_003_600)));
    assert_eq!(read.version, 2);

    // A second refresher that read version 1 loses, and changes nothing.
    let stale = creds(&[("access_token", "at-stale"), ("refresh_token", "rt-stale")]);
    let err = store.update_credentials("c1", 1, &update(&stale, None)).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { expected: 1, found: 2, .. }));
    assert_eq!(store.get_connection("c1").await.unwrap().unwrap(), read);

    // A status change is a write too.
    assert!(store.set_connection_status("c1", ConnectionStatus::NeedsReauth).await.unwrap());
    assert!(!store.set_connection_status("gone", ConnectionStatus::Ok).await.unwrap());
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!((read.status, read.version), (ConnectionStatus::NeedsReauth, 3));
    assert!(matches!(
        store.update_credentials("c1", 2, &update(&new, None)).await,
        Err(StoreError::VersionConflict { found: 3, .. })
    ));
    assert!(matches!(
        store.update_credentials("gone", 1, &update(&new, None)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub(crate) async fn update_credentials_merges_config_and_sets_status(b: &impl Backend) {
    let store = b.store();
    let mut record = connection("c9", &[("access_token", "old")]);
    record.config = BTreeMap::from([("a".to_string(), "1".to_string())]);
    let v = store.insert_connection(&record).await.unwrap();
    store.set_connection_status("c9", ConnectionStatus::NeedsReauth).await.unwrap();
    let up = CredentialUpdate {
        credentials: creds(&[("access_token", "new")]),
        expires_at: None,
        config: BTreeMap::from([("b".to_string(), "2".to_string())]),
        status: Some(ConnectionStatus::Ok),
    };
    store.update_credentials("c9", v + 1, &up).await.unwrap();
    let got = store.get_connection("c9").await.unwrap().unwrap();
    assert_eq!(got.config.len(), 2);
    assert_eq!(got.status, ConnectionStatus::Ok);
    assert_eq!(got.expires_at, None);
    assert_eq!(got.credentials["access_token"].expose(), "new");
}

/// Eight refreshers, half of them in a second process, all holding version 1: one wins.
pub(crate) async fn concurrent_refreshes_let_exactly_one_win(b: &impl Backend) {
    let first = b.store();
    let second = b.reopen(b.keyring()).await.unwrap();
    first.insert_connection(&connection("c1", &[("access_token", "at-0")])).await.unwrap();
    // Each task reads first (which also opens its pool connection), then all write at once.
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(if n % 2 == 0 { &first } else { &second });
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let read = store.get_connection("c1").await.unwrap().unwrap();
                start.wait().await;
                let new = creds(&[("access_token", &format!("at-{n}"))]);
                (n, store.update_credentials("c1", read.version, &update(&new, None)).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (n, Ok(version)) => {
                assert_eq!(version, 2);
                winners.push(n);
            }
            (_, Err(StoreError::VersionConflict { expected: 1, found: 2, .. })) => {}
            (_, Err(other)) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    let read = second.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.credentials["access_token"].expose(), format!("at-{}", winners[0]));
}

pub(crate) async fn ciphertext_moved_to_another_row_does_not_decrypt(b: &impl Backend) {
    let store = b.store();
    store
        .insert_connection(&connection("a", &[("api_key", "alpha-key"), ("password", "alpha-pw")]))
        .await
        .unwrap();
    store.insert_connection(&connection("b", &[("api_key", "beta-key")])).await.unwrap();
    let copy = |to_id: &str, to_field: &str| {
        format!(
            "UPDATE secrets SET (key_version, nonce, ciphertext) = (
                SELECT key_version, nonce, ciphertext FROM secrets
                WHERE owner_kind = 'connection' AND owner_id = 'a' AND field = 'api_key')
             WHERE owner_kind = 'connection' AND owner_id = '{to_id}' AND field = '{to_field}'"
        )
    };

    b.execute(&copy("b", "api_key")).await;
    assert!(matches!(
        store.get_connection("b").await,
        Err(StoreError::CredentialsUnreadable { connection, reason: CryptoError::Decrypt, .. })
            if connection == "b"
    ));
    b.execute(&copy("a", "password")).await;
    assert!(matches!(
        store.get_connection("a").await,
        Err(StoreError::CredentialsUnreadable { reason: CryptoError::Decrypt, .. })
    ));
}

pub(crate) async fn reopening_with_another_key_is_refused(b: &impl Backend) {
    // Initialised with a key check, even before the first secret.
    assert!(b.has_secrets().await);
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", "k-1")])).await.unwrap();
    assert!(b.has_secrets().await);

    let wrong = b.reopen(Keyring::single(MasterKey::generate())).await;
    assert!(matches!(wrong, Err(StoreError::WrongKey)), "{wrong:?}");
    let other_version = b.reopen(Keyring::new(2, MasterKey::generate())).await;
    assert!(matches!(other_version, Err(StoreError::WrongKey)), "{other_version:?}");

    let same = b.reopen(b.keyring()).await.unwrap();
    let read = same.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials, creds(&[("api_key", "k-1")]));

    // A rotated ring (new current key, old key kept) still opens the old secrets, and from
    // then on the database holds a check for each version.
    let new = MasterKey::generate();
    let new_copy = MasterKey::from_base64(new.to_base64().expose()).unwrap();
    let rotated = Keyring::new(2, new).with_key(1, b.key());
    let rotated = b.reopen(rotated).await.unwrap();
    assert!(rotated.get_connection("c1").await.unwrap().is_some());
    let only_new = b.reopen(Keyring::new(2, new_copy)).await.unwrap();
    // The new key alone passes the check but cannot open what the old one sealed.
    assert!(matches!(
        only_new.get_connection("c1").await,
        Err(StoreError::CredentialsUnreadable { reason: CryptoError::UnknownKeyVersion(1), .. })
    ));
}

/// A canary written as a credential, a refreshed token, a client secret, a PKCE verifier and a
/// script value appears nowhere in the database in plain, base64 or hex form.
pub(crate) async fn no_secret_reaches_the_database(b: &impl Backend) {
    let canaries = [
        "canary-api-key-5f3a9c2e71d4",
        "canary-refreshed-token-8b16e0",
        "canary-client-secret-c0ffee42",
        "canary-script-value-d15ea5e",
        "canary-pkce-verifier-0b5e55ed-0123456789abcdef",
    ];
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", canaries[0])])).await.unwrap();
    store
        .update_credentials("c1", 1, &update(&creds(&[("access_token", canaries[1])]), None))
        .await
        .unwrap();
    store.put_integration(&integration("i1", Some(canaries[2]))).await.unwrap();
    store.put_script_value("c1", "session", &Secret::new(canaries[3])).await.unwrap();
    let mut state = oauth_state("h1");
    state.pkce_verifier = Some(Secret::new(canaries[4]));
    store.put_oauth_state(&state).await.unwrap();

    let dump = b.dump().await;
    assert_absent(&dump, &canaries, "the database");
    // The non-secret columns are there, so the search itself works.
    assert!(dump.windows(10).any(|w| w == b"client-123"));
    assert!(dump.windows(11).any(|w| w == b"github-main"));
}

pub(crate) async fn custom_connectors_roundtrip(b: &impl Backend) {
    let store = b.store();
    store.put_custom_connector("zeta", "id: zeta\n").await.unwrap();
    store.put_custom_connector("acme", "id: acme\n").await.unwrap();
    store.put_custom_connector("acme", "id: acme\nname: Acme\n").await.unwrap();
    let listed = store.list_custom_connectors().await.unwrap();
    let pairs: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.source.as_str())).collect();
    assert_eq!(pairs, [("acme", "id: acme\nname: Acme\n"), ("zeta", "id: zeta\n")]);
    assert!(store.delete_custom_connector("acme").await.unwrap());
    assert!(!store.delete_custom_connector("acme").await.unwrap());
    assert_eq!(store.list_custom_connectors().await.unwrap().len(), 1);
}

pub(crate) async fn script_values_are_sealed_and_go_with_their_connection(b: &impl Backend) {
    let store = b.store();
    store.insert_connection(&connection("c1", &[])).await.unwrap();
    assert_eq!(store.script_value("c1", "cursor").await.unwrap(), None);
    store.put_script_value("c1", "cursor", &Secret::new("v1")).await.unwrap();
    store.put_script_value("c1", "cursor", &Secret::new("v2")).await.unwrap();
    store.put_script_value("c1", "a-token", &Secret::new("t")).await.unwrap();
    assert_eq!(store.script_value("c1", "cursor").await.unwrap(), Some(Secret::new("v2")));
    assert_eq!(store.script_keys("c1").await.unwrap(), ["a-token", "cursor"]);
    assert!(store.delete_script_value("c1", "a-token").await.unwrap());
    assert!(!store.delete_script_value("c1", "a-token").await.unwrap());
    assert_eq!(store.script_keys("c1").await.unwrap(), ["cursor"]);
    // Not part of the connection's credentials.
    assert!(store.get_connection("c1").await.unwrap().unwrap().credentials.is_empty());
    assert!(store.delete_connection("c1").await.unwrap());
    assert!(store.script_keys("c1").await.unwrap().is_empty());
}

pub(crate) async fn works_as_a_shared_trait_object<B: Backend>(b: &B) {
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    assert!(format!("{store:?}").contains(B::NAME));
    assert!(!format!("{:?}", store.get_connection("c1").await.unwrap()).contains("\"k\""));
}

/// A caller that needs one role takes it from the shared store (trait upcasting), and sees
/// the same database through it.
pub(crate) async fn a_shared_store_upcasts_to_each_role(b: &impl Backend) {
    let store = b.store();
    let integrations: Arc<dyn IntegrationStore> = store.clone();
    let connections: Arc<dyn ConnectionStore> = store.clone();
    let flows: Arc<dyn FlowStore> = store.clone();
    let scripts: Arc<dyn ScriptStorage> = store.clone();
    let keys: Arc<dyn KeyAdmin> = store.clone();
    integrations.put_integration(&integration("i1", Some("s"))).await.unwrap();
    connections.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    assert!(flows.try_lock("refresh:c1", "a", std::time::Duration::from_secs(30)).await.unwrap());
    scripts.put_script_value("c1", "cursor", &Secret::new("42")).await.unwrap();
    assert!(store.get_integration("default", "i1").await.unwrap().is_some());
    assert_eq!(store.get_connection("c1").await.unwrap().unwrap().version, 1);
    assert_eq!(store.locks_named("refresh:", false).await.unwrap(), ["refresh:c1"]);
    assert_eq!(store.script_keys("c1").await.unwrap(), ["cursor"]);
    let versions = keys.key_versions().await.unwrap();
    assert_eq!(versions.iter().map(|v| v.rows).sum::<u64>(), 3, "{versions:?}");
}

pub(crate) async fn connections_expiring_lists_ok_connections_soonest_first(b: &impl Backend) {
    let store = b.store();
    for (id, expires, status) in [
        ("late", Some(at(1_900_000_300)), ConnectionStatus::Ok),
        ("soon", Some(at(1_900_000_100)), ConnectionStatus::Ok),
        ("broken", Some(at(1_900_000_000)), ConnectionStatus::NeedsReauth),
        ("never", None, ConnectionStatus::Ok),
        ("beyond", Some(at(1_900_009_999)), ConnectionStatus::Ok),
    ] {
        let mut c = connection(id, &[]);
        c.expires_at = expires;
        c.status = status;
        store.insert_connection(&c).await.unwrap();
    }
    let before = at(1_900_001_000);
    let now = at(1_900_000_000);
    assert_eq!(expiring_ids(&*store, before, now, 10).await, ["soon", "late"]);
    assert_eq!(expiring_ids(&*store, before, now, 1).await, ["soon"]);
    let found =
        store.connections_expiring(before, std::time::Duration::ZERO, now, 1, &[]).await.unwrap();
    assert_eq!(found[0].connector, "github");
}

async fn expiring_ids(
    store: &dyn ConnectionStore,
    before: OffsetDateTime,
    now: OffsetDateTime,
    limit: u32,
) -> Vec<String> {
    store
        .connections_expiring(before, std::time::Duration::ZERO, now, limit, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// A connection whose refresh backs off leaves the window until its retry time, so one that
/// is due takes its place; the count grows with each failure, and a renewal or a reconnect
/// clears it.
pub(crate) async fn connections_backing_off_leave_the_expiring_window(b: &impl Backend) {
    let store = b.store();
    for (id, expires) in [("failing", 1_900_000_100), ("healthy", 1_900_000_200)] {
        let mut c = connection(id, &[]);
        c.expires_at = Some(at(expires));
        store.insert_connection(&c).await.unwrap();
    }
    let (before, now) = (at(1_900_001_000), at(1_900_000_000));
    assert_eq!(expiring_ids(&*store, before, now, 1).await, ["failing"]);
    assert_eq!(store.refresh_backoff("failing").await.unwrap(), Some(RefreshBackoff::default()));

    let retry = |failures: u32| at(1_900_000_000 + 30 * i64::from(failures));
    let first = store.record_refresh_failure("failing", now, &retry).await.unwrap().unwrap();
    let since = Some(now);
    assert_eq!(
        first,
        RefreshBackoff { failures: 1, retry_at: Some(at(1_900_000_030)), failing_since: since }
    );
    assert_eq!(store.refresh_backoff("failing").await.unwrap(), Some(first));
    assert_eq!(
        store.get_connection("failing").await.unwrap().unwrap().version,
        1,
        "no new version"
    );
    assert_eq!(expiring_ids(&*store, before, now, 1).await, ["healthy"]);
    assert_eq!(expiring_ids(&*store, before, at(1_900_000_029), 10).await, ["healthy"]);
    assert_eq!(expiring_ids(&*store, before, at(1_900_000_030), 10).await, ["failing", "healthy"]);

    // The run of failures keeps the time it began.
    let later = at(1_900_000_031);
    let second = store.record_refresh_failure("failing", later, &retry).await.unwrap().unwrap();
    assert_eq!(
        second,
        RefreshBackoff { failures: 2, retry_at: Some(at(1_900_000_060)), failing_since: since }
    );
    assert_eq!(store.record_refresh_failure("gone", now, &retry).await.unwrap(), None);
    assert_eq!(store.refresh_backoff("gone").await.unwrap(), None);

    // A renewal clears the back-off.
    let update = CredentialUpdate { expires_at: Some(at(1_900_000_100)), ..Default::default() };
    store.update_credentials("failing", 1, &update).await.unwrap();
    assert_eq!(store.refresh_backoff("failing").await.unwrap(), Some(RefreshBackoff::default()));
    assert_eq!(expiring_ids(&*store, before, now, 1).await, ["failing"]);

    // So does a reconnect.
    store.record_refresh_failure("failing", later, &retry).await.unwrap();
    let mut again = store.get_connection("failing").await.unwrap().unwrap();
    again.expires_at = Some(at(1_900_000_100));
    store.put_connection(&again).await.unwrap();
    assert_eq!(store.refresh_backoff("failing").await.unwrap(), Some(RefreshBackoff::default()));
}
