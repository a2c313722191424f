//! The one hardened outbound HTTP client: host allow-lists, safe URL joining, timeouts, no
//! redirects by default, optional blocking of non-public addresses, and response size caps.
//! Every outbound call Latchkey makes goes through [`Client::send`].

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod address;
mod client;
mod error;
mod policy;
mod response;
mod tls;
mod url_join;

pub use client::{Client, ClientConfig, MAX_REDIRECTS};
pub use error::NetError;
pub use policy::HostPolicy;
pub use response::UpstreamResponse;
pub use tls::install_crypto_provider;
pub use url_join::join;
