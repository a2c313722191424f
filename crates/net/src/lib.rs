//! The outbound HTTP client.
