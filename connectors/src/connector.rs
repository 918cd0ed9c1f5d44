//! The connector boundary: what the gateway asks of every source.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use childgraph_schema::{PersonRecord, RecordDetails, SearchCriteria, SourceName};

use crate::error::ConnectorError;

/// Which parts of [`RecordDetails`] to fetch. The policy decides before the fetch, so a withheld part is never requested from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parts {
    pub carers: bool,
    pub involvements: bool,
    pub participation: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        carers: true,
        involvements: true,
        participation: true,
    };
    pub const NONE: Parts = Parts {
        carers: false,
        involvements: false,
        participation: false,
    };

    pub fn is_empty(self) -> bool {
        self == Parts::NONE
    }
}

/// How to reach a source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The base URL: FHIR base (`…/fhir`), OneRoster base (`…/ims/oneroster/rostering/v1p2`) or early-years base (`…/api/v1`).
    pub base_url: url::Url,
    /// Bearer token sent with every request, if the source needs one.
    pub bearer_token: Option<String>,
    /// The longest one request may take, connect included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The most records one search follows across pages.
    pub max_search_results: usize,
}

impl SourceConfig {
    pub fn new(base_url: url::Url) -> Self {
        Self {
            base_url,
            bearer_token: None,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            max_search_results: 500,
        }
    }
}

/// A source system, seen through its protocol.
///
/// Every method takes many ids at once, so that the number of requests to a source depends on the shape of a query, not on how many children it returns.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug + 'static {
    fn source(&self) -> SourceName;

    /// Blocking queries for the criteria: every record of this source that could be the child searched for.
    /// Scoring and linking are the caller's: this may return more than the criteria strictly match.
    async fn search(&self, criteria: &SearchCriteria) -> Result<Vec<PersonRecord>, ConnectorError>;

    /// The records with these ids. Ids the source does not know are left out.
    async fn records(&self, ids: &[String]) -> Result<Vec<PersonRecord>, ConnectorError>;

    /// The details of these records, only the parts asked for. Every id asked for has an entry, empty if the source holds nothing.
    async fn details(
        &self,
        ids: &[String],
        parts: Parts,
    ) -> Result<HashMap<String, RecordDetails>, ConnectorError>;
}
