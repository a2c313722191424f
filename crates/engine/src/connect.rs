//! Connecting end users: connect sessions (links that make one connection: 10 minutes by
//! default, up to 7 days) that let a browser finish a connection on the hosted connect page,
//! and the connect form for methods that ask for keys. The browser flows are in
//! `oauth2::connect` (authorization code, OAuth 1.0a, the CLI's loopback flow) and
//! `oauth2::device` (device authorization).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::connector::{AuthMethod, FieldProblem, FieldSpec, Grant};
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

/// What the connect page shows for a session: the connector, whether it goes on to the
/// provider's consent page, and the fields to ask: config the app did not pass (a
/// connector default pre-filled; before a consent redirect only required config without a
/// default), then the auth method's credential fields (none before a redirect).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionForm {
    /// The integration the session connects through.
    pub integration: String,
    /// The connector's id.
    pub connector: String,
    /// The connector's display name.
    pub name: String,
    /// The flow goes on to the provider's consent page (OAuth).
    pub redirect: bool,
    /// The fields to ask, in order.
    pub fields: Vec<FieldSpec>,
}

/// One integration a connect link offers to pick from.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The integration's id.
    pub integration: String,
    /// Its connector's id.
    pub connector: String,
    /// Its connector's display name.
    pub name: String,
    /// Its connector's catalog category.
    pub category: Option<String>,
}

impl SessionForm {
    /// The fields whose submitted value is refused, and why (a missing value reads as empty).
    /// A pattern that does not compile is the connector's mistake.
    pub fn problems(
        &self,
        values: &BTreeMap<String, Secret>,
    ) -> Result<BTreeMap<String, FieldProblem>, EngineError> {
        let mut out = BTreeMap::new();
        for field in &self.fields {
            let value = values.get(&field.key).map_or("", Secret::expose);
            let problem = field.problem(value).map_err(|message| EngineError::Connector {
                connector: self.connector.clone(),
                message: format!("field `{}`: {message}", field.key),
            })?;
            if let Some(problem) = problem {
                out.insert(field.key.clone(), problem);
            }
        }
        Ok(out)
    }

