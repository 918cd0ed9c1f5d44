//! Fan-out to the sources: every call runs against all connectors at once, under the request's deadline, and reports how each source fared.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use childgraph_connectors::{Connector, ConnectorError, Parts};
use childgraph_schema::{PersonRecord, RecordDetails, RecordRef, SearchCriteria, SourceName};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// How a source fared for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceHealth {
    Ok,
    Unavailable,
    Timeout,
}

/// One source's report for one request: the worst status seen, the time spent, and when its data was read.
#[derive(Debug, Clone, Copy)]
pub struct SourceReport {
    pub source: SourceName,
    pub health: SourceHealth,
    pub elapsed: Duration,
    pub as_of: DateTime<Utc>,
}

/// The reports of every source call made for one GraphQL request.
#[derive(Debug, Default)]
pub struct Reports {
    by_source: Mutex<HashMap<SourceName, SourceReport>>,
    waiting: Mutex<Waiting>,
}

/// The time during which at least one source call of the request was in flight.
#[derive(Debug, Default)]
struct Waiting {
    in_flight: usize,
    since: Option<Instant>,
    total: Duration,
}

/// Counts a fan-out as waiting on sources until it is dropped, finished or cut off.
struct WaitGuard<'a>(&'a Reports);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut w = self.0.lock_waiting();
        w.in_flight -= 1;
        if w.in_flight == 0
            && let Some(since) = w.since.take()
        {
            w.total += since.elapsed();
        }
    }
}

impl Reports {
    /// How long the request waited on sources: the wall time during which at least one source call was in flight,
    /// however many ran at once. The rest of a request's time is the gateway's own.
    pub fn waited(&self) -> Duration {
        let w = self.lock_waiting();
        w.total + w.since.map(|s| s.elapsed()).unwrap_or_default()
    }

    fn wait(&self) -> WaitGuard<'_> {
        let mut w = self.lock_waiting();
        if w.in_flight == 0 {
            w.since = Some(Instant::now());
        }
        w.in_flight += 1;
        WaitGuard(self)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, source: SourceName, health: SourceHealth, elapsed: Duration) {
        let mut map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(source).or_insert(SourceReport {
            source,
            health,
            elapsed: Duration::ZERO,
            as_of: Utc::now(),
        });
        entry.elapsed += elapsed;
        entry.as_of = Utc::now();
        if health != SourceHealth::Ok {
            entry.health = health;
        }
    }

    /// The report for a source, if it was called.
    pub fn get(&self, source: SourceName) -> Option<SourceReport> {
        self.by_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&source)
            .copied()
    }

    /// The time spent on the source that took longest, over all its calls in the request: the largest of the
    /// `responseTimeMs` the answer's `sources` show, unrounded.
    pub fn slowest(&self) -> Duration {
        self.by_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|r| r.elapsed)
            .max()
            .unwrap_or_default()
    }

    /// The sources that failed, in a fixed order.
    pub fn failed(&self) -> Vec<SourceReport> {
        let map = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        SourceName::ALL
            .iter()
            .filter_map(|s| map.get(s))
            .filter(|r| r.health != SourceHealth::Ok)
            .copied()
            .collect()
    }
}

