//! Filtered, paged lists: what a list asks for ([`ConnectionFilter`], [`IntegrationFilter`],
//! [`PageRequest`]) and what it gets ([`Page`]). Pages are keyset pages in `(created_at, id)`
//! order: a [`Cursor`] names the last row of the page before, so a row inserted or deleted
//! while a caller walks the list neither shifts nor repeats the rows it has not seen yet.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::health::HealthState;
use crate::model::{ConnectionStatus, Tags};
use crate::rows::{nanos, timestamp};

/// The most rows one page holds.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The rows a page holds when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The environment a fresh data directory holds, which a filter reads by default.
pub const DEFAULT_ENVIRONMENT: &str = "default";

/// Which connections a list returns: every condition given must hold (tags are ANDed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFilter {
    /// The environment the connections belong to (a list is always of one).
    pub environment: String,
    /// Only connections made through this integration.
    pub integration: Option<String>,
    /// Only connections with this status.
    pub status: Option<ConnectionStatus>,
    /// Only connections in this health state.
    pub health: Option<HealthState>,
    /// Only connections of the end user with this id.
    pub end_user: Option<String>,
    /// Only connections that carry every one of these tags with exactly this value.
    pub tags: Tags,
}

impl ConnectionFilter {
    /// Every connection of `environment`.
    pub fn in_environment(environment: impl Into<String>) -> Self {
        Self {
            environment: environment.into(),
            integration: None,
            status: None,
            health: None,
            end_user: None,
            tags: Tags::default(),
        }
    }
}

impl Default for ConnectionFilter {
    /// Every connection of the `default` environment.
    fn default() -> Self {
        Self::in_environment(DEFAULT_ENVIRONMENT)
    }
}

/// Which integrations a list returns: those of one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationFilter {
    /// The environment the integrations belong to.
    pub environment: String,
}

impl IntegrationFilter {
    /// Every integration of `environment`.
    pub fn in_environment(environment: impl Into<String>) -> Self {
        Self { environment: environment.into() }
    }
}

impl Default for IntegrationFilter {
    /// Every integration of the `default` environment.
    fn default() -> Self {
        Self::in_environment(DEFAULT_ENVIRONMENT)
    }
}

/// One page of a list: how many rows at most, and after which row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many rows (the store caps it at [`MAX_PAGE_SIZE`]; 0 reads as 1).
    pub limit: u32,
    /// Start after this row; the first page when `None`.
    pub after: Option<Cursor>,
}

impl Default for PageRequest {
    /// The first page of [`DEFAULT_PAGE_SIZE`] rows.
    fn default() -> Self {
        Self { limit: DEFAULT_PAGE_SIZE, after: None }
    }
}

impl PageRequest {
    /// The first page of `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }

    /// The number of rows to read: the limit within 1..=[`MAX_PAGE_SIZE`].
    pub(crate) fn size(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

/// One page of rows in `(created_at, id)` order, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// The same page with each row changed by `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next: self.next }
    }
}

/// A position in a list: after the row with this creation time and id. Callers see it only as
/// an opaque token ([`Cursor::token`], [`Cursor::parse`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) created_at: i64,
    pub(crate) id: String,
}

/// The token is not one a list gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one a list returned")]
pub struct InvalidCursor;

/// Tokens start with this, so a change of format can be told apart.
const TOKEN_VERSION: &str = "1";

impl Cursor {
    /// The position after the row created at `created_at` with this `id`.
    pub fn after(created_at: OffsetDateTime, id: impl Into<String>) -> Result<Self, InvalidCursor> {
        Ok(Self { created_at: nanos(created_at).map_err(|_| InvalidCursor)?, id: id.into() })
    }

    /// The opaque token a caller passes back to get the next page (URL-safe).
    pub fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}:{}:{}", self.created_at, self.id))
    }

    /// The cursor a token from [`Cursor::token`] stands for.
    pub fn parse(token: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let mut parts = text.splitn(3, ':');
        let (Some(TOKEN_VERSION), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCursor);
        };
        let created_at: i64 = at.parse().map_err(|_| InvalidCursor)?;
        timestamp(created_at).map_err(|_| InvalidCursor)?;
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(InvalidCursor);
        }
        Ok(Self { created_at, id: id.to_owned() })
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_tokens_roundtrip_and_refuse_anything_else() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap();
        let cursor = Cursor::after(at, "conn:with:colons").unwrap();
        let token = cursor.token();
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::parse(&token), Ok(cursor));
        for bad in [
            "",
            "!!!",
            &URL_SAFE_NO_PAD.encode("2:1:x"),
            &URL_SAFE_NO_PAD.encode("1:x:id"),
            &URL_SAFE_NO_PAD.encode("1:5:"),
            &URL_SAFE_NO_PAD.encode("1:5"),
            &URL_SAFE_NO_PAD.encode("1:99999999999999999999:id"),
        ] {
            assert_eq!(Cursor::parse(bad), Err(InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_kept_within_bounds() {
        assert_eq!(PageRequest::first(0).size(), 1);
        assert_eq!(PageRequest::first(7).size(), 7);
        assert_eq!(PageRequest::first(5000).size(), MAX_PAGE_SIZE);
        assert_eq!(PageRequest::default().size(), DEFAULT_PAGE_SIZE);
    }
}
