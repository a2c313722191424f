//! Creating, testing and removing connections: checking what the user supplied against the
//! connector, running the credential test, and storing the result.

use std::collections::{BTreeMap, BTreeSet};

use latchkey_core::auth::check_credentials;
use latchkey_core::connector::compile_pattern;
use latchkey_core::template::{self, Scope};
use latchkey_core::{AuthMethod, Connector, Secret};
use latchkey_store::{
    ConnectionDetails, ConnectionFilter, ConnectionRecord, ConnectionStatus, ConnectionSummary,
    EndUser, Metadata, Page, PageRequest, Tags,
};

use crate::import::ImportedTokens;
use crate::outbound::ApiRequest;
use crate::{
    ConnectionId, ConnectorId, Engine, EngineError, EnvironmentId, Event, IntegrationId, Revocation,
};

/// What a caller supplies to create a connection: [`NewConnection::new`] and the fields to set.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The environment it belongs to (its integration is looked up there).
    pub environment: EnvironmentId,
    /// Connection id; generated when absent. Ids are unique across environments.
    pub id: Option<ConnectionId>,
    /// The connector's id.
    pub connector: ConnectorId,
    /// The integration it belongs to, if any.
    pub integration: Option<IntegrationId>,
    /// Auth method name; the connector's first when absent.
    pub auth: Option<String>,
    /// Credential fields.
    pub credentials: BTreeMap<String, Secret>,
    /// Per-connection config.
    pub config: BTreeMap<String, String>,
    /// The end user who owns it, in the app's own terms.
    pub end_user: Option<EndUser>,
    /// The app's labels for filtering (checked: see [`crate::tags::check_tags`]).
    pub tags: Tags,
    /// Free JSON for the app (at most 16 KiB serialised).
    pub metadata: Metadata,
    /// Run the connector's test first and store only if it passes.
    pub run_test: bool,
}

impl NewConnection {
    /// A connection to `connector` with nothing else set: the `default` environment, a
    /// generated id, no integration, the connector's first auth method, no credentials or
    /// config, no credential test.
    pub fn new(connector: ConnectorId) -> Self {
        Self {
            environment: EnvironmentId::default_environment(),
            id: None,
            connector,
            integration: None,
            auth: None,
            credentials: BTreeMap::new(),
            config: BTreeMap::new(),
            end_user: None,
            tags: Tags::new(),
            metadata: Metadata::new(),
            run_test: false,
        }
    }
}

/// The result of a credential test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TestOutcome {
    /// Whether a test ran (false when the connector defines none).
    pub ran: bool,
    /// The status the API answered.
    pub status: Option<u16>,
    /// The label rendered from the response.
    pub label: Option<String>,
}

