//! The browser connect flows of [`Connect`](crate::Connect): the authorization request with a
//! 256-bit single-use `state` and PKCE S256 (or OAuth 1.0a's temporary token), and the callback,
//! which checks state, browser binding and `iss` (RFC 9207) before any token request. The CLI
//! runs the same flow with a loopback redirect (RFC 8252).

use std::collections::BTreeMap;

use latchkey_core::Secret;
use latchkey_core::connector::OAuth1Auth;
use latchkey_core::oauth2::{AuthorizeRequest, PkceVerifier, TokenGrant, authorize_url};
use latchkey_store::{
    ConnectSession, ConnectionRecord, ConnectionStatus, OAuthState, SessionStatus,
};
use url::Url;

use super::oauth1::oauth1_flow_method;
use super::{ResolvedOAuth, hash, oauth_method};
use crate::connect::FLOW_LIFETIME;
use crate::events::Event;
use crate::{Connect, ConnectionId, Engine, EngineError, EnvironmentId, FlowError, IntegrationId};

/// The query of a callback. Its `Debug` shows the names of the other parameters, not their
/// values: one of them may be the code (`callback.code_param`).
#[derive(Clone, Default)]
pub struct CallbackParams {
    /// `state`.
    pub state: Option<Secret>,
    /// `code`.
    pub code: Option<Secret>,
    /// `error`, when the provider (or the user) refused.
    pub error: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// Every other parameter: the code when the connector names another parameter for it
    /// (`callback.code_param`), and what `callback.keep` keeps.
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("state", &self.state)
            .field("code", &self.code)
            .field("error", &self.error)
            .field("iss", &self.iss)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CallbackParams {
    /// Splits a callback's query pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut out = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "state" => out.state = Some(Secret::new(v)),
                "code" => out.code = Some(Secret::new(v)),
                // Shown on the page and stored: kept to the characters of an OAuth error code
                // (RFC 6749 §4.1.2.1 allows no others).
                "error" => {
                    out.error = Some(
                        v.chars()
                            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                            .take(64)
                            .collect(),
                    )
                }
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
    /// The end user, tags and metadata the connect session gave (none from the CLI).
    end_user: Option<latchkey_store::EndUser>,
    tags: latchkey_store::Tags,
    metadata: latchkey_store::Metadata,
    config: BTreeMap<String, String>,
}

/// An authorization request the CLI started (kept in memory, never stored).
#[derive(Debug)]
pub struct LocalFlow {
    method: FlowMethod,
    config: BTreeMap<String, String>,
    environment: String,
    integration: String,
    state: Secret,
    /// The PKCE verifier (OAuth2) or the temporary token secret (OAuth1).
    verifier: Option<Secret>,
    redirect_uri: String,
}

impl Connect<'_> {
    /// Marks the session used and returns the provider URL to send the browser to. The state
    /// is bound to this session and to `browser_binding` (a cookie the callback must carry).
    pub async fn begin_authorization(
        &self,
        session: &ConnectSession,
        redirect_uri: &str,
        browser_binding: &Secret,
    ) -> Result<Url, EngineError> {
        let integration =
            self.engine.integration_record(&session.environment, &session.integration).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        // The session keeps the values the app and the end user gave; defaults fill the rest.
        let config = crate::resolve_config(&entry.connector, session.config.clone())?;
        let method = self
            .engine
            .flow_method(&entry.connector, session.auth_method.as_deref(), &config)
            .await?;
        if !self.engine.store.start_connect_session(&session.id).await? {
            return Err(FlowError::SessionUnusable.into());
        }
        let (url, state, verifier) = self
            .engine
            .start_flow(&entry.connector, &method, &integration, &config, redirect_uri)
            .await?;
        self.engine
            .store
            .put_oauth_state(&OAuthState {
                state_hash: hash(&state),
                connect_session: session.id.clone(),
                browser_hash: Some(hash(browser_binding)),
                redirect_uri: redirect_uri.to_string(),
                pkce_verifier: verifier,
                expires_at: self.engine.clock.now() + FLOW_LIFETIME,
            })
            .await?;
        Ok(url)
    }

