//! `Client`: the one outbound HTTP client. Every request is checked against the connector's
//! [`HostPolicy`] (and optionally against non-public addresses) before it leaves; redirects are
//! returned as-is unless following is switched on, and then every hop is re-checked and loses its
//! credentials when it changes origin.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use reqwest::dns::Resolve;
use url::{Host, Url};

use crate::address::{PublicOnlyResolver, is_non_public};
use crate::{HostPolicy, NetError, UpstreamResponse, install_crypto_provider};

/// Redirect hops followed at most, when following is on; the last 3xx is returned as-is.
pub const MAX_REDIRECTS: usize = 5;

/// How the [`Client`] behaves. `ClientConfig::default()` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Time allowed to establish a connection (TCP and TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange when the body is read whole (status, headers and
    /// body), and for the status and headers when it is streamed. A streamed body
    /// ([`UpstreamResponse::into_stream`]) may take as long as it needs while data keeps coming:
    /// each read must make progress within this time. Default 60 s.
    pub total_timeout: Duration,
    /// Largest response body read whole ([`UpstreamResponse::bytes`], [`UpstreamResponse::json`]:
    /// credential tests, script hooks that see the body, scripts' `http_request`), in bytes.
    /// Default 32 MiB. Callers may lower it per response with [`UpstreamResponse::limited_to`].
    pub max_response_bytes: u64,
    /// Largest response body streamed ([`UpstreamResponse::into_stream`], e.g. by the proxy), in
    /// bytes. Default `None`: streamed bodies of any size pass, in bounded memory.
    pub max_streamed_response_bytes: Option<u64>,
    /// Follow up to [`MAX_REDIRECTS`] redirects. Default off: a 3xx is returned as-is.
    pub follow_redirects: bool,
    /// Refuse loopback, private, link-local, CGNAT, unique-local, unspecified and multicast
    /// destinations, checked on IP-literal hosts and on every resolved address. Default off.
    pub block_private_addresses: bool,
    /// The `User-Agent` sent when the request has none. Default `latchkey/<version>`.
    pub user_agent: String,
    /// Certificate authorities trusted besides the built-in web roots (PEM), e.g. a company CA.
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            max_response_bytes: 32 * 1024 * 1024,
            max_streamed_response_bytes: None,
            follow_redirects: false,
            block_private_addresses: false,
            user_agent: concat!("latchkey/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_root_certificates: Vec::new(),
        }
    }
}

/// The hardened outbound client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    /// A resolver standing in for the system's (tests only), kept for [`Client::with_identity`].
    resolver: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("custom_resolver", &self.resolver.is_some())
            .finish_non_exhaustive()
    }
}

/// One request as it moves through redirect hops.
#[derive(Clone)]
struct Hop {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    /// Builds the client, installing the `ring` crypto provider first if none is installed.
    ///
    /// Proxy settings from the environment are ignored, so the host and address checks apply to
    /// the connection actually made.
    pub fn new(config: ClientConfig) -> Result<Client, NetError> {
        Self::build(config, None, None)
    }

