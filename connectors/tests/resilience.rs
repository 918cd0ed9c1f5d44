//! The shared HTTP layer against fake sources on 127.0.0.1:0: circuit breaker, retries under a budget, the answer cache, coalescing of identical reads, and client credentials.
//!
//! Each fake counts the requests it sees, so every test asserts what reached the source, not only what the connector said.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use childgraph_connectors::{
    BreakerState, Connector, ConnectorError, Credentials, FhirConnector, SourceConfig,
};
use url::Url;

/// What the fake source answers to its `n`-th request (from 0), given the request's `Authorization` header.
type Handler = Arc<dyn Fn(usize, &str) -> (StatusCode, String) + Send + Sync>;

struct Fake {
    base: String,
    /// Requests to the source, the token endpoint left out.
    hits: Arc<AtomicUsize>,
    token_hits: Arc<AtomicUsize>,
    /// The `expires_in` the token endpoint states.
    expires_in: Arc<AtomicU64>,
}

impl Fake {
    /// Serves `handler` after `delay` on a fresh loopback port, with an OAuth2 token endpoint at `/token` handing out `tok-1`, `tok-2`…
    async fn spawn(
        delay: Duration,
        handler: impl Fn(usize, &str) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let token_hits = Arc::new(AtomicUsize::new(0));
        let expires_in = Arc::new(AtomicU64::new(3600));
        let handler: Handler = Arc::new(handler);
        let (h, t, e) = (hits.clone(), token_hits.clone(), expires_in.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (hits, token_hits, expires_in, handler) =
                (h.clone(), t.clone(), e.clone(), handler.clone());
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if req.uri().path() == "/token" {
                    assert_eq!(req.method(), "POST");
                    assert!(auth.starts_with("Basic "), "client id and secret go in basic auth");
                    let n = token_hits.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": expires_in.load(Ordering::SeqCst)});
                    return (StatusCode::OK, body.to_string()).into_response();
                }
                let n = hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                handler(n, &auth).into_response()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake {
            base,
            hits,
            token_hits,
            expires_in,
        }
    }

    fn config(&self) -> SourceConfig {
        let mut config = SourceConfig::new(Url::parse(&format!("{}/fhir", self.base)).unwrap());
        config.request_timeout = Duration::from_secs(2);
        // Short backoffs keep the tests quick; the breaker stays out of the way unless a test is about it.
        config.retry.base_backoff = Duration::from_millis(1);
        config.retry.max_backoff = Duration::from_millis(2);
        config.breaker.failure_threshold = 1000;
        config
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn token_hits(&self) -> usize {
        self.token_hits.load(Ordering::SeqCst)
    }
}

fn bundle() -> String {
    serde_json::json!({
        "resourceType": "Bundle", "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": "a", "name": [{"family": "Hartley", "given": ["Amelia"]}], "birthDate": "2019-06-14"}, "search": {"mode": "match"}}]
    })
    .to_string()
}

fn ok() -> (StatusCode, String) {
    (StatusCode::OK, bundle())
}

fn server_error() -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, "{}".into())
}

fn ids(id: &str) -> Vec<String> {
    vec![id.to_owned()]
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_lets_one_probe_through() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let fake = Fake::spawn(Duration::ZERO, move |_, _| {
        if h.load(Ordering::SeqCst) {
            ok()
        } else {
            server_error()
        }
    })
    .await;
    let mut config = fake.config();
    config.retry.max_retries = 0;
    config.breaker.failure_threshold = 3;
    config.breaker.open_for = Duration::from_millis(100);
    let connector = FhirConnector::new(config).unwrap();

    for _ in 0..3 {
        let error = connector.records(&ids("a")).await.unwrap_err();
        assert!(
            matches!(error, ConnectorError::Unavailable { .. }),
            "{error}"
        );
    }
    assert_eq!(fake.hits(), 3);
    assert_eq!(connector.stats().breaker, BreakerState::Open);

    let started = Instant::now();
    let error = connector.records(&ids("a")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ConnectorError::CircuitOpen { .. }),
        "{error}"
    );
    assert!(!error.is_timeout());
    assert_eq!(
        error.to_string(),
        format!(
            "{} is failing: its circuit breaker is open",
            error.source_name()
        )
    );
    assert!(took < Duration::from_millis(50), "took {took:?}");
    assert_eq!(fake.hits(), 3, "an open breaker sends nothing");

    // After open_for, one probe goes through; it fails, so the breaker opens again at once.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let error = connector.records(&ids("a")).await.unwrap_err();
    assert!(
        matches!(error, ConnectorError::Unavailable { .. }),
        "{error}"
    );
    assert_eq!(fake.hits(), 4);
    let error = connector.records(&ids("a")).await.unwrap_err();
    assert!(
        matches!(error, ConnectorError::CircuitOpen { .. }),
        "{error}"
    );
    assert_eq!(fake.hits(), 4);

    // A successful probe closes it.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(connector.records(&ids("a")).await.unwrap().len(), 1);
    assert_eq!(fake.hits(), 5);
    assert_eq!(connector.stats().breaker, BreakerState::Closed);
    assert_eq!(connector.records(&ids("b")).await.unwrap().len(), 0);
    assert_eq!(fake.hits(), 6);
}