/// The connectors, one per source.
#[derive(Debug, Clone)]
pub struct Federation {
    /// Shared: every request clones the pipeline, and with it this list.
    connectors: Arc<[Arc<dyn Connector>]>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Federation {
    pub fn new(connectors: Vec<Arc<dyn Connector>>) -> Self {
        Self {
            connectors: connectors.into(),
            metrics: None,
        }
    }

    /// Times every connector call into these metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, source: SourceName, outcome: &str, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.source_call(source.as_str(), outcome, elapsed);
        }
    }

    /// Each source's counters: requests, cache hits and misses, retries, breaker state.
    pub fn stats(&self) -> Vec<(SourceName, childgraph_connectors::SourceStats)> {
        self.connectors
            .iter()
            .map(|c| (c.source(), c.stats()))
            .collect()
    }

    pub fn sources(&self) -> impl Iterator<Item = SourceName> + '_ {
        self.connectors.iter().map(|c| c.source())
    }

    /// Runs `call` against every connector for which `wanted` gives input, all at once, each cut off at the deadline.
    /// A failed or late source contributes nothing, and says so in `reports`.
    async fn each<I, T, F, Fut>(
        &self,
        deadline: Instant,
        reports: &Reports,
        input: impl Fn(SourceName) -> Option<I>,
        call: F,
    ) -> Vec<T>
    where
        F: Fn(Arc<dyn Connector>, I) -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let calls = self.connectors.iter().filter_map(|connector| {
            let source = connector.source();
            // A source that already failed in this request is not asked again: it would only spend the deadline
            // that the healthy sources' parts need.
            if reports.get(source).is_some_and(|r| r.health != SourceHealth::Ok) {
                return None;
            }
            let input = input(source)?;
            let fut = call(connector.clone(), input);
            Some(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout_at(deadline, fut).await;
                let elapsed = started.elapsed();
                match outcome {
                    Ok(Ok(value)) => {
                        reports.record(source, SourceHealth::Ok, elapsed);
                        self.observe(source, "ok", elapsed);
                        Some(value)
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(source = %source, error = %error, "source call failed");
                        let (health, outcome) = if error.is_timeout() {
                            (SourceHealth::Timeout, "timeout")
                        } else {
                            (SourceHealth::Unavailable, "unavailable")
                        };
                        reports.record(source, health, elapsed);
                        self.observe(source, outcome, elapsed);
                        None
                    }
                    Err(_) => {
                        tracing::warn!(source = %source, "source call cut off at the request deadline");
                        reports.record(source, SourceHealth::Timeout, elapsed);
                        self.observe(source, "timeout", elapsed);
                        None
                    }
                }
            })
        });
        let calls: Vec<_> = calls.collect();
        let _waiting = (!calls.is_empty()).then(|| reports.wait());
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every source's candidates for the criteria.
    pub async fn search(
        &self,
        criteria: &SearchCriteria,
        deadline: Instant,
        reports: &Reports,
    ) -> Vec<PersonRecord> {
        let results = self
            .each(
                deadline,
                reports,
                |_| Some(()),
                |c, ()| async move { c.search(criteria).await },
            )
            .await;
        results.into_iter().flatten().collect()
    }

    /// The records with these refs, each asked of its own source.
    pub async fn records(
        &self,
        refs: &[RecordRef],
        deadline: Instant,
        reports: &Reports,
    ) -> Vec<PersonRecord> {
        let by_source = group(refs);
        let results = self
            .each(
                deadline,
                reports,
                |s| by_source.get(&s).cloned(),
                |c, ids| async move { c.records(&ids).await },
            )
            .await;
        results.into_iter().flatten().collect()
    }

    /// The details of these records, only the parts asked for.
    pub async fn details(
        &self,
        refs: &[RecordRef],
        parts: Parts,
        deadline: Instant,
        reports: &Reports,
    ) -> HashMap<RecordRef, RecordDetails> {
        if parts.is_empty() {
            return HashMap::new();
        }
        let by_source = group(refs);
        let results = self
            .each(
                deadline,
                reports,
                |s| by_source.get(&s).cloned(),
                |c, ids| async move {
                    let source = c.source();
                    let details = c.details(&ids, parts).await?;
                    Ok(details
                        .into_iter()
                        .map(move |(id, d)| (RecordRef::new(source, id), d))
                        .collect::<Vec<_>>())
                },
            )
            .await;
        results.into_iter().flatten().collect()
    }
}

fn group(refs: &[RecordRef]) -> HashMap<SourceName, Vec<String>> {
    let mut by_source: HashMap<SourceName, Vec<String>> = HashMap::new();
    for r in refs {
        let ids = by_source.entry(r.source).or_default();
        if !ids.contains(&r.id) {
            ids.push(r.id.clone());
        }
    }
    by_source
}
