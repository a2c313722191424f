//! Tests of the SQLite store, in memory and on temporary files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use latchkey_core::Secret;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::crypto::{CryptoError, Keyring, MasterKey};
use crate::model::{
    ConnectSession, ConnectionRecord, ConnectionStatus, CredentialUpdate, IntegrationRecord,
    OAuthState, SessionStatus,
};
use crate::{Store, StoreError};

fn at(seconds: i64) -> OffsetDateTime {
    // Nanoseconds included, to check that timestamps round-trip exactly.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(seconds) * 1_000_000_000 + 123_456_789)
        .unwrap()
}

fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect()
}

fn connection(id: &str, credentials: &[(&str, &str)]) -> ConnectionRecord {
    ConnectionRecord {
        id: id.into(),
        connector: "github".into(),
        integration: Some("github-main".into()),
        auth_method: "oauth2".into(),
        credentials: creds(credentials),
        config: BTreeMap::from([("subdomain".into(), "acme".into())]),
        status: ConnectionStatus::Ok,
        label: Some("octocat".into()),
        end_user_id: Some("user-1".into()),
        expires_at: Some(at(1_900_000_000)),
        version: 1,
        created_at: at(1_800_000_000),
        updated_at: at(1_800_000_001),
    }
}

fn integration(id: &str, client_secret: Option<&str>) -> IntegrationRecord {
    IntegrationRecord {
        id: id.into(),
        connector: "github".into(),
        client_id: Some("client-123".into()),
        client_secret: client_secret.map(Secret::new),
        scopes: vec!["repo".into(), "read:user".into()],
        settings: serde_json::json!({ "base_url": "https://ghe.example.com" }),
        created_at: at(1_800_000_000),
        updated_at: at(1_800_000_002),
    }
}

async fn memory() -> SqliteStore {
    SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap()
}

async fn secret_rows(store: &SqliteStore, kind: &str, id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE owner_kind = ? AND owner_id = ?")
        .bind(kind)
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn connection_roundtrips_with_credentials() {
    let store = memory().await;
    let record = connection("c1", &[("access_token", "at-1"), ("refresh_token", "rt-1")]);
    assert_eq!(store.insert_connection(&record).await.unwrap(), 1);
    assert_eq!(store.get_connection("c1").await.unwrap(), Some(record.clone()));
    assert_eq!(store.get_connection("nope").await.unwrap(), None);

    let listed = store.list_connections().await.unwrap();
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
    assert_eq!(secret_rows(&store, "connection", "c1").await, 1);

    assert_eq!(store.put_connection(&connection("c2", &[])).await.unwrap(), 1);
}

#[tokio::test]
async fn integration_roundtrips_with_client_secret() {
    let store = memory().await;
    let record = integration("github-main", Some("cs-1"));
    store.put_integration(&record).await.unwrap();
    store.put_integration(&integration("a-first", None)).await.unwrap();
    assert_eq!(store.get_integration("github-main").await.unwrap(), Some(record.clone()));
    let ids: Vec<_> = store
        .list_integrations()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.id, i.client_secret))
        .collect();
    assert_eq!(
        ids,
        [("a-first".to_owned(), None), ("github-main".to_owned(), Some(Secret::new("cs-1")))]
    );

    store.put_integration(&integration("github-main", None)).await.unwrap();
    let read = store.get_integration("github-main").await.unwrap().unwrap();
    assert_eq!(read.client_secret, None);
    assert_eq!(secret_rows(&store, "integration", "github-main").await, 0);
}

#[tokio::test]
async fn delete_removes_the_record_and_its_secrets() {
    let store = memory().await;
    store.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    store.insert_connection(&connection("c2", &[("api_key", "k2")])).await.unwrap();
    store.put_integration(&integration("i1", Some("cs"))).await.unwrap();

    assert!(store.delete_connection("c1").await.unwrap());
    assert!(!store.delete_connection("c1").await.unwrap());
    assert_eq!(store.get_connection("c1").await.unwrap(), None);
    assert_eq!(secret_rows(&store, "connection", "c1").await, 0);
    assert_eq!(secret_rows(&store, "connection", "c2").await, 1);

    assert!(store.delete_integration("i1").await.unwrap());
    assert!(!store.delete_integration("i1").await.unwrap());
    assert_eq!(secret_rows(&store, "integration", "i1").await, 0);
}

