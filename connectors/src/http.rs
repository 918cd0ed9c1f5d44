//! HTTP plumbing shared by the connectors: one pooled client per source, typed JSON GETs through the cache, retries and circuit breaker, and the mapping of transport failures to [`ConnectorError`].
//!
//! Nothing here logs or reports a query value, a URL with values, or a body: spans carry the path template only, and errors carry a status and at most a short protocol code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use childgraph_schema::SourceName;
use get_size2::GetSize;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use crate::breaker::{Breaker, Permit};
use crate::cache::{Answer, AnswerCache, Parsed};
use crate::connector::{HttpVersion, SourceConfig, SourceStats};
use crate::credentials::{Credentials, TokenSource};
use crate::error::ConnectorError;
use crate::request_reads::RequestReads;
use crate::retry::{RetryBudget, RetryConfig, is_retryable};

/// The largest answer body read from a source. A larger one is refused rather than buffered, so a misbehaving source cannot exhaust memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The most of a declared body's length set aside before its bytes come; a longer body grows as it is read.
const BODY_SET_ASIDE_BYTES: u64 = 256 * 1024;
/// How often an HTTP/2 connection to a source is pinged, and how long the answer may take before it is closed.
const HTTP2_PING_EVERY: Duration = Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a protocol's error body and returns a short machine code, if the body carries one.
pub(crate) type ErrorCodeReader = fn(&[u8]) -> Option<String>;

/// A successful answer: the parsed body and the paging header some protocols send.
#[derive(Debug)]
pub(crate) struct Fetched<T> {
    pub body: T,
    /// `X-Total-Count`, as OneRoster reports it.
    pub total_count: Option<usize>,
}

/// One source's HTTP client. Cloning is cheap and shares the connection pool, the cache, the retry budget and the breaker.
#[derive(Debug, Clone)]
pub(crate) struct SourceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    source: SourceName,
    base_url: Url,
    read_error_code: ErrorCodeReader,
    /// The whole time one read may take, retries and backoff included.
    request_timeout: Duration,
    retry: RetryConfig,
    budget: RetryBudget,
    breaker: Breaker,
    cache: AnswerCache,
    /// Set when the source takes OAuth2 client credentials; a static bearer token sits in the client's default headers instead.
    tokens: Option<TokenSource>,
    requests: AtomicU64,
    reused: AtomicU64,
    retries: AtomicU64,
    retries_refused: AtomicU64,
}

