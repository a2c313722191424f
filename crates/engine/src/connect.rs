//! Connecting end users: connect sessions (links that make one connection: 10 minutes by
//! default, up to 7 days) that let a browser finish a connection on the hosted connect page,
//! and the connect form for methods that ask for keys. The browser flows are in
//! `oauth2::connect` (authorization code, OAuth 1.0a, the CLI's loopback flow) and
//! `oauth2::device` (device authorization).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::connector::{AuthMethod, Grant};
use latchkey_store::{
    ConnectSession, ConnectionRecord, EndUser, IntegrationRecord, Metadata, SessionFailure,
    SessionStatus, Tags,
};
use time::Duration;
use url::Url;

use crate::oauth2::{hash, oauth_method, oauth1_flow_method};
use crate::{
    ConnectionId, ConnectorId, Engine, EngineError, EnvironmentId, FlowError, IntegrationId,
};

/// How long an authorization request stays usable, and a connect session by default.
pub(crate) const FLOW_LIFETIME: Duration = Duration::minutes(10);

/// The longest a connect link may stay usable (`expires_in`): a link sent by email or chat.
pub const MAX_SESSION_LIFETIME: Duration = Duration::days(7);

/// The shortest a connect link may stay usable: time to reach the provider and consent.
pub const MIN_SESSION_LIFETIME: Duration = Duration::minutes(1);

/// Connecting end users, from [`Engine::connect`].
#[derive(Debug, Clone, Copy)]
pub struct Connect<'e> {
    pub(crate) engine: &'e Engine,
}

/// What an app asks for when it starts a connect session.
#[derive(Debug, Clone)]
pub struct NewConnectSession {
    /// The integration to connect through.
    pub integration: IntegrationId,
    /// Set by [`NewConnectSession::for_connector`]: the session names a connector that needs
    /// no client (API key, Basic, a form login, …), and connects through the integration of
    /// the same id, made on first use.
    pub connector: Option<ConnectorId>,
    /// The environment the integration is in, and the connection will be.
    pub environment: EnvironmentId,
    /// The id the connection gets, or an existing connection to re-authorise.
    pub connection_id: Option<ConnectionId>,
    /// An existing connection of this environment to re-authorise in place (same id, tags,
    /// metadata, end user; its config is the base of the session's). Unlike `connection_id`,
    /// it must exist. See [`Connect::reconnecting`].
    pub reconnect: Option<ConnectionId>,
    /// How long the link stays usable, in seconds ([`MIN_SESSION_LIFETIME`] to
    /// [`MAX_SESSION_LIFETIME`]); default 10 minutes.
    pub expires_in: Option<u64>,
    /// The connector's auth method the end user connects with (its `id`); default: the
    /// method of the connection being re-authorised, else the connector's first.
    pub auth: Option<String>,
    /// The end user who connects; the connection gets it.
    pub end_user: Option<EndUser>,
    /// Tags the connection gets.
    pub tags: Tags,
    /// Metadata the connection gets.
    pub metadata: Metadata,
    /// The exact origin (`https://app.example`) the popup posts its result to.
    pub allowed_origin: Option<String>,
    /// Per-connection config (e.g. a shop subdomain the authorization URL needs).
    pub config: BTreeMap<String, String>,
}

impl NewConnectSession {
    /// A session for `integration` with nothing else set: a new connection, the connector's
    /// first method, no end user, no origin, no config.
    pub fn new(integration: IntegrationId) -> Self {
        Self {
            integration,
            connector: None,
            environment: EnvironmentId::default_environment(),
            connection_id: None,
            reconnect: None,
            expires_in: None,
            auth: None,
            end_user: None,
            tags: Tags::new(),
            metadata: Metadata::new(),
            allowed_origin: None,
            config: BTreeMap::new(),
        }
    }

    /// A session for `connector` directly, for a connector whose auth method needs no client
    /// (no OAuth): it connects through the integration with the connector's id, which is made
    /// (without client credentials) the first time.
    pub fn for_connector(connector: ConnectorId) -> Self {
        // A connector id (`a-z 0-9 - _`) is always a valid integration id.
        let integration = IntegrationId::new(connector.as_str())
            .unwrap_or_else(|_| unreachable!("connector ids are integration ids"));
        Self { connector: Some(connector), ..Self::new(integration) }
    }
}