#[tokio::test]
async fn update_credentials_is_fenced_by_version() {
    let store = memory().await;
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

#[tokio::test]
async fn concurrent_refreshes_on_a_file_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let store =
        Arc::new(SqliteStore::open(&path, Keyring::single(MasterKey::generate())).await.unwrap());
    store.insert_connection(&connection("c1", &[("access_token", "at-0")])).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let new = creds(&[("access_token", &format!("at-{n}"))]);
                store.update_credentials("c1", 1, &update(&new, None)).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => {
                assert_eq!(version, 2);
                wins += 1;
            }
            Err(StoreError::VersionConflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    store.close().await;
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_does_not_decrypt() {
    let store = memory().await;
    store
        .insert_connection(&connection("a", &[("api_key", "alpha-key"), ("password", "alpha-pw")]))
        .await
        .unwrap();
    store.insert_connection(&connection("b", &[("api_key", "beta-key")])).await.unwrap();
    let copy = |to_id: &'static str, to_field: &'static str| {
        sqlx::query(
            "UPDATE secrets SET (key_version, nonce, ciphertext) = (
                SELECT key_version, nonce, ciphertext FROM secrets
                WHERE owner_kind = 'connection' AND owner_id = 'a' AND field = 'api_key')
             WHERE owner_kind = 'connection' AND owner_id = ? AND field = ?",
        )
        .bind(to_id)
        .bind(to_field)
        .execute(&store.pool)
    };

    copy("b", "api_key").await.unwrap();
    assert!(matches!(
        store.get_connection("b").await,
        Err(StoreError::Crypto(CryptoError::Decrypt))
    ));
    copy("a", "password").await.unwrap();
    assert!(matches!(
        store.get_connection("a").await,
        Err(StoreError::Crypto(CryptoError::Decrypt))
    ));
}

#[tokio::test]
async fn reopening_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    assert!(!SqliteStore::has_secrets(&path).await.unwrap());

    let key = MasterKey::generate();
    let encoded = key.to_base64();
    let store = SqliteStore::open(&path, Keyring::single(key)).await.unwrap();
    store.insert_connection(&connection("c1", &[("api_key", "k-1")])).await.unwrap();
    store.close().await;
    assert!(SqliteStore::has_secrets(&path).await.unwrap());

    let wrong = SqliteStore::open(&path, Keyring::single(MasterKey::generate())).await;
    assert!(matches!(wrong, Err(StoreError::WrongKey)));
    let other_version = SqliteStore::open(&path, Keyring::new(2, MasterKey::generate())).await;
    assert!(matches!(other_version, Err(StoreError::WrongKey)));

    let same = MasterKey::from_base64(encoded.expose()).unwrap();
    let store = SqliteStore::open(&path, Keyring::single(same)).await.unwrap();
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials, creds(&[("api_key", "k-1")]));
    store.close().await;

    // A rotated ring (new current key, old key kept) still opens the old secrets.
    let old = MasterKey::from_base64(encoded.expose()).unwrap();
    let rotated = Keyring::new(2, MasterKey::generate()).with_key(1, old);
    let store = SqliteStore::open(&path, rotated).await.unwrap();
    assert!(store.get_connection("c1").await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn has_secrets_is_false_for_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert!(!SqliteStore::has_secrets(&path).await.unwrap());
}

fn forms(canary: &str) -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        ("plain", canary.as_bytes().to_vec()),
        ("base64", STANDARD.encode(canary).into_bytes()),
        ("base64url", URL_SAFE_NO_PAD.encode(canary).into_bytes()),
        ("hex", hex.clone().into_bytes()),
        ("HEX", hex.to_uppercase().into_bytes()),
    ]
}