impl SourceClient {
    /// Builds the keep-alive client for one source, with its timeouts, media type, TLS trust and credentials.
    pub fn new(
        source: SourceName,
        config: &SourceConfig,
        accept: &'static str,
        read_error_code: ErrorCodeReader,
    ) -> Result<Self, ConnectorError> {
        let refuse = |detail: &str| ConnectorError::Unavailable {
            source_name: source,
            detail: detail.to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        let bearer = match (&config.bearer_token, &config.credentials) {
            (Some(token), Credentials::None) | (None, Credentials::Bearer(token)) => Some(token),
            (None, _) => None,
            (Some(_), _) => {
                return Err(refuse(
                    "the source has both a bearer token and other credentials",
                ));
            }
        };
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| refuse("the bearer token is not a valid header value"))?;
            // Marked sensitive so that it never shows in debug output.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // A redirect would carry the query, and its child data, to wherever the source points: sources are called at their configured URL only.
            .redirect(reqwest::redirect::Policy::none());
        builder = match config.http_version {
            HttpVersion::Http1 => builder.http1_only(),
            HttpVersion::Http2 => builder.http2_prior_knowledge(),
            HttpVersion::Auto => builder,
        };
        if config.http_version != HttpVersion::Http1 {
            // One connection carries every request in flight, so one gone silent would hold them all until their
            // timeouts: a ping unanswered within 10 s closes it, and the next request opens a new one.
            builder = builder
                .http2_keep_alive_interval(HTTP2_PING_EVERY)
                .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
                .http2_keep_alive_while_idle(true);
        }
        if let Some(pem) = &config.ca_certificate_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| refuse("the ca certificate is not valid pem"))?;
            if certificates.is_empty() {
                return Err(refuse("the ca certificate pem holds no certificate"));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(pem) = &config.client_identity_pem {
            // The error is not passed on: it could quote the key.
            let identity = reqwest::Identity::from_pem(pem).map_err(|_| {
                refuse("the client identity is not a valid pem certificate and private key")
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|_| refuse("the http client could not be built"))?;
        let tokens = match &config.credentials {
            Credentials::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Some(TokenSource::new(
                source,
                token_url.clone(),
                client_id.clone(),
                client_secret.clone(),
                scope.clone(),
            )),
            Credentials::None | Credentials::Bearer(_) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                source,
                base_url: config.base_url.clone(),
                read_error_code,
                request_timeout: config.request_timeout,
                retry: config.retry.clone(),
                budget: RetryBudget::new(&config.retry),
                breaker: Breaker::new(config.breaker.clone()),
                cache: AnswerCache::new(&config.cache),
                tokens,
                requests: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                retries_refused: AtomicU64::new(0),
            }),
        })
    }

    pub fn stats(&self) -> SourceStats {
        let inner = &self.inner;
        SourceStats {
            requests: inner.requests.load(Ordering::Relaxed),
            cache_hits: inner.cache.hits(),
            cache_misses: inner.cache.misses(),
            retries: inner.retries.load(Ordering::Relaxed),
            retries_refused: inner.retries_refused.load(Ordering::Relaxed),
            deduplicated: inner.cache.deduplicated(),
            reused: inner.reused.load(Ordering::Relaxed),
            breaker: inner.breaker.state(),
            accepting: inner.breaker.allows(),
        }
    }

    /// The URL of a path under the base URL, given as segments so that the base's own path is kept whether or not it ends in `/`.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base_url.clone();
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
        if url.origin() != self.inner.base_url.origin() {
            return Err(self.malformed("a paging link points away from the source"));
        }
        Ok(url)
    }

    pub fn malformed(&self, detail: &str) -> ConnectorError {
        self.inner.malformed(detail)
    }

    /// GETs `url` and parses the JSON body. `path` is the path template logged for the call (`Patient`, `users`), never the URL itself.
    ///
    /// The order of a read: the cache and identical reads in flight first, then attempts under the retry budget, each let through by the circuit breaker and sent with the credentials.
    pub async fn get_json<T>(
        &self,
        url: Url,
        path: &'static str,
    ) -> Result<Fetched<T>, ConnectorError>
    where
        T: DeserializeOwned + GetSize + Clone + Send + Sync + 'static,
    {
        let span = tracing::debug_span!(
            "source_call",
            source = %self.inner.source,
            path,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let key = url.to_string();
        let outcome = match RequestReads::recall(&key) {
            Some(answer) => {
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                Ok(answer)
            }
            None => {
                let inner = self.inner.clone();
                // An answer the cache keeps is parsed once, here, and weighed with its parsed form.
                let keep = self.inner.cache.keeps_answers();
                let read = async move {
                    let mut answer = inner.read(url).await?;
                    if keep && answer.status == 200 {
                        answer.parsed = Parsed::of::<T>(&answer.body).map(Arc::new);
                    }
                    Ok(answer)
                };
                let outcome = self
                    .inner
                    .cache
                    .get(key.clone(), Box::pin(read))
                    .instrument(span.clone())
                    .await;
                if let Ok(answer) = &outcome {
                    RequestReads::remember(&key, answer);
                }
                outcome
            }
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.record("latency_ms", latency_ms);
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                span.in_scope(|| tracing::debug!(kind = error_kind(&error), "source call failed"));
                return Err(error);
            }
        };
        span.record("status", answer.status);
        span.in_scope(|| tracing::debug!("source answered"));
        if let Some(body) = answer.parsed.as_ref().and_then(|p| p.get::<T>()) {
            return Ok(Fetched {
                body: body.clone(),
                total_count: answer.total_count,
            });
        }
        match parse_json(&answer.body) {
            Ok(body) => Ok(Fetched {
                body,
                total_count: answer.total_count,
            }),
            Err(error) => {
                // A source that sends what does not parse is broken, however it said it: the answer is not kept and counts against the breaker.
                if !answer.found_unusable.swap(true, Ordering::Relaxed) {
                    self.inner.breaker.record_failure();
                    self.inner.cache.forget(&key).await;
                    RequestReads::forget(&key);
                }
                Err(self.inner.unparseable(&error))
            }
        }
    }
}

impl Inner {
    /// One read, retried under the budget until it succeeds, fails for good, or would outlast `request_timeout`.
    async fn read(&self, url: Url) -> Result<Answer, ConnectorError> {
        let deadline = Instant::now() + self.request_timeout;
        self.budget.deposit();
        let mut retry = 0;
        loop {
            let error = match self.attempt(&url, deadline).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            // An open breaker means the source is known to be down: another try would only be refused.
            if retry >= self.retry.max_retries || !is_retryable(&error) || !self.breaker.allows() {
                return Err(error);
            }
            let backoff = self.retry.backoff(retry);
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            if !self.budget.try_spend() {
                self.retries_refused.fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            retry += 1;
        }
    }

    /// One attempt, if the breaker lets it through, with one fresh token if the source refused the one sent.
    async fn attempt(&self, url: &Url, deadline: Instant) -> Result<Answer, ConnectorError> {
        let Some(permit) = self.breaker.acquire() else {
            return Err(ConnectorError::CircuitOpen {
                source_name: self.source,
            });
        };
        let mut refreshed = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                // Nothing was sent, so the breaker learns nothing: the permit is dropped unsettled.
                return Err(ConnectorError::Timeout {
                    source_name: self.source,
                });
            }
            let token = match &self.tokens {
                // Bounded here as well as inside: a caller waiting on another's refresh must not outlast its own deadline.
                Some(tokens) => {
                    match tokio::time::timeout(remaining, tokens.token(&self.client, remaining))
                        .await
                    {
                        Ok(Ok(token)) => Some(token),
                        Ok(Err(error)) => return settle(permit, Err(error)),
                        Err(_) => {
                            return settle(
                                permit,
                                Err(ConnectorError::Timeout {
                                    source_name: self.source,
                                }),
                            );
                        }
                    }
                }
                None => None,
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self.send(url.clone(), remaining, token.as_deref()).await;
            if let (Ok(answer), Some(tokens), Some(token)) = (&outcome, &self.tokens, &token)
                && answer.status == 401
                && !refreshed
            {
                // The token may have been revoked or expired early: one fresh token, then the source's word stands.
                tokens.invalidate(token).await;
                refreshed = true;
                continue;
            }
            return settle(permit, outcome.and_then(|answer| self.judge(answer)));
        }
    }

