//! Connection credentials are bound to what decides where they may be sent (connector,
//! integration, auth method, config): a database edit of any of them makes the credentials
//! fail closed, a legitimate change through the store re-seals them, and credentials written
//! before the binding existed are bound when the store opens.

use std::collections::BTreeMap;

use latchkey_core::Secret;

use super::{Backend, connection, creds};
use crate::crypto::aad;
use crate::model::CredentialUpdate;
use crate::secret_rows::{AAD_BOUND, AAD_OWNER};
use crate::{CryptoError, StoreError};

fn is_unreadable(result: &Result<Option<crate::ConnectionRecord>, StoreError>, id: &str) -> bool {
    matches!(result, Err(StoreError::CredentialsUnreadable { connection, .. }) if connection == id)
}

pub(crate) async fn editing_where_a_credential_goes_in_the_database_fails_closed(b: &impl Backend) {
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", "bound-key")])).await.unwrap();
    assert_eq!(
        b.count("SELECT COUNT(*) FROM secrets WHERE owner_kind = 'connection' AND aad_version = 2")
            .await,
        1
    );
    let edits = [
        ("connector", "'evil'", "'github'"),
        ("config", r#"'{"subdomain":"evil.example/x"}'"#, r#"'{"subdomain":"acme"}'"#),
        ("config", r#"'{"subdomain":"acme","extra":"x"}'"#, r#"'{"subdomain":"acme"}'"#),
        ("auth_method", "'basic'", "'oauth2'"),
        ("integration", "'other'", "'github-main'"),
        ("integration", "NULL", "'github-main'"),
    ];
    for (column, evil, good) in edits {
        b.execute(&format!("UPDATE connections SET {column} = {evil} WHERE id = 'c1'")).await;
        let read = store.get_connection("c1").await;
        assert!(is_unreadable(&read, "c1"), "{column} = {evil}: {read:?}");
        let message = read.unwrap_err().to_string();
        assert!(message.contains("c1") && !message.contains("bound-key"), "{message}");
        b.execute(&format!("UPDATE connections SET {column} = {good} WHERE id = 'c1'")).await;
        let read = store.get_connection("c1").await.unwrap().unwrap();
        assert_eq!(read.credentials["api_key"].expose(), "bound-key", "{column} restored");
    }
    // The same JSON written differently binds the same config.
    b.execute(r#"UPDATE connections SET config = '{ "subdomain" : "acme" }' WHERE id = 'c1'"#)
        .await;
    assert!(store.get_connection("c1").await.unwrap().is_some());
}

pub(crate) async fn an_unbound_credential_put_in_place_is_refused(b: &impl Backend) {
    let store = b.store();
    store.insert_connection(&connection("c1", &[("api_key", "bound-key")])).await.unwrap();
    // Marking a bound row as written before binding makes it open with other associated data.
    b.execute("UPDATE secrets SET aad_version = 1 WHERE owner_kind = 'connection'").await;
    let read = store.get_connection("c1").await;
    assert!(is_unreadable(&read, "c1"), "{read:?}");
    // And an unbound row sealed by this key (an old backup, say) is refused at read time too.
    let sealed = b.keyring().seal(b"old-key", &aad("connection", "c1", "api_key"));
    b.execute(&format!(
        "UPDATE secrets SET aad_version = 1, nonce = {}, ciphertext = {} WHERE owner_id = 'c1'",
        b.bytes_literal(&sealed.nonce),
        b.bytes_literal(&sealed.ciphertext)
    ))
    .await;
    let read = store.get_connection("c1").await;
    assert!(
        matches!(
            &read,
            Err(StoreError::CredentialsUnreadable { reason: CryptoError::Malformed(_), .. })
        ),
        "{read:?}"
    );
}

pub(crate) async fn a_config_change_through_the_store_reseals_the_credentials(b: &impl Backend) {
    let store = b.store();
    store
        .insert_connection(&connection("c1", &[("access_token", "at-1"), ("refresh_token", "rt")]))
        .await
        .unwrap();
    // A refresh that writes a config value (OAuth `keep`, e.g. instance_url) and one token.
    let update = CredentialUpdate {
        credentials: creds(&[("access_token", "at-2")]),
        config: BTreeMap::from([("instance_url".to_owned(), "https://eu.example".to_owned())]),
        ..CredentialUpdate::default()
    };
    let version = store.update_credentials("c1", 1, &update).await.unwrap();
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials, creds(&[("access_token", "at-2"), ("refresh_token", "rt")]));
    assert_eq!(read.config["instance_url"], "https://eu.example");
    // Writing the same value again changes nothing that is bound.
    store.update_credentials("c1", version, &update).await.unwrap();
    assert!(store.get_connection("c1").await.unwrap().is_some());
    // A whole-record write (PATCH, re-authorisation) with another config binds to it.
    let mut record = read.clone();
    record.config.insert("subdomain".into(), "other".into());
    store.put_connection(&record).await.unwrap();
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials["refresh_token"].expose(), "rt");
    // A config change cannot be used to re-bind credentials that do not open.
    b.execute("UPDATE connections SET connector = 'evil' WHERE id = 'c1'").await;
    let moved = CredentialUpdate {
        config: BTreeMap::from([("instance_url".to_owned(), "https://evil.example".to_owned())]),
        ..CredentialUpdate::default()
    };
    let result = store.update_credentials("c1", read.version, &moved).await;
    assert!(matches!(result, Err(StoreError::CredentialsUnreadable { .. })), "{result:?}");
}

pub(crate) async fn credentials_sealed_before_binding_are_bound_when_the_store_opens(
    b: &impl Backend,
) {
    let store = b.store();
    store
        .insert_connection(&connection("c1", &[("api_key", "legacy-key"), ("password", "pw")]))
        .await
        .unwrap();
    store.put_script_value("c1", "s", &Secret::new("script-value")).await.unwrap();
    // Rewrite both credentials as an older Latchkey wrote them: owner-only associated data.
    let ring = b.keyring();
    for (field, value) in [("api_key", "legacy-key"), ("password", "pw")] {
        let sealed = ring.seal(value.as_bytes(), &aad("connection", "c1", field));
        b.execute(&format!(
            "UPDATE secrets SET aad_version = 1, nonce = {}, ciphertext = {}
             WHERE owner_kind = 'connection' AND owner_id = 'c1' AND field = '{field}'",
            b.bytes_literal(&sealed.nonce),
            b.bytes_literal(&sealed.ciphertext)
        ))
        .await;
    }
    let count = |version: i64| {
        format!(
            "SELECT COUNT(*) FROM secrets WHERE owner_kind = 'connection' AND aad_version = \
             {version}"
        )
    };
    assert_eq!(b.count(&count(AAD_OWNER)).await, 2);

    let reopened = b.reopen(b.keyring()).await.unwrap();
    assert_eq!(b.count(&count(AAD_OWNER)).await, 0);
    assert_eq!(b.count(&count(AAD_BOUND)).await, 2);
    let read = reopened.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(read.credentials, creds(&[("api_key", "legacy-key"), ("password", "pw")]));
    assert_eq!(reopened.script_value("c1", "s").await.unwrap().unwrap().expose(), "script-value");
    // Now bound: a connector edit fails closed.
    b.execute("UPDATE connections SET connector = 'evil' WHERE id = 'c1'").await;
    assert!(is_unreadable(&reopened.get_connection("c1").await, "c1"));
}