fn assert_absent(file: &Path, canaries: &[&str]) {
    let bytes = std::fs::read(file).unwrap();
    for canary in canaries {
        for (form, needle) in forms(canary) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{form} form of a canary found in {}",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_the_database_files() {
    let canaries = [
        "canary-api-key-5f3a9c2e71d4",
        "canary-refreshed-token-8b16e0",
        "canary-client-secret-c0ffee42",
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let store = SqliteStore::open(&path, Keyring::single(MasterKey::generate())).await.unwrap();
    store.insert_connection(&connection("c1", &[("api_key", canaries[0])])).await.unwrap();
    store
        .update_credentials("c1", 1, &update(&creds(&[("access_token", canaries[1])]), None))
        .await
        .unwrap();
    store.put_integration(&integration("i1", Some(canaries[2]))).await.unwrap();

    // While open, the writes sit in the write-ahead log.
    let wal = dir.path().join("latchkey.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    assert_absent(&wal, &canaries);
    assert_absent(&path, &canaries);
    // The non-secret columns are there, so the search itself works.
    let wal_bytes = std::fs::read(&wal).unwrap();
    assert!(wal_bytes.windows(9).any(|w| w == b"client-12"));

    store.close().await;
    assert_absent(&path, &canaries);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn custom_connectors_roundtrip() {
    let store = memory().await;
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

#[tokio::test]
async fn works_as_a_shared_trait_object() {
    let store: Arc<dyn Store> = Arc::new(memory().await);
    store.insert_connection(&connection("c1", &[("api_key", "k")])).await.unwrap();
    assert!(format!("{store:?}").contains("SqliteStore"));
    assert!(!format!("{:?}", store.get_connection("c1").await.unwrap()).contains("\"k\""));
}

fn update(
    credentials: &BTreeMap<String, Secret>,
    expires_at: Option<OffsetDateTime>,
) -> CredentialUpdate {
    CredentialUpdate { credentials: credentials.clone(), expires_at, ..CredentialUpdate::default() }
}

#[tokio::test]
async fn update_credentials_merges_config_and_sets_status() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
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
    assert_eq!(got.credentials["access_token"].expose(), "new");
}

#[tokio::test]
async fn oauth_states_are_single_use_and_keep_the_verifier_sealed() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let state = OAuthState {
        state_hash: "h1".into(),
        connect_session: "cs1".into(),
        browser_hash: Some("b".into()),
        redirect_uri: "http://cb".into(),
        pkce_verifier: Some(Secret::new("v".repeat(43))),
        expires_at: now + time::Duration::minutes(10),
    };
    store.put_oauth_state(&state).await.unwrap();
    let taken = store.take_oauth_state("h1").await.unwrap().unwrap();
    assert_eq!(taken.pkce_verifier.unwrap().expose(), "v".repeat(43));
    assert_eq!(taken.browser_hash.as_deref(), Some("b"));
    assert!(store.take_oauth_state("h1").await.unwrap().is_none(), "a state is taken once");
}

#[tokio::test]
async fn connect_sessions_start_once() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let session = ConnectSession {
        id: "cs1".into(),
        token_hash: "th".into(),
        integration: "i".into(),
        connection_id: None,
        end_user_id: None,
        allowed_origin: Some("http://app".into()),
        config: BTreeMap::from([("shop".to_string(), "acme".to_string())]),
        status: SessionStatus::Pending,
        result_connection: None,
        error: None,
        expires_at: now + time::Duration::minutes(10),
        created_at: now,
    };
    store.create_connect_session(&session).await.unwrap();
    assert_eq!(store.find_connect_session("th").await.unwrap().unwrap().id, "cs1");
    assert!(store.start_connect_session("cs1").await.unwrap());
    assert!(!store.start_connect_session("cs1").await.unwrap());
    store.finish_connect_session("cs1", SessionStatus::Done, Some("c1"), None).await.unwrap();
    let got = store.get_connect_session("cs1").await.unwrap().unwrap();
    assert_eq!(got.status, SessionStatus::Done);
    assert_eq!(got.result_connection.as_deref(), Some("c1"));
    assert_eq!(got.config["shop"], "acme");
}

#[tokio::test]
async fn leases_exclude_other_holders_until_they_expire() {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    let long = std::time::Duration::from_secs(30);
    assert!(store.try_lock("refresh:c1", "a", long).await.unwrap());
    assert!(!store.try_lock("refresh:c1", "b", long).await.unwrap());
    assert!(store.try_lock("refresh:c1", "a", long).await.unwrap(), "the holder may renew");
    store.unlock("refresh:c1", "b").await.unwrap();
    assert!(!store.try_lock("refresh:c1", "b", long).await.unwrap(), "only the holder unlocks");
    store.unlock("refresh:c1", "a").await.unwrap();
    assert!(store.try_lock("refresh:c1", "b", std::time::Duration::ZERO).await.unwrap());
    assert!(store.try_lock("refresh:c1", "c", long).await.unwrap(), "an expired lease is free");
}
