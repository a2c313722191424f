//! The engine the integration tests run: one connector (`prov`) from YAML, over a store, with an
//! integration `app` (client `cid`, secret `csecret`).

use std::sync::Arc;

use latchkey_core::Secret;
use latchkey_engine::{Catalog, Engine, NewIntegration, Origin};
use latchkey_store::{Keyring, MasterKey, SqliteStore};

pub async fn engine_over(store: SqliteStore, connector_yaml: &str) -> Arc<Engine> {
    let catalog = Catalog::default();
    catalog.add_source(connector_yaml, "test.yaml", Origin::Custom).unwrap();
    let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
    let engine = Engine::new(Arc::new(store), catalog, net).await.unwrap();
    engine
        .put_integration(NewIntegration {
            id: "app".into(),
            connector: "prov".into(),
            client_id: Some("cid".into()),
            client_secret: Some(Secret::new("csecret")),
            scopes: vec![],
        })
        .await
        .unwrap();
    Arc::new(engine)
}

/// The same over an in-memory store.
pub async fn engine(connector_yaml: &str) -> Arc<Engine> {
    let store = SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
    engine_over(store, connector_yaml).await
}
