//! Connectors: the only crate that talks to source systems.
//!
//! Each source sits behind the [`Connector`] trait, so the gateway resolves against one interface and knows no protocol.
//! `fhir` speaks HL7 FHIR R4, `oneroster` speaks 1EdTech OneRoster 1.2 rostering, and `early_years` speaks the early-years API described by `connectors/openapi/early-years.yaml`.
//! `http` is the plumbing they share: one pooled client per source, typed GETs, and the mapping of failures to [`ConnectorError`].
//! Every read passes, in order, through the answer cache and the coalescing of identical reads (`cache`), the retries under a budget (`retry`), the circuit breaker (`breaker`) and the credentials (`credentials`); `SourceClient::get_json` in `http` is the one place that says this order.
//! Before all of them, a read made earlier in the same GraphQL request is answered again from that request's reads (`request_reads`).

pub mod breaker;
pub mod cache;
pub mod connector;
pub mod credentials;
pub mod early_years;
pub mod error;
pub mod fhir;
#[cfg(test)]
mod hostile_input;
mod http;
pub mod oneroster;
pub mod request_reads;
pub mod retry;

pub use breaker::{BreakerConfig, BreakerState};
pub use cache::CacheConfig;
pub use connector::{Connector, HttpVersion, Parts, SourceConfig, SourceStats};
pub use credentials::Credentials;
pub use request_reads::RequestReads;
pub use retry::RetryConfig;

pub use early_years::EarlyYearsConnector;
pub use error::ConnectorError;
pub use fhir::FhirConnector;
pub use oneroster::OneRosterConnector;
