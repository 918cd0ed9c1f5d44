//! HTTP plumbing shared by the connectors: one pooled client per source, typed JSON GETs, and the mapping of transport failures to [`ConnectorError`].
//!
//! Nothing here logs or reports a query value, a URL with values, or a body: spans carry the path template only, and errors carry a status and at most a short protocol code.

use std::time::Instant;

use childgraph_schema::SourceName;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::connector::SourceConfig;
use crate::error::ConnectorError;

/// The largest answer body read from a source. A larger one is refused rather than buffered, so a misbehaving source cannot exhaust memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Reads a protocol's error body and returns a short machine code, if the body carries one.
pub(crate) type ErrorCodeReader = fn(&[u8]) -> Option<String>;

/// A successful answer: the parsed body and the paging header some protocols send.
#[derive(Debug)]
pub(crate) struct Fetched<T> {
    pub body: T,
    /// `X-Total-Count`, as OneRoster reports it.
    pub total_count: Option<usize>,
}

/// One source's HTTP client. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub(crate) struct SourceClient {
    client: reqwest::Client,
    source: SourceName,
    base_url: Url,
    read_error_code: ErrorCodeReader,
}

impl SourceClient {
    /// Builds the keep-alive client for one source, with its timeouts, media type and bearer token.
    pub fn new(
        source: SourceName,
        config: &SourceConfig,
        accept: &'static str,
        read_error_code: ErrorCodeReader,
    ) -> Result<Self, ConnectorError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ConnectorError::Unavailable {
                    source_name: source,
                    detail: "the bearer token is not a valid header value".into(),
                }
            })?;
            // Marked sensitive so that it never shows in debug output.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_keepalive(std::time::Duration::from_secs(60))
            // A redirect would carry the query, and its child data, to wherever the source points: sources are called at their configured URL only.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ConnectorError::Unavailable {
                source_name: source,
                detail: "the http client could not be built".into(),
            })?;
        Ok(Self {
            client,
            source,
            base_url: config.base_url.clone(),
            read_error_code,
        })
    }

    /// The URL of a path under the base URL, given as segments so that the base's own path is kept whether or not it ends in `/`.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Checks that a paging link the source sent points back at the source itself, resolving a relative one against the page it came from.
    /// Following a link elsewhere would send the bearer token and the query to another host.
    pub fn same_origin_link(&self, current: &Url, link: &str) -> Result<Url, ConnectorError> {
        let url = current
            .join(link)
            .map_err(|_| self.malformed("a paging link is not a url"))?;
        if url.origin() != self.base_url.origin() {
            return Err(self.malformed("a paging link points away from the source"));
        }
        Ok(url)
    }

    pub fn malformed(&self, detail: &str) -> ConnectorError {
        ConnectorError::Malformed {
            source_name: self.source,
            detail: detail.to_owned(),
        }
    }

    /// GETs `url` and parses the JSON body. `path` is the path template logged for the call (`Patient`, `users`), never the URL itself.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        path: &'static str,
    ) -> Result<Fetched<T>, ConnectorError> {
        let span = tracing::debug_span!(
            "source_call",
            source = %self.source,
            path,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let outcome = self.send(url).instrument(span.clone()).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.record("latency_ms", latency_ms);
        let (status, total_count, body) = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                span.in_scope(|| tracing::debug!(kind = error_kind(&error), "source call failed"));
                return Err(error);
            }
        };
        span.record("status", status);
        span.in_scope(|| tracing::debug!("source answered"));
        let body = serde_json::from_slice(&body).map_err(|e| self.unparseable(&e))?;
        Ok(Fetched { body, total_count })
    }

    async fn send(&self, url: Url) -> Result<(u16, Option<usize>, Vec<u8>), ConnectorError> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        let total_count = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(self.malformed("the answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status.as_u16(), total_count, body));
        }
        let code = (self.read_error_code)(&body)
            .and_then(|c| short_code(&c))
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let detail = format!("status {}{code}", status.as_u16());
        // 429 means busy, not wrong: the caller may try again later, as with a server error.
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(ConnectorError::Unavailable {
                source_name: self.source,
                detail,
            })
        } else if status.is_client_error() {
            Err(ConnectorError::Rejected {
                source_name: self.source,
                detail,
            })
        } else {
            Err(ConnectorError::Malformed {
                source_name: self.source,
                detail,
            })
        }
    }

    fn transport(&self, error: &reqwest::Error) -> ConnectorError {
        if error.is_timeout() {
            ConnectorError::Timeout {
                source_name: self.source,
            }
        } else {
            // reqwest's own message names the URL, query and all, so it is not passed on.
            let detail = if error.is_connect() {
                "connection failed"
            } else if error.is_body() || error.is_decode() {
                "the answer was cut off"
            } else {
                "the request failed"
            };
            ConnectorError::Unavailable {
                source_name: self.source,
                detail: detail.into(),
            }
        }
    }

    fn unparseable(&self, error: &serde_json::Error) -> ConnectorError {
        // serde_json's message can quote the offending value, which may be child data: only its category and position are reported.
        let category = match error.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        ConnectorError::Malformed {
            source_name: self.source,
            detail: format!(
                "the answer does not parse ({category} error at line {} column {})",
                error.line(),
                error.column()
            ),
        }
    }
}