    /// Sends one GET and reads the whole body, whatever the status.
    async fn send(
        &self,
        url: Url,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<Answer, ConnectorError> {
        let mut request = self.client.get(url).timeout(timeout);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let total_count = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // Sized once from the declared length, when there is one: grown chunk by chunk, a body of a few kilobytes
        // is copied a dozen times over. Only so much is set aside before the bytes come, so that a source declaring
        // a long body and sending little cannot make the gateway hold memory for it.
        let declared = response.content_length().unwrap_or(0);
        if declared > MAX_BODY_BYTES as u64 {
            return Err(self.malformed("the answer is too large"));
        }
        let mut body = Vec::with_capacity(declared.min(BODY_SET_ASIDE_BYTES) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(self.malformed("the answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            total_count,
            body: Bytes::from(body),
            parsed: None,
            found_unusable: Arc::default(),
        })
    }

    /// Passes a success on and turns any other status into the error it means.
    fn judge(&self, answer: Answer) -> Result<Answer, ConnectorError> {
        let status = reqwest::StatusCode::from_u16(answer.status)
            .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_success() {
            return Ok(answer);
        }
        let code = (self.read_error_code)(&answer.body)
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

    fn malformed(&self, detail: &str) -> ConnectorError {
        ConnectorError::Malformed {
            source_name: self.source,
            detail: detail.to_owned(),
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

/// Tells the breaker how an attempt went. A refusal (4xx) is a success to the breaker: the source is up and answering.
fn settle(
    permit: Permit<'_>,
    outcome: Result<Answer, ConnectorError>,
) -> Result<Answer, ConnectorError> {
    match &outcome {
        Ok(_) | Err(ConnectorError::Rejected { .. }) => permit.succeeded(),
        Err(_) => permit.failed(),
    }
    outcome
}

fn error_kind(error: &ConnectorError) -> &'static str {
    match error {
        ConnectorError::Timeout { .. } => "timeout",
        ConnectorError::Unavailable { .. } => "unavailable",
        ConnectorError::Malformed { .. } => "malformed",
        ConnectorError::Rejected { .. } => "rejected",
        ConnectorError::CircuitOpen { .. } => "circuit_open",
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

/// A source's JSON body, parsed. JSON exchanged between systems is UTF-8 (RFC 8259, 8.1): the whole body is checked
/// once, where serde_json reading bytes checks each string as it goes (several hundred strings in an answer's
/// bodies). A body that is not UTF-8 is left to serde_json's reading of bytes, for its error and position.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Splits ids into chunks of at most `size`, dropping duplicates while keeping the first occurrence's order.
pub(crate) fn unique_chunks(ids: &[String], size: usize) -> Vec<Vec<&str>> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let unique: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect();
    unique.chunks(size.max(1)).map(<[&str]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> SourceClient {
        let config = SourceConfig::new(Url::parse(base).unwrap());
        SourceClient::new(SourceName::Health, &config, "application/json", |_| None).unwrap()
    }

    #[test]
    fn a_body_parses_as_serde_json_reads_it_from_bytes() {
        let bodies: [&[u8]; 5] = [
            "{\"name\":\"Zoë O'Brien \u{1F600}\",\"n\":[1,2]}".as_bytes(),
            br#"{"name":"\u00e9\ud83d\ude00","n":[]}"#,
            br#"{"name":"a","n":[1,"#,
            // Not UTF-8 inside a string, and outside one.
            b"{\"name\":\"\xff\xfe\",\"n\":[]}",
            b"{\"name\":\"a\",\xff\"n\":[]}",
        ];
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Body {
            name: String,
            n: Vec<u32>,
        }
        for body in bodies {
            let ours = parse_json::<Body>(body);
            let theirs = serde_json::from_slice::<Body>(body);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    assert_eq!(a.classify(), b.classify());
                    assert_eq!((a.line(), a.column()), (b.line(), b.column()));
                }
                (a, b) => panic!("{a:?} against {b:?}"),
            }
        }
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
        assert_eq!(unique_chunks(&ids, 2), vec![vec!["a", "b"], vec!["c", "d"]]);
        assert!(unique_chunks(&[], 100).is_empty());
    }
}
