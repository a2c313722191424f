//! The engine as a [`reqwest_middleware`] layer, for Rust programs that call APIs with their own
//! `reqwest` code: a request to a URL under the connection's base URL is sent through
//! [`Dispatch::request`](crate::Dispatch::request), so it gets the connection's credentials,
//! refreshes, hooks, the host allow-list and the hardened client. It answers the request itself and does not call the
//! next middleware: put it last in the chain.
//!
//! ```no_run
//! # async fn demo(engine: std::sync::Arc<latchkey_engine::Engine>) -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_engine::middleware::{Connection, Latchkey};
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(Latchkey::new(engine).with_connection("user-42-github".parse()?))
//!     .build();
//! let repos = client.get("https://api.github.com/user/repos").send().await?;
//! // Another connection for one request:
//! let other = client
//!     .get("https://api.github.com/user")
//!     .with_extension(Connection("user-7-github".parse()?))
//!     .send()
//!     .await?;
//! # let _ = (repos, other); Ok(()) }
//! ```

use std::sync::Arc;

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::outbound::{ApiRequest, Target};
use crate::{ConnectionId, Engine, EngineError};

/// The connection a request goes through, as a request extension; overrides
/// [`Latchkey::with_connection`].
#[derive(Debug, Clone)]
pub struct Connection(pub ConnectionId);

/// The middleware: see the module documentation.
#[derive(Debug, Clone)]
pub struct Latchkey {
    engine: Arc<Engine>,
    connection: Option<ConnectionId>,
}

impl Latchkey {
    /// A middleware over `engine`; each request names its [`Connection`].
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, connection: None }
    }

    /// The connection requests use when they name none.
    pub fn with_connection(mut self, connection: ConnectionId) -> Self {
        self.connection = Some(connection);
        self
    }
}

#[async_trait::async_trait]
impl Middleware for Latchkey {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let connection = extensions
            .get::<Connection>()
            .map(|c| c.0.clone())
            .or_else(|| self.connection.clone())
            .ok_or_else(|| {
                reqwest_middleware::Error::middleware(EngineError::invalid(
                    "connection",
                    "no Latchkey connection: set one with with_connection or a Connection extension",
                ))
            })?;
        self.engine
            .send_reqwest(&connection, request)
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}

impl Engine {
    /// Sends a `reqwest` request through `connection`: its URL must lie under the connection's
    /// base URL (same scheme, host and port, below its path).
    async fn send_reqwest(
        &self,
        connection: &ConnectionId,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, EngineError> {
        let record = self.recent_connection(connection.as_str()).await?;
        let entry = self.connector_entry(&record.connector)?;
        let target = Target {
            connector: &entry.connector,
            auth_method: &record.auth_method,
            credentials: &record.credentials,
            config: &record.config,
            now: self.clock.now().into(),
        };
        let base = target.base_url()?;
        let path = relative_to(&base, request.url()).ok_or_else(|| {
            EngineError::invalid(
                "url",
                format!(
                    "{} is not under connection `{connection}`'s base URL {base}",
                    request.url().origin().ascii_serialization()
                ),
            )
        })?;
        let body = match request.body() {
            None => bytes::Bytes::new(),
            Some(body) => match body.as_bytes() {
                Some(bytes) => bytes::Bytes::copy_from_slice(bytes),
                None => {
                    return Err(EngineError::invalid(
                        "body",
                        "a streaming request body cannot be sent through Latchkey; buffer it",
                    ));
                }
            },
        };
        let api = ApiRequest {
            method: request.method().clone(),
            path,
            query: Vec::new(),
            headers: crate::outbound::strip_hop_by_hop(request.headers()),
            body,
        };
        let upstream = self.dispatch().request(connection, api).await?;
        let mut response = http::Response::builder().status(upstream.status);
        if let Some(headers) = response.headers_mut() {
            *headers = upstream.headers.clone();
        }
        let response = response
            .body(reqwest::Body::wrap_stream(upstream.into_stream()))
            .map_err(|e| EngineError::Internal(format!("cannot build the response: {e}")))?;
        Ok(reqwest::Response::from(response))
    }
}

/// The path and query of `url` below `base` (with a leading `/`), or `None` when `url` is
/// elsewhere.
fn relative_to(base: &url::Url, url: &url::Url) -> Option<String> {
    if base.origin() != url.origin() {
        return None;
    }
    let prefix = base.path().trim_end_matches('/');
    let rest = url.path().strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut path = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::relative_to;

    #[test]
    fn urls_map_to_paths_below_the_base_only() {
        let base: url::Url = "https://api.example.com/v2/".parse().unwrap();
        let rel = |u: &str| relative_to(&base, &u.parse().unwrap());
        assert_eq!(
            rel("https://api.example.com/v2/users?page=2").as_deref(),
            Some("/users?page=2")
        );
        assert_eq!(rel("https://api.example.com/v2").as_deref(), Some("/"));
        assert_eq!(rel("https://api.example.com/v20/users"), None, "not a path segment prefix");
        assert_eq!(rel("https://api.example.com/other"), None);
        assert_eq!(rel("http://api.example.com/v2/users"), None, "another scheme");
        assert_eq!(rel("https://evil.example/v2/users"), None);
        assert_eq!(rel("https://api.example.com:444/v2/users"), None);
    }
}