    /// Finishes a flow from its callback. Nothing is sent to the token endpoint unless the state
    /// is known, unused, unexpired and bound to this browser, and `iss` (if sent) matches.
    ///
    /// The browser binding is checked before the state is spent: a callback without the cookie
    /// of the browser that started the flow (a forged link, another browser) is refused with
    /// `invalid_state` and changes nothing, so the real browser's callback still succeeds and
    /// nobody can end someone else's flow. Past that check every failure (the provider's
    /// `error=`, an expired flow, a wrong `iss`, no code, a refused exchange) marks the session
    /// failed with the error's code and public message, and is returned with the session so
    /// the page can tell the opener.
    pub async fn complete_authorization(
        &self,
        params: CallbackParams,
        browser_binding: Option<&Secret>,
    ) -> Result<(ConnectSession, ConnectionRecord), (Option<ConnectSession>, EngineError)> {
        let refused = || (None, EngineError::from(FlowError::InvalidState));
        let state = params.state.as_ref().ok_or_else(refused)?;
        let state_hash = hash(state);
        let store = &self.engine.store;
        let pending = store.peek_oauth_state(&state_hash).await.map_err(|e| (None, e.into()))?;
        let pending = pending.ok_or_else(refused)?;
        if !binds(pending.browser_hash.as_deref(), browser_binding) {
            tracing::info!(session = %pending.connect_session, "callback without this flow's browser binding refused; the flow stays open");
            return Err(refused());
        }
        // One callback of a session finishes at a time, across processes: a second window of
        // the same link waits its turn and then finds the session done.
        let lease = format!("connect:{}", pending.connect_session);
        let holder = crate::random_token(12);
        match store.try_lock(&lease, &holder, FINISH_LEASE).await {
            Ok(true) => {}
            Ok(false) => return Err((None, FlowError::AttemptInProgress.into())),
            Err(e) => return Err((None, e.into())),
        }
        let outcome = self.finish_bound_callback(&state_hash, params).await;
        if let Err(e) = store.unlock(&lease, &holder).await {
            tracing::warn!(lease, error = %e, "cannot release a connect session's lease; it expires on its own");
        }
        outcome
    }

    /// The rest of [`Connect::complete_authorization`], once the binding matched and the
    /// session's lease is held.
    async fn finish_bound_callback(
        &self,
        state_hash: &str,
        params: CallbackParams,
    ) -> Result<(ConnectSession, ConnectionRecord), (Option<ConnectSession>, EngineError)> {
        let refused = || (None, EngineError::from(FlowError::InvalidState));
        let store = &self.engine.store;
        // Spent here, once: a racing callback of the same state finds it gone.
        let pending = store.take_oauth_state(state_hash).await.map_err(|e| (None, e.into()))?;
        let pending = pending.ok_or_else(refused)?;
        let session = match store.get_connect_session(&pending.connect_session).await {
            Ok(Some(s)) if s.status == SessionStatus::Started => s,
            Ok(_) => return Err(refused()),
            Err(e) => return Err((None, e.into())),
        };
        let mut timed = crate::operations::Timed::new(
            self.engine,
            latchkey_store::OperationKind::Connect,
            &session.environment,
        )
        .integration(&session.integration);
        timed.set_connection(session.connection_id.as_deref());
        let finished = self.engine.finish_session_flow(&session, pending, params).await;
        self.engine.record_operation(match &finished {
            Ok(record) => crate::operations::Timed::about(
                self.engine,
                latchkey_store::OperationKind::Connect,
                record,
            )
            .began(timed.started())
            .succeeded(),
            Err(error) => timed.failed(error),
        });
        match finished {
            Ok(record) => {
                // The connection is stored: the popup still reports success, and a poller that
                // misses the outcome finds the connection by its id.
                if let Err(e) = store
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
                let failure = crate::connect::failure_of(&err);
                if let Err(e) = store
                    .finish_connect_session(
                        &session.id,
                        SessionStatus::Failed,
                        None,
                        Some(&failure),
                    )
                    .await
                {
                    tracing::error!(session = %session.id, error = %e, "cannot record a failed connect session");
                }
                Err((Some(session), err))
            }
        }
    }

    /// Starts a flow for the CLI: a loopback `redirect_uri`, state and PKCE kept in memory.
    /// `auth` picks the connector's method (default: its first).
    pub async fn begin_local_authorization(
        &self,
        environment: &EnvironmentId,
        integration: &IntegrationId,
        auth: Option<&str>,
        redirect_uri: &str,
        config: BTreeMap<String, String>,
    ) -> Result<(Url, LocalFlow), EngineError> {
        let integration =
            self.engine.integration_record(environment.as_str(), integration.as_str()).await?;
        let entry = self.engine.connector_entry(&integration.connector)?;
        let config = crate::resolve_config(&entry.connector, config)?;
        let method = self.engine.flow_method(&entry.connector, auth, &config).await?;
        let (url, state, verifier) = self
            .engine
            .start_flow(&entry.connector, &method, &integration, &config, redirect_uri)
            .await?;
        Ok((
            url,
            LocalFlow {
                method,
                config,
                environment: integration.environment,
                integration: integration.id,
                state,
                verifier,
                redirect_uri: redirect_uri.into(),
            },
        ))
    }

