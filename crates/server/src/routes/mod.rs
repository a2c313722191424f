//! The REST API's route groups, one file each.

pub mod connections;
pub mod connectors;
pub mod integrations;