    /// A client that looks names up with `resolver` instead of the system resolver (still
    /// filtered when `block_private_addresses` is on). For tests that play a hostile DNS.
    #[cfg(test)]
    pub(crate) fn with_resolver(
        config: ClientConfig,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Client, NetError> {
        Self::build(config, None, Some(resolver))
    }

    /// A client like this one (same settings, its own connection pool) that presents a client
    /// certificate in TLS handshakes (mutual TLS). `pem` holds the certificate, its chain and
    /// the private key (RSA, SEC1 or PKCS#8).
    pub fn with_identity(&self, pem: &[u8]) -> Result<Client, NetError> {
        let identity = reqwest::Identity::from_pem(pem).map_err(|_| {
            NetError::Build(
                "the client certificate is not a PEM bundle of a certificate and its private key"
                    .into(),
            )
        })?;
        Self::build(self.inner.config.clone(), Some(identity), self.inner.resolver.clone())
    }

    fn build(
        config: ClientConfig,
        identity: Option<reqwest::Identity>,
        resolver: Option<Arc<dyn Resolve>>,
    ) -> Result<Client, NetError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            // No overall timeout here: it would cut long downloads the proxy streams. The exchange
            // gets its deadline in `send` and `UpstreamResponse::bytes`; every read this one.
            .read_timeout(config.total_timeout)
            .user_agent(config.user_agent.as_str())
            .no_proxy();
        // Always ours, so that a failed lookup is told apart from a failed connection.
        builder = builder.dns_resolver(PublicOnlyResolver::new(
            resolver.clone(),
            config.block_private_addresses,
        ));
        for pem in &config.extra_root_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| NetError::Build("an extra root certificate is not PEM".into()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| match NetError::from_reqwest(e) {
            NetError::Build(msg) | NetError::Transport(msg) | NetError::Connect(msg) => {
                NetError::Build(msg)
            }
            other => other,
        })?;
        Ok(Client { inner: Arc::new(Inner { http, config, resolver }) })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends `req` if `policy` allows its host, and returns the response with its body unread.
    ///
    /// Refused before any network activity: a URI that is not an absolute http(s) URL
    /// ([`NetError::InvalidUrl`]), a host outside `policy` ([`NetError::HostNotAllowed`]), and,
    /// with `block_private_addresses`, a non-public IP literal ([`NetError::BlockedAddress`]).
    /// With `follow_redirects`, each hop is checked the same way; on a hop to another origin
    /// (scheme, host or port) `Authorization`, `Cookie`, `Proxy-Authorization` and every header
    /// marked sensitive are dropped for that hop and all later ones. 303, and 301/302 after a
    /// non-GET/HEAD, continue as a body-less GET (RFC 9110 §15.4).
    pub async fn send(
        &self,
        req: http::Request<Bytes>,
        policy: &HostPolicy,
    ) -> Result<UpstreamResponse, NetError> {
        let (parts, body) = req.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|e| NetError::InvalidUrl(format!("request URI: {e}")))?;
        let mut hop = Hop { method: parts.method, url, headers: parts.headers, body };
        let mut hops = 0;
        let deadline = tokio::time::Instant::now() + self.inner.config.total_timeout;
        loop {
            self.check_destination(&hop.url, policy)?;
            let response = tokio::time::timeout_at(deadline, self.execute(&hop))
                .await
                .map_err(|_| NetError::Timeout)??;
            let status = response.status();
            if !self.inner.config.follow_redirects || hops == MAX_REDIRECTS {
                return Ok(self.wrap(response, deadline));
            }
            let Some(next) = next_url(&hop.url, status, response.headers())? else {
                return Ok(self.wrap(response, deadline));
            };
            tracing::debug!(
                from = %host_of(&hop.url),
                to = %host_of(&next),
                status = status.as_u16(),
                "following redirect"
            );
            hop.redirect(status, next);
            hops += 1;
        }
    }

    fn wrap(
        &self,
        response: reqwest::Response,
        deadline: tokio::time::Instant,
    ) -> UpstreamResponse {
        let config = &self.inner.config;
        UpstreamResponse::new(
            response,
            config.max_response_bytes,
            config.max_streamed_response_bytes,
            deadline,
        )
    }

    /// Scheme, policy and IP-literal checks; no network activity.
    fn check_destination(&self, url: &Url, policy: &HostPolicy) -> Result<(), NetError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NetError::InvalidUrl(format!("unsupported scheme {:?}", url.scheme())));
        }
        let Some(host) = url.host() else {
            return Err(NetError::InvalidUrl("URL has no host".to_owned()));
        };
        if !policy.allows(url) {
            tracing::warn!(host = %host_of(url), "refused: host not allowed by policy");
            return Err(NetError::HostNotAllowed { host: host_of(url) });
        }
        if self.inner.config.block_private_addresses {
            let literal = match host {
                Host::Ipv4(ip) => Some(ip.into()),
                Host::Ipv6(ip) => Some(ip.into()),
                Host::Domain(_) => None,
            };
            if literal.is_some_and(is_non_public) {
                tracing::warn!(host = %host_of(url), "refused: non-public address");
                return Err(NetError::BlockedAddress);
            }
        }
        Ok(())
    }

    async fn execute(&self, hop: &Hop) -> Result<reqwest::Response, NetError> {
        let mut request = self
            .inner
            .http
            .request(hop.method.clone(), hop.url.clone())
            .headers(hop.headers.clone());
        if !hop.body.is_empty() || matches!(hop.method, Method::POST | Method::PUT | Method::PATCH)
        {
            request = request.body(hop.body.clone());
        }
        request.send().await.map_err(NetError::from_reqwest)
    }
}