#[tokio::test]
async fn only_one_probe_goes_through_a_half_open_breaker() {
    let fake = Fake::spawn(Duration::from_millis(50), |n, _| {
        if n == 0 { server_error() } else { ok() }
    })
    .await;
    let mut config = fake.config();
    config.retry.max_retries = 0;
    config.breaker.failure_threshold = 1;
    config.breaker.open_for = Duration::from_millis(20);
    config.cache.enabled = false;
    let connector = FhirConnector::new(config).unwrap();
    assert!(connector.records(&ids("a")).await.is_err());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let asked: Vec<Vec<String>> = ["p", "q", "r", "s"].map(ids).to_vec();
    let calls = asked.iter().map(|id| connector.records(id));
    let outcomes = futures::future::join_all(calls).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|e| matches!(e, ConnectorError::CircuitOpen { .. }))
    );
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn a_failed_first_attempt_is_retried() {
    let fake = Fake::spawn(
        Duration::ZERO,
        |n, _| {
            if n == 0 { server_error() } else { ok() }
        },
    )
    .await;
    let connector = FhirConnector::new(fake.config()).unwrap();
    assert_eq!(connector.records(&ids("a")).await.unwrap().len(), 1);
    assert_eq!(fake.hits(), 2);
    let stats = connector.stats();
    assert_eq!(
        (stats.requests, stats.retries, stats.retries_refused),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn a_429_is_retried() {
    let fake = Fake::spawn(Duration::ZERO, |n, _| {
        if n == 0 {
            (StatusCode::TOO_MANY_REQUESTS, "{}".into())
        } else {
            ok()
        }
    })
    .await;
    let connector = FhirConnector::new(fake.config()).unwrap();
    assert!(connector.records(&ids("a")).await.is_ok());
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn the_retry_budget_bounds_retries_across_calls() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| server_error()).await;
    let mut config = fake.config();
    config.retry.max_retries = 5;
    config.retry.budget_ratio = 0.0;
    config.retry.budget_max = 3.0;
    let connector = FhirConnector::new(config).unwrap();
    let calls = 10;
    for i in 0..calls {
        assert!(connector.records(&ids(&format!("c{i}"))).await.is_err());
    }
    assert_eq!(fake.hits(), calls + 3);
    let stats = connector.stats();
    assert_eq!(stats.retries, 3);
    assert_eq!(stats.requests, 13);
    // The first call is refused its fourth retry, every later call its first.
    assert_eq!(stats.retries_refused, 10);
}

#[tokio::test]
async fn retries_stop_at_the_callers_deadline() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| server_error()).await;
    let mut config = fake.config();
    config.request_timeout = Duration::from_millis(100);
    config.retry.max_retries = 1000;
    config.retry.budget_max = 1000.0;
    config.retry.base_backoff = Duration::from_millis(20);
    config.retry.max_backoff = Duration::from_millis(20);
    let connector = FhirConnector::new(config).unwrap();
    let started = Instant::now();
    assert!(connector.records(&ids("a")).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "took {:?}",
        started.elapsed()
    );
    assert!(fake.hits() < 100);
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_does_not_open_the_breaker() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| {
        (StatusCode::BAD_REQUEST, "{}".into())
    })
    .await;
    let mut config = fake.config();
    config.breaker.failure_threshold = 2;
    let connector = FhirConnector::new(config).unwrap();
    let error = connector.records(&ids("a")).await.unwrap_err();
    assert!(matches!(error, ConnectorError::Rejected { .. }), "{error}");
    assert_eq!(fake.hits(), 1);
    for _ in 0..3 {
        assert!(matches!(
            connector.records(&ids("a")).await.unwrap_err(),
            ConnectorError::Rejected { .. }
        ));
    }
    assert_eq!(fake.hits(), 4, "refusals are not cached either");
    assert_eq!(connector.stats().breaker, BreakerState::Closed);
    assert_eq!(connector.stats().retries, 0);
}

