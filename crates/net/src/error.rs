//! `NetError`: every way an outbound call can fail, with messages that name the host at most —
//! never a full URL, header, query string or body, since those may carry credentials.

use std::error::Error as StdError;

use crate::address::{BlockedResolution, LookupFailed};

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
    /// The connection could not be established. The message is a summary for people, e.g.
    /// `could not reach api.example.com: DNS lookup failed`; the full chain of causes is logged.
    #[error("{0}")]
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
    /// The request failed after connecting, or the response could not be read or decoded. The
    /// message is a summary for people (`the exchange with api.example.com failed: the
    /// connection was reset`); the full chain of causes is logged.
    #[error("{0}")]
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

    /// Maps a reqwest error, dropping its URL so the message cannot leak a query string. The
    /// message summarises the cause for people and names the host; the whole chain of causes
    /// goes to the log only.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> NetError {
        let host = err.url().and_then(|u| u.host_str()).map(str::to_owned);
        let err = err.without_url();
        if chain(&err).any(|e| e.is::<BlockedResolution>()) {
            return NetError::BlockedAddress;
        }
        if err.is_timeout() {
            return NetError::Timeout;
        }
        let detail = describe(&err);
        if err.is_builder() {
            return NetError::Build(detail);
        }
        let host = host.as_deref().unwrap_or("the API");
        let cause = summary(&err);
        if err.is_connect() {
            tracing::warn!(%host, error = %detail, "could not reach the API");
            NetError::Connect(format!(
                "could not reach {host}: {}",
                cause.unwrap_or("the connection failed")
            ))
        } else {
            tracing::warn!(%host, error = %detail, "exchange with the API failed");
            let cause = cause.unwrap_or(if err.is_decode() {
                "its response could not be decoded"
            } else if err.is_body() {
                "its response body could not be read"
            } else {
                "the connection failed mid-exchange"
            });
            NetError::Transport(format!("the exchange with {host} failed: {cause}"))
        }
    }
}

/// What went wrong, in words for people: the first cause in the chain that is recognised.
fn summary(err: &(dyn StdError + 'static)) -> Option<&'static str> {
    use std::io::ErrorKind;
    for e in chain(err) {
        if e.is::<LookupFailed>() {
            return Some("DNS lookup failed");
        }
        if e.is::<rustls::Error>() {
            return Some("the TLS handshake failed");
        }
        let Some(io) = e.downcast_ref::<std::io::Error>() else { continue };
        // An io::Error's `source` skips the error it wraps, so look inside it here.
        if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return Some("the TLS handshake failed");
        }
        let words = match io.kind() {
            ErrorKind::ConnectionRefused => "the connection was refused",
            ErrorKind::ConnectionReset => "the connection was reset",
            ErrorKind::ConnectionAborted => "the connection was aborted",
            ErrorKind::NotConnected | ErrorKind::BrokenPipe => "the connection was closed",
            ErrorKind::UnexpectedEof => "the connection closed early",
            ErrorKind::TimedOut => "the connection timed out",
            ErrorKind::HostUnreachable => "the host is unreachable",
            ErrorKind::NetworkUnreachable => "the network is unreachable",
            ErrorKind::AddrNotAvailable => "no local address to connect from",
            _ => continue,
        };
        return Some(words);
    }
    None
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