/// Fills defaults into `config` and checks it against the connector's config fields, and that
/// no value holds control bytes or does not fit where the connector's URL templates put it.
pub fn resolve_config(
    connector: &Connector,
    config: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, EngineError> {
    checked_config(connector, config, true)
}

/// Checks the values `config` gives as [`resolve_config`] does, without filling defaults or
/// asking for the required fields it leaves out (a connect session: the end user is asked).
pub(crate) fn check_known_config(
    connector: &Connector,
    config: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, EngineError> {
    checked_config(connector, config, false)
}

fn checked_config(
    connector: &Connector,
    mut config: BTreeMap<String, String>,
    complete: bool,
) -> Result<BTreeMap<String, String>, EngineError> {
    for key in config.keys() {
        if !connector.config.iter().any(|f| &f.key == key) {
            return Err(EngineError::invalid(
                format!("config.{key}"),
                format!("`{key}` is not a config field of connector `{}`", connector.id),
            ));
        }
    }
    for field in &connector.config {
        let value = match (config.get(&field.key), &field.default) {
            (Some(v), _) if !v.is_empty() => v.clone(),
            _ if !complete => {
                config.remove(&field.key);
                continue;
            }
            (_, Some(default)) => default.clone(),
            _ if field.optional => continue,
            _ => {
                return Err(EngineError::invalid(
                    format!("config.{}", field.key),
                    format!(
                        "config `{}` ({}) is required",
                        field.key,
                        field.label.as_deref().unwrap_or(&field.key)
                    ),
                ));
            }
        };
        if let Some(pattern) = &field.pattern {
            let re = compile_pattern(pattern).map_err(|message| EngineError::Connector {
                connector: connector.id.clone(),
                message: format!("config `{}`: {message}", field.key),
            })?;
            if !re.is_match(&value) {
                return Err(EngineError::invalid(
                    format!("config.{}", field.key),
                    format!("config `{}` must match {pattern}", field.key),
                ));
            }
        }
        config.insert(field.key.clone(), value);
    }
    crate::stored_values::check_config_values(connector, &config)?;
    Ok(config)
}

/// The engine's connections, from [`Engine::connections`].
#[derive(Debug, Clone, Copy)]
pub struct Connections<'e> {
    pub(crate) engine: &'e Engine,
}

impl Connections<'_> {
    /// Creates a connection: checks its fields, runs the credential test unless told not to,
    /// and stores it (credentials encrypted). Nothing is stored when any step fails.
    pub async fn create(&self, new: NewConnection) -> Result<ConnectionRecord, EngineError> {
        self.create_imported(new, ImportedTokens::default()).await
    }

    /// [`Connections::create`] for a connection moved from another system: an OAuth2 connection
    /// given an `access_token` (and a `refresh_token` if it has one) keeps them, with the
    /// expiry and granted scopes in `tokens`, and is refreshed before it expires like one made
    /// here; without a refresh token it is valid until it expires. `tokens` must be empty for
    /// any other connection.
    pub async fn create_imported(
        &self,
        new: NewConnection,
        tokens: ImportedTokens,
    ) -> Result<ConnectionRecord, EngineError> {
        let mut record = self.prepare(new, tokens, None).await?;
        record.version = self.engine.store.insert_connection(&record).await?;
        self.engine.connection_stored(&record);
        Ok(record)
    }

    /// Everything [`Connections::create_imported`] does but the write: the record to insert.
    /// In a batch (`batch` is `Some`), the integrations that exist are given (as
    /// `(environment, integration)`), and an id already
    /// stored is left for the batch insert to find.
    pub(crate) async fn prepare(
        &self,
        new: NewConnection,
        tokens: ImportedTokens,
        batch: Option<&BTreeSet<(String, String)>>,
    ) -> Result<ConnectionRecord, EngineError> {
        crate::tags::check_all(&new.tags, &new.metadata, new.end_user.as_ref())?;
        let entry = self.engine.connector_entry(new.connector.as_str())?;
        let connector = &entry.connector;
        let method = match connector.auth_method(new.auth.as_deref()) {
            Some(m) => m,
            None => {
                return Err(EngineError::auth_method_not_found(
                    connector,
                    new.auth.unwrap_or_default(),
                ));
            }
        };
        self.engine.environment(&new.environment).await?;
        if let Some(integration) = &new.integration
            && !match batch {
                Some(known) => {
                    known.contains(&(new.environment.as_str().to_owned(), integration.to_string()))
                }
                None => {
                    self.engine
                        .integration_exists(new.environment.as_str(), integration.as_str())
                        .await?
                }
            }
        {
            return Err(EngineError::IntegrationNotFound(integration.to_string()));
        }
        let credentials: BTreeMap<_, _> =
            new.credentials.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let oauth = match method {
            AuthMethod::OAuth2(m) => Some(m.as_ref()),
            _ => None,
        };
        let oauth1_flow = matches!(method, AuthMethod::OAuth1(m) if m.three_legged());
        let imports_tokens = (oauth.is_some() && credentials.contains_key("access_token"))
            || (oauth1_flow && credentials.contains_key("token"));
        if oauth.is_none() || !imports_tokens {
            tokens.refuse_without_access_token()?;
        }
        if imports_tokens {
            crate::import::check_imported_tokens(method, &credentials)?;
            if oauth1_flow && new.integration.is_none() {
                return Err(EngineError::invalid(
                    "integration",
                    "an OAuth 1.0a connection needs an integration (consumer key and secret)",
                ));
            }
        } else {
            check_credentials(method, &credentials)
                .map_err(|message| EngineError::invalid("credentials", message))?;
        }
        crate::stored_values::check_credential_bytes(method, &credentials)?;
        let (declared, kept) = crate::import::split_kept_config(method, new.config);
        let mut config = resolve_config(connector, declared)?;
        if !kept.is_empty() {
            config.extend(kept);
            crate::stored_values::check_config_values(connector, &config)?;
        }
        let id = match new.id {
            Some(id) => {
                if batch.is_none() && self.engine.store.get_connection(id.as_str()).await?.is_some()
                {
                    return Err(EngineError::Conflict(format!("connection `{id}`")));
                }
                id.into_string()
            }
            None => format!("conn_{}", crate::random_token(12)),
        };
        let now = self.engine.clock.now();
        let mut record = ConnectionRecord {
            id,
            environment: new.environment.into_string(),
            connector: connector.id.clone(),
            integration: new.integration.map(String::from),
            auth_method: method.id().to_string(),
            credentials,
            config,
            status: ConnectionStatus::Ok,
            health: latchkey_store::Health::default(),
            label: None,
            end_user: new.end_user,
            tags: new.tags,
            metadata: new.metadata,
            expires_at: None,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        if let Some(m) = oauth {
            if record.integration.is_none() && m.grant != latchkey_core::connector::Grant::JwtBearer
            {
                return Err(EngineError::invalid(
                    "integration",
                    "an OAuth2 connection needs an integration (client id and secret)",
                ));
            }
            if imports_tokens {
                tokens.apply(&mut record, now)?;
            } else {
                self.engine.initial_grant(connector, m, &mut record).await?;
            }
        }
        if let (AuthMethod::OAuth1(m), true, Some(integration)) =
            (method, oauth1_flow && imports_tokens, &record.integration)
        {
            let environment = record.environment.as_str();
            self.engine
                .add_oauth1_consumer(m, environment, integration, &mut record.credentials)
                .await?;
        }
        if let AuthMethod::Session(m) = method {
            self.engine.initial_login(connector, m, &mut record).await?;
        }
        if new.run_test {
            let outcome = self.engine.run_test(&record, connector).await;
            if let Some(health) = crate::health::after_test(&record.health, &outcome, now) {
                record.health = health;
            }
            record.label = outcome?.label;
        }
        Ok(record)
    }

    /// Runs the connector's credential test for a stored connection and records the label.
    pub async fn test(&self, id: &ConnectionId) -> Result<TestOutcome, EngineError> {
        let record = self.engine.connection_record(id.as_str()).await?;
        let entry = self.engine.connector_entry(&record.connector)?;
        let outcome = self.engine.run_test(&record, &entry.connector).await;
        let now = self.engine.clock.now();
        if let Some(health) = crate::health::after_test(&record.health, &outcome, now) {
            self.engine.record_health(&record, health).await?;
        }
        let status = match &outcome {
            Ok(_) => ConnectionStatus::Ok,
            Err(EngineError::TestFailed { status: 401 | 403 }) => ConnectionStatus::NeedsReauth,
            Err(_) => ConnectionStatus::Error,
        };
        if status != record.status {
            self.engine.store.set_connection_status(id.as_str(), status).await?;
            self.engine.forget(id.as_str());
        }
        outcome
    }

    /// Ok if connection `id` is in `environment`; [`EngineError::ConnectionNotFound`] if it
    /// is not — also when it exists in another environment, which must not show. A
    /// connection's environment never changes, so the check holds for what follows it. Read
    /// through the recent-connections cache: cheap on the proxy's path.
    pub async fn check_environment(
        &self,
        environment: &EnvironmentId,
        id: &ConnectionId,
    ) -> Result<(), EngineError> {
        let record = self.engine.recent_connection(id.as_str()).await?;
        if record.environment == environment.as_str() {
            Ok(())
        } else {
            Err(EngineError::ConnectionNotFound(id.to_string()))
        }
    }

    /// One page of the connections `filter` selects, without secrets, oldest first. Refuses a
    /// limit outside 1..=[`MAX_PAGE_SIZE`](latchkey_store::MAX_PAGE_SIZE) and tags that no connection could carry.
    pub async fn list(
        &self,
        filter: &ConnectionFilter,
        page: &PageRequest,
    ) -> Result<Page<ConnectionSummary>, EngineError> {
        crate::pages::check_limit(page)?;
        if let Some(key) = filter.tags.keys().find(|k| !crate::tags::tag_key_is_valid(k)) {
            return Err(EngineError::invalid(
                format!("tags[{}]", key.chars().take(crate::tags::MAX_TAG_KEY).collect::<String>()),
                "a tag key is lower-case `a-z`, `0-9`, `_`, `-` and `.`",
            ));
        }
        Ok(self.engine.store.list_connections(filter, page).await?)
    }

    /// Changes a connection's tags, metadata, end user or label (each `Some` replaces, each
    /// `None` keeps; see [`ConnectionDetails`]), after the same checks as on creation. Emits
    /// `connection.updated` and returns the connection as stored.
    pub async fn update(
        &self,
        id: &ConnectionId,
        details: ConnectionDetails,
    ) -> Result<ConnectionRecord, EngineError> {
        details.tags.as_ref().map(crate::tags::check_tags).transpose()?;
        details.metadata.as_ref().map(crate::tags::check_metadata).transpose()?;
        if let Some(Some(user)) = &details.end_user {
            crate::tags::check_end_user(user)?;
        }
        if let Some(Some(label)) = &details.label {
            crate::tags::check_label(label)?;
        }
        match self.engine.store.update_connection_details(id.as_str(), &details).await {
            Ok(_) => {}
            Err(latchkey_store::StoreError::NotFound { .. }) => {
                return Err(EngineError::ConnectionNotFound(id.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        self.engine.forget(id.as_str());
        let record = self.engine.connection_record(id.as_str()).await?;
        tracing::info!(connection = %id, "connection details updated");
        self.engine.events.emit(Event::updated(&record));
        Ok(record)
    }

    /// The stored connection with this id.
    pub async fn get(&self, id: &ConnectionId) -> Result<ConnectionRecord, EngineError> {
        self.engine.connection_record(id.as_str()).await
    }

    /// Deletes a connection and its credentials, then revokes its tokens at the provider where
    /// it allows it (the connector script's `revoke_connection` hook, else RFC 7009; best
    /// effort, within [`REVOCATION_TIMEOUT`](crate::REVOCATION_TIMEOUT)): the deletion stands
    /// whatever the provider does. Returns what became of the tokens, as the audit log's
    /// `connection.revocation` entry, the `connection.deleted` event and the log line say.
    /// A refresh in flight (on any instance) ends first, so it cannot write its tokens over a
    /// connection made again under the same id; past a refresh's longest wait this is
    /// [`EngineError::LeaseBusy`] and nothing is deleted.
    pub async fn delete(&self, id: &ConnectionId) -> Result<Revocation, EngineError> {
        let engine = self.engine;
        let (record, deleted) = engine
            .without_refresh_in_flight(id.as_str(), async {
                let record = engine.connection_record(id.as_str()).await?;
                let deleted = engine.store.delete_connection(id.as_str()).await?;
                Ok((record, deleted))
            })
            .await?;
        self.engine.forget(id.as_str());
        if !deleted {
            return Err(EngineError::ConnectionNotFound(id.to_string()));
        }
        let revocation = self.engine.revoke_tokens(&record).await;
        tracing::info!(connection = %id, revocation = %revocation, "connection deleted");
        self.engine.audit_revocation(&record, &revocation).await;
        self.engine.events.emit(Event::deleted(&record, &revocation));
        Ok(revocation)
    }
}

impl Engine {
    /// What follows a new connection's insert: the cache forgets the id, a log line, the
    /// `connection.created` event.
    pub(crate) fn connection_stored(&self, record: &ConnectionRecord) {
        self.forget(&record.id);
        tracing::info!(connection = %record.id, connector = %record.connector, "connection created");
        self.events.emit(crate::Event::created(record));
    }

    /// Whether the integration exists in `environment`.
    pub(crate) async fn integration_exists(
        &self,
        environment: &str,
        id: &str,
    ) -> Result<bool, EngineError> {
        Ok(self.store.get_integration(environment, id).await?.is_some())
    }

    /// The stored connection with this id (ids read from the store or a lease name).
    pub(crate) async fn connection_record(
        &self,
        id: &str,
    ) -> Result<ConnectionRecord, EngineError> {
        self.store
            .get_connection(id)
            .await?
            .ok_or_else(|| EngineError::ConnectionNotFound(id.to_string()))
    }

    /// Runs the connector's credential test for `record`, as an operation (kind `check`).
    pub(crate) async fn run_test(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
    ) -> Result<TestOutcome, EngineError> {
        let Some(test) = &connector.test else {
            return Ok(TestOutcome { ran: false, status: None, label: None });
        };
        let timed =
            crate::operations::Timed::about(self, latchkey_store::OperationKind::Check, record)
                .request(&test.method.to_ascii_uppercase(), None, &test.path);
        let outcome = self.run_test_request(record, connector, test).await;
        self.record_operation(match &outcome {
            Ok(done) => match done.status {
                Some(status) => timed.answered(status),
                None => timed.succeeded(),
            },
            Err(error) => timed.failed(error),
        });
        outcome
    }

    async fn run_test_request(
        &self,
        record: &ConnectionRecord,
        connector: &Connector,
        test: &latchkey_core::connector::TestRequest,
    ) -> Result<TestOutcome, EngineError> {
        let mut headers = http::HeaderMap::new();
        let misconfigured =
            |message: String| EngineError::Connector { connector: connector.id.clone(), message };
        for (name, value) in &test.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| misconfigured(format!("test header `{name}` is not a header name")))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|_| misconfigured(format!("test header `{name}` has an invalid value")))?;
            headers.insert(name, value);
        }
        let body = match &test.body {
            Some(body) => {
                if !headers.contains_key(http::header::CONTENT_TYPE) {
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                }
                bytes::Bytes::from(body.to_string())
            }
            None => bytes::Bytes::new(),
        };
        let request = ApiRequest {
            method: http::Method::from_bytes(test.method.as_bytes())
                .map_err(|_| misconfigured(format!("test method `{}` is invalid", test.method)))?,
            path: test.path.clone(),
            headers,
            body,
            ..ApiRequest::default()
        };
        let stored = record.version > 0;
        let response = match self.send_once(record, connector, request, stored).await? {
            crate::send::Sent::Response(response) => response,
            crate::send::Sent::Renew(_, event) => {
                return Err(EngineError::Script {
                    connector: connector.id.clone(),
                    event: event.into(),
                    error: latchkey_script::ScriptError::Thrown(
                        "the credential test asked for new credentials".into(),
                    ),
                });
            }
        };
        let status = response.status.as_u16();
        if !response.status.is_success() {
            return Err(EngineError::TestFailed { status });
        }
        let body = response.bytes().await?;
        let label = match &test.label {
            None => None,
            Some(label) => {
                let json: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let scope = Scope {
                    credentials: None,
                    config: Some(&record.config),
                    response: Some(&json),
                };
                match template::render(label, scope) {
                    Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
                    Ok(_) => None,
                    Err(message) => {
                        tracing::warn!(connector = %connector.id, %message, "test label not rendered");
                        None
                    }
                }
            }
        };
        Ok(TestOutcome { ran: true, status: Some(status), label })
    }
}
