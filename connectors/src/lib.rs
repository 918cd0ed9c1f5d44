//! Connectors: the only crate that talks to source systems.
//!
//! Each source sits behind the [`Connector`] trait, so the gateway resolves against one interface and knows no protocol.
//! `fhir` speaks HL7 FHIR R4, `oneroster` speaks 1EdTech OneRoster 1.2 rostering, and `early_years` speaks the early-years API described by `connectors/openapi/early-years.yaml`.
//! `http` is the plumbing they share: one pooled client per source, typed GETs, and the mapping of failures to [`ConnectorError`].

pub mod connector;
pub mod early_years;
pub mod error;
pub mod fhir;
#[cfg(test)]
mod hostile_input;
mod http;
pub mod oneroster;

pub use connector::{Connector, Parts, SourceConfig};

pub use early_years::EarlyYearsConnector;
pub use error::ConnectorError;
pub use fhir::FhirConnector;
pub use oneroster::OneRosterConnector;
