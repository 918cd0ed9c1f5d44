//! Prometheus metrics on `/metrics`. Labels carry no child data: a policy hash, a reason, an outcome.
//!
//! Each gateway has its own registry, so that several in one process (the tests) do not mix their figures.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets, in seconds: from a cached answer's fraction of a millisecond to the request deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 for the policy in force, by the SHA-256 of its file.
    policy_info: IntGaugeVec,
    policy_reloads: IntCounterVec,
    shield_overrides: IntCounter,
    access_alerts: IntCounter,
    /// Withheld fields by reason, resolved once: a redaction is counted on the answer's hot path.
    redactions: [IntCounter; 3],
    /// Time spent on policy work, read from the CPU's cycle counter: cheap enough to wrap every field's decision.
    policy_seconds: Counter,
    clock: quanta::Clock,
    /// GraphQL requests by HTTP status.
    requests: HistogramVec,
    /// Connector calls by source and outcome (`ok`, `unavailable`, `timeout`).
    source_calls: HistogramVec,
    /// The wait for an access record to be committed, as the request sees it.
    audit_writes: Histogram,
    /// Requests refused by a quota: `searches` or `children`.
    rate_limited: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "childgraph_policy_info",
                "The policy in force, by the SHA-256 of its file",
            ),
            &["hash"],
        )
        .expect("a valid metric");
        let policy_reloads = IntCounterVec::new(
        Opts::new(
            "childgraph_policy_reloads_total",
            "Policy reloads, by outcome: replaced, or refused (the last good policy stays in force)",
        ),
        &["outcome"],
    )
    .expect("a valid metric");
        let shield_overrides = IntCounter::new(
            "childgraph_shield_overrides_total",
            "Shield overrides made; each alerts shield officers",
        )
        .expect("a valid metric");
        let access_alerts = IntCounter::new(
            "childgraph_access_alerts_total",
            "Users who viewed more distinct children than the monitoring threshold within its window",
        )
        .expect("a valid metric");
        let redactions = IntCounterVec::new(
            Opts::new("childgraph_redactions_total", "Fields withheld, by reason"),
            &["reason"],
        )
        .expect("a valid metric");
        let policy_seconds = Counter::new(
            "childgraph_policy_seconds_total",
            "Time spent on policy work: grants, field decisions, redaction errors and the audit's categories",
        )
        .expect("a valid metric");
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "childgraph_request_duration_seconds",
                "GraphQL requests, from authentication to the answer, by HTTP status",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["status"],
        )
        .expect("a valid metric");
        let source_calls = HistogramVec::new(
            HistogramOpts::new(
                "childgraph_source_call_duration_seconds",
                "Calls to a source (each may send several HTTP requests), by source and outcome: ok, unavailable, timeout",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["source", "outcome"],
        )
        .expect("a valid metric");
        let audit_writes = Histogram::with_opts(
            HistogramOpts::new(
                "childgraph_audit_write_seconds",
                "From an access record's hand-over to the audit writer until its commit, as the writer settled it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "childgraph_rate_limited_total",
                "Requests refused by a quota: searches, or distinct children",
            ),
            &["quota"],
        )
        .expect("a valid metric");
        for metric in [
            Box::new(policy_info.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(policy_reloads.clone()),
            Box::new(shield_overrides.clone()),
            Box::new(access_alerts.clone()),
            Box::new(redactions.clone()),
            Box::new(policy_seconds.clone()),
            Box::new(requests.clone()),
            Box::new(source_calls.clone()),
            Box::new(audit_writes.clone()),
            Box::new(rate_limited.clone()),
        ] {
            registry.register(metric).expect("a metric registered once");
        }
        Metrics {
            registry,
            policy_info,
            policy_reloads,
            shield_overrides,
            access_alerts,
            redactions: ["ROLE", "SHIELDED", "NOT_RELEVANT"]
                .map(|r| redactions.with_label_values(&[r])),
            policy_seconds,
            clock: quanta::Clock::new(),
            requests,
            source_calls,
            audit_writes,
            rate_limited,
        }
    }

    /// Records the policy now in force.
    pub fn policy_in_force(&self, hash: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[hash]).set(1);
    }

    /// Records a reload: `replaced` or `refused`.
    pub fn policy_reload(&self, outcome: &str) {
        self.policy_reloads.with_label_values(&[outcome]).inc();
    }

    pub fn shield_override(&self) {
        self.shield_overrides.inc();
    }

    pub fn access_alert(&self) {
        self.access_alerts.inc();
    }

    /// Records a withheld field.
    pub fn redaction(&self, reason: childgraph_policies::Reason) {
        let i = match reason {
            childgraph_policies::Reason::Role => 0,
            childgraph_policies::Reason::Shielded => 1,
            childgraph_policies::Reason::NotRelevant => 2,
        };
        self.redactions[i].inc();
    }

    /// Runs policy work and adds its time to `childgraph_policy_seconds_total`, from which the load benchmark
    /// reports the policy's share of the gateway's CPU time. The work must not await: the time is wall time.
    pub fn policy<T>(&self, work: impl FnOnce() -> T) -> T {
        let start = self.clock.raw();
        let out = work();
        let nanos = self.clock.delta_as_nanos(start, self.clock.raw());
        self.policy_seconds.inc_by(nanos as f64 * 1e-9);
        out
    }

    /// Records a GraphQL request's time, by its HTTP status.
    pub fn request(&self, status: u16, elapsed: std::time::Duration) {
        self.requests
            .with_label_values(&[&status.to_string()])
            .observe(elapsed.as_secs_f64());
    }

    /// Records a connector call.
    pub fn source_call(&self, source: &str, outcome: &str, elapsed: std::time::Duration) {
        self.source_calls
            .with_label_values(&[source, outcome])
            .observe(elapsed.as_secs_f64());
    }

    pub fn audit_write(&self, elapsed: std::time::Duration) {
        self.audit_writes.observe(elapsed.as_secs_f64());
    }

    /// Records a refusal by a quota: `searches` or `children`.
    pub fn rate_limited(&self, quota: &str) {
        self.rate_limited.with_label_values(&[quota]).inc();
    }

    /// Reports each source's counters and breaker state at every scrape, from the connectors' own counts.
    pub fn watch_sources(
        &self,
        connectors: Vec<std::sync::Arc<dyn childgraph_connectors::Connector>>,
    ) {
        if let Err(e) = self
            .registry
            .register(Box::new(SourceCollector::new(connectors)))
        {
            tracing::error!(error = %e, "cannot register the source metrics");
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The connectors' counters, read at each scrape: requests, cache hits and misses (the hit ratio is
/// hits / (hits + misses)), retries, and the circuit breaker's state.
struct SourceCollector {
    /// The connectors themselves, not the federation, which holds these metrics: no cycle.
    connectors: Vec<std::sync::Arc<dyn childgraph_connectors::Connector>>,
    descs: Vec<Desc>,
}

const SOURCE_COUNTERS: [(&str, &str); 5] = [
    (
        "childgraph_source_requests_total",
        "HTTP requests sent to a source, retries included",
    ),
    (
        "childgraph_source_cache_hits_total",
        "Source reads answered from the cache",
    ),
    (
        "childgraph_source_cache_misses_total",
        "Source reads not found in the cache (every read when the cache is off)",
    ),
    (
        "childgraph_source_retries_total",
        "Retries sent to a source",
    ),
    (
        "childgraph_source_retries_refused_total",
        "Retries not sent because the retry budget was spent",
    ),
];

const BREAKER: (&str, &str) = (
    "childgraph_source_breaker_state",
    "A source's circuit breaker: 0 closed, 1 half-open, 2 open",
);

impl SourceCollector {
    fn new(connectors: Vec<std::sync::Arc<dyn childgraph_connectors::Connector>>) -> Self {
        let mut descs = Vec::new();
        for (name, help) in SOURCE_COUNTERS {
            descs.extend(
                IntCounterVec::new(Opts::new(name, help), &["source"])
                    .expect("a valid metric")
                    .desc()
                    .into_iter()
                    .cloned(),
            );
        }
        descs.extend(
            IntGaugeVec::new(Opts::new(BREAKER.0, BREAKER.1), &["source"])
                .expect("a valid metric")
                .desc()
                .into_iter()
                .cloned(),
        );
        Self { connectors, descs }
    }
}

impl std::fmt::Debug for SourceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCollector")
    }
}

impl Collector for SourceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats: Vec<_> = self
            .connectors
            .iter()
            .map(|c| (c.source(), c.stats()))
            .collect();
        let mut families = Vec::new();
        for (i, (name, help)) in SOURCE_COUNTERS.into_iter().enumerate() {
            let counters =
                IntCounterVec::new(Opts::new(name, help), &["source"]).expect("a valid metric");
            for (source, s) in &stats {
                let value = [
                    s.requests,
                    s.cache_hits,
                    s.cache_misses,
                    s.retries,
                    s.retries_refused,
                ][i];
                counters.with_label_values(&[source.as_str()]).inc_by(value);
            }
            families.extend(counters.collect());
        }
        let breaker =
            IntGaugeVec::new(Opts::new(BREAKER.0, BREAKER.1), &["source"]).expect("a valid metric");
        for (source, s) in &stats {
            let state = match s.breaker {
                childgraph_connectors::BreakerState::Closed => 0,
                childgraph_connectors::BreakerState::HalfOpen => 1,
                childgraph_connectors::BreakerState::Open => 2,
            };
            breaker.with_label_values(&[source.as_str()]).set(state);
        }
        families.extend(breaker.collect());
        families
    }
}
