//! Building the upstream request for a connection: base URL and allowed hosts rendered from the
//! connection's config, the caller's path joined safely, connector headers, then the strategy
//! (credentials placed before the `before_action` hook, signatures made after it).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use latchkey_core::auth::{self, AuthContext};
use latchkey_core::template::{self, Scope};
use latchkey_core::{AuthMethod, Connector, OutgoingRequest, Secret};
use latchkey_net::HostPolicy;
use url::Url;

use crate::EngineError;
use crate::scripts::HookScope;

/// A request a caller wants to make to a connection's API.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    /// HTTP method (default GET).
    pub method: Method,
    /// Path under the connector's base URL; may carry a query string.
    pub path: String,
    /// Extra query parameters.
    pub query: Vec<(String, String)>,
    /// Caller headers (already stripped of hop-by-hop and Latchkey's own headers).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What a strategy needs from a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub connector: &'a Connector,
    pub auth_method: &'a str,
    pub credentials: &'a BTreeMap<String, Secret>,
    pub config: &'a BTreeMap<String, String>,
    /// The engine clock's time, for what strategies sign or stamp (`iat`, `exp`, timestamps).
    pub now: std::time::SystemTime,
}

impl Target<'_> {
    fn misconfigured(&self, message: String) -> EngineError {
        EngineError::Connector { connector: self.connector.id.clone(), message }
    }

    fn scope(&self) -> Scope<'_> {
        Scope { credentials: None, config: Some(self.config), response: None }
    }

    /// The base URL of the connection's auth method, when it has its own.
    fn method_base_url(&self) -> Option<&str> {
        match self.connector.auth_method(Some(self.auth_method)) {
            Some(AuthMethod::OAuth2(m)) => m.base_url.as_deref(),
            _ => None,
        }
    }

    /// The base URL with the connection's config filled in: the auth method's own, else the
    /// connector's.
    pub fn base_url(&self) -> Result<Url, EngineError> {
        let source = self.method_base_url().unwrap_or(&self.connector.base_url);
        let rendered = template::render_url(source, self.scope())
            .map_err(|m| self.misconfigured(format!("base_url: {m}")))?;
        let url = Url::parse(&rendered)
            .map_err(|e| self.misconfigured(format!("base_url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.misconfigured("base_url must be an http(s) URL with a host".into()));
        }
        Ok(url)
    }

    /// The hosts credentials may go to: the connector's list, or the base URL's host (always,
    /// when the auth method has a base URL of its own).
    pub fn host_policy(&self, base: &Url) -> Result<HostPolicy, EngineError> {
        if self.connector.allowed_hosts.is_empty() || self.method_base_url().is_some() {
            return HostPolicy::for_url(base)
                .map_err(|e| self.misconfigured(format!("base_url: {e}")));
        }
        let patterns: Vec<String> = self
            .connector
            .allowed_hosts
            .iter()
            .map(|h| template::render_host(h, self.scope()))
            .collect::<Result<_, _>>()
            .map_err(|m| self.misconfigured(format!("allowed_hosts: {m}")))?;
        HostPolicy::new(patterns).map_err(|e| self.misconfigured(format!("allowed_hosts: {e}")))
    }

    /// The base URL and host policy: parsed once per process when neither holds a template
    /// (see [`Base`]), else rendered from the connection's config.
    fn base(&self) -> Result<Arc<Base>, EngineError> {
        let source = self.method_base_url().unwrap_or(&self.connector.base_url);
        let own = self.method_base_url().is_some();
        let hosts = &self.connector.allowed_hosts;
        let fresh = || -> Result<Base, EngineError> {
            let url = self.base_url()?;
            let policy = self.host_policy(&url)?;
            Ok(Base { source: source.to_owned(), hosts: hosts.clone(), own, url, policy })
        };
        if template::is_template(source) || hosts.iter().any(|h| template::is_template(h)) {
            return fresh().map(Arc::new);
        }
        let key = Base::key(source, hosts, own);
        if let Some(found) = bases().read().get(&key)
            && found.is_for(source, hosts, own)
        {
            return Ok(found.clone());
        }
        let base = Arc::new(fresh()?);
        let mut cache = bases().write();
        if cache.len() >= Base::CAPACITY {
            cache.clear();
        }
        cache.insert(key, base.clone());
        Ok(base)
    }

    /// Builds the request, not yet authenticated, and the policy it must be sent under.
    pub fn prepare(&self, req: ApiRequest) -> Result<(OutgoingRequest, HostPolicy), EngineError> {
        let base = self.base()?;
        let policy = base.policy.clone();
        let mut url = latchkey_net::join(&base.url, &req.path)?;
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                pairs.append_pair(k, v);
            }
        }
        let mut out = OutgoingRequest::new(req.method, url);
        for (name, value) in &self.connector.headers {
            let value = template::render(value, self.scope())
                .map_err(|m| self.misconfigured(format!("headers.{name}: {m}")))?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.misconfigured(format!("header name `{name}`")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| self.misconfigured(format!("header value for `{name}`")))?;
            out.headers.insert(name, value);
        }
        // Caller headers override connector defaults, but never the credentials placed next.
        for (name, value) in &req.headers {
            out.headers.insert(name.clone(), value.clone());
        }
        out.body = req.body;
        Ok((out, policy))
    }

    /// The connection's auth method.
    pub fn method(&self) -> Result<&AuthMethod, EngineError> {
        self.connector.auth_method(Some(self.auth_method)).ok_or_else(|| {
            self.misconfigured(format!("auth method `{}` no longer exists", self.auth_method))
        })
    }

    pub(crate) fn context<'n>(&'n self, nonce: &'n str) -> AuthContext<'n> {
        AuthContext { credentials: self.credentials, config: self.config, now: self.now, nonce }
    }

    /// Puts the connection's credentials (an API key, a token, Basic credentials, a session
    /// token) on a prepared request, before the `before_action` hook sees it.
    pub fn place_credentials(&self, out: &mut OutgoingRequest) -> Result<(), EngineError> {
        auth::place(self.method()?, out, self.context(""))?;
        Ok(())
    }

    /// Signs the final request (OAuth 1.0a, SigV4, a per-request JWT), after the hook.
    pub fn sign(&self, out: &mut OutgoingRequest) -> Result<(), EngineError> {
        let method = self.method()?;
        // OAuth 1.0a alone signs a nonce.
        let nonce = match method {
            AuthMethod::OAuth1(_) => crate::random_token(16),
            _ => String::new(),
        };
        auth::sign(method, out, self.context(&nonce))?;
        Ok(())
    }

    /// What this connection's scripts may reach: its storage (when `connection` is stored),
    /// `http_request` to the connector's allowed hosts, its auth value, its config.
    pub fn hook_scope(
        &self,
        connection: Option<&str>,
        policy: &HostPolicy,
    ) -> Result<HookScope, EngineError> {
        let method = self.method()?;
        let auth_value = auth::auth_value(method, self.context(""))?;
        let credentials = match method {
            AuthMethod::Custom(custom) => Some(
                custom
                    .fields
                    .iter()
                    .filter_map(|f| Some((f.key.clone(), self.credentials.get(&f.key)?.clone())))
                    .collect(),
            ),
            _ => None,
        };
        Ok(HookScope {
            connection: connection.map(str::to_string),
            policy: policy.clone(),
            auth_value,
            credentials,
            config: self.config.clone(),
            secrets: self.credentials.values().cloned().collect(),
        })
    }
}

/// A connector's base URL and host policy, parsed. For a base URL and allowed hosts without
/// templates they are the same for every connection, and parsing them (IDNA included) cost more
/// than the rest of building a request: they are kept per process, by their source text, at
/// most [`Base::CAPACITY`] (then the cache starts afresh).
#[derive(Debug)]
struct Base {
    source: String,
    hosts: Vec<String>,
    own: bool,
    url: Url,
    policy: HostPolicy,
}

impl Base {
    const CAPACITY: usize = 1024;

    fn key(source: &str, hosts: &[String], own: bool) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (source, hosts, own).hash(&mut hasher);
        hasher.finish()
    }

    fn is_for(&self, source: &str, hosts: &[String], own: bool) -> bool {
        self.source == source && self.hosts == hosts && self.own == own
    }
}

fn bases() -> &'static parking_lot::RwLock<HashMap<u64, Arc<Base>>> {
    static BASES: OnceLock<parking_lot::RwLock<HashMap<u64, Arc<Base>>>> = OnceLock::new();
    BASES.get_or_init(Default::default)
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus those the proxy
/// sets itself.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Copies `headers` without hop-by-hop ones and without those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !listed.iter().any(|l| l == name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}
