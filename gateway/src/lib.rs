//! The childgraph gateway: the only crate that knows axum, the config file, the store and the process.
//!
//! `startup` assembles a gateway from its parts; `server::run` serves it; `pipeline` is the order in which a request
//! for child data is handled.

pub mod access;
pub mod accounts;
pub mod accounts_cli;
pub mod audit;
pub mod audit_cli;
pub mod auditing;
pub mod auth;
pub mod config;
pub mod demo;
pub mod demo_key;
pub mod federation;
pub mod graphql;
pub mod jwks;
pub mod linkage_cli;
pub mod metrics;
pub mod pipeline;
pub mod policy_cli;
pub mod policy_reload;
pub mod practice;
pub mod quotas;
pub mod server;
pub mod shields;
pub mod startup;
pub mod store;
pub mod telemetry;