    /// Refuses a submission with a field left empty or not matching its pattern, naming the
    /// first such field of the form.
    fn check(&self, values: &BTreeMap<String, Secret>) -> Result<(), EngineError> {
        let problems = self.problems(values)?;
        let Some((field, problem)) =
            self.fields.iter().find_map(|f| problems.get(&f.key).map(|p| (f, p)))
        else {
            return Ok(());
        };
        let label = &field.label;
        Err(EngineError::invalid(
            field.key.clone(),
            match problem {
                FieldProblem::Missing => format!("{label} is required"),
                FieldProblem::Mismatch => format!(
                    "{label} does not have the expected format ({})",
                    field.pattern.as_deref().unwrap_or_default()
                ),
            },
        ))
    }
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
    /// Per-connection config (e.g. a shop subdomain the authorization URL needs). Values
    /// given are checked now; required ones left out are asked of the end user on the page.
    pub config: BTreeMap<String, String>,
    /// Integrations the end user picks from on the connect page (`integration` ignored; with
    /// one, the page goes straight to it); empty: the session connects through `integration`.
    pub choices: Vec<IntegrationId>,
    /// The language the connect page speaks; the browser's `Accept-Language` decides when
    /// `None`. The server checks it against its catalogs.
    pub lang: Option<String>,
    /// Where a full-page flow (no `latchkey.js`) ends: an http(s) URL on `allowed_origin`,
    /// which it requires. The page sends the browser there with the outcome in its query.
    pub return_url: Option<String>,
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
            choices: Vec::new(),
            lang: None,
            return_url: None,
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

/// A full-page flow's `return_url`: an http(s) URL without credentials or fragment, on the
/// session's `allowed_origin` (the app's origin, which the page already trusts with the result).
fn return_url_of(text: &str, allowed_origin: Option<&str>) -> Result<String, EngineError> {
    let url = Url::parse(text).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.username().is_empty()
            && u.password().is_none()
            && u.fragment().is_none()
    });
    let Some(url) = url else {
        return Err(EngineError::invalid(
            "return_url",
            "return_url must be an http or https URL without credentials or fragment",
        ));
    };
    match allowed_origin {
        Some(origin) if url.origin().ascii_serialization() == origin => Ok(url.to_string()),
        Some(origin) => Err(EngineError::invalid(
            "return_url",
            format!("return_url must be on the session's allowed_origin {origin}"),
        )),
        None => Err(EngineError::invalid(
            "return_url",
            "return_url needs allowed_origin: the page returns only to the app's own origin",
        )),
    }
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
        let choices = self.check_choices(&new).await?;
        let integration = match &new.connector {
            Some(connector) => self.connector_integration(&new, connector).await?,
            None => {
                let first = choices.first().unwrap_or(&new.integration);
                self.engine.integration_record(new.environment.as_str(), first.as_str()).await?
            }
        };
        let allowed_origin = new.allowed_origin.as_deref().map(origin_of).transpose()?;
        let return_url = new
            .return_url
            .as_deref()
            .map(|u| return_url_of(u, allowed_origin.as_deref()))
            .transpose()?;
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
        // Defaults are filled in when the flow runs, so the page can tell the app's values
        // (not shown) from the connector's defaults (shown, editable).
        let config = crate::connections::check_known_config(&entry.connector, new.config)?;
        let token = Secret::new(crate::random_token(32));
        let now = self.engine.clock.now();
        let session = ConnectSession {
            id: format!("cs_{}", crate::random_token(12)),
            token_hash: hash(&token),
            environment: integration.environment,
            integration: integration.id,
            choices: if choices.len() > 1 {
                choices.iter().map(|c| c.to_string()).collect()
            } else {
                Vec::new()
            },
            lang: new.lang,
            return_url,
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

    /// The integrations a session offers to pick from: none, or two or more distinct ones of
    /// its environment. A pick cannot take the app's `config`, `auth` or `reconnect`, which
    /// belong to one connector.
    async fn check_choices(
        &self,
        new: &NewConnectSession,
    ) -> Result<Vec<IntegrationId>, EngineError> {
        if new.choices.is_empty() {
            return Ok(Vec::new());
        }
        let refuse = |m: &str| Err(EngineError::invalid("integrations", m.to_string()));
        if new.choices.len() == 1 {
            // One to pick from: the page goes straight to it.
            return Ok(new.choices.clone());
        }
        if new.connector.is_some() || new.connection_id.is_some() || new.reconnect.is_some() {
            return refuse(
                "a pick of integrations makes a new connection: no `connector`, `connection_id` or `reconnect`",
            );
        }
        if new.auth.is_some() || !new.config.is_empty() {
            return refuse(
                "a pick of integrations takes no `auth` or `config`: they belong to one connector",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for choice in &new.choices {
            if !seen.insert(choice.as_str()) {
                return refuse(&format!("`{choice}` is named twice"));
            }
            self.engine.integration_record(new.environment.as_str(), choice.as_str()).await?;
        }
        Ok(new.choices.clone())
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

    /// What the connect page shows for `session` (see [`SessionForm`]).
    pub async fn session_form(&self, session: &ConnectSession) -> Result<SessionForm, EngineError> {
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let connector = &entry.connector;
        let redirect = self.session_uses_redirect(session).await?;
        let known = |key: &str| session.config.get(key).is_some_and(|v| !v.is_empty());
        let mut fields: Vec<FieldSpec> = connector
            .config
            .iter()
            .filter(|f| !known(&f.key))
            // Before a consent redirect only what the flow cannot do without is asked.
            .filter(|f| !redirect || (!f.optional && f.default.is_none()))
            .map(FieldSpec::from)
            .collect();
        if !redirect && let Some(method) = connector.auth_method(session.auth_method.as_deref()) {
            fields.extend(method.fields());
        }
        Ok(SessionForm {
            integration: integration.id,
            connector: connector.id.clone(),
            name: connector.name.clone(),
            redirect,
            fields,
        })
    }

    /// The integrations `session` offers to pick from, with their connectors' names; empty
    /// when it names one integration.
    pub async fn session_choices(
        &self,
        session: &ConnectSession,
    ) -> Result<Vec<Choice>, EngineError> {
        let mut out = Vec::with_capacity(session.choices.len());
        for id in &session.choices {
            let integration = self.engine.integration_record(&session.environment, id).await?;
            let entry = self.engine.connector_entry(&integration.connector)?;
            out.push(Choice {
                integration: integration.id,
                connector: entry.connector.id.clone(),
                name: entry.connector.name.clone(),
                category: entry.connector.category.clone(),
            });
        }
        Ok(out)
    }

    /// Records the end user's pick among the session's integrations; returns the session as
    /// it now stands. One it does not offer is refused.
    pub async fn choose(
        &self,
        session: &ConnectSession,
        integration: &str,
    ) -> Result<ConnectSession, EngineError> {
        if !session.choices.iter().any(|c| c == integration) {
            return Err(EngineError::invalid(
                "integration",
                format!("`{integration}` is not one of this link's integrations"),
            ));
        }
        self.record_choice(session, integration, session.config.clone()).await
    }

    /// Adds the config the end user typed (checked against the fields the form asked for) to
    /// a session about to go to the provider; returns the session as it now stands.
    pub async fn add_config(
        &self,
        session: &ConnectSession,
        values: BTreeMap<String, String>,
    ) -> Result<ConnectSession, EngineError> {
        let form = self.session_form(session).await?;
        let secrets: BTreeMap<String, Secret> =
            values.iter().map(|(k, v)| (k.clone(), Secret::new(v.as_str()))).collect();
        form.check(&secrets)?;
        let mut config = session.config.clone();
        for field in &form.fields {
            if let Some(value) = values.get(&field.key).filter(|v| !v.is_empty()) {
                config.insert(field.key.clone(), value.clone());
            }
        }
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let config = crate::connections::check_known_config(&entry.connector, config)?;
        self.record_choice(session, &session.integration.clone(), config).await
    }

    async fn record_choice(
        &self,
        session: &ConnectSession,
        integration: &str,
        config: BTreeMap<String, String>,
    ) -> Result<ConnectSession, EngineError> {
        if !self.engine.store.choose_for_connect_session(&session.id, integration, &config).await? {
            return Err(FlowError::SessionUnusable.into());
        }
        Ok(ConnectSession { integration: integration.to_string(), config, ..session.clone() })
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
        let form = self.session_form(session).await?;
        form.check(&values)?;
        // The app's values stand; the end user's fill in the rest, then the defaults.
        let mut config = session.config.clone();
        for field in &entry.connector.config {
            if let Some(value) = values.remove(&field.key)
                && !config.contains_key(&field.key)
                && !value.expose().is_empty()
            {
                config.insert(field.key.clone(), value.expose().to_string());
            }
        }
        values.retain(|_, v| !v.expose().is_empty());
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
