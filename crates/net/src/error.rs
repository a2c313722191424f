//! `NetError`: every way an outbound call can fail, with messages that name the host at most —
//! never a full URL, header, query string or body, since those may carry credentials.

use std::error::Error as StdError;

use crate::address::BlockedResolution;

/// An outbound request failed or was refused.
///
/// The `Display` text is safe to log: it may name a host, never a URL's path or query, a header
/// or a body.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The request's host is not in the connector's [`HostPolicy`](crate::HostPolicy).
    /// Refused before any network activity.
    #[error("host {host} is not allowed for this connector")]
    HostNotAllowed {
        /// The refused host (no scheme, path or query).
        host: String,
    },
    /// A caller-supplied path could leave the connector's base URL.
    #[error("unsafe request path: {reason}")]
    UnsafePath {
        /// Which rule the path broke.
        reason: &'static str,
    },
    /// The URL could not be parsed, or uses a scheme other than http(s).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The connect or total timeout elapsed.
    #[error("request timed out")]
    Timeout,
    /// The connection could not be established.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The response body is larger than the configured cap.
    #[error("response body exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The host is, or resolves only to, a private or otherwise non-public address.
    #[error("destination address is not public")]
    BlockedAddress,
    /// The request failed after connecting, or the response could not be read or decoded.
    #[error("transport error: {0}")]
    Transport(String),
    /// The client could not be built.
    #[error("could not build HTTP client: {0}")]
    Build(String),
}

impl NetError {
    /// Whether this is [`NetError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, NetError::Timeout)
    }

    /// Maps a reqwest error, dropping its URL so the message cannot leak a query string.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> NetError {
        let err = err.without_url();
        if chain(&err).any(|e| e.is::<BlockedResolution>()) {
            return NetError::BlockedAddress;
        }
        if err.is_timeout() {
            return NetError::Timeout;
        }
        let detail = describe(&err);
        if err.is_connect() {
            NetError::Connect(detail)
        } else if err.is_builder() {
            NetError::Build(detail)
        } else {
            NetError::Transport(detail)
        }
    }
}

/// The error followed by its sources.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// `outer: cause: root cause`, skipping repeats (hyper often repeats its cause in its message).
fn describe(err: &reqwest::Error) -> String {
    let mut out = String::new();
    for e in chain(err) {
        let text = e.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
