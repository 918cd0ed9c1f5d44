//! The connector boundary: what the gateway asks of every source.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use childgraph_schema::{PersonRecord, RecordDetails, SearchCriteria, SourceName};

use crate::breaker::{BreakerConfig, BreakerState};
use crate::cache::CacheConfig;
use crate::credentials::Credentials;
use crate::error::ConnectorError;
use crate::retry::RetryConfig;

/// Which parts of [`RecordDetails`] to fetch. The policy decides before the fetch, so a withheld part is never requested from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

/// How to reach a source, and how hard to try.
#[derive(Clone)]
pub struct SourceConfig {
    /// The base URL: FHIR base (`…/fhir`), OneRoster base (`…/ims/oneroster/rostering/v1p2`) or early-years base (`…/api/v1`).
    pub base_url: url::Url,
    /// Bearer token sent with every request, if the source needs one. Kept for existing callers: the same as `credentials: Credentials::Bearer`, and not to be set with other credentials.
    pub bearer_token: Option<String>,
    /// How the gateway proves itself to the source.
    pub credentials: Credentials,
    /// The longest one call may take, connect, retries and backoff included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The most records one search follows across pages.
    pub max_search_results: usize,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub cache: CacheConfig,
    /// A CA certificate (PEM, one or more) trusted for this source on top of the public roots, for a source with a private CA.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The client certificate and private key (PEM, together) presented for mutual TLS.
    pub client_identity_pem: Option<Vec<u8>>,
    /// Which HTTP versions the client speaks to the source.
    pub http_version: HttpVersion,
}

/// Which HTTP versions a source's client speaks.
///
/// Over HTTP/2 all of a source's concurrent requests share one connection, and requests and answers that are ready
/// together travel in one write: under load that is far fewer system calls and wake-ups, on both sides, than one
/// request at a time on each of many HTTP/1.1 connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/2 when the source offers it in the TLS handshake (ALPN), HTTP/1.1 otherwise; a source at an `http://`
    /// URL is spoken to in HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: required in the TLS handshake, or, at an `http://` URL, spoken from the first byte (h2c with
    /// prior knowledge). A source that does not speak it fails every request.
    Http2,
}

impl HttpVersion {
    pub const ALL: [Self; 3] = [Self::Auto, Self::Http1, Self::Http2];

    /// The name a config gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Http1 => "http1",
            Self::Http2 => "http2",
        }
    }
}

impl std::str::FromStr for HttpVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown HTTP version {s:?}: one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand so that the bearer token and the private key never show.
        f.debug_struct("SourceConfig")
            .field("base_url", &self.base_url.as_str())
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("credentials", &self.credentials)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_search_results", &self.max_search_results)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("cache", &self.cache)
            .field("http_version", &self.http_version)
            .field("ca_certificate_pem", &self.ca_certificate_pem.is_some())
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl SourceConfig {
    pub fn new(base_url: url::Url) -> Self {
        Self {
            base_url,
            bearer_token: None,
            credentials: Credentials::None,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            max_search_results: 500,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            cache: CacheConfig::default(),
            ca_certificate_pem: None,
            client_identity_pem: None,
            http_version: HttpVersion::Auto,
        }
    }
}

/// What a source's client has done since it was built, for metrics. Counts only: no URL, no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    /// Requests sent to the source, retries included, token requests not.
    pub requests: u64,
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads not found in the cache (every read, when the cache is off), deduplicated ones included.
    pub cache_misses: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retries not sent because the retry budget was spent.
    pub retries_refused: u64,
    /// Reads that shared an identical read already in flight instead of sending their own.
    pub deduplicated: u64,
    /// Reads answered from an identical read made earlier in the same GraphQL request.
    pub reused: u64,
    pub breaker: BreakerState,
    /// Whether a request would be let through now: the breaker is closed, or open with its wait over, so that the next
    /// request probes the source.
    pub accepting: bool,
}

/// The dates of birth a search blocks on: the date given and, when its day could be a month, the date with day and
/// month swapped, so that a child recorded the other way round in a source is still found.
pub fn birth_dates(criteria: &SearchCriteria) -> Vec<chrono::NaiveDate> {
    use chrono::Datelike;
    let Some(date) = criteria.date_of_birth else {
        return Vec::new();
    };
    let mut dates = vec![date];
    if date.day() != date.month()
        && let Some(swapped) =
            chrono::NaiveDate::from_ymd_opt(date.year(), date.day(), date.month())
    {
        dates.push(swapped);
    }
    dates
}

/// How many leading characters of each name the name block asks for.
pub const NAME_PREFIX: usize = 3;

/// The name block of a search: the first [`NAME_PREFIX`] characters of the given name and of the family name, so that
/// a child whose date of birth is mistyped in a source (one digit, or the year) is still found there. Only when both
/// names are given: a family-name prefix alone would ask a source for a large share of its children.
pub fn name_prefixes(criteria: &SearchCriteria) -> Option<(String, String)> {
    let prefix = |name: &str| -> Option<String> {
        let p: String = name.trim().chars().take(NAME_PREFIX).collect();
        (!p.is_empty()).then_some(p)
    };
    let given = criteria.given_name.as_deref()?.split_whitespace().next()?;
    Some((prefix(given)?, prefix(criteria.family_name.as_deref()?)?))
}

/// Whether `name` begins with `prefix`, ignoring case: for sources whose filter only finds names containing a value.
pub fn starts_with_ignoring_case(name: &str, prefix: &str) -> bool {
    name.to_lowercase().starts_with(&prefix.to_lowercase())
}

/// A source system, seen through its protocol.
///
/// Every method takes many ids at once, so that the number of requests to a source depends on the shape of a query, not on how many children it returns.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug + 'static {
    fn source(&self) -> SourceName;

    /// Counts of requests, cache use, retries and the breaker's state, for metrics.
    fn stats(&self) -> SourceStats;

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

#[cfg(test)]
mod tests {
    use super::HttpVersion;

    #[test]
    fn an_http_version_reads_back_from_its_name_as_a_config_writes_it() {
        for version in HttpVersion::ALL {
            let name = version.as_str();
            assert_eq!(name.parse::<HttpVersion>(), Ok(version));
            let from_config: HttpVersion =
                serde_json::from_value(serde_json::Value::from(name)).expect("a config's value");
            assert_eq!(from_config, version);
        }
        let refused = "http3".parse::<HttpVersion>().unwrap_err();
        assert!(
            refused.contains("http3") && refused.contains("http2"),
            "{refused}"
        );
    }
}
