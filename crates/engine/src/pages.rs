//! Page requests as callers give them: an optional size and an optional opaque cursor token,
//! checked into a [`PageRequest`].

use latchkey_store::{Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest};

use crate::EngineError;

/// The page a caller asks for: `limit` rows (default [`DEFAULT_PAGE_SIZE`], at most
/// [`MAX_PAGE_SIZE`]) after `cursor`, a token a previous page returned. A limit out of range
/// is refused (field `limit`), and so is a token no list gave out (field `cursor`).
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, EngineError> {
    let page = PageRequest {
        limit: limit.unwrap_or(DEFAULT_PAGE_SIZE),
        after: cursor
            .map(Cursor::parse)
            .transpose()
            .map_err(|e| EngineError::invalid("cursor", e.to_string()))?,
    };
    check_limit(&page)?;
    Ok(page)
}

/// Refuses a page size outside 1..=[`MAX_PAGE_SIZE`].
pub(crate) fn check_limit(page: &PageRequest) -> Result<(), EngineError> {
    if !(1..=MAX_PAGE_SIZE).contains(&page.limit) {
        return Err(EngineError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(())
}
