//! The authorization-code connect flow: connect sessions (single-use, 10 minutes), the
//! authorization request with a 256-bit single-use `state` and PKCE S256, and the callback,
//! which checks state, browser binding and `iss` (RFC 9207) before any token request.
//! The CLI runs the same flow with a loopback redirect (RFC 8252).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::connector::{Grant, OAuth1Auth};
use latchkey_core::oauth2::{AuthorizeRequest, PkceVerifier, TokenGrant, authorize_url};
use latchkey_store::{
    ConnectSession, ConnectionRecord, ConnectionStatus, OAuthState, SessionStatus,
};
use time::Duration;
use url::Url;

use super::oauth1::oauth1_flow_method;
use super::{ResolvedOAuth, hash, oauth_method};
use crate::events::Event;
use crate::{Engine, EngineError, FlowError, check_connection_id};

/// How long a connect session and an authorization request stay usable.
const FLOW_LIFETIME: Duration = Duration::minutes(10);

/// What an app asks for when it starts a connect session.
#[derive(Debug, Clone, Default)]
pub struct NewConnectSession {
    /// The integration to connect through.
    pub integration: String,
    /// The id the connection gets, or an existing connection to re-authorise.
    pub connection_id: Option<String>,
    /// The connector's auth method the end user connects with (its `id`); default: the
    /// method of the connection being re-authorised, else the connector's first.
    pub auth: Option<String>,
    /// The app's id for its end user.
    pub end_user_id: Option<String>,
    /// The exact origin (`https://app.example`) the popup posts its result to.
    pub allowed_origin: Option<String>,
    /// Per-connection config (e.g. a shop subdomain the authorization URL needs).
    pub config: BTreeMap<String, String>,
}

/// The query of a callback.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// `state`.
    pub state: Option<Secret>,
    /// `code`.
    pub code: Option<Secret>,
    /// `error`, when the provider (or the user) refused.
    pub error: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// Every other parameter, for the connector's `callback_keep`.
    pub extra: BTreeMap<String, String>,
}

impl CallbackParams {
    /// Splits a callback's query pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut out = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "state" => out.state = Some(Secret::new(v)),
                "code" => out.code = Some(Secret::new(v)),
                "error" => out.error = Some(v.chars().take(100).collect()),
                "iss" => out.iss = Some(v),
                _ => {
                    out.extra.insert(k, v);
                }
            }
        }
        // OAuth 1.0a (RFC 5849 §2.2): the temporary token comes back in place of `state`, the
        // verifier in place of the code.
        if out.state.is_none() {
            out.state = out.extra.remove("oauth_token").map(Secret::new);
        }
        if out.code.is_none() {
            out.code = out.extra.remove("oauth_verifier").map(Secret::new);
        }
        // Some OAuth 1.0a providers (Twitter's, for one) send `denied=<token>` on refusal.
        if out.error.is_none()
            && let Some(token) = out.extra.remove("denied")
        {
            out.error = Some("access_denied".into());
            out.state = out.state.or(Some(Secret::new(token)));
        }
        out
    }
}

/// How a connector connects through the browser.
#[derive(Debug, Clone)]
enum FlowMethod {
    /// The OAuth2 authorization-code grant.
    OAuth2(Box<ResolvedOAuth>),
    /// The OAuth 1.0a three-legged flow.
    OAuth1(Box<OAuth1Auth>),
}

impl FlowMethod {
    /// The auth method's id, as connections record it.
    fn id(&self) -> String {
        let (id, kind) = match self {
            FlowMethod::OAuth2(oauth) => (&oauth.method.id, "oauth2"),
            FlowMethod::OAuth1(method) => (&method.id, "oauth1"),
        };
        id.clone().unwrap_or_else(|| kind.to_string())
    }
}

/// Who the connection being authorised is.
#[derive(Debug)]
struct NewRecord {
    id: Option<String>,
    end_user_id: Option<String>,
    config: BTreeMap<String, String>,
}

