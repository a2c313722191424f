//! The REST API's route groups, one file each.

pub mod connect_sessions;
pub mod connections;
pub mod connectors;
pub mod integrations;