    /// Finishes a CLI flow from the loopback callback's query.
    pub async fn complete_local_authorization(
        &self,
        flow: LocalFlow,
        params: CallbackParams,
        connection_id: Option<ConnectionId>,
    ) -> Result<ConnectionRecord, EngineError> {
        if params.state.as_ref() != Some(&flow.state) {
            return Err(FlowError::InvalidState.into());
        }
        let integration =
            self.engine.integration_record(&flow.environment, &flow.integration).await?;
        self.engine
            .exchange_and_store(
                &flow.method,
                &integration,
                params,
                &flow.redirect_uri,
                flow.verifier.as_ref(),
                NewRecord {
                    id: connection_id.map(String::from),
                    end_user: None,
                    tags: Default::default(),
                    metadata: Default::default(),
                    config: flow.config,
                },
            )
            .await
    }
}

impl Engine {
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
        let client_id = Self::client_id(integration)?;
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
        let entry = self.connector_entry(&integration.connector)?;
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

    async fn finish_session_flow(
        &self,
        session: &ConnectSession,
        pending: OAuthState,
        params: CallbackParams,
    ) -> Result<ConnectionRecord, EngineError> {
        if pending.expires_at <= self.clock.now() {
            return Err(FlowError::Expired.into());
        }
        let integration =
            self.integration_record(&session.environment, &session.integration).await?;
        let entry = self.connector_entry(&integration.connector)?;
        let config = crate::resolve_config(&entry.connector, session.config.clone())?;
        let method =
            self.flow_method(&entry.connector, session.auth_method.as_deref(), &config).await?;
        let verifier = pending.pkce_verifier;
        self.exchange_and_store(
            &method,
            &integration,
            params,
            &pending.redirect_uri,
            verifier.as_ref(),
            NewRecord {
                id: session.connection_id.clone(),
                end_user: session.end_user.clone(),
                tags: session.tags.clone(),
                metadata: session.metadata.clone(),
                config,
            },
        )
        .await
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

    async fn exchange_and_store(
        &self,
        method: &FlowMethod,
        integration: &latchkey_store::IntegrationRecord,
        mut params: CallbackParams,
        redirect_uri: &str,
        verifier: Option<&Secret>,
        new: NewRecord,
    ) -> Result<ConnectionRecord, EngineError> {
        let NewRecord { id: connection_id, end_user, tags, metadata, mut config } = new;
        match params.error.take() {
            Some(code) if code == "access_denied" => return Err(FlowError::AccessDenied.into()),
            Some(code) if code.is_empty() => {
                return Err(FlowError::Provider { code: "unknown".into() }.into());
            }
            Some(code) => return Err(FlowError::Provider { code }.into()),
            None => {}
        }
        let entry = self.connector_entry(&integration.connector)?;
        // A provider that names the code otherwise (Amazon's `spapi_oauth_code`) sends it there.
        if let FlowMethod::OAuth2(oauth) = method
            && oauth.method.callback.code_param != "code"
        {
            params.code = params.extra.remove(&oauth.method.callback.code_param).map(Secret::new);
        }
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
                keep_callback_params(&entry.connector, &oauth.method, &params.extra, &mut config)?;
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
        if let Some(existing) = &existing
            && existing.environment != integration.environment
        {
            return Err(EngineError::Conflict(format!("connection id `{}` is taken", existing.id)));
        }
        let mut record = ConnectionRecord {
            environment: integration.environment.clone(),
            id: connection_id.unwrap_or_else(|| format!("conn_{}", crate::random_token(12))),
            connector: entry.connector.id.clone(),
            integration: Some(integration.id.clone()),
            auth_method: method.id(),
            credentials,
            config,
            status: ConnectionStatus::Ok,
            // A re-authorised connection keeps its health record (and its last error) until
            // the test below says how it is now.
            health: existing.as_ref().map(|e| e.health.clone()).unwrap_or_default(),
            label: None,
            // Re-authorising keeps what the connection had unless the session says otherwise.
            end_user: end_user.or_else(|| existing.as_ref().and_then(|e| e.end_user.clone())),
            tags: match existing.as_ref() {
                Some(e) if tags.is_empty() => e.tags.clone(),
                _ => tags,
            },
            metadata: match existing.as_ref() {
                Some(e) if metadata.is_empty() => e.metadata.clone(),
                _ => metadata,
            },
            expires_at,
            version: 0,
            created_at: existing.as_ref().map_or(now, |e| e.created_at),
            updated_at: now,
        };
        let outcome = self.run_test(&record, &entry.connector).await;
        if let Some(health) = crate::health::after_test(&record.health, &outcome, now) {
            record.health = health;
        }
        let outcome = outcome?;
        record.label = outcome.label.or_else(|| existing.as_ref().and_then(|e| e.label.clone()));
        if existing.is_some() {
            record.version = self.store.put_connection(&record).await?;
            self.store.set_connection_health(&record.id, &record.health).await?;
            self.forget(&record.id);
            tracing::info!(connection = %record.id, "connection re-authorised");
            // Same id, tags, metadata and end user, with working credentials again.
            self.events.emit(Event::recovered(&record));
        } else {
            record.version = self.store.insert_connection(&record).await?;
            self.forget(&record.id);
            tracing::info!(connection = %record.id, connector = %record.connector, "connection created");
            self.events.emit(Event::created(&record));
        }
        Ok(record)
    }
}

/// Copies the callback parameters the method keeps into `config`. A value for a declared config
/// field must match its pattern: it comes through the browser, and may end up in a URL.
fn keep_callback_params(
    connector: &latchkey_core::Connector,
    method: &latchkey_core::connector::OAuth2Auth,
    extra: &BTreeMap<String, String>,
    config: &mut BTreeMap<String, String>,
) -> Result<(), EngineError> {
    for (key, param) in method.kept_callback_params() {
        let Some(value) = extra.get(param) else { continue };
        let field = connector.config.iter().find(|f| &f.key == key);
        if let Some(pattern) = field.and_then(|f| f.pattern.as_deref()) {
            let matches = latchkey_core::connector::compile_pattern(pattern)
                .map(|re| re.is_match(value))
                .unwrap_or(false);
            if !matches {
                return Err(EngineError::invalid(
                    format!("config.{key}"),
                    format!(
                        "the provider's `{param}` callback parameter does not match config \
                         `{key}` ({pattern})"
                    ),
                ));
            }
        }
        config.insert(key.clone(), value.clone());
    }
    crate::stored_values::check_config_values(connector, config)
}

/// How long a callback may take to finish (token exchange, credential test, hooks) before
/// another callback of the same session may try; released as soon as it is done.
const FINISH_LEASE: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether the callback's cookie is the one the flow was bound to, compared in constant time.
/// A stored flow without a binding (every flow stored is bound) is refused too.
fn binds(expected: Option<&str>, binding: Option<&Secret>) -> bool {
    match (expected, binding) {
        (Some(expected), Some(binding)) => Secret::new(expected) == Secret::new(hash(binding)),
        _ => false,
    }
}

fn random_octets() -> [u8; 32] {
    let mut octets = [0u8; 32];
    rand::fill(&mut octets);
    octets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_prints_no_code_whatever_its_name() {
        let params = CallbackParams::from_pairs([
            ("state".to_string(), "st-canary".to_string()),
            ("code".to_string(), "code-canary".to_string()),
            ("spapi_oauth_code".to_string(), "spapi-canary".to_string()),
            ("error".to_string(), "access_denied\"><b>".to_string()),
        ]);
        let printed = format!("{params:?}");
        for canary in ["st-canary", "code-canary", "spapi-canary"] {
            assert!(!printed.contains(canary), "{printed}");
        }
        assert!(printed.contains("spapi_oauth_code"), "{printed}");
        assert_eq!(params.error.as_deref(), Some("access_deniedb"));
    }

    #[test]
    fn the_binding_must_be_the_flows() {
        let cookie = Secret::new("b1nd");
        let bound = hash(&cookie);
        assert!(binds(Some(&bound), Some(&cookie)));
        assert!(!binds(Some(&bound), Some(&Secret::new("other"))));
        assert!(!binds(Some(&bound), None));
        assert!(!binds(None, Some(&cookie)), "a flow bound to no browser is refused");
    }
}