#[tokio::test]
async fn the_same_read_twice_is_answered_from_the_cache() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| ok()).await;
    let connector = FhirConnector::new(fake.config()).unwrap();
    let first = connector.records(&ids("a")).await.unwrap();
    let again = connector.records(&ids("a")).await.unwrap();
    assert_eq!(first.len(), 1);
    // The kept answer, parsed once when it came, gives what the answer parsed afresh gives.
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    assert_eq!(fake.hits(), 1);
    let stats = connector.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses), (1, 1));
    // Another URL is another entry.
    connector.records(&ids("b")).await.unwrap();
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_source() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| ok()).await;
    let mut config = fake.config();
    config.cache.enabled = false;
    let connector = FhirConnector::new(config).unwrap();
    connector.records(&ids("a")).await.unwrap();
    connector.records(&ids("a")).await.unwrap();
    assert_eq!(fake.hits(), 2);
    assert_eq!(connector.stats().cache_hits, 0);
}

#[tokio::test]
async fn a_kept_answer_expires_after_its_ttl() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| ok()).await;
    let mut config = fake.config();
    config.cache.ttl = Duration::from_millis(100);
    let connector = FhirConnector::new(config).unwrap();
    connector.records(&ids("a")).await.unwrap();
    connector.records(&ids("a")).await.unwrap();
    assert_eq!(fake.hits(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    connector.records(&ids("a")).await.unwrap();
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn errors_and_malformed_answers_are_not_kept() {
    let fake = Fake::spawn(Duration::ZERO, |n, _| match n {
        0 => server_error(),
        1 => (StatusCode::OK, "not json".into()),
        _ => ok(),
    })
    .await;
    let mut config = fake.config();
    config.retry.max_retries = 0;
    let connector = FhirConnector::new(config).unwrap();
    assert!(matches!(
        connector.records(&ids("a")).await.unwrap_err(),
        ConnectorError::Unavailable { .. }
    ));
    assert!(matches!(
        connector.records(&ids("a")).await.unwrap_err(),
        ConnectorError::Malformed { .. }
    ));
    assert_eq!(connector.records(&ids("a")).await.unwrap().len(), 1);
    assert_eq!(connector.records(&ids("a")).await.unwrap().len(), 1);
    assert_eq!(fake.hits(), 3);
}

async fn concurrent_identical_reads_are_sent_once(cache: bool) {
    let fake = Fake::spawn(Duration::from_millis(50), |_, _| ok()).await;
    let mut config = fake.config();
    config.cache.enabled = cache;
    let connector = FhirConnector::new(config).unwrap();
    let ids = ids("a");
    let calls = (0..20).map(|_| connector.records(&ids));
    let outcomes = futures::future::join_all(calls).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().is_ok_and(|r| r.len() == 1))
    );
    assert_eq!(fake.hits(), 1);
    let stats = connector.stats();
    assert_eq!(stats.deduplicated, 19);
    assert_eq!(stats.requests, 1);
}

#[tokio::test]
async fn concurrent_identical_reads_are_sent_once_with_the_cache_on() {
    concurrent_identical_reads_are_sent_once(true).await;
}

#[tokio::test]
async fn concurrent_identical_reads_are_sent_once_with_the_cache_off() {
    concurrent_identical_reads_are_sent_once(false).await;
}

#[tokio::test]
async fn a_failed_read_is_shared_by_its_waiters_and_then_forgotten() {
    let fake = Fake::spawn(Duration::from_millis(50), |n, _| {
        if n == 0 {
            (StatusCode::BAD_REQUEST, "{}".into())
        } else {
            ok()
        }
    })
    .await;
    let mut config = fake.config();
    config.cache.enabled = false;
    let connector = FhirConnector::new(config).unwrap();
    let ids = ids("a");
    let outcomes = futures::future::join_all((0..5).map(|_| connector.records(&ids))).await;
    assert!(outcomes.iter().all(Result::is_err));
    assert_eq!(fake.hits(), 1);
    assert!(connector.records(&ids).await.is_ok());
    assert_eq!(fake.hits(), 2);
}