fn origin_of(text: &str) -> Result<String, EngineError> {
    let url = Url::parse(text).map_err(|_| {
        EngineError::invalid(
            "allowed_origin",
            "allowed_origin must be an origin such as https://app.example",
        )
    })?;
    let origin = url.origin().ascii_serialization();
    if origin == "null" || origin != text.trim_end_matches('/') {
        return Err(EngineError::invalid(
            "allowed_origin",
            "allowed_origin must be an origin (scheme, host, port) without a path",
        ));
    }
    Ok(origin)
}

/// How long a new session's link lasts: `expires_in` seconds, checked against the bounds.
fn session_lifetime(expires_in: Option<u64>) -> Result<Duration, EngineError> {
    let Some(seconds) = expires_in else { return Ok(FLOW_LIFETIME) };
    let lifetime = i64::try_from(seconds).map(Duration::seconds).unwrap_or(Duration::MAX);
    if !(MIN_SESSION_LIFETIME..=MAX_SESSION_LIFETIME).contains(&lifetime) {
        return Err(EngineError::invalid(
            "expires_in",
            format!(
                "expires_in must be between {} and {} seconds (7 days)",
                MIN_SESSION_LIFETIME.whole_seconds(),
                MAX_SESSION_LIFETIME.whole_seconds()
            ),
        ));
    }
    Ok(lifetime)
}

/// How a session stands now: its stored status and failure, except that a session that made
/// no connection reads as failed with `flow_expired` once nothing can finish it any more (its
/// link expired and, if an attempt was under way, that attempt's ten minutes too).
pub fn session_standing(
    session: &ConnectSession,
    now: time::OffsetDateTime,
) -> (SessionStatus, Option<SessionFailure>) {
    let dead_at = match session.status {
        SessionStatus::Pending => session.expires_at,
        SessionStatus::Started => session.expires_at + FLOW_LIFETIME,
        SessionStatus::Done | SessionStatus::Failed => {
            return (session.status, session.error.clone());
        }
    };
    if now < dead_at {
        return (session.status, None);
    }
    let expired = EngineError::from(FlowError::Expired);
    (
        SessionStatus::Failed,
        Some(SessionFailure {
            code: expired.code().to_string(),
            message: "the connect link expired before a connection was made".into(),
        }),
    )
}

/// What a session records of a failed attempt: the error's code and public message.
pub(crate) fn failure_of(error: &EngineError) -> SessionFailure {
    SessionFailure { code: error.code().to_string(), message: error.public_message() }
}