/// An authorization request the CLI started (kept in memory, never stored).
#[derive(Debug)]
pub struct LocalFlow {
    method: FlowMethod,
    config: BTreeMap<String, String>,
    integration: String,
    state: Secret,
    /// The PKCE verifier (OAuth2) or the temporary token secret (OAuth1).
    verifier: Option<Secret>,
    redirect_uri: String,
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

impl Engine {
    /// Starts a connect session; returns it and its token (shown once, stored only hashed).
    pub async fn create_connect_session(
        &self,
        new: NewConnectSession,
    ) -> Result<(ConnectSession, Secret), EngineError> {
        let integration = self.integration(&new.integration).await?;
        self.connector(&integration.connector)?;
        if let Some(id) = &new.connection_id {
            check_connection_id(id)?;
        }
        let allowed_origin = new.allowed_origin.as_deref().map(origin_of).transpose()?;
        let entry = self.connector(&integration.connector)?;
        let auth_method = match (new.auth, &new.connection_id) {
            (Some(auth), _) => {
                if entry.connector.auth_method(Some(&auth)).is_none() {
                    return Err(EngineError::AuthMethodNotFound {
                        connector: entry.connector.id.clone(),
                        method: auth,
                        available: entry
                            .connector
                            .auth
                            .iter()
                            .map(|m| m.id())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                Some(auth)
            }
            (None, Some(id)) => self.store.get_connection(id).await?.map(|c| c.auth_method),
            (None, None) => None,
        };
        let config = crate::resolve_config(&entry.connector, new.config)?;
        let token = Secret::new(crate::random_token(32));
        let now = self.clock.now();
        let session = ConnectSession {
            id: format!("cs_{}", crate::random_token(12)),
            token_hash: hash(&token),
            integration: integration.id,
            connection_id: new.connection_id,
            auth_method,
            end_user_id: new.end_user_id,
            allowed_origin,
            config,
            status: SessionStatus::Pending,
            result_connection: None,
            error: None,
            expires_at: now + FLOW_LIFETIME,
            created_at: now,
        };
        self.store.create_connect_session(&session).await?;
        Ok((session, token))
    }

    /// The pending, unexpired session a connect link's token opens.
    pub async fn open_connect_session(
        &self,
        token: &Secret,
    ) -> Result<ConnectSession, EngineError> {
        match self.store.find_connect_session(&hash(token)).await? {
            Some(s) if s.status == SessionStatus::Pending && s.expires_at > self.clock.now() => {
                Ok(s)
            }
            _ => Err(FlowError::SessionUnusable.into()),
        }
    }

    /// Whether the session's connector connects through a consent redirect.
    pub async fn session_uses_redirect(
        &self,
        session: &ConnectSession,
    ) -> Result<bool, EngineError> {
        let integration = self.integration(&session.integration).await?;
        let entry = self.connector(&integration.connector)?;
        let auth = session.auth_method.as_deref();
        Ok(oauth_method(&entry.connector, auth)
            .is_some_and(|m| m.grant == Grant::AuthorizationCode)
            || oauth1_flow_method(&entry.connector, auth).is_some())
    }

    /// Marks the session used and returns the provider URL to send the browser to. The state
    /// is bound to this session and to `browser_binding` (a cookie the callback must carry).
    pub async fn begin_authorization(
        &self,
        session: &ConnectSession,
        redirect_uri: &str,
        browser_binding: &Secret,
    ) -> Result<Url, EngineError> {
        let integration = self.integration(&session.integration).await?;
        let entry = self.connector(&integration.connector)?;
        let method = self
            .flow_method(&entry.connector, session.auth_method.as_deref(), &session.config)
            .await?;
        if !self.store.start_connect_session(&session.id).await? {
            return Err(FlowError::SessionUnusable.into());
        }
        let (url, state, verifier) = self
            .start_flow(&entry.connector, &method, &integration, &session.config, redirect_uri)
            .await?;
        self.store
            .put_oauth_state(&OAuthState {
                state_hash: hash(&state),
                connect_session: session.id.clone(),
                browser_hash: Some(hash(browser_binding)),
                redirect_uri: redirect_uri.to_string(),
                pkce_verifier: verifier,
                expires_at: self.clock.now() + FLOW_LIFETIME,
            })
            .await?;
        Ok(url)
    }

    async fn authorize_url_for(
        &self,
        oauth: &ResolvedOAuth,
        integration: &latchkey_store::IntegrationRecord,
        redirect_uri: &str,
        state: &Secret,
        verifier: Option<&PkceVerifier>,
    ) -> Result<Url, EngineError> {
        let endpoint = oauth.authorize_url.as_ref().ok_or_else(|| EngineError::Connector {
            connector: integration.connector.clone(),
            message: "its OAuth2 method has no authorization endpoint (authorize_url, or an \
                          issuer whose discovery document names one)"
                .into(),
        })?;
        let client_id =
            integration.client_id.as_deref().ok_or_else(|| EngineError::IncompleteIntegration {
                integration: integration.id.clone(),
                message: "has no client id".into(),
            })?;
        let scopes = Self::scopes(oauth, integration);
        let challenge = verifier.map(PkceVerifier::challenge);
        let url = authorize_url(
            &oauth.method,
            AuthorizeRequest {
                endpoint,
                client_id,
                redirect_uri,
                scopes: &scopes,
                state: state.expose(),
                code_challenge: challenge.as_deref(),
            },
        );
        let entry = self.connector(&integration.connector)?;
        let scope = crate::scripts::HookScope {
            connection: None,
            policy: super::endpoint_policy(endpoint)?,
            auth_value: None,
            credentials: None,
            config: Default::default(),
            secrets: integration.client_secret.iter().cloned().collect(),
        };
        self.before_authorise(&entry.connector, scope, url).await
    }

    /// Finishes a flow from its callback. Nothing is sent to the token endpoint unless the state
    /// is known, unused, unexpired and bound to this browser, and `iss` (if sent) matches.
    /// On failure the session (when known) is marked failed and returned with the error.
    pub async fn complete_authorization(
        &self,
        params: CallbackParams,
        browser_binding: Option<&Secret>,
    ) -> Result<(ConnectSession, ConnectionRecord), (Option<ConnectSession>, EngineError)> {
        let state = params.state.as_ref().ok_or((None, FlowError::InvalidState.into()))?;
        let taken =
            self.store.take_oauth_state(&hash(state)).await.map_err(|e| (None, e.into()))?;
        let pending = taken.ok_or((None, FlowError::InvalidState.into()))?;
        if pending.browser_hash.is_some() && pending.browser_hash != browser_binding.map(hash) {
            return Err((None, FlowError::InvalidState.into()));
        }
        let session = match self.store.get_connect_session(&pending.connect_session).await {
            Ok(Some(s)) if s.status == SessionStatus::Started => s,
            Ok(_) => return Err((None, FlowError::InvalidState.into())),
            Err(e) => return Err((None, e.into())),
        };
        let result = self.finish_session_flow(&session, pending, params).await;
        match result {
            Ok(record) => {
                // The connection is stored: the popup still reports success, and a poller that
                // misses the outcome finds the connection by its id.
                if let Err(e) = self
                    .store
                    .finish_connect_session(
                        &session.id,
                        SessionStatus::Done,
                        Some(&record.id),
                        None,
                    )
                    .await
                {
                    tracing::error!(session = %session.id, error = %e, "cannot record a finished connect session");
                }
                Ok((session, record))
            }
            Err(err) => {
                // Pollers (`/connect/{token}/status` needs no API key) see what the page shows.
                let message = err.public_message();
                if let Err(e) = self
                    .store
                    .finish_connect_session(
                        &session.id,
                        SessionStatus::Failed,
                        None,
                        Some(&message),
                    )
                    .await
                {
                    tracing::error!(session = %session.id, error = %e, "cannot record a failed connect session");
                }
                Err((Some(session), err))
            }
        }
    }

    async fn finish_session_flow(
        &self,
        session: &ConnectSession,
        pending: OAuthState,
        params: CallbackParams,
    ) -> Result<ConnectionRecord, EngineError> {
        if pending.expires_at <= self.clock.now() {
            return Err(FlowError::Expired.into());
        }
        let integration = self.integration(&session.integration).await?;
        let entry = self.connector(&integration.connector)?;
        let method = self
            .flow_method(&entry.connector, session.auth_method.as_deref(), &session.config)
            .await?;
        let verifier = pending.pkce_verifier;
        self.exchange_and_store(
            &method,
            &integration,
            params,
            &pending.redirect_uri,
            verifier.as_ref(),
            NewRecord {
                id: session.connection_id.clone(),
                end_user_id: session.end_user_id.clone(),
                config: session.config.clone(),
            },
        )
        .await
    }

    /// Starts a flow for the CLI: a loopback `redirect_uri`, state and PKCE kept in memory.
    /// `auth` picks the connector's method (default: its first).
    pub async fn begin_local_authorization(
        &self,
        integration: &str,
        auth: Option<&str>,
        redirect_uri: &str,
        config: BTreeMap<String, String>,
    ) -> Result<(Url, LocalFlow), EngineError> {
        let integration = self.integration(integration).await?;
        let entry = self.connector(&integration.connector)?;
        let config = crate::resolve_config(&entry.connector, config)?;
        let method = self.flow_method(&entry.connector, auth, &config).await?;
        let (url, state, verifier) =
            self.start_flow(&entry.connector, &method, &integration, &config, redirect_uri).await?;
        Ok((
            url,
            LocalFlow {
                method,
                config,
                integration: integration.id,
                state,
                verifier,
                redirect_uri: redirect_uri.into(),
            },
        ))
    }

    /// How the connector connects through the browser, its endpoints resolved for `config`.
    async fn flow_method(
        &self,
        connector: &latchkey_core::Connector,
        auth: Option<&str>,
        config: &BTreeMap<String, String>,
    ) -> Result<FlowMethod, EngineError> {
        if let Some(method) = oauth_method(connector, auth) {
            let oauth = self.resolve_oauth(connector, method, config).await?;
            return Ok(FlowMethod::OAuth2(Box::new(oauth)));
        }
        match oauth1_flow_method(connector, auth) {
            Some(method) => Ok(FlowMethod::OAuth1(Box::new(method.clone()))),
            None => Err(EngineError::invalid(
                "auth",
                format!(
                    "connector `{}` does not connect through a browser flow (OAuth2, or OAuth1 with access_token_url)",
                    connector.id
                ),
            )),
        }
    }

    /// The URL to send the browser to, the state the callback must bring back, and the secret
    /// kept for the exchange (the PKCE verifier, or OAuth1's temporary token secret).
    async fn start_flow(
        &self,
        connector: &latchkey_core::Connector,
        method: &FlowMethod,
        integration: &latchkey_store::IntegrationRecord,
        config: &BTreeMap<String, String>,
        redirect_uri: &str,
    ) -> Result<(Url, Secret, Option<Secret>), EngineError> {
        match method {
            FlowMethod::OAuth2(oauth) => {
                let state = Secret::new(crate::random_token(32));
                let verifier =
                    oauth.method.pkce.then(|| PkceVerifier::from_random(random_octets()));
                let url = self
                    .authorize_url_for(oauth, integration, redirect_uri, &state, verifier.as_ref())
                    .await?;
                Ok((url, state, verifier.map(|v| v.secret().clone())))
            }
            FlowMethod::OAuth1(method) => {
                let (url, token, secret) =
                    self.begin_oauth1(connector, method, integration, config, redirect_uri).await?;
                Ok((url, token, Some(secret)))
            }
        }
    }

    /// Finishes a CLI flow from the loopback callback's query.
    pub async fn complete_local_authorization(
        &self,
        flow: LocalFlow,
        params: CallbackParams,
        connection_id: Option<String>,
    ) -> Result<ConnectionRecord, EngineError> {
        if params.state.as_ref() != Some(&flow.state) {
            return Err(FlowError::InvalidState.into());
        }
        let integration = self.integration(&flow.integration).await?;
        self.exchange_and_store(
            &flow.method,
            &integration,
            params,
            &flow.redirect_uri,
            flow.verifier.as_ref(),
            NewRecord { id: connection_id, end_user_id: None, config: flow.config },
        )
        .await
    }

    async fn exchange_and_store(
        &self,
        method: &FlowMethod,
        integration: &latchkey_store::IntegrationRecord,
        params: CallbackParams,
        redirect_uri: &str,
        verifier: Option<&Secret>,
        new: NewRecord,
    ) -> Result<ConnectionRecord, EngineError> {
        let NewRecord { id: connection_id, end_user_id, mut config } = new;
        if let Some(code) = params.error {
            return Err(FlowError::Provider { code }.into());
        }
        let entry = self.connector(&integration.connector)?;
        let code = params.code.as_ref().ok_or(FlowError::MissingCode)?;
        let mut credentials = BTreeMap::new();
        let mut expires_at = None;
        match method {
            FlowMethod::OAuth2(oauth) => {
                // RFC 9207 §2.4: a wrong `iss` is refused, and so is a missing one when the
                // issuer's metadata says it sends it; both before any token request.
                match (&oauth.issuer, &params.iss) {
                    (Some(expected), Some(got))
                        if expected.trim_end_matches('/') != got.trim_end_matches('/') =>
                    {
                        return Err(FlowError::IssuerMismatch.into());
                    }
                    (Some(_), None) if oauth.iss_required => {
                        return Err(FlowError::IssuerMismatch.into());
                    }
                    _ => {}
                }
                let tokens = self
                    .call_token_endpoint(
                        oauth,
                        &oauth.token_url,
                        integration,
                        None,
                        TokenGrant::AuthorizationCode {
                            code,
                            redirect_uri,
                            code_verifier: verifier,
                        },
                    )
                    .await?;
                for (key, param) in &oauth.method.callback_keep {
                    if let Some(value) = params.extra.get(param) {
                        config.insert(key.clone(), value.clone());
                    }
                }
                credentials.insert("access_token".into(), tokens.access_token);
                if let Some(refresh) = tokens.refresh_token {
                    credentials.insert("refresh_token".into(), refresh);
                }
                expires_at = super::expiry(self.clock.now(), tokens.expires_in);
                config.extend(tokens.kept);
            }
            FlowMethod::OAuth1(method) => {
                let state = params.state.as_ref().ok_or(FlowError::InvalidState)?;
                let secret = verifier.ok_or(FlowError::InvalidState)?;
                let (granted, kept) = self
                    .exchange_oauth1(
                        &entry.connector,
                        method,
                        integration,
                        &config,
                        (state, secret),
                        code,
                    )
                    .await?;
                credentials = granted;
                config.extend(kept);
            }
        }
        let now = self.clock.now();
        let existing = match &connection_id {
            Some(id) => self.store.get_connection(id).await?,
            None => None,
        };
        let mut record = ConnectionRecord {
            id: connection_id.unwrap_or_else(|| format!("conn_{}", crate::random_token(12))),
            connector: entry.connector.id.clone(),
            integration: Some(integration.id.clone()),
            auth_method: method.id(),
            credentials,
            config,
            status: ConnectionStatus::Ok,
            label: None,
            end_user_id,
            expires_at,
            version: 0,
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            updated_at: now,
        };
        let outcome = self.run_test(&record, &entry.connector).await?;
        record.label = outcome.label.or_else(|| existing.as_ref().and_then(|e| e.label.clone()));
        if existing.is_some() {
            record.version = self.store.put_connection(&record).await?;
            self.forget(&record.id);
            tracing::info!(connection = %record.id, "connection re-authorised");
        } else {
            record.version = self.store.insert_connection(&record).await?;
            self.forget(&record.id);
            tracing::info!(connection = %record.id, connector = %record.connector, "connection created");
        }
        self.events.emit(Event::created(&record));
        Ok(record)
    }
}

fn random_octets() -> [u8; 32] {
    let mut octets = [0u8; 32];
    rand::fill(&mut octets);
    octets
}

impl Engine {
    /// The session with this token, whatever its status (for status polling).
    pub async fn connect_session_by_token(
        &self,
        token: &Secret,
    ) -> Result<Option<ConnectSession>, EngineError> {
        Ok(self.store.find_connect_session(&hash(token)).await?)
    }

    /// The connect session with this id.
    pub async fn connect_session(&self, id: &str) -> Result<ConnectSession, EngineError> {
        self.store
            .get_connect_session(id)
            .await?
            .ok_or_else(|| EngineError::ConnectSessionNotFound(id.to_string()))
    }

    /// The connector's name and the fields its connect form asks for (config, then credentials).
    pub async fn session_form(
        &self,
        session: &ConnectSession,
    ) -> Result<(String, Vec<latchkey_core::connector::FieldSpec>), EngineError> {
        let integration = self.integration(&session.integration).await?;
        let entry = self.connector(&integration.connector)?;
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
        let integration = self.integration(&session.integration).await?;
        let entry = self.connector(&integration.connector)?;
        let mut config = BTreeMap::new();
        for field in &entry.connector.config {
            if let Some(value) = values.remove(&field.key) {
                config.insert(field.key.clone(), value.expose().to_string());
            }
        }
        let record = self
            .create_connection(crate::NewConnection {
                id: session.connection_id.clone(),
                connector: entry.connector.id.clone(),
                integration: Some(integration.id.clone()),
                auth: session.auth_method.clone(),
                credentials: values,
                config,
                end_user_id: session.end_user_id.clone(),
                run_test: true,
            })
            .await?;
        self.store
            .finish_connect_session(&session.id, SessionStatus::Done, Some(&record.id), None)
            .await?;
        Ok(record)
    }
}