fn client_credentials(fake: &Fake) -> SourceConfig {
    let mut config = fake.config();
    config.cache.enabled = false;
    config.credentials = Credentials::ClientCredentials {
        token_url: Url::parse(&format!("{}/token", fake.base)).unwrap(),
        client_id: "gateway".into(),
        client_secret: "s3cret".into(),
        scope: Some("system/Patient.read".into()),
    };
    config
}

#[tokio::test]
async fn a_client_credentials_token_is_fetched_once_and_refreshed_after_expiry() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let fake = Fake::spawn(Duration::ZERO, move |_, auth| {
        log.lock().unwrap().push(auth.to_owned());
        ok()
    })
    .await;
    fake.expires_in.store(1, Ordering::SeqCst);
    let connector = FhirConnector::new(client_credentials(&fake)).unwrap();
    for id in ["a", "b", "c"] {
        connector.records(&ids(id)).await.unwrap();
    }
    assert_eq!(fake.token_hits(), 1);
    assert_eq!(*seen.lock().unwrap(), vec!["Bearer tok-1"; 3]);
    // Replaced shortly before the stated second is up.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    connector.records(&ids("d")).await.unwrap();
    assert_eq!(fake.token_hits(), 2);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "Bearer tok-2");
    assert_eq!(
        connector.stats().requests,
        4,
        "token requests are not source requests"
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_once() {
    let fake = Fake::spawn(Duration::ZERO, |_, auth| {
        if auth == "Bearer tok-1" {
            (StatusCode::UNAUTHORIZED, "{}".into())
        } else {
            ok()
        }
    })
    .await;
    let connector = FhirConnector::new(client_credentials(&fake)).unwrap();
    assert_eq!(connector.records(&ids("a")).await.unwrap().len(), 1);
    assert_eq!((fake.token_hits(), fake.hits()), (2, 2));
}

#[tokio::test]
async fn a_token_the_source_keeps_refusing_is_a_rejection() {
    let fake = Fake::spawn(Duration::ZERO, |_, _| {
        (StatusCode::UNAUTHORIZED, "{}".into())
    })
    .await;
    let connector = FhirConnector::new(client_credentials(&fake)).unwrap();
    let error = connector.records(&ids("a")).await.unwrap_err();
    assert!(matches!(error, ConnectorError::Rejected { .. }), "{error}");
    assert!(!error.to_string().contains("s3cret") && !error.to_string().contains("tok-"));
    assert_eq!((fake.token_hits(), fake.hits()), (2, 2));
}

#[test]
fn a_bearer_token_and_client_credentials_together_are_refused() {
    let mut config = SourceConfig::new(Url::parse("http://127.0.0.1:1/fhir").unwrap());
    config.bearer_token = Some("t".into());
    config.credentials = Credentials::Bearer("u".into());
    assert!(FhirConnector::new(config.clone()).is_err());
    assert!(!format!("{config:?}").contains("\"t\""));
}

#[test]
fn an_invalid_ca_certificate_or_identity_is_refused() {
    let mut config = SourceConfig::new(Url::parse("https://127.0.0.1:1/fhir").unwrap());
    config.ca_certificate_pem = Some(b"not a certificate".to_vec());
    assert!(FhirConnector::new(config.clone()).is_err());
    config.ca_certificate_pem = None;
    config.client_identity_pem =
        Some(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec());
    let error = FhirConnector::new(config).unwrap_err();
    assert!(!error.to_string().contains("AAAA"));
}

#[tokio::test]
async fn one_malformed_answer_shared_by_many_callers_counts_once_against_the_breaker() {
    let fake = Fake::spawn(Duration::from_millis(50), |n, _| {
        if n == 0 {
            (StatusCode::OK, "not json".into())
        } else {
            ok()
        }
    })
    .await;
    let mut config = fake.config();
    config.breaker.failure_threshold = 2;
    let connector = FhirConnector::new(config).unwrap();
    let ids = ids("a");
    let outcomes = futures::future::join_all((0..5).map(|_| connector.records(&ids))).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(ConnectorError::Malformed { .. })))
    );
    assert_eq!(connector.stats().breaker, BreakerState::Closed);
    assert!(connector.records(&ids).await.is_ok());
    assert_eq!(fake.hits(), 2);
}