impl Connect<'_> {
    /// A session that re-authorises `connection` (of `environment`) in place, through the
    /// integration it was made with: the same id, tags, metadata and end user.
    pub async fn reconnecting(
        &self,
        environment: EnvironmentId,
        connection: ConnectionId,
    ) -> Result<NewConnectSession, EngineError> {
        let existing = self.existing_in(&environment, &connection).await?;
        let integration = existing.integration.ok_or_else(|| {
            EngineError::invalid(
                "integration",
                format!(
                    "connection `{connection}` has no integration: name the `integration` to \
                     re-authorise it through"
                ),
            )
        })?;
        Ok(NewConnectSession {
            environment,
            reconnect: Some(connection),
            ..NewConnectSession::new(IntegrationId::new(&integration)?)
        })
    }

    /// The connection `id` of `environment`; one of another environment is not found either.
    async fn existing_in(
        &self,
        environment: &EnvironmentId,
        id: &ConnectionId,
    ) -> Result<ConnectionRecord, EngineError> {
        match self.engine.store.get_connection(id.as_str()).await? {
            Some(c) if c.environment == environment.as_str() => Ok(c),
            _ => Err(EngineError::ConnectionNotFound(id.to_string())),
        }
    }

    /// Starts a connect session; returns it and its token (shown once, stored only hashed).
    pub async fn create_session(
        &self,
        mut new: NewConnectSession,
    ) -> Result<(ConnectSession, Secret), EngineError> {
        crate::tags::check_all(&new.tags, &new.metadata, new.end_user.as_ref())?;
        let lifetime = session_lifetime(new.expires_in)?;
        let reconnecting = new.reconnect.is_some();
        if let Some(id) = new.reconnect.take() {
            if new.connection_id.is_some() {
                return Err(EngineError::invalid(
                    "reconnect",
                    "name either `reconnect` or `connection_id`, not both",
                ));
            }
            // The connection's config is where the flow starts from (a shop subdomain, a
            // region); the session's own values override it.
            let existing = self.existing_in(&new.environment, &id).await?;
            let mut config = existing.config;
            config.append(&mut new.config);
            new.config = config;
            new.connection_id = Some(id);
        }
        let integration = match &new.connector {
            Some(connector) => self.connector_integration(&new, connector).await?,
            None => {
                self.engine
                    .integration_record(new.environment.as_str(), new.integration.as_str())
                    .await?
            }
        };
        let allowed_origin = new.allowed_origin.as_deref().map(origin_of).transpose()?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        // Everything the end user's flow depends on is checked here, before a link exists: a
        // refusal after they typed a secret or consented wastes their effort.
        let existing = match &new.connection_id {
            Some(id) => self.engine.store.get_connection(id.as_str()).await?,
            None => None,
        };
        // Connection ids are unique across environments: one taken in another environment
        // cannot be re-authorised from here, nor be the id of a new connection.
        if let Some(existing) = &existing
            && existing.environment != integration.environment
        {
            return Err(EngineError::Conflict(format!("connection id `{}` is taken", existing.id)));
        }
        if let Some(existing) = &existing
            && existing.connector != entry.connector.id
        {
            return Err(EngineError::invalid(
                "connection_id",
                format!(
                    "connection `{}` uses connector `{}`, not `{}` of integration `{}`",
                    existing.id, existing.connector, entry.connector.id, integration.id
                ),
            ));
        }
        let auth_method = new.auth.or_else(|| existing.map(|c| c.auth_method));
        if let Some(auth) = &auth_method
            && entry.connector.auth_method(Some(auth)).is_none()
        {
            return Err(EngineError::auth_method_not_found(&entry.connector, auth.clone()));
        }
        let auth = auth_method.as_deref();
        if reconnecting
            && !(oauth_method(&entry.connector, auth)
                .is_some_and(|m| m.grant == Grant::AuthorizationCode)
                || oauth1_flow_method(&entry.connector, auth).is_some())
        {
            // The connect form makes new connections only.
            return Err(EngineError::invalid(
                "reconnect",
                "a reconnect link re-authorises through the provider's consent (OAuth2 \
                 authorization code or OAuth 1.0a); this auth method asks for keys: update the \
                 connection's credentials instead",
            ));
        }
        let config = crate::resolve_config(&entry.connector, new.config)?;
        let token = Secret::new(crate::random_token(32));
        let now = self.engine.clock.now();
        let session = ConnectSession {
            id: format!("cs_{}", crate::random_token(12)),
            token_hash: hash(&token),
            environment: integration.environment,
            integration: integration.id,
            connection_id: new.connection_id.map(String::from),
            auth_method,
            end_user: new.end_user,
            tags: new.tags,
            metadata: new.metadata,
            allowed_origin,
            config,
            status: SessionStatus::Pending,
            result_connection: None,
            error: None,
            expires_at: now + lifetime,
            created_at: now,
        };
        self.engine.store.create_connect_session(&session).await?;
        Ok((session, token))
    }

    /// The integration a session naming `connector` connects through: the one with the
    /// connector's id, made without client credentials if there is none. Refused when the auth
    /// method needs a client (OAuth), or when that id belongs to another connector's
    /// integration.
    async fn connector_integration(
        &self,
        new: &NewConnectSession,
        connector: &ConnectorId,
    ) -> Result<IntegrationRecord, EngineError> {
        let entry = self.engine.connector_entry(connector.as_str())?;
        let method = entry.connector.auth_method(new.auth.as_deref()).ok_or_else(|| {
            EngineError::auth_method_not_found(
                &entry.connector,
                new.auth.clone().unwrap_or_default(),
            )
        })?;
        if matches!(method, AuthMethod::OAuth2(_) | AuthMethod::OAuth1(_)) {
            return Err(EngineError::invalid(
                "connector",
                format!(
                    "auth method `{}` of connector `{connector}` needs a client (id and secret): \
                     create an integration for it (POST /v1/integrations) and name it as \
                     `integration`",
                    method.id()
                ),
            ));
        }
        let environment = new.environment.as_str();
        match self.engine.store.get_integration(environment, connector.as_str()).await? {
            Some(existing) if existing.connector == connector.as_str() => Ok(existing),
            Some(existing) => Err(EngineError::invalid(
                "connector",
                format!(
                    "integration `{}` exists for connector `{}`; name an integration instead",
                    existing.id, existing.connector
                ),
            )),
            None => {
                let made = self
                    .engine
                    .integrations()
                    .put(crate::NewIntegration {
                        environment: new.environment.clone(),
                        id: new.integration.clone(),
                        connector: connector.clone(),
                        client_id: None,
                        client_secret: None,
                        scopes: Vec::new(),
                    })
                    .await?;
                tracing::info!(integration = %made.id, environment, "integration made for a connect session naming its connector");
                Ok(made)
            }
        }
    }

    /// The unexpired session a connect link's token opens: one that has made no connection
    /// yet (an attempt abandoned at the provider, or failed, may be followed by another).
    pub async fn open_session(&self, token: &Secret) -> Result<ConnectSession, EngineError> {
        match self.engine.store.find_connect_session(&hash(token)).await? {
            Some(s)
                if s.status != SessionStatus::Done && s.expires_at > self.engine.clock.now() =>
            {
                Ok(s)
            }
            _ => Err(FlowError::SessionUnusable.into()),
        }
    }

    /// How `session` stands now (see [`session_standing`]).
    pub fn standing(&self, session: &ConnectSession) -> (SessionStatus, Option<SessionFailure>) {
        session_standing(session, self.engine.clock.now())
    }

    /// Whether the session's connector connects through a consent redirect.
    pub async fn session_uses_redirect(
        &self,
        session: &ConnectSession,
    ) -> Result<bool, EngineError> {
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let auth = session.auth_method.as_deref();
        Ok(oauth_method(&entry.connector, auth)
            .is_some_and(|m| m.grant == Grant::AuthorizationCode)
            || oauth1_flow_method(&entry.connector, auth).is_some())
    }

    /// The session with this token, whatever its status (for status polling).
    pub async fn session_by_token(
        &self,
        token: &Secret,
    ) -> Result<Option<ConnectSession>, EngineError> {
        Ok(self.engine.store.find_connect_session(&hash(token)).await?)
    }

    /// The connect session with this id.
    pub async fn session(&self, id: &str) -> Result<ConnectSession, EngineError> {
        self.engine
            .store
            .get_connect_session(id)
            .await?
            .ok_or_else(|| EngineError::ConnectSessionNotFound(id.to_string()))
    }

    /// The connector's name and the fields its connect form asks for (config, then credentials).
    pub async fn session_form(
        &self,
        session: &ConnectSession,
    ) -> Result<(String, Vec<latchkey_core::connector::FieldSpec>), EngineError> {
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let connector = &entry.connector;
        let mut fields: Vec<_> = connector
            .config
            .iter()
            .map(|f| latchkey_core::connector::FieldSpec {
                key: f.key.clone(),
                label: f.label.clone().unwrap_or_else(|| f.key.clone()),
                secret: false,
                pattern: f.pattern.clone(),
                hint: f.hint.clone(),
                optional: f.optional || f.default.is_some(),
            })
            .collect();
        if let Some(method) = connector.auth_method(session.auth_method.as_deref()) {
            fields.extend(method.fields());
        }
        Ok((connector.name.clone(), fields))
    }

    /// Creates the connection from a submitted connect form and finishes the session.
    pub async fn complete_session_form(
        &self,
        session: &ConnectSession,
        mut values: BTreeMap<String, Secret>,
    ) -> Result<ConnectionRecord, EngineError> {
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let mut config = BTreeMap::new();
        for field in &entry.connector.config {
            if let Some(value) = values.remove(&field.key) {
                config.insert(field.key.clone(), value.expose().to_string());
            }
        }
        let record = self
            .engine
            .connections()
            .create(crate::NewConnection {
                // Stored from checked ids: parsing them again cannot fail.
                environment: EnvironmentId::new(session.environment.as_str())?,
                id: session.connection_id.as_deref().map(ConnectionId::new).transpose()?,
                connector: ConnectorId::new(entry.connector.id.as_str())?,
                integration: Some(IntegrationId::new(integration.id.as_str())?),
                auth: session.auth_method.clone(),
                credentials: values,
                config,
                end_user: session.end_user.clone(),
                tags: session.tags.clone(),
                metadata: session.metadata.clone(),
                run_test: true,
            })
            .await?;
        self.engine
            .store
            .finish_connect_session(&session.id, SessionStatus::Done, Some(&record.id), None)
            .await?;
        Ok(record)
    }
}
