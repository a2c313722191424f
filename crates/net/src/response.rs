//! `UpstreamResponse`: a third-party API's response, whose body can only be read under the
//! client's size caps: one for reading it whole, another (off by default) for streaming it.

use std::fmt;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use url::Url;

use crate::NetError;

/// A response from an upstream API. The status line and headers are read; the body is read on
/// demand by [`bytes`](Self::bytes) or [`json`](Self::json), which fail with
/// [`NetError::ResponseTooLarge`] rather than read more than the whole-body cap, or by
/// [`into_stream`](Self::into_stream), which holds one chunk at a time and fails the same way
/// only past the streaming cap, if one is set.
pub struct UpstreamResponse {
    /// The response status (a 3xx when redirects are not followed).
    pub status: http::StatusCode,
    /// The response headers, as received.
    pub headers: http::HeaderMap,
    /// The HTTP version spoken.
    pub version: http::Version,
    url: Url,
    limit: u64,
    stream_limit: Option<u64>,
    /// When reading the body whole must be done: the exchange's deadline.
    deadline: Option<tokio::time::Instant>,
    body: Body,
}

/// Where the body comes from: the connection, or bytes already read (and maybe rewritten by a
/// connector script).
enum Body {
    Streaming(reqwest::Response),
    Buffered(Bytes),
}

impl UpstreamResponse {
    pub(crate) fn new(
        mut body: reqwest::Response,
        limit: u64,
        stream_limit: Option<u64>,
        deadline: tokio::time::Instant,
    ) -> UpstreamResponse {
        UpstreamResponse {
            status: body.status(),
            headers: std::mem::take(body.headers_mut()),
            version: body.version(),
            url: body.url().clone(),
            limit,
            stream_limit,
            deadline: Some(deadline),
            body: Body::Streaming(body),
        }
    }

    /// A response whose body is already in memory, e.g. one a connector script rewrote.
    pub fn buffered(
        status: http::StatusCode,
        headers: http::HeaderMap,
        version: http::Version,
        url: Url,
        body: Bytes,
        limit: u64,
    ) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers,
            version,
            url,
            limit,
            stream_limit: None,
            deadline: None,
            body: Body::Buffered(body),
        }
    }

    /// This response with its whole-body cap lowered to `limit` (never raised), e.g. to read a
    /// token endpoint's answer under a cap far below the one for API responses.
    #[must_use]
    pub fn limited_to(mut self, limit: u64) -> UpstreamResponse {
        self.limit = self.limit.min(limit);
        self
    }

    /// The URL this response came from (after any redirects followed). May hold credentials in
    /// its query: do not log it.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The cap this response's body is read whole under.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The cap this response's body is streamed under (`None`: no cap).
    pub fn stream_limit(&self) -> Option<u64> {
        self.stream_limit
    }

    /// Whether the declared `Content-Length` already exceeds `limit`.
    fn declared_over(&self, limit: u64) -> bool {
        match &self.body {
            Body::Streaming(body) => body.content_length().is_some_and(|len| len > limit),
            Body::Buffered(_) => false,
        }
    }

    /// Reads the whole body; fails with [`NetError::ResponseTooLarge`] as soon as the declared
    /// length, or the bytes actually received, exceed the cap, and with [`NetError::Timeout`]
    /// if the exchange's total time runs out first.
    pub async fn bytes(self) -> Result<Bytes, NetError> {
        match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.read_whole())
                .await
                .map_err(|_| NetError::Timeout)?,
            None => self.read_whole().await,
        }
    }

    async fn read_whole(mut self) -> Result<Bytes, NetError> {
        let limit = self.limit;
        if self.declared_over(limit) {
            return Err(NetError::ResponseTooLarge { limit });
        }
        let body = match self.body {
            Body::Buffered(bytes) => return Ok(bytes),
            Body::Streaming(ref mut body) => body,
        };
        let capacity = body.content_length().unwrap_or(0).min(limit).min(1 << 20);
        let mut buf = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = body.chunk().await.map_err(NetError::from_reqwest)? {
            if buf.len() as u64 + chunk.len() as u64 > limit {
                return Err(NetError::ResponseTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Reads the body as JSON. A body that is not valid JSON for `T` fails with
    /// [`NetError::Transport`], whose message gives the position but no content of the body.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, NetError> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            NetError::Transport(format!(
                "response body is not the expected JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }

    /// The body as a stream of chunks, for proxying, held one chunk at a time. With a streaming
    /// cap, fails with [`NetError::ResponseTooLarge`] before anything is streamed when the
    /// declared `Content-Length` exceeds it, so the caller can still answer with an error.
    pub fn try_into_stream(
        self,
    ) -> Result<impl Stream<Item = Result<Bytes, NetError>> + Send + 'static, NetError> {
        match self.stream_limit {
            Some(limit) if self.declared_over(limit) => Err(NetError::ResponseTooLarge { limit }),
            _ => Ok(self.into_stream()),
        }
    }

    /// The body as a stream of chunks, held one chunk at a time. With a streaming cap, yields
    /// [`NetError::ResponseTooLarge`] (and then ends) before any chunk that would take the total
    /// past the cap, or first of all if the declared length exceeds it; without one, streams
    /// bodies of any size.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, NetError>> + Send + 'static {
        let limit = self.stream_limit.unwrap_or(u64::MAX);
        let start = if self.declared_over(limit) {
            Reading::TooLarge
        } else {
            match self.body {
                Body::Streaming(body) => Reading::Body { body, seen: 0 },
                Body::Buffered(bytes) => Reading::Buffered(bytes),
            }
        };
        futures_util::stream::unfold(start, move |state| async move {
            match state {
                Reading::Done => None,
                Reading::Buffered(bytes) if bytes.is_empty() => None,
                Reading::Buffered(bytes) => Some((Ok(bytes), Reading::Done)),
                Reading::TooLarge => {
                    Some((Err(NetError::ResponseTooLarge { limit }), Reading::Done))
                }
                Reading::Body { mut body, seen } => match body.chunk().await {
                    Ok(None) => None,
                    Err(e) => Some((Err(NetError::from_reqwest(e)), Reading::Done)),
                    Ok(Some(chunk)) => {
                        let seen = seen.saturating_add(chunk.len() as u64);
                        if seen > limit {
                            Some((Err(NetError::ResponseTooLarge { limit }), Reading::Done))
                        } else {
                            Some((Ok(chunk), Reading::Body { body, seen }))
                        }
                    }
                },
            }
        })
    }
}

enum Reading {
    Body { body: reqwest::Response, seen: u64 },
    Buffered(Bytes),
    TooLarge,
    Done,
}

/// Shows status, version and header names only: URLs and header values may hold credentials.
impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("limit", &self.limit)
            .field("stream_limit", &self.stream_limit)
            .finish_non_exhaustive()
    }
}