impl Hop {
    /// Moves this request to `next`, as a redirect answered with `status`.
    fn redirect(&mut self, status: StatusCode, next: Url) {
        if origin(&self.url) != origin(&next) {
            strip_credentials(&mut self.headers);
            self.headers.remove(header::HOST);
        }
        let becomes_get = status == StatusCode::SEE_OTHER && self.method != Method::HEAD
            || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && !matches!(self.method, Method::GET | Method::HEAD);
        if becomes_get {
            self.method = Method::GET;
            self.body = Bytes::new();
            for name in [
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                header::TRANSFER_ENCODING,
            ] {
                self.headers.remove(name);
            }
        }
        self.url = next;
    }
}

/// Where a redirect response points, or `None` if it is not one to follow (not 301, 302, 303,
/// 307 or 308, or no `Location`).
fn next_url(
    current: &Url,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Option<Url>, NetError> {
    let follows = matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let Some(location) = headers.get(header::LOCATION).filter(|_| follows) else {
        return Ok(None);
    };
    let location = location
        .to_str()
        .map_err(|_| NetError::InvalidUrl("redirect Location is not ASCII".to_owned()))?;
    let next = current
        .join(location)
        .map_err(|e| NetError::InvalidUrl(format!("redirect Location: {e}")))?;
    Ok(Some(next))
}

fn origin(url: &Url) -> (&str, Option<Host<&str>>, Option<u16>) {
    (url.scheme(), url.host(), url.port_or_known_default())
}

/// Drops every header that carries credentials: `Authorization`, `Cookie`,
/// `Proxy-Authorization`, and any header with a value marked sensitive.
fn strip_credentials(headers: &mut HeaderMap) {
    let sensitive: Vec<_> = headers
        .iter()
        .filter(|(_, value)| value.is_sensitive())
        .map(|(name, _)| name.clone())
        .collect();
    for name in sensitive.into_iter().chain([
        header::AUTHORIZATION,
        header::COOKIE,
        header::PROXY_AUTHORIZATION,
    ]) {
        headers.remove(name);
    }
}

/// The host (and non-default port) of `url`, for messages and logs: never path or query.
fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_and_sensitive_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        headers.insert(header::COOKIE, "s=1".parse().unwrap());
        headers.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        let mut key: http::HeaderValue = "secret".parse().unwrap();
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        strip_credentials(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), [header::ACCEPT]);
    }

    #[test]
    fn redirect_changes_method_per_rfc_9110() {
        let url = Url::parse("https://a.example/x").unwrap();
        let next = Url::parse("https://a.example/y").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        let post = Hop { method: Method::POST, url, headers, body: Bytes::from_static(b"{}") };
        for (status, method, body_kept) in [
            (StatusCode::SEE_OTHER, Method::GET, false),
            (StatusCode::FOUND, Method::GET, false),
            (StatusCode::MOVED_PERMANENTLY, Method::GET, false),
            (StatusCode::TEMPORARY_REDIRECT, Method::POST, true),
            (StatusCode::PERMANENT_REDIRECT, Method::POST, true),
        ] {
            let mut hop = post.clone();
            hop.redirect(status, next.clone());
            assert_eq!(hop.method, method, "{status}");
            assert_eq!(!hop.body.is_empty(), body_kept, "{status}");
            assert_eq!(hop.headers.contains_key(header::CONTENT_TYPE), body_kept, "{status}");
            assert!(hop.headers.contains_key(header::AUTHORIZATION), "same origin keeps auth");
        }
    }

    #[test]
    fn next_url_only_for_redirects_with_location() {
        let current = Url::parse("https://a.example/x/y").unwrap();
        let mut headers = HeaderMap::new();
        assert!(next_url(&current, StatusCode::FOUND, &headers).unwrap().is_none());
        headers.insert(header::LOCATION, "../z?q=1".parse().unwrap());
        let next = next_url(&current, StatusCode::FOUND, &headers).unwrap().unwrap();
        assert_eq!(next.as_str(), "https://a.example/z?q=1");
        assert!(next_url(&current, StatusCode::NOT_MODIFIED, &headers).unwrap().is_none());
        assert!(next_url(&current, StatusCode::MULTIPLE_CHOICES, &headers).unwrap().is_none());
    }

    #[test]
    fn origin_includes_scheme_and_port() {
        let a = Url::parse("https://a.example/").unwrap();
        assert_eq!(origin(&a), origin(&Url::parse("https://A.example:443/z").unwrap()));
        assert_ne!(origin(&a), origin(&Url::parse("http://a.example/").unwrap()));
        assert_ne!(origin(&a), origin(&Url::parse("https://a.example:8443/").unwrap()));
        assert_ne!(origin(&a), origin(&Url::parse("https://b.example/").unwrap()));
    }
}
