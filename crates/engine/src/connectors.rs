//! Connectors: the catalog (built-in, file and custom connectors) and the custom connectors an
//! operator uploads, which are kept in the store and loaded into the catalog at start-up.

use std::sync::Arc;

use crate::{Catalog, CatalogEntry, ConnectorId, Engine, EngineError, Origin, scripts};

/// The engine's connectors, from [`Engine::connectors`].
#[derive(Debug, Clone, Copy)]
pub struct Connectors<'e> {
    pub(crate) engine: &'e Engine,
}

impl<'e> Connectors<'e> {
    /// The catalog.
    pub fn catalog(&self) -> &'e Catalog {
        &self.engine.catalog
    }

    /// The connector with this id.
    pub fn get(&self, id: &ConnectorId) -> Result<CatalogEntry, EngineError> {
        self.engine.connector_entry(id.as_str())
    }

    /// Stores a custom connector (YAML) and adds it to the catalog; a malformed one is refused
    /// with the parse error and changes nothing. The YAML is parsed and its script compiled on
    /// a blocking thread, so that an upload never holds the threads serving other requests.
    pub async fn put_custom(
        &self,
        id: &ConnectorId,
        source: &str,
    ) -> Result<CatalogEntry, EngineError> {
        let origin = format!("custom:{id}");
        let text = source.to_owned();
        let connector = tokio::task::spawn_blocking(move || {
            let connector = latchkey_core::connector::parse_connector(&text, &origin)?;
            scripts::check_connector_scripts(&connector, &text, &origin)?;
            Ok::<_, latchkey_core::connector::ConnectorError>(connector)
        })
        .await
        .map_err(|_| EngineError::Connector {
            connector: id.to_string(),
            message: "checking it failed".into(),
        })?
        .map_err(|e| EngineError::invalid("body", e.to_string()))?;
        if *id != connector.id {
            return Err(EngineError::invalid(
                "id",
                format!("the connector's id `{}` differs from `{id}`", connector.id),
            ));
        }
        self.engine.store.put_custom_connector(id.as_str(), source).await?;
        let entry = CatalogEntry { connector: Arc::new(connector), origin: Origin::Custom };
        self.engine.catalog.insert(entry.clone());
        Ok(entry)
    }

    /// Removes a custom connector. Built-in and file connectors cannot be removed this way.
    pub async fn delete_custom(&self, id: &ConnectorId) -> Result<(), EngineError> {
        match self.engine.catalog.get(id.as_str()) {
            Some(entry) if entry.origin == Origin::Custom => {
                self.engine.store.delete_custom_connector(id.as_str()).await?;
                self.engine.catalog.remove(id.as_str());
                Ok(())
            }
            Some(_) => Err(EngineError::invalid(
                "id",
                format!("connector `{id}` is not a custom connector and cannot be deleted"),
            )),
            None => Err(EngineError::ConnectorNotFound(id.to_string())),
        }
    }
}

impl Engine {
    /// The connector with this id (ids read from stored connections and integrations).
    pub(crate) fn connector_entry(&self, id: &str) -> Result<CatalogEntry, EngineError> {
        self.catalog.get(id).ok_or_else(|| EngineError::ConnectorNotFound(id.to_string()))
    }
}