fn error_kind(error: &ConnectorError) -> &'static str {
    match error {
        ConnectorError::Timeout { .. } => "timeout",
        ConnectorError::Unavailable { .. } => "unavailable",
        ConnectorError::Malformed { .. } => "malformed",
        ConnectorError::Rejected { .. } => "rejected",
    }
}

/// Keeps a protocol error code only if it looks like a code: a short token of letters, digits, `-`, `_`, `:` or `.`.
/// Free text from an error body could echo the query, so it never passes.
fn short_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 40
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'));
    ok.then(|| code.to_owned())
}

/// Splits ids into chunks of at most `size`, dropping duplicates while keeping the first occurrence's order.
pub(crate) fn unique_chunks(ids: &[String], size: usize) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    unique.chunks(size.max(1)).map(<[String]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> SourceClient {
        let config = SourceConfig::new(Url::parse(base).unwrap());
        SourceClient::new(SourceName::Health, &config, "application/json", |_| None).unwrap()
    }

    #[test]
    fn endpoint_keeps_the_base_path_with_or_without_a_trailing_slash() {
        for base in ["http://h/fhir", "http://h/fhir/"] {
            assert_eq!(
                client(base).endpoint(&["Patient"]).as_str(),
                "http://h/fhir/Patient"
            );
        }
        assert_eq!(
            client("http://h/api/v1")
                .endpoint(&["children", "batch"])
                .as_str(),
            "http://h/api/v1/children/batch"
        );
    }

    #[test]
    fn paging_links_must_stay_at_the_source() {
        let c = client("http://h:8080/fhir");
        let current = Url::parse("http://h:8080/fhir/Patient?x=1").unwrap();
        assert!(
            c.same_origin_link(&current, "http://h:8080/fhir/Patient?page=2")
                .is_ok()
        );
        assert_eq!(
            c.same_origin_link(&current, "/fhir/Patient?page=2")
                .unwrap()
                .as_str(),
            "http://h:8080/fhir/Patient?page=2"
        );
        assert!(
            c.same_origin_link(&current, "http://evil/fhir/Patient")
                .is_err()
        );
        assert!(
            c.same_origin_link(&current, "https://h:8080/fhir/Patient")
                .is_err()
        );
    }

    #[test]
    fn only_token_like_codes_pass() {
        assert_eq!(
            short_code("invalid_filter_field").as_deref(),
            Some("invalid_filter_field")
        );
        assert_eq!(short_code("not-found").as_deref(), Some("not-found"));
        assert_eq!(short_code("no patient called O'Brien"), None);
        assert_eq!(short_code(&"x".repeat(41)), None);
        assert_eq!(short_code(""), None);
    }

    #[test]
    fn chunks_are_unique_and_bounded() {
        let ids: Vec<String> = ["a", "b", "a", "c", "d"].map(String::from).to_vec();
        assert_eq!(
            unique_chunks(&ids, 2),
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["c".into(), "d".into()]
            ]
        );
        assert!(unique_chunks(&[], 100).is_empty());
    }
}
