//! The request a strategy changes: method, URL, headers and body, with no I/O attached.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use url::Url;

/// An outgoing API request before it is sent.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    /// HTTP method.
    pub method: Method,
    /// Full upstream URL.
    pub url: Url,
    /// Headers; those holding credentials are marked sensitive.
    pub headers: HeaderMap,
    /// Body bytes (empty for none).
    pub body: Bytes,
}

impl OutgoingRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: Url) -> Self {
        Self { method, url, headers: HeaderMap::new(), body: Bytes::new() }
    }

    /// The media type of the body, lowercased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    /// Converts into an `http::Request` for the network layer.
    pub fn into_http(self) -> Result<http::Request<Bytes>, http::Error> {
        let mut builder = http::Request::builder().method(self.method).uri(self.url.as_str());
        if let Some(headers) = builder.headers_mut() {
            *headers = self.headers;
        }
        builder.body(self.body)
    }

    /// Sets a header whose value is a credential: marked sensitive so it is never logged and
    /// is dropped on cross-host redirects.
    pub fn set_sensitive_header(&mut self, name: http::HeaderName, mut value: HeaderValue) {
        value.set_sensitive(true);
        self.headers.insert(name, value);
    }
}
