//! Latchkey's core: the connector model and its parsing, templates, the `Secret` type and the
//! pure auth strategies. No I/O happens here.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod auth;
pub mod connector;
pub mod id;
pub mod interval;
pub mod oauth2;
pub mod request;
pub mod secret;
pub mod template;

pub use connector::{AuthMethod, Connector, ConnectorError};
pub use id::{ConnectionId, ConnectorId, EnvironmentId, IdError, IntegrationId};
pub use interval::{Interval, InvalidInterval};
pub use request::OutgoingRequest;
pub use secret::Secret;
